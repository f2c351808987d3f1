"""The contract check every method plugin runs on its own method classes.

Example (in a plugin's tests)::

    from medi2i.testing import check_method_contract
    from medi2i_mine.method import MyMethod

    def test_contract() -> None:
        check_method_contract(MyMethod, options={"roi_size": (16, 16, 16)})
"""

from __future__ import annotations

import json
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from pydantic import BaseModel

from medi2i.errors import Medi2iError
from medi2i.grid import Grid
from medi2i.hookspecs import hookimpl
from medi2i.method import DomainSpec, Method, MethodClass, Output, Training
from medi2i.settings import InferenceSettings
from medi2i.testing.contract_fit import fit_hook, fitted_before_predicting, own_fit
from medi2i.testing.volumes import make_volume

if TYPE_CHECKING:
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.registry import Registry

CONTRACT_SETTINGS = InferenceSettings(device="cpu", amp=False, progress=False)
"""Inference settings of the check: CPU, full precision, no progress bar."""


def check_method_contract(
    method_cls: MethodClass,
    *,
    options: Mapping[str, object] | None = None,
    shape: tuple[int, int, int] = (20, 18, 16),
    condition: Mapping[str, object] | None = None,
    settings: InferenceSettings | None = None,
    prepare: Callable[[Method], None] | None = None,
    domains: Sequence[DomainSpec | str] | None = None,
) -> None:
    """Check that ``method_cls`` keeps the :class:`medi2i.Method` contract.

    Properties checked, each failing with its own message: the class attributes are
    valid; the options (defaults, or ``options``) construct; ``describe()`` serializes
    to JSON; predicting a :func:`make_volume` input (mapped to HU, with air, for a
    method or direction that takes CT in HU) returns every output that
    :meth:`~medi2i.Method.outputs` declares, each a finite ``MetaTensor`` of a
    floating-point dtype (as the method hands it over, before the core writes it as
    float32) with its spec's channels on ``method.output_grid(input grid)``, leaving the
    input unchanged;
    each output of a method with :class:`medi2i.DomainIntensities` names its domain
    (the one ``postprocess`` writes it in the units of);
    and a save/load round trip through a model folder keeps the options and domains
    and gives the same outputs; a method declaring ``pointwise = True`` gives the same
    network output on a volume as on each of its slices alone; for a
    ``Training.FIT`` method, ``prepare`` (the fit) changes ``state_values()`` or
    ``state_tensors()``. Given no ``prepare``, the check fits a ``Training.FIT`` method
    itself with the hook of its data kind (``fit``, ``fit_pairs``, ``fit_domains``) on
    its own test volumes and requires the same; a method of data kind ``none``, which
    may also predict unfitted, is predicted unfitted and the fit is checked on a second
    instance.

    An unpaired or multi-domain method is given its domains first (``domains``, or
    the toy domains of :func:`medi2i.testing.default_domains`), as training would.

    Args:
        method_cls: The method class to check.
        options: Options to construct it with (e.g. a small ``roi_size``); its defaults
            when ``None``.
        shape: Spatial shape of the test volume, in voxels.
        condition: Predict-time condition for conditioned methods.
        settings: Inference settings; CPU, no AMP, no progress bar by default.
        prepare: Called on the new instance before predicting, e.g. to fit a method
            that must be fitted first. For a ``Training.FIT`` method it must change
            ``state_values()`` or ``state_tensors()`` (what the model folder keeps);
            without it the check fits such a method on its own volumes (pass it when
            the method cannot fit on :func:`make_volume` blobs).
        domains: The domains of an unpaired or multi-domain method, in label order.

    Raises:
        AssertionError: A property does not hold; the message says which.
    """
    _check_class(method_cls)
    method = _construct(method_cls, options)
    _give_domains(method, domains)
    if prepare is not None:
        _prepare(method, prepare, settings)
    elif method.training is Training.FIT:
        fitted = method if fitted_before_predicting(method) else _construct(method_cls, options)
        _give_domains(fitted, domains)
        _fit_itself(fitted, condition, shape, settings)
    _materialize(method, settings)
    image = _contract_input(method, condition, shape)
    outputs = _predict(method, image, condition=condition, settings=settings)
    for declared in _declared(method, condition):
        _check_output(method, image, outputs, declared, condition)
        _check_output_domain(method, declared)
    _check_repeatable(method, image, outputs, condition=condition, settings=settings)
    _check_round_trip(method, image, outputs, condition=condition, settings=settings)
    _check_pointwise(method, image, condition)


def _prepare(
    method: Method[Any, Any],
    prepare: Callable[[Method], None],
    settings: InferenceSettings | None,
    *,
    own: bool = False,
) -> None:
    """Run ``prepare`` (``own``: the check's own fit); for a ``Training.FIT`` method,
    require that it changed ``state_values()``/``state_tensors()``: a fit that stores
    nothing there would be saved as a "fitted" model that predicts with its initial
    values. The check's volumes differ from any default, so a real fit on them changes
    some value."""
    if method.training is not Training.FIT:
        prepare(method)
        return
    _materialize(method, settings)  # the network is built once, before either snapshot
    try:
        before = _saved_state(method)
    except Exception:  # nothing to save before the fit: the round trip checks the rest
        prepare(method)
        return
    prepare(method)
    if not _same_state(before, _saved_state(method)):
        return
    if own:
        raise AssertionError(
            f"{method.id}: state_values()/state_tensors() are the same after the check fitted "
            f"it with {fit_hook(method)}() on its own test volumes as before, so a saved model "
            "would predict with its initial values; store what the fit learns in state_values "
            "(or state_tensors)"
        )
    raise AssertionError(
        f"{method.id}: state_values()/state_tensors() are the same after prepare (the "
        "fit) as before, so a saved model would predict with its initial values; store "
        "what fit learns in state_values (or state_tensors) and fit in prepare"
    )


def _fit_itself(
    method: Method[Any, Any],
    condition: Mapping[str, object] | None,
    shape: tuple[int, int, int],
    settings: InferenceSettings | None,
) -> None:
    """Fit a ``Training.FIT`` method given no ``prepare`` on the check's own volumes
    (:mod:`medi2i.testing.contract_fit`), requiring the fit to change its saved state."""

    def volume(fitted: Method[Any, Any], seed: int) -> MetaTensor:
        return _contract_input(fitted, condition, shape, seed=seed)

    _prepare(method, own_fit(volume, shape), settings, own=True)


def _contract_input(
    method: Method[Any, Any],
    condition: Mapping[str, object] | None,
    shape: tuple[int, int, int],
    *,
    seed: int = 0,
) -> MetaTensor:
    """The test volume: :func:`make_volume` blobs (about 100 to 1000), mapped to HU
    (air at -1000) when the method takes CT in HU under ``condition`` (the CT→MR
    direction of a two-way model), as predict's modality check asks of its input."""
    from medi2i.prediction_checks import expected_input
    from medi2i.testing.domain_cases import CT_OFFSET_HU, CT_SLOPE

    image = make_volume(shape, seed=seed)
    domain = method.input_domain(method.parse_condition(condition))
    _, hounsfield = expected_input(method, domain)
    return cast("MetaTensor", image * CT_SLOPE + CT_OFFSET_HU) if hounsfield else image


def _materialize(method: Method[Any, Any], settings: InferenceSettings | None) -> None:
    """Build what the method builds on first use (a ``PatchNetworkMethod``'s network)
    now, under another seed than the one the core seeds predict with: a reloaded method
    that lost its weights and builds them afresh in predict must not come out equal by
    chance."""
    import torch

    seed = (settings or CONTRACT_SETTINGS).seed + 1
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        method.training_modules()
        method.state_tensors()


def _check_pointwise(
    method: Method[Any, Any], image: MetaTensor, condition: Mapping[str, object] | None
) -> None:
    """A method declaring ``pointwise = True`` is run in slabs of whole slices, so its
    network's output at a voxel must not depend on other voxels: its forward on a volume
    must equal its forward on each slice alone."""
    import torch

    from medi2i.patch_network import PatchNetworkMethod

    if not (isinstance(method, PatchNetworkMethod) and method.pointwise):
        return
    if method.output_scale != (1.0, 1.0, 1.0):
        return  # run through the sliding window, not in slabs
    parsed = method.parse_condition(condition)
    volume = image.as_tensor()[None, :, :8, :8, :6].float()
    method.network.eval()
    with torch.no_grad():
        whole = method.forward(volume, parsed)
        try:
            sliced = torch.cat(
                [method.forward(volume[..., k : k + 1], parsed) for k in range(volume.shape[-1])],
                dim=-1,
            )
        except RuntimeError as exc:
            raise AssertionError(
                f"{method.id} declares pointwise = True, but its network's output at a voxel "
                f"depends on other voxels (its forward fails on one slice alone: {exc}); "
                "set pointwise = False"
            ) from exc
    if whole.shape != sliced.shape or not torch.allclose(whole, sliced, rtol=1e-4, atol=1e-5):
        difference = (
            float((whole - sliced).abs().max()) if whole.shape == sliced.shape else float("inf")
        )
        raise AssertionError(
            f"{method.id} declares pointwise = True, but its network's output at a voxel "
            f"depends on other voxels (its forward on a volume and on each slice alone differ "
            f"by up to {difference:.3g}); it would change where the core cuts its slabs: set "
            "pointwise = False"
        )


def _check_class(method_cls: MethodClass) -> None:
    if not (isinstance(method_cls, type) and issubclass(method_cls, Method)):
        raise AssertionError(f"{method_cls!r} is not a subclass of medi2i.Method")
    try:
        method_cls.validate_class()
    except TypeError as exc:
        raise AssertionError(f"method class {method_cls.__qualname__} is invalid: {exc}") from exc
    try:
        json.loads(method_cls.describe().model_dump_json())
    except Exception as exc:
        raise AssertionError(
            f"{method_cls.id}.describe() does not serialize to JSON "
            f"(check its Options and Condition models): {exc}"
        ) from exc


def _construct(method_cls: MethodClass, options: Mapping[str, object] | None) -> Method[Any, Any]:
    what = "the given options" if options is not None else "its default options"
    try:
        return method_cls(options)
    except Medi2iError as exc:
        raise AssertionError(f"{method_cls.id} does not construct with {what}: {exc}") from exc


def _give_domains(method: Method[Any, Any], domains: Sequence[DomainSpec | str] | None) -> None:
    from medi2i.testing.domain_cases import default_domains

    chosen = domains if domains is not None else default_domains(method.data)
    if not chosen or (domains is None and method.domains):
        return
    try:
        method.use_domains(chosen)
    except Medi2iError as exc:
        raise AssertionError(f"{method.id} does not take the domains {chosen}: {exc}") from exc


def _declared(
    method: Method[Any, Any], condition: Mapping[str, object] | None
) -> tuple[Output, ...]:
    return method.outputs(method.parse_condition(condition))


def _predict(
    method: Method[Any, Any],
    image: MetaTensor,
    *,
    condition: Mapping[str, object] | None,
    settings: InferenceSettings | None,
) -> dict[str, MetaTensor]:
    import torch

    from medi2i.errors import OutputError
    from medi2i.prediction import predict_outputs
    from medi2i.trained_state import UntrainedWeightsWarning

    before = image.as_tensor().clone()
    try:
        with warnings.catch_warnings(), _handed_dtypes(method) as dtypes:
            warnings.simplefilter("ignore", UntrainedWeightsWarning)  # any weights will do
            outputs = predict_outputs(
                method, image, settings=settings or CONTRACT_SETTINGS, condition=condition
            )
    except OutputError as exc:  # a non-finite output, or one the core cannot place
        raise AssertionError(f"{method.id}: the predict path refused its output: {exc}") from None
    except Medi2iError as exc:
        raise AssertionError(f"{method.id}: predicting failed: {exc}") from exc
    except Exception as exc:  # the method's own code raised: still a broken property
        raise AssertionError(f"{method.id}: predicting raised {type(exc).__name__}: {exc}") from exc
    if not _same_values(image.as_tensor(), before):
        raise AssertionError(f"{method.id} modified its input volume in place")
    for name, dtype in zip(outputs, dtypes, strict=False):
        if isinstance(dtype, torch.dtype) and not dtype.is_floating_point:
            label = f"output {name!r}" if name else "output"
            raise AssertionError(
                f"{method.id}: its {label} has dtype {dtype}, not a floating-point type; "
                "return float values (e.g. .float()), which medi2i writes as float32"
            )
    return outputs


@contextmanager
def _handed_dtypes(method: Method[Any, Any]) -> Iterator[list[object]]:
    """The dtype of what the method hands the core for each output (what its postprocess
    returns), read while predicting: the core turns an integer or boolean output into
    float32 in silence, so the outputs it returns no longer tell."""
    dtypes: list[object] = []
    postprocess = method.postprocess

    def recording(*args: Any, **kwargs: Any) -> Any:
        result = postprocess(*args, **kwargs)
        dtypes.append(getattr(result, "dtype", None))  # one per output, in their order
        return result

    vars(method)["postprocess"] = recording  # this instance only, for this prediction
    try:
        yield dtypes
    finally:
        vars(method).pop("postprocess", None)


def _check_output(
    method: Method[Any, Any],
    image: MetaTensor,
    outputs: Mapping[str, torch.Tensor],
    declared: Output,
    condition: Mapping[str, object] | None,
) -> None:
    from monai.data.meta_tensor import MetaTensor

    label = f"output {declared.name!r}" if declared.name else "output"
    name = f"{method.id}: {label}"
    output = outputs.get(declared.name)
    if not isinstance(output, MetaTensor):
        raise AssertionError(
            f"{name}: the predict path returned {type(output).__name__}, not a MetaTensor"
        )
    if output.ndim != 4:
        raise AssertionError(f"{name} has shape {tuple(output.shape)}, not channel-first 3D")
    channels = declared.spec.channels
    spec = "output_spec" if declared.spec == method.output_spec else "spec in outputs()"
    if output.shape[0] != channels:
        raise AssertionError(
            f"{name} has {output.shape[0]} channels, its {spec} declares {channels}"
        )
    if not bool(output.isfinite().all()):
        raise AssertionError(f"{name} has NaN or infinite values")
    if output.numel() > 1 and bool((output == output.reshape(-1)[0]).all()):
        raise AssertionError(
            f"{name} is constant ({float(output.reshape(-1)[0]):g} everywhere) for a varying "
            "input; medi2i refuses to write such an output"
        )
    expected = method.output_grid(Grid.of(image), method.parse_condition(condition))
    actual = Grid.of(output)
    if not actual.same_as(expected):
        raise AssertionError(
            f"{name} grid (shape {actual.shape}, affine\n{actual.affine}) is not "
            "method.output_grid(input grid, condition) "
            f"(shape {expected.shape}, affine\n{expected.affine})"
        )


def _check_output_domain(method: Method[Any, Any], declared: Output) -> None:
    """A method whose intensities come from :class:`medi2i.DomainIntensities` (or
    ``ScaledDomainIntensities``) writes an output in its domain's units (HU, a scanner's
    scale) only if :meth:`~medi2i.Method.outputs` names that domain: without it the
    core passes ``domain=None`` to ``postprocess``, which leaves the network range."""
    from medi2i.intensity import DomainIntensities

    if not isinstance(method, DomainIntensities) or not method.domains:
        return
    label = f"output {declared.name!r}" if declared.name else "output"
    if declared.domain is None:  # (a domain it lacks fails in postprocess already)
        raise AssertionError(
            f"{method.id}: outputs() declares its {label} without a domain, so the "
            "DomainIntensities postprocess leaves it in the network range instead of the "
            "target domain's units; give it one: Output(name, spec, domain=<target domain>)"
        )


def _check_round_trip(
    method: Method[Any, Any],
    image: MetaTensor,
    outputs: Mapping[str, MetaTensor],
    *,
    condition: Mapping[str, object] | None,
    settings: InferenceSettings | None,
) -> None:
    from medi2i.model_folder import load_model, save_model

    with tempfile.TemporaryDirectory(prefix="medi2i-contract-") as tmp:
        try:
            folder = save_model(method, Path(tmp) / "model")
        except Medi2iError as exc:  # e.g. fitted values its JSON cannot keep
            raise AssertionError(f"{method.id}: its model folder cannot be saved: {exc}") from exc
        try:
            loaded = load_model(folder, registry=_registry_of(type(method)))
        except Medi2iError as exc:
            raise AssertionError(f"{method.id}: its model folder does not load: {exc}") from exc
    if type(loaded) is not type(method):
        raise AssertionError(f"{method.id}: loading the model folder gave {type(loaded).__name__}")
    saved, restored = _options_of(method), _options_of(loaded)
    if restored != saved:
        raise AssertionError(
            f"{method.id}: options changed in the model folder: {saved!r} became {restored!r}"
        )
    if loaded.domains != method.domains:
        raise AssertionError(
            f"{method.id}: domains changed in the model folder: {list(method.domains)} "
            f"became {list(loaded.domains)}"
        )
    again = _predict(loaded, image, condition=condition, settings=settings)
    differing = _differing(outputs, again)
    if differing is not None:
        raise AssertionError(
            f"{method.id}: the method loaded from its model folder predicts{differing} "
            "differently from the instance it was saved from, which predicts the same twice "
            "(so neither randomness nor a predict that changes the method's state explains "
            f"it); {_STATE_NOT_SAVED}"
        )


_STATE_NOT_SAVED = (
    "state_values/state_tensors do not hold all of its state: return everything predict "
    "reads that is not rebuilt from the options (fitted values, weights) and restore it in "
    "load_state_values/load_state_tensors"
)
"""Why a reloaded method predicts otherwise when the instance itself is repeatable."""

_NOT_REPEATABLE = (
    "its predict is not deterministic, or it changes the method's state. Draw "
    "predict-time randomness from context.seed (e.g. "
    "torch.Generator().manual_seed(context.seed)) or from torch's global generator, which "
    "the core seeds from the settings' seed for each prediction, never from a generator of "
    "your own; a predict that changes the method's attributes (a fit to the input, a "
    "counter) sets restores_state = True, so the core restores state_values/state_tensors "
    "after every volume"
)
"""Why one instance predicts the same volume differently twice."""

_STATE_CHANGED = (
    "its predict changes the method's state (state_values()/state_tensors() differ after "
    "predicting), so one volume leaks into the next; set restores_state = True, so the core "
    "restores them after every volume, or keep predict from changing them"
)
"""Why one instance predicts differently twice when its saved state moved."""


def _check_repeatable(
    method: Method[Any, Any],
    image: MetaTensor,
    outputs: Mapping[str, MetaTensor],
    *,
    condition: Mapping[str, object] | None,
    settings: InferenceSettings | None,
) -> None:
    """The same instance predicts the same volume the same way a second time."""
    reason = _unrepeatable(
        method, outputs, lambda: _predict(method, image, condition=condition, settings=settings)
    )
    if reason is not None:
        raise AssertionError(f"{method.id}: {reason}")


def _unrepeatable(
    method: Method[Any, Any],
    outputs: Mapping[str, MetaTensor],
    predict: Callable[[], Mapping[str, MetaTensor]],
) -> str | None:
    """Predict again with ``method`` and say why the outputs differ from ``outputs``
    (randomness, or a predict that changes the saved state), or ``None`` if they do not."""
    before = _saved_state(method)
    differing = _differing(outputs, predict())
    if differing is None:
        return None
    changed = not _same_state(before, _saved_state(method))
    return (
        f"the same instance predicts{differing} differently the second time it is given "
        f"the same volume: {_STATE_CHANGED if changed else _NOT_REPEATABLE}"
    )


def _differing(expected: Mapping[str, MetaTensor], actual: Mapping[str, MetaTensor]) -> str | None:
    """`` output 'name'`` (or ``""`` for the unnamed one) of the first output that
    differs, or ``None`` when all agree."""
    for name, output in expected.items():
        other = actual.get(name)
        if other is None or other.shape != output.shape or not _close(other, output):
            return f" output {name!r}" if name else ""
    return None


def _saved_state(method: Method[Any, Any]) -> tuple[Any, dict[str, torch.Tensor]]:
    import copy

    tensors = {name: value.detach().clone() for name, value in method.state_tensors().items()}
    return copy.deepcopy(method.state_values()), tensors


def _same_state(
    one: tuple[Any, dict[str, torch.Tensor]], other: tuple[Any, dict[str, torch.Tensor]]
) -> bool:
    import torch

    (values, tensors), (other_values, other_tensors) = one, other
    return (
        values == other_values
        and set(tensors) == set(other_tensors)
        and all(
            tensors[name].shape == other_tensors[name].shape
            and torch.equal(tensors[name], other_tensors[name])
            for name in tensors
        )
    )


def isolated_registry(*plugins: object, strict: bool = False) -> Registry:
    """A registry of only ``plugins``: no built-ins, no installed entry points.

    Use it to test a plugin's hooks without installing it.

    Args:
        *plugins: Modules or objects holding ``@medi2i.hookimpl`` functions; each is
            named by its ``__name__`` (``plugin-<n>`` without one).
        strict: Make a plugin whose hook fails an error instead of a skipped failure.

    Example:
        >>> import types, medi2i
        >>> mine = types.ModuleType("mine")
        >>> isolated_registry(mine).methods
        {}
    """
    import pluggy

    from medi2i import hookspecs
    from medi2i.plugins import PluginSet
    from medi2i.registry import Registry

    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    for number, plugin in enumerate(plugins):
        manager.register(plugin, name=getattr(plugin, "__name__", None) or f"plugin-{number}")
    return Registry(PluginSet(manager, strict=strict))


def _registry_of(method_cls: MethodClass) -> Registry:
    """A registry holding only ``method_cls``, so an uninstalled class can be loaded."""
    return isolated_registry(_SingleMethodPlugin(method_cls), strict=True)


class _SingleMethodPlugin:
    def __init__(self, method_cls: MethodClass) -> None:
        self.method_cls = method_cls
        self.__name__ = f"contract-check:{method_cls.id}"

    @hookimpl
    def register_methods(self, register: Callable[[MethodClass], None]) -> None:
        register(self.method_cls)


def _options_of(method: Method[Any, Any]) -> BaseModel:
    options: BaseModel = method.options
    return options


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def _close(a: MetaTensor, b: MetaTensor) -> bool:
    """Equal up to float round-off (the same computation may use other CPU kernels)."""
    import torch

    expected = b.as_tensor()
    scale = float(expected.abs().max()) if expected.numel() else 0.0
    return bool(torch.allclose(a.as_tensor(), expected, rtol=1e-5, atol=1e-6 * max(scale, 1.0)))
