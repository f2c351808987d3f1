"""Toy training data sets of every data kind, written as NIfTI files.

:func:`write_unpaired_cases` and :func:`write_multi_domain_cases` write volumes of
domains that differ the way real ones do: MR in arbitrary units against CT in HU, or
one anatomy under several scanner intensity responses. :func:`synthetic_training_cases`
picks the writer a method's data kind needs (the training contract check uses it).

Example:
    >>> cases = write_unpaired_cases(tmp_path)  # doctest: +SKIP
    >>> cases.domains  # doctest: +SKIP
    ('mr', 'ct')

From the command line, for a workflow's ``folders`` layout::

    python -m medi2i.testing.domain_cases unpaired workflows/data/unpaired
    python -m medi2i.testing.domain_cases multi-domain workflows/data/scanners
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from medi2i.method import DataKind, DomainSpec, Method
from medi2i.patch_network import PatchNetworkMethod

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.data.cases import Case, CaseSet

UNPAIRED_DOMAINS = (
    DomainSpec(name="mr", modality="MR", units="arbitrary"),
    DomainSpec(name="ct", modality="CT", units="HU"),
)
"""The domains of :func:`write_unpaired_cases`: MR (label 0, ``a``), then CT (``b``)."""

MULTI_DOMAINS = tuple(
    DomainSpec(name=f"scanner-{letter}", modality="MR") for letter in ("a", "b", "c")
)
"""The domains of :func:`write_multi_domain_cases`: three MR scanners."""

CT_SLOPE = 2.0
"""HU per blob intensity unit of the toy CT volumes."""
CT_OFFSET_HU = -1000.0
"""HU of a zero blob intensity in the toy CT volumes."""

Shape = tuple[int, int, int]


def domain_volume(spec: DomainSpec, *, index: int, shape: Shape, seed: int) -> MetaTensor:
    """One toy volume of domain ``spec``: :func:`medi2i.testing.make_volume` blobs (about
    100 to 1000), mapped to HU for CT and by a per-domain power law and gain for others.

    Args:
        spec: The domain.
        index: The domain's label; it picks the intensity response of non-CT domains.
        shape: Voxels along each axis.
        seed: Seed of the blobs.
    """
    from medi2i.testing.domain_intensity import is_hounsfield
    from medi2i.testing.volumes import make_volume

    blobs = make_volume(shape, seed=seed)
    if is_hounsfield(spec):
        return cast("MetaTensor", blobs * CT_SLOPE + CT_OFFSET_HU)
    # another scanner: another gamma and gain of the same anatomy
    gamma, gain = 1.0 + 0.25 * index, 1.0 + 0.5 * index
    return cast("MetaTensor", (blobs / 1000.0) ** gamma * 1000.0 * gain)


def write_domain_cases(
    folder: Path,
    *,
    kind: DataKind,
    domains: Sequence[DomainSpec | str],
    per_domain: int = 2,
    shape: Shape = (24, 24, 24),
    seed: int = 0,
) -> CaseSet:
    """Write ``per_domain`` volumes of each domain as ``<domain>/<case>.nii.gz``, the
    ``folders`` layout of a workflow (``folders: {<domain>: <folder>/<domain>, ...}``).

    Every volume has its own blobs (different subjects: the data is unpaired).

    Args:
        folder: Where to write.
        kind: :attr:`DataKind.UNPAIRED` (exactly two domains) or
            :attr:`DataKind.MULTI_DOMAIN`.
        domains: The domains in label order; a plain name is a domain of ``"any"``
            modality (:class:`~medi2i.DomainSpec`), as in a workflow's ``data.domains``.
        per_domain: Volumes per domain.
        shape: Voxels along each axis.
        seed: Seed of the first volume (each next one adds 1).

    Returns:
        The cases with their domains and domain specs.
    """
    from medi2i.data.cases import Case, CaseSet
    from medi2i.io import write_volume

    specs = domain_specs(domains)
    cases: list[Case] = []
    for label, spec in enumerate(specs):
        for number in range(per_domain):
            case_id = f"{spec.name}-{number}"
            volume_seed = seed + label * per_domain + number
            volume = domain_volume(spec, index=label, shape=shape, seed=volume_seed)
            path = write_volume(volume, folder / spec.name / f"{case_id}.nii.gz", overwrite=True)
            cases.append(Case(id=case_id, images={"image": Path(path)}, domain=spec.name))
    names = tuple(spec.name for spec in specs)
    return CaseSet(kind=kind, cases=tuple(cases), domains=names, domain_specs=specs)


def domain_specs(domains: Sequence[DomainSpec | str]) -> tuple[DomainSpec, ...]:
    """``domains`` as specs: a plain name is a domain of ``"any"`` modality, as
    :meth:`medi2i.Method.use_domains` and a workflow's ``data.domains`` take it.

    Example:
        >>> [spec.modality for spec in domain_specs(["s1", DomainSpec(name="ct", modality="CT")])]
        ['any', 'CT']
    """
    return tuple(d if isinstance(d, DomainSpec) else DomainSpec(name=d) for d in domains)


def write_unpaired_cases(
    folder: Path,
    *,
    domains: Sequence[DomainSpec | str] = UNPAIRED_DOMAINS,
    per_domain: int = 2,
    shape: Shape = (24, 24, 24),
    seed: int = 0,
) -> CaseSet:
    """Write a toy unpaired data set: volumes of two domains (MR and CT by default).

    Args:
        folder: Where to write ``<domain>/<case>.nii.gz``.
        domains: The two domains, in label order.
        per_domain: Volumes per domain.
        shape: Voxels along each axis.
        seed: Seed of the first volume.

    Returns:
        The cases, with ``domains`` and ``domain_specs`` set.

    Raises:
        ValueError: ``domains`` does not hold exactly two domains.
    """
    if len(domains) != 2:
        names = [spec.name for spec in domain_specs(domains)]
        raise ValueError(f"unpaired data has two domains, got {names}")
    return write_domain_cases(
        folder,
        kind=DataKind.UNPAIRED,
        domains=domains,
        per_domain=per_domain,
        shape=shape,
        seed=seed,
    )


def write_multi_domain_cases(
    folder: Path,
    *,
    domains: Sequence[DomainSpec | str] = MULTI_DOMAINS,
    per_domain: int = 2,
    shape: Shape = (24, 24, 24),
    seed: int = 0,
) -> CaseSet:
    """Write a toy multi-domain data set: one anatomy model under several intensity
    responses (three MR scanners by default).

    Args:
        folder: Where to write ``<domain>/<case>.nii.gz``.
        domains: Two or more domains, in label order.
        per_domain: Volumes per domain.
        shape: Voxels along each axis.
        seed: Seed of the first volume.

    Returns:
        The cases, with ``domains`` and ``domain_specs`` set.

    Raises:
        ValueError: Fewer than two domains.
    """
    if len(domains) < 2:
        raise ValueError(f"multi-domain data has two or more domains, got {len(domains)}")
    return write_domain_cases(
        folder,
        kind=DataKind.MULTI_DOMAIN,
        domains=domains,
        per_domain=per_domain,
        shape=shape,
        seed=seed,
    )


def write_single_domain_cases(
    folder: Path, *, count: int = 3, shape: Shape = (24, 24, 24), seed: int = 0
) -> CaseSet:
    """Write a toy single-domain data set: ``<case>/image.nii.gz`` blob volumes."""
    from medi2i.data.cases import Case, CaseSet
    from medi2i.io import write_volume
    from medi2i.testing.volumes import make_volume

    cases = []
    for index in range(count):
        volume = make_volume(shape, seed=seed + index)
        path = write_volume(volume, folder / f"case-{index}" / "image.nii.gz", overwrite=True)
        cases.append(Case(id=f"case-{index}", images={"image": Path(path)}))
    return CaseSet(kind=DataKind.SINGLE_DOMAIN, cases=tuple(cases))


def write_scaled_paired_cases(
    folder: Path, *, factors: Shape, count: int = 3, shape: Shape = (24, 24, 24), seed: int = 0
) -> CaseSet:
    """Write a toy paired data set whose targets lie on a grid ``factors`` times finer
    (super-resolution): each target is its source's blobs drawn on the finer grid."""
    from medi2i.data.cases import Case, CaseSet
    from medi2i.io import write_volume
    from medi2i.method import Grid
    from medi2i.resample import resample_to_grid
    from medi2i.testing.volumes import make_volume

    cases = []
    for index in range(count):
        source = make_volume(shape, seed=seed + index)
        fine = Grid.of(source).scaled((float(factors[0]), float(factors[1]), float(factors[2])))
        target = resample_to_grid(source, fine, mode="linear")
        paths = {
            role: Path(
                write_volume(volume, folder / f"case-{index}" / f"{role}.nii.gz", overwrite=True)
            )
            for role, volume in (("source", source), ("target", target))
        }
        cases.append(Case(id=f"case-{index}", images=paths))
    return CaseSet(kind=DataKind.PAIRED, cases=tuple(cases))


def synthetic_training_cases(
    method: Method[Any, Any],
    folder: Path,
    *,
    domains: Sequence[DomainSpec | str] | None = None,
    shape: Shape = (24, 24, 24),
) -> CaseSet:
    """Toy training cases of the kind ``method`` learns from, written under ``folder``.

    Paired data gets :func:`~medi2i.testing.trainable_examples.write_paired_cases` (MR
    blobs and a linear map of them in HU), on a finer target grid for a patch network
    whose ``output_scale`` is an integer refinement; unpaired and multi-domain data get
    ``domains`` (by default :data:`UNPAIRED_DOMAINS` or :data:`MULTI_DOMAINS`).

    Raises:
        ValueError: The method learns from no data.
    """
    writers: dict[DataKind, Callable[[], CaseSet]] = {
        DataKind.PAIRED: lambda: _paired_cases(method, folder, shape),
        DataKind.UNPAIRED: lambda: write_unpaired_cases(
            folder, domains=domains or UNPAIRED_DOMAINS, shape=shape
        ),
        DataKind.MULTI_DOMAIN: lambda: write_multi_domain_cases(
            folder, domains=domains or MULTI_DOMAINS, shape=shape
        ),
        DataKind.SINGLE_DOMAIN: lambda: write_single_domain_cases(folder, shape=shape),
    }
    if method.data not in writers:
        raise ValueError(f"method {method.id!r} learns from no data (data kind none)")
    return writers[method.data]()


def _paired_cases(method: Method[Any, Any], folder: Path, shape: Shape) -> CaseSet:
    from medi2i.testing.trainable_examples import write_paired_cases

    scale = method.output_scale if isinstance(method, PatchNetworkMethod) else (1.0, 1.0, 1.0)
    if scale == (1.0, 1.0, 1.0):
        return write_paired_cases(folder, shape=shape)
    factors = tuple(round(f) for f in scale)
    return write_scaled_paired_cases(
        folder, factors=(factors[0], factors[1], factors[2]), shape=shape
    )


def default_domains(kind: DataKind) -> tuple[DomainSpec, ...]:
    """The toy domains of ``kind``: :data:`UNPAIRED_DOMAINS`, :data:`MULTI_DOMAINS`, or
    none for other kinds."""
    if kind is DataKind.UNPAIRED:
        return UNPAIRED_DOMAINS
    if kind is DataKind.MULTI_DOMAIN:
        return MULTI_DOMAINS
    return ()


def main(argv: list[str] | None = None) -> int:
    """``python -m medi2i.testing.domain_cases {unpaired,multi-domain} FOLDER [PER_DOMAIN]``."""
    args = sys.argv[1:] if argv is None else argv
    writers = {"unpaired": write_unpaired_cases, "multi-domain": write_multi_domain_cases}
    if not 2 <= len(args) <= 3 or args[0] not in writers:
        usage = "usage: python -m medi2i.testing.domain_cases {unpaired,multi-domain} FOLDER"
        print(f"{usage} [PER_DOMAIN]", file=sys.stderr)
        return 2
    per_domain = int(args[2]) if len(args) == 3 else 4
    cases = writers[args[0]](Path(args[1]), per_domain=per_domain)
    for case in cases.cases:
        print(case.images["image"])
    return 0


__all__ = [
    "MULTI_DOMAINS",
    "UNPAIRED_DOMAINS",
    "default_domains",
    "domain_volume",
    "synthetic_training_cases",
    "write_domain_cases",
    "write_multi_domain_cases",
    "write_scaled_paired_cases",
    "write_single_domain_cases",
    "write_unpaired_cases",
]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
