"""The log of a workflow run: ``logs/run.log`` of its run folder (:func:`run_logging`)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from medi2i.errors import Medi2iError

if TYPE_CHECKING:
    from medi2i.workflow.run_folder import Echo, RunFolder

Log = Callable[[str], None]


@contextmanager
def run_logging(run: RunFolder, echo: Echo | None, *, main: bool = True) -> Iterator[Log]:
    """Log lines to ``logs/run.log`` (and ``echo``); medi2i's logging goes there too.

    Outside rank 0 of a ``torchrun`` launch (``main`` false) lines go nowhere: rank 0
    writes and prints them once.
    """
    if not main:
        yield lambda message: None
        return
    handler = logging.FileHandler(run.logs / "run.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("medi2i")
    previous_level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    stage_logger = logging.getLogger("medi2i.workflow")

    def log(message: str) -> None:
        stage_logger.info(message)
        if echo is not None:
            echo(message)

    try:
        yield log
    except Medi2iError as exc:  # a refusal explained in its message
        stage_logger.error("stopped: %s", exc)
        raise
    except Exception as exc:  # a bug (often in a plugin's code): keep where it happened
        stage_logger.exception("stopped: %s: %s", type(exc).__name__, exc)
        raise
    except KeyboardInterrupt:
        stage_logger.error("stopped: interrupted (Ctrl-C, SIGINT or SIGTERM)")
        raise
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
        handler.close()
