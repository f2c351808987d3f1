"""Report figures (slice montages, training curves) and Markdown / HTML rendering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from medi2i.errors import InputError
from medi2i.report import (
    Curve,
    Figure,
    MontageRow,
    Report,
    Section,
    case_rows,
    read_training_curves,
    render_html,
    render_markdown,
    slice_montage,
    training_curves,
    write_report,
)
from medi2i.report.render import markdown_table_to_html

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def ball(shape: tuple[int, int, int] = (20, 16, 12)) -> np.ndarray:
    grid = np.meshgrid(*[np.linspace(-1, 1, n) for n in shape], indexing="ij")
    return np.asarray(sum(axis**2 for axis in grid) < 0.6, np.float64)


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_case_rows_share_a_window_and_centre_the_difference() -> None:
    reference = ball() * 1000.0 - 1000.0
    output = reference + 50.0
    rows = case_rows(source=ball(), output=output, reference=reference, units="HU")
    assert [row.label for row in rows] == [
        "input",
        "output (HU)",
        "reference (HU)",
        "output - reference (HU)",
    ]
    assert rows[1].window == rows[2].window
    assert rows[3].difference
    assert rows[3].window == (-50.0, 50.0)
    assert len(case_rows(source=ball(), output=output, reference=None)) == 2


def test_slice_montage_writes_a_png(tmp_path: Path) -> None:
    affine = np.diag([1.0, 1.5, 3.0, 1.0])
    rows = case_rows(source=ball(), output=ball(), reference=ball() * 0.9)
    path = slice_montage(rows, affine=affine, path=tmp_path / "f" / "m.png", centre_mask=ball())
    width, height = png_size(path)
    assert height > width  # four rows of three planes
    assert path.stat().st_size > 5_000


def test_slice_montage_can_be_small_for_committing(tmp_path: Path) -> None:
    noisy = ball() * 100.0 + np.random.default_rng(0).normal(0.0, 10.0, ball().shape)
    rows = case_rows(source=noisy, output=noisy + 5.0, reference=noisy)
    full = slice_montage(rows, affine=np.eye(4), path=tmp_path / "full.png")
    small = slice_montage(rows, affine=np.eye(4), path=tmp_path / "small.png", palette=True, dpi=55)
    assert png_size(small)[0] == round(png_size(full)[0] * 55 / 110)
    assert small.read_bytes()[25] == 3  # PNG colour type 3: a palette
    assert small.stat().st_size < full.stat().st_size


def test_slice_montage_rejects_mismatched_volumes(tmp_path: Path) -> None:
    rows = [MontageRow("a", ball()), MontageRow("b", ball((8, 8, 8)))]
    with pytest.raises(InputError, match="one shape"):
        slice_montage(rows, affine=np.eye(4), path=tmp_path / "m.png")
    with pytest.raises(InputError, match="at least one"):
        slice_montage([], affine=np.eye(4), path=tmp_path / "m.png")


def test_training_curves_from_history(tmp_path: Path) -> None:
    history = tmp_path / "train.jsonl"
    records = [
        {"step": 1, "losses": {"l1": 0.5}, "lr": {"network": 0.01}, "elapsed_s": 0.1},
        {"step": 2, "losses": {"l1": 0.4}, "lr": {"network": 0.01}, "patches_per_s": 3.0},
        {"step": 2, "validation": {"mae": 80.0}},
    ]
    history.write_text("\n".join(json.dumps(r) for r in records) + '\n{"step": 3, "loss')
    curves = read_training_curves(history)
    assert curves == [
        Curve("losses.l1", (1, 2), (0.5, 0.4)),
        Curve("validation.mae", (2,), (80.0,)),
    ]
    path = training_curves(curves, path=tmp_path / "curves.png", title="training")
    assert png_size(path)[0] > 400
    assert read_training_curves(tmp_path / "absent.jsonl") == []
    with pytest.raises(InputError, match="no training curves"):
        training_curves([], path=tmp_path / "none.png")


def sample_report() -> Report:
    return Report(
        title="Run <x>",
        subtitle="tiny",
        sections=(
            Section("Run", facts=(("method", "a|b"),)),
            Section(
                "Metrics",
                text="Values.",
                tables=(("Summary", "| metric | mean |\n| --- | --- |\n| mae (HU) | 1.5 |"),),
            ),
            Section("Cases", figures=(Figure("figures/c.png", "Case c."),), code="medi2i run x"),
        ),
    )


def test_markdown_report() -> None:
    text = render_markdown(sample_report())
    assert text.startswith("# Run <x>\n\ntiny\n\n## Run")
    assert "| method | a\\|b |" in text
    assert "**Summary**\n\n| metric | mean |" in text
    assert "![Case c.](figures/c.png)" in text
    assert "```bash\nmedi2i run x\n```" in text


def test_html_report_escapes_and_converts_tables(tmp_path: Path) -> None:
    page = render_html(sample_report())
    assert "<title>Run &lt;x&gt;</title>" in page
    assert "<tr><th>method</th><td>a|b</td></tr>" in page
    assert "<thead><tr><th>metric</th><th>mean</th></tr></thead>" in page
    assert '<img src="figures/c.png" alt="Case c.">' in page
    path = write_report(sample_report(), tmp_path, format="html")
    assert path.name == "report.html"
    assert path.read_text() == page
    assert write_report(sample_report(), tmp_path, format="markdown").name == "report.md"


def test_markdown_table_to_html_keeps_escaped_pipes() -> None:
    html = markdown_table_to_html("| a | b |\n|---|:-:|\n| x\\|y | 2 |")
    assert html == (
        "<table><thead><tr><th>a</th><th>b</th></tr></thead>"
        "<tbody><tr><td>x|y</td><td>2</td></tr></tbody></table>"
    )
