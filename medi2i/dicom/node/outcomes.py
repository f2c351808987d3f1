"""What translating one series came to: the record before it is written, and where the
derived series went (:class:`medi2i.dicom.node.translation.SeriesTranslator`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medi2i.dicom.node.records import SeriesRecord
    from medi2i.dicom.node.send import SendReport


@dataclass(frozen=True)
class Outcome:
    """What translating one series came to, before it is recorded.

    Attributes:
        record: The record (naming the source; scrubbed when written).
        keep_input: Keep the received instances (the output could not be written, or
            the series came back through forwarding).
        descriptions: Series Descriptions of the received files, hidden when
            de-identifying.
        partial: The received instances belong to a series translated before from
            other instances: the derived series made then is incomplete.
    """

    record: SeriesRecord
    keep_input: bool = False
    descriptions: tuple[str, ...] = ()
    partial: bool = False


@dataclass(frozen=True)
class Delivery:
    """Where a derived series went: ``outputs`` written, and the forward's report."""

    outputs: tuple[str, ...]
    report: SendReport | None = None
    error: str | None = None
