"""Per-case and aggregate metric tables: summaries, Markdown and JSON.

A per-case table maps a case id to that case's metric values by metric name, e.g.
``{"1HNA001": {"synthrad_mae": 61.2, "synthrad_psnr": 29.8}}``. Values that are NaN
(an undefined metric, such as an MS-SSIM whose mask vanished at a coarse scale) or
absent are left out of the summaries and counted as missing, never averaged in.

Example:
    >>> summary = aggregate({"a": {"mae": 1.0}, "b": {"mae": 3.0}})["mae"]
    >>> summary.mean, summary.n
    (2.0, 2)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from medi2i.io.atomic import atomic_path

PerCase = Mapping[str, Mapping[str, float]]
"""Metric values by metric name, by case id."""
JsonNumber = float | str | None


@dataclass(frozen=True)
class MetricSummary:
    """One metric over the cases, in the metric's units.

    Attributes:
        mean: Mean over the cases with a value.
        std: Sample standard deviation (n - 1 in the denominator); NaN when n < 2.
        median: Median.
        q1: First quartile (25th percentile, linear interpolation).
        q3: Third quartile (75th percentile).
        n: Number of cases with a value.
        missing: Number of cases whose value is NaN or absent.
    """

    mean: float
    std: float
    median: float
    q1: float
    q3: float
    n: int
    missing: int = 0


def aggregate(per_case: PerCase) -> dict[str, MetricSummary]:
    """Summarise every metric over the cases.

    Args:
        per_case: Metric values by metric name, by case id.

    Returns:
        A summary per metric name, in the order the metrics first appear. A metric
        with no value in any case gets NaN statistics and ``n == 0``.
    """
    return {
        name: _summary([case.get(name, math.nan) for case in per_case.values()])
        for name in metric_names(per_case)
    }


def metric_names(per_case: PerCase) -> list[str]:
    """The metric names of a per-case table, in the order they first appear."""
    return list(dict.fromkeys(name for case in per_case.values() for name in case))


def to_markdown(
    summaries: Mapping[str, MetricSummary],
    *,
    units: Mapping[str, str] | None = None,
    decimals: int = 4,
) -> str:
    """A Markdown table with a row per metric: mean, std, median, q1, q3, n, missing.

    Args:
        summaries: From :func:`aggregate`.
        units: Units by metric name, shown after the name (e.g. ``{"mae": "HU"}``).
        decimals: Digits after the decimal point.
    """
    header = ("metric", "mean", "std", "median", "q1", "q3", "n", "missing")
    rows = [
        (
            _labelled(name, units),
            *(_number(value, decimals) for value in _statistics(summary)),
            str(summary.n),
            str(summary.missing),
        )
        for name, summary in summaries.items()
    ]
    return _markdown_table(header, rows) + _missing_notes(summaries)


def _missing_notes(summaries: Mapping[str, MetricSummary]) -> str:
    """A line under the table per metric with missing values, saying why where known."""
    from medi2i.evaluation.air import AIR_MAE_MISSING

    reasons = {"air_mae": AIR_MAE_MISSING}
    notes = [
        f"- `{name}` has no value in {summary.missing} case(s): "
        f"{reasons.get(name, 'the metric is undefined there (e.g. an empty region)')}."
        for name, summary in summaries.items()
        if summary.missing
    ]
    return "\n\n" + "\n".join(notes) if notes else ""


def per_case_markdown(
    per_case: PerCase, *, units: Mapping[str, str] | None = None, decimals: int = 4
) -> str:
    """A Markdown table with a row per case and a column per metric.

    Args:
        per_case: Metric values by metric name, by case id.
        units: Units by metric name, shown after the name in the header.
        decimals: Digits after the decimal point.
    """
    names = metric_names(per_case)
    header = ("case", *(_labelled(name, units) for name in names))
    rows = [
        (case_id, *(_number(values.get(name, math.nan), decimals) for name in names))
        for case_id, values in per_case.items()
    ]
    return _markdown_table(header, rows)


def to_json(per_case: PerCase, *, indent: int = 2) -> str:
    """The per-case values and their summaries as standard JSON.

    Returns:
        ``{"cases": {case: {metric: value}}, "summary": {metric: {"mean": ..., ...}}}``;
        NaN is written as ``null`` and infinities as the strings ``"inf"`` and
        ``"-inf"`` (e.g. the PSNR of identical images), which strict JSON parsers accept.
    """
    document = {
        "cases": {
            case_id: {name: json_value(value) for name, value in values.items()}
            for case_id, values in per_case.items()
        },
        "summary": {
            name: {key: json_value(value) for key, value in asdict(summary).items()}
            for name, summary in aggregate(per_case).items()
        },
    }
    return json.dumps(document, indent=indent)


def write_json(per_case: PerCase, path: str | Path) -> Path:
    """Write :func:`to_json` to ``path`` atomically (parent folders are created)."""
    path = Path(path)
    with atomic_path(path) as temporary:
        temporary.write_text(to_json(per_case) + "\n", encoding="utf-8")
    return path


def _summary(values: list[float]) -> MetricSummary:
    known = np.array([value for value in values if not math.isnan(value)], dtype=np.float64)
    missing = len(values) - known.size
    if known.size == 0:
        return MetricSummary(math.nan, math.nan, math.nan, math.nan, math.nan, 0, missing)
    # an infinite PSNR (identical images) makes spreads undefined: NaN, not a warning
    with np.errstate(invalid="ignore"):
        q1, median, q3 = (float(q) for q in np.percentile(known, [25.0, 50.0, 75.0]))
        std = float(np.std(known, ddof=1)) if known.size > 1 else math.nan
        mean = float(np.mean(known))
    return MetricSummary(mean, std, median, q1, q3, int(known.size), missing)


def _statistics(summary: MetricSummary) -> tuple[float, ...]:
    return (summary.mean, summary.std, summary.median, summary.q1, summary.q3)


def _labelled(name: str, units: Mapping[str, str] | None) -> str:
    unit = (units or {}).get(name, "")
    return f"{name} ({unit})" if unit else name


def _number(value: float, decimals: int) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{decimals}f}"


def json_value(value: float | int) -> JsonNumber:
    """``value`` for standard JSON: NaN becomes ``None``, infinities ``"inf"``/``"-inf"``."""
    if isinstance(value, int) or math.isfinite(value):
        return value
    return None if math.isnan(value) else ("inf" if value > 0 else "-inf")


def _markdown_table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    lines = [header, tuple("---" for _ in header), *rows]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)
