"""Training with v2 methods: which roles are intensity-augmented, frozen and hash-checked
auxiliary networks, and the workflow checks of conditions and validation data
(including a condition per validation case).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from medi2i import AuxiliaryNetwork, DataKind
from medi2i.errors import ModelFormatError
from medi2i.hashing import file_sha256
from medi2i.io import write_volume
from medi2i.model_folder import read_manifest, save_model
from medi2i.training.auxiliary import load_auxiliary_networks
from medi2i.training.config import AugmentationConfig
from medi2i.training.data import TrainingVolume, VolumeStore
from medi2i.training.patches import PatchSampler
from tests.contract_v2_methods import DOMAINS, QUIET, SelfAdapting, TwoWay, image, registry_with

# -- augmentation roles ----------------------------------------------------------------------


def sampler_for(roles: frozenset[str], kind: DataKind) -> PatchSampler:
    volumes = [
        TrainingVolume(
            f"case{d}",
            torch.full((1, 8, 8, 8), float(d + 1)),
            torch.full((1, 8, 8, 8), 5.0) if kind is DataKind.PAIRED else None,
            np.arange(8 * 8 * 8),
            1.0,
            d,
        )
        for d in range(2)
    ]
    store = VolumeStore(2, volumes.__getitem__, keep=True)
    always = AugmentationConfig(
        enabled=True,
        intensity_probability=1.0,
        noise_probability=0.0,
        flip_probability=0.0,
        rotate90_probability=0.0,
    )
    return PatchSampler(
        store,
        kind=kind,
        groups=[[0], [1]] if kind is DataKind.UNPAIRED else [[0, 1]],
        patch_size=(4, 4, 4),
        batch_size=2,
        patches_per_volume=1,
        foreground_ratio=0.0,
        augmentation=always,
        seed=0,
        rank=0,
        augmented_roles=roles,
        domain_names=("ct", "mr") if kind is DataKind.UNPAIRED else (),
    )


def test_real_target_domain_images_are_not_intensity_augmented_by_default() -> None:
    method = TwoWay()
    roles = frozenset(r for r in ("source", "target", "ct", "mr") if method.augments_intensity(r))
    assert roles == {"source"}
    batch = sampler_for(roles, DataKind.UNPAIRED)(step=0, micro=0)
    assert torch.equal(batch["a"], torch.full_like(batch["a"], 1.0))
    assert torch.equal(batch["b"], torch.full_like(batch["b"], 2.0))
    paired = sampler_for(roles, DataKind.PAIRED)(step=0, micro=0)
    assert torch.equal(paired["target"], torch.full_like(paired["target"], 5.0))
    for patch in paired["source"]:  # sources are augmented: no longer the plain 1 or 2
        assert float(patch.flatten()[0]) not in (1.0, 2.0)


def test_a_method_can_ask_for_a_domain_to_be_augmented() -> None:
    batch = sampler_for(frozenset({"mr"}), DataKind.UNPAIRED)(step=0, micro=0)
    assert torch.equal(batch["a"], torch.full_like(batch["a"], 1.0))
    assert not torch.equal(batch["b"], torch.full_like(batch["b"], 2.0))


# -- auxiliary networks ----------------------------------------------------------------------


def test_auxiliary_networks_are_hash_checked_frozen_and_recorded(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "features.safetensors"
    save_file({"weight": torch.ones(2, 1, 1, 1, 1), "bias": torch.zeros(2)}, str(weights))

    def build() -> torch.nn.Module:
        return torch.nn.Conv3d(1, 2, 1)

    class WithFeatures(SelfAdapting):
        id = "with-features"
        declared = file_sha256(weights)

        def auxiliary_networks(self) -> dict[str, AuxiliaryNetwork]:
            return {"features": AuxiliaryNetwork(build, weights, self.declared)}

    networks = load_auxiliary_networks(WithFeatures())
    assert torch.equal(networks["features"].weight, torch.ones(2, 1, 1, 1, 1))
    from medi2i.training.trainer import Trainer

    trainer = Trainer({}, device=torch.device("cpu"), auxiliary=networks)
    frozen = trainer.auxiliary["features"]
    assert not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())
    folder = save_model(WithFeatures(), tmp_path / "model")
    assert read_manifest(folder).auxiliary == {"features": file_sha256(weights)}

    WithFeatures.declared = "0" * 64
    with pytest.raises(ModelFormatError, match="not the declared"):
        load_auxiliary_networks(WithFeatures())


# -- workflow checks --------------------------------------------------------------------------


def unpaired_workflow(tmp_path: Path, **extra: object) -> dict[str, Any]:
    for domain in ("mr", "ct"):
        for k in range(3):
            write_volume(
                image(np.random.default_rng(k).random((8, 8, 8))), tmp_path / domain / f"{k}.nii.gz"
            )
    return {
        "data": {
            "kind": "unpaired",
            "layout": {
                "type": "folders",
                "folders": {"mr": str(tmp_path / "mr"), "ct": str(tmp_path / "ct")},
            },
            "domains": [d.model_dump() for d in DOMAINS],
            **extra,
        },
        "method": {"id": "two-way-toy", "condition": {"to": "ct"}},
        "output": {"root": str(tmp_path / "runs")},
    }


def test_validate_refuses_a_bad_condition_and_an_unpaired_validation_split(tmp_path: Path) -> None:
    from medi2i.data.discovery import discover_splits
    from medi2i.workflow.checks import check_condition, check_validation
    from medi2i.workflow.loader import WorkflowError
    from medi2i.workflow.schema import Workflow

    registry = registry_with(TwoWay)
    raw = unpaired_workflow(tmp_path, split={"validation": 0.34})
    workflow = Workflow.model_validate(raw)
    check_condition(workflow, registry)
    bad = Workflow.model_validate(
        {**raw, "method": {"id": "two-way-toy", "condition": {"to": "x"}}}
    )
    with pytest.raises(WorkflowError, match=r"method.condition: .*no domain 'x'"):
        check_condition(bad, registry)
    with pytest.raises(WorkflowError, match=r"data\.validation_data"):
        check_validation(workflow, discover_splits(workflow.data), registry)


def test_paired_validation_data_validates_unpaired_training(tmp_path: Path) -> None:
    from medi2i.data.discovery import discover_splits
    from medi2i.workflow.checks import check_validation
    from medi2i.workflow.schema import Workflow

    for role in ("source", "target"):
        write_volume(image(), tmp_path / "pairs" / role / "1.nii.gz")
    layout = {
        "type": "folders",
        "folders": {r: str(tmp_path / "pairs" / r) for r in ("source", "target")},
    }
    workflow = Workflow.model_validate(unpaired_workflow(tmp_path, validation_data=layout))
    splits = discover_splits(workflow.data)
    assert splits.validation.kind is DataKind.PAIRED
    assert [c.id for c in splits.validation.cases] == ["1"]
    assert len(splits.train.cases) == 6
    check_validation(workflow, splits, registry_with(TwoWay))


def test_each_validation_case_is_predicted_under_its_own_condition(tmp_path: Path) -> None:
    from medi2i.data.discovery import discover_splits
    from medi2i.training.validation import ValidationCase, validate
    from medi2i.workflow.checks import check_validation
    from medi2i.workflow.loader import WorkflowError
    from medi2i.workflow.schema import Workflow

    method = TwoWay()
    method.use_domains(DOMAINS)
    ramp = np.asarray(image()[0])
    into_ct = ValidationCase("mr-to-ct", image(), 1000 * ramp, None, {"to": "ct"})
    into_mr = ValidationCase("ct-to-mr", image(), 0.001 * ramp, None, {"to": "mr"})
    # the toy "CT" of the CT→MR case holds no air: predict's modality check is not tested here
    toy = QUIET.model_copy(update={"force_modality": True})
    # the case's condition overrides the workflow's, key by key: both cases are exact
    assert validate(method, [into_ct, into_mr], settings=toy, condition={"to": "mr"})[
        "mae"
    ] == pytest.approx(0.0, abs=1e-6)
    # without its own condition a case follows the workflow's, here the wrong direction
    plain = ValidationCase("mr-to-ct", image(), 1000 * ramp, None)
    assert validate(method, [plain], settings=toy, condition={"to": "mr"})["mae"] > 400

    for role in ("source", "target"):
        write_volume(image(), tmp_path / "pairs" / f"{role}.nii.gz")
    manifest = tmp_path / "pairs" / "validation.csv"
    manifest.write_text(
        "case,role,path,condition\n"
        "p,source,source.nii.gz,to=nowhere\np,target,target.nii.gz,to=nowhere\n"
    )
    raw = unpaired_workflow(tmp_path, validation_data={"type": "csv", "manifest": str(manifest)})
    workflow = Workflow.model_validate(raw)
    splits = discover_splits(workflow.data)
    assert splits.validation.cases[0].condition == (("to", "nowhere"),)
    with pytest.raises(WorkflowError, match=r"validation case 'p': .*no domain 'nowhere'"):
        check_validation(workflow, splits, registry_with(TwoWay))


def test_a_refused_condition_is_named_with_its_line(tmp_path: Path) -> None:
    import yaml

    from medi2i.workflow.loader import WorkflowError, load_workflow

    raw = unpaired_workflow(tmp_path, split={"validation": 0.34})
    raw["method"] = {"id": "two-way-toy", "condition": {"to": "x"}}
    raw["evaluation"] = {"enabled": False}
    path = tmp_path / "workflow.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    lines = path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, 1) if text.startswith("  condition:"))
    with pytest.raises(WorkflowError, match=rf"workflow.yaml line {line}: method.condition: .*'x'"):
        load_workflow(path, registry=registry_with(TwoWay))


def test_evaluation_conditions_are_checked_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a wrong domain in the evaluation CSV, or a condition giving several outputs, failed
    # only at the evaluate stage, after the whole training
    from medi2i.data.cases import Case
    from medi2i.data.discovery import discover_splits
    from medi2i.testing.domain_cases import MULTI_DOMAINS
    from medi2i.testing.multi_domain_example import ExampleStar
    from medi2i.workflow import checks
    from medi2i.workflow.loader import WorkflowError
    from medi2i.workflow.schema import Workflow

    for role in ("source", "target"):
        write_volume(image(), tmp_path / "pairs" / f"{role}.nii.gz")
    manifest = tmp_path / "pairs" / "evaluation.csv"
    manifest.write_text(
        "case,role,path,condition\n"
        "p,source,source.nii.gz,to=nowhere\np,target,target.nii.gz,to=nowhere\n"
    )
    raw = unpaired_workflow(tmp_path)
    layout = {"type": "csv", "manifest": str(manifest)}
    raw["evaluation"] = {"data": {"kind": "paired", "layout": layout}}
    workflow = Workflow.model_validate(raw)
    splits = discover_splits(workflow.data)
    with pytest.raises(WorkflowError, match=r"evaluation case 'p' \(evaluation.data.*nowhere"):
        checks.check_evaluation(workflow, splits, registry_with(TwoWay))

    star = ExampleStar()
    star.use_domains(MULTI_DOMAINS)
    monkeypatch.setattr(checks, "_method", lambda *_: star)
    case = Case(id="e", images={"source": tmp_path / "pairs" / "source.nii.gz"})
    unconditioned = Workflow.model_validate({**raw, "method": {"id": "two-way-toy"}})
    with pytest.raises(WorkflowError, match=r"yields 3 outputs .* scores one per case"):
        checks._check_evaluation_conditions(unconditioned, [case], None)
