"""A super-resolution model scored on a case of another factor is marked as such.

Q2 has a ×4 and a ×2 case; a model trained for one of them was scored on both, its
output resampled onto the reference's grid, with nothing in the tables to say so.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_bench.contenders import method_contender, registered_method, resampling_note
from medi2i_bench.datasets import build_dataset
from medi2i_bench.harness import evaluate
from medi2i_bench.source_files import COLIN27_FILE, MNI152_FILE
from monai.data.meta_tensor import MetaTensor

from medi2i import InferenceSettings
from medi2i.io import write_volume
from medi2i.synth import head_phantom

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)


@pytest.fixture(scope="module")
def q2_sources(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Small T1 phantoms under the names of Q2's shared files, on 1 mm grids."""
    folder = tmp_path_factory.mktemp("sources")
    for seed, name in enumerate((COLIN27_FILE, MNI152_FILE)):
        head = head_phantom(shape=(20, 22, 25), spacing_mm=(8.0, 8.0, 7.0), seed=seed)
        image = MetaTensor(torch.from_numpy(head.clean_t1().astype(np.float32) * 200.0)[None])
        write_volume(image, folder / name)
    return folder


def test_a_x2_model_is_marked_on_the_x4_case_only(q2_sources: Path, tmp_path: Path) -> None:
    dataset = build_dataset("q2", work_dir=tmp_path / "cache", source_dir=q2_sources)
    options = {"order": "linear", "align": "centres", "slice_factor": 2.0}
    method = registered_method(None, "interpolation", options, plugin="medi2i-super-resolution")
    contender = method_contender("x2-model", "model", method, dataset, SETTINGS)

    result = evaluate(dataset, [contender])

    assert list(result.notes) == ["x2-model"]
    assert list(result.notes["x2-model"]) == ["colin27-x4"]  # not the ×2 case
    note = result.notes["x2-model"]["colin27-x4"]
    assert note.startswith(
        "refines ×2 through-plane (output voxels 1×1×2 mm) where the case asks ×4"
    )
    table = result.to_markdown()
    assert "| x2-model | model | colin27-x4 † |" in table
    assert "| x2-model | model | colin27-x2 |" in table
    assert f"- † `x2-model` on colin27-x4: {note}" in table
    (record,) = json.loads(result.to_json())["results"]
    assert record["notes"] == {"colin27-x4": note}


def test_a_model_of_the_case_s_factor_or_grid_has_no_note() -> None:
    assert resampling_note((1.0, 1.0, 4.0), (1.0, 1.0, 1.0), (1.0, 1.0, 1.0)) is None
    assert resampling_note((1.0, 1.0, 4.0), (1.0, 1.0, 1.005), (1.0, 1.0, 1.0)) is None


def test_an_output_of_another_in_plane_size_is_told_by_its_voxels() -> None:
    note = resampling_note((0.8, 0.8, 4.0), (1.0, 1.0, 0.8), (0.8, 0.8, 0.8))

    assert note is not None
    assert note.startswith("output voxels 1×1×0.8 mm where the reference has 0.8×0.8×0.8 mm")
