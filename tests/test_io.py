from __future__ import annotations

from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor

from medi2i.errors import GeometryError, InputError, OptionsError, OutputError
from medi2i.grid import ras_to_lps
from medi2i.io import builtin_readers, builtin_writers, read_volume, write_volume
from medi2i.io.atomic import atomic_path, temporary_sibling
from medi2i.io.base import DTYPE_KEY, VolumeReader, volume_from_array
from medi2i.io.nifti import QFORM_CODE_KEY, SFORM_CODE_KEY, SPATIAL_UNIT_KEY

SHAPE = (7, 6, 5)
SUFFIXES = (".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")
SINGLE_FILE = (".nii.gz", ".nrrd", ".mha")


def oblique_affine() -> np.ndarray:
    """Rotated about two axes, anisotropic (0.7 x 0.9 x 2.5 mm), off-origin."""
    a, b = np.deg2rad(17.0), np.deg2rad(-24.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.7, 0.9, 2.5])
    affine[:3, 3] = (12.5, -30.25, 7.0)
    return affine


def voxels(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(3)
    if dtype == "int16":
        return rng.integers(-1024, 3000, SHAPE).astype(np.int16)
    return rng.normal(100.0, 40.0, SHAPE).astype(np.float32)


def make(values: np.ndarray, affine: np.ndarray, dtype: str | None = None) -> MetaTensor:
    meta = {DTYPE_KEY: dtype} if dtype else {}
    data = torch.from_numpy(values.astype(np.float32)[None])
    return MetaTensor(data, affine=torch.from_numpy(affine), meta=meta)


def assert_same_volume(volume: MetaTensor, values: np.ndarray, affine: np.ndarray) -> None:
    assert tuple(volume.shape) == (1, *values.shape)
    assert volume.dtype == torch.float32
    np.testing.assert_array_equal(volume[0].numpy(), values.astype(np.float32))
    np.testing.assert_allclose(volume.affine.numpy(), affine, rtol=0, atol=1e-6)


def nifti_file(path: Path, values: np.ndarray, affine: np.ndarray) -> Path:
    nib.Nifti1Image(values, affine, dtype=values.dtype).to_filename(path)
    return path


@pytest.mark.parametrize("dtype", ["int16", "float32"])
@pytest.mark.parametrize("first", SINGLE_FILE)
@pytest.mark.parametrize("second", SINGLE_FILE)
def test_round_trip_across_formats(tmp_path: Path, first: str, second: str, dtype: str) -> None:
    values, affine = voxels(dtype), oblique_affine()
    once = read_volume(write_volume(make(values, affine, dtype), tmp_path / f"a{first}"))
    twice = read_volume(write_volume(once, tmp_path / f"b{second}"))
    assert_same_volume(once, values, affine)
    assert_same_volume(twice, values, affine)
    assert twice.meta[DTYPE_KEY] == dtype


@pytest.mark.parametrize("suffix", SUFFIXES)
def test_each_suffix_round_trips(tmp_path: Path, suffix: str) -> None:
    values, affine = voxels("int16"), oblique_affine()
    volume = read_volume(write_volume(make(values, affine, "int16"), tmp_path / f"v{suffix}"))
    assert_same_volume(volume, values, affine)
    assert volume.meta["filename_or_obj"] == str(tmp_path / f"v{suffix}")
    assert volume.meta["space"] == "RAS"
    assert tuple(volume.meta["spatial_shape"]) == SHAPE
    np.testing.assert_allclose(volume.meta["original_affine"], affine, atol=1e-6)


def test_integer_source_is_written_back_as_its_type(tmp_path: Path) -> None:
    source = nifti_file(tmp_path / "ct.nii.gz", voxels("int16"), oblique_affine())
    written = write_volume(read_volume(source), tmp_path / "ct.mha")
    assert sitk.ReadImage(str(written)).GetPixelID() == sitk.sitkInt16


def test_float32_is_the_default_output_type(tmp_path: Path) -> None:
    written = write_volume(make(voxels("int16"), oblique_affine()), tmp_path / "out.nii.gz")
    assert nib.load(written).get_data_dtype() == np.float32


def test_integer_output_is_rounded_and_clipped(tmp_path: Path) -> None:
    values = np.array([-5.0, 2.6, 3.4, 300.0, -0.4] + [0.0] * 3).reshape(2, 2, 2)
    written = write_volume(make(values, np.eye(4), "uint8"), tmp_path / "mask.nrrd")
    on_disk = sitk.GetArrayFromImage(sitk.ReadImage(str(written))).transpose(2, 1, 0)
    assert on_disk.dtype == np.uint8
    assert on_disk.ravel().tolist() == [0, 3, 3, 255, 0, 0, 0, 0]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha"])
@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
def test_non_finite_volume_is_never_written(tmp_path: Path, suffix: str, bad: float) -> None:
    values = np.zeros((2, 2, 2))
    values[1, 0, 1] = bad
    with pytest.raises(OutputError, match=r"1 voxel\(s\) are NaN or infinite.*\(1, 0, 1\)"):
        write_volume(make(values, np.eye(4), "int16"), tmp_path / f"out{suffix}")
    assert list(tmp_path.iterdir()) == []


def test_unknown_output_type_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OptionsError, match="complex64"):
        write_volume(make(voxels("int16"), np.eye(4), "complex64"), tmp_path / "x.nii.gz")


@pytest.mark.parametrize(
    "linear",
    [
        np.diag([-0.7, -0.9, 2.5]),  # LPS-stored
        np.array([[0.0, 0.0, 2.5], [-0.7, 0.0, 0.0], [0.0, 0.9, 0.0]]),  # permuted axes
    ],
    ids=["lps", "permuted"],
)
def test_non_ras_nifti_keeps_array_and_affine(tmp_path: Path, linear: np.ndarray) -> None:
    values, affine = voxels("int16"), np.eye(4)
    affine[:3, :3], affine[:3, 3] = linear, (40.5, 22.25, -60.0)
    volume = read_volume(nifti_file(tmp_path / "t1.nii.gz", values, affine))
    assert_same_volume(volume, values, affine)
    assert_same_volume(read_volume(write_volume(volume, tmp_path / "t1.nrrd")), values, affine)


def test_nifti_header_codes_and_units_survive(tmp_path: Path) -> None:
    image = nib.Nifti1Image(voxels("int16"), oblique_affine(), dtype=np.int16)
    image.set_qform(oblique_affine(), code=1)
    image.set_sform(None, code=0)
    image.header.set_xyzt_units(xyz="mm", t="msec")
    image.to_filename(tmp_path / "in.nii")
    volume = read_volume(tmp_path / "in.nii")
    assert (volume.meta[QFORM_CODE_KEY], volume.meta[SFORM_CODE_KEY]) == (1, 0)
    header = nib.load(write_volume(volume, tmp_path / "out.nii")).header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (1, 0)
    assert header.get_xyzt_units() == ("mm", "msec")


def test_nifti_in_metres_is_read_in_mm(tmp_path: Path) -> None:
    affine_m = np.diag([0.001, 0.001, 0.002, 1.0])
    image = nib.Nifti1Image(voxels("int16"), affine_m, dtype=np.int16)
    image.header.set_xyzt_units(xyz="meter")
    image.to_filename(tmp_path / "m.nii.gz")
    volume = read_volume(tmp_path / "m.nii.gz")
    np.testing.assert_allclose(volume.affine.numpy(), np.diag([1.0, 1.0, 2.0, 1.0]), atol=1e-6)
    assert volume.meta[SPATIAL_UNIT_KEY] == "meter"
    rewritten = nib.load(write_volume(volume, tmp_path / "again.nii.gz"))
    np.testing.assert_allclose(rewritten.affine, affine_m, atol=1e-9)


def test_scaled_nifti_is_read_scaled_as_float(tmp_path: Path) -> None:
    image = nib.Nifti1Image(voxels("int16"), np.eye(4), dtype=np.int16)
    image.header.set_slope_inter(0.5, -10.0)
    image.to_filename(tmp_path / "scaled.nii.gz")
    volume = read_volume(tmp_path / "scaled.nii.gz")
    np.testing.assert_allclose(volume[0].numpy(), voxels("int16") * 0.5 - 10.0)
    assert volume.meta[DTYPE_KEY] == "float32"


def test_4d_with_one_volume_is_squeezed(tmp_path: Path) -> None:
    values = voxels("int16")
    path = nifti_file(tmp_path / "one.nii.gz", values[..., None], oblique_affine())
    assert_same_volume(read_volume(path), values, oblique_affine())


def test_4d_nrrd_with_one_volume_is_squeezed(tmp_path: Path) -> None:
    values = voxels("float32")
    image = sitk.JoinSeries([sitk.GetImageFromArray(values.transpose(2, 1, 0))])
    image.SetSpacing((0.5, 0.75, 2.0, 1.0))
    assert image.GetSize() == (*SHAPE, 1)
    sitk.WriteImage(image, str(tmp_path / "one.nrrd"))
    volume = read_volume(tmp_path / "one.nrrd")
    assert_same_volume(volume, values, np.diag([-0.5, -0.75, 2.0, 1.0]))


def test_an_nrrd_whose_time_axis_alone_has_no_spacing_is_read(tmp_path: Path) -> None:
    """nan for a 4th, non-spatial axis is NRRD's usual 'not known'; only the spatial
    axes must be given."""
    header = (
        "NRRD0004\ntype: float\ndimension: 4\nsizes: 4 3 2 1\nspacings: 1 2 3 nan\n"
        "endian: little\nencoding: raw\n\n"
    )
    path = tmp_path / "series.nrrd"
    path.write_bytes(header.encode() + bytes(96))
    assert read_volume(path).shape == (1, 4, 3, 2)


@pytest.mark.parametrize(
    ("field", "says"),
    [
        ("spacings: 1 2 NaN", "spacings \\(the voxel size\\) is 1 2 NaN"),
        (
            "space: left-posterior-superior\nspace directions: (1,0,0) (0,nan,0) (0,0,1)",
            "space directions",
        ),
        (
            "space: left-posterior-superior\nspace origin: (0,0,inf)",
            "space origin \\(the position of the first voxel\\)",
        ),
    ],
)
def test_an_nrrd_that_does_not_give_its_grid_is_refused(
    tmp_path: Path, field: str, says: str
) -> None:
    """NRRD's nan means "not known"; ITK reads it as 1 mm (or 0), a grid never given."""
    header = f"NRRD0004\ntype: float\ndimension: 3\nsizes: 4 3 2\n{field}\n"
    path = tmp_path / "unknown.nrrd"
    path.write_bytes((header + "endian: little\nencoding: raw\n\n").encode() + bytes(96))
    with pytest.raises(GeometryError, match=says):
        read_volume(path)


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((7, 6, 5, 2), r"\(7, 6, 5, 2\) \(2 volumes\)"),
        ((7, 6), r"2D image of shape \(7, 6\)"),
        ((7, 6, 5, 1, 3), r"5D image of shape \(7, 6, 5, 1, 3\)"),
    ],
)
def test_not_one_3d_volume_is_refused(
    tmp_path: Path, shape: tuple[int, ...], expected: str
) -> None:
    path = nifti_file(tmp_path / "series.nii.gz", np.zeros(shape, np.int16), np.eye(4))
    with pytest.raises(GeometryError, match=expected) as caught:
        read_volume(path)
    assert "series.nii.gz" in str(caught.value)
    assert "expects one 3D volume" in str(caught.value)


def test_vector_pixels_are_refused(tmp_path: Path) -> None:
    image = sitk.GetImageFromArray(np.zeros((4, 5, 6, 3), np.float32), isVector=True)
    sitk.WriteImage(image, str(tmp_path / "field.mha"))
    with pytest.raises(GeometryError, match="3 components per voxel") as caught:
        read_volume(tmp_path / "field.mha")
    assert "field.mha" in str(caught.value)


def test_2d_metaimage_is_refused(tmp_path: Path) -> None:
    sitk.WriteImage(sitk.Image(8, 8, sitk.sitkInt16), str(tmp_path / "slice.mha"))
    with pytest.raises(GeometryError, match=r"slice\.mha.*2D image of shape \(8, 8\)"):
        read_volume(tmp_path / "slice.mha")


@pytest.mark.parametrize("name", ["broken.nii.gz", "broken.nii", "broken.nrrd", "broken.mha"])
def test_corrupt_file_is_an_input_error_naming_it(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(np.random.default_rng(0).bytes(600))
    # NIfTI says what the bytes are not: neither gzip nor a NIfTI header
    said = f"cannot read .*{name}|{name} is neither gzip-compressed nor a NIfTI file"
    with pytest.raises(InputError, match=said) as caught:
        read_volume(path)
    assert not isinstance(caught.value, GeometryError)


@pytest.mark.parametrize("name", ["cut.nii", "cut.nii.gz", "cut.nrrd", "cut.mha"])
def test_truncated_data_is_an_input_error(tmp_path: Path, name: str) -> None:
    path = write_volume(make(voxels("float32"), np.eye(4)), tmp_path / name)
    path.write_bytes(path.read_bytes()[:-100])  # the header stays intact
    with pytest.raises(InputError, match=f"cannot read .*{name}"):
        read_volume(path)


@pytest.mark.parametrize(
    ("header", "data_key"), [("v.mha", "ElementDataFile = "), ("v.nrrd", "data file: ")]
)
def test_a_header_file_with_its_voxels_in_a_data_file_is_measured_by_the_data_file(
    tmp_path: Path, header: str, data_key: str
) -> None:
    """A small header file naming its data file is valid whatever its suffix: the size
    check reads the data file, and refuses a data file too small for the dimensions."""
    values = np.random.default_rng(0).random((100, 100, 100), np.float32)
    detached = ".mhd" if header.endswith(".mha") else ".nhdr"
    written = write_volume(make(values, np.eye(4)), tmp_path / f"w{detached}")
    text = written.read_text(encoding="latin-1")
    renamed = tmp_path / header
    renamed.write_text(text, encoding="latin-1")  # same header, the common suffix
    assert renamed.stat().st_size * 1032 < values.size  # more voxels than it could hold
    assert np.array_equal(read_volume(renamed).numpy()[0], values)

    data_name = next(
        line.split(data_key.strip(), 1)[1].strip(" :=")
        for line in text.splitlines()
        if line.startswith(data_key.split()[0])
    )
    (tmp_path / "short.raw").write_bytes(b"0" * 100)
    short = tmp_path / f"short{renamed.suffix}"
    short.write_text(text.replace(data_name, "short.raw"), encoding="latin-1")
    with pytest.raises(InputError, match=r"its data file short\.raw, a file of 100 bytes"):
        read_volume(short)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"absent\.nii\.gz does not exist"):
        read_volume(tmp_path / "absent.nii.gz")


def test_a_dangling_or_looping_link_and_a_folder_named_like_a_file_say_what_they_are(
    tmp_path: Path,
) -> None:
    (tmp_path / "gone.nii.gz").symlink_to(tmp_path / "moved.nii.gz")
    (tmp_path / "l1.nii.gz").symlink_to(tmp_path / "l2.nii.gz")
    (tmp_path / "l2.nii.gz").symlink_to(tmp_path / "l1.nii.gz")
    for link in ("gone.nii.gz", "l1.nii.gz"):
        with pytest.raises(InputError, match=r"is a symbolic link that leads to no file"):
            read_volume(tmp_path / link)
    for folder in ("scan.nii.gz", "scan.nrrd", "scan.mha"):
        (tmp_path / folder).mkdir()
        with pytest.raises(InputError, match=rf"{folder} is a folder, not a \w+ file"):
            read_volume(tmp_path / folder)


def test_unknown_suffix_lists_supported_ones(tmp_path: Path) -> None:
    (tmp_path / "scan.png").write_bytes(b"\x89PNG")
    with pytest.raises(InputError, match=r"no reader for .*scan\.png.*\.nii\.gz.*\.nrrd.*\.mha"):
        read_volume(tmp_path / "scan.png")
    with pytest.raises(InputError, match=r"no writer for .*out\.png.*\.nii\.gz"):
        write_volume(make(voxels("int16"), np.eye(4)), tmp_path / "out.png")


def test_several_channels_are_refused_by_writers(tmp_path: Path) -> None:
    volume = MetaTensor(torch.zeros(2, 4, 4, 4), affine=torch.eye(4, dtype=torch.float64))
    with pytest.raises(GeometryError, match=r"\(2, 4, 4, 4\)"):
        write_volume(volume, tmp_path / "two.nii.gz")


def test_parent_folders_are_created(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "out.nrrd"
    assert write_volume(make(voxels("int16"), np.eye(4)), target) == target
    assert target.is_file()


def _fail_midway(image: object, path: Any, *args: object, **kwargs: object) -> None:
    Path(path).write_bytes(b"partial")
    raise OSError(28, "No space left on device")


@pytest.mark.parametrize("suffix", [".nii.gz", ".mha", ".mhd"])
def test_failed_write_leaves_nothing_and_keeps_old_output(
    tmp_path: Path, suffix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / f"out{suffix}"
    write_volume(make(voxels("int16"), np.eye(4), "int16"), target)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    monkeypatch.setattr(nib.Nifti1Image, "to_filename", _fail_midway)
    monkeypatch.setattr(sitk.ImageFileWriter, "Execute", _raise_itk)
    with pytest.raises(InputError, match=f"cannot write .*out{suffix}"):
        write_volume(make(voxels("float32"), oblique_affine()), target, overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def _raise_itk(writer: Any, image: object) -> None:
    Path(writer.GetFileName()).write_bytes(b"partial")
    raise RuntimeError("Exception thrown in SimpleITK ImageFileWriter_Execute: disk full")


def test_failed_first_write_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nib.Nifti1Image, "to_filename", _fail_midway)
    with pytest.raises(InputError):
        write_volume(make(voxels("int16"), np.eye(4)), tmp_path / "new.nii.gz")
    assert list(tmp_path.iterdir()) == []


def _disk_full_naming_the_file(image: object, path: Any, *args: object, **kwargs: object) -> None:
    Path(path).write_bytes(b"partial")
    raise OSError(28, "No space left on device", str(path))  # as the OS raises it


def test_a_failed_nifti_write_names_the_output_not_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(nib.Nifti1Image, "to_filename", _disk_full_naming_the_file)
    target = tmp_path / "out.nii.gz"
    with pytest.raises(InputError) as raised:
        write_volume(make(voxels("int16"), np.eye(4)), target)
    assert str(raised.value) == (
        f"cannot write {target}: No space left on device; nothing was written there (free "
        "disk space, or choose a folder you can write to)"
    )
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_suffix_and_replaces_folders(tmp_path: Path) -> None:
    assert temporary_sibling(tmp_path / "out.nii.gz").name.endswith(".nii.gz")
    assert temporary_sibling(tmp_path / "out.nii.gz").name.startswith(".out.medi2i-tmp-")
    model = tmp_path / "model"
    model.mkdir()
    (model / "old.txt").write_text("old")
    with atomic_path(model) as temporary:
        temporary.mkdir()
        (temporary / "new.txt").write_text("new")
    assert [p.name for p in model.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _interrupted_folder_write(model: Path) -> None:
    with atomic_path(model) as temporary:
        temporary.mkdir()
        (temporary / "half.txt").write_text("half")
        raise KeyboardInterrupt


def test_atomic_path_removes_folder_on_error(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt):
        _interrupted_folder_write(tmp_path / "model")
    assert list(tmp_path.iterdir()) == []


def sitk_oblique_image() -> sitk.Image:
    values = voxels("int16")
    image = sitk.GetImageFromArray(values.transpose(2, 1, 0))
    affine_lps = ras_to_lps(oblique_affine())
    spacing = np.linalg.norm(affine_lps[:3, :3], axis=0)
    image.SetSpacing(spacing.tolist())
    image.SetDirection((affine_lps[:3, :3] / spacing).ravel().tolist())
    image.SetOrigin(affine_lps[:3, 3].tolist())
    return image


def assert_matches_sitk(volume: MetaTensor, image: sitk.Image, tolerance: float) -> None:
    affine = volume.affine.numpy()
    for index in [(0, 0, 0), (6, 0, 0), (0, 5, 0), (0, 0, 4), (3, 2, 1), (6, 5, 4)]:
        lps = np.array(image.TransformIndexToPhysicalPoint(index))
        ras = affine @ np.array([*index, 1.0])
        np.testing.assert_allclose(ras[:3], lps * [-1.0, -1.0, 1.0], atol=tolerance)
        assert volume[(0, *index)].item() == image.GetPixel(index)


@pytest.mark.parametrize("suffix", SINGLE_FILE)
def test_readers_agree_with_simpleitk(tmp_path: Path, suffix: str) -> None:
    sitk.WriteImage(sitk_oblique_image(), str(tmp_path / f"itk{suffix}"))
    # SimpleITK reads its own file back, so both sides see the geometry as stored
    # (NIfTI keeps it in float32)
    reference = sitk.ReadImage(str(tmp_path / f"itk{suffix}"))
    assert_matches_sitk(read_volume(tmp_path / f"itk{suffix}"), reference, tolerance=1e-5)


@pytest.mark.parametrize("suffix", SINGLE_FILE)
def test_simpleitk_reads_our_files_as_we_do(tmp_path: Path, suffix: str) -> None:
    volume = make(voxels("int16"), oblique_affine(), "int16")
    reference = sitk.ReadImage(str(write_volume(volume, tmp_path / f"ours{suffix}")))
    assert_matches_sitk(volume, reference, tolerance=1e-5)


def test_plugin_reader_for_folders_is_used_when_listed(tmp_path: Path) -> None:
    class FolderReader(VolumeReader):
        name = "folder"
        description = "test folders"

        def can_read(self, path: Path) -> bool:
            return path.is_dir()

        def read(self, path: Path) -> MetaTensor:
            return volume_from_array(np.ones((2, 3, 4), np.uint8), np.eye(4), path=path)

    (tmp_path / "x.nrrd").write_bytes(b"")
    volume = read_volume(tmp_path, readers=[*builtin_readers(), FolderReader()])
    assert tuple(volume.shape) == (1, 2, 3, 4)
    assert volume.meta[DTYPE_KEY] == "uint8"
    with pytest.raises(InputError, match=r"folder \(test folders\)"):
        read_volume(tmp_path / "x.nrrd", readers=[FolderReader()])


def test_builtin_names_are_unique() -> None:
    assert [r.name for r in builtin_readers()] == ["nifti", "nrrd", "metaimage"]
    assert [w.name for w in builtin_writers()] == ["nifti", "nrrd", "metaimage"]


def test_volume_from_array_keeps_an_x_fastest_layout_only_when_asked(tmp_path: Path) -> None:
    stored = np.arange(60, dtype=np.float32).reshape(5, 4, 3)  # (Z, Y, X), x fastest
    as_xyz = stored.transpose(2, 1, 0)
    kept = volume_from_array(as_xyz, np.eye(4), path=tmp_path, keep_layout=True)
    copied = volume_from_array(as_xyz, np.eye(4), path=tmp_path)
    assert np.shares_memory(kept.numpy(), stored)
    assert copied.is_contiguous()
    assert not np.shares_memory(copied.numpy(), stored)
    assert torch.equal(kept.as_tensor(), copied.as_tensor())
    assert np.array_equal(kept[0].numpy(), as_xyz)


def test_a_failed_nrrd_write_names_the_output_not_the_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import SimpleITK as sitk

    class FullDisk(sitk.ImageFileWriter):  # type: ignore[misc]
        def Execute(self, *args: object) -> None:
            raise RuntimeError(  # as SimpleITK words it, naming the file it opened
                "Exception thrown in SimpleITK ImageFileWriter_Execute: itkNrrdImageIO.cxx:1\n"
                "ITK ERROR: NrrdImageIO(0x55d0c0ffee00): Write: Error writing "
                f"{self.GetFileName()}: No space left on device"
            )

    monkeypatch.setattr(sitk, "ImageFileWriter", FullDisk)
    target = tmp_path / "out.nrrd"
    with pytest.raises(InputError) as raised:
        write_volume(make(voxels("int16"), np.eye(4)), target)
    assert "medi2i-tmp" not in str(raised.value)
    assert f"Write: Error writing {target}: No space left on device" in str(raised.value)
    assert list(tmp_path.iterdir()) == []
