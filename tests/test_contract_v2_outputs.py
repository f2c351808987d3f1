"""Named outputs: where each is written, each with its own provenance, and what is
refused before anything is written (several outputs to ``predict``, an existing one).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from medi2i.errors import OptionsError
from medi2i.io import read_volume, write_volume
from medi2i.prediction import named_output_path, predict, predict_all
from tests.contract_v2_methods import QUIET, Sampler, image, registry_with


def test_named_output_paths() -> None:
    assert named_output_path(Path("a/sct.nii.gz"), "") == Path("a/sct.nii.gz")
    assert named_output_path(Path("a/sct.nii.gz"), "style-2") == Path("a/sct_style-2.nii.gz")
    assert named_output_path(Path("a/out.mha"), "B") == Path("a/out_B.mha")
    assert named_output_path(Path("a/series"), "B") == Path("a/series_B")
    with pytest.raises(OptionsError, match="letters, digits"):
        named_output_path(Path("a.nii.gz"), "../x")


def test_every_named_output_is_written_with_its_own_provenance(tmp_path: Path) -> None:
    registry = registry_with(Sampler)
    source = tmp_path / "in.nii.gz"
    write_volume(image(), source)
    written = predict_all(
        source,
        tmp_path / "out.nii.gz",
        method="style-sampler",
        settings=QUIET,
        condition={"styles": 3},
        registry=registry,
    )
    assert sorted(written) == ["style-0", "style-1", "style-2"]
    original = read_volume(source).as_tensor()
    for k in range(3):
        path = tmp_path / f"out_style-{k}.nii.gz"
        assert written[f"style-{k}"] == path
        assert torch.allclose(read_volume(path).as_tensor(), original * (k + 1), atol=1e-5)
        record = json.loads((tmp_path / f"out_style-{k}.provenance.json").read_text())
        assert record["output"]["name"] == f"style-{k}"
        assert record["output"]["condition"] == {"style": k}
        assert record["condition"] == {"styles": 3}
    assert not (tmp_path / "out.nii.gz").exists()


def test_predict_refuses_several_outputs_before_writing_anything(tmp_path: Path) -> None:
    registry = registry_with(Sampler)
    source = tmp_path / "in.nii.gz"
    write_volume(image(), source)
    with pytest.raises(OptionsError, match="predict_all"):
        predict(source, tmp_path / "out.nii.gz", method="style-sampler", registry=registry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_an_existing_named_output_is_refused_before_the_inference(tmp_path: Path) -> None:
    from medi2i.errors import OutputError

    registry = registry_with(Sampler)
    source = tmp_path / "in.nii.gz"
    write_volume(image(), source)
    (tmp_path / "out_style-1.nii.gz").write_bytes(b"keep me")
    with pytest.raises(OutputError):
        predict_all(source, tmp_path / "out.nii.gz", method="style-sampler", registry=registry)
    assert (tmp_path / "out_style-1.nii.gz").read_bytes() == b"keep me"
    assert not (tmp_path / "out_style-0.nii.gz").exists()
