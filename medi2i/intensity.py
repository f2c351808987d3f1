"""Intensities in and out of the network: whole-volume MR normalization and HU scaling.

MR intensities have no absolute unit, so every input volume is normalized with its own
statistics, taken over the *whole* volume (never per patch, or windows of one volume
would be scaled differently). CT values are in Hounsfield units, an absolute scale, so
targets and outputs are mapped by one fixed linear function between HU and the
network's range [-1, 1]. Outside the body of the input MR a synthetic CT is air
(:class:`MRToCTIntensities`, option ``body_contour``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

import numpy as np
import torch

from medi2i.errors import GeometryError, OptionsError

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.body_contour import PackedMask
    from medi2i.method import DomainSpec

MRNormalization = Literal["zscore", "percentile"]
MRForeground = Literal["above-mean", "body"]
"""Which voxels' statistics normalize an MR volume (:func:`foreground`)."""
LEGACY_FOREGROUND: MRForeground = "above-mean"
"""The rule of models saved before the choice existed (their options lack it)."""

HU_MIN = -1024.0
"""Lowest CT value the method produces (the bottom of the stored 12-bit range), in HU."""
HU_MAX = 3071.0
"""Highest CT value the method produces (dense bone, metal clipped), in HU."""
AIR_HU = -1000.0
"""Air by the definition of the Hounsfield scale (water 0, air -1000), written outside the
body by MR→CT methods with a body contour; CT scanners measure air near it (the -1024 of
:data:`HU_MIN` is the bottom of the stored range, not air)."""
BODY_MASK_META_KEY = "medi2i.body_mask"
"""Meta key of the input's body mask, which :meth:`MRToCTIntensities.preprocess` puts on
the volume it returns at predict time (a boolean tensor ``(X, Y, Z)``)."""


@dataclass(frozen=True)
class HounsfieldScale:
    """The linear map between CT values in HU and the network's range [-1, 1].

    ``low`` HU maps to -1 and ``high`` HU to +1; values beyond are clipped, so the
    network never has to produce (or learn from) values outside the range the output
    is delivered in.

    Attributes:
        low: CT value mapped to -1, in HU.
        high: CT value mapped to +1, in HU.

    Example:
        >>> scale = HounsfieldScale()
        >>> float(scale.to_network(torch.tensor(HU_MAX)))
        1.0
        >>> float(scale.to_hounsfield(torch.tensor(-1.0)))
        -1024.0
    """

    low: float = HU_MIN
    high: float = HU_MAX

    @property
    def half_span(self) -> float:
        """HU per unit of network output (2047.5 HU for the default range)."""
        return (self.high - self.low) / 2.0

    def to_network(self, hounsfield: torch.Tensor) -> torch.Tensor:
        """CT values in HU to [-1, 1], clipped."""
        return ((hounsfield.float() - self.low) / self.half_span - 1.0).clamp(-1.0, 1.0)

    def to_hounsfield(self, output: torch.Tensor) -> torch.Tensor:
        """Network outputs to HU, clipped to ``[low, high]``."""
        return ((output.float() + 1.0) * self.half_span + self.low).clamp(self.low, self.high)

    def to_hounsfield_(self, output: torch.Tensor) -> torch.Tensor:
        """:meth:`to_hounsfield` in place on a float32 ``output`` (the same operations,
        the same values, no new volume)."""
        if output.dtype != torch.float32:
            return self.to_hounsfield(output)
        return output.add_(1.0).mul_(self.half_span).add_(self.low).clamp_(self.low, self.high)


def foreground(
    values: np.ndarray, rule: MRForeground = "above-mean", *, body: np.ndarray | None = None
) -> np.ndarray:
    """The voxels whose statistics normalize an MR volume.

    - ``"above-mean"``: every voxel brighter than the volume's mean. In an MR volume the
      background (air) is dark and large, so its mean falls between air and tissue. But
      the mean moves with how much air the field of view holds: the same scan cropped
      closer to the body has a higher mean, so fewer tissue voxels count and every
      normalized intensity shifts (on a chest MR cropped to its body, soft tissue moved
      by 0.15 of the network range and a trained network's synthetic CT by 45-74 HU).
    - ``"body"``: the voxels of the body (:func:`medi2i.body_mask`: Otsu's threshold,
      the large components, holes filled, a 2-voxel margin). Air outside the body does
      not count, so cropping away air changes nothing.

    A volume with nothing above its mean (a constant volume) is all foreground.

    Args:
        values: The volume's intensities: any shape for ``"above-mean"``; ``(X, Y, Z)``
            or channel-first ``(C, X, Y, Z)`` for ``"body"`` (one mask for every
            channel, from their mean).
        rule: Which voxels count (above).
        body: The body mask, ``(X, Y, Z)`` booleans, when the caller has it already
            (``"body"`` only); else it is computed.

    Returns:
        The selected intensities as a flat array of the volume's type (never empty for
        a non-empty volume). The mean is taken in float64 without a float64 copy of the
        volume (which would cost two float32 volumes).

    Raises:
        OptionsError: ``rule`` is not one of the two, or ``body`` is given for
            ``"above-mean"``.
        GeometryError: ``body`` is not on the volume's grid.
    """
    if rule not in ("above-mean", "body"):
        raise OptionsError(f"foreground rule {rule!r} must be 'above-mean' or 'body'")
    if body is not None and rule != "body":
        raise OptionsError("a body mask is used by the foreground rule 'body' only")
    if rule == "body":
        from medi2i.body_contour import body_mask

        inside = body_mask(values) if body is None else np.asarray(body, bool)
        if inside.shape != values.shape[-3:]:
            raise GeometryError(
                f"the body mask has shape {inside.shape}, the volume {values.shape}: give "
                "the mask of this volume's grid"
            )
        selected = _selected(values, inside)
        return selected if selected.size else values.ravel(order="K")
    flat = values.ravel(order="K")  # a view of a C- or F-ordered volume
    selected = flat[flat > float(np.mean(flat, dtype=np.float64))]
    return selected if selected.size else flat


def _selected(values: np.ndarray, inside: np.ndarray) -> np.ndarray:
    """``values[..., inside].ravel()`` (channel by channel, each in C order of the mask)
    without its index arrays: NumPy turns a boolean mask after an ellipsis into int64
    indices, three per selected voxel (6 float32 volumes for a body of the whole
    volume), where a mask as large as the array it indexes is read directly."""
    leading = values.shape[: values.ndim - inside.ndim]
    if int(np.prod(leading)) == 1:  # one channel: its view, indexed by the mask
        return np.asarray(values[(0,) * len(leading)][inside])
    count = int(np.count_nonzero(inside))
    selected = np.empty(int(np.prod(leading)) * count, values.dtype)
    for index, channel in enumerate(np.ndindex(*leading)):  # C order, as the ravel's
        selected[index * count : (index + 1) * count] = values[channel][inside]
    return selected


def foreground_rule(options: object) -> MRForeground:
    """The foreground rule of a method's options: ``mr_foreground`` (paired MR→CT
    methods) or ``foreground`` (domain methods), else the rule of models saved before
    the option existed."""
    for name in ("mr_foreground", "foreground"):
        rule = getattr(options, name, None)
        if rule in ("above-mean", "body"):
            return cast("MRForeground", rule)
    return LEGACY_FOREGROUND


_CHUNK = 1 << 22


def _mean_and_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and (population) standard deviation in float64, in chunks: no float64 copy
    of the values."""
    mean = float(np.mean(values, dtype=np.float64))
    squares = 0.0
    for start in range(0, values.size, _CHUNK):
        deviation = values[start : start + _CHUNK].astype(np.float64) - mean
        squares += float(np.dot(deviation, deviation))
    return mean, (squares / values.size) ** 0.5


def normalize_mr(
    image: torch.Tensor,
    *,
    scheme: MRNormalization,
    percentiles: tuple[float, float],
    clip: bool = True,
    rule: MRForeground = "above-mean",
    body: np.ndarray | None = None,
) -> torch.Tensor:
    """Normalize a whole MR volume with statistics of its foreground.

    Args:
        image: The whole volume, channel first; channels share one set of statistics.
        scheme: ``"zscore"``: subtract the foreground mean and divide by its standard
            deviation (nnU-Net's scheme for MR). ``"percentile"``: map the foreground's
            ``percentiles`` (low, high) to -1 and +1 and clip beyond them.
        percentiles: Lower and upper percentile (0-100) of the ``"percentile"`` scheme.
        clip: Clip the ``"percentile"`` scheme's result to [-1, 1]. Off, intensities
            beyond the percentiles map linearly beyond -1 and +1.
        rule: Which voxels the statistics come from (:func:`foreground`).
        body: The input's body mask for ``rule="body"`` when the caller has it.

    Returns:
        The normalized volume as float32 (a ``MetaTensor`` stays one). A constant
        volume becomes zeros.
    """
    selected = foreground(image.detach().cpu().numpy(), rule, body=body)
    if scheme == "zscore":
        centre, spread = _mean_and_std(selected)
        del selected  # a copy of the foreground voxels: gone before the new volume
        normalized = image.float() - centre  # one new volume, then in place
        return normalized.div_(spread if spread > 0.0 else 1.0)
    selected = selected.astype(np.float64, copy=False)
    low, high = (float(v) for v in np.percentile(selected, percentiles))
    return scale_between(image, (low, high), clip=clip)


def scale_between(image: torch.Tensor, values: tuple[float, float], *, clip: bool) -> torch.Tensor:
    """``image`` with ``values`` (low, high) mapped to -1 and +1 as float32, clipped to
    [-1, 1] when ``clip``; ``low == high`` maps the volume to zeros (and its offsets).

    Example:
        >>> scale_between(torch.tensor([0.0, 5.0, 10.0, 20.0]), (0.0, 10.0), clip=False).tolist()
        [-1.0, 0.0, 1.0, 3.0]
    """
    low, high = values
    half_span = (high - low) / 2.0
    scaled = (image.float() - (low + half_span)) / (half_span if half_span > 0.0 else 1.0)
    return scaled.clamp(-1.0, 1.0) if clip else scaled


def check_percentiles(percentiles: tuple[float, float]) -> tuple[float, float]:
    """``percentiles`` if they satisfy ``0 <= low < high <= 100``.

    Raises:
        ValueError: They do not (in a pydantic validator this becomes an option error).
    """
    low, high = percentiles
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"percentiles {percentiles} must satisfy 0 <= low < high <= 100")
    return percentiles


class MRToCTIntensities:
    """The intensity recipe of MR→synthetic-CT networks, as a mixin for methods.

    - :meth:`preprocess`: the whole MR volume normalized by :func:`normalize_mr` with
      ``options.mr_normalization`` and ``options.mr_percentiles``;
    - :meth:`preprocess_target`: training CT from HU to [-1, 1] (clipped), the range of
      a tanh output or of a regression target;
    - :meth:`postprocess`: network outputs back to HU, clipped to [-1024, 3071], and,
      when ``options.body_contour`` is true, air (:data:`AIR_HU`, -1000 HU) at every
      voxel outside the input MR's body (:func:`medi2i.body_mask`).

    The body mask is that of the *raw* input on the working grid: at predict time
    (``condition`` given) :meth:`preprocess` computes it before normalizing and keeps it
    in the returned volume's meta (:data:`BODY_MASK_META_KEY`), and :meth:`postprocess`
    takes it from its ``image`` argument, which is that volume. Training, fitting and
    adaptation call :meth:`preprocess` without a condition and pay nothing for it. A
    volume without the key (a caller that built it another way) gets the mask of the
    normalized volume itself: the same for ``"zscore"`` (Otsu's threshold follows an
    increasing affine map), but not for ``"percentile"``, whose clipping changes the
    histogram Otsu's threshold is taken from.

    Put it before the method base class, and give the options the fields (check the
    percentiles with :func:`check_percentiles`; without ``body_contour`` nothing is set
    to air)::

        class MyNet(MRToCTIntensities, PatchNetworkMethod[MyOptions, NoCondition]): ...

    Attributes:
        hounsfield: The HU ↔ network map (class attribute).
    """

    hounsfield: ClassVar[HounsfieldScale] = HounsfieldScale()
    required_options: ClassVar[tuple[str, ...]] = ("mr_normalization", "mr_percentiles")
    """Option fields this mixin reads: a method without them is refused at registration."""
    options: Any
    """The method's options; they have ``mr_normalization``, ``mr_percentiles`` and
    optionally ``body_contour``."""

    @property
    def body_contour(self) -> bool:
        """Whether outputs are air outside the input's body (``options.body_contour``)."""
        return bool(getattr(self.options, "body_contour", False))

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        """Normalize the whole MR volume (see ``options.mr_normalization``, with the
        statistics of ``options.mr_foreground``'s voxels, :func:`foreground`); at predict
        time with ``body_contour`` on, keep the raw volume's body mask in the meta."""
        from medi2i.body_contour import PackedMask, body_mask

        rule = foreground_rule(self.options)
        keep = condition is not None and self.body_contour and hasattr(image, "meta")
        # before the normalized volume exists: the mask's whole-volume temporaries then
        # do not add to it at the peak; one mask serves the statistics and the contour
        body = body_mask(image.detach().cpu().numpy()) if rule == "body" or keep else None
        normalized = normalize_mr(
            image,
            scheme=self.options.mr_normalization,
            percentiles=self.options.mr_percentiles,
            rule=rule,
            body=body if rule == "body" else None,  # the contour's mask alone otherwise
        )
        if keep and body is not None and hasattr(normalized, "meta"):
            normalized.meta[BODY_MASK_META_KEY] = PackedMask.pack(body)
        return cast("MetaTensor", normalized)

    def preprocess_target(self, target: MetaTensor) -> MetaTensor:
        """Map a whole training CT from HU to [-1, 1] (clipped); the inverse of
        :meth:`postprocess`, called by the trainer on paired targets."""
        return cast("MetaTensor", self.hounsfield.to_network(target))

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        """Map network outputs back to HU, clipped to [-1024, 3071]; with
        ``body_contour`` on, air outside the input's body.

        Raises:
            GeometryError: ``body_contour`` is on and the output lies on another grid
                than the input (the mask is on the input's grid).
        """
        hounsfield = self.hounsfield.to_hounsfield_(output)  # the core's own: in place
        if not self.body_contour:
            return cast("MetaTensor", hounsfield)
        inside = _input_body(image)
        if tuple(inside.shape) != tuple(hounsfield.shape[-3:]):
            raise GeometryError(
                f"body_contour needs the output on the input's grid: the output has spatial "
                f"shape {tuple(hounsfield.shape[-3:])}, the input {tuple(inside.shape)}; "
                "turn body_contour off for a method that changes the grid"
            )
        return cast("MetaTensor", inside.fill_outside_(hounsfield, AIR_HU))


def _input_body(image: MetaTensor) -> PackedMask:
    """The body mask :meth:`MRToCTIntensities.preprocess` kept, else that of ``image``."""
    from medi2i.body_contour import PackedMask, body_mask

    kept = getattr(image, "meta", {}).get(BODY_MASK_META_KEY)
    if isinstance(kept, PackedMask):
        return kept
    return PackedMask.pack(body_mask(image.detach().cpu().numpy()))


def is_hounsfield(spec: DomainSpec | None) -> bool:
    """Whether a domain's images are CT values in HU (modality CT or units HU)."""
    return spec is not None and (spec.modality == "CT" or spec.units == "HU")


def domain_to_network(
    image: MetaTensor,
    spec: DomainSpec | None,
    *,
    percentiles: tuple[float, float],
    clip: bool = True,
    values: tuple[float, float] | None = None,
    rule: MRForeground = "above-mean",
    body: np.ndarray | None = None,
) -> MetaTensor:
    """One whole volume of domain ``spec`` in the network range [-1, 1]: CT by the fixed
    :class:`HounsfieldScale`, any other image by its foreground ``percentiles``
    (:func:`normalize_mr`, ``"percentile"`` scheme, over the voxels of the foreground
    ``rule``; ``body``: the input's body mask for the ``"body"`` rule when the caller has
    it), or by given ``values`` (low, high) mapped to -1 and +1 (a domain's training
    scale); clipped to [-1, 1] when ``clip``."""
    if is_hounsfield(spec):
        return cast("MetaTensor", HounsfieldScale().to_network(image))
    if values is not None:
        return cast("MetaTensor", scale_between(image, values, clip=clip))
    scaled = normalize_mr(
        image, scheme="percentile", percentiles=percentiles, clip=clip, rule=rule, body=body
    )
    return cast("MetaTensor", scaled)


def domain_from_network(output: MetaTensor, spec: DomainSpec | None) -> MetaTensor:
    """A network output in the units of domain ``spec``: HU (clipped) for CT, the network
    range itself (arbitrary units) for images without an absolute unit."""
    if is_hounsfield(spec):
        return cast("MetaTensor", HounsfieldScale().to_hounsfield(output))
    return output


class DomainIntensities:
    """Per-domain intensities of unpaired and multi-domain methods, as a mixin.

    Each volume is scaled by what its domain's :class:`~medi2i.DomainSpec` says it is:
    CT (modality ``"CT"`` or units ``"HU"``) by the fixed Hounsfield scale to [-1, 1] and
    back to HU; any other image (MR, no absolute unit) by its own whole-volume foreground
    percentiles (``options.percentiles``, else 0.5 and 99.5) and clipped to [-1, 1]
    unless ``options.clip_intensities`` is false, its outputs left in the network range.
    So one two-way MR↔CT network sees both domains in [-1, 1] and writes
    CT in HU. Put it before the method base class::

        class MyCycle(DomainIntensities, PatchNetworkMethod[MyOptions, Direction]): ...
    """

    options: Any

    def _domain_spec(self, domain: str | None) -> DomainSpec | None:
        if domain is None:
            return None
        spec: DomainSpec = cast("Any", self).domain(domain)
        return spec

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        """The whole volume of ``domain`` in [-1, 1] (see the class docstring)."""
        percentiles = getattr(self.options, "percentiles", (0.5, 99.5))
        clip = getattr(self.options, "clip_intensities", True)
        spec = self._domain_spec(domain)
        rule = foreground_rule(self.options)
        return domain_to_network(image, spec, percentiles=percentiles, clip=clip, rule=rule)

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        """An output of ``domain`` in its units (HU for CT)."""
        return domain_from_network(output, self._domain_spec(domain))
