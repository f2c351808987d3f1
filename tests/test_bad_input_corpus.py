"""A corpus of bad inputs, each run through the command line as a careless user would.

Every case builds its files in ``tmp_path`` (nothing binary is committed), runs one
command in process, and asserts what medi2i promises for bad input: a non-zero exit,
one line on stderr that starts with ``Error:`` and names the file (or option) at fault,
no traceback, no new file anywhere (no partial output, no temporary left behind), and
every file that existed before (inputs and earlier outputs) byte for byte unchanged.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import sys
import warnings
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

from medi2i.cli.main import build_cli
from medi2i.plugins import PluginWarning, load_plugins
from medi2i.testing import example_methods


@dataclass
class Case:
    """One bad input: the command's arguments and what its message must name."""

    args: list[str]
    names: str
    """Text the one-line message must contain (a file name, an option)."""
    cause: str = ""
    """Text (case-insensitive) that says the real cause."""
    absent: list[Path] = field(default_factory=list)
    """Paths that must still not exist afterwards (no partial output)."""
    plugins: dict[str, str] = field(default_factory=dict)
    """Plugins installed for the case: entry-point name -> module source."""


CASES: dict[str, Callable[[Path], Case]] = {}


def case(name: str) -> Callable[[Callable[[Path], Case]], Callable[[Path], Case]]:
    def add(build: Callable[[Path], Case]) -> Callable[[Path], Case]:
        assert name not in CASES, name
        CASES[name] = build
        return build

    return add


# -- builders ------------------------------------------------------------------------------


def blobs(shape: tuple[int, int, int] = (16, 14, 12), seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.normal(400.0, 120.0, shape)).astype(np.float32)


def nifti(path: Path, values: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # nibabel warns about the broken headers made here
        image = nib.Nifti1Image(values, np.eye(4) if affine is None else affine, dtype=values.dtype)
        nib.save(image, str(path))
    return path


def sitk_file(path: Path, values: np.ndarray) -> Path:
    import SimpleITK as sitk

    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(
        sitk.GetImageFromArray(np.ascontiguousarray(values.transpose(2, 1, 0))), str(path)
    )
    return path


def series(folder: Path, modality: str = "MR", **kwargs: object) -> Path:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(3).normal(300.0, 80.0, (12, 10, 6)).round()
    write_series(folder, volume.astype(np.float32), modality=modality, rescale=(1.0, 0.0), **kwargs)  # type: ignore[arg-type]
    return folder


def model(tmp: Path, edit: Callable[[dict[str, object]], None] | None = None) -> Path:
    from medi2i.model_folder import save_model
    from medi2i.testing.example_methods import PointwiseNet

    folder = save_model(PointwiseNet(), tmp / "model")
    if edit is not None:
        manifest = folder / "medi2i-model.json"
        data = json.loads(manifest.read_text())
        edit(data)
        manifest.write_text(json.dumps(data))
    return folder


def predict(source: Path, output: Path, *extra: str) -> list[str]:
    return ["predict", str(source), str(output), "--method", "intensity-inversion",
            "--no-progress", *extra]  # fmt: skip


WORKFLOW = """\
data:
  kind: paired
  layout:
    type: synthrad
    root: cases
method:
  id: example-pointwise-net
"""


def workflow(tmp: Path, text: str, name: str = "workflow.yaml") -> Path:
    path = tmp / name
    path.write_text(text)
    return path


# -- volumes -------------------------------------------------------------------------------


@case("volume-missing")
def _(tmp: Path) -> Case:
    return Case(predict(tmp / "nope.nii.gz", tmp / "out.nii.gz"), "nope.nii.gz", "does not exist")


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


# -- output paths --------------------------------------------------------------------------


@case("output-is-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "same.nii.gz", blobs())
    return Case(predict(path, path), "same.nii.gz", "is the input")


@case("output-is-input-with-overwrite")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "same.nii.gz", blobs())
    return Case(predict(path, path, "--overwrite"), "same.nii.gz", "is the input")


@case("output-symlink-to-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "real.nii.gz", blobs())
    (tmp / "link.nii.gz").symlink_to(path)
    return Case(predict(path, tmp / "link.nii.gz", "--overwrite"), "link.nii.gz", "is the input")


@case("output-hardlink-to-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "real.nii.gz", blobs())
    os.link(path, tmp / "twin.nii.gz")
    return Case(predict(path, tmp / "twin.nii.gz", "--overwrite"), "twin.nii.gz", "is the input")


@case("output-existing-nifti")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    nifti(tmp / "earlier.nii.gz", blobs(seed=1))
    return Case(predict(path, tmp / "earlier.nii.gz"), "earlier.nii.gz", "--overwrite")


@case("output-existing-nrrd")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    sitk_file(tmp / "earlier.nrrd", blobs(seed=1))
    return Case(predict(path, tmp / "earlier.nrrd"), "earlier.nrrd", "--overwrite")


@case("output-existing-mha")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    sitk_file(tmp / "earlier.mha", blobs(seed=1))
    return Case(predict(path, tmp / "earlier.mha"), "earlier.mha", "--overwrite")


@case("output-is-a-folder-with-a-suffix")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "out.nii.gz").mkdir()
    (tmp / "out.nii.gz" / "keep.txt").write_text("mine")
    return Case(predict(path, tmp / "out.nii.gz", "--overwrite"), "out.nii.gz", "folder")


@case("output-series-into-a-full-folder")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "results").mkdir()
    (tmp / "results" / "notes.txt").write_text("mine")
    return Case(predict(path, tmp / "results"), "results", "not empty")


@case("output-folder-holds-the-input")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "data" / "t1.nii.gz", blobs())
    return Case(predict(path, tmp / "data", "--overwrite"), "data", "holds the input")


@case("output-unknown-suffix")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    return Case(predict(path, tmp / "out.xyz"), "out.xyz", "no writer", [tmp / "out.xyz"])


@case("output-parent-is-a-file")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "report").write_text("a file")
    return Case(predict(path, tmp / "report" / "out.nii.gz"), "report", "is a file")


@case("output-existing-sidecar-target-is-folder")
def _(tmp: Path) -> Case:
    path = nifti(tmp / "t1.nii.gz", blobs())
    (tmp / "out.provenance.json").mkdir()
    (tmp / "out.provenance.json" / "x").write_text("mine")
    return Case(predict(path, tmp / "out.nii.gz"), "out.provenance.json", "folder")


# -- DICOM ---------------------------------------------------------------------------------


@case("dicom-output-is-the-input-series")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    return Case(predict(folder, folder), "mr", "is the input")


@case("dicom-output-is-the-input-series-with-overwrite")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    return Case(predict(folder, folder, "--overwrite"), "mr", "is the input")


@case("dicom-output-inside-the-input-series")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    return Case(predict(folder, folder / "sct"), "sct", "inside the input")


@case("dicom-output-over-another-series")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    series(tmp / "other", modality="CT")
    return Case(predict(folder, tmp / "other"), "other", "not empty")


@case("dicom-ct-series-into-an-mr-model")
def _(tmp: Path) -> Case:
    folder = series(tmp / "ct", modality="CT")
    args = ["predict", str(folder), str(tmp / "out.nii.gz"), "--method", "example-self-rescaling"]
    return Case([*args, "--no-progress"], "ct", "--force-modality", [tmp / "out.nii.gz"])


@case("dicom-tree-into-a-file")
def _(tmp: Path) -> Case:
    series(tmp / "tree" / "a", study_uid="1.2.3.4.1")
    series(tmp / "tree" / "b", study_uid="1.2.3.4.2")
    return Case(predict(tmp / "tree", tmp / "out.nii.gz"), "out.nii.gz", "2 DICOM studies")


@case("dicom-missing-slice")
def _(tmp: Path) -> Case:
    import pydicom

    folder = series(tmp / "gap")
    by_height = sorted(
        folder.iterdir(), key=lambda p: float(pydicom.dcmread(p).ImagePositionPatient[2])
    )
    by_height[2].unlink()  # a slice inside the stack, not at its ends
    return Case(predict(folder, tmp / "out.nii.gz"), "gap")


@case("dicom-garbage-slice")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    victim = sorted(folder.iterdir())[3]
    victim.write_bytes(b"\0" * 128 + b"DICM" + b"\xff" * 300)
    return Case(predict(folder, tmp / "out.nii.gz"), "mr")


@case("dicom-truncated-pixels")
def _(tmp: Path) -> Case:
    folder = series(tmp / "mr")
    victim = sorted(folder.iterdir())[1]
    victim.write_bytes(victim.read_bytes()[:-60])
    return Case(predict(folder, tmp / "out.nii.gz"), victim.name)


@case("dicom-empty-folder")
def _(tmp: Path) -> Case:
    (tmp / "nothing").mkdir()
    return Case(predict(tmp / "nothing", tmp / "out.nii.gz"), "nothing")


@case("dicom-folder-of-text")
def _(tmp: Path) -> Case:
    (tmp / "docs").mkdir()
    (tmp / "docs" / "a.txt").write_text("hello")
    return Case(predict(tmp / "docs", tmp / "out.nii.gz"), "docs")


@case("dicom-single-slice")
def _(tmp: Path) -> Case:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(300, 50, (12, 10, 1)).round().astype(np.float32)
    write_series(tmp / "one", volume, modality="MR", rescale=(1.0, 0.0))
    return Case(predict(tmp / "one", tmp / "out.nii.gz"), "one")


@case("dicom-duplicate-positions")
def _(tmp: Path) -> Case:
    positions = np.zeros((6, 3))
    series(tmp / "dup2", positions=positions)
    return Case(predict(tmp / "dup2", tmp / "out.nii.gz"), "dup2")


@case("dicom-constant-series")
def _(tmp: Path) -> Case:
    from medi2i.testing.dicom_series import write_series

    write_series(tmp / "flat", np.full((12, 10, 6), 40.0, np.float32), modality="MR")
    return Case(predict(tmp / "flat", tmp / "out.nii.gz"), "flat", "constant")


@case("batch-output-inside-input-tree")
def _(tmp: Path) -> Case:
    series(tmp / "studies" / "p1")
    args = ["batch", str(tmp / "studies"), str(tmp / "studies" / "out")]
    return Case([*args, "--method", "intensity-inversion", "--no-progress"], "out", "inside")


@case("batch-output-is-input-root")
def _(tmp: Path) -> Case:
    series(tmp / "studies" / "p1")
    args = ["batch", str(tmp / "studies"), str(tmp / "studies")]
    return Case([*args, "--method", "intensity-inversion", "--no-progress"], "studies", "input")


@case("batch-output-root-with-other-data")
def _(tmp: Path) -> Case:
    series(tmp / "studies" / "p1")
    (tmp / "mine").mkdir()
    (tmp / "mine" / "thesis.tex").write_text("mine")
    args = ["batch", str(tmp / "studies"), str(tmp / "mine")]
    return Case([*args, "--method", "intensity-inversion", "--no-progress"], "mine", "manifest")


# -- trained models ------------------------------------------------------------------------


def predict_model(tmp: Path, folder: Path | str) -> list[str]:
    source = nifti(tmp / "t1.nii.gz", blobs())
    return [
        "predict",
        str(source),
        str(tmp / "out.nii.gz"),
        "--model",
        str(folder),
        "--no-progress",
    ]


@case("model-missing")
def _(tmp: Path) -> Case:
    return Case(predict_model(tmp, tmp / "no-model"), "no-model")


@case("model-without-manifest")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    (folder / "medi2i-model.json").unlink()
    return Case(predict_model(tmp, folder), "model")


@case("model-manifest-not-json")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    (folder / "medi2i-model.json").write_text("{not json")
    return Case(predict_model(tmp, folder), "medi2i-model.json")


@case("model-weights-absolute-path")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["weights"] = {"file": str(tmp / "elsewhere.safetensors"), "sha256": "0" * 64}

    folder = model(tmp, edit)
    (tmp / "elsewhere.safetensors").write_bytes((folder / "weights.safetensors").read_bytes())
    return Case(predict_model(tmp, folder), "model")


@case("model-weights-dotdot")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["weights"] = {"file": "../../stolen.safetensors", "sha256": "0" * 64}

    return Case(predict_model(tmp, model(tmp, edit)), "model")


@case("model-weights-symlink-out")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    outside = tmp / "outside.safetensors"
    (folder / "weights.safetensors").rename(outside)
    (folder / "weights.safetensors").symlink_to(outside)
    return Case(predict_model(tmp, folder), "model")


@case("model-unknown-method")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["method"] = {"id": "no-such-method", "version": "0.1.0"}

    return Case(predict_model(tmp, model(tmp, edit)), "no-such-method")


@case("model-newer-major-method")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["method"] = {"id": "example-pointwise-net", "version": "9.9.9"}

    return Case(predict_model(tmp, model(tmp, edit)), "9.9.9")


@case("model-newer-medi2i")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["medi2i_version"] = "7.0.0"

    return Case(predict_model(tmp, model(tmp, edit)), "7.0.0")


@case("model-huge-options")
def _(tmp: Path) -> Case:
    def edit(data: dict[str, object]) -> None:
        data["options"] = {"roi_size": [16, 16, 16], "hidden": 200000}

    return Case(predict_model(tmp, model(tmp, edit)), "model")


@case("model-corrupt-weights")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    (folder / "weights.safetensors").write_bytes(b"\x10\0\0\0\0\0\0\0{garbage")
    return Case(predict_model(tmp, folder), "model")


@case("model-zip-with-escaping-member")
def _(tmp: Path) -> Case:
    folder = model(tmp)
    archive = tmp / "model.zip"
    with zipfile.ZipFile(archive, "w") as zipped:
        for part in folder.iterdir():
            zipped.write(part, f"model/{part.name}")
        zipped.writestr("../evil.txt", "x")
    return Case(predict_model(tmp, archive), "model.zip", absent=[tmp / "evil.txt"])


@case("model-and-method-both")
def _(tmp: Path) -> Case:
    args = predict_model(tmp, model(tmp))
    return Case([*args, "--method", "intensity-inversion"], "--method", "not both")


@case("model-with-options")
def _(tmp: Path) -> Case:
    args = predict_model(tmp, model(tmp))
    return Case([*args, "-o", "hidden=3"], "model", "options are fixed")


# -- options -------------------------------------------------------------------------------


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


# -- plugins -------------------------------------------------------------------------------

BROKEN_IMPORT = "raise ImportError(\"No module named 'a_dependency_never_installed'\")\n"
CLASHING = """\
import medi2i
from medi2i_invert.method import IntensityInversion


class Impostor(IntensityInversion):
    pass


@medi2i.hookimpl
def register_methods(register):
    register(Impostor)
"""
RAISING_HOOK = """\
import medi2i


@medi2i.hookimpl
def register_methods(register):
    raise RuntimeError("this plugin's register hook is broken")
"""


@case("plugin-broken-import-strict")
def _(tmp: Path) -> Case:
    return Case(
        ["--strict-plugins", "methods"], "broken_dep", plugins={"broken_dep": BROKEN_IMPORT}
    )


@case("plugin-broken-hook-strict")
def _(tmp: Path) -> Case:
    return Case(["--strict-plugins", "methods"], "bad_hook", plugins={"bad_hook": RAISING_HOOK})


@case("plugin-clashing-method-id")
def _(tmp: Path) -> Case:
    args = predict(nifti(tmp / "t1.nii.gz", blobs()), tmp / "o.nii.gz")
    return Case(args, "impostor", "both", [tmp / "o.nii.gz"], plugins={"impostor": CLASHING})


@case("plugin-workflow-names-a-broken-one")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "plugins: [broken_dep]\n")
    return Case(["validate", str(path)], "broken_dep", plugins={"broken_dep": BROKEN_IMPORT})


# -- workflows -----------------------------------------------------------------------------


@case("workflow-missing")
def _(tmp: Path) -> Case:
    return Case(["validate", str(tmp / "absent.yaml")], "absent.yaml")


@case("workflow-nan-learning-rate")
def _(tmp: Path) -> Case:
    text = WORKFLOW.replace("example-pointwise-net", "example-tiny-regression")
    text = "plugins: [medi2i.testing.trainable_examples]\n" + text
    path = workflow(tmp, text + "  options:\n    learning_rate: .nan\n")
    return Case(["validate", str(path)], "method.options.learning_rate", "finite number")


@case("workflow-inf-steps")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "training:\n  steps: .inf\n")
    return Case(["validate", str(path)], "steps")


@case("workflow-negative-steps")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "training:\n  steps: -3\n")
    return Case(["validate", str(path)], "steps")


@case("workflow-plugin-module")
def _(tmp: Path) -> Case:
    (tmp / "evil_plugin.py").write_text(f"open({str(tmp / 'ran')!r}, 'w').write('x')\n")
    path = workflow(tmp, WORKFLOW + "plugins: [evil_plugin]\n")
    return Case(["validate", str(path)], "evil_plugin", absent=[tmp / "ran"])


@case("workflow-plugin-stdlib-module")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "plugins: [antigravity]\n")
    return Case(["validate", str(path)], "antigravity")


@case("workflow-alias-bomb")
def _(tmp: Path) -> Case:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for index in range(1, 9):
        previous, name = chr(ord("a") + index - 1), chr(ord("a") + index)
        lines.append(f"{name}: &{name} [{','.join([f'*{previous}'] * 9)}]")
    path = workflow(tmp, "\n".join(lines) + "\n")
    return Case(["validate", str(path)], "workflow.yaml", "alias")


@case("workflow-invalid-yaml")
def _(tmp: Path) -> Case:
    path = workflow(tmp, "data: [unclosed\n")
    return Case(["validate", str(path)], "workflow.yaml")


@case("workflow-unknown-key")
def _(tmp: Path) -> Case:
    path = workflow(tmp, WORKFLOW + "trainig:\n  steps: 5\n")
    return Case(["validate", str(path)], "trainig")


@case("workflow-not-a-mapping")
def _(tmp: Path) -> Case:
    path = workflow(tmp, "- just\n- a list\n")
    return Case(["validate", str(path)], "workflow.yaml")


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


# -- the runner ----------------------------------------------------------------------------


def hashes(root: Path) -> dict[Path, str]:
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            found[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def install(site: Path, plugins: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Install each plugin as a distribution with an entry point in group ``medi2i``."""
    site.mkdir()
    for name, source in plugins.items():
        (site / f"{name}.py").write_text(source)
        info = site / f"{name}-0.0.1.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.0.1\n")
        (info / "entry_points.txt").write_text(f"[medi2i]\n{name} = {name}\n")
        monkeypatch.delitem(sys.modules, name, raising=False)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", ",".join(["invert", *plugins]))


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> Callable[[list[str]], object]:
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "invert")
    monkeypatch.delenv("MEDI2I_DEBUG", raising=False)
    monkeypatch.delenv("MEDI2I_STRICT_PLUGINS", raising=False)

    def invoke(args: list[str]) -> object:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PluginWarning)  # the CLI prints these as Warning:
            plugins = load_plugins()
        plugins.manager.register(example_methods, name="examples")
        return CliRunner().invoke(build_cli(plugins), args)

    return invoke


def test_the_corpus_is_large_enough() -> None:
    assert len(CASES) >= 60


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_input_gets_one_line_and_changes_nothing(
    name: str, tmp_path: Path, cli: Callable[[list[str]], object], monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    built = CASES[name](work)
    if built.plugins:
        install(tmp_path / "site", built.plugins, monkeypatch)
    before = hashes(work)
    missing_before = [path for path in built.absent if not path.exists()]

    result = cli(built.args)

    stderr = result.stderr.strip()  # type: ignore[attr-defined]
    assert result.exit_code not in (0, None), result.output  # type: ignore[attr-defined]
    assert isinstance(result.exception, SystemExit), repr(result.exception)  # type: ignore[attr-defined]
    assert "Traceback" not in result.output, result.output  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if not line.startswith("Warning:")]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("Error: "), stderr
    assert built.names in lines[0], lines[0]
    assert built.cause.lower() in lines[0].lower(), lines[0]
    after = hashes(work)
    changed = [path for path, digest in before.items() if after.get(path) != digest]
    assert not changed, f"changed or removed: {changed}"
    assert not [path for path in missing_before if path.exists()]
    assert not set(after) - set(before), f"written: {sorted(set(after) - set(before))}"
