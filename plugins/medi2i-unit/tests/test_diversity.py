"""Tests of benchmarks/quality/munit_diversity.py on a tiny trained MUNIT model (the
script lives in the medi2i repository; these tests skip outside it)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
from medi2i_unit.munit import Munit

import medi2i
from medi2i import DataKind, DomainSpec
from medi2i.data.cases import Case, CaseSet
from medi2i.testing import make_volume
from medi2i.training import TrainingConfig, train

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "quality" / "munit_diversity.py"
SMALL = {
    "roi_size": (16, 16, 16),
    "filters": 4,
    "blocks": 1,
    "discriminator_filters": 4,
    "discriminator_layers": 2,
    "style_downsamples": 2,
    "mlp_features": 16,
}


@pytest.fixture(scope="module")
def diversity() -> ModuleType:
    if not SCRIPT.is_file():
        pytest.skip("benchmarks/quality/munit_diversity.py is part of the medi2i repository")
    spec = importlib.util.spec_from_file_location("munit_diversity", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_histogram_distance_is_the_quantile_gap_over_the_reference_range(
    diversity: ModuleType,
) -> None:
    reference = np.linspace(0.0, 1.0, 10_001)

    assert diversity.histogram_distance(reference, reference.copy()) == 0.0
    shifted = diversity.histogram_distance(reference, reference[::7] + 0.1)
    assert shifted == pytest.approx(0.1 / 0.98, rel=1e-2)
    assert diversity.within_range(reference, reference + 2.0) == 0.0


@pytest.mark.slow
def test_reports_every_sample_on_a_tiny_trained_model(
    diversity: ModuleType, tmp_path: Path
) -> None:
    domains = (
        DomainSpec(name="scanner-b", modality="MR"),
        DomainSpec(name="scanner-a", modality="MR"),
    )
    cases, files = [], {}
    for index, domain in enumerate(("scanner-b", "scanner-a")):
        volume = make_volume((20, 20, 20), seed=index) * (1.0 + index)
        files[domain] = medi2i.write_volume(volume, tmp_path / f"{domain}.nii.gz")
        cases.append(Case(id=domain, images={"image": Path(files[domain])}, domain=domain))
    mask = make_volume((20, 20, 20), kind="constant")
    mask_path = medi2i.write_volume(mask, tmp_path / "mask.nii.gz")
    data = CaseSet(
        kind=DataKind.UNPAIRED,
        cases=tuple(cases),
        domains=tuple(d.name for d in domains),
        domain_specs=domains,
    )
    config = TrainingConfig(steps=2, batch_size=1, device="cpu", progress=False)
    model = train(Munit(SMALL), data, config=config, run_dir=tmp_path / "run").model_dir
    output = tmp_path / "diversity.json"

    code = diversity.main(
        [
            f"--model={model}",
            f"--input={files['scanner-b']}",
            f"--mask={mask_path}",
            f"--reference={files['scanner-a']}",
            f"--reference-mask={mask_path}",
            "--samples=3",
            "--direction=a2b",
            f"--output={output}",
        ]
    )

    report = json.loads(output.read_text())
    assert code == 0
    assert [s["output"] for s in report["samples"]] == ["style-0", "style-1", "style-2"]
    assert (report["source_domain"], report["target_domain"]) == ("scanner-b", "scanner-a")
    assert all(0.0 <= s["within_range"] <= 1.0 for s in report["samples"])
    assert all(np.isfinite(s["histogram_distance"]) for s in report["samples"])
    assert report["spread"]["mean"]["range"] > 0.0
