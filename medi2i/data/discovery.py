"""Finding the cases of a workflow's data section, and splitting them.

Three layouts lead to the same :class:`medi2i.data.cases.CaseSet`:

- ``synthrad``: ``<root>/<case>/{mr,ct,mask}.{nii.gz,mha}``;
- ``folders``: one folder per role (paired: files matched by name) or per domain;
- ``csv``: a manifest with columns ``case``, ``path`` and ``role`` or ``domain`` (and,
  paired, an optional ``condition``: the case's predict-time condition).

Splits are drawn over *subjects*: the SynthRAD case folder, the file stem, or the CSV
``case`` column. Volumes of one subject (its MR and CT in unpaired training, a
travelling subject scanned on several scanners) therefore never straddle training and
test. Explicit split lists name subjects the same way.

Subject and case ids are compared in Unicode NFC (:func:`subject_id`): macOS writes
file names decomposed (NFD), a YAML file or CSV usually holds them composed, and the
two look the same. The files' own paths are kept as they are.

``data.include`` is applied before the volumes of a subject are paired, so that a
subject left out may lack a file.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import unicodedata
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from medi2i.data.cases import IMAGE, MASK, SOURCE, TARGET, Case, CaseSet
from medi2i.errors import InputError
from medi2i.method import DataKind
from medi2i.workflow.schema import (
    CsvLayout,
    DataConfig,
    FoldersLayout,
    SplitConfig,
    SplitName,
    SynthradLayout,
)

VOLUME_SUFFIXES = (".nii.gz", ".nii", ".mha", ".mhd", ".nrrd", ".nhdr")
"""File endings taken for volumes when a folder is scanned."""

LEAVE_OUT = "to leave the case out, give data.include glob patterns that do not match it"
"""How a case is left out, for the messages about an incomplete one."""

NO_MASKS = (
    "a data set without {mask} volumes: set mask: null in its synthrad layout (then "
    "training finds foreground by intensity, evaluation scores whole volumes, air_mae is n/a)"
)
"""The way out when SynthRAD case folders lack the layout's mask."""


def subject_id(text: str) -> str:
    """A subject or case id as ids are compared: Unicode NFC, so that ``é`` written
    decomposed in a macOS file name matches ``é`` in the workflow file.

    Example:
        >>> subject_id("sub-02 e\u0301") == "sub-02 \u00e9"
        True
    """
    return unicodedata.normalize("NFC", text)


@dataclass(frozen=True)
class Subject:
    """The cases of one subject, the unit that splits keep together."""

    id: str
    cases: tuple[Case, ...]


@dataclass(frozen=True)
class DataSplits:
    """Training, validation and test cases of a workflow.

    Attributes:
        train: Training cases.
        validation: Validation cases (may be empty).
        test: Test cases (may be empty).
        unlabelled: Unlabelled target-domain inputs (``data.unlabelled_data``), as
            single-domain cases, or ``None``.
    """

    train: CaseSet
    validation: CaseSet
    test: CaseSet
    unlabelled: CaseSet | None = None

    def get(self, name: SplitName) -> CaseSet:
        """The cases of the split called ``name``."""
        return {"train": self.train, "validation": self.validation, "test": self.test}[name]


def discover_splits(data: DataConfig, *, training: bool = True) -> DataSplits:
    """Find the cases of ``data`` and split them as ``data.split`` says.

    Args:
        data: The workflow's data section.
        training: Whether the method learns from the training split (trains or fits);
            ``False``, for a method with nothing to learn, accepts a split that puts
            every case in validation and test. The caller tells, from the workflow's
            method (:func:`medi2i.workflow.stages.workflow_splits`), so that finding
            cases needs no registry.

    Raises:
        InputError: A folder, manifest or volume is missing (the message names it), no
            case is found, or the split leaves no training case for a method that learns.
    """
    kind = DataKind(data.kind)
    subjects = discover_subjects(data)
    domains = _domains(data, subjects)
    specs = data.domain_specs()
    parts = split_subjects(subjects, data.split, training=training)

    def case_set(chosen: Sequence[Subject]) -> CaseSet:
        cases = tuple(case for subject in chosen for case in subject.cases)
        return CaseSet(kind=kind, cases=cases, domains=domains, domain_specs=specs)

    validation = case_set(parts["validation"])
    if data.validation_data is not None:
        validation = validation_cases(data.validation_data)
    return DataSplits(
        train=case_set(parts["train"]),
        validation=validation,
        test=case_set(parts["test"]),
        unlabelled=unlabelled_cases(data.unlabelled_data) if data.unlabelled_data else None,
    )


def validation_cases(layout: SynthradLayout | FoldersLayout | CsvLayout) -> CaseSet:
    """The paired cases of ``data.validation_data`` (any training data kind).

    Raises:
        InputError: The layout's folders or files are missing, or it holds no case.
    """
    paired = DataConfig(kind="paired", layout=layout)
    cases = tuple(case for subject in discover_subjects(paired) for case in subject.cases)
    return CaseSet(kind=DataKind.PAIRED, cases=cases)


def unlabelled_cases(layout: SynthradLayout | FoldersLayout | CsvLayout) -> CaseSet:
    """The single-domain cases (role ``image``) of ``data.unlabelled_data``.

    Raises:
        InputError: The layout's folders or files are missing, or it holds no case.
    """
    single = DataConfig(kind="single-domain", layout=layout)
    cases = tuple(case for subject in discover_subjects(single) for case in subject.cases)
    return CaseSet(kind=DataKind.SINGLE_DOMAIN, cases=cases)


def discover_cases(data: DataConfig) -> CaseSet:
    """Every case of ``data``, unsplit."""
    subjects = discover_subjects(data)
    cases = tuple(case for subject in subjects for case in subject.cases)
    return CaseSet(
        kind=DataKind(data.kind),
        cases=cases,
        domains=_domains(data, subjects),
        domain_specs=data.domain_specs(),
    )


def discover_subjects(data: DataConfig) -> list[Subject]:
    """The subjects of ``data``'s layout that ``data.include`` keeps, sorted by id.

    ``data.include`` is applied to the subject ids (NFC, :func:`subject_id`) before
    their volumes are paired: a subject it leaves out may lack a file.

    Raises:
        InputError: No subject is found, ``data.include`` matches none of them, or a
            kept subject lacks a volume (every such subject is listed).
    """
    layout = data.layout
    keep = _Include(data.include, layout)
    if isinstance(layout, SynthradLayout):
        subjects = _synthrad_subjects(layout, data.kind, keep)
    elif isinstance(layout, FoldersLayout):
        subjects = _folder_subjects(layout, data.kind, keep)
    else:
        subjects = _csv_subjects(layout, data.kind, keep)
    if not subjects:
        raise InputError(f"no cases found for the {layout.type} layout at {_where(layout)}")
    return sorted(subjects, key=lambda subject: subject.id)


class _Include:
    """``data.include``'s patterns (NFC), applied to a layout's subject ids."""

    def __init__(
        self, patterns: Sequence[str], layout: SynthradLayout | FoldersLayout | CsvLayout
    ) -> None:
        self.patterns = [subject_id(pattern) for pattern in patterns]
        self.layout = layout

    def kept(self, ids: Iterable[str]) -> set[str]:
        """The ids the patterns keep (all when there are none).

        Raises:
            InputError: There are ids and the patterns match none of them.
        """
        found = sorted(set(ids))
        if not self.patterns:
            return set(found)
        kept = {i for i in found if any(fnmatch.fnmatchcase(i, p) for p in self.patterns)}
        if found and not kept:
            shown = ", ".join(found[:8])
            raise InputError(
                f"data.include {self.patterns} matches none of the {len(found)} subjects at "
                f"{_where(self.layout)} ({shown}{', ...' if len(found) > 8 else ''}); "
                "patterns are globs on subject ids, e.g. 'case*'"
            )
        return kept


def _where(layout: SynthradLayout | FoldersLayout | CsvLayout) -> str:
    if isinstance(layout, SynthradLayout):
        return str(layout.root)
    if isinstance(layout, FoldersLayout):
        return ", ".join(str(folder) for folder in layout.folders.values())
    return str(layout.manifest)


def _domains(data: DataConfig, subjects: Iterable[Subject]) -> tuple[str, ...]:
    """The domain names in label order: ``data.domains`` when given, else sorted, so
    that neither the layout nor the order of its folders changes the labels."""
    if data.kind not in ("unpaired", "multi-domain"):
        return ()
    if data.domains:
        return tuple(spec.name for spec in data.domain_specs())
    found = {case.domain for subject in subjects for case in subject.cases}
    return tuple(sorted(domain for domain in found if domain is not None))


def target_domain_images(cases: CaseSet, *, domain: str | None) -> list[Path]:
    """The volumes a method is fitted on: those of the domain it maps images onto.

    Single-domain cases give their ``image``, paired cases their ``target``; unpaired
    and multi-domain cases give the ``image`` of those in ``domain``.

    Raises:
        InputError: Domain data without ``domain``, or no volume of that domain.
    """
    if cases.kind is DataKind.SINGLE_DOMAIN:
        return [case.images[IMAGE] for case in cases.cases]
    if cases.kind is DataKind.PAIRED:
        return [case.images[TARGET] for case in cases.cases]
    if domain is None:
        raise InputError(
            f"fitting on {cases.kind.value} data needs the target domain: set method.fit_domain "
            f"to one of {list(cases.domains)}"
        )
    images = [case.images[IMAGE] for case in cases.cases if case.domain == domain]
    if not images:
        raise InputError(
            f"no training volume of domain {domain!r} (method.fit_domain) to fit on; "
            f"the training cases are of {sorted({str(c.domain) for c in cases.cases})}"
        )
    return images


# -- volume files ---------------------------------------------------------------------------


def volume_stem(path: Path) -> str | None:
    """``ct.nii.gz`` → ``ct``; ``None`` for a file that is not a volume."""
    for suffix in VOLUME_SUFFIXES:
        if path.name.endswith(suffix) and len(path.name) > len(suffix):
            return path.name[: -len(suffix)]
    return None


def volumes_in(folder: Path) -> dict[str, Path]:
    """Volume files of ``folder`` by stem (hidden files skipped).

    Raises:
        InputError: The folder does not exist, or two files share a stem.
    """
    if not folder.is_dir():
        raise InputError(f"data folder {folder} does not exist or is not a folder")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        stem = volume_stem(path)
        if stem is None or path.name.startswith(".") or not path.is_file():
            continue
        if stem in found:
            raise InputError(
                f"{folder} holds two volumes named {stem!r} ({found[stem].name}, {path.name}); "
                "keep one"
            )
        found[stem] = path
    return found


# -- synthrad ---------------------------------------------------------------------------------


def _synthrad_subjects(layout: SynthradLayout, kind: str, keep: _Include) -> list[Subject]:
    wanted = [layout.source] if kind == "single-domain" else [layout.source, layout.target]
    if layout.mask is not None:
        wanted.append(layout.mask)
    if not layout.root.is_dir():
        names = ", ".join(wanted[:-1]) + (" and " if len(wanted) > 1 else "") + wanted[-1]
        raise InputError(
            f"SynthRAD root {layout.root} does not exist; it should hold one folder per case "
            f"with {names} volumes"
        )
    found = {}
    for folder in sorted(p for p in layout.root.iterdir() if p.is_dir()):
        files = volumes_in(folder)
        if any(stem in files for stem in wanted):  # not e.g. SynthRAD's "overview" folder
            found[subject_id(folder.name)] = (folder, files)
    kept = keep.kept(found)
    subjects, problems, masks_missing = [], [], False
    for name, (folder, files) in found.items():
        missing = [stem for stem in wanted if stem not in files]
        if name not in kept:
            continue
        masks_missing = masks_missing or layout.mask in missing
        if missing:
            problems.append(
                f"case folder {folder} has no {' or '.join(missing)} volume "
                f"(expected {', '.join(f'{s}.nii.gz or {s}.mha' for s in missing)}); {LEAVE_OUT}"
            )
            continue
        subjects.append(_synthrad_subject(name, files, layout, kind))
    _raise_incomplete(problems, note=NO_MASKS.format(mask=layout.mask) if masks_missing else "")
    return subjects


def _raise_incomplete(problems: Sequence[str], *, note: str = "") -> None:
    """Raise every incomplete case at once: one line each, then their count, then
    ``note`` (a way out that holds for all of them), if any."""
    end = f"\n{note}" if note else ""
    if len(problems) == 1:
        raise InputError(problems[0] + end)
    if problems:
        raise InputError("\n".join(problems) + f"\n{len(problems)} incomplete cases{end}")


def _synthrad_subject(
    name: str, files: Mapping[str, Path], layout: SynthradLayout, kind: str
) -> Subject:
    mask = {MASK: files[layout.mask]} if layout.mask is not None else {}
    if kind == "paired":
        images = {SOURCE: files[layout.source], TARGET: files[layout.target], **mask}
        return Subject(name, (Case(name, images),))
    if kind == "single-domain":
        return Subject(name, (Case(name, {IMAGE: files[layout.source], **mask}),))
    cases = tuple(
        Case(f"{name}/{stem}", {IMAGE: files[stem], **mask}, domain=stem)
        for stem in (layout.source, layout.target)
    )
    return Subject(name, cases)


# -- folders ----------------------------------------------------------------------------------


def _folder_subjects(layout: FoldersLayout, kind: str, keep: _Include) -> list[Subject]:
    listings = {
        key: {subject_id(stem): path for stem, path in volumes_in(folder).items()}
        for key, folder in layout.folders.items()
    }
    kept = keep.kept(stem for files in listings.values() for stem in files)
    listings = {
        key: {stem: path for stem, path in files.items() if stem in kept}
        for key, files in listings.items()
    }
    if kind in ("paired", "single-domain"):
        return _matched_subjects(listings, layout, SOURCE if kind == "paired" else IMAGE)
    by_stem: dict[str, list[Case]] = {}
    for domain, files in listings.items():
        for stem, path in files.items():
            by_stem.setdefault(stem, []).append(Case(f"{domain}/{stem}", {IMAGE: path}, domain))
    return [Subject(stem, tuple(cases)) for stem, cases in by_stem.items()]


def _matched_subjects(
    listings: Mapping[str, Mapping[str, Path]], layout: FoldersLayout, lead: str
) -> list[Subject]:
    if not listings[lead] and any(listings.values()):
        raise InputError(
            f"the {lead} folder {layout.folders[lead]} holds no volumes "
            f"({', '.join(VOLUME_SUFFIXES)} files); check the layout's folders.{lead} (in "
            "data.layout, or the section whose data this is)"
        )
    subjects, problems = [], []
    for stem in listings[lead]:
        absent = [role for role, files in listings.items() if stem not in files]
        for role in absent:
            problems.append(
                f"{listings[lead][stem]} has no counterpart in the {role} folder "
                f"{layout.folders[role]} (files are matched by name, e.g. {stem}.nii.gz); "
                f"{LEAVE_OUT}"
            )
        if not absent:
            images = {role: files[stem] for role, files in listings.items()}
            subjects.append(Subject(stem, (Case(stem, images),)))
    for role, files in listings.items():
        orphans = sorted(set(files) - set(listings[lead]))
        if orphans:
            more = f", ... ({len(orphans)} in all)" if orphans[5:] else ""
            problems.append(
                f"{layout.folders[role]} has volumes with no {lead} counterpart in "
                f"{layout.folders[lead]}: {', '.join(orphans[:5])}{more} (files are matched "
                f"by name); {LEAVE_OUT}"
            )
    _raise_incomplete(problems)
    return subjects


# -- csv ----------------------------------------------------------------------------------------


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
            f"{manifest} line {lines[path]}: volume {path} does not exist; {LEAVE_OUT}"
            for path in absent
        ]
    )
    return _csv_grouped(grouped, kind, manifest, conditions)


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
            leave_out = f"; {LEAVE_OUT}" if missing else ""
            incomplete.append(
                f"{manifest}: case {case_id!r} {' and '.join(problems)} (roles for {kind} "
                f"data: {', '.join(allowed)}){leave_out}"
            )
            continue
        identifier = case_id if domain is None else f"{domain}/{case_id}"
        cases.setdefault(case_id, []).append(
            Case(identifier, dict(images), domain, conditions.get(case_id, ()))
        )
    _raise_incomplete(incomplete)
    return [Subject(subject, tuple(found)) for subject, found in cases.items()]


# -- splits ------------------------------------------------------------------------------------


def split_subjects(
    subjects: Sequence[Subject], split: SplitConfig, *, training: bool = True
) -> dict[SplitName, list[Subject]]:
    """Split subjects into training, validation and test.

    Explicit lists take their subjects first; fractions then draw from the rest, per
    domain when every subject belongs to a single domain, so each domain keeps cases
    in every split. With ``training`` off (a method with nothing to learn) the
    training split may be empty.

    Raises:
        InputError: A listed subject does not exist, or no training subject is left
            while ``training`` is on.
    """
    by_id = {subject.id: subject for subject in subjects}
    chosen: dict[str, list[str]] = {"validation": [], "test": []}
    for name in ("validation", "test"):
        listed = getattr(split, name)
        if isinstance(listed, list):
            listed = [subject_id(str(case)) for case in listed]
            unknown = [case for case in listed if case not in by_id]
            if unknown:
                names = sorted(by_id)
                known = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if names[8:] else "")
                raise InputError(
                    f"split.{name} names unknown cases {', '.join(map(str, unknown))} "
                    f"(the cases found: {known or 'none'}); name cases of the layout"
                )
            chosen[name] = list(listed)
    rest = [
        subject
        for subject in subjects
        if subject.id not in {*chosen["validation"], *chosen["test"]}
    ]
    rng = np.random.default_rng(split.seed)
    for stratum in _strata(rest):
        order = [stratum[i] for i in rng.permutation(len(stratum))]
        for name in ("validation", "test"):
            fraction = getattr(split, name)
            if isinstance(fraction, float) and fraction > 0:
                count = max(1, round(fraction * len(stratum)))
                chosen[name] += [subject.id for subject in order[:count]]
                order = order[count:]
    taken = {*chosen["validation"], *chosen["test"]}
    train = [subject for subject in subjects if subject.id not in taken]
    if not train and training:
        raise InputError(
            f"the split leaves no training case out of {len(subjects)}, and the method "
            "trains or fits on them; lower split.validation / split.test or add cases"
        )
    return {
        "train": train,
        "validation": [by_id[i] for i in sorted(chosen["validation"])],
        "test": [by_id[i] for i in sorted(chosen["test"])],
    }


def _strata(subjects: Sequence[Subject]) -> list[list[Subject]]:
    domains = [{case.domain for case in subject.cases} for subject in subjects]
    if not subjects or any(len(found) != 1 for found in domains):
        return [list(subjects)]
    strata: dict[str | None, list[Subject]] = {}
    for subject, found in zip(subjects, domains, strict=True):
        strata.setdefault(next(iter(found)), []).append(subject)
    return list(strata.values())
