"""``medi2i export --format monai-bundle --overwrite`` replaces a bundle medi2i exported,
and nothing a user keeps in or under that name: a MONAI model-zoo bundle, the input and
output of a run made inside the bundle folder (as its README shows), a link."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from click.testing import CliRunner

from medi2i.bundle_export import export_bundle, is_medi2i_bundle
from medi2i.cli.main import build_cli
from medi2i.model_folder import load_model, save_model
from medi2i.registry import Registry

SRCNN = {"filters": [4, 4], "kernel_sizes": [3, 1, 3], "roi_size": [8, 8, 8]}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A model folder and a bundle exported from it (kept untouched: copy it)."""
    registry = Registry()
    root = tmp_path_factory.mktemp("exported")
    torch.manual_seed(0)
    model = save_model(registry.method("srcnn")(SRCNN), root / "model")
    bundle = export_bundle(load_model(model, registry=registry), model, root / "B")
    return model, bundle


def _export(model: Path, folder: Path) -> Any:
    arguments = ["export", str(model), str(folder), "--format", "monai-bundle", "--overwrite"]
    return CliRunner().invoke(build_cli(), arguments)


def _copy(bundle: Path, to: Path) -> Path:
    import shutil

    return Path(shutil.copytree(bundle, to))


def _files(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_a_bundle_holding_a_runs_files_is_not_replaced(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    """The bundle's README runs it from its folder with --output_path out.nii.gz: a
    re-export with --overwrite deleted in.nii.gz, out.nii.gz and its sidecar."""
    model, bundle = exported
    folder = _copy(bundle, tmp_path / "B")
    for name in ("in.nii.gz", "out.nii.gz", "out.provenance.json", "notes/run.txt"):
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(name)
    before = _files(folder)

    refused = _export(model, folder)

    assert refused.exit_code == 1
    line = refused.output.strip()
    assert "\n" not in line
    assert (
        "holds files the bundle export did not write (in.nii.gz, notes/, out.nii.gz and 1 more)"
        in line
    )
    assert "move them out of the bundle folder" in line
    assert "export to a new folder" in line
    assert _files(folder) == before


def test_a_monai_bundle_that_medi2i_did_not_export_is_not_replaced(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    model, _ = exported
    zoo = tmp_path / "spleen_bundle"
    (zoo / "configs").mkdir(parents=True)
    (zoo / "models").mkdir()
    (zoo / "configs" / "inference.json").write_text('{"network_def": {}}')
    (zoo / "models" / "model.pt").write_bytes(os.urandom(1000))
    (zoo / "NOTES.md").write_text("notes")
    before = _files(zoo)
    assert not is_medi2i_bundle(zoo)

    refused = _export(model, zoo)

    assert refused.exit_code == 1
    assert "is a folder that is not a bundle medi2i exported" in refused.output
    assert "replaces only a bundle folder that medi2i exported" in refused.output
    assert _files(zoo) == before


def test_a_link_to_a_bundle_is_refused_as_a_link(
    exported: tuple[Path, Path], tmp_path: Path
) -> None:
    model, bundle = exported
    real = _copy(bundle, tmp_path / "real_b")
    link = tmp_path / "link_b"
    link.symlink_to(real.name)
    before = _files(real)

    refused = _export(model, link)

    assert refused.exit_code == 1
    assert "is a symbolic link (to real_b)" in refused.output
    assert "never replaced through a link" in refused.output
    assert "not a MONAI bundle" not in refused.output
    assert link.is_symlink()
    assert _files(real) == before


def test_an_exported_bundle_alone_is_replaced(exported: tuple[Path, Path], tmp_path: Path) -> None:
    model, bundle = exported
    folder = _copy(bundle, tmp_path / "B")
    assert is_medi2i_bundle(folder)
    description = folder / "models" / "model.pt2.json"
    edited = {**json.loads(description.read_text()), "note": "edited"}
    description.write_text(json.dumps(edited))

    done = _export(model, folder)

    assert done.exit_code == 0, done.output
    assert "note" not in json.loads(description.read_text())
    assert _files(folder) == _files(bundle)
