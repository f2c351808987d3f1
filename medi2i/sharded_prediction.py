"""Predicting many volumes: this process's share of the jobs, one engine for all of them,
and resuming what an earlier run finished.

Every batch prediction goes through :func:`predict_share`: ``medi2i batch``
(:func:`medi2i.batch.run_batch`, a tree of DICOM studies with a manifest) and
:func:`predict_sharded` (volume files and their outputs, for a script that
``torchrun`` starts once per process).
The caller says what one job is, how to run it and when it needs no running;
:func:`predict_share`

* takes this process's share of the jobs: with ``shard=(rank, world_size)`` every
  ``world_size``-th job from ``rank`` on (:func:`medi2i.training.distributed.shard`),
  so the shares of all ranks are disjoint and together hold every job once. Under
  ``torchrun`` the rank and world size come from its environment variables
  (:func:`shard_from_environment`); ranks need no process group and never talk to
  each other;
* asks the caller about each job first (``skip``): one finished by an earlier run, or
  with nothing to predict, gives its record without running;
* runs every other job with one :class:`~medi2i.engine.SlidingWindowEngine`, made
  before the first job that runs, on this process's device (under ``torchrun`` with
  several processes, ``auto`` or ``cuda`` means the GPU of the local rank). The engine
  is kept for all jobs, so what it learns on one volume (the smaller batch of windows
  that fits after the device ran out of memory) holds for the next ones. A device
  that cannot be used stops the run there, since no job could succeed on it;
* shows a progress bar over the jobs when asked.

Example:
    >>> from medi2i.sharded_prediction import predict_sharded
    >>> jobs = [(Path("a.nii.gz"), Path("out/a.nii.gz")), (Path("b.nii.gz"), Path("out/b.nii.gz"))]
    >>> report = predict_sharded(jobs, model="run/model")  # doctest: +SKIP
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from medi2i.errors import Medi2iError, OptionsError

if TYPE_CHECKING:
    from medi2i.engine import SlidingWindowEngine
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings

J = TypeVar("J")
R = TypeVar("R")
_logger = logging.getLogger(__name__)


def shard_from_environment(environ: Mapping[str, str] | None = None) -> tuple[int, int] | None:
    """``(RANK, WORLD_SIZE)`` when ``torchrun`` started several processes, else ``None``.

    Args:
        environ: Environment variables; ``os.environ`` when ``None``.

    Raises:
        Medi2iError: The variables are present but inconsistent.
    """
    from medi2i.training.distributed import context_from_environment

    context = context_from_environment(environ)
    return (context.rank, context.world_size) if context.enabled else None


def rank_share(jobs: Sequence[J], shard: tuple[int, int] | None) -> list[J]:
    """The jobs of rank ``shard[0]`` among ``shard[1]`` processes; all of them for ``None``.

    Raises:
        OptionsError: ``shard`` is not a rank in its world.
    """
    from medi2i.training.distributed import shard as every_nth

    if shard is None:
        return list(jobs)
    rank, world = shard
    if world < 1 or not 0 <= rank < world:
        raise OptionsError(f"invalid shard {shard}: need 0 <= rank < world_size")
    return every_nth(jobs, rank=rank, world_size=world)


def rank_engine(settings: InferenceSettings) -> SlidingWindowEngine:
    """One engine on this process's device, for every volume this process predicts.

    Under ``torchrun`` with several processes, ``device`` ``"auto"`` (or a bare
    ``"cuda"``) is the GPU of the local rank
    (:func:`medi2i.training.distributed.process_device`); the engine's settings name
    the device actually used.

    Raises:
        DeviceError: The device is not available.
        Medi2iError: The ``torchrun`` environment variables are inconsistent.
    """
    from medi2i.engine import SlidingWindowEngine
    from medi2i.training.distributed import context_from_environment, process_device

    device = process_device(settings.device, context_from_environment())
    return SlidingWindowEngine(settings=settings.model_copy(update={"device": str(device)}))


def predict_share(
    jobs: Sequence[J],
    run: Callable[[J, SlidingWindowEngine], R],
    *,
    settings: InferenceSettings,
    shard: tuple[int, int] | None = None,
    skip: Callable[[J], R | None] | None = None,
    label: Callable[[J], str] = str,
    progress: bool = False,
    noun: str = "jobs",
) -> list[R]:
    """Run this process's share of ``jobs`` with one engine; see the module docstring.

    Args:
        jobs: Every job of the batch, in the same order in every process.
        run: Predicts one job with the engine and returns its record; a failure of one
            job that should not stop the others is the caller's to catch and record.
        settings: Settings of the engine (made by :func:`rank_engine`).
        shard: ``(rank, world_size)``: run only this rank's share; all jobs when ``None``.
        skip: The record of a job that needs no running (finished by an earlier run,
            nothing to predict), or ``None`` to run it.
        label: A job's name on the progress bar.
        progress: Show a progress bar over the jobs.
        noun: What the bar counts (``"studies"``).

    Returns:
        The record of each job of this rank's share, in order.

    Raises:
        OptionsError: ``shard`` is not a rank in its world.
        DeviceError: The device is not available (raised before the first job runs).
    """
    mine = rank_share(jobs, shard)
    engine: SlidingWindowEngine | None = None
    records: list[R] = []
    with _progress(len(mine), enabled=progress, noun=noun) as advance:
        for job in mine:
            record = skip(job) if skip is not None else None
            if record is None:
                engine = engine if engine is not None else rank_engine(settings)
                record = run(job, engine)
            records.append(record)
            advance(label(job))
    return records


@dataclass(frozen=True)
class ShardReport:
    """What one rank did in :func:`predict_sharded`.

    Attributes:
        rank: The rank.
        written: Outputs this rank wrote.
        skipped: Outputs that existed already and were left alone.
        failed: Inputs that could not be predicted, with the reason.
    """

    rank: int
    written: tuple[Path, ...]
    skipped: tuple[Path, ...]
    failed: tuple[tuple[Path, str], ...]


@dataclass(frozen=True)
class _Outcome:
    """What became of one ``(input, output)`` job of :func:`predict_sharded`."""

    path: Path
    written: bool = False
    error: str | None = None


def predict_sharded(
    jobs: Sequence[tuple[Path, Path]],
    *,
    model: str | Path | None = None,
    method: str | None = None,
    options: Mapping[str, object] | None = None,
    settings: InferenceSettings | None = None,
    registry: Registry | None = None,
    overwrite: bool = False,
) -> ShardReport:
    """Predict this rank's share of ``(input, output)`` pairs with :func:`medi2i.predict`.

    Run the same call in every process started by ``torchrun``; each predicts the jobs
    :func:`medi2i.training.distributed.shard` gives it (rank and world size from the
    environment), on its own GPU under ``device: auto``, all with one engine (see
    :func:`predict_share`). A failing input is logged and reported, and the others go
    on; rerunning skips finished outputs.

    Args:
        jobs: Input volume (file or DICOM folder) and output path of every job, in the
            same order in every process.
        model: A trained-model folder or zip.
        method: Or the id of a method that needs no training.
        options: Options of ``method``.
        settings: Sliding-window settings; ``device`` ``"auto"`` means the rank's GPU.
        registry: Plugins to use; the installed ones by default.
        overwrite: Predict even when an output exists.

    Returns:
        What this rank wrote, skipped and failed on.

    Raises:
        DeviceError: The device is not available.
        Medi2iError: The ``torchrun`` environment variables are inconsistent.
    """
    from medi2i.prediction import predict
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings
    from medi2i.training.distributed import context_from_environment

    context = context_from_environment()
    registry = registry if registry is not None else Registry()

    def finished(job: tuple[Path, Path]) -> _Outcome | None:
        output = Path(job[1])
        return _Outcome(output) if output.exists() and not overwrite else None

    def run(job: tuple[Path, Path], engine: SlidingWindowEngine) -> _Outcome:
        source, output = job
        try:
            written = predict(
                source,
                output,
                model=model,
                method=method,
                options=options,
                settings=engine.settings,  # the rank's device, in the provenance too
                registry=registry,
                overwrite=overwrite,
                engine=engine,
            )
        except Medi2iError as exc:
            _logger.error("rank %d: %s failed: %s", context.rank, source, exc)
            return _Outcome(Path(source), error=str(exc))
        return _Outcome(written, written=True)

    outcomes = predict_share(
        jobs,
        run,
        settings=settings or InferenceSettings(),
        shard=(context.rank, context.world_size),
        skip=finished,
    )
    return ShardReport(
        context.rank,
        written=tuple(o.path for o in outcomes if o.written),
        skipped=tuple(o.path for o in outcomes if not o.written and o.error is None),
        failed=tuple((o.path, o.error) for o in outcomes if o.error is not None),
    )


@contextmanager
def _progress(total: int, *, enabled: bool, noun: str) -> Iterator[Callable[[str], None]]:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn(noun),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, disable=not enabled) as bar:
        task = bar.add_task("", total=total)
        yield lambda key: bar.update(task, advance=1, description=key)
