"""Cases: what a dataset is made of, whatever layout it came from.

A case is one subject's volumes by role. Paired data uses the roles ``source``,
``target`` and optionally ``mask``; unpaired and multi-domain data use ``image`` (and
optionally ``mask``) with the case's ``domain``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from medi2i.method import DataKind, DomainSpec

SOURCE, TARGET, MASK, IMAGE = "source", "target", "mask", "image"


@dataclass(frozen=True)
class Case:
    """One subject's volumes.

    Attributes:
        id: Case identifier (e.g. the SynthRAD case folder name).
        images: Volume file per role (``source``, ``target``, ``mask``, ``image``).
        domain: Domain label for unpaired (``"a"``/``"b"``) or multi-domain data.
        condition: The predict-time condition this case is translated under when it
            validates or evaluates a conditioned method (e.g. ``target_domain`` and
            ``source_domain`` of one pair of scanners), as ``(key, value)`` pairs; it
            overrides the workflow's ``method.condition`` key by key. Empty: the
            workflow's condition alone.
    """

    id: str
    images: Mapping[str, Path]
    domain: str | None = None
    condition: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class CaseSet:
    """The cases of one split, and the kind of data they form.

    Attributes:
        kind: Paired, unpaired or multi-domain (or single-domain).
        cases: The cases, in a stable order.
        domains: Domain labels in label order (index = integer label in batches).
        domain_specs: What each domain's images are (modality, units), in the same
            order; names only (modality ``"any"``) unless the data says.
    """

    kind: DataKind
    cases: tuple[Case, ...]
    domains: tuple[str, ...] = field(default=())
    domain_specs: tuple[DomainSpec, ...] = field(default=())

    def specs(self) -> tuple[DomainSpec, ...]:
        """:attr:`domain_specs`, or a spec of modality ``"any"`` per domain name."""
        if self.domain_specs:
            return self.domain_specs
        return tuple(DomainSpec(name=name) for name in self.domains)

    def domain_index(self, domain: str) -> int:
        """Integer label of ``domain`` in multi-domain batches."""
        return self.domains.index(domain)


def case_condition(
    base: Mapping[str, object] | None,
    own: Mapping[str, object] | Iterable[tuple[str, object]],
) -> dict[str, object] | None:
    """The condition a case is predicted under: ``base`` (the workflow's
    ``method.condition``) with the case's own condition ``own`` (:attr:`Case.condition`)
    on top, key by key; ``None`` when both are empty.

    Example:
        >>> case_condition({"target_domain": "A"}, (("target_domain", "C"), ("source_domain", "B")))
        {'target_domain': 'C', 'source_domain': 'B'}
    """
    merged = {**(base or {}), **dict(own)}
    return merged or None
