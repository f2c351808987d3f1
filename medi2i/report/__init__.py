"""Run reports: PNG figures (slice montages, training curves) and Markdown or HTML files.

- :mod:`medi2i.report.figures`: orthogonal slice montages of input, output, reference
  and difference, and training curves from the trainer's JSON Lines log.
- :mod:`medi2i.report.render`: a :class:`Report` of sections, tables and figures,
  rendered as Markdown or as HTML.
"""

from __future__ import annotations

from medi2i.report.figures import (
    Curve,
    MontageRow,
    case_rows,
    read_training_curves,
    slice_montage,
    training_curves,
)
from medi2i.report.render import (
    Figure,
    Report,
    Section,
    render_html,
    render_markdown,
    write_report,
)

__all__ = [
    "Curve",
    "Figure",
    "MontageRow",
    "Report",
    "Section",
    "case_rows",
    "read_training_curves",
    "render_html",
    "render_markdown",
    "slice_montage",
    "training_curves",
    "write_report",
]
