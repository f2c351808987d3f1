"""Tests of the Pix2Pix plugin: both methods, their networks and their training step."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import resources
from pathlib import Path
from typing import Literal

import numpy as np
import pytest
import torch
import yaml
from medi2i_pix2pix.adversarial import gan_loss
from medi2i_pix2pix.discriminator import PatchDiscriminator, receptive_field, smallest_input
from medi2i_pix2pix.generator import UNetGenerator
from medi2i_pix2pix.method import Pix2Pix, Pix2Pix25D
from medi2i_pix2pix.residual import ResidualUNetGenerator
from medi2i_pix2pix.slices import axial_context
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import InferenceSettings, OptionsError, Registry, predict_tensor
from medi2i.intensity import foreground
from medi2i.testing import check_method_contract, make_volume
from medi2i.testing.trainable_examples import write_paired_cases
from medi2i.training import Trainer, TrainingConfig, read_history, train

SMALL_NETWORKS = {
    "generator_filters": 4,
    "generator_depth": 3,
    "discriminator_filters": 4,
    "discriminator_layers": 2,
}
SMALL_3D = {**SMALL_NETWORKS, "roi_size": (16, 16, 16)}
SMALL_25D = {**SMALL_NETWORKS, "roi_size": (16, 16, 8)}
METHODS = [
    (Pix2Pix, SMALL_3D),
    (Pix2Pix, {**SMALL_3D, "generator_full_resolution": True}),
    (Pix2Pix, {**SMALL_3D, "generator": "residual-unet"}),
    (Pix2Pix25D, SMALL_25D),
]
SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
CPU = torch.device("cpu")


@pytest.mark.parametrize(("method_cls", "options"), METHODS)
def test_keeps_the_method_contract(method_cls: type[Pix2Pix], options: dict[str, object]) -> None:
    check_method_contract(method_cls, options=options)


@pytest.mark.parametrize(("method_cls", "options"), METHODS)
def test_predicts_ct_in_the_declared_hounsfield_range(
    method_cls: type[Pix2Pix], options: dict[str, object], medi2i_volume: MetaTensor
) -> None:
    output = predict_tensor(method_cls(options), medi2i_volume, settings=SETTINGS)

    assert output.shape == medi2i_volume.shape
    assert -1024.0 <= float(output.min()) <= float(output.max()) <= 3071.0


def test_the_model_keeps_only_the_generator() -> None:
    method = Pix2Pix(SMALL_3D)

    names = set(method.state_tensors())

    assert names == {f"generator.{k}" for k in method.network.state_dict()}


@pytest.mark.parametrize("rule", ["body", "above-mean"])
def test_percentile_normalization_uses_the_whole_volume_foreground(rule: str) -> None:
    image = make_volume((24, 20, 16))
    before = image.as_tensor().clone()
    low, high = np.percentile(foreground(image.numpy(), rule), [0.5, 99.5])  # type: ignore[arg-type]

    normalized = Pix2Pix({**SMALL_3D, "mr_foreground": rule}).preprocess(image)

    expected = np.clip((image.numpy() - (low + high) / 2) / ((high - low) / 2), -1.0, 1.0)
    np.testing.assert_allclose(normalized.numpy(), expected, rtol=0.0, atol=1e-5)
    assert torch.equal(image.as_tensor(), before)


def test_target_preprocessing_inverts_postprocessing() -> None:
    method = Pix2Pix({**SMALL_3D, "body_contour": False})
    ct = MetaTensor(torch.linspace(-1024.0, 3071.0, 16**3).reshape(1, 16, 16, 16))

    scaled = method.preprocess_target(ct)

    assert float(scaled.min()) == -1.0
    assert float(scaled.max()) == 1.0
    restored = method.postprocess(scaled, ct)
    torch.testing.assert_close(restored.as_tensor(), ct.as_tensor(), rtol=0.0, atol=1e-3)


@pytest.mark.parametrize(("method_cls", "options"), [METHODS[0], METHODS[-1]])
def test_outputs_are_air_outside_the_input_body_by_default(
    method_cls: type[Pix2Pix], options: dict[str, object], medi2i_volume: MetaTensor
) -> None:
    method = method_cls(options)
    plain = method_cls({**options, "body_contour": False})
    plain.load_state_tensors(method.state_tensors())

    output = predict_tensor(method, medi2i_volume, settings=SETTINGS)[0].numpy()
    unmasked = predict_tensor(plain, medi2i_volume, settings=SETTINGS)[0].numpy()

    assert method.options.body_contour
    # the mask of the raw input, not of the percentile-normalized one
    outside = ~medi2i.body_mask(medi2i_volume[0].numpy())
    assert 0 < outside.sum() < outside.size
    assert set(np.unique(output[outside])) == {medi2i.AIR_HU}
    np.testing.assert_array_equal(output[~outside], unmasked[~outside])


def test_a_model_saved_without_the_body_contour_option_loads_with_it_on(tmp_path: Path) -> None:
    folder = medi2i.save_model(Pix2Pix(SMALL_3D), tmp_path / "model")
    manifest = folder / "medi2i-model.json"
    document = json.loads(manifest.read_text())
    del document["options"]["body_contour"]
    manifest.write_text(json.dumps(document))

    loaded = medi2i.load_model(folder)

    assert isinstance(loaded, Pix2Pix)
    assert loaded.options.body_contour


@pytest.mark.parametrize("kind", ["paper", "full-resolution", "residual-unet"])
@pytest.mark.parametrize(("dims", "shape"), [(3, (16, 16, 16)), (3, (9, 20, 5)), (2, (30, 7))])
def test_generators_accept_any_size_and_output_in_tanh_range(
    dims: int, shape: tuple[int, ...], kind: str
) -> None:
    spatial: Literal[2, 3] = 3 if dims == 3 else 2
    generator: torch.nn.Module
    if kind == "residual-unet":
        generator = ResidualUNetGenerator(
            dims=spatial, in_channels=2, out_channels=1, filters=4, depth=2, norm="instance"
        )
    else:
        generator = UNetGenerator(
            dims=spatial,
            in_channels=2,
            out_channels=1,
            filters=4,
            depth=3,
            norm="instance",
            dropout=0.5,
            full_resolution=kind == "full-resolution",
        )

    with torch.no_grad():
        output = generator(torch.randn(2, 2, *shape) * 10.0)

    assert output.shape == (2, 1, *shape)
    assert float(output.abs().max()) <= 1.0


def test_the_full_resolution_level_makes_the_output_from_full_resolution_features() -> None:
    torch.manual_seed(0)  # not the RNG state the tests before left behind
    paper = Pix2Pix(SMALL_3D).network
    generator = Pix2Pix({**SMALL_3D, "generator_full_resolution": True}).network
    assert isinstance(paper, UNetGenerator)
    assert isinstance(generator, UNetGenerator)
    last = paper.decoder[-1]
    assert isinstance(last[-1], torch.nn.Tanh)  # the paper: tanh on the transposed conv
    assert generator.head is not None
    assert generator.tail is not None
    head, tail = generator.head[0], generator.tail[0]
    assert isinstance(head, torch.nn.Conv3d)
    assert isinstance(tail, torch.nn.Conv3d)
    assert head.kernel_size == tail.kernel_size == (3, 3, 3)
    assert head.stride == tail.stride == (1, 1, 1)
    # the tail reads the head's features and the last transposed convolution's
    assert tail.in_channels == 2 * head.out_channels == 8
    assert generator.decoder[-1][1].out_channels == head.out_channels

    # the head's features reach the output directly: with every decoder weight zeroed,
    # the output still follows the input
    with torch.no_grad():
        for parameter in generator.decoder.parameters():
            parameter.zero_()
        generator.eval()
        image = torch.randn(1, 1, 16, 16, 16)
        varied = image.clone()
        varied[0, 0, 8, 8, 8] += 5.0
        difference = (generator(varied) - generator(image)).abs()[0, 0]
    # the change stays where the 3-wide convolutions reach (instance normalization only
    # shifts the rest slightly)
    assert float(difference[8, 8, 8]) > 100.0 * float(difference[0, 0, 0])


def test_the_residual_unet_generator_has_nnunet_levels() -> None:
    generator = Pix2Pix(
        {**SMALL_3D, "generator": "residual-unet", "generator_filters": 4, "generator_depth": 3}
    ).network
    assert isinstance(generator, ResidualUNetGenerator)
    widths = [block.main[0].out_channels for block in generator.encoder]
    strides = [block.main[0].stride for block in generator.encoder]
    assert widths == [4, 8, 16, 32]
    assert strides == [(1, 1, 1)] + [(2, 2, 2)] * 3
    kernels = {m.kernel_size for m in generator.modules() if isinstance(m, torch.nn.Conv3d)}
    assert kernels == {(3, 3, 3), (1, 1, 1)}  # 3-wide convolutions, 1-wide projections
    assert isinstance(generator.output[-1], torch.nn.Tanh)


def test_the_full_resolution_level_is_only_for_the_paper_generator() -> None:
    with pytest.raises(OptionsError, match="generator_full_resolution"):
        Pix2Pix({**SMALL_3D, "generator": "residual-unet", "generator_full_resolution": True})


def test_dropout_acts_in_training_only() -> None:
    generator = Pix2Pix(SMALL_3D).network
    volume = torch.randn(1, 1, 16, 16, 16)

    with torch.no_grad():
        generator.train()
        assert not torch.equal(generator(volume), generator(volume))
        generator.eval()
        assert torch.equal(generator(volume), generator(volume))


def test_the_default_discriminator_is_the_70_voxel_patchgan() -> None:
    assert receptive_field(Pix2Pix().options.discriminator_layers) == 70
    disc = PatchDiscriminator(dims=3, in_channels=2, filters=4, layers=3, norm="instance")

    logits = disc(torch.zeros(1, 1, 32, 32, 32), torch.zeros(1, 1, 32, 32, 32))

    assert logits.shape == (1, 1, 2, 2, 2)


def test_a_discriminator_refuses_patches_smaller_than_its_field() -> None:
    disc = PatchDiscriminator(dims=3, in_channels=2, filters=4, layers=2, norm="instance")
    size = smallest_input(2) - 1

    with pytest.raises(OptionsError, match="discriminator_layers"):
        disc(torch.zeros(1, 1, size, 32, 32), torch.zeros(1, 1, size, 32, 32))


def test_axial_context_repeats_edge_slices() -> None:
    volume = torch.arange(4.0).reshape(1, 1, 1, 1, 4)

    context = axial_context(volume, 5)[:, :, 0, 0]

    expected = [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 3], [1, 2, 3, 3, 3]]
    assert context.tolist() == expected


def test_the_25d_generator_sees_only_neighbouring_slices() -> None:
    generator = Pix2Pix25D({**SMALL_25D, "context_slices": 3}).network.eval()
    volume = torch.randn(1, 1, 16, 16, 8)
    changed = volume.clone()
    changed[..., 4] += 5.0

    with torch.no_grad():
        before, after = generator(volume), generator(changed)

    differs = [not torch.equal(before[..., z], after[..., z]) for z in range(8)]
    assert differs == [False, False, False, True, True, True, False, False]


@pytest.mark.parametrize("kind", ["vanilla", "lsgan"])
def test_gan_loss_is_small_for_confident_right_answers(kind: str) -> None:
    confident = torch.full((2, 1, 3, 3, 3), 8.0)

    right = gan_loss(confident, real=True, kind=kind)  # type: ignore[arg-type]
    wrong = gan_loss(confident, real=False, kind=kind)  # type: ignore[arg-type]

    assert float(right) < float(wrong)
    if kind == "vanilla":
        expected = torch.nn.functional.softplus(torch.tensor(-8.0))  # -log(sigmoid(8))
        assert float(right) == pytest.approx(float(expected))


class RecordingTrainer(Trainer):
    """The real trainer, recording parameters and gradients around every update."""

    def __init__(self, method: Pix2Pix) -> None:
        super().__init__(method.training_modules(), device=CPU, total_steps=10)
        self.records: list[tuple[str, dict[str, list[torch.Tensor]], dict[str, bool]]] = []

    def parameters_now(self) -> dict[str, list[torch.Tensor]]:
        return {
            name: [p.detach().clone() for p in module.parameters()]
            for name, module in self.raw_modules.items()
        }

    def step(self, optimizer: str) -> None:
        gradless = {
            name: all(p.grad is None for p in module.parameters())
            for name, module in self.raw_modules.items()
        }
        self.records.append((optimizer, self.parameters_now(), gradless))
        super().step(optimizer)


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize(("method_cls", "options"), METHODS)
def test_a_step_updates_the_discriminator_then_the_generator(
    method_cls: type[Pix2Pix], options: dict[str, object]
) -> None:
    method = method_cls(options)
    trainer = RecordingTrainer(method)
    method.configure_training(trainer)
    start = trainer.parameters_now()
    size = method.roi_size()
    batch = {"source": torch.randn(2, 1, *size), "target": torch.rand(2, 1, *size) * 2 - 1}

    losses = trainer.run_step(method, [batch])

    assert set(losses) == {"discriminator", "generator_gan", "l1"}
    (first, at_d_step, d_gradless), (second, at_g_step, g_gradless) = trainer.records
    assert (first, second) == ("discriminator", "generator")
    # the discriminator's loss gives the generator no gradient (fake pairs are detached)
    assert d_gradless["generator"]
    assert not d_gradless["discriminator"]
    # the generator's step leaves the discriminator as its own step left it
    assert g_gradless["discriminator"]
    end = trainer.parameters_now()
    assert same(at_g_step["discriminator"], end["discriminator"])
    assert not same(at_d_step["discriminator"], end["discriminator"])
    assert same(at_g_step["generator"], start["generator"])
    assert not same(start["generator"], end["generator"])


def test_each_network_has_its_own_adam_with_the_paper_settings() -> None:
    method = Pix2Pix(SMALL_3D)
    trainer = Trainer(method.training_modules(), device=CPU)

    method.configure_training(trainer)

    assert sorted(trainer.optimizers) == ["discriminator", "generator"]
    for name, optimizer in trainer.optimizers.items():
        assert isinstance(optimizer, torch.optim.Adam)
        assert optimizer.param_groups[0]["lr"] == 2e-4
        assert optimizer.param_groups[0]["betas"] == (0.5, 0.999)
        owned = {id(p) for p in trainer.modules[name].parameters()}
        assert {id(p) for p in optimizer.param_groups[0]["params"]} == owned


def test_the_rate_is_constant_then_decays_linearly_to_zero_in_both_optimizers() -> None:
    method = Pix2Pix({**SMALL_3D, "schedule_steps": 4})
    trainer = Trainer(method.training_modules(), device=CPU)
    method.configure_training(trainer)
    size = method.roi_size()
    batch = {"source": torch.randn(1, 1, *size), "target": torch.rand(1, 1, *size) * 2 - 1}

    seen = []
    for _ in range(4):
        trainer.run_step(method, [batch])
        seen.append({name: o.param_groups[0]["lr"] for name, o in trainer.optimizers.items()})

    # the step count sets the rate, so a resumed run follows the same schedule
    assert [rates["generator"] for rates in seen] == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])
    assert all(rates["discriminator"] == rates["generator"] for rates in seen)
    assert Pix2Pix({"lr_schedule": "constant"}).options.learning_rate_at(10**6, 10) == 2e-4


@pytest.mark.parametrize("method_cls", [Pix2Pix, Pix2Pix25D])
def test_the_schedule_spans_the_run_unless_schedule_steps_is_set(
    method_cls: type[Pix2Pix],
) -> None:
    spanning = method_cls().options
    explicit = method_cls({"schedule_steps": 1000}).options

    # a 100000-step run keeps the full rate for its first half and reaches 0 at its end
    assert spanning.schedule_steps is None
    assert spanning.learning_rate_at(49_999, 100_000) == 2e-4
    assert spanning.learning_rate_at(75_000, 100_000) == pytest.approx(1e-4)
    assert spanning.learning_rate_at(100_000, 100_000) == 0.0
    # an explicit value keeps its meaning (committed models and resolved configs set it)
    assert explicit.learning_rate_at(750, 100_000) == pytest.approx(1e-4)
    assert explicit.learning_rate_at(1000, 100_000) == 0.0


def test_a_trainer_run_decays_over_its_own_steps() -> None:
    method = Pix2Pix(SMALL_3D)
    trainer = Trainer(method.training_modules(), device=CPU, total_steps=4)
    method.configure_training(trainer)
    size = method.roi_size()
    batch = {"source": torch.randn(1, 1, *size), "target": torch.rand(1, 1, *size) * 2 - 1}

    rates = []
    for _ in range(4):
        trainer.run_step(method, [batch])
        rates.append(trainer.optimizers["generator"].param_groups[0]["lr"])

    assert rates == pytest.approx([2e-4, 2e-4, 2e-4, 1e-4])


@pytest.mark.parametrize(("schedule_steps", "warned"), [(3, True), (4, False), (None, False)])
def test_warns_once_when_schedule_steps_ends_before_the_run(
    schedule_steps: int | None, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    method = Pix2Pix({**SMALL_3D, "schedule_steps": schedule_steps})
    trainer = Trainer(method.training_modules(), device=CPU, total_steps=4)

    with caplog.at_level("WARNING", logger="medi2i.training"):
        method.configure_training(trainer)

    messages = [r.getMessage() for r in caplog.records if "schedule_steps" in r.getMessage()]
    assert len(messages) == (1 if warned else 0)
    if warned:
        assert "schedule_steps 3 is below training.steps 4" in messages[0]


@pytest.mark.parametrize(("method_cls", "options"), METHODS)
def test_l1_decreases_on_a_learnable_task_with_the_trainer(
    method_cls: type[Pix2Pix], options: dict[str, object], tmp_path: Path
) -> None:
    method = method_cls({**options, "learning_rate": 2e-3})
    config = TrainingConfig(steps=30, batch_size=2, device="cpu", log_every=1, progress=False)

    result = train(
        method, write_paired_cases(tmp_path, count=2), config=config, run_dir=tmp_path / "run"
    )

    losses = [r["losses"]["l1"] for r in read_history(result.history) if "losses" in r]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    trained = medi2i.load_model(result.model_dir)
    assert isinstance(trained, method_cls)
    ct = predict_tensor(trained, make_volume((24, 24, 24), seed=0), settings=SETTINGS)
    assert -1024.0 <= float(ct.min()) <= float(ct.max()) <= 3071.0


@pytest.mark.parametrize(
    ("method_cls", "options"),
    [
        (Pix2Pix, {"roi_size": (16, 16, 16)}),  # default depth 6 needs 64 voxels
        (Pix2Pix, {**SMALL_3D, "discriminator_layers": 3}),  # needs 24 voxels
        (Pix2Pix, {**SMALL_3D, "roi_size": (16, 0, 16)}),
        (Pix2Pix, {"dropout": 1.0}),
        (Pix2Pix, {"betas": (0.5, 1.0)}),
        (Pix2Pix, {"gan_loss": "wasserstein"}),
        (Pix2Pix, {"norm": "group"}),
        (Pix2Pix, {"mr_percentiles": (50.0, 50.0)}),
        (Pix2Pix, {"context_slices": 3}),  # a 2.5D option
        (Pix2Pix25D, {**SMALL_25D, "context_slices": 4}),
        (Pix2Pix25D, {"lambda_l1": 10.0}),
    ],
)
def test_invalid_options_are_an_options_error(
    method_cls: type[Pix2Pix], options: dict[str, object]
) -> None:
    with pytest.raises(OptionsError, match=method_cls.id):
        method_cls(options)


def test_defaults_follow_the_paper() -> None:
    three_d, two_and_half_d = Pix2Pix().options, Pix2Pix25D().options

    assert (three_d.l1_weight, three_d.learning_rate, three_d.betas) == (100.0, 2e-4, (0.5, 0.999))
    assert (three_d.gan_loss, three_d.dropout, three_d.discriminator_layers) == ("vanilla", 0.5, 3)
    assert two_and_half_d.generator_filters == two_and_half_d.discriminator_filters == 64
    assert two_and_half_d.generator_depth == 8
    assert two_and_half_d.roi_size[:2] == (256, 256)
    assert two_and_half_d.context_slices == 3


def test_both_methods_are_registered_by_the_installed_plugin(medi2i_registry: Registry) -> None:
    assert medi2i_registry.method("pix2pix") is Pix2Pix
    assert medi2i_registry.method("pix2pix-2.5d") is Pix2Pix25D
    assert medi2i_registry.method_owner("pix2pix-2.5d") == "pix2pix"


def test_hook_module_imports_no_torch() -> None:
    code = "import sys, medi2i_pix2pix; print('torch' in sys.modules, 'monai' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


def test_card_describes_both_methods() -> None:
    card = yaml.safe_load(resources.files("medi2i_pix2pix").joinpath("card.yaml").read_text())

    assert sorted(card["ids"]) == sorted([Pix2Pix.id, Pix2Pix25D.id])
    assert card["version"] == Pix2Pix.version
    assert "clinical" in card["intended_use"]["out_of_scope"].lower()
