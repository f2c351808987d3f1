"""Tests of the regression U-Net plugin."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from medi2i_regression_unet.method import RegressionUNet
from medi2i_regression_unet.monotone import MonotoneMapping
from medi2i_regression_unet.network import ResidualUNet, ResizeConvolution, nearest_neighbour_init
from medi2i_regression_unet.optimization import scheduled_learning_rate
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import (
    InferenceSettings,
    ModelFormatError,
    OptionsError,
    Registry,
    body_mask,
    predict_tensor,
)
from medi2i.intensity import HounsfieldScale, foreground, normalize_mr
from medi2i.testing import check_method_contract, make_volume
from medi2i.testing.trainable_examples import write_paired_cases
from medi2i.training import Trainer, TrainingConfig, read_history, train

SMALL = {"filters": (4, 8, 16), "roi_size": (16, 16, 16)}
SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)


def test_keeps_the_method_contract() -> None:
    check_method_contract(RegressionUNet, options=SMALL)


def test_output_is_ct_in_the_declared_hounsfield_range(medi2i_volume: MetaTensor) -> None:
    output = predict_tensor(RegressionUNet(SMALL), medi2i_volume, settings=SETTINGS)

    assert RegressionUNet.output_spec.units == "HU"
    assert float(output.min()) >= -1024.0
    assert float(output.max()) <= 3071.0
    assert output.shape == medi2i_volume.shape


def test_hounsfield_scale_maps_the_ct_range_onto_minus_one_to_one() -> None:
    scale = HounsfieldScale()
    hounsfield = torch.tensor([-3000.0, -1024.0, 0.0, 1023.5, 3071.0, 5000.0])

    network = scale.to_network(hounsfield)

    assert network.tolist() == pytest.approx([-1.0, -1.0, -0.4998779, 0.0, 1.0, 1.0], abs=1e-6)
    back = scale.to_hounsfield(network)
    assert back.tolist() == pytest.approx([-1024.0, -1024.0, 0.0, 1023.5, 3071.0, 3071.0])


def test_target_preprocessing_inverts_postprocessing() -> None:
    method = RegressionUNet({**SMALL, "body_contour": False})
    ct = MetaTensor(torch.linspace(-1024.0, 3071.0, 16**3).reshape(1, 16, 16, 16))

    restored = method.postprocess(method.preprocess_target(ct), ct)

    torch.testing.assert_close(restored.as_tensor(), ct.as_tensor(), rtol=0.0, atol=1e-3)


def test_outputs_are_air_outside_the_input_body_by_default(medi2i_volume: MetaTensor) -> None:
    method = RegressionUNet(SMALL)
    plain = RegressionUNet({**SMALL, "body_contour": False})
    plain.load_state_tensors(method.state_tensors())

    output = predict_tensor(method, medi2i_volume, settings=SETTINGS)[0].numpy()
    unmasked = predict_tensor(plain, medi2i_volume, settings=SETTINGS)[0].numpy()

    assert method.options.body_contour
    outside = ~medi2i.body_mask(medi2i_volume[0].numpy())
    assert 0 < outside.sum() < outside.size
    assert set(np.unique(output[outside])) == {medi2i.AIR_HU}
    np.testing.assert_array_equal(output[~outside], unmasked[~outside])
    assert (unmasked[outside] != medi2i.AIR_HU).any()


def test_a_model_saved_without_the_body_contour_option_loads_with_it_on(
    tmp_path: Path, medi2i_volume: MetaTensor
) -> None:
    method = RegressionUNet(SMALL)
    folder = medi2i.save_model(method, tmp_path / "model")
    manifest = folder / "medi2i-model.json"
    document = json.loads(manifest.read_text())
    del document["options"]["body_contour"]
    manifest.write_text(json.dumps(document))

    loaded = medi2i.load_model(folder)

    assert isinstance(loaded, RegressionUNet)
    assert loaded.options.body_contour
    torch.testing.assert_close(
        predict_tensor(loaded, medi2i_volume, settings=SETTINGS),
        predict_tensor(method, medi2i_volume, settings=SETTINGS),
    )


@pytest.mark.parametrize("rule", ["body", "above-mean"])
def test_zscore_uses_the_whole_volume_foreground(rule: str) -> None:
    image = make_volume((24, 20, 16))
    before = image.as_tensor().clone()

    normalized = RegressionUNet({**SMALL, "mr_foreground": rule}).preprocess(image)

    # the foreground's voxels (those of the raw volume), now standardized
    if rule == "body":
        selected = normalized.numpy()[..., body_mask(image.numpy())]
    else:
        selected = foreground(normalized.numpy())
        assert selected.size == foreground(image.numpy()).size
    assert selected.mean() == pytest.approx(0.0, abs=1e-5)
    assert selected.std() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(image.as_tensor(), before)
    assert isinstance(normalized, MetaTensor)
    torch.testing.assert_close(normalized.affine, image.affine)


def test_a_patch_is_normalized_with_the_statistics_of_its_volume() -> None:
    image = make_volume((24, 20, 16))
    patch = image[:, :8, :8, :8]

    whole = normalize_mr(image, scheme="zscore", percentiles=(0.5, 99.5))[:, :8, :8, :8]
    alone = normalize_mr(patch, scheme="zscore", percentiles=(0.5, 99.5))

    assert not torch.allclose(whole, alone, atol=1e-2)


def test_percentile_scheme_maps_the_foreground_percentiles_to_minus_one_and_one() -> None:
    image = make_volume((24, 20, 16))
    low, high = np.percentile(foreground(image.numpy()), [5.0, 95.0])

    scaled = normalize_mr(image, scheme="percentile", percentiles=(5.0, 95.0))

    expected = np.clip((image.numpy() - (low + high) / 2) / ((high - low) / 2), -1.0, 1.0)
    np.testing.assert_allclose(scaled.numpy(), expected, rtol=0.0, atol=1e-5)
    assert float(scaled.min()) == -1.0
    assert float(scaled.max()) == 1.0


def test_a_constant_volume_normalizes_to_zeros() -> None:
    image = make_volume((16, 16, 16), kind="constant")

    assert torch.equal(RegressionUNet(SMALL).preprocess(image).as_tensor(), torch.zeros_like(image))


@pytest.mark.parametrize("shape", [(16, 16, 16), (13, 18, 7), (1, 5, 32)])
def test_the_network_accepts_windows_of_any_size(shape: tuple[int, int, int]) -> None:
    net = ResidualUNet(in_channels=1, out_channels=1, filters=(4, 8, 16), residual=True)

    assert net(torch.randn(2, 1, *shape)).shape == (2, 1, *shape)


@pytest.mark.parametrize(
    ("norm", "track", "far_content_matters"),
    [("instance", False, True), ("batch", False, False), ("instance", True, False)],
)
def test_fixed_statistics_make_a_voxel_independent_of_content_beyond_its_receptive_field(
    norm: str, track: bool, far_content_matters: bool
) -> None:
    # what makes sliding-window outputs depend on where the windows fall: with instance
    # norm, content 70 voxels away (far outside the receptive field) still changes a voxel
    torch.manual_seed(0)
    net = ResidualUNet(
        in_channels=1,
        out_channels=1,
        filters=(4, 8, 16),
        residual=True,
        norm=norm,  # type: ignore[arg-type]
        track_statistics=track,
    )
    with torch.no_grad():  # training-like running statistics, then evaluation mode
        net.train()
        for _ in range(3):
            net(torch.randn(2, 1, 8, 8, 96))
        net.eval()
        window = torch.randn(1, 1, 8, 8, 96)
        changed = window.clone()
        changed[..., 80:] *= 5.0
        near = net(window)[..., :8], net(changed)[..., :8]
    assert (not torch.allclose(*near, atol=1e-5)) == far_content_matters


def test_resize_upsampling_has_no_transposed_convolution_and_no_period_two_pattern() -> None:
    torch.manual_seed(0)
    resized = ResidualUNet(
        in_channels=1, out_channels=1, filters=(4, 8, 16), residual=True, upsampling="resize"
    )
    kinds = {type(m) for m in resized.modules()}
    assert torch.nn.ConvTranspose3d not in kinds
    assert resized(torch.randn(1, 1, 13, 18, 7)).shape == (1, 1, 13, 18, 7)
    # a constant feature map stays constant inside (a transposed convolution of stride 2
    # gives the 2 × 2 × 2 output voxels of each input voxel their own values)
    up = ResizeConvolution(3, 2, scale=2)
    inner = up(torch.ones(1, 3, 6, 6, 6))[..., 1:-1, 1:-1, 1:-1]
    torch.testing.assert_close(inner, inner[..., :1, :1, :1].expand_as(inner))
    transposed = torch.nn.ConvTranspose3d(3, 2, 2, stride=2, bias=False)
    pattern = transposed(torch.ones(1, 3, 6, 6, 6))[..., 1:-1, 1:-1, 1:-1]
    assert not torch.allclose(pattern, pattern[..., :1, :1, :1].expand_as(pattern))


def test_icnr_upsampling_starts_as_nearest_neighbour_and_trains_like_transposed() -> None:
    torch.manual_seed(0)
    icnr = ResidualUNet(
        in_channels=1, out_channels=1, filters=(4, 8, 16), residual=True, upsampling="icnr"
    )
    torch.manual_seed(0)
    plain = ResidualUNet(in_channels=1, out_channels=1, filters=(4, 8, 16), residual=True)
    # the same architecture, so the two load each other's weights
    assert icnr.state_dict().keys() == plain.state_dict().keys()
    for block, plain_block in zip(icnr.unet.upsamples, plain.unet.upsamples, strict=True):
        up = block.transp_conv.conv
        assert isinstance(up, torch.nn.ConvTranspose3d)
        # every output position of an input voxel starts with the same weights ...
        inner = up(torch.randn(1, up.in_channels, 5, 5, 5))
        torch.testing.assert_close(inner, F.interpolate(inner[..., ::2, ::2, ::2], scale_factor=2))
        # ... while nnU-Net's own initialization gives each its own
        other = plain_block.transp_conv.conv
        assert not torch.allclose(
            other.weight, other.weight[:, :, :1, :1, :1].expand_as(other.weight)
        )
    with pytest.raises(ValueError, match="kernel size = stride"):
        nearest_neighbour_init(torch.nn.ConvTranspose3d(2, 2, 3, stride=2))


def test_training_statistics_are_frozen_for_the_last_steps() -> None:
    options = {**SMALL, "norm_statistics": "training", "frozen_statistics_steps": 2}
    method = RegressionUNet(options)
    trainer = Trainer(method.training_modules(), device=torch.device("cpu"), total_steps=4)
    method.configure_training(trainer)
    norms = [m for m in method.network.modules() if isinstance(m, torch.nn.InstanceNorm3d)]
    assert norms
    assert all(m.track_running_stats for m in norms)
    batch = {"source": torch.randn(2, 1, 16, 16, 16), "target": torch.rand(2, 1, 16, 16, 16)}
    changed = []
    for step in range(4):
        trainer.step_index = step
        before = norms[0].running_mean.clone()
        method.training_step(batch, trainer)
        changed.append(not torch.equal(before, norms[0].running_mean))
    assert changed == [True, True, False, False]


def test_poly_schedule_decays_like_nnunet() -> None:
    rates = [
        scheduled_learning_rate(0.01, schedule="poly", step=k, total_steps=100, exponent=0.9)
        for k in (0, 50, 99, 500)
    ]

    assert rates[0] == pytest.approx(0.01)
    assert rates[1] == pytest.approx(0.01 * 0.5**0.9)
    assert rates[2] == pytest.approx(0.01 * 0.01**0.9)
    assert rates[3] == rates[2]  # past the schedule the last rate is kept


def test_a_step_sets_the_scheduled_rate_and_updates_the_network() -> None:
    method = RegressionUNet({**SMALL, "optimizer": "sgd", "schedule_steps": 10})
    trainer = Trainer(method.training_modules(), device=torch.device("cpu"))
    method.configure_training(trainer)
    trainer.step_index = 5
    before = [p.detach().clone() for p in method.network.parameters()]
    batch = {"source": torch.randn(2, 1, 16, 16, 16), "target": torch.rand(2, 1, 16, 16, 16)}

    losses = method.training_step(batch, trainer)

    assert set(losses) == {"l1"}
    assert trainer.learning_rates()["network"] == pytest.approx(1e-2 * 0.5**0.9)
    after = list(method.network.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_weights_of_other_options_are_a_model_format_error() -> None:
    larger = RegressionUNet({**SMALL, "filters": (4, 8, 16, 32)}).state_tensors()
    smaller = RegressionUNet(SMALL).state_tensors()
    method = RegressionUNet(SMALL)

    with pytest.raises(ModelFormatError, match="regression-unet"):
        method.load_state_tensors(larger)
    with pytest.raises(ModelFormatError, match="regression-unet"):
        method.load_state_tensors({k: v for k, v in smaller.items() if "input_block" not in k})


def test_default_learning_rate_follows_the_optimizer() -> None:
    assert RegressionUNet().initial_learning_rate() == 1e-2
    assert RegressionUNet({"optimizer": "adam"}).initial_learning_rate() == 2e-4
    assert RegressionUNet({"optimizer": "adam", "learning_rate": 1e-3}).initial_learning_rate() == (
        1e-3
    )


def test_loss_decreases_on_a_learnable_task_with_the_trainer(tmp_path: Path) -> None:
    options = {**SMALL, "optimizer": "adam", "learning_rate": 3e-3, "lr_schedule": "constant"}
    config = TrainingConfig(steps=40, batch_size=2, device="cpu", log_every=1, progress=False)

    result = train(
        RegressionUNet(options),
        write_paired_cases(tmp_path, count=2),
        config=config,
        run_dir=tmp_path / "run",
    )

    losses = [r["losses"]["l1"] for r in read_history(result.history) if "losses" in r]
    assert len(losses) == 40
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])
    trained = medi2i.load_model(result.model_dir)
    ct = predict_tensor(trained, make_volume((24, 24, 24), seed=0), settings=SETTINGS)
    assert -1024.0 <= float(ct.min()) <= float(ct.max()) <= 3071.0


def test_a_resumed_run_follows_the_schedule_of_an_uninterrupted_one(tmp_path: Path) -> None:
    options = {**SMALL, "optimizer": "sgd", "schedule_steps": 6}
    data = write_paired_cases(tmp_path / "data", count=2)

    def run(folder: str, steps: int) -> dict[str, torch.Tensor]:
        config = TrainingConfig(
            steps=steps, batch_size=1, device="cpu", checkpoint_every=3, progress=False
        )
        result = train(RegressionUNet(options), data, config=config, run_dir=tmp_path / folder)
        return medi2i.load_model(result.model_dir).state_tensors()

    run("resumed", 3)
    resumed, uninterrupted = run("resumed", 6), run("uninterrupted", 6)

    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, rtol=0.0, atol=0.0)


@pytest.mark.parametrize(
    "options",
    [
        {"filters": (4, 8)},
        {"filters": (4, 0, 8)},
        {"roi_size": (16, 0, 16)},
        {"mr_percentiles": (99.0, 1.0)},
        {"mr_percentiles": (0.0, 101.0)},
        {"spacing": (1.0, 0.0, 1.0)},
        {"learning_rate": 0.0},
        {"momentum": 1.0},
        {"optimizer": "rmsprop"},
        {"mr_normalisation": "zscore"},
    ],
)
def test_invalid_options_are_an_options_error(options: dict[str, object]) -> None:
    with pytest.raises(OptionsError, match="regression-unet"):
        RegressionUNet(options)


def test_is_registered_by_the_installed_plugin(medi2i_registry: Registry) -> None:
    assert medi2i_registry.method("regression-unet") is RegressionUNet
    assert medi2i_registry.method_owner("regression-unet") == "regression-unet"


def test_hook_module_imports_no_torch() -> None:
    code = (
        "import sys, medi2i_regression_unet; print('torch' in sys.modules, 'monai' in sys.modules)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("method_cls", [RegressionUNet, MonotoneMapping])
def test_card_describes_the_method(method_cls: type[medi2i.Method]) -> None:
    text = resources.files("medi2i_regression_unet").joinpath("card.yaml").read_text()
    entries = {entry["id"]: entry for entry in yaml.safe_load(text)["methods"]}

    assert entries[method_cls.id]["version"] == method_cls.version
    assert "clinical" in entries[method_cls.id]["intended_use"]["out_of_scope"].lower()


# -- AdaBN ------------------------------------------------------------------------------

BATCH_NORM = {**SMALL, "norm": "batch"}


def _batch_norm_model() -> RegressionUNet:
    torch.manual_seed(0)
    method = RegressionUNet(BATCH_NORM)
    for layer in method.network.modules():  # trained-looking statistics, not 0 and 1
        if isinstance(layer, torch.nn.BatchNorm3d):
            layer.running_mean.uniform_(-0.5, 0.5)
            layer.running_var.uniform_(0.5, 2.0)
    return method


def _running_statistics(method: RegressionUNet) -> list[torch.Tensor]:
    return [
        tensor.clone()
        for layer in method.network.modules()
        if isinstance(layer, torch.nn.BatchNorm3d)
        for tensor in (layer.running_mean, layer.running_var)
    ]


def test_adabn_on_the_input_changes_the_output_and_restores_the_statistics(
    medi2i_volume: MetaTensor,
) -> None:
    method = _batch_norm_model()
    trained = _running_statistics(method)
    other = make_volume(seed=7) * 2.0 + 50.0

    plain = predict_tensor(method, medi2i_volume, settings=SETTINGS)
    on_input = predict_tensor(
        method, medi2i_volume, settings=SETTINGS, condition={"statistics": "input"}
    )
    after_other = predict_tensor(
        method, other, settings=SETTINGS, condition={"statistics": "input"}
    )
    again = predict_tensor(
        method, medi2i_volume, settings=SETTINGS, condition={"statistics": "input"}
    )
    fresh = predict_tensor(
        _batch_norm_model(), other, settings=SETTINGS, condition={"statistics": "input"}
    )

    assert not torch.equal(plain.as_tensor(), on_input.as_tensor())
    # each volume is adapted from the trained model: nothing leaks from one to the next
    assert torch.equal(on_input.as_tensor(), again.as_tensor())
    assert torch.equal(after_other.as_tensor(), fresh.as_tensor())
    assert all(torch.equal(a, b) for a, b in zip(trained, _running_statistics(method), strict=True))


def test_adabn_on_the_input_of_a_window_normalized_model_is_a_one_line_error() -> None:
    method = RegressionUNet(SMALL)  # instance norm of each window: no running statistics

    with pytest.raises(OptionsError, match="norm: batch or norm_statistics: training") as caught:
        method.parse_condition({"statistics": "input"})

    assert "\n" not in str(caught.value)


def test_adapting_to_target_volumes_writes_a_new_model_and_leaves_the_source(
    tmp_path: Path, medi2i_registry: Registry
) -> None:
    from medi2i.adaptation import adapt_model

    source = medi2i.save_model(_batch_norm_model(), tmp_path / "model")
    before = {p.name: p.read_bytes() for p in source.iterdir()}
    targets = [
        medi2i.write_volume(make_volume(seed=k) * 3.0 + 100.0, tmp_path / f"site-b-{k}.nii.gz")
        for k in range(2)
    ]

    adapted = adapt_model(source, targets, tmp_path / "adapted", registry=medi2i_registry)

    loaded, original = medi2i.load_model(adapted), medi2i.load_model(source)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(_running_statistics(loaded), _running_statistics(original), strict=True)
    ]
    assert all(changed)
    assert {p.name: p.read_bytes() for p in source.iterdir()} == before
    weights = {k: v for k, v in loaded.state_tensors().items() if "running" not in k}
    assert all(
        torch.equal(v, original.state_tensors()[k])
        for k, v in weights.items()
        if "num_batches_tracked" not in k
    )
    volume = medi2i.read_volume(targets[0])
    assert torch.isfinite(predict_tensor(loaded, volume, settings=SETTINGS)).all()


def test_adapting_a_window_normalized_model_is_refused(
    tmp_path: Path, medi2i_registry: Registry
) -> None:
    from medi2i.adaptation import adapt_model

    source = medi2i.save_model(RegressionUNet(SMALL), tmp_path / "model")
    target = medi2i.write_volume(make_volume(seed=1), tmp_path / "t.nii.gz")

    with pytest.raises(OptionsError, match="adapting needs a network with running"):
        adapt_model(source, [target], tmp_path / "adapted", registry=medi2i_registry)
    assert not (tmp_path / "adapted").exists()
