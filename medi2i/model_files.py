"""Reading a model folder's member files: a folder or a zip of one, never outside it.

:class:`_ModelFiles` reads a member by name and refuses, with what to do instead, a
name that is absolute or climbs out with ``..``, a member that is a link out of the
folder, a folder, FIFO, socket or device, or larger than the limit its reader gives
(:mod:`medi2i.model_folder` reads the manifest and the weights through it).
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path, PurePosixPath

from medi2i.errors import InputError, ModelFormatError
from medi2i.io.base import special_file_kind

MANIFEST = "medi2i-model.json"


def _no_manifest_message(path: Path) -> str:
    # a torch.export program is a zip too; "holds no manifest" would not say what to pass
    if path.suffix == ".pt2":
        return (
            f"model {path} is a torch.export program (what `medi2i export` writes for use "
            "without medi2i), not a trained-model folder; pass the model folder it was "
            "exported from, or an ONNX export (medi2i export MODEL model.onnx --format onnx)"
        )
    return f"model zip {path} holds no {MANIFEST}"


def _run_folder_hint(path: Path, name: str) -> str:
    """What to pass instead of a workflow run folder (or its ``checkpoints/``), which
    holds its trained models in ``model/``, ``best-model/`` and ``adapted/``."""
    run = path.parent if path.name == "checkpoints" else path
    if name != MANIFEST or not (run / "config.resolved.yaml").is_file():
        return ""
    kept = [
        run / folder
        for folder in ("model", "best-model", "adapted")
        if (run / folder / name).is_file()
    ]
    if not kept:
        return "; it is a workflow run folder without a trained model yet (train it first)"
    return (
        f"; it is {'in ' if run != path else ''}a workflow run folder: pass "
        + " or ".join(str(folder) for folder in kept)
        + (" (best-model: the lowest validation MAE)" if run / "best-model" in kept else "")
    )


class _ModelFiles:
    """Reads member files of a model folder or of a zip holding one, never outside it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        if not path.exists():
            raise InputError(f"model {path} does not exist")
        self.zip_prefix: str | None = None
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise ModelFormatError(f"model {path} is neither a folder nor a zip of one")
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            for name in names:
                if _escapes(name):
                    raise ModelFormatError(
                        f"model zip {path} holds {name!r}, a path outside the model "
                        "(absolute or with '..'); it is not a model medi2i reads"
                    )
            manifests = [n for n in names if n.split("/")[-1] == MANIFEST]
            if not manifests:
                raise ModelFormatError(_no_manifest_message(path))
            self.zip_prefix = manifests[0][: -len(MANIFEST)]

    def has(self, name: str) -> bool:
        """Whether the model holds a member file ``name``."""
        if self.zip_prefix is None:  # a FIFO or a folder under the name is named by read
            member = self.path / name
            return member.is_file() or member.is_dir() or special_file_kind(member) is not None
        with zipfile.ZipFile(self.path) as archive:
            return self.zip_prefix + name in archive.namelist()

    def read(self, name: str, *, entry: str | None = None, limit: int) -> bytes:
        """The bytes of member ``name``; ``entry`` is the manifest key that named it."""
        named = f"{MANIFEST} entry {entry} {name!r}" if entry else repr(name)
        if _escapes(name):
            raise ModelFormatError(
                f"model {self.path}: {named} points outside the model folder; a model may "
                "only name files inside it"
            )
        if self.zip_prefix is None:
            return self._read_file(name, named, limit)
        with zipfile.ZipFile(self.path) as archive:
            try:
                info = archive.getinfo(self.zip_prefix + name)
            except KeyError:
                raise ModelFormatError(f"model zip {self.path} has no {name}") from None
            if info.file_size > limit:
                raise ModelFormatError(
                    f"model zip {self.path}: {name} is {info.file_size:,} bytes, more than "
                    f"the {limit:,} medi2i reads"
                )
            return archive.read(info)

    def _read_file(self, name: str, named: str, limit: int) -> bytes:
        member = self.path / name
        _require_regular_member(self.path, name)
        if not member.is_file():
            raise ModelFormatError(
                f"model folder {self.path} has no {name}{_run_folder_hint(self.path, name)}"
            )
        if not member.resolve().is_relative_to(self.path.resolve()):
            raise ModelFormatError(
                f"model {self.path}: {named} is a link to {member.resolve()}, outside the "
                "model folder; copy the file into the folder instead"
            )
        size = member.stat().st_size
        if size > limit:
            raise ModelFormatError(
                f"model folder {self.path}: {name} is {size:,} bytes, more than the "
                f"{limit:,} medi2i reads"
            )
        return member.read_bytes()


def _require_regular_member(folder: Path, name: str) -> None:
    """Refuse, before it is opened, a member ``name`` of a model folder that is there but
    is no regular file: a folder, or a FIFO, socket or device (reading a FIFO would wait
    for ever); a missing member is left to the caller to name."""
    member = folder / name
    kind = "a folder" if member.is_dir() else special_file_kind(member)
    if kind is None:
        return
    raise ModelFormatError(
        f"model folder {folder}: {name} is {kind}, not a regular file; medi2i does not "
        f"open it; put the {name} that medi2i saved with the model in its place"
    )


def _escapes(name: str) -> bool:
    """Whether a name in a model is absolute or climbs out with ``..``."""
    unified = name.replace("\\", "/")
    if unified.startswith("/") or re.match(r"^[A-Za-z]:", unified):
        return True
    return ".." in PurePosixPath(unified).parts
