"""The reader and writer contract, and the volume every reader returns.

A volume in medi2i is a MONAI ``MetaTensor`` of shape ``(1, X, Y, Z)`` (one channel
first), float32 voxel values, and ``.affine``: the float64 4x4 matrix that maps a voxel
index ``(i, j, k, 1)`` to a world position in RAS+ millimetres (MONAI's convention).
The voxel array is kept as stored in the file; nothing is reoriented on read, so a
left-posterior-superior or oblique volume keeps its array and an affine describing it.

Its ``meta`` holds at least:

``filename_or_obj``
    The path read, as a string.
``spatial_shape``
    ``(X, Y, Z)`` as an integer array.
``original_affine``
    A copy of the affine as read.
``space``
    ``"RAS"``.
``medi2i.dtype``
    The voxel type stored in the file (``"int16"``, ``"float32"``, ...). Writers write
    this type back (rounding and clipping for integer types); without it they write
    float32. Set it to ``None`` (or another type) on a volume whose values no longer
    fit the source type, e.g. a synthetic CT computed from an int16 MR.

Plugins add readers and writers through the ``register_readers`` and
``register_writers`` hooks. A reader is asked :meth:`VolumeReader.can_read` for a path
(a file or a folder: a DICOM reader answers for directories) and builds its result
with :func:`volume_from_array` so that every reader returns the same kind of volume.

This module stays importable without torch or MONAI: plugins import it on start-up.
"""

from __future__ import annotations

import abc
import os
import stat
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medi2i.errors import GeometryError, InputError, OptionsError, OutputError

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.grid import Grid

DTYPE_KEY = "medi2i.dtype"
"""Meta key of the voxel type to write a volume as (a numpy dtype name)."""

_WRITABLE_DTYPES = (
    "int8",
    "uint8",
    "int16",
    "uint16",
    "int32",
    "uint32",
    "int64",
    "uint64",
    "float32",
    "float64",
)


class VolumeReader(abc.ABC):
    """Reads one kind of input (a file format, a DICOM folder) into a volume.

    Subclass it, set :attr:`name`, :attr:`description` and either :attr:`suffixes` or
    your own :meth:`can_read`, implement :meth:`read`, and hand an instance to
    ``register`` in your plugin's ``register_readers`` hook.

    Build the result with :func:`volume_from_array` (``medi2i.volume_from_array``),
    which checks the array and the affine and records the file in the volume's
    metadata, so that errors about the volume name it.

    Example:
        >>> from medi2i import VolumeReader, volume_from_array
        >>> class MyFormatReader(VolumeReader):
        ...     name = "myformat"
        ...     description = "MyFormat files (.myf)"
        ...     suffixes = (".myf",)
        ...
        ...     def read(self, path):
        ...         array, affine = load_myformat(path)  # your code
        ...         return volume_from_array(array, affine, path=path)
    """

    name: str
    """Unique name of the reader, e.g. ``"nifti"``."""
    description: str
    """One line for ``medi2i plugins``: what it reads, through which library."""
    suffixes: tuple[str, ...] = ()
    """Lower-case file name endings it reads (``".nii.gz"``); empty for folders."""

    def can_read(self, path: Path) -> bool:
        """Whether this reader handles ``path``; must be cheap (do not parse the file).

        The default answers by :attr:`suffixes`; a folder reader overrides it.
        """
        return _has_suffix(path, self.suffixes)

    @abc.abstractmethod
    def read(self, path: Path) -> MetaTensor:
        """Read ``path`` into a ``(1, X, Y, Z)`` float32 volume with its RAS affine (mm).

        Raises:
            InputError: The path is missing, unreadable or corrupt (message names it).
            GeometryError: The image is not one 3D volume.
        """

    def read_grid(self, path: Path) -> Grid | None:
        """The grid :meth:`read` gives ``path``, from its header alone, or ``None`` when
        the reader cannot tell it without reading the voxels (the default) or the header
        is unreadable (:meth:`read` then says why).

        Checks made before long work (a workflow's evaluation cases, before training)
        use it to refuse a pair whose volumes lie on different grids at once; they skip
        the files it cannot tell. Override it when your format's header is cheap to read.
        """
        return None


class VolumeWriter(abc.ABC):
    """Writes a volume to one kind of output (a file format, a DICOM series).

    Subclass it like :class:`VolumeReader`; register it in ``register_writers``.
    Write the voxel array and affine as given (do not reorient), in the type from
    :func:`output_dtype`, and atomically (see :func:`medi2i.io.atomic.atomic_path`).
    """

    name: str
    """Unique name of the writer, e.g. ``"nifti"``."""
    description: str
    """One line for ``medi2i plugins``: what it writes, through which library."""
    suffixes: tuple[str, ...] = ()
    """Lower-case file name endings it writes; empty for folders."""

    def can_write(self, path: Path) -> bool:
        """Whether this writer handles ``path``; the default answers by :attr:`suffixes`."""
        return _has_suffix(path, self.suffixes)

    def check(self, affine: np.ndarray, meta: Mapping[str, object], path: Path) -> None:
        """Raise the error :meth:`write` would raise for an output on the grid ``affine``
        with ``meta``; called before the output is computed, so a user does not wait for
        an inference whose result cannot be written. The default accepts everything.

        Raises:
            Medi2iError: The output could not be written to ``path``.
        """
        return  # every volume fits the file formats; a folder writer may refuse

    @abc.abstractmethod
    def write(self, volume: MetaTensor, path: Path) -> None:
        """Write ``volume`` (``(1, X, Y, Z)`` or ``(X, Y, Z)``, RAS affine in mm) to ``path``.

        Raises:
            GeometryError: The volume has more than one channel or an unusable affine.
            InputError: ``path`` cannot be written (message names it).
        """


def _has_suffix(path: Path, suffixes: tuple[str, ...]) -> bool:
    name = path.name.lower()
    return any(name.endswith(suffix) for suffix in suffixes)


_SPECIAL_KINDS = (
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def special_file_kind(path: Path) -> str | None:
    """What ``path`` (links followed) is when it is neither a regular file nor a
    folder: ``"a FIFO (named pipe)"``, a socket or a device; ``None`` for a file, a
    folder, or a path that cannot be looked at (opening it says why).

    Opening a FIFO waits until something writes to it, and a device may never end, so
    such a path is refused before it is opened (:func:`require_not_special`).

    Example:
        >>> special_file_kind(Path("/dev/null"))
        'a character device'
    """
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return next((kind for test, kind in _SPECIAL_KINDS if test(mode)), "a special file")


def require_not_special(
    path: Path,
    what: str = "an input",
    give: str = "the volume file or DICOM folder itself",
    error: type[Exception] = InputError,
) -> None:
    """Refuse, in one line and before anything opens it, a ``path`` that is neither a
    regular file nor a folder (:func:`special_file_kind`): reading a FIFO would block
    for ever.

    Raises:
        InputError: ``path`` is a FIFO, a socket or a device (or ``error``, e.g. the
            model's error for a trained-model path).
    """
    kind = special_file_kind(Path(path))
    if kind is None:
        return
    raise error(
        f"{path} is {kind}, not a regular file or a folder; medi2i does not read it as "
        f"{what} (opening it could wait for ever): give {give}"
    )


def require_existing(path: Path) -> None:
    """Raise :class:`InputError` when ``path`` does not exist (a symbolic link that
    leads nowhere, a missing target or a loop, is named as such), or is neither a
    regular file nor a folder (a FIFO, which would block the read, or a device)."""
    if path.exists():
        require_not_special(path)
        return
    if path.is_symlink():
        raise InputError(
            f"{path} is a symbolic link that leads to no file (its target "
            f"{os.readlink(path)!r} is missing, or the links form a loop); point it at the "
            "file or give the file itself"
        )
    raise InputError(f"{path} does not exist; check the path and its spelling")


def require_file(path: Path, format_name: str) -> None:
    """:func:`require_existing`, and not a folder: a reader of one-file formats is
    chosen by the name's suffix, and a folder named ``scan.nii.gz`` is no such file."""
    require_existing(path)
    if path.is_dir():
        raise InputError(
            f"{path} is a folder, not a {format_name} file; give the file inside it (or "
            "rename the folder)"
        )


def spatial_shape(shape: tuple[int, ...], path: Path, *, components: int = 1) -> tuple[int, ...]:
    """Check that an image is one 3D volume and return its ``(X, Y, Z)`` shape.

    Args:
        shape: The image dimensions in file order, x first; axes of size 1 after the
            third (``(X, Y, Z, 1)``, ``(X, Y, Z, 1, 1)``) are accepted and dropped.
        path: The file, for the message.
        components: Values per voxel (3 for RGB or displacement-vector images).

    Raises:
        GeometryError: 2D, 4D with several volumes, 5D or more, several components, or
            an axis of no voxels (a damaged header).
    """
    if components != 1:
        raise GeometryError(
            f"{path}: found {components} components per voxel (vector or colour pixels) "
            f"in an image of shape {shape}; medi2i expects one scalar 3D volume (X, Y, Z); "
            "save each component as its own file"
        )
    given = tuple(shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]  # a single volume saved with singleton time or channel axes
    if len(shape) == 3:
        if min(shape) < 1:
            raise GeometryError(
                f"{path}: the header gives the image dimensions {given}, with an axis "
                "of no voxels; the header is damaged or the file holds no image; re-export it"
            )
        return tuple(int(size) for size in shape[:3])
    found = f"a {len(given)}D image of shape {given}"
    if len(given) == 4 and given[0] < given[3]:  # channel first, as read_volume gives
        found += f" ({given[0]} channels first: give one channel, e.g. array[0])"
    elif len(given) == 4:
        found += f" ({given[3]} volumes)"
    raise GeometryError(
        f"{path}: found {found}; medi2i expects one 3D volume (X, Y, Z), with any further "
        "axes of size 1 (X, Y, Z, 1); split series into 3D files first"
    )


def require_memory(path: Path, nbytes: int, what: str) -> None:
    """Refuse to read what would need more memory than the machine has.

    Called before allocating, with the size a header declares: a damaged dimension
    (a Rows of 65535, a NIfTI ``dim`` of 32767) would otherwise make a reader ask for
    terabytes, and either fail with a bare ``MemoryError`` or, with memory
    overcommit, run the machine out of memory.

    Args:
        path: The file or folder, named in the message.
        nbytes: Bytes the read would allocate.
        what: What would take them, e.g. ``"a 60000x50000x40000 volume"``.

    Raises:
        InputError: ``nbytes`` is more than the machine's physical memory.
    """
    total = physical_memory()
    if total is not None and nbytes > total:
        raise InputError(
            f"{path}: {what} would take {nbytes / 2**30:.1f} GiB, more than the "
            f"{total / 2**30:.1f} GiB of memory of this machine; the header's dimensions "
            "are probably damaged (re-export the file), or crop or downsample it first"
        )


def _require_float32_range(values: np.ndarray, path: Path) -> None:
    """Refuse finite values that the cast to float32 would turn into infinities, with
    the out-of-range message (not a NaN/infinity one that suggests zeroing them)."""
    from medi2i.voxel_checks import SAFE_MAGNITUDE

    if values.dtype.kind != "f" or values.dtype.itemsize <= 4 or values.size == 0:
        return
    with np.errstate(invalid="ignore"):
        largest = float(np.nanmax(np.abs(values), initial=0.0))
    if largest > SAFE_MAGNITUDE and np.isfinite(largest):
        raise InputError(
            f"{path}: values reach {largest:.3g}, beyond the safe range of "
            f"+/-{SAFE_MAGNITUDE:.0e}; rescale the image to its real units (HU for CT) "
            "before translating it"
        )


def physical_memory() -> int | None:
    """Bytes of physical memory, or ``None`` where the system does not say."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, OSError, ValueError):  # not POSIX
        return None


def volume_from_array(
    array: npt.ArrayLike,
    affine: np.ndarray,
    *,
    path: Path | str | None,
    source_dtype: str | None = None,
    meta: Mapping[str, object] | None = None,
    keep_layout: bool = False,
) -> MetaTensor:
    """Build the volume every reader returns from a voxel array and its affine.

    The volume holds its own copy of the voxels: changing it never changes ``array``,
    and changing ``array`` afterwards never changes the volume (unless
    ``keep_layout``, which readers use for an array they made and hand over).

    Example:
        >>> volume = volume_from_array(np.zeros((4, 3, 2)), np.eye(4), path="zeros")
        >>> tuple(volume.shape), str(volume.dtype)
        ((1, 4, 3, 2), 'torch.float32')

    Args:
        array: Voxel values indexed ``[i, j, k]`` (x first): a 3D numpy array, torch
            tensor or nested list of real numbers, or a ``(1, X, Y, Z)`` one with its
            channel first (as :func:`medi2i.read_volume` returns volumes).
        affine: 4x4 voxel-to-world matrix in RAS+ mm.
        path: The file read; stored as ``filename_or_obj`` and named in errors
            (``None``: an array of no file, named ``<array>``).
        source_dtype: The voxel type stored in the file; defaults to ``array.dtype``.
        meta: Further metadata (format header fields, DICOM UIDs, ...).
        keep_layout: For readers: keep ``array``'s memory order (x fastest, as NIfTI,
            a DICOM series or ITK store it) instead of copying it to C order: the cast
            to float32, when needed, is then one pass over memory without
            transposing, and a float32 array is used as it is, not copied (the reader
            hands it over and keeps no reference).

    Returns:
        A ``MetaTensor`` of shape ``(1, X, Y, Z)``, float32, with a float64 affine.

    Raises:
        InputError: ``array`` is not an array of real numbers.
        GeometryError: The array is not 3D, or the affine is not a finite invertible
            4x4 matrix (e.g. a spacing of 0 mm).
    """
    import torch
    from monai.data.meta_tensor import MetaTensor

    named = Path(path) if path is not None else Path("<array>")  # in messages
    voxels = _voxel_array(array, named)
    shape = spatial_shape(_without_channel(voxels.shape), named)
    affine = _checked_affine(affine, named)
    values = voxels.reshape(shape)
    _require_float32_range(values, named)
    if keep_layout:
        # a cast in the array's own memory order: one pass, no transposition
        values = values.astype(np.float32, order="K", copy=False)
    else:  # always a copy: the caller's array is never changed through the volume
        values = np.array(values, dtype=np.float32, order="C", copy=True)
    full_meta: dict[str, object] = dict(meta or {})
    full_meta.update(
        {
            "filename_or_obj": str(path),
            "spatial_shape": np.asarray(shape, dtype=np.int64),
            "original_affine": affine.copy(),
            "space": "RAS",
            "original_channel_dim": "no_channel",
            DTYPE_KEY: source_dtype or voxels.dtype.name,
        }
    )
    return MetaTensor(
        torch.from_numpy(values[None]), affine=torch.from_numpy(affine), meta=full_meta
    )


def _voxel_array(array: object, path: Path | str) -> np.ndarray:
    """``array`` as a numpy array of real numbers (a torch tensor or a nested list
    converted; a numpy array as it is)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(array, torch.Tensor):
        tensor = torch.Tensor.as_subclass(array.detach().cpu(), torch.Tensor)
        if tensor.dtype == torch.bfloat16:  # numpy has no bfloat16
            tensor = tensor.float()
        if not tensor.is_complex():
            return np.asarray(tensor.numpy())
    if isinstance(array, list | tuple):
        try:
            array = np.asarray(array)
        except ValueError:
            raise InputError(
                f"{path}: the nested list of voxel values is ragged (its rows differ in "
                "length); give a 3D numpy array of shape (X, Y, Z)"
            ) from None
    if isinstance(array, np.ndarray) and array.dtype.kind in "biuf":
        return array
    dtype = getattr(array, "dtype", None)
    found = f"a {type(array).__name__}" + (f" of {dtype}" if dtype is not None else "")
    hint = (
        "take their magnitude (np.abs) first"
        if "complex" in str(dtype)
        else "convert them with np.asarray(values, np.float32)"
    )
    raise InputError(
        f"{path}: volume_from_array takes the voxel values as a 3D numpy array of real "
        f"numbers (X, Y, Z), not {found}; {hint}"
    )


def _without_channel(shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(X, Y, Z)`` of a ``(1, X, Y, Z)`` array with its channel first (as volumes
    are), or ``shape`` itself: a ``(X, Y, Z, 1)`` array keeps its trailing axis, which
    :func:`spatial_shape` drops."""
    if len(shape) == 4 and shape[0] == 1 and shape[3] != 1:
        return shape[1:]
    return shape


def _checked_affine(affine: np.ndarray, path: Path) -> np.ndarray:
    matrix = np.asarray(affine, dtype=np.float64)
    problem = None
    if matrix.shape != (4, 4):
        problem = f"has shape {matrix.shape}, not 4x4"
    elif not np.all(np.isfinite(matrix)):
        problem = "has non-finite entries"
    elif abs(np.linalg.det(matrix[:3, :3])) < 1e-12:
        problem = "is singular (a voxel spacing of 0 mm?)"
    if problem is not None:
        entries = " ".join(f"{value:.4g}" for value in matrix.ravel()[:16])
        shown = f" (affine, row by row: {entries})" if matrix.size <= 16 else ""
        raise GeometryError(
            f"{path}: the voxel-to-world affine {problem}; the file's geometry cannot be "
            f"used, fix its header (spacing, direction) with the tool that made it{shown}"
        )
    return matrix


def volume_to_array(volume: MetaTensor, *, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The voxel array to write, in :func:`output_dtype`, and the RAS affine (mm).

    Args:
        volume: ``(1, X, Y, Z)`` or ``(X, Y, Z)``, on any device.
        path: The destination, named in errors.

    Returns:
        ``(array, affine)``: an ``(X, Y, Z)`` array indexed x first, and a float64 4x4.

    Raises:
        GeometryError: Not a ``MetaTensor``, more than one channel, not 3D, or an
            unusable affine.
        OutputError: A voxel is NaN or infinite, or the values are not real numbers.
    """
    from monai.data.meta_tensor import MetaTensor

    if not isinstance(volume, MetaTensor):
        raise GeometryError(
            f"cannot write {path}: the volume is a {type(volume).__name__}, which has no "
            "affine; give a MONAI MetaTensor with its voxel-to-RAS affine in mm, e.g. "
            "MetaTensor(torch.as_tensor(array), affine=torch.as_tensor(affine))"
        )
    values = volume.as_tensor().detach().cpu().numpy()
    if values.dtype.kind not in "biuf":
        raise OutputError(
            f"{path} was not written: the volume holds {values.dtype} values, which no "
            "volume format here stores; write real numbers (for complex data, its "
            "magnitude volume.abs() or its real part volume.real)"
        )
    if values.ndim == 4 and values.shape[0] == 1:
        values = values[0]
    if values.ndim != 3:
        raise GeometryError(
            f"cannot write {path}: the volume has shape {tuple(values.shape)}; writers take "
            "one channel, (1, X, Y, Z) or (X, Y, Z); write each channel to its own file"
        )
    affine = _checked_affine(volume.affine.detach().cpu().numpy(), path)
    from medi2i.voxel_checks import require_finite_output

    require_finite_output(values, path)  # never write NaN, nor NaN cast to 0
    return cast_for_writing(values, output_dtype(volume.meta)), affine


def output_dtype(meta: Mapping[str, object]) -> np.dtype:
    """The voxel type to write: ``meta["medi2i.dtype"]``, float32 when unset.

    Raises:
        OptionsError: The meta names a type no format here can store.
    """
    name = meta.get(DTYPE_KEY)
    if name is None:
        return np.dtype(np.float32)
    if str(name) not in _WRITABLE_DTYPES:
        raise OptionsError(
            f"the volume's meta[{DTYPE_KEY!r}] is {name!r}, which cannot be written; "
            f"use one of {', '.join(_WRITABLE_DTYPES)} or remove the key to write float32"
        )
    return np.dtype(str(name))


def cast_for_writing(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Convert voxel values to ``dtype``; integer types are rounded and clipped to range.

    NaN becomes 0 in integer types, which have no NaN.
    """
    if not np.issubdtype(dtype, np.integer):
        # in the array's own memory order: writers take either, and a reordering copy
        # of a whole volume costs time and memory for nothing
        return values.astype(dtype, order="K", copy=False)
    limits = np.iinfo(dtype)
    rounded = np.rint(np.nan_to_num(values.astype(np.float64), nan=0.0))
    return np.clip(rounded, limits.min, limits.max).astype(dtype)
