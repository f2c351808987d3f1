"""Whether a volume can be a CT in HU before metrics in HU are computed on it.

``medi2i evaluate`` defaults to the ``synthrad`` preset, whose values are read in HU
(MAE in HU, PSNR over the fixed range [-1024, 3071] HU, ``air_mae`` below -900 HU). An
MR in 0-255 or a CT stored in [0, 1] scored with it gives numbers that look like HU and
mean nothing. The rule is the one predict applies to an input it takes as a CT in HU
(:func:`medi2i.prediction_checks.range_without_hounsfield_air`), and lenient: a CT in
HU of a body holds air at about -1000 HU (around the body, in the airways or lungs), so
a volume without a single voxel at or below
:data:`~medi2i.prediction_checks.HOUNSFIELD_AIR` (-500) cannot be one. A CT in HU cropped
to a region without any air is the one false refusal; ``--force-modality`` scores it.

Example:
    >>> import numpy as np
    >>> from pathlib import Path
    >>> require_hounsfield(np.full((4, 4, 4), -1000.0), Path("ct.nii.gz"), ["synthrad_mae"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy.typing as npt

from medi2i.errors import InputError
from medi2i.metrics import Metric

HOUNSFIELD_PRESET = "synthrad"
"""The preset whose metrics read their values in HU (:data:`METRIC_PRESETS`)."""


def hounsfield_metric_names(metrics: Sequence[Metric]) -> list[str]:
    """The names of ``metrics`` that read values in HU: those of the ``synthrad`` preset
    (the PSNR too, which clips to a range in HU) and any metric whose units are HU."""
    from medi2i.evaluation.metric_objects import METRIC_PRESETS

    preset = METRIC_PRESETS[HOUNSFIELD_PRESET]
    return [m.name for m in metrics if m.name in preset or m.units == "HU"]


def require_hounsfield(values: npt.ArrayLike, path: Path, names: Sequence[str]) -> None:
    """Refuse a volume that cannot be a CT in HU when the metrics ``names`` read it in HU.

    Args:
        values: The volume's values.
        path: Its file, named in the message.
        names: The metrics in HU that were asked for; nothing is checked when empty.

    Raises:
        InputError: No voxel is at or below -500; the message names the file, the
            range found and ``--metrics mr`` / ``--force-modality``.
    """
    from medi2i.prediction_checks import HOUNSFIELD_AIR, range_without_hounsfield_air

    if not names:
        return
    found = range_without_hounsfield_air(values)
    if found is None:
        return
    low, high = found
    raise InputError(
        f"{path}: no voxel is at or below {HOUNSFIELD_AIR:g} (its values run from "
        f"{low:.4g} to {high:.4g}), so it is not a CT in HU, whose air is about -1000 HU, "
        f"and {', '.join(names)} would be labelled HU without "
        "meaning it; score MR with --metrics mr, convert a CT to HU first, or pass "
        "--force-modality if it is a CT in HU without air"
    )
