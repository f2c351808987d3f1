"""Training and evaluation data, in one package.

- :mod:`medi2i.data.cases`: the case model (volumes by role, domains);
- :mod:`medi2i.data.discovery`: finding cases in a layout (SynthRAD, folders, CSV; paired,
  unpaired, multi-domain, single-domain) and splitting them by subject;
- :mod:`medi2i.data.csv_manifest`: reading the ``csv`` layout's manifest;
- :mod:`medi2i.data.subjects`: the subject (the unit splits keep together) and its id;
- :mod:`medi2i.data.loading`: read → working grid → preprocessing, the one way every
  part of medi2i puts a volume in front of a method.

Patch sampling for training lives with the trainer (:mod:`medi2i.training.patches`).
"""
