"""Scale-out under ``torchrun``: DDP training, and the rank helpers of sharded prediction.

medi2i has no launcher of its own. Start the same command once per process with
PyTorch's ``torchrun`` (one machine or several); each process finds its rank in the
environment variables torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``), joins
the process group (NCCL on CUDA, Gloo on the CPU), trains on its own batches with
gradients averaged by DDP, and only rank 0 writes logs, checkpoints and the model.

Example::

    torchrun --nproc_per_node 4 -m medi2i workflow run train.yaml

Batch prediction needs no communication: every rank predicts its share of the jobs
(:func:`shard`) with :mod:`medi2i.sharded_prediction`, which finds its rank and
device with :func:`context_from_environment` and :func:`process_device`.
"""

from __future__ import annotations

import atexit
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import torch
import torch.distributed as dist

from medi2i.engine import resolve_device
from medi2i.errors import DeviceError, Medi2iError, TrainingError

T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place among the processes of one run.

    Attributes:
        rank: Global rank, 0 to ``world_size - 1``.
        world_size: Number of processes (1 when not launched by ``torchrun``).
        local_rank: Rank on this machine; picks the GPU under ``device: auto``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this process writes logs, checkpoints and models (rank 0)."""
        return self.rank == 0

    def barrier(self) -> None:
        """Wait for every process (a no-op without a process group)."""
        if self.enabled and dist.is_available() and dist.is_initialized():
            dist.barrier()


@dataclass(frozen=True)
class TrainingScale:
    """How many processes a run trained in and how many patches one step saw.

    A step of every process samples its own ``batch_size`` patches and DDP averages
    the gradients, so one step trains on ``world_size`` times the patches of a single
    process: the same workflow under ``torchrun --nproc_per_node 2`` makes another
    model than without torchrun, and only the same number of processes reproduces it.

    Attributes:
        world_size: Number of processes (1 without ``torchrun``).
        batch_size: Patches per micro-batch of one process (``training.batch_size``).
        accumulation_steps: Micro-batches per step (``training.accumulation_steps``).

    Example:
        >>> TrainingScale(world_size=2, batch_size=4, accumulation_steps=1).patches_per_step
        8
    """

    world_size: int
    batch_size: int
    accumulation_steps: int = 1

    @property
    def patches_per_step(self) -> int:
        """Patches one optimizer step trains on, over all processes."""
        return self.world_size * self.batch_size * self.accumulation_steps

    def record(self) -> dict[str, int]:
        """The facts as JSON values, for the model folder's and the run's records."""
        return {
            "world_size": self.world_size,
            "batch_size": self.batch_size,
            "accumulation_steps": self.accumulation_steps,
            "patches_per_step": self.patches_per_step,
        }

    def note(self) -> str | None:
        """The log's line about a run in several processes (``None`` for one process):
        ``training on 2 processes (torchrun): 2 × batch_size 4 = 8 patches per step``."""
        if self.world_size == 1:
            return None
        factors = f"{self.world_size} × batch_size {self.batch_size}"
        if self.accumulation_steps > 1:
            factors += f" × accumulation_steps {self.accumulation_steps}"
        return (
            f"training on {self.world_size} processes (torchrun): {factors} = "
            f"{self.patches_per_step} patches per step; the model depends on the number of "
            f"processes, so reproduce it with {self.world_size} processes (torchrun "
            f"--nproc_per_node {self.world_size} on one machine)"
        )


def context_from_environment(environ: Mapping[str, str] | None = None) -> DistributedContext:
    """The rank and world size that ``torchrun`` put in the environment.

    Args:
        environ: Environment variables; ``os.environ`` when ``None``.

    Raises:
        Medi2iError: The variables are present but inconsistent.
    """
    env = os.environ if environ is None else environ
    try:
        world_size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
    except ValueError as exc:
        raise Medi2iError(
            f"RANK, WORLD_SIZE and LOCAL_RANK must be integers ({exc}); launch with torchrun"
        ) from None
    if world_size < 1 or not 0 <= rank < world_size:
        raise Medi2iError(
            f"rank {rank} is not in a world of {world_size} processes; launch with torchrun"
        )
    return DistributedContext(rank=rank, world_size=world_size, local_rank=local_rank)


def process_device(setting: str, context: DistributedContext) -> torch.device:
    """The device this process computes on.

    Args:
        setting: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``. Under ``auto`` (or a
            bare ``"cuda"``) with several processes, each process takes the GPU of its
            local rank.
        context: This process's rank.

    Raises:
        DeviceError: The device is not available.
    """
    device = resolve_device(setting)
    if device.type != "cuda":
        return device
    if device.index is None:
        index = context.local_rank if context.enabled else 0
        if index >= torch.cuda.device_count():
            raise DeviceError(
                f"local rank {index} has no GPU of its own ({torch.cuda.device_count()} visible); "
                "start at most one process per GPU (torchrun --nproc_per_node)"
            )
        device = torch.device("cuda", index)
    torch.cuda.set_device(device)
    return device


def join_process_group(*, device: torch.device) -> DistributedContext:
    """Join the process group when launched by torchrun with several processes.

    The group (NCCL for CUDA devices, Gloo otherwise) is created once per process and
    kept until the process exits: creating it again after destroying it can hang in
    the rendezvous, so later calls (a second training in the same script, sharded
    prediction) reuse it.

    Args:
        device: The device this process computes on.

    Returns:
        This process's rank and world size.
    """
    context = context_from_environment()
    if context.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        atexit.register(_leave_process_group)
    return context


def _leave_process_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def average_across_processes(
    values: Mapping[str, float], context: DistributedContext
) -> dict[str, float]:
    """The mean of each value over all processes (the values themselves for one process).

    Every process must call it with the same keys in the same order.
    """
    if not context.enabled or not values:
        return dict(values)
    stacked = torch.tensor(list(values.values()), dtype=torch.float64)
    if dist.get_backend() == "nccl":
        stacked = stacked.cuda()
    dist.all_reduce(stacked)
    means = (stacked / context.world_size).tolist()
    return dict(zip(values, means, strict=True))


def same_in_every_process(value: int, context: DistributedContext) -> bool:
    """Whether every process holds the same ``value`` (always true for one process).

    Every process must call it at the same point.
    """
    if not context.enabled:
        return True
    extremes = torch.tensor([value, -value], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        extremes = extremes.cuda()
    dist.all_reduce(extremes, op=dist.ReduceOp.MAX)
    return int(extremes[0]) == -int(extremes[1])


def in_any_process(flag: bool, context: DistributedContext) -> bool:
    """Whether ``flag`` is true in at least one process (``flag`` itself for one process).

    Every process must call it at the same point.
    """
    if not context.enabled:
        return flag
    value = torch.tensor([int(flag)], dtype=torch.int64)
    if dist.get_backend() == "nccl":
        value = value.cuda()
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


_TRANSPORT_FAILURES = (
    "gloo/transport",
    "Connection reset by peer",
    "Connection closed by peer",
    "NCCL error",
    "NCCL communicator",
)
"""Words of the RuntimeErrors that Gloo and NCCL raise when a peer process is gone."""


def collective_failure(exc: BaseException) -> str | None:
    """The first line of ``exc`` when it is a failed collective (all-reduce, barrier,
    DDP's gradient exchange) of torch.distributed, else ``None``."""
    if not isinstance(exc, RuntimeError):
        return None
    text = str(exc)
    if isinstance(exc, dist.DistError) or any(word in text for word in _TRANSPORT_FAILURES):
        first = (text.strip().splitlines() or [type(exc).__name__])[0]
        # Gloo adds a paragraph of advice ("This is typically caused by ..."); keep the cause
        return first.split(". ", 1)[0].rstrip(".")
    return None


@contextmanager
def peers_watched(run_dir: Path, *, kept: Callable[[], str]) -> Iterator[None]:
    """Report a collective that fails inside the block, because another process of the
    run stopped (killed, out of memory, its node lost), as one :class:`TrainingError`.

    Args:
        run_dir: The run folder, named in the message with how to resume.
        kept: What the run folder holds to resume from, asked when the failure comes.

    Raises:
        TrainingError: A torch.distributed collective failed.
    """
    try:
        yield
    except RuntimeError as exc:
        reason = collective_failure(exc)
        if reason is None:
            raise
        raise TrainingError(
            f"another process of the run stopped, so training stopped too (a collective "
            f"operation between the processes failed: {reason}). Find why in that "
            f"process's output, then start every process again with --run-dir {run_dir} "
            f"to resume ({kept()})"
        ) from exc


def shard(items: Sequence[T], *, rank: int, world_size: int) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th item from ``rank`` on.

    The shares of all ranks are disjoint and together hold every item once; they
    differ in length by at most one.

    Example:
        >>> shard(["a", "b", "c", "d", "e"], rank=1, world_size=2)
        ['b', 'd']
    """
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size} processes")
    return list(items[rank::world_size])
