"""The shared real volumes the quality benchmarks are built from: file names in
``MEDI2I_DATA_DIR`` (``medi2i_bench.datasets.data_dir``)."""

from __future__ import annotations

__all__ = ["COLIN27_FILE", "CT_FILE", "LUNG1_FILE", "LUNG2_FILE", "MNI152_FILE"]

CT_FILE = "ct_head_invesalius0051.nii.gz"
COLIN27_FILE = "mr_t1_colin27_1mm.nii.gz"
MNI152_FILE = "mni152_2009a_t1_1mm.nii.gz"
LUNG1_FILE = "ct_chest_pyradiomics_lung1.nii.gz"
LUNG2_FILE = "ct_chest_pyradiomics_lung2.nii.gz"
