"""Where an output may be written: never over an input, never over data without consent.

The rules, the same for every format (NIfTI, NRRD, MetaImage, a DICOM series) and for
``medi2i predict``, :func:`medi2i.predict` and ``medi2i batch``:

- An output is never an input: not the same file (through a symlink or a hard link
  too), not the input's folder, not a folder inside an input folder, and not a folder
  that holds an input (replacing it would delete the input). No switch overrides this.
- An output that exists (a file, a folder that is not empty, or a link, even one to
  nothing) is refused unless ``overwrite`` is given; then it is replaced atomically
  (a link itself, never the file it points to), and only after the new output was
  written in full. A path with no name of its own (``.``) is refused: give the output
  a name inside that folder. A DICOM series replaces only a folder that holds nothing but a
  ``.dcm`` series.
- An output whose folders go through a link to nothing (a broken link, before a ``..``
  or not) is refused, naming the link and its missing target: no folder the path does
  not name is created, and nothing is written where its text does not say. A ``..``
  after a folder that does not exist yet is resolved by name (:func:`settled_path`).
- An output that ends in ``/`` but has a file suffix (``out.nii.gz/``) is refused: is it
  a folder or a file? A folder name without a file suffix (``out``, ``out.v2``,
  ``1.2.840.113619``: see :func:`file_suffix`), with or without the ``/``, is a DICOM
  series folder; a name with an unknown file suffix (``e.img``, ``e.nii.bz2``, ``e.``)
  is refused as a file no writer writes.
- ``medi2i batch`` writes into a new or empty output root, or into the root of an earlier
  batch (it holds that batch's manifest) to resume it: finished studies are skipped and
  the outputs of studies that are redone are replaced. Any other non-empty root needs
  ``overwrite`` (the lock files a batch keeps in its root, ``.medi2i-batch*.lock``, are
  not counted).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import suppress
from pathlib import Path

from medi2i.errors import OptionsError, OutputError
from medi2i.text import described


def file_suffix(path: Path) -> str:
    """The suffix of ``path`` that names a file format, or ``""`` when its name is a
    folder's (a DICOM series).

    A last suffix of letters alone names a file (``.nii.gz``, ``.nrrd``, an unknown
    ``.xyz``), as do a compression suffix (``.bz2``; ``.gz``, ``.xz``, ``.zst`` and
    ``.zip`` are letters), a name that ends in a dot (``e.``: the dot is returned) and a
    known image suffix followed by another (``e.nii.v2``): these are files no writer may
    write, and are refused as such rather than taken for a DICOM folder. Any other dot
    before digits is part of a folder name, as in ``out.v2``, ``sct.2``, ``series.001``
    or a UID such as ``1.2.840.10008``, and does not make it a file.

    Example:
        >>> file_suffix(Path("sct.nii.gz")), file_suffix(Path("out.v2"))
        ('.gz', '')
        >>> file_suffix(Path("sct.nii.bz2")), file_suffix(Path("1.2.840.113619"))
        ('.bz2', '')
    """
    name = path.name
    if name.endswith(".") and name.strip("."):
        return "."
    suffix = path.suffix
    if (suffix[1:].isascii() and suffix[1:].isalpha()) or suffix.lower() in _COMPRESSIONS:
        return suffix
    earlier = {part.lower() for part in path.suffixes[:-1]}
    return suffix if earlier & _IMAGE_SUFFIXES else ""


_COMPRESSIONS = frozenset({".gz", ".bz2", ".xz", ".zst", ".zip"})
"""Compression suffixes: a name ending in one is a file, never a DICOM folder."""
_IMAGE_SUFFIXES = frozenset(
    {".nii", ".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".img", ".hdr", ".mgz", ".mnc"}
)
"""Image file suffixes: a name holding one before its last suffix (``e.nii.v2``) is a
file with a suffix no writer writes, not a DICOM folder."""


def as_output_path(value: str | os.PathLike[str]) -> Path:
    """``value`` as an output path; a string that ends in a path separator (a folder)
    but has a file suffix (``out.nii.gz/``, see :func:`file_suffix`) is refused, where
    ``Path`` would silently drop the separator and a file would be written where a
    folder was asked for. A folder name with a dot that is no file suffix
    (``out.v2/``) is a folder, as it is without the ``/``.

    Raises:
        OutputError: One line naming the value and what to do.
    """
    if not isinstance(value, str | os.PathLike):
        raise OptionsError(
            f"the output path is {described(value)}; give a file name such as "
            "'out.nii.gz', or a folder name for a DICOM series"
        )
    path = Path(value)
    if isinstance(value, str) and value.endswith(("/", os.sep)) and file_suffix(path):
        raise OutputError(
            f"{value!r} ends in '/', which names a folder, but its suffix "
            f"{''.join(path.suffixes)!r} names a file; drop the '/' to write the file "
            f"{str(path)!r}, or create the folder first to write a DICOM series into it"
        )
    return settled_path(path)


def settled_path(path: Path) -> Path:
    """``path`` with the ``..`` in its folders resolved as the file system resolves
    them once the output's folders exist, so that every check looks at the place the
    output and its sidecar will be written.

    The system cannot follow ``sub/..`` while ``sub`` does not exist, so a check of
    ``sub/../x.nii`` would see no file there, and writing would then create ``sub`` and
    replace ``x.nii``. The folder part is resolved physically where it exists (a
    ``..`` after a link leads to the link target's parent, as the system takes it) and
    by name where it does not yet (a folder medi2i creates is no link), so no folder is
    created to find out. A folder that is a broken link (its target does not exist) is
    refused, with or without a ``..`` after it: writing through it would create
    folders the path does not name, or write where its text does not say. A relative
    path stays relative to the working folder; a path with no ``..`` in its folders, or
    with no name of its own (``a/..``, refused by :func:`require_own_name`), is
    returned as it is.

    Example:
        >>> settled_path(Path("missing/../out.nii.gz"))
        PosixPath('out.nii.gz')

    Raises:
        OutputError: A folder of ``path`` is a broken link; the message names it and
            its missing target.
    """
    path = Path(path)
    try:
        real = _walked_folders(path)
    except FileNotFoundError:  # a working folder that was deleted: nothing to look at
        return path
    if path.name in ("", "..") or ".." not in path.parent.parts:
        return path
    if not path.is_absolute():
        with suppress(OSError, ValueError):  # a working folder that was deleted: absolute
            real = os.path.relpath(real, os.getcwd())
    return Path(real) / path.name


def _walked_folders(path: Path) -> str:
    """The absolute physical path of ``path``'s folders: each existing link followed,
    each ``..`` taken from the folder reached so far, a missing folder kept by name.

    Raises:
        OutputError: One of the folders is a link whose target does not exist.
    """
    current = os.path.abspath(path.anchor) if path.is_absolute() else os.getcwd()
    named = Path(path.anchor)
    for part in path.parent.parts[1 if path.is_absolute() else 0 :]:
        named /= part
        if part == "..":
            current = os.path.dirname(current)
        elif part != ".":
            current = os.path.join(current, part)
            if os.path.islink(current):
                _refuse_broken_link(path, named, current)
                current = os.path.realpath(current)
    return current


def _refuse_broken_link(output: Path, named: Path, link: str) -> None:
    """Refuse ``output`` when ``link`` (written ``named`` in it) leads to nothing."""
    if os.path.exists(link):
        return
    what = _broken_link_wording(link, leads_to="no folder")
    if what is None:
        what = f"a link to {os.path.realpath(link)}, which does not exist"
    raise OutputError(
        f"cannot write {output}: {named} is {what}; make the folder it points to, or give "
        "another output"
    )


def _broken_link_wording(link: str, *, leads_to: str) -> str | None:
    """What the broken link ``link`` is, worded to follow "<link> is": a loop of links
    (that leads to ``leads_to``), or a link to another link and where that chain ends;
    ``None`` for a link straight to a missing target, which the caller words."""
    target = os.path.realpath(link)
    if os.path.lexists(target):  # realpath stops at a link it cannot follow
        return f"a loop of links that leads to {leads_to}"
    with suppress(OSError):  # through other links: name the one it points to
        first = os.readlink(link)
        if os.path.normpath(os.path.join(os.path.dirname(link), first)) != target:
            return f"a link to {first}, which leads to {target}: it does not exist"
    return None


def refuse_own_source(volume: object, output: Path) -> None:
    """Refuse writing ``volume`` over the file it was read from (its
    ``meta["medi2i.read_from"]``, which :func:`medi2i.io.read_volume` sets).

    Raises:
        OutputError: ``output`` is that file (through a link too).
    """
    meta = getattr(volume, "meta", None)
    source = meta.get("medi2i.read_from") if isinstance(meta, dict) else None
    if not isinstance(source, (str, os.PathLike)) or not str(source):
        return
    if _resolved(Path(output)) == _resolved(Path(source)) or _same_file(Path(output), Path(source)):
        raise OutputError(
            f"cannot write {output}: it is the file this volume was read from, and writing "
            "would replace that input; write to a new file, or pass overwrite_source=True "
            "to replace it on purpose"
        )


def require_own_name(output: Path) -> None:
    """Refuse a path with no name of its own (``.``, ``/``, ``a/..``): an output replaces
    what is at its path, and no folder can be replaced by a name that means the folder
    one is in (or its parent).

    Raises:
        OutputError: One line naming the folder meant and what to do.
    """
    if output.name not in ("", ".."):
        return
    raise OutputError(
        f"cannot write {str(output)!r}: it names the folder {os.path.abspath(output)} itself, "
        f"not an output in it; give the output a name inside it, such as "
        f"{output / 'out.nii.gz'} for a file or {output / 'out'} for a folder"
    )


def _require_name_room(output: Path) -> None:
    """Refuse a name the file system would take but medi2i's temporary name for it (a
    longer hidden sibling, written first) would not: the write would fail half-way."""
    from medi2i.io.atomic import temporary_sibling

    try:
        limit = os.pathconf(output.parent if output.parent.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        limit = 255
    longest = len(temporary_sibling(output).name.encode()) + len(".parts")
    if longest > limit:
        room = limit - (longest - len(output.name.encode()))
        raise OutputError(
            f"cannot write {output}: its name is {len(output.name.encode())} bytes, and the "
            f"temporary file medi2i writes first needs {longest - len(output.name.encode())} "
            f"more, beyond this file system's {limit}; shorten the name to {room} bytes or less"
        )


def check_destination(
    output: Path,
    *,
    inputs: Sequence[Path],
    overwrite: bool,
    folder: bool | None = None,
    sidecar_of: Path | None = None,
) -> None:
    """Refuse an output path that is an input or holds data the user did not give up.

    Args:
        output: The output file or series folder.
        inputs: Every path the run reads (files or folders).
        overwrite: Whether an existing output may be replaced.
        folder: Whether the output is a folder (a DICOM series); by default a path
            without a suffix or an existing folder is one.
        sidecar_of: When ``output`` is the provenance sidecar (a file) written beside
            this output: the messages then say so, since the user named only the output.

    Raises:
        OutputError: One line naming the output and what to do.
    """
    output = settled_path(Path(output))  # what the checks look at is what is written
    if sidecar_of is not None:
        folder = False
    elif folder is None:
        folder = file_suffix(output) == "" or output.is_dir()
    require_own_name(output)
    _require_name_room(output)
    for source in map(Path, inputs):
        _refuse_input(output, source)
        written = [output, *_detached_data_files(output)]
        for read in _data_files_read(source):
            if any(_resolved(w) == _resolved(read) or _same_file(w, read) for w in written):
                raise OutputError(
                    f"{output} would replace {read.name}, which holds the voxels of the "
                    f"input {source}; an output never replaces its input, give another "
                    "output name"
                )
    blocking = next((parent for parent in output.parents if parent.is_file()), None)
    if blocking is not None:
        raise OutputError(
            f"cannot write {output}: {blocking} is a file, not a folder; choose another output path"
        )
    if output.is_dir() and sidecar_of is not None:
        raise OutputError(
            f"a folder occupies {output}, where the provenance sidecar of {sidecar_of} "
            "is written; move or rename that folder, or choose another output name"
        )
    if output.is_dir() and not folder:
        raise OutputError(
            f"{output} is an existing folder, but the output is a file; give a file name "
            f"such as {output / 'out.nii.gz'}"
        )
    if overwrite or not (output.exists() or output.is_symlink()):
        return  # --overwrite replaces a link, never the file it points to
    if output.is_dir() and not any(output.iterdir()):
        return
    if not output.exists():  # a link to nothing: the write would fail at its very end
        what = _broken_link_wording(str(output), leads_to="nothing") or (
            f"a link to {os.readlink(output)} (which does not exist)"
        )
    elif output.is_dir():
        what = "a folder that is not empty"
    else:
        what = "an existing file"
    raise OutputError(
        f"{output} is {what}; choose a new output path, or pass --overwrite "
        "(overwrite=True in Python) to replace it (replaced only after the new output is "
        "written in full)"
    )


def condition_inputs(condition: object) -> list[Path]:
    """The files or folders a parsed condition names for the prediction to read besides
    the input (e.g. MUNIT's style reference): no output replaces them, as none replaces
    the input (the rules of this module).

    A condition model declares them with a method ``input_paths(self)`` returning paths;
    a model without one reads nothing else.

    Example:
        >>> from medi2i.method import NoCondition
        >>> condition_inputs(NoCondition())
        []
    """
    declared = getattr(condition, "input_paths", None)
    return [Path(path).expanduser() for path in declared()] if callable(declared) else []


def check_batch_root(
    output_root: Path,
    *,
    input_root: Path,
    overwrite: bool,
    manifest: Path,
    other_inputs: Sequence[Path] = (),
) -> None:
    """The batch rules of the module docstring for ``output_root``; ``other_inputs``
    (files a condition reads, such as a style reference) are kept out of it as the input
    tree is.

    Raises:
        OutputError: The root is inside the input tree or another input, holds one, or
            holds other data; it, or a folder of its path, is a broken link.
    """
    output_root, input_root = settled_path(Path(output_root)), Path(input_root)
    if output_root.is_symlink():  # a root that is a link to nothing cannot be written into
        _refuse_broken_link(output_root, output_root, str(output_root))
    for source in (input_root, *other_inputs):
        _refuse_input(output_root, Path(source))
    if overwrite or not output_root.exists() or Path(manifest).exists():
        return
    from medi2i.batch_lock import is_lock_file

    if output_root.is_dir() and all(is_lock_file(e.name) for e in output_root.iterdir()):
        return  # empty, or holding only the lock files of a batch that recorded nothing
    raise OutputError(
        f"{output_root} exists and holds no batch manifest ({Path(manifest).name}); give a "
        "new or empty output folder, the folder of an earlier batch to resume it, or pass "
        "--overwrite to write into it anyway"
    )


def _refuse_input(output: Path, source: Path) -> None:
    out, src = _resolved(output), _resolved(source)
    if out == src or _same_file(output, source):
        raise OutputError(
            f"{output} is the input {source}; an output never replaces its input, give "
            "another output path"
        )
    if src.is_dir() and out.is_relative_to(src):
        raise OutputError(
            f"{output} lies inside the input folder {source}; write outputs outside the "
            "input, e.g. next to it"
        )
    if src.is_relative_to(out):
        raise OutputError(
            f"{output} holds the input {source}, and writing it would replace the input; "
            "give an output path outside the input's folders"
        )


_DETACHED_HEADERS = {".mhd": (".raw", ".zraw"), ".nhdr": (".raw", ".raw.gz")}
"""Header suffixes whose voxels lie in another file, and the data files SimpleITK writes
next to them (``out.mhd`` → ``out.raw`` or ``out.zraw``)."""


def _data_files_read(source: Path) -> list[Path]:
    """For a detached header (``.mhd``, ``.nhdr``), the data file it names: replacing
    that file replaces the input's voxels. None for other inputs."""
    if file_suffix(source) not in _DETACHED_HEADERS or not source.is_file():
        return []
    from medi2i.io.itk_formats import detached_data_file

    try:
        data = detached_data_file(source)
    except OSError:
        return []
    return [] if data is None or data == source else [data]


def _detached_data_files(output: Path) -> list[Path]:
    """The data files a detached-header output writes beside it (none for other formats)."""
    suffix = file_suffix(output)
    stem = output.name[: -len(suffix)] if suffix else output.name
    return [output.with_name(stem + ending) for ending in _DETACHED_HEADERS.get(suffix, ())]


def _resolved(path: Path) -> Path:
    # symlinks resolved; a path that does not exist yet keeps its (resolved) parents
    return Path(os.path.realpath(path))


def _same_file(first: Path, second: Path) -> bool:
    try:
        return first.exists() and second.exists() and os.path.samefile(first, second)
    except OSError:
        return False
