"""NIfTI-1 and NIfTI-2 files (``.nii``, ``.nii.gz``) through nibabel.

The affine is the one nibabel's ``img.affine`` gives: the sform when its code is set,
else the qform, else the pixdim-only fallback. When both forms are set and place the
volume more than 0.01 mm apart (and the qform is not just the sform's float32
quaternion), a :class:`FormDisagreementWarning` says so; a gzipped file's CRC-32 and
length are checked. A file whose content and name disagree (an uncompressed file named
``.nii.gz``, a gzipped one named ``.nii``) is read by its content, with a
:class:`MisnamedCompressionWarning`, when that content is a NIfTI header; an empty file,
or one that is neither gzip nor NIfTI, is refused saying so. NIfTI's RAS+ world is MONAI's, so it is
used as is, only converted to mm when the header's spatial unit is metres or microns.

NIfTI stores the affine in float32, so positions are kept to about 1e-7 of their size
(about 1e-5 mm at 100 mm from the origin); integer voxel types and the sform/qform
codes and units survive a read and a write unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, cast

import numpy as np

from medi2i.errors import GeometryError, InputError, out_of_memory, out_of_memory_reading
from medi2i.io.atomic import atomic_path, write_remedy
from medi2i.io.base import (
    VolumeReader,
    VolumeWriter,
    require_file,
    require_memory,
    spatial_shape,
    volume_from_array,
    volume_to_array,
)

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.grid import Grid

META_PREFIX = "medi2i.nifti."
"""The prefix of the meta keys that carry a NIfTI file's codes and units to its outputs."""
QFORM_CODE_KEY = "medi2i.nifti.qform_code"
SFORM_CODE_KEY = "medi2i.nifti.sform_code"
SPATIAL_UNIT_KEY = "medi2i.nifti.spatial_unit"
TIME_UNIT_KEY = "medi2i.nifti.time_unit"

SUFFIXES = (".nii", ".nii.gz")
_SCANNER = 1  # NIFTI_XFORM_SCANNER_ANAT: what ITK writes, read by every tool
_GZIP_MAGIC = b"\x1f\x8b"
_GZIP_MAX_RATIO = 1032  # deflate cannot compress more: 258 bytes per 2-bit code at best
_MM_PER_UNIT = {"meter": 1000.0, "mm": 1.0, "micron": 0.001, "unknown": 1.0}
FORM_AGREEMENT_MM = 0.01  # far above float32 and quaternion rounding, far below a voxel


def _corners_apart(first: np.ndarray, second: np.ndarray, shape: tuple[int, ...]) -> float:
    """How far apart two affines place the volume's corners at most (NaN if either is)."""
    corners = np.array(
        [
            [i, j, k, 1.0]
            for i in (0, shape[0] - 1)
            for j in (0, shape[1] - 1)
            for k in (0, shape[2] - 1)
        ]
    ).T
    return float(np.linalg.norm(((first - second) @ corners)[:3], axis=0).max())


def _sheared(affine: np.ndarray) -> bool:
    """Whether the affine's axes are not at right angles (a tilted gantry's stack)."""
    columns = affine[:3, :3]
    gram = columns.T @ columns
    return not np.allclose(gram, np.diag(np.diag(gram)), atol=1e-6 * float(np.abs(gram).max()))


def _qform_encodes_sform(header: Any) -> bool:
    """Whether the qform is the sform as NIfTI's float32 quaternion stores it.

    Near a half turn about x or y the quaternion's first term, which is derived from
    the other three, keeps few digits, so such a qform can place an oblique volume
    tenths of a millimetre from its exact sform though the writer meant the same grid
    (ITK, nibabel and medi2i write files like that).
    """
    if _sheared(header.get_sform()):
        return False  # the nearest rotation is not the sform
    try:
        encoded = header.copy()
        encoded.set_qform(header.get_sform(), code=1)
    except Exception:  # no rotation: a singular sform
        return False
    quaternion = [float(header[k]) for k in ("quatern_b", "quatern_c", "quatern_d")]
    wanted = [float(encoded[k]) for k in ("quatern_b", "quatern_c", "quatern_d")]
    offsets = [float(header[k]) for k in ("qoffset_x", "qoffset_y", "qoffset_z")]
    return (
        (
            np.allclose(quaternion, wanted, atol=1e-6)
            or np.allclose(quaternion, -np.asarray(wanted), atol=1e-6)
        )
        and np.allclose(offsets, header.get_sform()[:3, 3], rtol=1e-6, atol=1e-4)
        and np.allclose(header["pixdim"][1:4], encoded["pixdim"][1:4], rtol=1e-5)
        and (float(header["pixdim"][0]) < 0) == (float(encoded["pixdim"][0]) < 0)
    )


class UnstatedOrientationWarning(UserWarning):
    """A volume read from a NIfTI file that states no orientation is written to a format
    that does."""


def warn_if_orientation_unstated(volume: MetaTensor, path: Path) -> None:
    """Warn when ``volume`` comes from a NIfTI file with neither a qform nor an sform
    (both codes 0) and ``path`` is a format that states an orientation (NRRD,
    MetaImage, DICOM). Such a file says nothing about where it lies: nibabel, and so
    medi2i, read it from pixdim alone (x reversed, the volume centred on the origin),
    SimpleITK as identity directions at origin 0, and the new file fixes nibabel's
    reading in writing. NIfTI outputs keep both codes 0 and need no warning."""
    meta = getattr(volume, "meta", {})
    if int(meta.get(QFORM_CODE_KEY, 1)) != 0 or int(meta.get(SFORM_CODE_KEY, 1)) != 0:
        return
    warnings.warn(
        f"{path}: the input NIfTI states no orientation (qform_code and sform_code 0), so "
        "its position comes from the voxel size alone (x reversed, centred on the origin, "
        "as nibabel reads it; SimpleITK reads identity directions at origin 0), and this "
        "format writes that position into the file; set the input's orientation, or "
        "write NIfTI to keep it unstated",
        UnstatedOrientationWarning,
        stacklevel=3,
    )


class MisnamedCompressionWarning(UserWarning):
    """A NIfTI file's name says gzipped (``.nii.gz``) and its content is not, or the
    other way round; it is read by its content."""


def _gzipped(path: Path) -> bool:
    """Whether the file's content is gzip (its first two bytes are gzip's magic number),
    whatever its name says."""
    try:
        with open(path, "rb") as stream:
            return stream.read(2) == _GZIP_MAGIC
    except OSError:
        return False


def _named_gzipped(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


class FormDisagreementWarning(UserWarning):
    """A file's qform and sform place its voxels differently; the sform is used."""


def _warn_if_forms_disagree(header: Any, shape: tuple[int, ...], path: Path) -> None:
    """Warn when the qform and the sform, both set, place the volume's corners apart.

    nibabel (and so medi2i, FSL and MONAI's nibabel reader) use the sform; tools that
    prefer the qform place such a file elsewhere, and the user should know which one
    its producer meant.
    """
    if int(header["qform_code"]) <= 0 or int(header["sform_code"]) <= 0:
        return
    if _qform_encodes_sform(header):
        return
    scale = _MM_PER_UNIT.get(header.get_xyzt_units()[0], 1.0)
    try:
        qform = header.get_qform()
    except ValueError:  # a damaged quaternion: the qform places nothing
        qform = np.full((4, 4), np.nan)
    distance = _corners_apart(qform, header.get_sform(), shape) * scale
    if np.isfinite(distance) and distance <= FORM_AGREEMENT_MM:
        return
    if not np.isfinite(distance):
        apart = "differently (its qform is damaged)"
    elif not _sheared(header.get_sform()):
        apart = f"up to {distance:.3g} mm apart"
    else:
        apart = (
            f"up to {distance:.3g} mm apart (the sform is sheared, as after a gantry "
            "tilt, which no qform can hold)"
        )
    warnings.warn(
        f"{path}: its qform and sform place the volume {apart}; "
        f"medi2i uses the sform (code {int(header['sform_code'])}), as nibabel and FSL "
        "do, and tools that prefer the qform will place it elsewhere; an output made from "
        "it holds the sform in both forms (or only in the sform, if sheared), so such tools "
        "will place the output and this input apart: check which one the file's producer "
        "meant",
        FormDisagreementWarning,
        stacklevel=4,
    )


def _require_stated_spacing(header: Any, meta: Mapping[str, int], path: Path) -> None:
    """Refuse a voxel size nibabel would repair where the grid takes it from pixdim:
    without an sform, the qform (or, with neither form, pixdim alone) scales by it.

    nibabel turns a zero spacing into 1 mm and a negative one into its absolute value
    (with a line on the console), and niftilib turns both into 1 mm, so the same file
    would be read on another grid, or by another tool elsewhere: refuse it instead, as a
    zero spacing in an sform is refused. Without either form a negative spacing is
    refused too: nibabel (and so medi2i) places such a file as if the spacing were
    positive, but ITK takes its sign as a flip of that axis, so an output written with
    the positive spacing would lie mirrored against the input in ITK-based tools.
    """
    if meta[SFORM_CODE_KEY] > 0:
        return
    from nibabel.openers import ImageOpener

    try:  # the header as stored: nibabel's checked copy has the zeros replaced by 1
        with ImageOpener(str(path)) as stream:
            stored = type(header).from_fileobj(stream, check=False)
        spacing = [round(float(v), 6) for v in stored["pixdim"][1:4]]
    except Exception:  # unreadable again: keep what the checked header says
        spacing = [float(v) for v in header["pixdim"][1:4]]
    qform = meta[QFORM_CODE_KEY] > 0
    if all(np.isfinite(v) and v > 0 for v in spacing):
        return
    if qform:
        raise GeometryError(
            f"{path}: the header's voxel size (pixdim) is {spacing} mm and its qform "
            f"(code {meta[QFORM_CODE_KEY]}, no sform) scales by it; a voxel size that is "
            "not a positive number places nothing (nibabel would read 0 as 1 mm, "
            "a negative size as its opposite): re-export the file with its real spacing"
        )
    raise GeometryError(
        f"{path}: the header's voxel size (pixdim) is {spacing} mm and it states no "
        "qform or sform, so the voxel size alone places it; a voxel size that is not a "
        "positive number places nothing (nibabel would read 0 as 1 mm, a negative size as "
        "its opposite, which ITK-based tools take as a flipped axis): re-export the file "
        "with its real spacing"
    )


class NiftiReader(VolumeReader):
    """Reads ``.nii`` and ``.nii.gz`` files with nibabel.

    Scaled data (``scl_slope``/``scl_inter``) is read scaled, and recorded as float32
    since the stored integers are no longer the values.
    """

    name = "nifti"
    description = "NIfTI-1/NIfTI-2 volumes (.nii, .nii.gz) via nibabel"
    suffixes = SUFFIXES

    def read(self, path: Path) -> MetaTensor:
        """Read a NIfTI file; see :meth:`VolumeReader.read`."""
        require_file(path, "NIfTI")
        image = _load(path)
        header = image.header
        shape = spatial_shape(tuple(image.shape), path)  # refuse 4D series before loading
        affine, meta = _affine_and_meta(image, path)
        _warn_if_forms_disagree(header, shape, path)
        _require_data_size(image, shape, path)
        values, stored = _voxels(image, path)
        # x fastest, as stored: the tensor keeps that layout (no transposing copy)
        return volume_from_array(
            values, affine, path=path, source_dtype=stored, meta=meta, keep_layout=True
        )

    def read_grid(self, path: Path) -> Grid | None:
        """The grid :meth:`read` gives ``path``, from the header (nibabel loads the
        voxels lazily); ``None`` when the header is unreadable or not one 3D volume."""
        from medi2i.grid import Grid

        try:
            image = _load(path, warn=False)  # read() warns, once
            shape = spatial_shape(tuple(image.shape), path)
            affine, _ = _affine_and_meta(image, path)
        except (InputError, GeometryError):
            return None
        return Grid((shape[0], shape[1], shape[2]), affine)


def _affine_and_meta(image: Any, path: Path) -> tuple[np.ndarray, dict[str, object]]:
    """The voxel-to-RAS affine in mm and the header fields :meth:`NiftiReader.read`
    records (the forms' codes and the units).

    Raises:
        InputError: The header's codes are unreadable.
        GeometryError: The header states no usable voxel size.
    """
    header = image.header
    try:
        spatial_unit, time_unit = header.get_xyzt_units()
        affine = np.array(image.affine, dtype=np.float64)
        codes = {
            QFORM_CODE_KEY: int(header["qform_code"]),
            SFORM_CODE_KEY: int(header["sform_code"]),
        }
    except Exception as exc:  # nibabel raises KeyError, ValueError... for bad codes
        raise _unreadable(path, exc) from exc
    _require_stated_spacing(header, codes, path)
    meta: dict[str, object] = {**codes, SPATIAL_UNIT_KEY: spatial_unit, TIME_UNIT_KEY: time_unit}
    affine[:3, :] *= _MM_PER_UNIT.get(spatial_unit, 1.0)
    return affine, meta


def _load(path: Path, *, warn: bool = True) -> Any:
    """The nibabel image of ``path`` (voxels not read yet); ``warn``: warn of a name that
    disagrees with the content on gzip (:class:`MisnamedCompressionWarning`)."""
    nib = _nibabel()
    misnamed = _gzipped(path) != _named_gzipped(path)
    if misnamed or _is_empty(path):
        _require_nifti_content(path)  # not a misnamed NIfTI file: say what it is
    try:
        with _quiet_nibabel():
            image = _misnamed(path, warn=warn) if misnamed else nib.load(path)
    except Exception as exc:  # nibabel raises many kinds; the user needs one message
        raise _unreadable(path, exc) from exc
    if not isinstance(image, nib.Nifti1Image):  # Nifti2Image is a subclass
        raise InputError(
            f"{path} is a {type(image).__name__}, not a NIfTI image; "
            "convert it to NIfTI (.nii.gz) first"
        )
    return image


def _misnamed(path: Path, *, warn: bool) -> Any:
    """The image of a file whose name and content disagree on gzip, read by its content
    (nibabel picks the decompression by the name alone). Only the header is read here:
    :func:`_read_voxels` opens the file by its content again for the voxels."""
    gzipped = _gzipped(path)
    with _opened(path, gzipped=gzipped) as stream:
        sizeof_hdr = stream.read(4)
        stream.seek(0)
        image = _image_class(sizeof_hdr).from_stream(stream)
    if warn:  # a header was read: it is a NIfTI file
        content, rename = ("a gzipped", ".nii.gz") if gzipped else ("an uncompressed", ".nii")
        warnings.warn(
            f"{path} is {content} NIfTI file named {''.join(path.suffixes[-2:])}; read by "
            f"its content: rename it to end in {rename} so that other tools read it too",
            MisnamedCompressionWarning,
            stacklevel=2,
        )
    return image


_NIFTI_MAGICS = {348: (344, (b"n+1\0", b"ni1\0")), 540: (4, (b"n+2\0",))}
"""NIfTI-1's and NIfTI-2's header sizes (``sizeof_hdr``), each with the offset and
values of its ``magic`` field."""


def _is_empty(path: Path) -> bool:
    try:
        return path.stat().st_size == 0
    except OSError:
        return False


def _require_nifti_content(path: Path) -> None:
    """Refuse, with what the file is, a file whose name and content disagree on gzip
    (or an empty file) unless its content is recognisably NIfTI: ``sizeof_hdr`` 348 or
    540 in either byte order and the magic (``n+1``, ``ni1``, ``n+2``) at its offset.
    A file that is neither gzip nor NIfTI (empty, cut short, another format named
    ``.nii.gz``) is then not parsed as an uncompressed header, which gave nibabel's
    messages about binary blocks and data codes.

    Raises:
        InputError: The file is empty, or its content is not NIfTI.
    """
    import gzip
    import zlib

    if _is_empty(path):
        raise InputError(
            f"{path} is empty (0 bytes): it holds no image; write or copy the file again"
        )
    gzipped = _gzipped(path)
    try:
        with _opened(path, gzipped=gzipped) as stream:
            head = stream.read(352)
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise _unreadable(path, exc) from exc
    if _nifti_header(head):
        return
    if gzipped:
        raise InputError(
            f"{path} is gzip-compressed, but what it holds is not a NIfTI file (it starts "
            f"with the bytes {head[:8].hex(' ')}); check that it is the right file, or "
            "export it again as NIfTI (.nii.gz)"
        )
    raise InputError(
        f"{path} is neither gzip-compressed nor a NIfTI file (its first bytes are "
        f"{head[:8].hex(' ')}, {_bytes(path.stat().st_size)} in all); check that it is "
        "the right file and was copied whole, or export it again as NIfTI (.nii.gz)"
    )


def _bytes(count: int) -> str:
    return f"{count} byte" if count == 1 else f"{count} bytes"


def _nifti_header(head: bytes) -> bool:
    """Whether ``head`` (a file's first bytes) starts a NIfTI-1 or NIfTI-2 header."""
    for size in (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")):
        found = _NIFTI_MAGICS.get(size)
        if found is not None:
            offset, magics = found
            return head[offset : offset + 4] in magics
    return False


def _opened(path: Path, *, gzipped: bool) -> BinaryIO:
    """``path`` opened for reading, decompressed when its content is gzip."""
    import gzip

    if gzipped:
        return cast(BinaryIO, gzip.GzipFile(path, "rb"))
    return open(path, "rb")


def _image_class(sizeof_hdr: bytes) -> Any:
    """NIfTI-2's class for a header of 540 bytes (either byte order), else NIfTI-1's."""
    nib = _nibabel()
    sizes = {int.from_bytes(sizeof_hdr, order) for order in ("little", "big")}
    return nib.Nifti2Image if 540 in sizes else nib.Nifti1Image


def _require_data_size(image: Any, shape: tuple[int, ...], path: Path) -> None:
    """Refuse dimensions the file cannot hold before any voxel is allocated.

    An uncompressed file must hold ``vox_offset`` plus every voxel; a gzipped one at
    least 1/1032 of that (gzip's largest possible compression ratio).
    """
    itemsize = np.dtype(image.get_data_dtype()).itemsize
    voxels = int(np.prod(shape, dtype=object))
    offset = int(getattr(image.dataobj, "offset", 0))  # the header copy's is reset to 0
    needed = offset + voxels * itemsize
    size = path.stat().st_size
    gzipped = _gzipped(path)
    if needed > (size * _GZIP_MAX_RATIO if gzipped else size):
        described = "even at gzip's best compression, " if gzipped else ""
        raise InputError(
            f"cannot read {path} as NIfTI: the header declares {'x'.join(map(str, shape))} "
            "voxels of "
            f"{image.get_data_dtype()} ({needed} bytes from offset {offset}), but "
            f"{described}the file of {size} bytes cannot hold them; it is truncated or its "
            "header (dim, datatype, vox_offset) is damaged; re-export it"
        )
    require_memory(path, voxels * (itemsize + 4), f"a {'x'.join(map(str, shape))} volume")


def _voxels(image: Any, path: Path) -> tuple[np.ndarray, str]:
    """The voxel values (scaled) and the name of the type to write them back as."""
    stored = np.dtype(image.get_data_dtype())
    if stored.fields is not None or not (
        np.issubdtype(stored, np.integer) or np.issubdtype(stored, np.floating)
    ):
        raise InputError(
            f"{path} stores voxels as {stored} (RGB or complex); medi2i reads scalar "
            "integer or floating-point volumes only"
        )
    try:
        values = _read_voxels(image, path)
    except Exception as exc:  # truncated or corrupt data block, or a failed gzip check
        raise _unreadable(path, exc) from exc
    # nibabel moves scl_slope/scl_inter from the header to the proxy on load
    slope, inter = getattr(image.dataobj, "slope", 1.0), getattr(image.dataobj, "inter", 0.0)
    scaled = slope != 1.0 or inter != 0.0
    return values, "float32" if scaled else stored.newbyteorder("=").name


def _read_voxels(image: Any, path: Path) -> np.ndarray:
    """The stored voxel values; for a gzipped file, checked against gzip's trailer.

    nibabel reads exactly the voxel bytes and stops before gzip's trailer, so a file
    whose deflate stream still decodes but whose data or CRC-32 was altered would be
    read as if fine. A gzipped file's voxels are read here from a stream that is then
    read to its end, which makes :mod:`gzip` compare the CRC-32 and the length with
    what it decompressed; the file is still decompressed once. Bytes after the last
    member that are not gzip are ignored, as ``gzip -t`` and nibabel ignore them. A file
    whose name disagrees with its content on gzip is opened by its content.
    """
    import gzip

    gzipped = _gzipped(path)
    if gzipped == _named_gzipped(path) and not gzipped:
        return np.asanyarray(image.dataobj)
    with _opened(path, gzipped=gzipped) as stream:
        with _quiet_nibabel():
            again = type(image).from_stream(stream)
        values: np.ndarray = np.asanyarray(again.dataobj)
        try:
            while gzipped and stream.read(1 << 20):  # the rest, to the trailer
                pass
        except gzip.BadGzipFile as exc:
            # bytes that are not gzip after a member whose CRC-32 and length were
            # checked: ignored, as gzip -t and nibabel ignore them
            if not str(exc).startswith("Not a gzipped file"):
                raise
    return values


def _unreadable(path: Path, exc: Exception) -> Exception:
    if out_of_memory(exc):  # the machine's limit, not a damaged file
        return out_of_memory_reading(path, exc)
    return InputError(
        f"cannot read {path} as NIfTI ({type(exc).__name__}: {exc}); the file is "
        "corrupt, truncated or not NIfTI; check it opens in a viewer or re-export it"
    )


class NiftiWriter(VolumeWriter):
    """Writes ``.nii`` and ``.nii.gz`` files with nibabel.

    The qform and the sform both hold the affine. Their codes and the units come from
    the volume's meta when it was read from NIfTI, otherwise both codes are
    "scanner" (1) and units mm and seconds, as ITK writes them. A sheared affine (a
    gantry tilt) goes in the sform alone: a qform, a rotation, would place it elsewhere.
    """

    name = "nifti"
    description = "NIfTI-1 volumes (.nii, .nii.gz) via nibabel"
    suffixes = SUFFIXES

    def write(self, volume: MetaTensor, path: Path) -> None:
        """Write a NIfTI file atomically; see :meth:`VolumeWriter.write`."""
        values, affine = volume_to_array(volume, path=path)
        image = _nifti_image(values, affine, volume.meta)
        with atomic_path(path) as temporary:
            try:
                image.to_filename(temporary)
            except OSError as exc:
                raise _not_written(path, temporary, exc) from exc


def _not_written(path: Path, temporary: Path, exc: OSError) -> InputError:
    """One line about ``path``, the output asked for: ``str(exc)`` names the hidden
    temporary file nibabel was writing, which the user never asked for and which is
    gone by the time they read the message."""
    reason = exc.strerror or str(exc).replace(str(temporary), str(path))
    return InputError(
        f"cannot write {path}: {reason}; nothing was written there ({write_remedy(exc)})"
    )


def _nifti_image(values: np.ndarray, affine: np.ndarray, meta: Any) -> Any:
    nib = _nibabel()
    spatial_unit = str(meta.get(SPATIAL_UNIT_KEY, "mm"))
    time_unit = str(meta.get(TIME_UNIT_KEY, "sec"))
    stored_affine = affine.copy()
    stored_affine[:3, :] /= _MM_PER_UNIT.get(spatial_unit, 1.0)
    image = nib.Nifti1Image(values, stored_affine, dtype=values.dtype)
    qform_code = int(meta.get(QFORM_CODE_KEY, _SCANNER))
    sform_code = int(meta.get(SFORM_CODE_KEY, _SCANNER))
    if _sheared(stored_affine):
        # a qform is a rotation: it would place a sheared grid (a gantry tilt)
        # elsewhere, and readers that prefer it (ITK) would use it without a word;
        # only the sform is set, so they refuse the file instead
        image.set_qform(None, code=0)
        sform_code = sform_code or qform_code or _SCANNER
    else:
        image.set_qform(stored_affine, code=qform_code)
    image.set_sform(stored_affine, code=sform_code)
    if not np.allclose(image.header.get_best_affine(), stored_affine, rtol=1e-6, atol=1e-4):
        # the codes from the source cannot hold this affine (a sheared one with only a
        # qform, or neither form): make the sform carry it
        image.set_sform(stored_affine, code=qform_code or _SCANNER)
    image.header.set_xyzt_units(xyz=spatial_unit, t=time_unit)
    return image


@contextmanager
def _quiet_nibabel() -> Iterator[None]:
    """nibabel's header checks off the console while it parses a header.

    It logs what it repairs ("pixdim[1,2,3] should be non-zero; setting 0 dims to 1")
    to the console, beside medi2i's one-line message about the same header, and numpy
    warns of the NaN an infinite pixdim makes in the qform, which the reader refuses.
    """
    logger = _nibabel().imageglobals.logger
    disabled = logger.disabled
    logger.disabled = True
    try:
        with np.errstate(invalid="ignore", over="ignore"):
            yield
    finally:
        logger.disabled = disabled


def _nibabel() -> Any:
    """nibabel, imported on first use: it is slow to import and untyped."""
    import nibabel

    return nibabel
