"""Bad command-line options of ``medi2i predict``.

An unknown method, a malformed or alias-bombed ``-o``, and out-of-range
``--roi-size``, ``--overlap``, ``--mirror-axes`` and ``--reflect-padding`` values. The
promise each case is held to is stated in ``bad_input_cases.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.bad_input_cases import (
    Case,
    CaseBuilder,
    blobs,
    case_registry,
    check_bad_input,
    nifti,
    predict,
)

CASES: dict[str, CaseBuilder] = {}
case = case_registry(CASES)


@case("option-unknown-method")
def _(tmp: Path) -> Case:
    source = nifti(tmp / "t1.nii.gz", blobs())
    args = ["predict", str(source), str(tmp / "o.nii.gz"), "--method", "no-such-thing"]
    return Case(args, "no-such-thing")


@case("option-bad-key-value")
def _(tmp: Path) -> Case:
    return Case(predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "-o", "oops"), "oops")


@case("option-alias-bomb")
def _(tmp: Path) -> Case:
    bomb = "[" + ",".join(["&a [1,1,1,1,1,1,1,1,1,1]"] + ["*a"] * 150) + "]"
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "-o", f"x={bomb}")
    return Case(args, "--option", "aliases")


@case("option-bad-roi")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "--roi-size", "0,4")
    return Case(args, "--roi-size")


@case("option-list-too-short")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "-o", "roi_size=[16]")
    return Case(args, "roi_size: too few items (1 given)")


@case("option-overlap-out-of-range")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "--overlap", "1.5")
    return Case(args, "overlap")


@case("option-overlap-nan")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "--overlap", "nan")
    return Case(args, "overlap")


@case("option-mirror-axes-not-numbers")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "--mirror-axes", "x,y")
    return Case(args, "--mirror-axes")


@case("option-mirror-axis-out-of-range")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "--mirror-axes", "0,3")
    return Case(args, "mirror_axes")


@case("option-reflect-padding-negative")
def _(tmp: Path) -> Case:
    args = predict(
        nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "--reflect-padding", "4,-1,0"
    )
    return Case(args, "--reflect-padding")


@case("option-reflect-padding-two-numbers")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz", "--reflect-padding", "4,4")
    return Case(args, "--reflect-padding")


POOLING_NETWORK = """\
import torch
import torch.nn.functional as F

from medi2i.hookspecs import hookimpl
from medi2i.method import DataKind, Options, Task, VolumeSpec
from medi2i.patch_network import PatchNetworkMethod


class Pooled(torch.nn.Module):
    def forward(self, x):
        coarse = F.instance_norm(F.avg_pool3d(x, 4))  # one voxel per axis from a 4-window
        return x + F.interpolate(coarse, size=tuple(x.shape[2:]))


class PoolingOptions(Options):
    roi_size: tuple[int, int, int] = (8, 8, 8)


class PoolingNet(PatchNetworkMethod):
    id = "pooling-net"
    tasks = (Task.TRANSLATION,)
    data = DataKind.NONE  # untrained, so that --method runs it
    input_spec = VolumeSpec(modality="MR", units="arbitrary")
    output_spec = VolumeSpec(modality="MR", units="arbitrary")
    Options = PoolingOptions

    def build_network(self):
        return Pooled()


@hookimpl
def register_methods(register):
    register(PoolingNet)
"""


@case("option-window-too-small-for-the-network")
def _(tmp: Path) -> Case:
    source = nifti(tmp / "t1.nii.gz", blobs())
    args = ["predict", str(source), str(tmp / "o.nii.gz"), "--method", "pooling-net",
            "--no-progress", "--roi-size", "4"]  # fmt: skip
    plugins = {"pooling_net": POOLING_NETWORK}
    return Case(args, "--roi-size", "too small", [tmp / "o.nii.gz"], plugins)


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_bad_input(CASES[name], tmp_path, monkeypatch)
