"""The ``dicom`` volume writer: a method's output as a derived DICOM series folder.

Which outputs it takes: a path **without a file suffix** (``out/sct``, ``out/sct/``),
or a folder that already exists. Every file format medi2i writes has a suffix of
letters (``.nii.gz``, ``.nrrd``, ``.mha``), so ``medi2i predict mr_dicom/ out/sct``
writes a DICOM series and ``medi2i predict mr_dicom/ sct.nii.gz`` a NIfTI file. A dot
before digits is part of a folder name (``out/sct.v2``, a UID): a series folder too.
Name a series folder whose last dot is followed by letters alone (``sct.final``) by
creating it first, or write it with
:func:`medi2i.dicom.writing.derived_series.write_derived_series`.

What it reads from the volume's metadata (the predict path sets the first three):

``medi2i.method.id``, ``medi2i.method.version``
    The method that computed the volume, for Series Description, Derivation
    Description and Software Versions. Required: a derived series must say what made it.
``medi2i.output.modality``
    ``"CT"`` or ``"MR"``: the IOD to write. When missing or ``"any"``, the source
    series' modality is used (harmonization and super-resolution keep it).
``medi2i.dicom`` (:data:`medi2i.dicom.source.META_KEY`)
    The :class:`~medi2i.dicom.source.DicomSource` of a volume read from DICOM: its
    patient, study, frame of reference and images are kept and referenced. Without it
    (a NIfTI input) a placeholder study is created.
``medi2i.dicom.deidentify``
    ``True`` to de-identify the series (:mod:`medi2i.dicom.writing.deidentify`); the writer's
    own ``deidentify`` flag does the same for every volume.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import OptionsError
from medi2i.io.base import VolumeWriter

if TYPE_CHECKING:
    import numpy as np
    from monai.data.meta_tensor import MetaTensor

    from medi2i.dicom.source import DicomSource
    from medi2i.dicom.writing.derived_header import Modality

METHOD_ID_KEY = "medi2i.method.id"
"""Meta key of the id of the method that computed a volume."""
METHOD_VERSION_KEY = "medi2i.method.version"
"""Meta key of that method's version."""
OUTPUT_MODALITY_KEY = "medi2i.output.modality"
"""Meta key of the modality of a method's output (``"CT"``, ``"MR"`` or ``"any"``)."""
DEIDENTIFY_KEY = "medi2i.dicom.deidentify"
"""Meta key that asks for a de-identified series."""


class DicomSeriesWriter(VolumeWriter):
    """Writes a volume as a derived CT or MR DICOM series into a folder.

    Args:
        deidentify: De-identify every series written (``medi2i-basic-1`` profile).

    Example:
        >>> writer = DicomSeriesWriter()
        >>> writer.can_write(Path("out/sct")), writer.can_write(Path("sct.nii.gz"))
        (True, False)
    """

    name = "dicom"
    description = "derived DICOM series folders (CT/MR Image Storage) via pydicom"

    def __init__(self, *, deidentify: bool = False) -> None:
        self.deidentify = deidentify

    def can_write(self, path: Path) -> bool:
        """True for a path without a file suffix (``out.v2`` has none, see
        :func:`medi2i.io.destinations.file_suffix`), or an existing folder."""
        from medi2i.io.destinations import file_suffix

        return file_suffix(Path(path)) == "" or Path(path).is_dir()

    def check(self, affine: np.ndarray, meta: Mapping[str, object], path: Path) -> None:
        """Refuse, before any inference, a grid no slice geometry expresses (in-plane
        shear, slices that do not advance) or an output whose modality is not known."""
        from medi2i.dicom.source import META_KEY, DicomSource
        from medi2i.dicom.writing.derived_series import slice_geometry

        found = meta.get(META_KEY)
        slice_geometry(affine, Path(path))
        output_modality(meta, found if isinstance(found, DicomSource) else None, Path(path))

    def write(self, volume: MetaTensor, path: Path) -> None:
        """Write ``volume`` as a series in folder ``path``; see the module docstring.

        Raises:
            OptionsError: The metadata does not name the method, or no modality can be
                chosen.
            GeometryError: Not one 3D volume, or a sheared or singular affine.
        """
        from medi2i.dicom.source import META_KEY, DicomSource
        from medi2i.dicom.writing.derived_series import write_derived_series
        from medi2i.io.nifti import warn_if_orientation_unstated

        warn_if_orientation_unstated(volume, path)
        meta: Mapping[str, object] = volume.meta
        found = meta.get(META_KEY)
        source = found if isinstance(found, DicomSource) else None
        method_id, method_version = _method(meta, path)
        write_derived_series(
            volume,
            Path(path),
            source=source,
            modality=output_modality(meta, source, path),
            method_id=method_id,
            method_version=method_version,
            deidentify=self.deidentify or bool(meta.get(DEIDENTIFY_KEY, False)),
        )


def _method(meta: Mapping[str, object], path: Path) -> tuple[str, str]:
    method_id, version = meta.get(METHOD_ID_KEY), meta.get(METHOD_VERSION_KEY)
    if not method_id:
        raise OptionsError(
            f"cannot write the DICOM series {path}: the volume's meta has no "
            f"{METHOD_ID_KEY!r}, and a derived series must name the method that made it; "
            "write outputs of medi2i.predict or predict_tensor, or set "
            f"meta[{METHOD_ID_KEY!r}] and meta[{METHOD_VERSION_KEY!r}]"
        )
    return str(method_id), str(version or "unknown")


def output_modality(meta: Mapping[str, object], source: DicomSource | None, path: Path) -> Modality:
    """The IOD to write: the method's output modality, else the source's.

    Raises:
        OptionsError: Neither is CT or MR.
    """
    for candidate in (meta.get(OUTPUT_MODALITY_KEY), source.modality if source else None):
        if candidate == "CT":
            return "CT"
        if candidate == "MR":
            return "MR"
    declared = meta.get(OUTPUT_MODALITY_KEY)
    method = meta.get(METHOD_ID_KEY)
    given = (
        f"the input is {source.modality or 'of no modality'}, not CT or MR"
        if source
        else "the input was not a DICOM series"
    )
    if method is not None:
        raise OptionsError(
            f"cannot write the DICOM series {path}: method {method!r} declares its output "
            f"modality as {declared!r} and {given}, so "
            "neither says which DICOM image type to write; write a NIfTI file instead "
            "(e.g. OUT.nii.gz), or (as the method's author) declare output_spec's modality"
        )
    raise OptionsError(
        f"cannot write the DICOM series {path}: the output's modality is not stated and "
        f"{given}, so nothing says which DICOM image type to write; write a "
        "NIfTI file instead (e.g. OUT.nii.gz)"
    )
