"""DICOM series into volumes: pixel data, rescale to real units, and the RAS affine.

:func:`read_dicom_folder` scans a folder, picks one series (see
:mod:`medi2i.dicom.reading.series_selection`) and reads it; :func:`read_dicom_series`
reads a series the scan found. The slice order, spacing and grid come from the scan's
checks in :mod:`medi2i.dicom.reading.stack_geometry`; this module only fetches pixels
and assembles the volume:

- uncompressed little- or big-endian pixels are read straight from the files at the
  offset the scan recorded, by a pool of threads, without parsing headers again;
  compressed ones (JPEG Lossless, JPEG-LS, JPEG 2000, RLE, deflate) go through
  pydicom's decoders (pylibjpeg and its plugins);
- Rescale Slope and Intercept are applied slice by slice while the slice is in cache
  (values in HU for CT);
- the volume keeps the files' memory order (x fastest, as ITK and NIfTI store
  images): the ``(1, X, Y, Z)`` float32 volume is a view of the ``(slice, row,
  column)`` buffer, so no transpose is made, and DICOM's LPS patient coordinates
  become RAS.

The result's ``meta["medi2i.dicom"]`` is a :class:`medi2i.dicom.source.DicomSource`
(UIDs, SOP Instance UIDs in slice order, the first image's header without pixel data)
and ``meta["medi2i.dtype"]`` the smallest type that holds the rescaled values exactly
(``"int16"`` for ordinary CT), or ``"float32"`` for fractional rescales.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from medi2i.dicom.reading.file_records import ImageHeader, SkippedFile
from medi2i.dicom.reading.series_records import ScanResult, SeriesInfo
from medi2i.dicom.reading.series_scan import scan_folder
from medi2i.dicom.source import LOSSY_TRANSFER_SYNTAXES, META_KEY, DicomSource
from medi2i.errors import GeometryError, InputError
from medi2i.grid import lps_to_ras
from medi2i.io.base import require_memory
from medi2i.text import one_line

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor
    from pydicom.dataset import Dataset

    from medi2i.dicom.reading.series_selection import SeriesSelector

_READ_THREADS = max(2, min(8, os.cpu_count() or 1))  # more only contend for the cores
_SLAB = 16  # slices a thread reads in one go


def read_dicom_folder(path: str | Path, selector: SeriesSelector | None = None) -> MetaTensor:
    """Scan ``path``, select one series and read it as a volume.

    Args:
        path: A folder exported from a PACS or scanner (searched recursively), or one
            DICOM file (an enhanced multi-frame image).
        selector: Rules that pick the series; without one the folder must hold exactly
            one series that can be a volume.

    Returns:
        A ``(1, X, Y, Z)`` float32 ``MetaTensor`` (see :func:`read_dicom_series`).

    Raises:
        InputError: No images, no series or several series match, or the series'
            files are damaged (the message names the file and the defect).
        GeometryError: The slices do not make one regular volume (gaps, duplicates,
            mixed orientations, a single slice, ...).
    """
    tolerance = selector.slice_tolerance_mm if selector is not None else None
    return read_scanned(scan_folder(path, slice_tolerance_mm=tolerance), selector)


def read_scanned(result: ScanResult, selector: SeriesSelector | None = None) -> MetaTensor:
    """Select one series of a folder's scan and read it (see :func:`read_dicom_folder`)."""
    from medi2i.dicom.reading.series_selection import select_series

    if not any(series.images for series in result.series):
        raise InputError(_no_images_message(result.root, result.series, result.skipped))
    try:
        series = select_series(result.series, selector)
    except InputError as exc:  # its message lists the series but not where they are
        raise InputError(f"{result.root}: {exc}") from None
    require_no_damaged_neighbours(series, result.skipped)
    return read_dicom_series(series)


def require_no_damaged_neighbours(series: SeriesInfo, skipped: Sequence[SkippedFile]) -> None:
    """Refuse a series beside DICOM files that could not be parsed.

    Such a file may be one of its slices: without it the series has a gap (reported
    as missing slices, the wrong cause) or, for an end slice, silently loses a slice.
    The message names the damaged files first, then what the other slices show.
    """
    folders = {image.path.parent for image in series.images}
    damaged = [item for item in skipped if item.damaged and item.path.parent in folders]
    if not damaged:
        return
    listed = "; ".join(f"{item.label}: {item.reason}" for item in damaged[:3])
    more = f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""
    also = f" (the other slices show: {series.problems[0]})" if series.problems else ""
    raise InputError(
        f"{series.folder}: {len(damaged)} damaged DICOM file(s) beside series "
        f"{series.series_instance_uid} ({series.modality} '{one_line(series.description)}', "
        f"{len(series.images)} readable slices) may be slices of it, so it is not read "
        f"without them: {listed}{more}; copy or export the series again, or move the "
        f"damaged files away if they are not part of it{also}"
    )


def read_dicom_series(series: SeriesInfo) -> MetaTensor:
    """Read a scanned series as a volume in real units (HU for CT).

    Voxel ``(i, j, k)`` is column ``i`` and row ``j`` of slice ``k``; slices are in
    order of position along the slice normal (not Instance Number) and the affine
    maps voxel indices to RAS+ mm, so that an oblique or tilted stack keeps its exact
    geometry.

    Args:
        series: A series from :func:`medi2i.dicom.reading.series_scan.scan_folder` with no problems.

    Returns:
        A ``(1, X, Y, Z)`` float32 ``MetaTensor``; ``meta["medi2i.dicom"]`` is the
        :class:`~medi2i.dicom.source.DicomSource` and ``meta["medi2i.dtype"]`` the
        voxel type that holds the values exactly.

    Raises:
        InputError: The series has problems, or a file is damaged or undecodable.
        GeometryError: The series' problems are about its geometry.
    """
    from medi2i.io.base import volume_from_array

    _require_volume(series)
    assert series.geometry is not None
    _warn_about_dropped_copies(series)
    _warn_about_user_tolerance(series)
    with warnings.catch_warnings():
        # pydicom warns about oddities it tolerates; defects raise with a message here
        warnings.simplefilter("ignore")
        values, dtype_name = voxel_values(series.images)
    affine = lps_to_ras(series.geometry.affine_lps)
    source = _source(series)
    return volume_from_array(
        values,
        affine,
        path=series.folder,
        source_dtype=dtype_name,
        meta={META_KEY: source},
        keep_layout=True,
    )


class DroppedFilesWarning(UserWarning):
    """Files of a series were left out because they copy other files exactly."""


def _warn_about_dropped_copies(series: SeriesInfo) -> None:
    from medi2i.dicom.reading.duplicate_files import DUPLICATE_FILES_NOTE

    for note in series.notes:
        if DUPLICATE_FILES_NOTE in note:
            # the note names the files relative to the scanned folder, copies included,
            # which may lie outside the folder of the files kept
            where = series.root if series.root is not None else series.folder
            warnings.warn(f"{where}: {note}", DroppedFilesWarning, stacklevel=3)


class SliceToleranceWarning(UserWarning):
    """A stack was read only because a user's slice tolerance exceeds the default: its
    slices are placed on the fitted grid, up to the deviation named away from their own
    positions."""


def _warn_about_user_tolerance(series: SeriesInfo) -> None:
    """Warn when a slice lies further from the fitted grid than the default tolerance
    allows (so only a larger ``slice_tolerance_mm`` let the stack through)."""
    from medi2i.dicom.reading.slice_spacing import slice_tolerance

    assert series.geometry is not None
    off = series.geometry.position_residual_mm
    default = slice_tolerance(series.geometry.slice_spacing)
    if off <= default:
        return
    warnings.warn(
        f"{series.folder}: a slice lies {off:.3g} mm off the regular slice grid (default "
        f"tolerance {default:.3g} mm); read only because of --slice-tolerance, with each "
        "slice moved onto the grid; check the series for uneven or missing slices",
        SliceToleranceWarning,
        stacklevel=3,
    )


def _require_volume(series: SeriesInfo) -> None:
    if series.is_volume:
        return
    described = one_line(series.description)
    what = f"series {series.series_instance_uid} ({series.modality} '{described}')"
    problems = "; ".join(str(problem) for problem in series.problems) or "no images"
    message = f"{series.folder}: cannot read {what} as one volume: {problems}"
    if series.problems and all(problem.geometric for problem in series.problems):
        raise GeometryError(message)
    raise InputError(message)


def read_stack(images: Sequence[ImageHeader]) -> np.ndarray:
    """The stored pixel values of ``images`` as a ``(slices, rows, columns)`` array.

    Values are as stored (before rescale), with unused high bits cleared or
    sign-extended when Bits Stored is less than Bits Allocated.

    Raises:
        InputError: A file is missing, truncated or its compressed data undecodable.
    """
    dtype = _stored_dtype(images)
    stack = _allocate(images, dtype)
    by_file: dict[Path, list[tuple[int, ImageHeader]]] = {}
    for k, image in enumerate(images):
        by_file.setdefault(image.path, []).append((k, image))
    jobs = list(by_file.values())
    if len(jobs) == 1:
        _read_file(jobs[0], stack)
    else:
        with ThreadPoolExecutor(min(_READ_THREADS, len(jobs))) as pool:
            for done in pool.map(lambda job: _read_file(job, stack), jobs):
                del done
    _clear_unused_bits(stack, images)
    return stack


def _stack_bytes(images: Sequence[ImageHeader], dtype: np.dtype) -> int:
    return len(images) * images[0].rows * images[0].columns * dtype.itemsize


def _described(images: Sequence[ImageHeader]) -> str:
    first = images[0]
    return (
        f"a {first.columns}x{first.rows}x{len(images)} volume (Columns x Rows x slices "
        f"of {first.label} and the others)"
    )


def _allocate(images: Sequence[ImageHeader], dtype: np.dtype) -> np.ndarray:
    """The ``(slices, rows, columns)`` buffer, refused when the machine cannot hold it."""
    require_memory(images[0].path.parent, _stack_bytes(images, dtype), _described(images))
    try:
        return np.empty((len(images), images[0].rows, images[0].columns), dtype=dtype)
    except MemoryError:
        raise InputError(
            f"{images[0].path.parent}: not enough memory for {_described(images)}; the "
            "Rows, Columns or Number of Frames may be damaged, or the series too large "
            "for this machine"
        ) from None


def _stored_dtype(images: Sequence[ImageHeader]) -> np.dtype:
    formats = {
        (image.pixels.bits_allocated, image.pixels.signed) for image in images if image.pixels
    }
    dtypes = [np.dtype(f"{'i' if signed else 'u'}{bits // 8}") for bits, signed in formats]
    return np.dtype(np.result_type(*dtypes))


def _read_file(slices: list[tuple[int, ImageHeader]], stack: np.ndarray) -> None:
    pixels = slices[0][1].pixels
    assert pixels is not None
    path = slices[0][1].path
    same_type = stack.dtype.itemsize * 8 == pixels.bits_allocated
    try:
        if pixels.offset is not None and same_type:
            _read_native(path, slices, stack, pixels.offset, pixels.byte_order)
        else:
            _read_decoded(path, slices, stack)
    except OSError as exc:
        raise _unreadable(path, exc) from None


def _unreadable(path: Path, exc: OSError) -> InputError:
    return InputError(
        f"{path}: cannot be read ({exc.strerror or exc}); check that it still exists and "
        "is readable"
    )


def _read_native(
    path: Path,
    slices: list[tuple[int, ImageHeader]],
    stack: np.ndarray,
    offset: int,
    byte_order: str,
) -> None:
    frame_bytes = stack[0].nbytes
    with path.open("rb", buffering=0) as stream:
        for k, image in slices:
            stream.seek(offset + image.frame * frame_bytes)
            # straight into the stack: no intermediate copy of the pixel bytes
            got = stream.readinto(memoryview(stack[k]).cast("B"))
            if got != frame_bytes:
                raise InputError(
                    f"{path}: truncated pixel data: {got} of {frame_bytes} bytes of "
                    f"{image.label}; the file changed since the scan or is damaged"
                )
            if byte_order == ">" and stack.dtype.itemsize > 1:
                stack[k].byteswap(inplace=True)


def _read_decoded(path: Path, slices: list[tuple[int, ImageHeader]], stack: np.ndarray) -> None:
    from pydicom.uid import UID

    try:
        dataset = _dcmread(path)
    except Exception as exc:  # pydicom raises many kinds for damaged files
        raise InputError(f"{path}: damaged DICOM file: {_first_line(exc)}") from None
    syntax = UID(str(dataset.file_meta.get("TransferSyntaxUID", ""))).name
    if "PixelData" not in dataset:
        raise InputError(
            f"{path}: truncated pixel data: the compressed ({syntax}) pixel data ends "
            "before its last fragment; copy or export the file again"
        )
    try:
        array = dataset.pixel_array
    except Exception as exc:  # decoders raise many kinds for corrupt data
        raise InputError(
            f"{path}: cannot decode its {syntax} pixel data ({_first_line(exc)}); the "
            "compressed data is corrupt or uses features the installed decoders lack"
        ) from None
    if slices[0][1].mosaic_tiles:
        _cut_tiles(path, array, slices, stack)
        return
    frame_size = stack.shape[1] * stack.shape[2]
    needed = max(image.frame for _, image in slices) + 1
    if array.size % frame_size or array.size // frame_size < needed:
        raise InputError(
            f"{path}: its decoded pixel data has shape {array.shape}, which does not hold "
            f"{needed} frame(s) of {stack.shape[2]}x{stack.shape[1]} pixels; the image "
            "attributes (Rows, Columns, Number of Frames) do not match the data"
        )
    frames = array.reshape(-1, *stack.shape[1:])
    for k, image in slices:
        stack[k] = frames[image.frame]


def _cut_tiles(
    path: Path, image: np.ndarray, slices: list[tuple[int, ImageHeader]], stack: np.ndarray
) -> None:
    """The slices of a Siemens mosaic: tiles of its one image, row by row."""
    rows, columns = stack.shape[1:]
    tiles = slices[0][1].mosaic_tiles
    if image.ndim != 2 or image.shape[0] < rows * tiles or image.shape[1] < columns * tiles:
        raise InputError(
            f"{path}: its decoded mosaic has shape {image.shape}, which is not {tiles}x{tiles} "
            f"tiles of {columns}x{rows} pixels; the mosaic attributes do not match the data"
        )
    for k, slice_image in slices:
        row, column = divmod(slice_image.frame, tiles)
        stack[k] = image[row * rows : (row + 1) * rows, column * columns : (column + 1) * columns]


def _clear_unused_bits(stack: np.ndarray, images: Sequence[ImageHeader]) -> None:
    stored_bits = {image.pixels.bits_stored for image in images if image.pixels is not None}
    unused = stack.dtype.itemsize * 8 - min(stored_bits)
    if unused <= 0 or len(stored_bits) > 1:
        return  # mixed formats were decoded by pydicom, which handles the bits itself
    if np.issubdtype(stack.dtype, np.signedinteger):
        # shift the sign bit up and back down so that it is extended (two's complement)
        np.left_shift(stack, unused, out=stack)
        np.right_shift(stack, unused, out=stack)
    else:
        np.bitwise_and(stack, (1 << min(stored_bits)) - 1, out=stack)


def voxel_values(images: Sequence[ImageHeader]) -> tuple[np.ndarray, str]:
    """``slope x stored + intercept`` of ``images`` as ``(X, Y, Z)`` float32, and its type.

    The values are stored as the files store them, x (column) varying fastest, then
    y (row), then the slice, which is also ITK's and NIfTI's order: the array is the
    ``(X, Y, Z)`` view of a C-ordered ``(Z, Y, X)`` buffer, so no transpose is needed.
    Uncompressed slices are read straight from the files by a pool of threads, each
    slice into a small buffer of the thread's own and rescaled from there into the
    volume while it is in cache; compressed ones are decoded first
    (:func:`read_stack`).

    Args:
        images: The slices in volume order.

    Returns:
        The values indexed ``[column, row, slice]`` (Fortran-ordered), and the name of
        the smallest type that holds them exactly (``"float32"`` for fractional ones).

    Raises:
        InputError: A file is missing, truncated or undecodable, or its Rescale Slope
            and Intercept take its values beyond the safe range (checked before the
            multiplication, which could overflow float32).
    """
    slopes = np.array([image.rescale[0] for image in images], dtype=np.float64)
    intercepts = np.array([image.rescale[1] for image in images], dtype=np.float64)
    dtype = _stored_dtype(images)
    native = _all_native(images, dtype)
    needed = _stack_bytes(images, np.dtype(np.float32))
    if not native:
        needed += _stack_bytes(images, dtype)
    require_memory(images[0].path.parent, needed, _described(images))
    stack = None if native else read_stack(images)
    first = images[0]
    values = _allocate(images, np.dtype(np.float32))

    def fill(slab: slice) -> tuple[int, int]:
        low, high = np.iinfo(np.int64).max, np.iinfo(np.int64).min
        buffer = np.empty((1, first.rows, first.columns), dtype=dtype)
        for k in range(slab.start, slab.stop):
            stored = _read_slice(images[k], buffer) if stack is None else stack[k]
            least, most = int(stored.min()), int(stored.max())
            _require_safe_rescale(images[k], least, most, slopes[k], intercepts[k])
            low, high = min(low, least), max(high, most)
            _rescale_into(values[k], stored, slopes[k], intercepts[k])
        return low, high

    slabs = [slice(k, min(k + _SLAB, len(images))) for k in range(0, len(images), _SLAB)]
    if len(slabs) == 1:
        ranges = [fill(slabs[0])]
    else:
        # reading and numpy release the GIL, so threads share the files and the rescale
        with ThreadPoolExecutor(min(_READ_THREADS, len(slabs))) as pool:
            ranges = list(pool.map(fill, slabs))
    low, high = min(r[0] for r in ranges), max(r[1] for r in ranges)
    return values.transpose(2, 1, 0), _exact_dtype(dtype, low, high, slopes, intercepts)


def _all_native(images: Sequence[ImageHeader], dtype: np.dtype) -> bool:
    return all(
        image.pixels is not None
        and image.pixels.offset is not None
        and image.pixels.bits_allocated == dtype.itemsize * 8
        for image in images
    )


def _read_slice(image: ImageHeader, buffer: np.ndarray) -> np.ndarray:
    """One uncompressed slice (frame) into ``buffer`` (shape ``(1, rows, columns)``)."""
    pixels = image.pixels
    assert pixels is not None
    assert pixels.offset is not None
    try:
        _read_native(image.path, [(0, image)], buffer, pixels.offset, pixels.byte_order)
    except OSError as exc:
        raise _unreadable(image.path, exc) from None
    _clear_unused_bits(buffer, [image])
    slice_values: np.ndarray = buffer[0]
    return slice_values


def _require_safe_rescale(
    image: ImageHeader, low: int, high: int, slope: float, intercept: float
) -> None:
    """Refuse, before multiplying, a Rescale Slope and Intercept that take the stored
    values ``low..high`` beyond :data:`~medi2i.voxel_checks.SAFE_MAGNITUDE`: past
    float32's range they would turn into infinite voxels, whose advice (``--nonfinite``)
    cannot help, so every such header gets the message of an out-of-range volume."""
    from medi2i.voxel_checks import SAFE_MAGNITUDE

    ends = (low * slope + intercept, high * slope + intercept)  # float64
    reach = max(ends, key=abs)  # signed: -1e300 is not said to be +1e300
    if abs(reach) <= SAFE_MAGNITUDE:
        return
    raise InputError(
        f"{image.path}: Rescale Slope {slope:g} and Rescale Intercept {intercept:g} take its "
        f"stored values {low}..{high} to {reach:.3g}, beyond the safe range of "
        f"+/-{SAFE_MAGNITUDE:.0e}; rescale the image to its real units (HU for CT), e.g. fix "
        "the header's Rescale Slope/Intercept, before translating it"
    )


def _rescale_into(out: np.ndarray, stored: np.ndarray, slope: float, intercept: float) -> None:
    if slope == 1.0 and float(intercept).is_integer():
        # integers below 2**24 and their sums are exact in float32: one pass
        np.add(stored, np.float32(intercept), out=out)
        return
    out[...] = stored.astype(np.float64) * slope + intercept  # float64 like ITK


def _exact_dtype(
    stored: np.dtype, low: int, high: int, slopes: np.ndarray, intercepts: np.ndarray
) -> str:
    whole = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    if not whole:
        return "float32"
    ends = np.concatenate([low * slopes + intercepts, high * slopes + intercepts])
    for candidate in (stored, np.dtype(np.int16), np.dtype(np.int32)):
        limits = np.iinfo(candidate)
        if limits.min <= ends.min() and ends.max() <= limits.max:
            return candidate.name
    return "float32"


def _source(series: SeriesInfo) -> DicomSource:
    first = series.images[0]
    uids = tuple(dict.fromkeys(image.sop_instance_uid for image in series.images))
    return DicomSource(
        folder=series.folder,
        study_instance_uid=series.study_instance_uid,
        series_instance_uid=series.series_instance_uid,
        frame_of_reference_uid=series.frame_of_reference_uid,
        modality=series.modality,
        sop_class_uid=series.sop_class_uid,
        sop_instance_uids=uids,
        header=_header(first.path),
        slices=tuple((image.sop_instance_uid, _frame_number(image)) for image in series.images),
        lossy_transfer_syntax=next(
            (
                image.pixels.transfer_syntax
                for image in series.images
                if image.pixels is not None
                and image.pixels.transfer_syntax in LOSSY_TRANSFER_SYNTAXES
            ),
            "",
        ),
        position_residual_mm=series.geometry.position_residual_mm if series.geometry else 0.0,
    )


def _frame_number(image: ImageHeader) -> int:
    """The 1-based frame of a slice that is one frame of a multi-frame image; 0 for a
    single-frame image, and for a mosaic's tile (one frame cut into slices)."""
    frames = image.pixels.frames if image.pixels is not None else 1
    return image.frame + 1 if frames > 1 and not image.mosaic_tiles else 0


def _header(path: Path) -> Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return _dcmread(path, stop_before_pixels=True)


def _dcmread(path: Path, *, stop_before_pixels: bool = False) -> Dataset:
    """pydicom's dataset of ``path``, also of a bare dataset without preamble or file meta."""
    from pydicom import dcmread
    from pydicom.uid import UID

    from medi2i.dicom.reading.header_parser import raw_dataset_syntax

    with path.open("rb") as stream:
        start = stream.read(132)
    raw_syntax = raw_dataset_syntax(start[:8]) if start[128:132] != b"DICM" else None
    dataset = dcmread(path, stop_before_pixels=stop_before_pixels, force=raw_syntax is not None)
    if raw_syntax is not None and "TransferSyntaxUID" not in dataset.file_meta:
        dataset.file_meta.TransferSyntaxUID = UID(raw_syntax)
    return dataset


def _no_images_message(path: Path, series: Sequence[SeriesInfo], skipped: Sequence[object]) -> str:
    found = [
        f"{s.modality or '?'} series '{one_line(s.description)}': {s.problems[0]}"
        for s in series
        if s.problems
    ]
    found += [f"{item.label}: {item.reason}" for item in skipped]  # type: ignore[attr-defined]
    listed = "; ".join(found[:5]) + (f"; and {len(found) - 5} more" if len(found) > 5 else "")
    looked = len(skipped) + sum(len(s.files) or 1 for s in series)
    return (
        f"{path}: no DICOM images found ({looked} file(s) looked at"
        + (f": {listed}" if listed else "")
        + "); point at the folder or file that holds the image series"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
