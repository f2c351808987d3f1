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
subject left out may lack a file. It does not apply to ``data.validation_data`` nor to
``data.unlabelled_data``, which are read whole: their messages about an incomplete case
give other ways out (:func:`validation_leave_out`, :func:`unlabelled_leave_out`).
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from medi2i.data.cases import IMAGE, MASK, SOURCE, TARGET, Case, CaseSet
from medi2i.data.csv_manifest import CONDITION_COLUMN as CONDITION_COLUMN
from medi2i.data.csv_manifest import _csv_subjects
from medi2i.data.csv_manifest import listed_paths as listed_paths
from medi2i.data.subjects import LEAVE_OUT as LEAVE_OUT
from medi2i.data.subjects import Subject as Subject
from medi2i.data.subjects import _raise_incomplete
from medi2i.data.subjects import subject_id as subject_id
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


NO_MASKS = (
    "a data set without {mask} volumes: set mask: null in its synthrad layout (then "
    "training finds foreground by intensity, evaluation scores whole volumes, air_mae is n/a)"
)
"""The way out when SynthRAD case folders lack the layout's mask."""


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

    Validation scores each prediction against its target, so these cases are pairs
    whatever the training data's kind: a single-domain or unpaired workflow's
    ``validation_data`` needs a source and a target volume per case too.

    Raises:
        InputError: The layout's folders or files are missing, or it holds no case; an
            incomplete case's message says that cases are pairs and how to leave it out
            (:func:`validation_leave_out`; ``data.include`` does not apply here).
    """
    paired = DataConfig(kind="paired", layout=layout)
    subjects = discover_subjects(paired, leave_out=validation_leave_out(layout))
    cases = tuple(case for subject in subjects for case in subject.cases)
    return CaseSet(kind=DataKind.PAIRED, cases=cases)


def unlabelled_cases(layout: SynthradLayout | FoldersLayout | CsvLayout) -> CaseSet:
    """The single-domain cases (role ``image``) of ``data.unlabelled_data``.

    Raises:
        InputError: The layout's folders or files are missing, or it holds no case.
    """
    single = DataConfig(kind="single-domain", layout=layout)
    subjects = discover_subjects(single, leave_out=unlabelled_leave_out(layout))
    cases = tuple(case for subject in subjects for case in subject.cases)
    return CaseSet(kind=DataKind.SINGLE_DOMAIN, cases=cases)


PAIRED_VALIDATION = (
    "validation_data cases are pairs whatever the data kind (validation scores each "
    "prediction against its target)"
)
"""Why a ``validation_data`` case needs a target, for the messages about one without."""


def validation_leave_out(layout: SynthradLayout | FoldersLayout | CsvLayout) -> str:
    """The way out for an incomplete case of ``data.validation_data``, which
    ``data.include`` does not filter: complete the case, remove it, or point
    ``validation_data`` elsewhere.

    Example:
        >>> from pathlib import Path
        >>> layout = SynthradLayout(type="synthrad", root=Path("vd"), source="image")
        >>> print(validation_leave_out(layout))  # doctest: +NORMALIZE_WHITESPACE
        validation_data cases are pairs whatever the data kind (validation scores each
        prediction against its target): every case folder needs its image and ct volumes
        (validation_data.source and validation_data.target); complete the case folder,
        move it out of vd, or point validation_data.root at a folder without it
    """
    if isinstance(layout, SynthradLayout):
        return (
            f"{PAIRED_VALIDATION}: every case folder needs its {layout.source} and "
            f"{layout.target} volumes (validation_data.source and validation_data.target); "
            f"complete the case folder, move it out of {layout.root}, or point "
            "validation_data.root at a folder without it"
        )
    if isinstance(layout, FoldersLayout):
        return (
            f"{PAIRED_VALIDATION}: every source file needs a file of the same name in each "
            "other folder; add it, remove the file, or point validation_data.folders at "
            "folders without it"
        )
    return (
        f"{PAIRED_VALIDATION}: every case needs a source and a target row naming existing "
        f"volumes; complete or remove the case's rows in {layout.manifest}"
    )


def unlabelled_leave_out(layout: SynthradLayout | FoldersLayout | CsvLayout) -> str:
    """The way out for an incomplete case of ``data.unlabelled_data``, which is read
    whole (``data.include`` does not filter it)."""
    return (
        "data.unlabelled_data is read whole (data.include does not apply to it): complete "
        f"or remove the case at {_where(layout)}, or point unlabelled_data at data without it"
    )


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


def discover_subjects(data: DataConfig, *, leave_out: str = LEAVE_OUT) -> list[Subject]:
    """The subjects of ``data``'s layout that ``data.include`` keeps, sorted by id.

    ``data.include`` is applied to the subject ids (NFC, :func:`subject_id`) before
    their volumes are paired: a subject it leaves out may lack a file.

    Args:
        data: A data section.
        leave_out: How a user leaves an incomplete case out, ending each message about
            one; ``data.include``'s patterns by default (:data:`LEAVE_OUT`), other
            advice for data that ``data.include`` does not filter.

    Raises:
        InputError: No subject is found, ``data.include`` matches none of them, or a
            kept subject lacks a volume (every such subject is listed).
    """
    layout = data.layout
    keep = _Include(data.include, layout, leave_out=leave_out)
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
    """``data.include``'s patterns (NFC), applied to a layout's subject ids, and
    ``leave_out``: how a user leaves an incomplete case out, for the messages."""

    def __init__(
        self,
        patterns: Sequence[str],
        layout: SynthradLayout | FoldersLayout | CsvLayout,
        *,
        leave_out: str = LEAVE_OUT,
    ) -> None:
        self.patterns = [subject_id(pattern) for pattern in patterns]
        self.layout = layout
        self.leave_out = leave_out

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
                f"(expected {', '.join(f'{s}.nii.gz or {s}.mha' for s in missing)}); "
                f"{keep.leave_out}"
            )
            continue
        subjects.append(_synthrad_subject(name, files, layout, kind))
    _raise_incomplete(problems, note=NO_MASKS.format(mask=layout.mask) if masks_missing else "")
    return subjects


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
        lead = SOURCE if kind == "paired" else IMAGE
        return _matched_subjects(listings, layout, lead, keep.leave_out)
    by_stem: dict[str, list[Case]] = {}
    for domain, files in listings.items():
        for stem, path in files.items():
            by_stem.setdefault(stem, []).append(Case(f"{domain}/{stem}", {IMAGE: path}, domain))
    return [Subject(stem, tuple(cases)) for stem, cases in by_stem.items()]


def _matched_subjects(
    listings: Mapping[str, Mapping[str, Path]], layout: FoldersLayout, lead: str, leave_out: str
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
                f"{leave_out}"
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
                f"by name); {leave_out}"
            )
    _raise_incomplete(problems)
    return subjects


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
