"""Reading a CSV manifest: the ``csv`` layout of a workflow's data section.

A manifest has the columns ``case``, ``path`` and ``role`` (paired, single-domain) or
``domain`` (unpaired, multi-domain, with an optional ``role``); a paired manifest may
add ``condition``, the case's predict-time condition. Paths are relative to the
manifest's folder. The rows of one ``case`` make one subject, so that the splits of
:mod:`medi2i.data.discovery` keep them together; every incomplete case is reported at
once, naming its line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medi2i.data.cases import IMAGE, MASK, SOURCE, TARGET, Case
from medi2i.data.subjects import Subject, _raise_incomplete, subject_id
from medi2i.errors import InputError
from medi2i.workflow.schema import CsvLayout

if TYPE_CHECKING:
    from medi2i.data.discovery import _Include


def _csv_subjects(layout: CsvLayout, kind: str, keep: _Include) -> list[Subject]:
    manifest = layout.manifest
    if not manifest.is_file():
        raise InputError(f"CSV manifest {manifest} does not exist")
    from medi2i.bounded_yaml import decode_text, unreadable_text

    try:  # spreadsheet programs write UTF-8 with a byte-order mark, or UTF-16
        text = decode_text(manifest.read_bytes())
    except UnicodeDecodeError as exc:
        raise InputError(f"CSV manifest {manifest} {unreadable_text(exc)}") from None
    reader = csv.DictReader(io.StringIO(text, newline=""))
    rows = list(reader)
    header = list(reader.fieldnames or [])
    by_domain = kind in ("unpaired", "multi-domain")
    needed = ("case", "path", "domain" if by_domain else "role")
    optional = ("role",) if by_domain else (CONDITION_COLUMN,)
    columns = set(header)
    if not set(needed) <= columns:
        raise InputError(
            f"CSV manifest {manifest} needs the columns {', '.join(needed)}; "
            f"it has {', '.join(sorted(columns)) or 'none'}"
        )
    unknown = [name for name in header if name not in (*needed, *optional, CONDITION_COLUMN)]
    if unknown:
        raise InputError(
            f"CSV manifest {manifest} has unknown columns {', '.join(unknown)}; {kind} "
            f"manifests take {', '.join(needed)} and optionally {', '.join(optional)}: "
            "rename or remove them"
        )
    _require_whole_rows(rows, manifest, header, needed)
    if CONDITION_COLUMN in columns and kind != "paired":
        raise InputError(
            f"CSV manifest {manifest} has a {CONDITION_COLUMN} column, which only paired "
            f"manifests (validation and evaluation cases) take; this one is read as {kind} data"
        )
    grouped: dict[tuple[str, str | None], dict[str, Path]] = {}
    lines: dict[Path, int] = {}
    conditions: dict[str, tuple[tuple[str, str], ...]] = {}
    for number, row in enumerate(rows, start=2):  # the header is line 1
        domain = row["domain"].strip() if by_domain else None
        role = (row.get("role") or IMAGE).strip() if by_domain else row["role"].strip()
        path = _listed(manifest, row["path"].strip())
        case_id = subject_id(row["case"].strip())
        lines.setdefault(path, number)
        images = grouped.setdefault((case_id, domain), {})
        if role in images:
            raise InputError(
                f"{manifest} line {number}: case {row['case']!r} repeats role {role!r}"
            )
        images[role] = path
        text = (row.get(CONDITION_COLUMN) or "").strip()
        if text:
            condition = _condition(text, manifest, number)
            if conditions.setdefault(case_id, condition) != condition:
                raise InputError(
                    f"{manifest} line {number}: case {case_id!r} has another condition on "
                    "an earlier line; give it once, or the same on every line of the case"
                )
    kept = keep.kept(case_id for case_id, _ in grouped)
    grouped = {key: images for key, images in grouped.items() if key[0] in kept}
    absent = sorted(
        {path for images in grouped.values() for path in images.values() if not path.exists()},
        key=lines.__getitem__,
    )
    _raise_incomplete(
        [
            f"{manifest} line {lines[path]}: volume {path} does not exist; {keep.leave_out}"
            for path in absent
        ]
    )
    return _csv_grouped(grouped, kind, manifest, conditions, keep.leave_out)


CONDITION_COLUMN = "condition"
"""Optional column of a paired CSV manifest: the case's predict-time condition."""


def _require_whole_rows(
    rows: Sequence[Mapping[Any, Any]], manifest: Path, header: Sequence[str], needed: Sequence[str]
) -> None:
    """Refuse a row with more fields than the header (a path with an unquoted comma),
    or too few to reach a needed column (a missing comma), naming its line; trailing
    optional fields may be left out. ``csv.DictReader`` gives a short row's missing
    fields as ``None`` and a long row's extra ones as a list under ``None``."""
    width = len(header)
    for number, row in enumerate(rows, start=2):  # the header is line 1
        given = sum(value is not None for key, value in row.items() if key is not None)
        count = given + len(row.get(None) or [])
        if None in row or any(row.get(name) is None for name in needed):
            raise InputError(
                f"{manifest} line {number}: {count} fields where the header has {width}; "
                "give every line one value per column (quote a path holding a comma)"
            )


def _condition(text: str, manifest: Path, number: int) -> tuple[tuple[str, str], ...]:
    """``"target_domain=C source_domain=B"`` → ``(("target_domain", "C"), ...)``."""
    pairs = []
    for item in text.replace(";", " ").split():
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise InputError(
                f"{manifest} line {number}: condition {text!r} must be key=value pairs "
                "separated by spaces or semicolons, e.g. target_domain=A source_domain=B"
            )
        pairs.append((key, value))
    keys = [key for key, _ in pairs]
    if len(set(keys)) != len(keys):
        raise InputError(f"{manifest} line {number}: condition {text!r} repeats a key")
    return tuple(pairs)


def _listed(manifest: Path, text: str) -> Path:
    """A manifest's ``path`` value: ``~`` expanded, relative to the manifest's folder."""
    path = Path(text).expanduser()
    return path if path.is_absolute() else manifest.parent / path


def listed_paths(manifest: Path) -> list[Path]:
    """The paths a CSV manifest lists, resolved as discovery resolves them (they need
    not exist); none when the manifest cannot be read (discovery says why)."""
    from medi2i.bounded_yaml import decode_text

    try:
        text = decode_text(manifest.read_bytes())
    except (OSError, UnicodeDecodeError):
        return []
    rows = csv.DictReader(io.StringIO(text, newline=""))
    values = (row.get("path") for row in rows)
    return [_listed(manifest, v.strip()) for v in values if isinstance(v, str) and v.strip()]


def _csv_grouped(
    grouped: Mapping[tuple[str, str | None], Mapping[str, Path]],
    kind: str,
    manifest: Path,
    conditions: Mapping[str, tuple[tuple[str, str], ...]],
    leave_out: str,
) -> list[Subject]:
    allowed = {"paired": (SOURCE, TARGET, MASK), "single-domain": (IMAGE, MASK)}.get(
        kind, (IMAGE, MASK)
    )
    required = {"paired": (SOURCE, TARGET)}.get(kind, (IMAGE,))
    cases: dict[str, list[Case]] = {}
    incomplete = []
    for (case_id, domain), images in grouped.items():
        unknown = sorted(set(images) - set(allowed))
        missing = [role for role in required if role not in images]
        if unknown or missing:
            problems = [f"has no {' or '.join(missing)} row"] if missing else []
            if unknown:
                problems.append(f"has rows of unknown roles {', '.join(unknown)}")
            way_out = f"; {leave_out}" if missing else ""
            incomplete.append(
                f"{manifest}: case {case_id!r} {' and '.join(problems)} (roles for {kind} "
                f"data: {', '.join(allowed)}){way_out}"
            )
            continue
        identifier = case_id if domain is None else f"{domain}/{case_id}"
        cases.setdefault(case_id, []).append(
            Case(identifier, dict(images), domain, conditions.get(case_id, ()))
        )
    _raise_incomplete(incomplete)
    return [Subject(subject, tuple(found)) for subject, found in cases.items()]
