"""Where a received series came from, so that a DICOM node breaks forwarding loops.

Nodes that forward to each other pass series round: node A translates a series and
forwards its output to node B, whose output of it comes back to A. A never translates
again what derives from its own work, at any depth, so such a loop ends after one round
(:func:`loop_reason`). A received series is ``skipped`` when

- it is a derived series this node wrote (its Series Instance UID is among those the
  node remembers in ``.medi2i-translated/derived/``,
  :meth:`medi2i.dicom.node.history.SeriesHistory.produced`: checked before the series is
  read, :data:`OWN_OUTPUT`);
- the series it was derived from (its Related Series Sequence) is one of them: another
  node translated this node's output and sent the result back;
- medi2i derived it, or any series it derives from, with this node's method: the
  Manufacturer's Model Name of a series medi2i derived names its method, and its
  Contributing Equipment Sequence every earlier medi2i derivation at any depth
  (:func:`medi2i.dicom.writing.derived_header.medi2i_derivations`; the
  de-identification profile keeps both, while it replaces the UIDs the first two
  checks go by). Applying one translation twice to one series is never wanted, so a
  ring of nodes ends once the series comes round to a method it already went through;
- medi2i derived it more than :data:`MAX_DERIVATIONS` times: a backstop against a long
  ring of nodes that each run another method.

A chain of other methods stays translated (a node of one method feeding a node of
another). The translator keeps the received instances of a series skipped for these
reasons (:mod:`medi2i.dicom.node.translation`): they may be another node's only output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MAX_DERIVATIONS = 8
"""A series medi2i derived more often than this is not translated again."""

LOOP_QUESTION = "does a node this one forwards to forward back to it?"

OWN_OUTPUT = (
    "a derived series this node wrote (sent back to it: does --forward, or a peer it "
    "forwards to, route back to this node?); the node never translates its own output"
)


@dataclass(frozen=True)
class Lineage:
    """What a series' header says about where it came from.

    Attributes:
        methods: The method ids of the medi2i derivations that made it, newest first
            (its own first); ``()`` for a series medi2i did not derive.
        sources: The Series Instance UIDs its Related Series Sequence names (the series
            it was derived from).
    """

    methods: tuple[str, ...] = ()
    sources: tuple[str, ...] = ()


def read_lineage(path: Path) -> Lineage:
    """The lineage of the series whose image ``path`` is (from its header only); an
    empty one for a file that cannot be read (the scan read it, so nothing to go by)."""
    import pydicom

    from medi2i.dicom.writing.derived_header import medi2i_derivations

    try:
        header = pydicom.dcmread(
            path,
            stop_before_pixels=True,
            specific_tags=[
                "Manufacturer",
                "ManufacturerModelName",
                "ContributingEquipmentSequence",
                "RelatedSeriesSequence",
            ],
        )
        sources = tuple(
            uid
            for item in (header.get("RelatedSeriesSequence") or [])
            if (uid := str(item.get("SeriesInstanceUID", "") or "").strip())
        )
        return Lineage(methods=medi2i_derivations(header), sources=sources)
    except Exception:  # a file the scan read but pydicom cannot: no marker to go by
        return Lineage()


def loop_reason(lineage: Lineage, method_id: str, produced: Callable[[str], bool]) -> str | None:
    """Why a series of ``lineage`` is not translated by a node of ``method_id`` that
    wrote the series ``produced`` says it did (see the module docstring), or ``None``."""
    method = method_id[:64]  # as a Manufacturer's Model Name holds it
    if any(produced(uid) for uid in lineage.sources):
        made = f" with {lineage.methods[0]!r}" if lineage.methods else ""
        return (
            f"a series derived{made} from a derived series this node wrote: its output "
            f"came back through another node; {LOOP_QUESTION} The node never translates "
            "its own output again, however derived"
        )
    if lineage.methods[:1] == (method,):
        return (
            f"a series medi2i derived with {method!r}, this node's method (Manufacturer "
            "medi2i, Manufacturer's Model Name the method): the same translation is never "
            f"applied twice; {LOOP_QUESTION} A chain of other methods is translated"
        )
    if method in lineage.methods:
        return (
            f"a series medi2i derived with {_chain(lineage)}, which went through this "
            f"node's method {method!r} already (its Contributing Equipment Sequence lists "
            "the earlier derivations): the same translation is never applied twice to one "
            f"series; {LOOP_QUESTION} A chain of other methods is translated"
        )
    if len(lineage.methods) > MAX_DERIVATIONS:
        return (
            f"a series medi2i derived {len(lineage.methods)} times already "
            f"({_chain(lineage)}); the node translates no series derived more than "
            f"{MAX_DERIVATIONS} times: do nodes forward to each other in a ring?"
        )
    return None


def _chain(lineage: Lineage) -> str:
    """The methods of ``lineage`` oldest first: ``'a', then 'b'``."""
    return ", then ".join(repr(method) for method in reversed(lineage.methods))
