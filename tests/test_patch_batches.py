"""The patch batches the trainer trains on: a pure function of seed, step and rank,
foreground-centred, padded, augmented identically for source and target (flips, turns,
rotations and zooms), and refused when they would not fit in memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from medi2i.data.cases import Case, CaseSet
from medi2i.errors import OptionsError
from medi2i.io import write_volume
from medi2i.method import DataKind
from medi2i.testing import make_volume
from medi2i.testing.trainable_examples import TinyRegression, write_paired_cases
from medi2i.training import AugmentationConfig, TrainingConfig, train
from medi2i.training.data import case_domains, training_store
from medi2i.training.patches import PatchSampler
from tests.training_helpers import NO_INTENSITY, quick


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> CaseSet:
    return write_paired_cases(tmp_path_factory.mktemp("cases"), count=3, shape=(24, 24, 24))


def _sampler(data: CaseSet, *, config: TrainingConfig, rank: int = 0) -> PatchSampler:
    assert config.patch_size is not None
    store = training_store(
        data,
        method=TinyRegression(),
        patch_size=config.patch_size,
        foreground_threshold=config.foreground_threshold,
        keep=config.cache == "memory",
    )
    return PatchSampler(
        store,
        kind=data.kind,
        groups=case_domains(data),
        patch_size=config.patch_size,
        batch_size=config.batch_size,
        patches_per_volume=config.patches_per_volume,
        foreground_ratio=config.foreground_ratio,
        augmentation=config.augmentation,
        seed=config.seed,
        rank=rank,
    )


def test_a_batch_is_a_pure_function_of_seed_step_and_rank(cases: CaseSet) -> None:
    sampler = _sampler(cases, config=quick())
    again = _sampler(cases, config=quick(cache="none"))
    first = sampler(step=5, micro=0)
    assert set(first) == {"source", "target"}
    assert first["source"].shape == first["target"].shape == (2, 1, 16, 16, 16)
    assert all(torch.equal(first[k], again(step=5, micro=0)[k]) for k in first)
    assert not torch.equal(first["source"], sampler(step=6, micro=0)["source"])
    assert not torch.equal(first["source"], sampler(step=5, micro=1)["source"])
    other_rank = _sampler(cases, config=quick(), rank=1)
    assert not torch.equal(first["source"], other_rank(step=5, micro=0)["source"])


def test_unlabelled_patches_join_the_paired_ones_without_changing_them(
    cases: CaseSet, tmp_path: Path
) -> None:
    from medi2i.testing.domain_cases import write_single_domain_cases

    unlabelled = write_single_domain_cases(tmp_path / "unlabelled", count=2, seed=40)
    plain = _sampler(cases, config=quick())
    joined = _sampler(cases, config=quick())
    joined.unlabelled = training_store(
        unlabelled,
        method=TinyRegression(),
        patch_size=(16, 16, 16),
        foreground_threshold=None,
        keep=True,
    )

    for step in range(3):
        batch, expected = joined(step=step, micro=0), plain(step=step, micro=0)
        assert set(batch) == {"source", "target", "unlabelled"}
        assert batch["unlabelled"].shape == batch["source"].shape
        assert all(torch.equal(batch[key], expected[key]) for key in expected)
        assert torch.equal(batch["unlabelled"], joined(step=step, micro=0)["unlabelled"])
    assert not torch.equal(joined(step=0, micro=0)["unlabelled"], batch["unlabelled"])


def test_spatial_augmentation_keeps_source_and_target_aligned(cases: CaseSet) -> None:
    sampler = _sampler(cases, config=quick(batch_size=8, augmentation=NO_INTENSITY))
    for step in range(3):
        batch = sampler(step=step, micro=0)
        # the toy target is a fixed linear function of the source, voxel by voxel
        expected = 2.0 * batch["source"] - 1.0
        torch.testing.assert_close(batch["target"], expected, rtol=1e-5, atol=1e-5)


def test_rotation_and_zoom_keep_source_and_target_aligned(cases: CaseSet) -> None:
    turned = NO_INTENSITY.model_copy(update={"affine_probability": 1.0})
    sampler = _sampler(cases, config=quick(batch_size=4, augmentation=turned))
    plain = _sampler(cases, config=quick(batch_size=4, augmentation=NO_INTENSITY))
    batch = sampler(step=0, micro=0)
    torch.testing.assert_close(batch["target"], 2.0 * batch["source"] - 1.0, rtol=1e-4, atol=1e-3)
    # resampled, so no longer any plain cut of the volume at that step
    assert not torch.equal(batch["source"], plain(step=0, micro=0)["source"])


def test_rotation_switched_off_draws_nothing(cases: CaseSet) -> None:
    """Runs without rotation get the batches they always got."""
    off = NO_INTENSITY.model_copy(update={"affine_probability": 0.0, "zoom_range": (0.5, 2.0)})
    first = _sampler(cases, config=quick(augmentation=NO_INTENSITY))(step=3, micro=0)
    second = _sampler(cases, config=quick(augmentation=off))(step=3, micro=0)
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_a_quarter_turn_through_the_affine_path_equals_rot90() -> None:
    from medi2i.training.patches import _cut

    volume = torch.arange(20 * 22 * 24, dtype=torch.float32).reshape(1, 20, 22, 24)
    quarter = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    plain = _cut(volume, (3, 4, 5), (8, 8, 8), (1, 1, 1))
    turned = _cut(volume, (3, 4, 5), (8, 8, 8), (1, 1, 1), quarter)
    torch.testing.assert_close(turned, torch.rot90(plain, 1, dims=(1, 2)), rtol=0, atol=1e-2)
    # a target on a grid twice as fine is the same cut, up-sampled
    fine = volume.repeat_interleave(2, 1).repeat_interleave(2, 2).repeat_interleave(2, 3)
    torch.testing.assert_close(
        _cut(fine, (3, 4, 5), (8, 8, 8), (2, 2, 2), np.eye(3)),
        _cut(fine, (3, 4, 5), (8, 8, 8), (2, 2, 2)),
        rtol=0,
        atol=1e-2,
    )


def test_bad_rotation_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="rotation_degrees"):
        AugmentationConfig(rotation_degrees=(0.0, 0.0, 200.0))
    for zoom in [(0.0, 1.2), (1e-300, 1e-300), (1.0, 1e300)]:
        with pytest.raises(ValueError, match="zoom_range"):
            AugmentationConfig(zoom_range=zoom)


def test_patches_are_centred_on_the_foreground(tmp_path: Path) -> None:
    image = make_volume((32, 32, 32), kind="constant")  # 100 everywhere...
    image[:, 22:26, 4:8, 12:16] = 1000.0  # ...but in a small cube
    mask = make_volume((32, 32, 32), kind="constant")
    mask[:] = 0.0
    mask[:, 22:26, 4:8, 12:16] = 1.0
    paths = {
        "source": write_volume(image, tmp_path / "source.nii.gz"),
        "target": write_volume(image, tmp_path / "target.nii.gz"),
        "mask": write_volume(mask, tmp_path / "mask.nii.gz"),
    }
    data = CaseSet(kind=DataKind.PAIRED, cases=(Case(id="one", images=paths),))
    config = quick(patch_size=(8, 8, 8), batch_size=16, foreground_ratio=1.0)
    sampler = _sampler(data, config=config.model_copy(update={"augmentation": NO_INTENSITY}))
    for step in range(4):
        patches = sampler(step=step, micro=0)["source"]  # preprocessed: intensity / 1000
        assert (patches.amax(dim=(1, 2, 3, 4)) == 1.0).all()


def test_volumes_smaller_than_a_patch_are_padded_by_edge_replication(cases: CaseSet) -> None:
    config = quick(patch_size=(32, 16, 16), augmentation={"enabled": False})
    batch = _sampler(cases, config=config)(step=0, micro=0)
    assert batch["source"].shape == (2, 1, 32, 16, 16)
    # the 24 voxels along x are the whole volume; the 8 past its far end repeat the last
    for role in ("source", "target"):
        padding = batch[role][:, :, 24:]
        assert torch.equal(padding, batch[role][:, :, 23:24].expand_as(padding))


def test_a_patch_size_whose_padding_would_not_fit_in_memory_is_refused(
    cases: CaseSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    import medi2i.io.base

    monkeypatch.setattr(medi2i.io.base, "physical_memory", lambda: 2 * 64**3 * 4)
    with pytest.raises(OptionsError, match=r"case 'case-0': training\.patch_size \(96, 96, 96\)"):
        _sampler(cases, config=quick(patch_size=(96, 96, 96)))
    _sampler(cases, config=quick(patch_size=(32, 16, 16)))  # a little padding is fine


def test_a_batch_that_would_not_fit_in_memory_is_refused_before_reading(
    cases: CaseSet, tmp_path: Path
) -> None:
    config = quick(batch_size=100_000_000)
    with pytest.raises(OptionsError, match=r"training\.batch_size 100000000 of \(16, 16, 16\)"):
        train(TinyRegression(), cases, config=config, run_dir=tmp_path / "run")
    assert not (tmp_path / "run" / "model").exists()


def test_batches_of_unpaired_and_multi_domain_data(tmp_path: Path) -> None:
    def image_case(name: str, domain: str, seed: int) -> Case:
        path = write_volume(make_volume((20, 20, 20), seed=seed), tmp_path / f"{name}.nii.gz")
        return Case(id=name, images={"image": path}, domain=domain)

    all_cases = tuple(image_case(f"c{i}", "ABC"[i % 3], i) for i in range(6))
    unpaired = CaseSet(kind=DataKind.UNPAIRED, cases=all_cases[:2] + all_cases[3:5])
    batch = _sampler(unpaired, config=quick())(step=0, micro=0)
    assert set(batch) == {"a", "b"}
    assert batch["a"].shape == (2, 1, 16, 16, 16)

    multi = CaseSet(kind=DataKind.MULTI_DOMAIN, cases=all_cases, domains=("A", "B", "C"))
    labels = torch.cat(
        [_sampler(multi, config=quick())(step=s, micro=0)["domain"] for s in range(20)]
    )
    assert labels.dtype == torch.int64
    assert set(labels.tolist()) == {0, 1, 2}
