"""Reading and writing volumes: NIfTI, NRRD and MetaImage files, and plugin formats.

Every reader returns the same kind of volume, a MONAI ``MetaTensor`` of shape
``(1, X, Y, Z)``, float32, with a voxel-to-RAS affine in mm (see
:mod:`medi2i.io.base`). Every writer writes atomically.

Example:
    >>> volume = read_volume("t1.nii.gz")  # doctest: +SKIP
    >>> write_volume(volume, "t1.nrrd")  # doctest: +SKIP
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.errors import InputError, Medi2iError, OptionsError, OutputError, PluginError
from medi2i.io.atomic import atomic_path
from medi2i.io.base import VolumeReader, VolumeWriter, require_existing, special_file_kind
from medi2i.text import described

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.grid import Grid

__all__ = [
    "VolumeReader",
    "VolumeWriter",
    "atomic_path",
    "builtin_readers",
    "builtin_writers",
    "read_grid",
    "read_volume",
    "registered_readers",
    "registered_writers",
    "write_volume",
    "writer_for",
]

READ_FROM = "medi2i.read_from"
"""The meta key :func:`read_volume` sets to the file it read (resolved), so that
:func:`write_volume` never writes a result over it unasked."""


def builtin_readers() -> list[VolumeReader]:
    """medi2i's own readers: NIfTI (nibabel), NRRD and MetaImage (SimpleITK)."""
    from medi2i.io.itk_formats import metaimage_reader, nrrd_reader
    from medi2i.io.nifti import NiftiReader

    return [NiftiReader(), nrrd_reader(), metaimage_reader()]


def builtin_writers() -> list[VolumeWriter]:
    """medi2i's own writers: NIfTI (nibabel), NRRD and MetaImage (SimpleITK)."""
    from medi2i.io.itk_formats import metaimage_writer, nrrd_writer
    from medi2i.io.nifti import NiftiWriter

    return [NiftiWriter(), nrrd_writer(), metaimage_writer()]


def registered_readers() -> list[VolumeReader]:
    """The readers the installed plugins register, in registration order.

    Plugins are loaded when this is called (not when :mod:`medi2i.io` is imported), so
    that importing it stays cheap; loading them imports no torch.
    """
    from medi2i.registry import Registry

    return list(Registry().readers.values())


def registered_writers() -> list[VolumeWriter]:
    """The writers the installed plugins register, in registration order."""
    from medi2i.registry import Registry

    return list(Registry().writers.values())


def read_volume(path: str | Path, *, readers: Sequence[VolumeReader] | None = None) -> MetaTensor:
    """Read a volume with the first reader that accepts ``path``.

    Args:
        path: A file (``.nii``, ``.nii.gz``, ``.nrrd``, ``.nhdr``, ``.mha``, ``.mhd``)
            or whatever a plugin reader accepts, e.g. a DICOM folder.
        readers: Readers to ask, in order; when ``None``, every reader the installed
            plugins register (:mod:`medi2i.builtins` registers NIfTI, NRRD, MetaImage
            and DICOM), as the command line asks them.

    Returns:
        A ``(1, X, Y, Z)`` float32 ``MetaTensor``; ``.affine`` maps voxel indices to
        RAS+ positions in mm. The array is as stored in the file, not reoriented.

    Raises:
        InputError: The path does not exist, no reader accepts it, or it is corrupt.
        GeometryError: It is not one 3D volume.
        PluginError: The reader that took it returned something else than a
            ``(1, X, Y, Z)`` ``MetaTensor``, or raised an exception other than medi2i's
            own (a bug of the reader's plugin); the message names the reader, its
            plugin and the file.
    """
    if not isinstance(path, str | os.PathLike):
        raise OptionsError(f"read_volume takes a file or DICOM folder path, not {described(path)}")
    path = Path(path)
    require_existing(path)
    readers = registered_readers() if readers is None else readers
    for reader in readers:
        with _reader_bugs_as_plugin_errors(reader, path):
            takes = reader.can_read(path)
            raw = reader.read(path) if takes else None
        if takes:
            volume = _checked_read(reader, path, raw)
            volume.meta[READ_FROM] = os.path.realpath(path)  # write_volume keeps it safe
            return volume
    if path.is_dir():
        raise InputError(f"{path} is a folder that no reader takes: {_folder_contents(path)}")
    raise InputError(f"no reader for {path}: {_supported(readers)}")


@contextmanager
def _reader_bugs_as_plugin_errors(reader: VolumeReader, path: Path) -> Iterator[None]:
    """Turn an exception a reader did not mean for the user (a ``KeyError`` inside a
    plugin) into one line naming the file, the reader and its plugin: the command line
    printed a traceback. medi2i's own errors (``InputError`` about a damaged file) and a
    ``MemoryError`` are about the input, not the reader, and pass as they are."""
    try:
        yield
    except (Medi2iError, MemoryError):
        raise
    except Exception as exc:
        from medi2i.plugins import BUILTIN_PLUGINS
        from medi2i.registry import reader_owner

        owner = reader_owner(reader)
        who = f"reader {reader.name!r}" + (f" of plugin {owner!r}" if owner else "")
        authors = "medi2i's authors" if owner in BUILTIN_PLUGINS else "the plugin's authors"
        raise PluginError(
            f"{who} failed on {path}: {type(exc).__name__}: {exc}; report it to {authors} "
            "(--debug shows the traceback)"
        ) from exc


def _checked_read(reader: VolumeReader, path: Path, volume: object) -> MetaTensor:
    """What ``reader`` returned for ``path``, refused with one line naming the reader
    unless it is the volume every reader returns (a plugin reader's mistake otherwise
    failed later with a traceback, or with a message that blamed the input)."""
    from monai.data.meta_tensor import MetaTensor

    fix = (
        "a reader returns medi2i.volume_from_array(array, affine, path=path), a (1, X, Y, Z) "
        "MetaTensor; fix the reader, or convert the file to NIfTI"
    )
    if not isinstance(volume, MetaTensor):
        raise PluginError(
            f"reader {reader.name!r} returned a {type(volume).__name__} for {path}; {fix}"
        )
    if volume.ndim != 4 or volume.shape[0] != 1:
        raise PluginError(
            f"reader {reader.name!r} returned a volume of shape {tuple(volume.shape)} for "
            f"{path}; {fix}"
        )
    volume.meta.setdefault("filename_or_obj", str(path))  # errors about it name the file
    return volume


def read_grid(path: str | Path, *, readers: Sequence[VolumeReader] | None = None) -> Grid | None:
    """The grid :func:`read_volume` would give ``path``, from its header alone.

    ``None`` when the reader that takes ``path`` cannot tell it without reading the
    voxels (:meth:`VolumeReader.read_grid`; the NIfTI, NRRD and MetaImage readers can, a
    DICOM series cannot), when no reader takes it, or when it is missing or unreadable:
    :func:`read_volume` reports those. Meant for checks before long work, which then
    take the grid of the full read instead (see
    :func:`medi2i.workflow.data_checks.volume_grid`).

    Example:
        >>> read_grid("ct.nii.gz").spacing  # doctest: +SKIP
        (0.9766, 0.9766, 2.5)
    """
    path = Path(path)
    if special_file_kind(path) is not None:  # a FIFO would block: read_volume refuses it
        return None
    readers = registered_readers() if readers is None else readers
    for reader in readers:
        if reader.can_read(path):
            return reader.read_grid(path) if path.exists() else None
    return None


def _folder_contents(path: Path) -> str:
    names = sorted(entry.name for entry in path.iterdir())
    if not names:
        return "it is empty; give a DICOM series folder or a volume file"
    shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
    return (
        f"none of its first entries ({shown}) is a DICOM file; give a DICOM series folder "
        "or a volume file"
    )


def write_volume(
    volume: MetaTensor,
    path: str | Path,
    *,
    writers: Sequence[VolumeWriter] | None = None,
    overwrite: bool = False,
    overwrite_source: bool = False,
) -> Path:
    """Write a volume atomically with the first writer that accepts ``path``.

    The voxel type is ``volume.meta["medi2i.dtype"]`` when set (readers set it to the
    type in the file, and arithmetic on a ``MetaTensor`` keeps it), float32 otherwise.
    An integer type rounds the values to whole numbers and clips them to its range
    (:func:`medi2i.io.base.cast_for_writing`); set ``volume.meta["medi2i.dtype"] =
    "float32"`` to write computed values as they are. Parent folders are created.

    An existing file at ``path`` (or a folder that is not empty) is refused unless
    ``overwrite=True``, and then replaced only once the new one is written in full. The
    file the volume was read from (``volume.meta["medi2i.read_from"]``, which
    :func:`read_volume` sets and :func:`medi2i.predict_tensor` keeps) is refused even
    then, unless ``overwrite_source=True``. To refuse every input of a run, as ``medi2i
    predict`` does, check the path first with
    :func:`medi2i.io.destinations.check_destination`.

    Args:
        volume: ``(1, X, Y, Z)`` or ``(X, Y, Z)`` with a RAS affine in mm.
        path: The output file; its suffix picks the format. A path without a suffix is
            a derived DICOM series folder, for an output of :func:`medi2i.predict_tensor`
            (the series names the method that made it, from ``volume.meta``).
        writers: Writers to ask, in order; when ``None``, every writer the installed
            plugins register (:mod:`medi2i.builtins` registers NIfTI, NRRD, MetaImage
            and DICOM), as :func:`read_volume` asks the readers.
        overwrite: Replace an existing output (a file, or a DICOM series folder).
        overwrite_source: Replace the file the volume was read from.

    Returns:
        The path written.

    Raises:
        InputError: No writer accepts the suffix, or the file cannot be written.
        OptionsError: A DICOM series for a volume whose meta names no method.
        GeometryError: The volume is not a ``MetaTensor``, has several channels or an
            unusable affine.
        OutputError: A voxel is NaN or infinite, the values are complex, a file
            stands where a parent folder would be, ``path`` exists and ``overwrite`` is
            false, or ``path`` is the file the volume was read from (nothing is written
            then).
    """
    from medi2i.io.destinations import as_output_path, check_destination, refuse_own_source

    path = as_output_path(path)
    try:
        refuse_own_source(volume, path)
        own_source = False
    except OutputError:
        if not overwrite_source:
            raise
        own_source = True
    if not overwrite and not own_source:
        check_destination(path, inputs=(), overwrite=False)
    writer_for(path, registered_writers() if writers is None else writers).write(volume, path)
    return path


def writer_for(path: Path, writers: Sequence[VolumeWriter]) -> VolumeWriter:
    """The first of ``writers`` that writes ``path`` (ask before computing an output).

    Writers of file suffixes are asked before folder writers (those with no
    :attr:`~medi2i.io.base.VolumeWriter.suffixes`), so that a plugin's format named by
    its suffix is not taken for a DICOM series folder.

    Raises:
        InputError: None does; the message lists the suffixes that can be written.
    """
    for writer in sorted(writers, key=lambda writer: not writer.suffixes):
        if writer.can_write(Path(path)):
            return writer
    raise InputError(f"no writer for {path}: {_supported(writers)}")


def _supported(handlers: Sequence[VolumeReader] | Sequence[VolumeWriter]) -> str:
    suffixes = [suffix for handler in handlers for suffix in handler.suffixes]
    others = [f"{h.name} ({h.description})" for h in handlers if not h.suffixes]
    listed = f"supported suffixes are {', '.join(suffixes) or 'none'}"
    if others:
        listed += f"; also {'; '.join(others)}"
    return listed + "; rename the file or convert it to one of these formats"
