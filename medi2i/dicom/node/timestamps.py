"""Wall-clock times at the start of the node's log lines.

An operator reading a long-running node's log (or a file it was redirected to) needs to
know when each line happened: every line :class:`~medi2i.dicom.node.dicom_node.DicomNode`
logs starts with the local time in ISO 8601 with its UTC offset, to the second
(``2025-01-31T14:03:12+01:00 series 1.2.3: ...``). The manifest keeps its own ``time``.
"""

from __future__ import annotations

import re
from datetime import datetime

_STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d) ")


def stamped(line: str, now: datetime | None = None) -> str:
    """``line`` after the local time of ``now`` (the current time when ``None``).

    Example:
        >>> from datetime import timezone
        >>> stamped("stopped", datetime(2025, 1, 31, 13, 3, 12, tzinfo=timezone.utc))
        '2025-01-31T13:03:12+00:00 stopped'
    """
    moment = (now or datetime.now()).astimezone()
    return f"{moment.isoformat(timespec='seconds')} {line}"


def unstamped(line: str) -> str:
    """``line`` without the time :func:`stamped` put at its start (as it is without one)."""
    return _STAMP.sub("", line, count=1)
