"""Bad volumes given to ``medi2i predict`` and ``medi2i evaluate``.

Missing, empty, truncated or mislabelled files; the wrong number of dimensions;
NaN, infinite or out-of-range voxels; constant or empty volumes; impossible
spacings; in NIfTI, NRRD and MetaImage. The promise each case is held to is stated
in ``bad_input_cases.py``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from tests.bad_input_cases import (
    Case,
    CaseBuilder,
    blobs,
    case_registry,
    check_bad_input,
    nifti,
    predict,
    sitk_file,
)

CASES: dict[str, CaseBuilder] = {}
case = case_registry(CASES)


@case("volume-missing")
def _(tmp: Path) -> Case:
    return Case(predict(tmp / "nope.nii.gz", tmp / "out.nii.gz"), "nope.nii.gz", "does not exist")


@case("volume-ct-in-hu-into-an-mr-model")
def _(tmp: Path) -> Case:
    values = np.full((16, 16, 12), -1000.0, np.float32)  # a CT's air around
    values[4:12, 4:12, 3:9] = 40.0  # soft tissue
    source = nifti(tmp / "ct.nii.gz", values)
    args = ["predict", str(source), str(tmp / "out.nii.gz"), "--method", "example-self-rescaling"]
    return Case([*args, "--no-progress"], "ct.nii.gz", "--force-modality", [tmp / "out.nii.gz"])


@case("volume-empty-file")
def _(tmp: Path) -> Case:
    (tmp / "empty.nii.gz").write_bytes(b"")
    return Case(predict(tmp / "empty.nii.gz", tmp / "out.nii.gz"), "empty.nii.gz")


@case("volume-truncated-nifti")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii", blobs())
    path.write_bytes(path.read_bytes()[:2000])
    return Case(predict(path, tmp / "out.nii.gz"), "t1.nii")


@case("volume-truncated-gzip")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    path.write_bytes(path.read_bytes()[:300])
    return Case(predict(path, tmp / "out.nii.gz"), "t1.nii.gz")


@case("volume-text-named-nifti")
def _(tmp: Path) -> Case:
    (tmp / "notes.nii").write_text("this is not an image\n" * 40)
    return Case(predict(tmp / "notes.nii", tmp / "out.nii.gz"), "notes.nii")


@case("volume-gzip-of-text")
def _(tmp: Path) -> Case:
    (tmp / "notes.nii.gz").write_bytes(gzip.compress(b"not an image" * 100))
    return Case(predict(tmp / "notes.nii.gz", tmp / "out.nii.gz"), "notes.nii.gz")


@case("volume-unknown-suffix")
def _(tmp: Path) -> Case:
    (tmp / "scan.txt").write_text("1 2 3")
    return Case(predict(tmp / "scan.txt", tmp / "out.nii.gz"), "scan.txt", "no reader")


@case("volume-2d")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "slice.nii.gz", blobs()[:, :, 0])
    return Case(predict(path, tmp / "out.nii.gz"), "slice.nii.gz", "2D")


@case("volume-4d-several")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "fmri.nii.gz", np.stack([blobs()] * 3, axis=-1))
    return Case(predict(path, tmp / "out.nii.gz"), "fmri.nii.gz", "3 volumes")


@case("volume-one-nan")
def _(tmp: Path) -> Case:
    values = blobs()
    values[3, 4, 5] = np.nan
    path = nifti(tmp / "nan.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "nan.nii.gz", "1 voxel(s) are NaN")


@case("volume-one-inf")
def _(tmp: Path) -> Case:
    values = blobs()
    values[0, 0, 0] = np.inf
    path = nifti(tmp / "inf.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "inf.nii.gz", "(0, 0, 0)")


@case("volume-many-minus-inf")
def _(tmp: Path) -> Case:
    values = blobs()
    values[:, :, 2] = -np.inf
    path = nifti(tmp / "minf.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "minf.nii.gz", f"{16 * 14} voxel(s)")


@case("volume-huge-value")
def _(tmp: Path) -> Case:
    values = blobs()
    values[5, 5, 5] = 3e38
    path = nifti(tmp / "huge.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "huge.nii.gz", "safe range")


@case("volume-huge-negative-value")
def _(tmp: Path) -> Case:
    values = blobs()
    values[5, 5, 5] = -1e13
    path = nifti(tmp / "neg.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "neg.nii.gz", "values reach -1e+13")


@case("nifti-zero-pixdim-without-forms")
def _(tmp: Path) -> Case:
    # no qform or sform, so the spacing is pixdim's alone, and one of them is 0 (nibabel
    # would read it as 1 mm)
    import struct

    path = nifti(tmp / "z.nii", blobs())
    raw = bytearray(path.read_bytes())
    struct.pack_into("<hh", raw, 252, 0, 0)  # qform_code, sform_code
    struct.pack_into("<f", raw, 80, 0.0)  # pixdim[1]
    path.write_bytes(bytes(raw))
    return Case(predict(path, tmp / "out.nii.gz"), "z.nii", "pixdim")


@case("volume-float64-beyond-float32")
def _(tmp: Path) -> Case:
    # finite in the file, infinite once cast to float32: still an out-of-range value,
    # not a NaN whose advice (--nonfinite zero) would silently zero it
    values = blobs().astype(np.float64)
    values[5, 5, 5] = 1e300
    path = nifti(tmp / "f64.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "f64.nii.gz", "values reach 1e+300")


@case("volume-uint64-near-2-63")
def _(tmp: Path) -> Case:
    values = (np.uint64(2**63) + np.arange(16 * 14 * 12, dtype=np.uint64)).reshape(16, 14, 12)
    path = nifti(tmp / "u64.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "u64.nii.gz", "safe range")


@case("volume-constant")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "flat.nii.gz", np.full((16, 14, 12), 250.0, np.float32))
    return Case(predict(path, tmp / "out.nii.gz"), "flat.nii.gz", "constant")


@case("volume-all-zero")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "zero.nii.gz", np.zeros((16, 14, 12), np.int16))
    return Case(predict(path, tmp / "out.nii.gz"), "zero.nii.gz", "constant")


@case("volume-empty-foreground")
def _(tmp: Path) -> Case:
    values = np.zeros((16, 14, 12), np.float32)
    values[1, 1, 1:4] = 50.0
    path = nifti(tmp / "speck.nii.gz", values)
    return Case(predict(path, tmp / "out.nii.gz"), "speck.nii.gz", "empty")


@case("volume-zero-spacing")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "flat-z.nii.gz", blobs(), np.diag([1.0, 1.0, 1e-20, 1.0]))
    return Case(predict(path, tmp / "out.nii.gz"), "flat-z.nii.gz", "spacing")


@case("volume-rgb")
def _(tmp: Path) -> Case:
    rgb = np.zeros((16, 14, 12), dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    path = tmp / "rgb.nii.gz"
    nib.save(nib.Nifti1Image(rgb, np.eye(4)), str(path))
    return Case(predict(path, tmp / "out.nii.gz"), "rgb.nii.gz")


@case("volume-nrrd-with-nan")
def _(tmp: Path) -> Case:
    values = blobs()
    values[2, 2, 2] = np.nan
    path = sitk_file(tmp / "nan.nrrd", values)
    return Case(predict(path, tmp / "out.nrrd"), "nan.nrrd", "NaN")


@case("volume-mha-constant")
def _(tmp: Path) -> Case:
    path = sitk_file(tmp / "flat.mha", np.ones((16, 14, 12), np.float32))
    return Case(predict(path, tmp / "out.mha"), "flat.mha", "constant")


@case("volume-truncated-nrrd")
def _(tmp: Path) -> Case:
    path = sitk_file(tmp / "cut.nrrd", blobs())
    path.write_bytes(path.read_bytes()[:400])
    return Case(predict(path, tmp / "out.nrrd"), "cut.nrrd")


@case("volume-mhd-without-raw")
def _(tmp: Path) -> Case:
    path = sitk_file(tmp / "split.mhd", blobs())
    (tmp / "split.raw").unlink()
    return Case(predict(path, tmp / "out.nii.gz"), "split")


# -- evaluation ----------------------------------------------------------------------------


@case("evaluate-grids-differ")
def _(tmp: Path) -> Case:
    nifti(tmp / "sct.nii.gz", blobs((16, 14, 12)))
    nifti(tmp / "ct.nii.gz", blobs((16, 14, 10)))
    args = ["evaluate", "-p", str(tmp / "sct.nii.gz"), "-r", str(tmp / "ct.nii.gz")]
    return Case(args, "ct.nii.gz")


@case("evaluate-mask-missing")
def _(tmp: Path) -> Case:
    nifti(tmp / "sct.nii.gz", blobs())
    nifti(tmp / "ct.nii.gz", blobs(seed=2))
    args = ["evaluate", "-p", str(tmp / "sct.nii.gz"), "-r", str(tmp / "ct.nii.gz")]
    return Case([*args, "-m", str(tmp / "mask.nii.gz")], "mask.nii.gz")


@case("evaluate-mask-empty")
def _(tmp: Path) -> Case:
    nifti(tmp / "sct.nii.gz", blobs())
    nifti(tmp / "ct.nii.gz", blobs(seed=2))
    nifti(tmp / "mask.nii.gz", np.zeros_like(blobs()))
    args = ["evaluate", "-p", str(tmp / "sct.nii.gz"), "-r", str(tmp / "ct.nii.gz")]
    return Case([*args, "-m", str(tmp / "mask.nii.gz")], "mask.nii.gz", cause="selects no voxel")


@case("evaluate-prediction-with-nan")
def _(tmp: Path) -> Case:
    # every metric would be NaN, printed as a score with exit status 0
    values = blobs()
    values[3, 4, 5] = np.nan
    nifti(tmp / "sct.nii.gz", values)
    nifti(tmp / "ct.nii.gz", blobs(seed=2))
    args = ["evaluate", "-p", str(tmp / "sct.nii.gz"), "-r", str(tmp / "ct.nii.gz")]
    return Case(args, "sct.nii.gz", cause="NaN or infinite")


@case("evaluate-reference-with-inf")
def _(tmp: Path) -> Case:
    values = blobs(seed=2)
    values[0, 0, 0] = -np.inf
    nifti(tmp / "sct.nii.gz", blobs())
    nifti(tmp / "ct.nii.gz", values)
    args = ["evaluate", "-p", str(tmp / "sct.nii.gz"), "-r", str(tmp / "ct.nii.gz")]
    return Case([*args, "--metrics", "mr"], "ct.nii.gz", cause="NaN or infinite")


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    check_bad_input(CASES[name], tmp_path, monkeypatch)


def test_a_boolean_volume_is_taken_as_zeros_and_ones() -> None:
    # a thresholded image given to the Python API: np.percentile of booleans raised a
    # numpy TypeError inside the method
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i import Registry, predict_tensor

    values = torch.zeros((1, 12, 12, 12), dtype=torch.bool)
    values[:, 3:9, 3:9, 3:9] = True
    mask = MetaTensor(values, affine=torch.eye(4))
    method = Registry().method("intensity-inversion")()
    result = predict_tensor(method, mask)
    assert result.dtype == torch.float32
    assert sorted(torch.unique(result).tolist()) == pytest.approx(
        sorted(torch.unique(predict_tensor(method, mask.float())).tolist())
    )
