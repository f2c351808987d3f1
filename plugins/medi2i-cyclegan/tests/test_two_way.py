"""Tests of what both methods share: the contracts, the direction condition, per-domain
intensities, and training to prediction through medi2i's public API."""

from __future__ import annotations

import subprocess
import sys
import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from medi2i_cyclegan.cyclegan import CycleGAN
from medi2i_cyclegan.discogan import DiscoGAN
from medi2i_cyclegan.slice_methods import CycleGAN25D, DiscoGAN25D
from medi2i_cyclegan.two_way import Direction, TwoWayTranslation
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import (
    AIR_HU,
    DomainScales,
    DomainSpec,
    InferenceSettings,
    OptionsError,
    Registry,
    predict_tensor,
)
from medi2i.testing import (
    UNPAIRED_DOMAINS,
    check_distributed_training,
    check_method_contract,
    check_training_contract,
    make_volume,
    write_unpaired_cases,
    write_volume_file,
)
from medi2i.training import TrainingConfig, train

TINY_CYCLEGAN = {
    "roi_size": (16, 16, 16),
    "generator_filters": 2,
    "residual_blocks": 1,
    "outer_kernel": 3,
    "discriminator_filters": 2,
    "discriminator_layers": 2,
    "pool_size": 3,
}
TINY_DISCOGAN = {
    "roi_size": (16, 16, 16),
    "generator_filters": 2,
    "discriminator_filters": 2,
    "curriculum_steps": 2,
}
SLICES = {"roi_size": (16, 16, 4)}
METHODS = [
    (CycleGAN, TINY_CYCLEGAN),
    (DiscoGAN, TINY_DISCOGAN),
    (CycleGAN25D, {**TINY_CYCLEGAN, **SLICES}),
    (DiscoGAN25D, {**TINY_DISCOGAN, **SLICES}),
]
IDS = ["cyclegan", "discogan", "cyclegan-2.5d", "discogan-2.5d"]
SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
DIRECTION = Direction(direction="a2b")


def trained_looking(method_cls: type[TwoWayTranslation], options: dict[str, object]) -> object:
    """A method with the toy MR/CT domains, as a trained model has them."""
    method = method_cls(options)
    method.use_domains(UNPAIRED_DOMAINS)
    return method


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
@pytest.mark.parametrize("direction", ["a2b", "b2a"])
def test_keeps_the_method_contract_both_ways(
    method_cls: type[TwoWayTranslation], options: dict[str, object], direction: str
) -> None:
    check_method_contract(method_cls, options=options, condition={"direction": direction})


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_keeps_the_training_contract_with_exact_resume(
    method_cls: type[TwoWayTranslation], options: dict[str, object], tmp_path: Path
) -> None:
    # four steps: the DiscoGAN run updates its discriminators (steps 0 and 3) and its
    # generators, in and out of the curriculum; the CycleGAN run fills and uses its pools
    check_training_contract(method_cls, tmp_path, options=options, steps=4)


@pytest.mark.slow
@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_trains_with_ddp_under_torchrun(
    method_cls: type[TwoWayTranslation], options: dict[str, object], tmp_path: Path
) -> None:
    # four steps: DiscoGAN updates its discriminators and its generators in turn
    check_distributed_training(method_cls, tmp_path, options=options, steps=4)


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_each_direction_writes_its_target_domains_modality(
    method_cls: type[TwoWayTranslation], options: dict[str, object]
) -> None:
    method = trained_looking(method_cls, options)
    assert isinstance(method, TwoWayTranslation)

    (to_ct,) = method.outputs(method.parse_condition({"direction": "a2b"}))
    (to_mr,) = method.outputs(method.parse_condition({"direction": "b2a"}))

    assert (to_ct.domain, to_ct.spec.modality, to_ct.spec.units) == ("ct", "CT", "HU")
    assert (to_mr.domain, to_mr.spec.modality) == ("mr", "MR")
    assert method.input_domain(method.parse_condition({})) == "mr"  # a2b by default
    assert method.input_domain(method.parse_condition({"direction": "b2a"})) == "ct"


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
@pytest.mark.parametrize(
    ("condition", "message"),
    [
        ({"direction": "mr2ct"}, r"direction: Input should be 'a2b' or 'b2a'"),
        ({"to": "ct"}, r"to: Extra inputs are not permitted"),
    ],
)
def test_a_bad_direction_is_an_options_error_naming_the_choices(
    method_cls: type[TwoWayTranslation],
    options: dict[str, object],
    condition: dict[str, object],
    message: str,
) -> None:
    method = trained_looking(method_cls, options)
    assert isinstance(method, TwoWayTranslation)

    with pytest.raises(OptionsError, match=message):
        method.parse_condition(condition)


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_an_untrained_method_has_no_direction_to_take(
    method_cls: type[TwoWayTranslation], options: dict[str, object]
) -> None:
    with pytest.raises(OptionsError, match="has no domains: train it"):
        method_cls(options).parse_condition({"direction": "a2b"})


def _with_air(volume: MetaTensor) -> MetaTensor:
    """The volume inside a 5-voxel margin of air (0), as a body in its field of view;
    the blobs alone fill their box, and a volume without air is all body."""
    values = torch.zeros(volume.shape)
    values[:, 5:-5, 5:-5, 5:-5] = volume.as_tensor()[:, 5:-5, 5:-5, 5:-5]
    return MetaTensor(values, affine=volume.affine)


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_mr_to_ct_is_air_outside_the_body_and_in_hounsfield_units(
    method_cls: type[TwoWayTranslation], options: dict[str, object]
) -> None:
    method = trained_looking(method_cls, options)
    assert isinstance(method, TwoWayTranslation)
    mr = _with_air(make_volume((24, 24, 24), seed=2))
    outside = ~torch.from_numpy(medi2i.body_mask(mr.numpy()))

    ct = predict_tensor(method, mr, settings=SETTINGS, condition={"direction": "a2b"})

    assert bool(outside.any())
    assert torch.all(ct[0][outside] == AIR_HU)
    assert -1024.0 <= float(ct.min()) <= float(ct.max()) <= 3071.0


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_body_contour_off_leaves_the_air_to_the_network(
    method_cls: type[TwoWayTranslation], options: dict[str, object]
) -> None:
    # the untrained-looking networks may saturate to one value: seen, not delivered
    method = trained_looking(method_cls, {**options, "body_contour": False})
    assert isinstance(method, TwoWayTranslation)
    mr = _with_air(make_volume((24, 24, 24), seed=2))
    outside = ~torch.from_numpy(medi2i.body_mask(mr.numpy()))

    ct = predict_tensor(
        method, mr, settings=SETTINGS, condition={"direction": "a2b"}, allow_constant=True
    )

    assert not torch.all(ct[0][outside] == AIR_HU)


def test_ct_to_mr_gets_no_body_contour_and_is_on_the_mr_training_scale() -> None:
    method = trained_looking(DiscoGAN, TINY_DISCOGAN)
    assert isinstance(method, DiscoGAN)
    method.load_state_values({"scale.mr": [100.0, 300.0]})
    ct = make_volume((24, 24, 24), seed=3) * 4.0 - 1000.0

    mr = predict_tensor(
        method, ct, settings=SETTINGS, condition={"direction": "b2a"}, allow_constant=True
    )

    # tanh outputs in (-1, 1) land in (100, 300): the MR domain's training scale
    assert 100.0 < float(mr.min()) <= float(mr.max()) < 300.0


def brain_and_scalp(*, scalp: bool) -> torch.Tensor:
    """A 'brain' of intensities 100-200 in a dark background, optionally wrapped in a
    brighter 'scalp' (400), as a whole head looks against brain-only training data."""
    volume = torch.zeros(1, 24, 24, 24)
    if scalp:
        volume[:, 3:21, 3:21, 3:21] = 400.0
    ramp = torch.linspace(100.0, 200.0, 16).reshape(1, 16, 1, 1)
    volume[:, 4:20, 4:20, 4:20] = ramp.expand(1, 16, 16, 16)
    return volume


@pytest.mark.parametrize("input_scale", ["volume", "domain"])
def test_input_scale_domain_scales_a_prediction_by_the_training_scale(input_scale: str) -> None:
    method = trained_looking(CycleGAN, {**TINY_CYCLEGAN, "input_scale": input_scale})
    assert isinstance(method, CycleGAN)
    brain = brain_and_scalp(scalp=False)
    method.preprocess(MetaTensor(brain), domain="mr")  # a training volume: recorded
    head = MetaTensor(brain_and_scalp(scalp=True))

    alone = method.preprocess(MetaTensor(brain), domain="mr", condition=DIRECTION)
    within = method.preprocess(head, domain="mr", condition=DIRECTION)

    inside = (slice(None), slice(4, 20), slice(4, 20), slice(4, 20))
    same = torch.allclose(alone[inside], within[inside])
    assert same == (input_scale == "domain")  # the scalp moves the volume's percentiles


@pytest.mark.parametrize(
    ("gain", "rule", "warns"),
    [
        (1.0, "body", False),
        (8.0, "body", True),
        (1.0, "above-mean", False),
        (8.0, "above-mean", True),
        (0.1, "above-mean", True),
        # the body's scale reaches down to near-zero signal, so a darker input's median
        # stays inside it; its upper percentile, a tenth of the training one's, does not
        (0.1, "body", True),
        (0.6, "body", False),
    ],
)
def test_an_input_in_other_units_than_its_domains_training_scale_warns(
    gain: float, rule: str, warns: bool
) -> None:
    options = {**TINY_CYCLEGAN, "input_scale": "domain", "foreground": rule}
    method = trained_looking(CycleGAN, options)
    assert isinstance(method, CycleGAN)
    method.preprocess(MetaTensor(brain_and_scalp(scalp=False)), domain="mr")
    other = MetaTensor(brain_and_scalp(scalp=True) * gain)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        method.preprocess(other, domain="mr", condition=DIRECTION)

    found = [w for w in caught if issubclass(w.category, medi2i.IntensityScaleWarning)]
    assert bool(found) == warns
    assert not found or "'mr'" in str(found[0].message)


@pytest.mark.parametrize("clip", [True, False])
def test_clip_intensities_off_keeps_tissue_beyond_the_percentiles(clip: bool) -> None:
    method = trained_looking(CycleGAN, {**TINY_CYCLEGAN, "clip_intensities": clip})
    assert isinstance(method, CycleGAN)
    head = MetaTensor(brain_and_scalp(scalp=True))
    head[:, 3, 3, 3] = 5000.0  # one voxel far above the 99.5th percentile

    scaled = method.preprocess(head, domain="mr", condition=DIRECTION)

    assert (float(scaled.max()) == 1.0) == clip
    assert float(scaled.max()) > 10.0 or clip


def test_domain_scales_count_each_training_volume_once() -> None:
    scales = DomainScales()
    first = torch.tensor([0.0, 0.0, 10.0, 20.0])
    second = torch.tensor([0.0, 0.0, 30.0, 40.0])

    for volume in (first, second, first):  # read again on resume: still two volumes
        scales.record("A", volume, (0.0, 100.0))

    assert scales.scale("A") == (20.0, 30.0)
    assert scales.scale("B") is None
    restored = DomainScales()
    restored.load_state(scales.state())
    assert restored.scale("A") == (20.0, 30.0)


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_prediction_is_deterministic(
    method_cls: type[TwoWayTranslation], options: dict[str, object]
) -> None:
    method = trained_looking(method_cls, options)
    assert isinstance(method, TwoWayTranslation)
    mr = make_volume((24, 20, 16), seed=4)

    first = predict_tensor(
        method, mr, settings=SETTINGS, condition={"direction": "a2b"}, allow_constant=True
    )
    second = predict_tensor(
        method, mr, settings=SETTINGS, condition={"direction": "a2b"}, allow_constant=True
    )

    assert torch.equal(first, second)


@pytest.mark.parametrize(("method_cls", "options"), METHODS, ids=IDS)
def test_train_save_load_and_predict_both_directions(
    method_cls: type[TwoWayTranslation], options: dict[str, object], tmp_path: Path
) -> None:
    cases = write_unpaired_cases(tmp_path / "data", per_domain=1, shape=(20, 20, 20))
    config = TrainingConfig(steps=3, batch_size=2, device="cpu", progress=False)

    result = train(method_cls(options), cases, config=config, run_dir=tmp_path / "run")
    mr_file = write_volume_file(tmp_path, "mr.nii.gz", shape=(20, 20, 20), seed=5)
    ct_file = tmp_path / "ct.nii.gz"  # b2a takes CT in HU: an MR is refused
    medi2i.write_volume(make_volume((20, 20, 20), seed=5) * 2.0 - 1000.0, ct_file)
    sources = {"a2b": mr_file, "b2a": ct_file}
    written = {
        direction: medi2i.predict(
            sources[direction],
            tmp_path / f"{direction}.nii.gz",
            model=result.model_dir,
            settings=SETTINGS,
            condition={"direction": direction},
        )
        for direction in ("a2b", "b2a")
    }

    trained = medi2i.load_model(result.model_dir)
    assert isinstance(trained, method_cls)
    assert trained.domain_names == ("mr", "ct")
    assert "scale.mr" in trained.state_values()
    sct = medi2i.read_volume(written["a2b"]).numpy()
    assert -1024.0 <= sct.min() <= sct.max() <= 3071.0
    assert written["b2a"].is_file()


def test_both_methods_are_registered_by_the_plugin(medi2i_registry: Registry) -> None:
    assert medi2i_registry.method("cyclegan") is CycleGAN
    assert medi2i_registry.method("discogan") is DiscoGAN
    assert medi2i_registry.method("cyclegan-2.5d") is CycleGAN25D
    assert medi2i_registry.method("discogan-2.5d") is DiscoGAN25D
    assert medi2i_registry.method_owner("discogan-2.5d") == "cyclegan"


def test_hook_module_imports_no_torch() -> None:
    code = "import sys, medi2i_cyclegan; print('torch' in sys.modules, 'monai' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )

    assert result.stdout.split() == ["False", "False"]


def test_card_describes_both_methods() -> None:
    card = yaml.safe_load(resources.files("medi2i_cyclegan").joinpath("card.yaml").read_text())

    assert sorted(card["ids"]) == ["cyclegan", "cyclegan-2.5d", "discogan", "discogan-2.5d"]
    assert card["version"] == CycleGAN.version == DiscoGAN.version
    assert "clinical" in card["intended_use"]["out_of_scope"].lower()


def test_the_domains_come_from_the_data(tmp_path: Path) -> None:
    scanners = (DomainSpec(name="B", modality="MR"), DomainSpec(name="A", modality="MR"))
    cases = write_unpaired_cases(tmp_path / "data", domains=scanners, per_domain=1)
    config = TrainingConfig(steps=1, batch_size=2, device="cpu", progress=False)

    result = train(DiscoGAN(TINY_DISCOGAN), cases, config=config, run_dir=tmp_path / "run")

    trained = medi2i.load_model(result.model_dir)
    assert trained.domain_names == ("B", "A")
    (output,) = trained.outputs(trained.parse_condition({"direction": "a2b"}))
    assert (output.domain, output.spec.modality) == ("A", "MR")
    assert sorted(trained.state_values()) == ["scale.A", "scale.B"]
    assert np.isfinite(trained.state_values()["scale.A"]).all()  # type: ignore[arg-type]
