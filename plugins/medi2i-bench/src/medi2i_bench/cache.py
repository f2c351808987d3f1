"""The benchmarks' on-disk cache: a built dataset written once as NIfTI files with a
``dataset.json`` index per split, and read back on later runs.

A dataset is written into ``<folder>.partial`` and renamed into place when complete, so an
interrupted build never leaves a folder that looks finished. Each index records the
SHA-256 of every file it lists, and reading checks them: a file changed after the build
(the cache may be shared) is refused, never scored under the fingerprint of the data it
was built from.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from medi2i import InputError
from medi2i_bench.cases import (
    BenchCase,
    BenchDataset,
    DomainVolume,
    TaskName,
    Volume,
    read_volume_file,
)


@dataclass(frozen=True)
class Built:
    """What a builder makes for one split (or for an unsplit benchmark)."""

    train_pairs: tuple[BenchCase, ...]
    train_domains: tuple[DomainVolume, ...]
    test: tuple[BenchCase, ...]
    validation: tuple[BenchCase, ...] = ()


Parts = dict[str, Built]
"""A benchmark's data by split (``""``: the one dataset of an unsplit benchmark)."""


INDEX = "dataset.json"
SHA256 = "sha256"
"""Key of the index's SHA-256 of each file, by path relative to the index's folder."""
TRAIN_DOMAINS = "train_domains"
"""Folder of the per-scanner training images (Q3, Q3m), one subfolder per image."""
_ROLE_FILES: dict[TaskName, tuple[str, str, str]] = {
    "q1": ("mr", "ct", "mask"),  # the SynthRAD layout
    "q2": ("thick_slices", "high_res", "mask"),
    "q3": ("source", "target", "mask"),
    "q1x": ("mr", "ct", "mask"),  # the SynthRAD layout
    "q3m": ("source", "target", "mask"),
    "q4": ("mr", "ct", "mask"),  # the SynthRAD layout
    "q2c": ("thick_slices", "high_res", "mask"),
}
"""File names (without ``.nii.gz``) of a case's source, target and mask."""


def write_dataset(folder: Path, task: TaskName, parts: Parts) -> None:
    from medi2i.io import atomic_path

    staging = folder.with_name(folder.name + ".partial")
    shutil.rmtree(staging, ignore_errors=True)
    for split, built in parts.items():
        _write_part(staging / split if split else staging, task, built)
    if "" not in parts:  # the benchmark's own index: its splits, written last
        with atomic_path(staging / INDEX) as tmp:
            tmp.write_text(json.dumps({"splits": sorted(parts)}, indent=2) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    staging.rename(folder)


def _write_part(folder: Path, task: TaskName, built: Built) -> None:
    from medi2i.io import atomic_path

    index: dict[str, list[dict[str, str]]] = {
        "train_pairs": [],
        "train_domains": [],
        "validation": [],
        "test": [],
    }
    digests: dict[str, str] = {}
    splits = (
        ("train_pairs", built.train_pairs),
        ("validation", built.validation),
        ("test", built.test),
    )
    for split, cases in splits:
        for case in cases:
            volumes = (case.source, case.target, case.mask)
            for role, volume in zip(_ROLE_FILES[task], volumes, strict=True):
                name = f"{split}/{case.name}/{role}.nii.gz"
                digests[name] = _write(volume, folder / name, mask=volume is case.mask)
            entry = {"name": case.name}
            if case.source_domain or case.target_domain:
                entry.update(source_domain=case.source_domain, target_domain=case.target_domain)
            index[split].append(entry)
    for item in built.train_domains:
        for role, volume in (("image", item.image), ("mask", item.mask)):
            name = f"{TRAIN_DOMAINS}/{item.name}/{role}.nii.gz"
            digests[name] = _write(volume, folder / name, mask=role == "mask")
        index["train_domains"].append({"name": item.name, "domain": item.domain})
    with atomic_path(folder / INDEX) as tmp:
        tmp.write_text(json.dumps({**index, SHA256: digests}, indent=2) + "\n")


def _write(volume: Volume, path: Path, *, mask: bool) -> str:
    """Write ``volume`` at ``path``; return the file's SHA-256."""
    from medi2i import write_volume
    from medi2i.hashing import file_sha256

    image = volume.metatensor()
    image.meta["medi2i.dtype"] = "uint8" if mask else "float32"
    write_volume(image, path, overwrite=True)  # the harness's own cache
    return file_sha256(path)


def domain_image_file(folder: Path, name: str) -> Path:
    """The image file of the per-scanner training image ``name`` in a built split's
    ``folder`` (``train_domains/<name>/image.nii.gz``)."""
    return folder / TRAIN_DOMAINS / name / "image.nii.gz"


def read_dataset(
    folder: Path, task: TaskName, fingerprint: str, *, split: str = ""
) -> BenchDataset:
    try:
        index = json.loads((folder / INDEX).read_text())
        _require_unchanged(folder, index)
        pairs = _read_cases(folder / "train_pairs", index["train_pairs"], _ROLE_FILES[task])
        test = _read_cases(folder / "test", index["test"], _ROLE_FILES[task])
        validation = _read_cases(
            folder / "validation", index.get("validation", []), _ROLE_FILES[task]
        )
        domains = tuple(
            DomainVolume(
                entry["name"],
                entry["domain"],
                read_volume_file(domain_image_file(folder, entry["name"])),
                read_volume_file(folder / TRAIN_DOMAINS / entry["name"] / "mask.nii.gz"),
            )
            for entry in index["train_domains"]
        )
    except (KeyError, json.JSONDecodeError, InputError, OSError) as exc:
        raise InputError(
            f"benchmark cache {folder} is damaged ({exc}); delete the folder and run again "
            "with MEDI2I_DATA_DIR set to the data folder (or run medi2i bench prepare), "
            "which builds it anew"
        ) from None
    return BenchDataset(task, pairs, domains, test, folder, fingerprint, validation, split)


def _require_unchanged(folder: Path, index: dict[str, object]) -> None:
    """Refuse a cache whose files are not those its build wrote (or that records none).

    Raises:
        InputError: A file's SHA-256 differs from the index's, or is not recorded.
    """
    from medi2i.hashing import file_sha256

    digests = index.get(SHA256)
    if not isinstance(digests, dict) or not digests:
        raise InputError(
            "it records no SHA-256 of its files (an earlier medi2i-bench built it), so "
            "files changed since cannot be told apart"
        )
    for name, digest in sorted(digests.items()):
        if file_sha256(folder / name) != digest:
            raise InputError(
                f"{name} is not the file the build wrote (its SHA-256 changed): the data "
                "would be scored under the fingerprint of other data"
            )


def _read_case(folder: Path, entry: dict[str, str], roles: tuple[str, str, str]) -> BenchCase:
    source, target, mask = (read_volume_file(folder / f"{role}.nii.gz") for role in roles)
    return BenchCase(
        entry["name"],
        source,
        target,
        mask,
        source_domain=entry.get("source_domain", ""),
        target_domain=entry.get("target_domain", ""),
    )


def _read_cases(
    split: Path, entries: Sequence[dict[str, str]], roles: tuple[str, str, str]
) -> tuple[BenchCase, ...]:
    return tuple(_read_case(split / e["name"], e, roles) for e in entries)
