"""The record of a training run: JSON Lines history, TensorBoard events, a progress bar.

``<run>/logs/train.jsonl`` holds one JSON object per line::

    {"step": 20, "losses": {"l1": 0.12}, "lr": {"network": 0.001},
     "patches_per_s": 41.5, "elapsed_s": 9.8}
    {"step": 20, "validation": {"mae": 88.1, "psnr": 27.3}}

A GAN's records also hold ``"generated_spread"`` (see :mod:`medi2i.training.health`),
and a collapse adds ``{"step": 600, "health": "training collapsed at step 600: ..."}``.

On resume the lines after the checkpoint's step are dropped (they belong to steps that
are about to be run again), so the file always describes one uninterrupted run. Only
the main process (rank 0) writes.

A validation (a whole-volume prediction per case: often longer than many steps) is its
own phase (:meth:`RunLog.paused`): the step bar's rate and ETA and the records'
``patches_per_s`` leave its time out (``elapsed_s`` is wall time and keeps it), and on
a terminal a transient bar counts the validated cases.

Every line is strict JSON (RFC 8259): a NaN or infinite value, such as the loss of the
step where a run diverged, is written as ``null``.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from tqdm import tqdm

from medi2i.errors import OptionsError
from medi2i.io.atomic import atomic_path

if TYPE_CHECKING:
    from typing_extensions import Self

HISTORY = "train.jsonl"
TENSORBOARD = "tensorboard"


def _clock() -> float:
    """Seconds of the records' ``elapsed_s`` and ``patches_per_s`` (a test's fake clock
    replaces it)."""
    return time.perf_counter()


class _ScalarWriter(Protocol):
    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None: ...

    def close(self) -> None: ...


def require_tensorboard() -> Callable[..., Any]:
    """TensorBoard's ``SummaryWriter`` class, for ``training.tensorboard``.

    Raises:
        OptionsError: The ``tensorboard`` package is not installed.
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise OptionsError(
            "training.tensorboard is on but the tensorboard package is not installed; "
            "install it (pip install tensorboard) or set tensorboard: false"
        ) from None
    return SummaryWriter


def tensorboard_writer(folder: Path) -> _ScalarWriter:
    """A TensorBoard ``SummaryWriter`` writing to ``folder``.

    Raises:
        OptionsError: The ``tensorboard`` package is not installed.
    """
    writer: _ScalarWriter = require_tensorboard()(log_dir=str(folder))
    return writer


class RunLog:
    """Writes the history and TensorBoard events, and draws the progress bar.

    Args:
        folder: The run's ``logs`` folder.
        first_step: Steps already done (0 for a new run, the checkpoint's step on resume).
        total_steps: Steps the run will have done at the end.
        patches_per_step: Patches one step trains on, over all processes.
        tensorboard: Also write TensorBoard events.
        progress: Show a progress bar.
        main: Whether this process writes (rank 0); other processes only count.

    Attributes:
        history: Path of ``train.jsonl``.
        last_losses: Losses of the latest logged step (from the file on resume).
        last_validation: Metrics of the latest validation.
        health_findings: Training-health findings (collapses) of the run so far.
    """

    def __init__(
        self,
        folder: Path,
        *,
        first_step: int,
        total_steps: int,
        patches_per_step: int,
        tensorboard: bool,
        progress: bool,
        main: bool,
    ) -> None:
        self.history = folder / HISTORY
        self.main = main
        self.patches_per_step = patches_per_step
        self.last_losses: dict[str, float] = {}
        self.last_validation: dict[str, float] | None = None
        self.health_findings: list[str] = []
        self._writer = tensorboard_writer(folder / TENSORBOARD) if tensorboard and main else None
        if main:
            self._keep_history_until(first_step)
        self._stream = self.history.open("a", encoding="utf-8") if main else None
        self._bar = tqdm(
            total=total_steps,
            initial=first_step,
            unit="step",
            dynamic_ncols=True,
            disable=not (progress and main),
        )
        self._start = self._mark_time = _clock()
        self._mark_step = first_step

    @property
    def shows_progress(self) -> bool:
        """Whether the step bar is drawn (asked for, rank 0, and by default a terminal)."""
        return not self._bar.disable

    @contextmanager
    def paused(self, cases: int) -> Iterator[ValidationProgress]:
        """Validate ``cases`` cases in the block: its time is left out of the step bar's
        rate and ETA and of the next record's ``patches_per_s``; where the step bar is
        drawn, a transient bar counts the cases. Yields the validation's progress."""
        shown = not self._bar.disable  # a disabled tqdm keeps no clock
        started, bar_started = _clock(), self._bar._time() if shown else 0.0
        cases_bar = tqdm(
            total=cases,
            desc="validating",
            unit="case",
            leave=False,
            dynamic_ncols=True,
            disable=not shown,
        )
        try:
            yield ValidationProgress(shown=shown, case_done=lambda: cases_bar.update(1))
        finally:
            cases_bar.close()
            self._mark_time += _clock() - started
            if shown:  # tqdm's own clock, as its unpause() shifts it
                shift = self._bar._time() - bar_started
                self._bar.start_t += shift
                self._bar.last_print_t += shift

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def step_done(self) -> None:
        """Advance the progress bar by one step."""
        self._bar.update(1)

    def record(
        self,
        step: int,
        losses: Mapping[str, float],
        learning_rates: Mapping[str, float],
        spreads: Mapping[str, float] | None = None,
    ) -> None:
        """Log the losses of ``step`` with the throughput since the previous record
        (and the spread ratios of the generated batches the method watched)."""
        now = _clock()
        rate = (step - self._mark_step) * self.patches_per_step / max(now - self._mark_time, 1e-9)
        self._mark_step, self._mark_time = step, now
        self.last_losses = dict(losses)
        entry = {
            "step": step,
            "losses": dict(losses),
            "lr": dict(learning_rates),
            "patches_per_s": rate,
            "elapsed_s": now - self._start,
        }
        if spreads:
            entry["generated_spread"] = dict(spreads)
        self._write(entry)
        self._bar.set_postfix({k: f"{v:.4g}" for k, v in losses.items()}, refresh=False)
        if self._writer is not None:
            for name, value in losses.items():
                self._writer.add_scalar(f"loss/{name}", value, step)
            self._writer.add_scalar("throughput/patches_per_s", rate, step)

    def validation(self, step: int, metrics: Mapping[str, float]) -> None:
        """Log validation metrics computed after ``step``."""
        self.last_validation = dict(metrics)
        self._write({"step": step, "validation": dict(metrics)})
        if self._writer is not None:
            for name, value in metrics.items():
                self._writer.add_scalar(f"validation/{name}", value, step)

    def note(self, message: str) -> None:
        """Say ``message`` (:func:`training_note`); only the main process does."""
        if self.main:
            training_note(message)

    def health(self, step: int, finding: str) -> None:
        """Log a training-health finding (a collapse) at ``step``, in the history and as
        a warning."""
        import logging

        self.health_findings.append(finding)
        self._write({"step": step, "health": finding})
        if self.main:
            logging.getLogger("medi2i.training").warning("%s", finding)
            self._bar.write(f"warning: {finding}")

    def close(self) -> None:
        """Flush and close the files and the progress bar."""
        self._bar.close()
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _write(self, entry: Mapping[str, object]) -> None:
        if self._stream is not None:
            self._stream.write(json_line(entry))
            self._stream.flush()

    def _keep_history_until(self, step: int) -> None:
        self.history.parent.mkdir(parents=True, exist_ok=True)
        kept = [entry for entry in read_history(self.history) if int(entry["step"]) <= step]
        for entry in kept:
            if "losses" in entry:
                self.last_losses = dict(entry["losses"])
            if "validation" in entry:
                self.last_validation = dict(entry["validation"])
            if "health" in entry:
                self.health_findings.append(str(entry["health"]))
        with atomic_path(self.history) as tmp:
            tmp.write_text("".join(json_line(entry) for entry in kept), encoding="utf-8")


class ValidationProgress:
    """The progress of a validation phase.

    Attributes:
        shown: Whether bars are drawn (the training's step bar is): the sliding window
            may then show its own transient bar over the windows.
        case_done: Count one validated case.
    """

    def __init__(self, *, shown: bool, case_done: Callable[[], None]) -> None:
        self.shown = shown
        self.case_done = case_done


UNSHOWN = ValidationProgress(shown=False, case_done=lambda: None)
"""The progress of a validation outside a training run: nothing is drawn."""


def training_note(message: str) -> None:
    """Say ``message`` (one line) in the run's log (``logs/run.log`` of a workflow run)
    and on the console, above a progress bar if one is drawn."""
    import logging

    logging.getLogger("medi2i.training").info("%s", message)
    tqdm.write(message)


def json_line(entry: Mapping[str, object]) -> str:
    """``entry`` as one line of strict JSON, NaN and infinite numbers as ``null``."""
    return json.dumps(finite_or_null(entry), allow_nan=False) + "\n"


def finite_or_null(value: object) -> object:
    """``value`` with every NaN or infinite float (in nested mappings and lists) replaced
    by ``None``."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def read_history(path: Path) -> list[dict[str, Any]]:
    """The records of a ``train.jsonl`` file (none when it does not exist).

    A last line cut short by a crash is ignored.
    """
    if not path.is_file():
        return []
    entries = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return entries
