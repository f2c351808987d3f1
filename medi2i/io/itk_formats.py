"""NRRD (``.nrrd``, ``.nhdr``) and MetaImage (``.mha``, ``.mhd``) files through SimpleITK.

ITK describes a grid by origin, spacing and a direction matrix in LPS+ millimetres:
``world_lps = origin + direction @ diag(spacing) @ index``. medi2i's affine is the
same map in RAS+, so the two differ by the sign of their first two rows. Array axes
are kept as stored (no reorientation); SimpleITK's numpy arrays are ``[z, y, x]`` and
are transposed to medi2i's ``[x, y, z]``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medi2i.errors import GeometryError, InputError, out_of_memory, out_of_memory_reading
from medi2i.grid import lps_to_ras, ras_to_lps
from medi2i.io.atomic import atomic_file_group, atomic_path
from medi2i.io.base import (
    VolumeReader,
    VolumeWriter,
    _checked_affine,
    require_file,
    require_memory,
    spatial_shape,
    volume_from_array,
    volume_to_array,
)
from medi2i.io.itk_output import quiet_itk

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.grid import Grid

_DETACHED = (".nhdr", ".mhd")  # a header plus a separate data file (when written)
# what MetaIO prints, without raising, when the voxels it returns are zeros, not the data
_DATA_FAILURES = ("Uncompress failed",)
_GZIP_MAX_RATIO = 1032  # deflate cannot compress more: 258 bytes per 2-bit code at best


def affine_from_itk(
    origin: tuple[float, ...], spacing: tuple[float, ...], direction: tuple[float, ...]
) -> np.ndarray:
    """The RAS voxel-to-world affine (mm) of an ITK grid; extra dimensions are dropped.

    Args:
        origin: World LPS position of voxel 0, in mm (ITK's ``GetOrigin()``).
        spacing: Voxel size along each index axis, in mm.
        direction: Row-major direction matrix (ITK's ``GetDirection()``).
    """
    dimension = len(origin)
    rotation = np.reshape(np.asarray(direction, dtype=np.float64), (dimension, dimension))
    lps = np.eye(4)
    lps[:3, :3] = rotation[:3, :3] * np.asarray(spacing[:3], dtype=np.float64)
    lps[:3, 3] = origin[:3]
    return lps_to_ras(lps)


def itk_grid_from_affine(
    affine: np.ndarray,
) -> tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]:
    """``(origin, spacing, direction)`` for ITK from a RAS affine (mm); inverse of the above."""
    lps = ras_to_lps(affine)
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    direction = lps[:3, :3] / spacing
    return tuple(lps[:3, 3].tolist()), tuple(spacing.tolist()), tuple(direction.ravel().tolist())


class ItkImageReader(VolumeReader):
    """Reads the files of one ITK image IO (``NrrdImageIO``, ``MetaImageIO``)."""

    def __init__(
        self,
        *,
        name: str,
        description: str,
        suffixes: tuple[str, ...],
        image_io: str,
        format_name: str,
        check_header: Callable[[Path], None] | None = None,
    ) -> None:
        self.name = name
        self.description = description
        self.suffixes = suffixes
        self.image_io = image_io
        self.format_name = format_name
        self.check_header = check_header
        """Refuses what ITK would misread; run on the file before ITK reads it."""

    def read(self, path: Path) -> MetaTensor:
        """Read the file; see :meth:`VolumeReader.read`."""
        require_file(path, self.format_name)
        if self.check_header is not None:
            self.check_header(path)
        reader = self._header(path)
        shape = tuple(reader.GetSize())
        spatial_shape(shape, path, components=reader.GetNumberOfComponents())
        _require_data_size(path, shape, self.format_name)
        image = self._image(reader, path)
        affine = affine_from_itk(image.GetOrigin(), image.GetSpacing(), image.GetDirection())
        stored = _voxels_zyx(image, path)
        values = stored.reshape(stored.shape[-3:]).transpose(2, 1, 0)
        return volume_from_array(values, affine, path=path, source_dtype=stored.dtype.name)

    def read_grid(self, path: Path) -> Grid | None:
        """The grid :meth:`read` gives ``path``, from its header alone (ITK's
        ``ReadImageInformation``: size, spacing, origin and direction, no voxels),
        converted from LPS to RAS as :meth:`read` converts it; ``None`` when the header
        is unreadable or not one 3D volume (:meth:`read` then says why)."""
        from medi2i.grid import Grid

        try:
            require_file(path, self.format_name)
            if self.check_header is not None:
                self.check_header(path)
            reader = self._header(path)
            size = tuple(reader.GetSize())
            shape = spatial_shape(size, path, components=reader.GetNumberOfComponents())
            origin, spacing, direction = (
                reader.GetOrigin(),
                reader.GetSpacing(),
                reader.GetDirection(),
            )
            affine = _checked_affine(affine_from_itk(origin, spacing, direction), path)
        except (InputError, GeometryError, RuntimeError):
            return None
        return Grid((int(shape[0]), int(shape[1]), int(shape[2])), affine)

    def _image(self, reader: Any, path: Path) -> Any:
        with quiet_itk() as printed:
            try:
                image = reader.Execute()
            except (RuntimeError, MemoryError) as exc:  # header fine, data missing or truncated
                raise _unreadable(path, self.format_name, exc, printed.text()) from exc
            said = printed.text()
        if any(failure in said for failure in _DATA_FAILURES):
            raise _unreadable(path, self.format_name, None, said)
        return image

    def _header(self, path: Path) -> Any:
        sitk = _simpleitk()
        reader = sitk.ImageFileReader()
        reader.SetImageIO(self.image_io)
        reader.SetFileName(str(path))
        with quiet_itk() as printed:
            try:
                reader.ReadImageInformation()
            except RuntimeError as exc:
                raise _unreadable(path, self.format_name, exc, printed.text()) from exc
        return reader


def _require_data_size(path: Path, shape: tuple[int, ...], format_name: str) -> None:
    """Refuse dimensions the file cannot hold before ITK allocates the image.

    The file holding the voxels (the header file itself, or the one data file its header
    names: MetaImage's ``ElementDataFile``, NRRD's ``data file``) holds at least 1/1032
    byte per voxel (gzip's largest possible compression ratio). Voxels spread over a
    list or pattern of files are not measured; the memory the image would take is
    always checked.
    """
    voxels = int(np.prod(shape, dtype=object))
    data = detached_data_file(path)
    size = data.stat().st_size if data is not None and data.is_file() else None
    if data is not None and size is not None and voxels > size * _GZIP_MAX_RATIO:
        where = "a file" if data == path else f"its data file {data.name}, a file"
        raise InputError(
            f"cannot read {path} as {format_name}: the header declares "
            f"{'x'.join(map(str, shape))} voxels, more than {where} of {size} bytes can "
            "hold; it is truncated or its header (sizes, DimSize) is damaged; re-export it"
        )
    require_memory(path, voxels * 8, f"a {'x'.join(map(str, shape))} volume")


_DATA_FILE_KEYS = {"elementdatafile", "data file", "datafile"}  # MetaImage, NRRD (two forms)


def detached_data_file(path: Path) -> Path | None:
    """The one file that holds the voxels, as the header names it (``None``: a list or
    pattern of files); the header file itself when it names none or ``LOCAL``."""
    with path.open("rb") as file:
        head = file.read(_METAIMAGE_HEADER_BYTES).decode("latin-1")
    nrrd = head.startswith("NRRD")
    for line in head.splitlines():
        if nrrd and not line.strip():
            break  # the blank line that ends a NRRD header
        key, separator, value = line.replace("=", ":", 1).partition(":")
        if not separator or key.strip().lower() not in _DATA_FILE_KEYS:
            continue
        value = value.strip()
        if value in ("LOCAL", ""):
            return path
        if value.startswith("LIST") or "%" in value or " " in value:
            return None
        return path.parent / value
    return path


_METAIMAGE_GEOMETRY = {
    # MetaIO takes each of these keys with its synonyms
    "ElementSpacing": "the voxel size in mm",
    "Offset": "the position of the first voxel in mm",
    "Position": "the position of the first voxel in mm",
    "Origin": "the position of the first voxel in mm",
    "TransformMatrix": "the direction cosines",
    "Rotation": "the direction cosines",
    "Orientation": "the direction cosines",
}
_DIRECTION_KEYS = ("TransformMatrix", "Rotation", "Orientation")
_METAIMAGE_HEADER_BYTES = 1 << 16


def require_sound_metaimage_header(path: Path) -> None:
    """Refuse a MetaImage header that MetaIO would read into a wrong grid without a word.

    - Spacing, origin or direction that is not finite numbers: MetaIO reads ``nan``,
      ``inf`` or a word there as 0, so a spacing then fails in ITK as "zero-valued
      spacing", the wrong cause, and an origin is read as 0. Only the values the key
      holds (NDims, or NDims² for a direction) are checked; MetaIO ignores words after.
    - One of these keys in other letter case (``elementspacing``): MetaIO's keys are
      case-sensitive, so it is skipped and the default (1 mm, origin 0) used.
    - A detached data file (``ElementDataFile``) that is not there: named as such,
      where ITK would say only that the file cannot be read.

    The header is the text before ``ElementDataFile`` (its last key).

    Raises:
        GeometryError: The key, its value and what it should hold.
        InputError: The data file is missing.
    """
    with path.open("rb") as file:
        head = file.read(_METAIMAGE_HEADER_BYTES).decode("latin-1")
    dimensions = 3
    by_lower = {key.lower(): key for key in _METAIMAGE_GEOMETRY}
    for line in head.splitlines():
        key, equals, value = (part.strip() for part in line.partition("="))
        if not equals:
            continue
        if key == "ElementDataFile":
            _require_data_file(path, value)
            return
        if key == "NDims" and value.isdigit():
            dimensions = int(value)
        if key not in _METAIMAGE_GEOMETRY and key.lower() in by_lower:
            raise GeometryError(
                f"{path}: the header's key {key!r} is not read (MetaImage keys are "
                f"case-sensitive), so {_METAIMAGE_GEOMETRY[by_lower[key.lower()]]} would "
                f"silently take its default; write it as {by_lower[key.lower()]}"
            )
        count = dimensions * dimensions if key in _DIRECTION_KEYS else dimensions
        wrong = [word for word in value.split()[:count] if not _finite(word)]
        if key in _METAIMAGE_GEOMETRY and wrong:
            raise GeometryError(
                f"{path}: the header's {key} ({_METAIMAGE_GEOMETRY[key]}) = {value}: "
                f"{wrong[0]!r} is not a finite number; correct the header or re-export the file"
            )


_NRRD_GEOMETRY = {
    "spacings": "the voxel size",
    "space directions": "the axes' directions and voxel size",
    "space origin": "the position of the first voxel",
}
_NRRD_DEFAULTS = {
    "spacings": "1 mm",
    "space directions": "unit axes of 1 mm",
    "space origin": "0",
}
_NRRD_HEADER_BYTES = 1 << 16


def require_sound_nrrd_header(path: Path) -> None:
    """Refuse an NRRD header whose geometry ITK would fill in without a word: ``nan``
    (NRRD's "not known") in ``spacings``, ``space directions`` or ``space origin`` is
    read by ITK as 1 mm or 0, a grid the file never gave. The header is the text before
    its first blank line.

    Raises:
        GeometryError: The field, its value and what it should hold.
    """
    with path.open("rb") as file:
        head = file.read(_NRRD_HEADER_BYTES).decode("latin-1")
    for line in head.splitlines():
        if not line.strip():
            return  # the end of the header
        field, colon, value = (part.strip() for part in line.partition(":"))
        field = field.lower()
        if not colon or field not in _NRRD_GEOMETRY:
            continue
        # the three spatial axes only: a 4th (time) axis may say nan, NRRD's "not known";
        # a spacing is one number per axis, a direction a (x,y,z) vector
        axes = re.findall(r"\([^)]*\)|[^\s()]+", value)[:3]
        numbers = [n for axis in axes for n in axis.strip("()").replace(",", " ").split()]
        if not all(_finite(number) for number in numbers):
            raise GeometryError(
                f"{path}: the header's {field} ({_NRRD_GEOMETRY[field]}) is {value}, which "
                f"does not give it (ITK would assume {_NRRD_DEFAULTS[field]}); set it in the "
                "header or re-export the file"
            )


def _require_data_file(path: Path, value: str) -> None:
    """A single detached data file named by ``ElementDataFile`` must be there."""
    if value in ("LOCAL", "") or value.startswith("LIST") or "%" in value or " " in value:
        return  # data in the header file, or a list or pattern of files
    data = path.parent / value
    if not data.exists():
        raise InputError(
            f"{path}: its voxels are in {data.name} (ElementDataFile), which is missing; "
            "put the data file next to the header or fix ElementDataFile"
        )


def _finite(word: str) -> bool:
    try:
        return math.isfinite(float(word))
    except ValueError:
        return False


def _voxels_zyx(image: Any, path: Path) -> np.ndarray:
    sitk = _simpleitk()
    values: np.ndarray = sitk.GetArrayFromImage(image)
    if not (np.issubdtype(values.dtype, np.integer) or np.issubdtype(values.dtype, np.floating)):
        raise InputError(
            f"{path} stores voxels as {image.GetPixelIDTypeAsString()}; medi2i reads "
            "scalar integer or floating-point volumes only"
        )
    return values


def _unreadable(
    path: Path, format_name: str, exc: Exception | None, printed: str = ""
) -> Exception:
    if exc is not None and out_of_memory(exc):  # the machine's limit, not a damaged file
        return out_of_memory_reading(path, exc)
    # what ITK printed (MetaIO's complaints) often says more than its exception
    reason = " / ".join(part for part in (itk_reason(exc) if exc else "", printed) if part)
    return InputError(
        f"cannot read {path} as {format_name} ({reason}); the file is corrupt, "
        "truncated or not in that format; check it opens in a viewer or re-export it"
    )


_ITK_NOISE = re.compile(r"^(Exception thrown in SimpleITK .*|Reason: .*)$")
_ITK_PREFIX = re.compile(r"^(ITK ERROR|itk::ERROR): \w+\(0x[0-9a-f]+\): ")


def itk_reason(exc: Exception) -> str:
    """The useful part of a SimpleITK error, without source paths and object addresses.

    ITK's "Reason:" line is the C errno, often unrelated ("Success"), so it is dropped.
    """
    lines = [line.strip() for line in str(exc).splitlines()]
    kept = [_ITK_PREFIX.sub("", line) for line in lines if line and not _ITK_NOISE.match(line)]
    return " / ".join(kept) or type(exc).__name__


class ItkImageWriter(VolumeWriter):
    """Writes the files of one ITK image IO, gzip-compressed.

    ``.nhdr`` and ``.mhd`` write a header and a data file next to it, both atomically.
    """

    def __init__(
        self, *, name: str, description: str, suffixes: tuple[str, ...], image_io: str
    ) -> None:
        self.name = name
        self.description = description
        self.suffixes = suffixes
        self.image_io = image_io

    def write(self, volume: MetaTensor, path: Path) -> None:
        """Write the file atomically; see :meth:`VolumeWriter.write`."""
        from medi2i.io.nifti import warn_if_orientation_unstated

        warn_if_orientation_unstated(volume, path)
        values, affine = volume_to_array(volume, path=path)
        image = _itk_image(values, affine, path)
        detached = path.name.lower().endswith(_DETACHED)
        with (atomic_file_group if detached else atomic_path)(path) as temporary:
            self._write(image, temporary, path)

    def _write(self, image: Any, temporary: Path, path: Path) -> None:
        sitk = _simpleitk()
        writer = sitk.ImageFileWriter()
        writer.SetImageIO(self.image_io)
        writer.SetFileName(str(temporary))
        writer.SetUseCompression(True)
        try:
            with quiet_itk():  # MetaIO prints its own line on a full disk
                writer.Execute(image)
        except RuntimeError as exc:
            # ITK names the file it opened: the hidden temporary, gone when the user reads
            reason = itk_reason(exc).replace(str(temporary), str(path))
            reason = reason.replace(temporary.name, path.name)
            raise InputError(
                f"cannot write {path} ({reason}); nothing was written there; check the "
                "folder is writable and has space"
            ) from exc


def _itk_image(values: np.ndarray, affine: np.ndarray, path: Path) -> Any:
    sitk = _simpleitk()
    origin, spacing, direction = itk_grid_from_affine(affine)
    image = sitk.GetImageFromArray(np.ascontiguousarray(values.transpose(2, 1, 0)))
    image.SetOrigin(origin)
    image.SetSpacing(spacing)
    try:
        image.SetDirection(direction)
    except RuntimeError as exc:
        raise GeometryError(
            f"cannot write {path}: ITK refuses the direction matrix {direction} "
            f"({itk_reason(exc)}); write NIfTI (.nii.gz) instead"
        ) from exc
    return image


def nrrd_reader() -> ItkImageReader:
    """The built-in NRRD reader."""
    return ItkImageReader(
        name="nrrd",
        description="NRRD volumes (.nrrd, .nhdr) via SimpleITK",
        suffixes=(".nrrd", ".nhdr"),
        image_io="NrrdImageIO",
        format_name="NRRD",
        check_header=require_sound_nrrd_header,
    )


def metaimage_reader() -> ItkImageReader:
    """The built-in MetaImage reader."""
    return ItkImageReader(
        name="metaimage",
        description="MetaImage volumes (.mha, .mhd) via SimpleITK",
        suffixes=(".mha", ".mhd"),
        image_io="MetaImageIO",
        format_name="MetaImage",
        check_header=require_sound_metaimage_header,
    )


def nrrd_writer() -> ItkImageWriter:
    """The built-in NRRD writer."""
    return ItkImageWriter(
        name="nrrd",
        description="NRRD volumes (.nrrd, .nhdr) via SimpleITK",
        suffixes=(".nrrd", ".nhdr"),
        image_io="NrrdImageIO",
    )


def metaimage_writer() -> ItkImageWriter:
    """The built-in MetaImage writer."""
    return ItkImageWriter(
        name="metaimage",
        description="MetaImage volumes (.mha, .mhd) via SimpleITK",
        suffixes=(".mha", ".mhd"),
        image_io="MetaImageIO",
    )


def _simpleitk() -> Any:
    """SimpleITK, imported on first use: it is slow to import and untyped."""
    import SimpleITK

    return SimpleITK
