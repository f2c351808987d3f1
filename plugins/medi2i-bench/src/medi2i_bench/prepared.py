"""Finding a benchmark's prepared data in a cache folder without the shared data folder.

``medi2i bench prepare`` (or a first ``bench run``) builds a benchmark's data from
``MEDI2I_DATA_DIR`` into ``<cache>/<task>-<fingerprint>`` and records, in that folder's
``dataset.json``, the fingerprint and the SHA-256 of every source file it was built
from. A later run without ``MEDI2I_DATA_DIR`` uses that folder when the fingerprint
recomputed from the recorded source digests and this medi2i-bench's settings (simulators,
seeds, version) is the recorded one, so the data is what a build would make now; reading
it then checks every built file's SHA-256 (:func:`medi2i_bench.cache.read_dataset`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path

from medi2i import InputError
from medi2i_bench.cache import INDEX

FINGERPRINT = "fingerprint"
"""Index key of the data's fingerprint (sources, simulators, seeds)."""
SOURCES = "source_sha256"
"""Index key of the SHA-256 of each source file the data was built from, by file name."""


def record_sources(folder: Path, fingerprint: str, digests: Mapping[str, str]) -> None:
    """Add the fingerprint and source digests to ``folder``'s index, unless it has them
    (a folder built by an earlier medi2i-bench gets them on its next run with the shared
    data). A read-only cache is left as it is."""
    from medi2i.io import atomic_path

    path = folder / INDEX
    try:
        index = json.loads(path.read_text())
        if index.get(FINGERPRINT) == fingerprint and index.get(SOURCES) == dict(digests):
            return
        index.update({FINGERPRINT: fingerprint, SOURCES: dict(digests)})
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(index, indent=2) + "\n")
    except (OSError, ValueError, AttributeError):
        return  # unreadable or unwritable: reading the dataset says what is wrong


def prepared_folder(
    cache: Path, task: str, fingerprint_of: Callable[[Mapping[str, str]], str]
) -> tuple[Path, str] | None:
    """``task``'s prepared folder in ``cache`` and its fingerprint, or ``None`` when the
    cache holds none (or several, and no ``<cache>/<task>`` link says which).

    Args:
        cache: The cache folder (``--work-dir``).
        task: The benchmark.
        fingerprint_of: The fingerprint of the data built from sources of these digests
            under this medi2i-bench's settings.

    Raises:
        InputError: The folder records no source digests, or was built with other
            settings than this medi2i-bench's (a stale cache).
    """
    folder = _candidate(cache, task)
    if folder is None:
        return None
    try:
        index = json.loads((folder / INDEX).read_text())
        digests, recorded = index.get(SOURCES), index.get(FINGERPRINT)
    except (OSError, ValueError, AttributeError):
        raise InputError(
            f"benchmark cache {folder} is damaged ({INDEX} is not readable JSON); delete "
            "the folder and run again"
        ) from None
    if not isinstance(digests, dict) or not isinstance(recorded, str):
        raise InputError(
            f"{folder} was prepared by an earlier medi2i-bench, which does not record its "
            "source files; record them once: MEDI2I_DATA_DIR=<shared data folder> "
            f"medi2i bench prepare --task {task} --work-dir {cache}"
        )
    try:
        current = fingerprint_of(digests)
    except (KeyError, ValueError, TypeError):
        current = ""  # a source missing from the record, or not a digest
    if current != recorded or not folder.name.endswith(recorded[:12]):
        raise InputError(
            f"{folder} was built with other benchmark settings than this medi2i-bench's "
            "(a stale cache); set MEDI2I_DATA_DIR to build the data again"
        )
    return folder, recorded


def _candidate(cache: Path, task: str) -> Path | None:
    """The folder ``<cache>/<task>`` links to, else the one built folder of ``task``."""
    import os

    alias = cache / task
    if alias.is_symlink():
        target = cache / os.readlink(alias)
        return target if (target / INDEX).is_file() else None
    pattern = re.compile(rf"{re.escape(task)}-[0-9a-f]{{12}}")
    built = [
        path
        for path in sorted(cache.glob(f"{task}-*"))
        if pattern.fullmatch(path.name) and (path / INDEX).is_file()
    ]
    return built[0] if len(built) == 1 else None
