"""NIfTI files whose bytes or forms cannot be trusted as they are.

A ``.nii.gz`` whose deflate stream still decodes but whose data or CRC-32 was altered
is refused (nibabel alone stops before gzip's trailer and reads it as if fine); a file
whose qform and sform disagree is read with the sform and warned about.
"""

from __future__ import annotations

import gzip
import struct
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from medi2i.errors import GeometryError, InputError
from medi2i.io.base import volume_from_array
from medi2i.io.nifti import FormDisagreementWarning, NiftiReader, NiftiWriter


def _stored_gzip(tmp_path: Path) -> tuple[bytes, np.ndarray]:
    """A NIfTI gzipped without compression (deflate's stored blocks), so any voxel
    byte can be changed and the stream still decodes."""
    values = (np.arange(20 * 20 * 20) % 500).astype(np.int16).reshape(20, 20, 20)
    image = nib.Nifti1Image(values, np.eye(4))
    image.set_qform(np.eye(4), code=1)
    image.set_sform(np.eye(4), code=1)
    return gzip.compress(image.to_bytes(), compresslevel=0, mtime=0), values


def test_intact_stored_gzip_reads(tmp_path: Path) -> None:
    data, values = _stored_gzip(tmp_path)
    path = tmp_path / "intact.nii.gz"
    path.write_bytes(data)
    read = NiftiReader().read(path)
    np.testing.assert_array_equal(read.numpy()[0], values)


@pytest.mark.parametrize(
    ("name", "offset_from_end"),
    [("voxel_altered", 2000), ("crc_altered", 6), ("length_altered", 2)],
)
def test_altered_gzip_is_refused_naming_the_file(
    tmp_path: Path, name: str, offset_from_end: int
) -> None:
    data, _ = _stored_gzip(tmp_path)
    altered = bytearray(data)
    altered[len(altered) - offset_from_end] ^= 0x40
    path = tmp_path / f"{name}.nii.gz"
    path.write_bytes(bytes(altered))
    with gzip.open(path) as stream:  # the premise: the data part still decodes
        stream.read(len(data) - 2048)
    with pytest.raises(InputError, match=r"voxel_altered|crc_altered|length_altered") as caught:
        NiftiReader().read(path)
    message = str(caught.value)
    assert str(path) in message
    assert "CRC check failed" in message or "length" in message.lower()


def _forms(tmp_path: Path, sform: np.ndarray, qform: np.ndarray) -> Path:
    values = np.zeros((10, 12, 14), np.float32)
    values[2:5] = 1.0
    image = nib.Nifti1Image(values, sform)
    image.set_qform(qform, code=1)
    image.set_sform(sform, code=2)
    path = tmp_path / "forms.nii.gz"
    image.to_filename(path)
    return path


def test_disagreeing_forms_are_warned_about_and_the_sform_used(tmp_path: Path) -> None:
    qform = np.diag([2.0, 2.0, 3.0, 1.0])
    sform = qform.copy()
    sform[:3, 3] = [5.0, 0.0, 0.0]
    path = _forms(tmp_path, sform, qform)
    with pytest.warns(FormDisagreementWarning, match=r"forms\.nii\.gz.* 5 mm apart.*sform"):
        read = NiftiReader().read(path)
    np.testing.assert_allclose(read.affine.numpy(), sform)


def test_agreeing_forms_read_without_warning(tmp_path: Path) -> None:
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    affine[:3, 3] = [-10.0, 4.0, 7.5]
    path = _forms(tmp_path, affine, affine)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FormDisagreementWarning)
        NiftiReader().read(path)


def test_a_sheared_output_has_no_qform_so_no_reader_places_it_by_a_rotation(
    tmp_path: Path,
) -> None:
    """A qform cannot hold a shear (a gantry tilt): written, the nearest rotation put a
    tilted stack's far corner 28.5 mm off in readers that prefer the qform (ITK), with
    no error. Only the sform is set now: nibabel reads it exactly, ITK refuses the file
    instead of misplacing it."""
    import nibabel as nib
    import SimpleITK as sitk

    sheared = np.array(
        [[1.0, 0.3, 0.0, 1.0], [0.0, 1.0, 0.0, 2.0], [0.0, 0.0, 2.0, 3.0], [0, 0, 0, 1]]
    )
    path = tmp_path / "sheared.nii.gz"
    volume = volume_from_array(np.random.default_rng(0).random((8, 9, 10)), sheared, path=None)
    NiftiWriter().write(volume, path)
    header = nib.load(path).header
    assert (int(header["qform_code"]), int(header["sform_code"])) == (0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FormDisagreementWarning)
        read = NiftiReader().read(path)
    np.testing.assert_allclose(read.affine.numpy(), sheared, atol=1e-6)
    with pytest.raises(RuntimeError, match="orthonormal"):
        sitk.ReadImage(str(path))


def test_bytes_after_the_gzip_stream_are_ignored(tmp_path: Path) -> None:
    """As ``gzip -t`` and nibabel do: the member before them was checked in full."""
    data, values = _stored_gzip(tmp_path)
    path = tmp_path / "trailing.nii.gz"
    path.write_bytes(data + b"XYZ\n")
    np.testing.assert_array_equal(NiftiReader().read(path).numpy()[0], values)


def test_an_oblique_file_near_a_half_turn_reads_without_warning(tmp_path: Path) -> None:
    """A descending axial stack tilted by 2°: NIfTI's float32 quaternion keeps few
    digits of this rotation, so the qform sits 0.1 mm from the exact sform although
    SimpleITK wrote one grid; that is no disagreement to warn about."""
    import SimpleITK as sitk

    image = sitk.Image([64, 64, 40], sitk.sitkInt16)
    image.SetSpacing([0.5, 0.5, 3.0])
    image.SetOrigin([100.3, -120.2, -80.1])
    image.SetDirection(
        (
            *(0.999963066970246, -0.0004883974030472726, -0.008580568945954247),
            *(0.0001569453200926018, 0.9992552512667062, -0.03858650261527187),
            *(-0.008593024125770782, -0.03858373081868287, -0.999218422394466),
        )
    )
    path = tmp_path / "oblique.nii.gz"
    sitk.WriteImage(image, str(path))
    header = nib.load(path).header
    gap = np.abs((header.get_qform() - header.get_sform()) @ [63, 63, 39, 1]).max()
    assert gap > 0.01  # the premise: the two forms differ by more than the tolerance
    with warnings.catch_warnings():
        warnings.simplefilter("error", FormDisagreementWarning)
        read = NiftiReader().read(path)
    np.testing.assert_allclose(read.affine.numpy(), header.get_sform(), atol=1e-5)


def test_a_qform_rotated_away_from_the_sform_is_warned_about(tmp_path: Path) -> None:
    sform = np.diag([1.0, 1.0, 1.0, 1.0])
    turn = np.radians(3.0)
    qform = np.eye(4)
    qform[:2, :2] = [[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]]
    path = _forms(tmp_path, sform, qform)
    with pytest.warns(FormDisagreementWarning, match="mm apart"):
        NiftiReader().read(path)


def test_nibabel_prints_nothing_beside_the_refusal(tmp_path: Path) -> None:
    """nibabel logs its repair of a zero pixdim to the console; medi2i refuses the
    file in one line of its own, so nibabel's line would only say it twice, wrongly."""
    import logging

    image = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), None)
    image.header["pixdim"][1:4] = [0.0, 1.0, 1.0]
    image.header["qform_code"] = image.header["sform_code"] = 0
    path = tmp_path / "zero.nii.gz"
    logger = nib.imageglobals.logger
    with nib.imageglobals.LoggingOutputSuppressor():
        nib.save(image, path)

    said: list[str] = []

    class Recording(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            said.append(record.getMessage())

    recording = Recording()
    logger.addHandler(recording)
    try:
        with pytest.raises(GeometryError, match="pixdim"):
            NiftiReader().read(path)
    finally:
        logger.removeHandler(recording)
    assert said == []
    assert not logger.disabled  # put back


def test_a_file_without_orientation_warns_where_another_format_would_state_one(
    tmp_path: Path,
) -> None:
    from medi2i.io import read_volume, write_volume
    from medi2i.io.nifti import UnstatedOrientationWarning

    image = nib.Nifti1Image(np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6), np.eye(4))
    image.set_sform(None, code=0)
    image.set_qform(None, code=0)
    nib.save(image, tmp_path / "bare.nii")
    volume = read_volume(tmp_path / "bare.nii")
    with pytest.warns(UnstatedOrientationWarning, match="states no orientation"):
        write_volume(volume, tmp_path / "out.nrrd")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnstatedOrientationWarning)
        write_volume(volume, tmp_path / "out.nii.gz")  # stays unstated: nothing to say
        stated = nib.Nifti1Image(np.zeros((4, 5, 6), np.int16), np.eye(4))
        nib.save(stated, tmp_path / "stated.nii")
        write_volume(read_volume(tmp_path / "stated.nii"), tmp_path / "stated.nrrd")
    assert nib.load(tmp_path / "out.nii.gz").header["sform_code"] == 0


@pytest.mark.parametrize("spacing", [0.0, -2.0, float("nan"), float("inf")])
def test_a_qform_scaled_by_a_spacing_that_is_not_positive_is_refused(
    tmp_path: Path, spacing: float
) -> None:
    """Without an sform the qform scales by pixdim, where nibabel reads 0 as 1 mm and
    -2 as 2 mm: refused in one line, as a zero spacing in an sform is, and quietly."""
    image = nib.Nifti1Image(np.ones((4, 5, 6), np.float32), None)
    image.set_qform(np.diag([2.0, 2.0, 1.0, 1.0]), code=1)
    image.set_sform(None, code=0)
    raw = bytearray(image.to_bytes())
    struct.pack_into("<f", raw, 80, spacing)  # pixdim[1]
    path = tmp_path / "qform.nii"
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GeometryError, match=r"pixdim\).*qform \(code 1, no sform\)"):
            NiftiReader().read(path)
    struct.pack_into("<f", raw, 80, 2.0)
    path.write_bytes(bytes(raw))
    np.testing.assert_allclose(NiftiReader().read(path).affine.numpy()[:3, :3], np.diag([2, 2, 1]))


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_a_negative_spacing_without_either_form_is_refused(tmp_path: Path, axis: int) -> None:
    """With qform_code and sform_code 0 the voxel size alone places the volume: nibabel
    reads a negative pixdim as its opposite, ITK as a flipped axis, so an output written
    with the positive size lay mirrored against its input in ITK-based tools. Refused
    in one line naming the file, as with a qform; nothing is written."""
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    values = np.random.default_rng(0).normal(400.0, 100.0, (6, 7, 8)).astype(np.float32)
    image = nib.Nifti1Image(values, None)
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    raw = bytearray(image.to_bytes())
    struct.pack_into("<f", raw, 80 + 4 * axis, -1.0)  # pixdim[1 + axis]
    path = tmp_path / "negative.nii"
    path.write_bytes(bytes(raw))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GeometryError, match=r"states no qform or sform.*not a positive"):
            NiftiReader().read(path)
    out = tmp_path / "out.nii.gz"
    args = ["predict", str(path), str(out), "--method", "intensity-inversion", "--no-progress"]
    refused = CliRunner().invoke(build_cli(), args)
    assert refused.exit_code == 1
    lines = refused.stderr.strip().splitlines()
    assert len(lines) == 1, refused.stderr
    assert lines[0].startswith(f"Error: {path}: the header's voxel size (pixdim) is ")
    assert "re-export the file" in lines[0]
    assert not out.exists()


def test_an_ordinary_file_without_either_form_is_placed_as_itk_places_it(
    tmp_path: Path,
) -> None:
    """The same file with a positive spacing is read, and its output keeps both codes 0,
    so SimpleITK places input and output alike (an sform-set file with a negative pixdim
    is placed by its sform and stays readable)."""
    import SimpleITK as sitk
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    values = np.random.default_rng(0).normal(400.0, 100.0, (6, 7, 8)).astype(np.float32)
    image = nib.Nifti1Image(values, None)
    image.set_qform(None, code=0)
    image.set_sform(None, code=0)
    image.header.set_zooms((2.0, 1.0, 3.0))
    path = tmp_path / "bare.nii"
    nib.save(image, path)
    out = tmp_path / "out.nii.gz"
    args = ["predict", str(path), str(out), "--method", "intensity-inversion", "--no-progress"]
    done = CliRunner().invoke(build_cli(), args)
    assert done.exit_code == 0, done.output
    before, after = sitk.ReadImage(str(path)), sitk.ReadImage(str(out))
    np.testing.assert_allclose(after.GetDirection(), before.GetDirection())
    np.testing.assert_allclose(after.GetOrigin(), before.GetOrigin(), atol=1e-4)
    np.testing.assert_allclose(after.GetSpacing(), before.GetSpacing())
    np.testing.assert_allclose(nib.load(out).affine, nib.load(path).affine, atol=1e-4)

    placed = nib.Nifti1Image(values, np.diag([2.0, 1.0, 3.0, 1.0]))
    raw = bytearray(placed.to_bytes())
    struct.pack_into("<f", raw, 80, -2.0)
    (tmp_path / "sform.nii").write_bytes(bytes(raw))
    read = NiftiReader().read(tmp_path / "sform.nii")
    np.testing.assert_allclose(read.affine.numpy()[:3, :3], np.diag([2.0, 1.0, 3.0]))


@pytest.mark.parametrize(
    ("name", "compressed", "rename"),
    [("plain.nii.gz", False, r"\.nii so"), ("zipped.nii", True, r"\.nii\.gz so")],
)
@pytest.mark.parametrize("image_class", [nib.Nifti1Image, nib.Nifti2Image])
def test_name_that_disagrees_on_gzip_is_read_by_content(
    tmp_path: Path, name: str, compressed: bool, rename: str, image_class: type
) -> None:
    """An uncompressed NIfTI named ``.nii.gz`` (or a gzipped one named ``.nii``) is read
    with a warning that names the mismatch and the rename, not refused as corrupt."""
    from medi2i.io.nifti import MisnamedCompressionWarning

    values = (np.arange(6 * 7 * 8) % 300).astype(np.int16).reshape(6, 7, 8)
    image = image_class(values, np.diag([2.0, 3.0, 4.0, 1.0]))
    data = image.to_bytes()
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if compressed else data)
    assert NiftiReader().read_grid(path) is not None
    content = "a gzipped" if compressed else "an uncompressed"
    with pytest.warns(MisnamedCompressionWarning, match=rf"{name}.* is {content} NIfTI.*{rename}"):
        read = NiftiReader().read(path)
    np.testing.assert_array_equal(read.numpy()[0], values)
    np.testing.assert_allclose(np.diag(read.affine.numpy())[:3], [2.0, 3.0, 4.0])


def test_misnamed_gzip_is_still_checked_against_its_trailer(tmp_path: Path) -> None:
    data, _ = _stored_gzip(tmp_path)
    altered = bytearray(data)
    altered[-6] ^= 0xFF  # the CRC-32
    path = tmp_path / "crc_altered.nii"
    path.write_bytes(bytes(altered))
    with (
        pytest.warns(UserWarning, match="gzipped NIfTI"),
        pytest.raises(InputError, match=r"crc_altered\.nii"),
    ):
        NiftiReader().read(path)


@pytest.mark.parametrize("header_class", [nib.Nifti1Header, nib.Nifti2Header])
def test_a_big_endian_nifti_named_gz_is_read_by_content(tmp_path: Path, header_class: type) -> None:
    from medi2i.io.nifti import MisnamedCompressionWarning

    values = (np.arange(6 * 7 * 8) % 300).astype(np.int16).reshape(6, 7, 8)
    header = header_class(endianness=">")
    image_class = nib.Nifti2Image if header_class is nib.Nifti2Header else nib.Nifti1Image
    path = tmp_path / "big.nii.gz"
    path.write_bytes(image_class(values, np.eye(4), header=header).to_bytes())
    assert path.read_bytes()[:4] in (struct.pack(">i", 348), struct.pack(">i", 540))
    with pytest.warns(MisnamedCompressionWarning):
        read = NiftiReader().read(path)
    np.testing.assert_array_equal(read.numpy()[0], values)


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.nii.gz", b"", r"empty\.nii\.gz is empty \(0 bytes\)"),
        ("empty.nii", b"", r"empty\.nii is empty \(0 bytes\)"),
        ("one.nii.gz", b"\x1f", r"one\.nii\.gz is neither gzip-compressed nor a NIfTI file"),
        (
            "garbage.nii.gz",
            bytes(range(32, 127)) * 30,
            r"garbage\.nii\.gz is neither gzip-compressed nor a NIfTI file \(its first "
            r"bytes are 20 21 22",
        ),
        (
            "zipped_text.nii",
            gzip.compress(b"not an image\n" * 40),
            r"zipped_text\.nii is gzip-compressed, but what it holds is not a NIfTI file",
        ),
    ],
    ids=["empty-gz", "empty-nii", "one-byte", "text", "gzipped-text"],
)
def test_a_file_that_is_not_nifti_is_refused_saying_what_it_is(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    """Empty, cut-short or foreign content under a NIfTI name is not parsed as an
    uncompressed header (nibabel's "Binary block is wrong size", "data code ... not
    recognized"): the message says what the file is."""
    path = tmp_path / name
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no misnamed-file warning for what is not NIfTI
        with pytest.raises(InputError, match=message) as refused:
            NiftiReader().read(path)
        assert NiftiReader().read_grid(path) is None
    assert "Error:" not in str(refused.value)
    assert "WrapStruct" not in str(refused.value)
