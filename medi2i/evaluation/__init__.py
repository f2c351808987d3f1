"""Evaluating predictions: SynthRAD2025 CT metrics, masked MR metrics, result tables.

- :mod:`medi2i.evaluation.synthrad`: MAE, PSNR and MS-SSIM of a synthetic CT exactly
  as the SynthRAD2025 challenge computes them.
- :mod:`medi2i.evaluation.air`: the MAE of a synthetic CT in the air around the body,
  which the SynthRAD metrics leave out.
- :mod:`medi2i.evaluation.image_metrics`: masked PSNR, SSIM, MAE and a histogram
  distance for MR outputs (harmonization, super-resolution).
- :mod:`medi2i.evaluation.metric_objects`: all of them as registered metrics, and the
  ``synthrad`` (with ``air_mae``) and ``mr`` presets.
- :mod:`medi2i.evaluation.tables`: per-case and aggregate tables, Markdown and JSON.

Example:
    >>> import numpy as np
    >>> from medi2i.evaluation import aggregate, synthrad
    >>> ct, body = np.zeros((8, 8, 8)), np.ones((8, 8, 8))
    >>> per_case = {"case1": {"synthrad_mae": synthrad.mae(ct, ct + 5.0, body)}}
    >>> aggregate(per_case)["synthrad_mae"].mean
    5.0
"""

from __future__ import annotations

from medi2i.evaluation import air, image_metrics, synthrad
from medi2i.evaluation.air import air_mae
from medi2i.evaluation.image_metrics import (
    MetricUndefinedError,
    edge_sharpness,
    histogram_distance,
    masked_mae,
    masked_psnr,
    masked_ssim,
)
from medi2i.evaluation.metric_objects import (
    METRIC_PRESETS,
    evaluate_case,
    evaluation_metrics,
    select_metrics,
)
from medi2i.evaluation.tables import (
    MetricSummary,
    aggregate,
    per_case_markdown,
    to_json,
    to_markdown,
    write_json,
)

__all__ = [
    "METRIC_PRESETS",
    "MetricSummary",
    "MetricUndefinedError",
    "aggregate",
    "air",
    "air_mae",
    "edge_sharpness",
    "evaluate_case",
    "evaluation_metrics",
    "histogram_distance",
    "image_metrics",
    "masked_mae",
    "masked_psnr",
    "masked_ssim",
    "per_case_markdown",
    "select_metrics",
    "synthrad",
    "to_json",
    "to_markdown",
    "write_json",
]
