"""Patch networks: methods whose prediction is a network run by sliding window.

:class:`PatchNetworkMethod` is the first shape of :class:`medi2i.method.Method` (see
that module); the core's :class:`~medi2i.SlidingWindowEngine` runs its ``forward``
window by window, or slab by slab when it is pointwise.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

from medi2i.errors import ModelFormatError
from medi2i.method import ConditionT, Method, OptionsT

if TYPE_CHECKING:
    import torch
    from monai.data.meta_tensor import MetaTensor
    from pydantic import BaseModel

    from medi2i.grid import Grid
    from medi2i.method_services import PredictContext


class PatchNetworkMethod(Method[OptionsT, ConditionT]):
    """A method whose prediction is a network run by sliding window.

    Subclasses build the network in :meth:`build_network`; the core runs it window
    by window on the device with the user's inference settings. A network that
    outputs more voxels than it is given (super-resolution) sets ``self.output_scale``
    (per instance, e.g. from its options, in ``__init__``).

    Attributes:
        output_scale: Output voxels per input voxel along each axis.
        output_origin: Where the first output voxel's centre lies in a window, in input
            voxels from the first input voxel's centre, per axis; ``None`` (default):
            the output voxels split the input voxels evenly, as
            :meth:`medi2i.Grid.scaled`. A network whose output keeps the input voxel
            centres (sub-voxel ``s`` of voxel ``i`` at ``i + s / scale``) sets ``0``,
            so that test-time mirroring puts mirrored outputs back in place.
        keeps_module_modes: Class attribute: the engine leaves the network's train/eval
            mode alone (a method adapting batch-norm statistics at predict time).
        pointwise: Class attribute: ``forward``'s output at a voxel depends on the
            input at that voxel only (a voxelwise function, a network of 1×1×1
            convolutions), so the core runs it on whole slices without windows, overlap
            or blending (:meth:`~medi2i.SlidingWindowEngine.run_pointwise`); the output
            scale must be one. A method whose forward looks at neighbours must not set
            it: its output would change where the slabs are cut.
    """

    output_scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    output_origin: tuple[float, float, float] | None = None
    default_roi_size: ClassVar[tuple[int, int, int]] = (96, 96, 96)
    keeps_module_modes: ClassVar[bool] = False
    pointwise: ClassVar[bool] = False

    def __init__(self, options: BaseModel | Mapping[str, object] | None = None) -> None:
        super().__init__(options)
        self._network: torch.nn.Module | None = None

    @abc.abstractmethod
    def build_network(self) -> torch.nn.Module:
        """A new, untrained network for the current options."""

    @property
    def network(self) -> torch.nn.Module:
        """The network, built on first use."""
        if self._network is None:
            self._network = self.build_network()
        return self._network

    def forward(self, windows: torch.Tensor, condition: ConditionT) -> torch.Tensor:
        """Run the network on a batch of windows (override to use the condition)."""
        output: torch.Tensor = self.network(windows)
        return output

    def export_refusal(self, condition: ConditionT) -> str | None:
        """Why this method's prediction under ``condition`` is not ``forward`` run on
        windows (so :func:`medi2i.export.export_program` cannot capture it), or
        ``None`` when it is. Override when :meth:`predict` does more per window than
        ``forward`` (sampled styles, statistics recomputed on the input)."""
        return None

    def roi_size(self) -> tuple[int, int, int]:
        """Window size the network was trained with (``options.roi_size`` if present;
        one whole number is a cube).

        Raises:
            OptionsError: ``options.roi_size`` is not three (or one) positive whole
                numbers of voxels.
        """
        size = getattr(self.options, "roi_size", None)
        if size is None:
            return self.default_roi_size
        return window_triple(size, f"option roi_size of method {self.id!r}")

    def predict(
        self, image: MetaTensor, context: PredictContext[ConditionT]
    ) -> torch.Tensor | Mapping[str, torch.Tensor]:
        return self.run_network(image, context)

    def run_network(
        self,
        image: torch.Tensor,
        context: PredictContext[ConditionT],
        *,
        axes: tuple[int, int, int] = (0, 1, 2),
    ) -> torch.Tensor:
        """Run :meth:`forward` over ``image`` by sliding window (or slab by slab when
        pointwise).

        Args:
            image: The channel-first volume the network sees.
            context: The predict context.
            axes: Which array axis of the method's input each spatial axis of ``image``
                is, for a method that reordered the axes (e.g. turned the slice axis
                last): the user's ``mirror_axes`` name the input's axes, and are mapped
                to ``image``'s through it.
        """

        def predictor(windows: torch.Tensor) -> torch.Tensor:
            return self.forward(windows, context.condition)

        if self.pointwise and self.output_scale == (1.0, 1.0, 1.0):
            return context.engine.run_pointwise(
                image,
                predictor,
                modules=[self.network],
                eval_modules=not self.keeps_module_modes,
                method_id=self.id,
            )
        return context.engine.run(
            image,
            predictor,
            modules=[self.network],
            default_roi_size=self.roi_size(),
            output_scale=self.output_scale,
            output_origin=self.output_origin,
            mirror_axes=[axes.index(a) for a in context.engine.settings.mirror_axes],
            eval_modules=not self.keeps_module_modes,
            method_id=self.id,
        )

    def output_grid(self, input_grid: Grid, condition: ConditionT | None = None) -> Grid:
        if self.output_scale == (1.0, 1.0, 1.0):
            return input_grid
        return input_grid.scaled(self.output_scale)

    def training_modules(self) -> dict[str, torch.nn.Module]:
        return {"network": self.network}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {f"network.{k}": v for k, v in self.network.state_dict().items()}

    def load_state_tensors(self, tensors: Mapping[str, torch.Tensor]) -> None:
        weights = {k.removeprefix("network."): v for k, v in tensors.items()}
        try:
            self.network.load_state_dict(weights, strict=True)
        except RuntimeError as exc:
            raise ModelFormatError(
                f"weights do not fit method {self.id!r} with these options: {exc}"
            ) from exc


def window_triple(size: object, what: str) -> tuple[int, int, int]:
    """``size`` as a window of three positive whole numbers of voxels (one number is a
    cube).

    Raises:
        OptionsError: Anything else; the message names ``what`` and the value.

    Example:
        >>> window_triple(16, "roi_size"), window_triple([8, 8, 4], "roi_size")
        ((16, 16, 16), (8, 8, 4))
    """
    from medi2i.errors import OptionsError

    values: object = [size] * 3 if isinstance(size, int) and not isinstance(size, bool) else size
    triple: tuple[object, ...] = tuple(values) if isinstance(values, (list, tuple)) else ()
    if len(triple) != 3 or not all(_whole_positive(v) for v in triple):
        raise OptionsError(
            f"{what} is {size!r}; it must be three positive whole numbers of voxels, e.g. "
            "[64, 64, 64] (or one, for a cube)"
        )
    whole = [int(v) for v in triple if isinstance(v, (int, float))]
    return (whole[0], whole[1], whole[2])


def _whole_positive(value: object) -> bool:
    if isinstance(value, bool):
        return False
    whole = isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    return whole and value >= 1  # type: ignore[operator]
