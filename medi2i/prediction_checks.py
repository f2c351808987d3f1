"""What the predict path checks around a method's own code: that its output fits in
memory before any work, that an output it returns can be placed on a grid (never
delivered shifted) and has the names and channels the method declares, that its
complaints about the input name the file, that an input is of the modality the method
takes (a DICOM series by its Modality, a NIfTI file by whether it holds air in HU), and
that an engine passed in is one.

Internal to :mod:`medi2i.prediction`.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

from medi2i.errors import GeometryError, InputError, Medi2iError, OptionsError, OutputError
from medi2i.grid import Grid
from medi2i.method import Method
from medi2i.method_spec import Output, validated_model
from medi2i.patch_network import PatchNetworkMethod
from medi2i.settings import InferenceSettings
from medi2i.text import described

if TYPE_CHECKING:
    import numpy.typing as npt
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.engine import SlidingWindowEngine


def with_grid(method: Method, output: torch.Tensor, prepared: MetaTensor) -> MetaTensor:
    """Attach the affine of the grid a method's raw output lies on."""
    import torch
    from monai.data.meta_tensor import MetaTensor

    require_placed(method, output, prepared, "predict")
    if isinstance(output, MetaTensor):
        return output
    grid = Grid.of(prepared)
    if isinstance(method, PatchNetworkMethod) and method.output_scale != (1.0, 1.0, 1.0):
        grid = grid.scaled(method.output_scale)
    found = tuple(int(n) for n in output.shape[-3:])
    if found != grid.shape:
        if sorted(found) == sorted(grid.shape):
            advice = (
                "the same sizes in another order: its axes are swapped or permuted (keep the "
                "input's (C, X, Y, Z) order, e.g. undo a permute or a numpy transpose)"
            )
        else:
            advice = "a method that changes the grid must return a MetaTensor with its affine"
        raise OutputError(
            f"method {method.id!r} returned a volume of shape {tuple(output.shape)} on an "
            f"unknown grid (expected spatial shape {grid.shape}); {advice}"
        )
    return MetaTensor(output, affine=torch.from_numpy(grid.affine))


def settings_of(settings: object) -> InferenceSettings:
    """``settings`` as :class:`InferenceSettings`: the defaults for ``None``, a mapping of
    its fields validated (``{"overlap": 0.5}``).

    Raises:
        OptionsError: A field is unknown or out of range, or ``settings`` is neither.
    """
    if settings is None:
        return InferenceSettings()
    if isinstance(settings, InferenceSettings):
        return settings
    if isinstance(settings, Mapping):
        parsed: InferenceSettings = validated_model(
            InferenceSettings, dict(settings), "inference settings"
        )
        return parsed
    raise OptionsError(
        f"settings must be a medi2i.InferenceSettings (or a mapping of its fields), got "
        f"a {type(settings).__name__}"
    )


def require_ready_call(method: object, image: object) -> None:
    """Refuse, before any work, a ``method`` that is not a ready :class:`Method` (its
    class, its id) and an ``image`` that is not a ``MetaTensor`` of real numbers on a
    usable grid, with the channels the method takes.

    Raises:
        OptionsError: ``method`` is not a :class:`Method` instance.
        InputError: ``image`` is not a ``MetaTensor``, or its values are not real numbers.
        GeometryError: Its affine is not a finite, invertible 4x4 matrix, or it has
            another number of channels than a patch network's ``input_spec`` declares.
    """
    import numpy as np
    from monai.data.meta_tensor import MetaTensor

    if not isinstance(method, Method):
        given = f"the class {method.__name__}" if isinstance(method, type) else described(method)
        raise OptionsError(
            f"predict needs a ready method, got {given}; make one with "
            "medi2i.Registry().method(ID)(options) (a method that needs no training) or "
            "medi2i.load_model(MODEL) (a trained model)"
        )
    if not isinstance(image, MetaTensor):
        raise InputError(
            f"the input volume is a {type(image).__name__}, which has no affine; give a "
            "channel-first MONAI MetaTensor: medi2i.read_volume(PATH), or "
            "MetaTensor(torch.as_tensor(array)[None], affine=torch.as_tensor(affine)) with "
            "the voxel-to-RAS affine in mm"
        )
    if image.dtype.is_complex:
        raise InputError(
            f"the input volume holds {image.dtype} values; give real numbers (for complex "
            "data, its magnitude image.abs() or its real part image.real)"
        )
    affine = image.affine.detach().cpu().numpy()
    if (
        affine.shape != (4, 4)
        or not np.isfinite(affine).all()
        or abs(np.linalg.det(affine[:3, :3])) < 1e-12
    ):
        raise GeometryError(
            "the input volume's affine must be a finite, invertible 4x4 voxel-to-RAS "
            f"matrix in mm, got {affine.tolist()}"
        )
    channels = method.input_spec.channels
    # a network's first layer takes exactly these; other methods may take any number
    if isinstance(method, PatchNetworkMethod) and image.ndim == 4 and image.shape[0] != channels:
        raise GeometryError(
            f"method {method.id!r} takes {channels} channel(s), the input volume has "
            f"{image.shape[0]} (shape {tuple(image.shape)}); give a channel-first volume "
            f"of {channels} channel(s), e.g. one channel as image[:1]"
        )


OUTPUT_WORKING_COPIES = 3
"""Float32 volumes of the output's size that computing it may hold at once (measured:
an interpolation onto a 2-billion-voxel grid passed 15 GiB before it was stopped)."""


@contextmanager
def naming_the_input(
    meta: Mapping[str, object], kinds: tuple[type[Medi2iError], ...] = (InputError,)
) -> Iterator[None]:
    """Prefix the input's name to a method's complaint about it (a constant foreground,
    no white-matter peak), which the method raises without knowing the file; ``kinds``
    are the errors that are about the input (an output grid that does not fit it is an
    :class:`OptionsError` about the input too)."""
    where = meta.get("filename_or_obj")
    try:
        yield
    except kinds as exc:
        if not where or str(where) in str(exc):
            raise
        raise type(exc)(f"{where}: {exc}") from exc


def require_no_collapsed_axis(method: Method, source: Grid, grid: Grid, where: str) -> None:
    """Refuse, before any work, an output grid with one voxel along an axis where the
    input has several: a spacing (mm) larger than the input's extent there, which leaves
    a single slab, not a volume. ``where`` names the input (its file)."""
    for axis, (count, out) in enumerate(zip(source.shape, grid.shape, strict=True)):
        if count > 1 and out < 2:
            extent = count * source.spacing[axis]
            raise OptionsError(
                f"{where}: method {method.id!r} would deliver 1 voxel along array axis "
                f"{axis}, where the input has {count} ({extent:g} mm across, "
                f"{source.spacing[axis]:g} mm voxels), as a spacing near that extent or "
                f"wider gives; ask for an output spacing of at most {extent / 2:g} mm "
                "along that axis (2 voxels or more)"
            )


def require_output_fits(method: Method, grid: Grid) -> None:
    """Refuse, before any work, an output grid that the machine cannot hold while it is
    computed (a target spacing of 0.01 mm asks for terabytes): interpolating or blending
    onto it takes about :data:`OUTPUT_WORKING_COPIES` float32 volumes of its size."""
    from medi2i.io.base import physical_memory

    total = physical_memory()
    nbytes = 4 * math.prod(int(size) for size in grid.shape)
    if total is not None and OUTPUT_WORKING_COPIES * nbytes > total:
        spacing = " × ".join(f"{s:.3g}" for s in grid.spacing)
        raise OptionsError(
            f"method {method.id!r} would deliver a {' × '.join(map(str, grid.shape))} grid "
            f"({spacing} mm), {nbytes / 2**30:.1f} GiB as float32 and about "
            f"{OUTPUT_WORKING_COPIES} times that while it is computed, more than the "
            f"{total / 2**30:.1f} GiB of memory of this machine; ask for a coarser output "
            "(a larger target_spacing or a smaller slice_factor)"
        )


def require_placed(method: Method, volume: torch.Tensor, given: torch.Tensor, stage: str) -> None:
    """Refuse a method's output that the core cannot place in the world: not channel-first
    3D, or a ``MetaTensor`` of another shape than the volume ``stage`` was given that still
    carries that volume's affine. Slicing or cropping a ``MetaTensor`` keeps its affine, so
    such an output would be delivered shifted or stretched (a convolution without padding,
    ``image[:, ::2]``) instead of refused."""
    import numpy as np
    from monai.data.meta_tensor import MetaTensor

    require_tensor(method, volume, stage)
    if volume.ndim != 4:
        raise OutputError(
            f"method {method.id!r} returned a volume of shape {tuple(volume.shape)} from "
            f"{stage}; a method returns a channel-first 3D volume (C, X, Y, Z), as it is given"
        )
    if not (isinstance(volume, MetaTensor) and isinstance(given, MetaTensor)):
        return
    if tuple(volume.shape[1:]) == tuple(given.shape[1:]):
        return
    if np.allclose(np.asarray(volume.affine), np.asarray(given.affine), rtol=0.0, atol=1e-6):
        raise OutputError(
            f"method {method.id!r} returned a volume of spatial shape {tuple(volume.shape[1:])} "
            f"from {stage}, given {tuple(given.shape[1:])}, but with the affine it was given: "
            "cropping or striding a MetaTensor keeps its affine, so the output would land "
            "in the wrong place; return a volume on the grid it was given (pad the "
            "network's output back), or set the affine of the grid it lies on"
        )


def require_declared_channels(
    method: Method, volume: torch.Tensor, declared: Output, input_channels: int
) -> None:
    """Refuse an output with other channels than its spec declares: the method's
    mistake, which a writer would otherwise report as the user's ("write each channel
    to its own file").

    A method that is not a patch network may be given other channels than its input
    spec declares (interpolation, intensity normalisation work channel by channel); for
    such an input an output with the input's channels is the method's answer too.
    """
    if volume.shape[0] == declared.spec.channels:
        return
    channel_wise = (
        not isinstance(method, PatchNetworkMethod)
        and input_channels != method.input_spec.channels
        and volume.shape[0] == input_channels
    )
    if not channel_wise:
        named = f" {declared.name!r}" if declared.name else ""
        raise OutputError(
            f"method {method.id!r} returned {volume.shape[0]} channel(s) for its output"
            f"{named} but declares {declared.spec.channels} (the output's VolumeSpec); "
            "the method must return the channels it declares (a bug of its plugin); "
            "nothing was written"
        )


def outputs_by_name(
    method: Method,
    raw: torch.Tensor | Mapping[str, torch.Tensor],
    declared: tuple[Output, ...],
) -> Mapping[str, torch.Tensor]:
    """The raw outputs by declared name; a single tensor is the one declared output."""
    names = [output.name for output in declared]
    if not isinstance(raw, Mapping):
        if len(names) != 1:
            raise OptionsError(
                f"method {method.id!r} returned one volume but declares the outputs {names}; "
                "return a mapping by output name from predict"
            )
        raw = {names[0]: raw}
    if sorted(raw) != sorted(names):
        raise OptionsError(
            f"method {method.id!r} returned the outputs {sorted(raw)} but declares {names} "
            "for this condition; make predict and outputs agree"
        )
    for volume in raw.values():
        require_tensor(method, volume, "predict")
    return raw


def require_tensor(method: Method, volume: object, stage: str) -> None:
    """Refuse a hook's result that is not a torch tensor (a NumPy array, None) in one
    line naming the method and the hook, instead of an AttributeError deep in the core."""
    import torch

    if not isinstance(volume, torch.Tensor):
        raise OutputError(
            f"method {method.id!r} returned a {type(volume).__name__} from {stage}; a method "
            "returns a torch tensor (a MetaTensor, channel-first), e.g. torch.as_tensor(array)"
        )


def check_modality(
    method: Method,
    image: MetaTensor,
    *,
    force: bool = False,
    domain: str | None = None,
) -> None:
    """Refuse an input that is plainly not of the modality ``method`` takes.

    A series read from DICOM says its modality, which must be the one expected. An
    input without one (a NIfTI file) is judged by its values: given to a method that
    takes MR, it is refused when it is plainly a CT in HU (5 % or more of its voxels at
    or below -500, air); given to one that takes CT in HU, when no voxel is at or below
    -500 (:func:`range_without_hounsfield_air`: an MR, or a CT stored with an offset).
    A CT in HU cropped inside the body, without any air, is the one false refusal.
    A domain method takes the modality of the input's ``domain`` (e.g. CT in HU for the
    CT→MR direction of a two-way model), or without one the modality all its domains
    share (a StarGAN of MR scanners); any other its ``input_spec``.

    Raises:
        InputError: E.g. a CT series (or a NIfTI CT in HU) given to an MR→CT model, or
            a NIfTI MR given to the CT→MR direction of a two-way model, unless ``force``.
    """
    from medi2i.dicom.source import META_KEY

    if force:
        return
    expected, hounsfield = expected_input(method, domain)
    found = getattr(image.meta.get(META_KEY), "modality", None)
    if not found:
        if expected == "MR":
            _require_no_hounsfield_air(image, method)
        elif hounsfield:
            _require_hounsfield_air(image, method, domain)
        return
    if expected in ("any", "") or found == expected:
        return
    raise InputError(
        f"{image.meta.get('filename_or_obj', 'the input')}: the series is {found}, but "
        f"{method.id!r} takes {expected} input; give a series of modality {expected} "
        "(select it with --modality), or pass --force-modality to use it anyway"
    )


def expected_input(method: Method, domain: str | None) -> tuple[str, bool]:
    """The modality of the input ``method`` takes from ``domain`` (see
    :func:`check_modality`), and whether it reads that input in HU (modality CT or units
    HU, as :func:`medi2i.intensity.is_hounsfield` says of a domain)."""
    if domain is not None and domain in method.domain_names:
        specs = [method.domain(domain)]
    elif domain is None and method.domain_names:
        specs = [method.domain(name) for name in method.domain_names]
    else:
        specs = []
    modalities = {spec.modality for spec in specs}
    if len(modalities) != 1:  # no domain, or domains of several modalities: the input spec
        spec = method.input_spec
        return spec.modality, spec.modality == "CT" or spec.units == "HU"
    return modalities.pop(), all(s.modality == "CT" or s.units == "HU" for s in specs)


HOUNSFIELD_AIR = -500.0
"""Values at or below this are air in a CT in HU; no MR image has them in bulk."""
HOUNSFIELD_AIR_SHARE = 0.05
"""The share of voxels at or below :data:`HOUNSFIELD_AIR` from which an input given as
MR is taken for a CT in HU (the air around a body is most of a CT's volume)."""
_CHUNK = 1 << 22
"""Voxels looked at at once: a bounded temporary, whatever the volume's size."""


def range_without_hounsfield_air(
    values: torch.Tensor | npt.ArrayLike,
) -> tuple[float, float] | None:
    """The range of ``values`` when none is at or below :data:`HOUNSFIELD_AIR`, so
    that they cannot be a CT in HU: the CT of a body holds air at about -1000 HU (around
    it, in its airways or lungs). ``None`` when they can be one, or hold no finite value
    (which other checks refuse); NaN and infinite values are left out.

    The one rule both predict (an input taken as CT in HU) and evaluate (a volume
    scored in HU) apply; a CT in HU cropped inside the body is its one false refusal.

    Example:
        >>> import numpy as np
        >>> range_without_hounsfield_air(np.array([0.0, 247.0]))  # an MR
        (0.0, 247.0)
        >>> range_without_hounsfield_air(np.array([-1000.0, 40.0])) is None  # a CT
        True
    """
    import numpy as np
    import torch

    if isinstance(values, torch.Tensor):
        flat = values.detach().reshape(-1)
        chunks: Iterator[npt.NDArray[np.floating]] = (
            flat[i : i + _CHUNK].to(torch.float32).cpu().numpy()
            for i in range(0, flat.numel(), _CHUNK)
        )
    else:
        array = np.asarray(values).reshape(-1)
        chunks = (array[i : i + _CHUNK].astype(np.float64) for i in range(0, array.size, _CHUNK))
    low, high = math.inf, -math.inf
    for chunk in chunks:
        finite = chunk[np.isfinite(chunk)]
        if finite.size == 0:
            continue
        if float(finite.min()) <= HOUNSFIELD_AIR:
            return None
        low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    return None if low == math.inf else (low, high)


def _require_hounsfield_air(image: MetaTensor, method: Method, domain: str | None) -> None:
    """Refuse an input without a stated modality (a NIfTI file) that ``method`` would
    read as a CT in HU although no voxel of it is air (:func:`range_without_hounsfield_air`):
    an MR in 0-255, or a CT stored with an offset (HU + 1024).

    Raises:
        InputError: Naming the file, the range found and ``--force-modality``.
    """
    found = range_without_hounsfield_air(image.as_tensor())
    if found is None:
        return
    low, high = found
    taken = f" (its input domain {domain!r} under this condition)" if domain else ""
    raise InputError(
        f"{image.meta.get('filename_or_obj', 'the input')}: no voxel is at or below "
        f"{HOUNSFIELD_AIR:g} (its values run from {low:.4g} to {high:.4g}), so it is not "
        f"a CT in HU, whose air is about -1000 HU; {method.id!r} takes CT input in "
        f"HU{taken}. Give a CT in HU (convert one stored with an offset, such as HU + "
        "1024, first; for an MR, a condition that translates from MR), or pass "
        "--force-modality (force_modality=True in Python) if it is a CT in HU without "
        "air (cropped inside the body)"
    )


def _require_no_hounsfield_air(image: MetaTensor, method: Method) -> None:
    """Refuse an input without a stated modality (a NIfTI file) that an MR method would
    translate although it is plainly a CT in HU: a large share of its voxels at air's
    -1000 HU, which no MR magnitude image has.

    Raises:
        InputError: Naming the file, the share found and ``--force-modality``.
    """
    import torch

    values = image.as_tensor()
    if not values.is_floating_point() and not values.dtype.is_signed:
        return  # unsigned: no negative value at all
    flat = values.detach().reshape(-1)
    step = 1 << 24  # a bounded temporary, whatever the volume's size
    below = sum(
        int(torch.count_nonzero(flat[i : i + step] <= HOUNSFIELD_AIR))
        for i in range(0, flat.numel(), step)
    )
    share = below / max(flat.numel(), 1)
    if share < HOUNSFIELD_AIR_SHARE:
        return
    raise InputError(
        f"{image.meta.get('filename_or_obj', 'the input')}: {share:.0%} of its voxels are "
        f"at or below {HOUNSFIELD_AIR:g}, as the air of a CT in HU is; {method.id!r} "
        "takes MR input. Give an MR volume, or pass --force-modality "
        "(force_modality=True in Python) if this is MR in unusual units"
    )


def require_engine(engine: object) -> SlidingWindowEngine | None:
    """``engine`` when it is ``None`` or a :class:`SlidingWindowEngine`; anything else
    (a device name, a settings object) is refused with what to pass."""
    from medi2i.engine import SlidingWindowEngine

    if engine is None or isinstance(engine, SlidingWindowEngine):
        return engine
    raise OptionsError(
        f"engine= takes a medi2i SlidingWindowEngine (to reuse one across volumes), not "
        f"{type(engine).__name__} {engine!r}; the device goes in settings "
        "(InferenceSettings(device=...))"
    )
