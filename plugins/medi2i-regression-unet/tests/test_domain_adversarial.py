"""Domain-adversarial training of the regression U-Net (Ganin & Lempitsky 2015)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from medi2i_regression_unet.adversarial import (
    DomainClassifier,
    captured_outputs,
    encoder_stages,
    reversal_coefficient,
    reverse_gradient,
)
from medi2i_regression_unet.method import DOMAIN_CLASSIFIER, RegressionUNet

import medi2i
from medi2i import OptionsError
from medi2i.data.cases import Case, CaseSet
from medi2i.io import read_volume, write_volume
from medi2i.method import DataKind
from medi2i.testing import check_distributed_training, check_training_contract
from medi2i.testing.domain_cases import write_single_domain_cases
from medi2i.testing.trainable_examples import write_paired_cases
from medi2i.training import TrainingConfig, read_history, train

SMALL = {"filters": (4, 8, 16), "roi_size": (16, 16, 16)}
ADVERSARIAL = {**SMALL, "domain_adversarial_weight": 1.0, "domain_classifier_width": 8}


def test_the_reversal_layer_is_the_identity_forward_and_flips_the_gradient() -> None:
    features = torch.randn(2, 3, 4, requires_grad=True)
    weights = torch.randn(2, 3, 4)

    out = reverse_gradient(features, 0.3)
    (out * weights).sum().backward()

    assert torch.equal(out, features)
    assert features.grad is not None
    torch.testing.assert_close(features.grad, -0.3 * weights)


def test_the_reversal_coefficient_follows_the_papers_schedule() -> None:
    values = [reversal_coefficient(step, 100, 2.0) for step in range(0, 201, 10)]

    assert values[0] == 0.0
    assert all(a < b for a, b in itertools.pairwise(values[:11]))
    assert values[5] == pytest.approx(2.0 * (2.0 / (1.0 + np.exp(-5.0)) - 1.0))
    assert values[10] == values[-1] == pytest.approx(2.0 * (2.0 / (1.0 + np.exp(-10.0)) - 1.0))


def test_the_classifier_reads_every_encoder_stage() -> None:
    method = RegressionUNet(SMALL)
    stages = encoder_stages(method.network.unet)

    with captured_outputs(stages) as outputs:
        method.network(torch.zeros(2, 1, 16, 16, 16))

    assert [o.shape[1] for o in outputs] == [4, 8, 16]
    assert DomainClassifier([4, 8, 16], hidden=8)(outputs, coefficient=1.0).shape == (2,)


def test_only_the_adversarial_options_learn_from_unlabelled_data() -> None:
    assert not RegressionUNet(SMALL).learns_from_unlabelled()
    method = RegressionUNet(ADVERSARIAL)
    assert method.learns_from_unlabelled()
    assert sorted(method.training_modules()) == [DOMAIN_CLASSIFIER, "network"]
    assert sorted(RegressionUNet(SMALL).training_modules()) == ["network"]


def test_keeps_the_training_contract_with_unlabelled_data(tmp_path: Path) -> None:
    options = {**ADVERSARIAL, "optimizer": "adam", "schedule_steps": 4}
    check_training_contract(RegressionUNet, tmp_path, options=options, steps=4)


@pytest.mark.slow
def test_trains_with_ddp_under_torchrun_with_unlabelled_data(tmp_path: Path) -> None:
    check_distributed_training(RegressionUNet, tmp_path, options=ADVERSARIAL, steps=2)


def _config(steps: int) -> TrainingConfig:
    return TrainingConfig(steps=steps, batch_size=2, device="cpu", log_every=1, progress=False)


def test_a_run_without_the_unlabelled_data_it_needs_is_refused(tmp_path: Path) -> None:
    data = write_paired_cases(tmp_path / "data", count=1)

    with pytest.raises(OptionsError, match=r"regression-unet.*data\.unlabelled_data") as error:
        train(RegressionUNet(ADVERSARIAL), data, config=_config(1), run_dir=tmp_path / "run")

    assert "\n" not in str(error.value)
    assert not (tmp_path / "run" / "model").exists()


def test_unlabelled_data_for_a_method_that_does_not_use_it_is_refused(tmp_path: Path) -> None:
    data = write_paired_cases(tmp_path / "data", count=1)
    unlabelled = write_single_domain_cases(tmp_path / "unlabelled", count=1)

    with pytest.raises(OptionsError, match="does not learn from unlabelled data"):
        train(
            RegressionUNet(SMALL),
            data,
            config=_config(1),
            run_dir=tmp_path / "run",
            unlabelled=unlabelled,
        )


def _styled_cases(folder: Path, source: CaseSet) -> CaseSet:
    """The sources of ``source`` under another contrast (a power curve that a z-score
    does not undo), without targets."""
    cases = []
    for case in source.cases:
        volume = read_volume(case.images["source"])
        styled = volume.clone()
        styled[:] = (volume.clamp(min=0.0) / 1000.0) ** 3 * 1000.0
        path = write_volume(styled, folder / case.id / "image.nii.gz")
        cases.append(Case(id=case.id, images={"image": Path(path)}))
    return CaseSet(kind=DataKind.SINGLE_DOMAIN, cases=tuple(cases))


def test_the_adversary_makes_the_target_features_harder_to_tell_apart(tmp_path: Path) -> None:
    """Against a run with the reversal off (weight 0 keeps the classifier out), the
    classifier trained alongside the adversarial run ends closer to chance: its
    cross-entropy over the last steps is higher than a classifier reaches on features
    that are free to show the scanner."""
    data = write_paired_cases(tmp_path / "data", count=2, seed=3)
    unlabelled = _styled_cases(tmp_path / "styled", data)
    base = {**SMALL, "optimizer": "adam", "learning_rate": 2e-3, "lr_schedule": "constant"}

    def final_bce(weight: float, name: str) -> float:
        options = {**base, "domain_adversarial_weight": weight, "schedule_steps": 10}
        config = _config(60)
        result = train(
            RegressionUNet(options),
            data,
            config=config,
            run_dir=tmp_path / name,
            unlabelled=unlabelled,
        )
        losses = [r["losses"] for r in read_history(result.history) if "losses" in r]
        assert all(np.isfinite(list(entry.values())).all() for entry in losses)
        return float(np.mean([entry["domain_bce"] for entry in losses[-15:]]))

    # a tiny reversal (weight 1e-6) trains the classifier while leaving the features free
    free, adversarial = final_bce(1e-6, "free"), final_bce(1.0, "adversarial")

    assert free < 0.55  # the two contrasts are easy to tell apart from free features
    assert adversarial > free + 0.12


def test_a_workflow_trains_it_on_pairs_and_unlabelled_images(
    tmp_path: Path, medi2i_registry: medi2i.Registry
) -> None:
    from medi2i.workflow import load_workflow, run_workflow
    from medi2i.workflow.loader import WorkflowError

    root = tmp_path / "cases"
    write_paired_cases(root, count=2)
    other = write_paired_cases(tmp_path / "other", count=1, seed=7)
    styled = _styled_cases(tmp_path / "styled", other)
    rows = ["case,role,path", *(f"{c.id},image,{c.images['image']}" for c in styled.cases)]
    (tmp_path / "unlabelled.csv").write_text("\n".join(rows) + "\n")
    layout = f"{{type: synthrad, root: {root}, source: source, target: target, mask: mask}}"

    def workflow(weight: float) -> Path:
        path = tmp_path / "workflow.yaml"
        path.write_text(
            "data:\n"
            "  kind: paired\n"
            f"  layout: {layout}\n"
            "  split: {validation: 0.0, test: 0.0}\n"
            "  unlabelled_data: {type: csv, manifest: unlabelled.csv}\n"
            "method:\n"
            "  id: regression-unet\n"
            "  options: {filters: [4, 8, 16], roi_size: [16, 16, 16],\n"
            f"            domain_adversarial_weight: {weight}}}\n"
            "training: {steps: 2, batch_size: 2, device: cpu, progress: false, log_every: 1}\n"
            "evaluation: {enabled: false}\n"
            f"output: {{root: {tmp_path / 'runs'}}}\n"
        )
        return path

    loaded = load_workflow(workflow(1.0), registry=medi2i_registry)
    result = run_workflow(loaded, registry=medi2i_registry, stages=("train",))

    history = [r for r in read_history(result.run_dir / "logs" / "train.jsonl") if "losses" in r]
    assert [r["step"] for r in history] == [1, 2]
    assert all("domain_bce" in r["losses"] for r in history)
    with pytest.raises(WorkflowError, match="does not learn from unlabelled data"):
        load_workflow(workflow(0.0), registry=medi2i_registry)
