"""Training volumes from a :class:`~medi2i.data.cases.CaseSet`, ready to cut patches from.

Each case is read once, put on the method's working grid (its spatial plan, as at
predict time) and intensity-preprocessed by the method on the *whole* volume, so that
statistics such as a z-score or percentiles come from the volume and never from a
patch. Paired targets go through the method's ``preprocess_target`` (e.g. HU to the
network's range; the inverse of its ``postprocess``).

Foreground, where most patches are centred, is ``mask > 0`` when a case has a mask (on
the input's grid, or on a super-resolution pair's finer target: see
:mod:`medi2i.training.masks`) and otherwise the raw input above a threshold
(``foreground_threshold``, by default the volume's mean), found before intensity
preprocessing so that the threshold is in the units a user knows (HU for CT).

Design note: the cache is a plain list rather than MONAI's ``CacheDataset``: batches
are a pure function of (seed, step, rank) (see :mod:`medi2i.training.patches`), so no
dataset-held random state or epoch structure is wanted, and a list is shared by
DataLoader workers for free after ``fork``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from medi2i.data.cases import IMAGE, MASK, SOURCE, TARGET, Case, CaseSet
from medi2i.errors import GeometryError, InputError, OptionsError
from medi2i.method import DataKind

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.method import Method

Batch = dict[str, torch.Tensor]
"""Patches stacked along dimension 0, by key (see :meth:`medi2i.Method.training_step`)."""

TRAINABLE_KINDS = (
    DataKind.PAIRED,
    DataKind.UNPAIRED,
    DataKind.MULTI_DOMAIN,
    DataKind.SINGLE_DOMAIN,
)
_MAX_FOREGROUND_CANDIDATES = 1 << 20
"""Foreground voxels remembered per volume: enough to centre patches anywhere in it,
few enough (4 MB) to keep many large volumes in memory."""


@dataclass(frozen=True)
class TrainingVolume:
    """One case on the working grid, preprocessed, as float32 CPU tensors.

    Attributes:
        case_id: The case's id.
        input: The network input ``(C, X, Y, Z)``: the source of paired data, the
            image otherwise.
        target: The paired target ``(C', X·f, Y·f, Z·f)`` for integer factors ``f``
            (1 unless the method changes resolution), or ``None``.
        foreground: Flat indices into the input's spatial grid of foreground voxels
            (empty when there is none).
        spread: Standard deviation of ``input`` (intensity augmentation's unit).
        domain: Integer domain label (0 for paired and single-domain data).
    """

    case_id: str
    input: torch.Tensor
    target: torch.Tensor | None
    foreground: np.ndarray
    spread: float
    domain: int

    @property
    def target_scale(self) -> tuple[int, int, int]:
        """Target voxels per input voxel along each axis."""
        if self.target is None:
            return (1, 1, 1)
        factors = [t // i for t, i in zip(self.target.shape[1:], self.input.shape[1:], strict=True)]
        return (factors[0], factors[1], factors[2])


class VolumeStore:
    """The training volumes of a case set, kept in memory or loaded on every use.

    Args:
        count: Number of volumes.
        load: Loads volume ``i``.
        keep: Load everything now and keep it (``cache: memory``); otherwise load on
            every access (``cache: none``).
    """

    def __init__(self, count: int, load: Callable[[int], TrainingVolume], *, keep: bool) -> None:
        self._count = count
        self._load = load
        self._kept = [load(index) for index in range(count)] if keep else None

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, index: int) -> TrainingVolume:
        if self._kept is not None:
            return self._kept[index]
        return self._load(index)


def domain_labels(data: CaseSet) -> tuple[str, ...]:
    """The domain names of unpaired or multi-domain data, in label order.

    ``data.domains`` when given, otherwise the cases' domains in sorted order.

    Raises:
        InputError: The number of domains does not fit the data kind, or a case's
            domain is not one of them.
    """
    if data.kind not in (DataKind.UNPAIRED, DataKind.MULTI_DOMAIN):
        return ()
    names = data.domains or tuple(sorted({c.domain for c in data.cases if c.domain is not None}))
    unpaired = data.kind is DataKind.UNPAIRED
    if (len(names) != 2) if unpaired else (len(names) < 2):
        expected = "exactly two" if unpaired else "two or more"
        raise InputError(f"{data.kind.value} data needs {expected} domains, found {list(names)}")
    for case in data.cases:
        if case.domain not in names:
            where = next(iter(case.images.values()), None)
            raise InputError(
                f"case {case.id!r} ({where}) has domain {case.domain!r}, not one of "
                f"{list(names)}; give every case one of the data set's domains (its folder "
                "in data.layout, or its domain column in the CSV manifest)"
            )
    return names


def check_trainable(method: Method, data: CaseSet) -> None:
    """Fail early when ``data`` cannot train ``method``.

    Raises:
        OptionsError: The method is not trained on data, or on another kind of data,
            or there are no cases.
    """
    if method.data not in TRAINABLE_KINDS:
        raise OptionsError(f"method {method.id!r} has nothing to train (its data kind is none)")
    if data.kind is not method.data:
        raise OptionsError(
            f"method {method.id!r} learns from {method.data.value} data but the training cases "
            f"are {data.kind.value}; set the data kind to {method.data.value}"
        )
    if not data.cases:
        raise OptionsError("there are no training cases; check the data layout and split")


def check_unlabelled(method: Method, data: CaseSet, unlabelled: CaseSet | None) -> None:
    """Fail early when the run's unlabelled data does not fit ``method``.

    Raises:
        OptionsError: Unlabelled data is given to a method that does not learn from it
            (or with data that is not paired), or a method that needs it gets none.
    """
    wants = method.learns_from_unlabelled()
    given = unlabelled is not None and bool(unlabelled.cases)
    if given and not wants:
        raise OptionsError(
            f"method {method.id!r} (with these options) does not learn from unlabelled data; "
            "remove data.unlabelled_data"
        )
    if wants and not given:
        raise OptionsError(
            f"method {method.id!r} (with these options) learns from unlabelled target-domain "
            "inputs as well as its pairs; give them in data.unlabelled_data"
        )
    if given and data.kind is not DataKind.PAIRED:
        raise OptionsError(
            f"unlabelled data goes with paired training data, not {data.kind.value} data"
        )


class PaddingNotice:
    """Logs, once, that a training volume is smaller than the patch and is padded.

    One instance serves a whole run (its training and unlabelled volumes), so the
    notice names the first such case and is not repeated for every volume or every
    reload under ``cache: none``. DataLoader workers hold their own copy.
    """

    def __init__(self) -> None:
        self.given = False

    def padded(self, case_id: str, shape: Sequence[int], patch_size: tuple[int, int, int]) -> None:
        """Note that case ``case_id`` of ``shape`` voxels is padded to ``patch_size``."""
        if self.given:
            return
        self.given = True
        padded = tuple(max(p, int(n)) for p, n in zip(patch_size, shape, strict=True))
        logging.getLogger("medi2i.training").warning(
            "case %r: its %s voxels are smaller than the training patch %s along some "
            "axis, so it is padded to %s at its far end by repeating its edge voxels "
            "(patches of it hold that padding); other volumes smaller than the patch are "
            "padded the same way without another notice. Choose a training.patch_size no "
            "larger than the smallest volume to train on real voxels only",
            case_id,
            tuple(int(n) for n in shape),
            tuple(patch_size),
            padded,
        )


def load_training_volume(
    case: Case,
    *,
    method: Method,
    kind: DataKind,
    domain: int,
    patch_size: tuple[int, int, int],
    foreground_threshold: float | None,
    domain_name: str | None = None,
    notice: PaddingNotice | None = None,
) -> TrainingVolume:
    """Read, plan, preprocess and pad one case (see the module docstring).

    Unpaired and multi-domain images are preprocessed with their domain's name
    (``domain_name``), so that a method scales MR and CT each its own way.

    Volumes smaller than a patch are padded at their far end by edge replication,
    noted once in the log through ``notice`` (a new one when ``None``).

    Raises:
        InputError: A role the data kind needs is missing or unreadable.
        GeometryError: Source, target and mask do not share a grid (up to an integer
            resolution factor for the target; a target of the source's shape must lie on
            the source's grid, voxel for voxel; a mask lies on the source's grid, or on
            a finer target's: :func:`medi2i.training.masks.training_mask_grid`).
    """
    from medi2i.data.loading import require_on_source_grid

    input_role = SOURCE if kind is DataKind.PAIRED else IMAGE
    raw = _planned(case, input_role, method)
    planned_target = _planned(case, TARGET, method) if kind is DataKind.PAIRED else None
    mask = _planned_mask(case, method)
    image = _plain(method.preprocess(raw, domain=domain_name))
    target = None
    scale = (1, 1, 1)
    if planned_target is not None:
        if tuple(planned_target.shape[1:]) == tuple(raw.shape[1:]):
            # a target of another shape is a finer grid (super-resolution): scaled below
            require_on_source_grid(planned_target, raw, case_id=case.id, role=TARGET)
        target = _plain(method.preprocess_target(planned_target))
        scale = _target_scale(case, image, target)
        if scale != (1, 1, 1):
            _require_refinement(case, planned_target, raw, scale)
    selected = _selection(case, raw, mask, planned_target, scale, foreground_threshold)
    _require_padding_fits(case, image, target, patch_size, scale)
    if any(p > n for p, n in zip(patch_size, image.shape[1:], strict=True)):
        (notice or PaddingNotice()).padded(case.id, image.shape[1:], patch_size)
    image = _padded(image, patch_size)
    selected = _padded_selection(selected, image.shape[1:])
    if target is not None:
        target = _padded(target, _scaled(patch_size, scale))
    return TrainingVolume(
        case_id=case.id,
        input=image,
        target=target,
        foreground=_candidates(selected),
        spread=float(image.std()) or 1.0,
        domain=domain,
    )


def _planned(case: Case, role: str, method: Method) -> MetaTensor:
    from medi2i.data.loading import planned
    from medi2i.io import read_volume
    from medi2i.voxel_checks import require_finite_training_volume

    path = case.images.get(role)
    if path is None:
        raise InputError(
            f"case {case.id!r} has no {role!r} volume (it has {sorted(case.images)}); "
            f"every training case needs one"
        )
    volume = read_volume(path)
    require_finite_training_volume(volume, case.id)
    return planned(volume, method)


def _planned_mask(case: Case, method: Method) -> torch.Tensor | None:
    from medi2i.data.loading import planned_mask
    from medi2i.io import read_volume

    if MASK not in case.images:
        return None
    return planned_mask(read_volume(case.images[MASK]), method)


def _selection(
    case: Case,
    raw: torch.Tensor,
    mask: torch.Tensor | None,
    target: torch.Tensor | None,
    scale: tuple[int, int, int],
    threshold: float | None,
) -> np.ndarray:
    """Where patches may be centred, on the input's grid: the mask (on the input's
    grid, or on a finer target's: :mod:`medi2i.training.masks`), else the voxels above
    the threshold."""
    from medi2i.grid import Grid
    from medi2i.training.masks import mask_on_source, training_mask_grid

    if mask is None:
        return _foreground(raw, threshold)
    target_grid = Grid.of(target) if target is not None else None
    role = training_mask_grid(case, Grid.of(mask), Grid.of(raw), target_grid)
    selected = np.asarray(mask[0].numpy(), dtype=bool)
    if role == TARGET:
        selected = mask_on_source(selected, tuple(raw.shape[1:]), scale)
    if not selected.any():
        raise InputError(
            f"case {case.id!r}: the mask {case.images[MASK]} selects no voxel (mask > 0 "
            "nowhere), so no patch can be centred in the body; check that it is this "
            "case's mask, or leave the mask out"
        )
    return selected


def _plain(volume: torch.Tensor) -> torch.Tensor:
    plain = volume.as_tensor() if hasattr(volume, "as_tensor") else volume
    return plain.detach().to(torch.float32).contiguous()


def _foreground(raw: torch.Tensor, threshold: float | None) -> np.ndarray:
    first = np.asarray(_plain(raw)[0].numpy())
    level = float(first.mean()) if threshold is None else threshold
    return np.asarray(first > level)


def _target_scale(case: Case, image: torch.Tensor, target: torch.Tensor) -> tuple[int, int, int]:
    sizes = list(zip(image.shape[1:], target.shape[1:], strict=True))
    if any(t % i for i, t in sizes):
        raise GeometryError(
            f"case {case.id!r}: the target's {tuple(target.shape[1:])} voxels are not a whole "
            f"multiple of the source's {tuple(image.shape[1:])} along every axis; resample the "
            "target onto the source grid (or an integer refinement of it)"
        )
    factors = [t // i for i, t in sizes]
    return (factors[0], factors[1], factors[2])


def _require_refinement(
    case: Case, target: torch.Tensor, source: torch.Tensor, scale: tuple[int, int, int]
) -> None:
    """Refuse a finer target that does not subdivide the source's voxels ``scale`` times:
    its shape alone would pair voxels of different places (a high-resolution volume
    moved 40 mm) without a word.

    The target's voxel axes must be the source's divided by ``scale`` (1e-3 mm), and its
    first voxel within half a source voxel of where the subdivision puts it: a finer
    grid with the same outer edges, or one whose first slice centre is the source's
    (thick slices picked from thin ones), both pass.
    """
    from medi2i.grid import Grid

    grid = Grid.of(source)
    expected = grid.scaled((float(scale[0]), float(scale[1]), float(scale[2]))).affine
    got = Grid.of(target).affine
    axes_gap = float(np.abs(got[:3, :3] - expected[:3, :3]).max())
    shift = np.linalg.solve(grid.affine[:3, :3], got[:3, 3] - expected[:3, 3])
    if axes_gap > 1e-3 or float(np.abs(shift).max()) > 0.5:
        moved = np.round(got[:3, 3] - expected[:3, 3], 2).tolist()
        raise GeometryError(
            f"case {case.id!r}: the target {case.images.get(TARGET)} does not subdivide the "
            f"voxels of its source {case.images.get(SOURCE)} {scale} times (its voxel axes "
            f"differ by up to {axes_gap:.3g} mm, its first voxel is {moved} mm from where "
            "they put it); resample the target onto the source's field of view and "
            "orientation"
        )


def _scaled(size: tuple[int, int, int], scale: tuple[int, int, int]) -> tuple[int, int, int]:
    return (size[0] * scale[0], size[1] * scale[1], size[2] * scale[2])


def _require_padding_fits(
    case: Case,
    image: torch.Tensor,
    target: torch.Tensor | None,
    patch_size: tuple[int, int, int],
    scale: tuple[int, int, int],
) -> None:
    """Refuse a patch size whose padding of a smaller volume would not fit in half the
    machine's memory (a typo such as 2000 for 200 asked for tens of gigabytes)."""
    from medi2i.io.base import physical_memory

    total = physical_memory()
    if total is None:
        return
    needed = 0
    for volume, size in ((image, patch_size), (target, _scaled(patch_size, scale))):
        if volume is not None:
            padded = [max(p, n) for p, n in zip(size, volume.shape[1:], strict=True)]
            needed += volume.shape[0] * int(np.prod(padded)) * volume.element_size()
    if needed > total // 2:
        raise OptionsError(
            f"case {case.id!r}: training.patch_size {tuple(patch_size)} is larger than its "
            f"{tuple(image.shape[1:])} voxels, and padding them to it would take "
            f"{needed / 2**30:.1f} GiB, more than half of this machine's "
            f"{total / 2**30:.1f} GiB; choose a patch size near the volumes' size"
        )


def _padded(volume: torch.Tensor, size: tuple[int, int, int]) -> torch.Tensor:
    missing = [max(0, p - n) for p, n in zip(size, volume.shape[1:], strict=True)]
    if not any(missing):
        return volume
    # F.pad lists the last axis first; pad only at the far end, so voxel indices stay put
    widths = [w for axis in reversed(missing) for w in (0, axis)]
    # edge replication: background where the volume ends in air, tissue where it was cut
    return F.pad(volume, widths, mode="replicate").contiguous()


def _padded_selection(selected: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    missing = [(0, int(n) - m) for n, m in zip(shape, selected.shape, strict=True)]
    return (
        np.pad(selected, missing, constant_values=False) if any(w for _, w in missing) else selected
    )


def _candidates(selected: np.ndarray) -> np.ndarray:
    indices = np.flatnonzero(selected)
    stride = -(-indices.size // _MAX_FOREGROUND_CANDIDATES)
    return indices[::stride] if stride > 1 else indices


def training_store(
    data: CaseSet,
    *,
    method: Method,
    patch_size: tuple[int, int, int],
    foreground_threshold: float | None,
    keep: bool,
    notice: PaddingNotice | None = None,
) -> VolumeStore:
    """The training volumes of ``data`` for ``method`` (see :class:`VolumeStore`);
    ``notice`` is shared by the stores of one run, so that padding is noted once."""
    loader = _CaseLoader(
        data,
        method,
        domain_labels(data),
        patch_size,
        foreground_threshold,
        notice if notice is not None else PaddingNotice(),
    )
    return VolumeStore(len(data.cases), loader, keep=keep)


@dataclass(frozen=True)
class _CaseLoader:
    """Loads case ``i`` (a class, not a closure, so that DataLoader workers started by
    ``spawn`` can receive it)."""

    data: CaseSet
    method: Method
    domains: tuple[str, ...]
    patch_size: tuple[int, int, int]
    foreground_threshold: float | None
    notice: PaddingNotice = field(default_factory=PaddingNotice)

    def __call__(self, index: int) -> TrainingVolume:
        case = self.data.cases[index]
        label = self.domains.index(case.domain) if self.domains and case.domain else 0
        return load_training_volume(
            case,
            method=self.method,
            kind=self.data.kind,
            domain=label,
            patch_size=self.patch_size,
            foreground_threshold=self.foreground_threshold,
            domain_name=case.domain if self.domains else None,
            notice=self.notice,
        )


class BatchFunction(Protocol):
    """Batch ``micro`` of step ``step`` (see :class:`medi2i.training.patches.PatchSampler`)."""

    def __call__(self, *, step: int, micro: int) -> Batch: ...


class _MicroBatches(torch.utils.data.Dataset[Batch]):
    """Item ``i`` is batch ``i % accumulation`` of step ``i // accumulation``."""

    def __init__(self, batch: BatchFunction, accumulation: int) -> None:
        self.batch = batch
        self.accumulation = accumulation

    def __getitem__(self, index: int) -> Batch:
        step, micro = divmod(index, self.accumulation)
        return self.batch(step=step, micro=micro)


def step_batches(
    batch: BatchFunction,
    *,
    first_step: int,
    steps: int,
    accumulation: int,
    num_workers: int,
    pin_memory: bool,
) -> Iterator[list[Batch]]:
    """The micro-batches of every step from ``first_step`` to ``steps - 1``, in order.

    With ``num_workers > 0`` they are prepared ahead in worker processes; since each
    is a pure function of its step, the result is the same as without workers.
    """
    if num_workers == 0:
        for step in range(first_step, steps):
            yield [batch(step=step, micro=micro) for micro in range(accumulation)]
        return
    loader = torch.utils.data.DataLoader(
        _MicroBatches(batch, accumulation),
        batch_size=None,
        sampler=range(first_step * accumulation, steps * accumulation),
        num_workers=num_workers,
        pin_memory=pin_memory,
    )
    pending: list[Batch] = []
    for item in loader:
        pending.append(item)
        if len(pending) == accumulation:
            yield pending
            pending = []


def case_domains(data: CaseSet) -> list[list[int]]:
    """Case indices per domain label, without loading any volume."""
    names = domain_labels(data)
    if not names:
        return [list(range(len(data.cases)))]
    groups = [[i for i, c in enumerate(data.cases) if c.domain == name] for name in names]
    empty = [name for name, group in zip(names, groups, strict=True) if not group]
    if empty:
        raise InputError(
            f"domains {empty} have no training cases; every domain needs some: check their "
            "folders (or CSV rows) in data.layout, and data.include and data.split"
        )
    return groups
