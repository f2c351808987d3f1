"""Report figures: orientation letters on the montages, no offset on curve axes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from medi2i.report import figures
from medi2i.report.figures import Curve, MontageRow, edge_letters, slice_montage, training_curves


@pytest.fixture
def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures the functions draw, instead of PNG files."""
    kept: list[Any] = []

    def keep(figure: Any, path: Path, **_: object) -> Path:
        kept.append(figure)
        return path

    monkeypatch.setattr(figures, "_save", keep)
    return kept


def _letters(figure: Any) -> list[list[str]]:
    return [[text.get_text() for text in ax.texts] for ax in figure.axes if ax.texts]


@pytest.mark.parametrize("lps", [False, True])
def test_montage_panels_carry_the_patient_directions(drawn: list[Any], lps: bool) -> None:
    """Montages showed no orientation: a flipped display could not be told."""
    affine = np.diag([-2.0, -2.0, 3.0, 1.0]) if lps else np.diag([2.0, 2.0, 3.0, 1.0])
    slice_montage(
        [MontageRow("x", np.random.default_rng(0).random((8, 9, 6)))], affine=affine, path="m.png"
    )
    assert _letters(drawn[0]) == [
        ["L", "R", "P", "A"],  # axial: patient right on the image right, anterior up
        ["L", "R", "I", "S"],
        ["P", "A", "I", "S"],
    ]


def test_edge_letters_follow_the_axes_codes() -> None:
    assert edge_letters(("L", "P", "S"), "axial") == ("R", "L", "A", "P")
    assert edge_letters(("R", "A", "S"), "sagittal") == ("P", "A", "I", "S")


def test_training_curves_show_whole_values_without_an_offset(drawn: list[Any]) -> None:
    """A 0.08 change at 1240 was drawn under a "+1.24e3" offset and filled the panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    curve = Curve("validation.mae", (1, 2, 3), (1240.00, 1240.05, 1240.08))
    training_curves([curve], path="c.png")
    (figure,) = drawn
    FigureCanvasAgg(figure).draw()  # type: ignore[no-untyped-call]
    ax = figure.axes[0]
    assert ax.yaxis.get_major_formatter().get_offset() == ""
    assert any(label.get_text().startswith("1240") for label in ax.get_yticklabels())
