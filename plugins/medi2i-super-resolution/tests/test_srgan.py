"""SRGAN in 3D (Ledig et al. 2017) with a slice-axis upsampler."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from medi2i_super_resolution.srgan import (
    SrDiscriminator,
    Srgan,
    SrResidualBlock,
    SrResNet,
)

from medi2i import InferenceSettings, InputError, OptionsError, predict_tensor
from medi2i.data.cases import CaseSet
from medi2i.testing import (
    check_distributed_training,
    check_method_contract,
    check_training_contract,
    make_volume,
)
from medi2i.training import TrainingConfig, read_history, train

SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
SMALL: dict[str, Any] = {
    "features": 4,
    "blocks": 1,
    "roi_size": (12, 12, 6),
    "discriminator_filters": 2,
    "discriminator_layers": 1,
}


@pytest.mark.parametrize("content", ["l1", "features"])
def test_keeps_the_method_contract(content: str) -> None:
    check_method_contract(Srgan, options={**SMALL, "factor": 2, "content_loss": content})


@pytest.mark.parametrize("content", ["l1", "features"])
def test_keeps_the_training_contract(content: str, tmp_path: Path) -> None:
    options = {**SMALL, "content_loss": content, "content_only_steps": 1}
    check_training_contract(Srgan, tmp_path, options=options, patch_size=(8, 8, 4))


@pytest.mark.slow
def test_trains_with_ddp_under_torchrun(tmp_path: Path) -> None:
    check_distributed_training(Srgan, tmp_path, options=SMALL, patch_size=(8, 8, 4))


def test_the_generator_is_srresnet_with_batch_norm_and_prelu() -> None:
    network = SrResNet(factor=4, features=4, blocks=3, batch_norm=True, skip=False)

    blocks = [m for m in network.modules() if isinstance(m, SrResidualBlock)]
    assert len(blocks) == 3
    assert sum(isinstance(m, torch.nn.BatchNorm3d) for m in network.modules()) == 3 * 2 + 1
    assert any(isinstance(m, torch.nn.PReLU) for m in network.modules())
    assert network(torch.zeros(2, 1, 5, 5, 3)).shape == (2, 1, 5, 5, 12)
    plain = SrResNet(factor=2, features=4, blocks=3, batch_norm=False, skip=False)
    assert not any(isinstance(m, torch.nn.BatchNorm3d) for m in plain.modules())


def test_the_discriminator_halves_the_size_per_pair_and_returns_its_feature_maps() -> None:
    network = SrDiscriminator(filters=3, layers=2)

    logits, maps = network(torch.randn(2, 1, 16, 16, 8), with_features=True)
    assert logits.shape == (2, 1)
    assert [tuple(m.shape[1:]) for m in maps] == [(3, 16, 16, 8), (6, 8, 8, 4), (12, 4, 4, 2)]
    assert network(torch.randn(2, 1, 16, 16, 8))[1] == []


def test_an_untrained_skip_model_lands_on_the_thick_slices() -> None:
    image = make_volume((10, 10, 5), spacing=(1.0, 1.0, 4.0), seed=3)
    method = Srgan({**SMALL, "factor": 4, "clip_margin": None})

    output = predict_tensor(method, image, settings=SETTINGS)
    assert output.shape[1:] == (10, 10, 17)
    np.testing.assert_allclose(
        output[0, :, :, ::4].numpy(), image[0].numpy(), rtol=0.05, atol=0.05 * float(image.std())
    )


@pytest.mark.parametrize("betas", [(0.9, 1.0), (-0.1, 0.999), (0.9, float("nan"))])
def test_betas_outside_0_to_1_are_a_one_line_options_error(betas: tuple[float, float]) -> None:
    # Adam takes a beta of 1 or more without complaint and never moves its average
    with pytest.raises(OptionsError, match="betas") as caught:
        Srgan({**SMALL, "betas": betas})

    assert "\n" not in str(caught.value)


def test_training_on_pairs_without_the_factor_is_an_input_error() -> None:
    batch = {"source": torch.zeros(1, 1, 8, 8, 4), "target": torch.zeros(1, 1, 8, 8, 4)}
    with pytest.raises(InputError, match="times as many slices"):
        Srgan(SMALL).training_step(batch, trainer=None)  # type: ignore[arg-type]


def test_trains_the_generator_alone_then_against_the_discriminator(
    tmp_path: Path, thick_thin_pairs: CaseSet
) -> None:
    """The first ``content_only_steps`` log the pixel L1 only and leave the
    discriminator as it was; after them both networks learn, the content loss (here
    feature matching) is logged, and the generator's pixel L1 falls below the untrained
    one's."""
    options = {
        **SMALL,
        "features": 8,
        "learning_rate": 2e-3,
        "interpolation_skip": False,
        "content_loss": "features",
        "content_only_steps": 30,
    }
    config = TrainingConfig(steps=45, batch_size=4, device="cpu", log_every=1, progress=False)
    method = Srgan(options)
    untouched = {k: v.clone() for k, v in method.discriminator.state_dict().items()}

    result = train(method, thick_thin_pairs, config=config, run_dir=tmp_path / "run")

    records = [r for r in read_history(result.history) if "losses" in r]
    assert all(set(r["losses"]) == {"pixel_l1"} for r in records[:30])
    assert all(
        {"discriminator", "generator_adversarial", "feature_l1"} <= set(r["losses"])
        for r in records[30:]
    )
    pixel = [r["losses"]["pixel_l1"] for r in records]
    assert np.mean(pixel[-10:]) < 0.8 * np.mean(pixel[:5])
    changed = method.discriminator.state_dict()
    assert any(not torch.equal(untouched[k], changed[k]) for k in untouched)
