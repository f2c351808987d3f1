"""Which presentation contexts a DICOM node accepts, and its line about an association
that could send nothing.

A sender proposes, per SOP Class, the transfer syntaxes it can send; accepting one the
node cannot decode (an MR series in MPEG-2, say) only moves the failure to after the
whole series was sent, as a ``failed`` line the sender never sees. So for image SOP
Classes (those whose name ends in "Image Storage"; not the video ones) the node accepts
only what its reader decodes (:func:`readable_transfer_syntaxes`: the uncompressed and
deflated ones, and each compressed one an installed pydicom pixel data handler
decodes: RLE, JPEG baseline, extended and lossless, JPEG-LS, JPEG 2000, ... as
installed), and the sender gets an early per-context rejection ("transfer syntax not
supported") for the rest.

Every other storage SOP Class (RT Dose, RT Structure Set, Encapsulated PDF, structured
reports, presentation states, video) is accepted in any transfer syntax, as before: the
node never translates such a series (it records it ``skipped`` with the reason), and
refusing one would fail a whole study push at a sender that stops at its first refused
file (dcmtk's ``storescu`` does by default).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

NATIVE_TRANSFER_SYNTAXES = (
    "1.2.840.10008.1.2",  # Implicit VR Little Endian
    "1.2.840.10008.1.2.1",  # Explicit VR Little Endian
    "1.2.840.10008.1.2.1.99",  # Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.2",  # Explicit VR Big Endian (retired, still sent)
)
_SHOWN = 3


def readable_transfer_syntaxes() -> tuple[str, ...]:
    """The transfer syntaxes whose pixel data the node's reader decodes: the native ones
    and the compressed ones with an installed pydicom decoder."""
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.uid import UID, AllTransferSyntaxes

    found = list(NATIVE_TRANSFER_SYNTAXES)
    for uid in AllTransferSyntaxes:
        try:  # a syntax pydicom has no decoder for raises
            available = get_decoder(UID(uid)).is_available
        except (NotImplementedError, ValueError):
            available = False
        if available and str(uid) not in found:
            found.append(str(uid))
    return tuple(found)


def is_image_class(sop_class: str) -> bool:
    """Whether ``sop_class`` is an image storage SOP Class whose pixels the node reads
    (video ones are left out: never a volume)."""
    from pydicom.uid import UID

    name = UID(sop_class).name
    return name.endswith("Image Storage") and "Video" not in name


def storage_contexts() -> list[tuple[str, list[str]]]:
    """``(SOP Class UID, transfer syntaxes)`` for every storage SOP Class the node takes
    (see the module docstring)."""
    from pynetdicom import ALL_TRANSFER_SYNTAXES, AllStoragePresentationContexts

    readable = list(readable_transfer_syntaxes())
    every = list(dict.fromkeys([*readable, *map(str, ALL_TRANSFER_SYNTAXES)]))
    contexts = []
    for context in AllStoragePresentationContexts:
        sop_class = str(context.abstract_syntax)
        contexts.append((sop_class, readable if is_image_class(sop_class) else every))
    return contexts


def nothing_accepted(calling: str, address: str, rejected: Sequence[Any]) -> str:
    """The node's line for an association whose every presentation context was
    rejected: who called and, briefly, what it proposed."""
    proposed = [_proposal(context) for context in rejected]
    shown = "; ".join(proposed[:_SHOWN])
    more = f"; and {len(proposed) - _SHOWN} more" if len(proposed) > _SHOWN else ""
    return (
        f"an association from {calling or '?'} at {address} ended without sending anything: "
        f"the node rejected every presentation context it proposed ({shown}{more}); the node "
        "takes storage SOP Classes, images in uncompressed, deflated, RLE, JPEG, JPEG-LS or "
        "JPEG 2000 transfer syntaxes"
    )


def _proposal(context: Any) -> str:
    """``'MR Image Storage in MPEG2 Main Profile / Main Level'`` for a rejected context."""
    from pydicom.uid import UID

    sop_class = UID(str(context.abstract_syntax))
    syntaxes = [UID(str(uid)).name for uid in (context.transfer_syntax or [])]
    return f"{sop_class.name} in {' or '.join(syntaxes) or 'no transfer syntax'}"
