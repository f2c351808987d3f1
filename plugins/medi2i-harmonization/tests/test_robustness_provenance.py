"""A prediction's provenance identifies the fitted state of a model without weights."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from medi2i_harmonization.nyul import NyulStandardization
from medi2i_harmonization.zscore import ZScore

import medi2i
from medi2i import InferenceSettings, Registry
from medi2i.export import model_sha256
from medi2i.io.base import volume_from_array
from medi2i.provenance import sidecar_path

Phantom = Callable[..., np.ndarray]


def predicted_record(model: Path, source: Path, registry: Registry) -> dict[str, object]:
    settings = InferenceSettings(device="cpu", progress=False)
    output = medi2i.predict(
        source,
        source.with_name("out.nii.gz"),
        model=model,
        registry=registry,
        settings=settings,
        overwrite=True,
    )
    record: dict[str, object] = json.loads(sidecar_path(output).read_text())
    return record


@pytest.mark.parametrize("kind", [NyulStandardization, ZScore])
def test_a_refitted_model_at_the_same_path_gets_another_model_hash(
    kind: type[NyulStandardization] | type[ZScore],
    phantom: Phantom,
    medi2i_volume_file: Path,
    medi2i_registry: Registry,
    tmp_path: Path,
) -> None:
    folder = tmp_path / "model"
    records = []
    for seed, scale in ((1, 1.0), (2, 3.0)):
        method = kind()
        method.fit([np.asarray(phantom(seed=seed)) * scale])
        medi2i.save_model(method, folder, overwrite=True)
        records.append(predicted_record(folder, medi2i_volume_file, medi2i_registry))

    first, second = records
    assert first["weights_sha256"] is None  # fitted values, no weights file
    assert isinstance(first["model_sha256"], str)
    assert len(first["model_sha256"]) == 64
    assert first["model_sha256"] != second["model_sha256"]
    assert second["model_sha256"] == model_sha256(folder)


def test_the_provenance_records_what_the_standardization_measured(
    phantom: Phantom, medi2i_registry: Registry, tmp_path: Path
) -> None:
    # a head with white matter: medi2i_volume_file's blobs have no white-matter peak
    source = tmp_path / "input.nii.gz"
    head = volume_from_array(phantom().astype(np.float32), np.eye(4), path=source)
    medi2i.write_volume(head, source)
    settings = InferenceSettings(device="cpu", progress=False)
    runs = {}
    for method in ("whitestripe", "zscore"):
        output = medi2i.predict(
            source,
            source.with_name(f"{method}.nii.gz"),
            method=method,
            registry=medi2i_registry,
            settings=settings,
        )
        runs[method] = json.loads(sidecar_path(output).read_text())["run"]

    stripe = runs["whitestripe"]["white_stripe"]
    assert set(stripe) == {"mode", "mode_quantile", "low", "high", "mean", "std", "voxels"}
    assert stripe["low"] <= stripe["mode"] <= stripe["high"]
    assert stripe["std"] > 0
    assert stripe["voxels"] > 0
    assert set(runs["zscore"]) == {"foreground_mean", "foreground_std"}
