"""Which voxels normalize an MR volume: a field of view with more or less air around the
body must not change what a method makes of the body (the ``"body"`` foreground rule),
and models saved before the rule existed keep the one they were trained with."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

from medi2i import (
    DomainScales,
    MRNormalization,
    MRToCTIntensities,
    NoCondition,
    Options,
    PatchNetworkMethod,
    Task,
    VolumeSpec,
    body_mask,
    foreground,
    normalize_mr,
)
from medi2i.intensity import MRForeground, foreground_rule
from medi2i.model_folder import LEGACY_OPTION_VALUES, load_model, save_model, saved_options
from tests.contract_v2_methods import registry_with


def chest(pad: int) -> np.ndarray:
    """A body (an ellipse of soft tissue from 150 to 850 across it, fat under the skin,
    dark lungs) with ``pad`` voxels of noisy air around it in x and y."""
    rng = np.random.default_rng(0)
    x, y = np.mgrid[-20:20, -14:14]
    body = (x / 19.0) ** 2 + (y / 13.0) ** 2 <= 1.0
    core = (x / 16.0) ** 2 + (y / 10.0) ** 2 <= 1.0
    lungs = ((np.abs(x) - 8) / 5.0) ** 2 + (y / 6.0) ** 2 <= 1.0
    plane = np.where(body, 1000.0, 0.0)
    plane[core] = (500.0 + 350.0 * x / 16.0)[core]
    plane[lungs] = 20.0
    volume = np.repeat(plane[:, :, None], 12, axis=2).astype(np.float32)
    volume = np.pad(volume, ((pad, pad), (pad, pad), (0, 0)))
    return volume + rng.normal(0.0, 8.0, volume.shape).astype(np.float32)


def centre(volume: np.ndarray, pad: int) -> np.ndarray:
    return volume[..., pad : volume.shape[-3] - pad, pad : volume.shape[-2] - pad, :]


@pytest.mark.parametrize("scheme", ["percentile", "zscore"])
def test_the_body_rule_ignores_the_air_around_the_body(scheme: MRNormalization) -> None:
    wide, tight = chest(pad=30), chest(pad=2)
    results = {}
    for rule in ("body", "above-mean"):
        normalized = [
            normalize_mr(torch.from_numpy(v), scheme=scheme, percentiles=(0.5, 99.5), rule=rule)
            for v in (wide, tight)
        ]
        # the same body voxels (the noise differs: compare the soft tissue's median)
        soft = [
            float(np.median(centre(n.numpy(), p)[20, 14]))
            for n, p in zip(normalized, (30, 2), strict=True)
        ]
        results[rule] = abs(soft[0] - soft[1])
    assert results["body"] < 0.02
    # the rule of older models moves with the air: the test can tell the two apart
    assert results["above-mean"] > 5 * results["body"] + 0.05


def test_the_body_rule_takes_the_voxels_of_the_body_mask() -> None:
    volume = chest(pad=10)
    np.testing.assert_array_equal(
        np.sort(foreground(volume, "body")), np.sort(volume[body_mask(volume)])
    )
    given = np.zeros(volume.shape, bool)
    given[10:20, 10:20, :] = True  # a mask the caller has is used as it is
    assert foreground(volume, "body", body=given).size == given.sum()
    channels = np.stack([volume, volume * 2])  # channel first: one mask for all channels
    assert foreground(channels, "body").size == 2 * body_mask(volume).sum()


def test_domain_scales_record_with_the_rule() -> None:
    wide, tight = chest(pad=30), chest(pad=2)
    lows = {}
    for rule in ("body", "above-mean"):
        scales = DomainScales()
        scales.record("wide", torch.from_numpy(wide), (0.5, 99.5), rule)
        scales.record("tight", torch.from_numpy(tight), (0.5, 99.5), rule)
        lows[rule] = [scales.scale(name)[0] for name in ("wide", "tight")]  # type: ignore[index]
    assert abs(lows["body"][0] - lows["body"][1]) < 10.0
    assert abs(lows["above-mean"][0] - lows["above-mean"][1]) > 100.0


class RuleOptions(Options):
    mr_normalization: MRNormalization = "percentile"
    mr_percentiles: tuple[float, float] = (0.5, 99.5)
    mr_foreground: MRForeground = "body"
    body_contour: bool = True


class Identity(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return windows * self.scale


class EchoCT(MRToCTIntensities, PatchNetworkMethod[RuleOptions, NoCondition]):
    """Writes its normalized input as a CT: what the network would see, in HU."""

    id = "test-echo-ct"
    tasks = (Task.TRANSLATION,)
    input_spec = VolumeSpec(modality="MR")
    output_spec = VolumeSpec(modality="CT", units="HU")
    default_roi_size = (16, 16, 12)

    def build_network(self) -> torch.nn.Module:
        return Identity()


def metatensor(volume: np.ndarray) -> MetaTensor:
    return MetaTensor(torch.from_numpy(volume)[None], affine=torch.eye(4, dtype=torch.float64))


@pytest.mark.parametrize("rule", ["body", "above-mean"])
def test_the_mr_to_ct_recipe_uses_the_options_rule(rule: MRForeground) -> None:
    volume = chest(pad=6)
    method = EchoCT({"mr_foreground": rule})
    assert foreground_rule(method.options) == rule
    prepared = method.preprocess(metatensor(volume), condition=NoCondition())
    expected = normalize_mr(
        torch.from_numpy(volume)[None], scheme="percentile", percentiles=(0.5, 99.5), rule=rule
    )
    np.testing.assert_array_equal(prepared.numpy(), expected.numpy())
    # the contour's mask is the one the statistics came from
    np.testing.assert_array_equal(prepared.meta["medi2i.body_mask"].unpack(), body_mask(volume))


def test_options_without_the_field_keep_the_older_rule() -> None:
    assert foreground_rule(object()) == "above-mean"
    assert foreground_rule(RuleOptions()) == "body"


def test_a_model_saved_before_the_option_loads_with_the_older_rule(tmp_path: Path) -> None:
    registry = registry_with(EchoCT)
    method = EchoCT()
    assert method.network is not None  # built on first use
    folder = tmp_path / "model"
    save_model(method, folder)
    manifest = json.loads((folder / "medi2i-model.json").read_text())
    assert manifest["options"]["mr_foreground"] == "body"  # new models say what they use
    assert load_model(folder, registry=registry).options.mr_foreground == "body"
    older = tmp_path / "older"
    shutil.copytree(folder, older)
    del manifest["options"]["mr_foreground"]
    (older / "medi2i-model.json").write_text(json.dumps(manifest))
    assert load_model(older, registry=registry).options.mr_foreground == "above-mean"


def test_legacy_values_apply_only_to_fields_the_method_has() -> None:
    assert saved_options(EchoCT, {}) == {"mr_foreground": "above-mean"}
    assert saved_options(EchoCT, {"mr_foreground": "body"}) == {"mr_foreground": "body"}
    assert set(LEGACY_OPTION_VALUES) == {"mr_foreground", "foreground"}


def test_an_unknown_rule_or_a_mask_of_another_grid_is_refused() -> None:
    from medi2i import GeometryError, OptionsError

    volume = chest(pad=4)
    for rule in ("Body", "bdy", None):
        with pytest.raises(OptionsError, match="foreground rule"):
            foreground(volume, rule)  # type: ignore[arg-type]
    with pytest.raises(GeometryError, match="body mask has shape"):
        foreground(volume, "body", body=np.ones((4, 4, 4), bool))
    with pytest.raises(OptionsError, match="'body' only"):
        foreground(volume, "above-mean", body=body_mask(volume))


@pytest.mark.parametrize("channels", [(), (1,), (3,)])
def test_body_foreground_is_the_masked_voxels_without_index_arrays(
    channels: tuple[int, ...],
) -> None:
    """The body's voxels, channel by channel in the mask's C order, as
    ``values[..., mask]`` gives them, but without NumPy's int64 index arrays for a mask
    after an ellipsis (three per selected voxel: the preprocess peak of P6's U-Net row
    went from 2.5 to 8.7 float32 volumes when the body became the default)."""
    import tracemalloc

    rng = np.random.default_rng(0)
    values = np.asfortranarray(rng.random((*channels, 40, 30, 20), dtype=np.float32))
    body = rng.random((40, 30, 20)) > 0.2
    expected = values[..., body].ravel()
    tracemalloc.start()
    try:
        got = foreground(values, "body", body=body)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert got.dtype == values.dtype
    np.testing.assert_array_equal(got, expected)
    assert peak < 1.5 * expected.nbytes + 65536
