"""Run a MONAI bundle that ``medi2i export --format monai-bundle`` wrote
(:mod:`medi2i.bundle_export`): what its ``configs/inference.json`` calls.

``network_def`` is the exported window function (``models/model.pt2``). The windows it
is run on are MONAI's ``SlidingWindowInferer`` with the settings medi2i predicts with
(window size, overlap, Gaussian blending, edge replication); medi2i's engine blends bit
for bit as that inferer does. What happens around the windows is the method's own
Python (reorientation and resampling to its working grid, intensity normalization
fitted on the training data, the way back to the input's grid and units), so the
bundle's ``run`` (:func:`run_bundle`) calls medi2i for it, with MONAI's inferer and the
exported network in place of medi2i's engine and network: ``required_packages_version``
names medi2i and the method's plugin.

From the bundle folder::

    python -m monai.bundle run --config_file configs/inference.json \\
        --meta_file configs/metadata.json --input_path in.nii.gz --output_path out.nii.gz
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medi2i.engine import SlidingWindowEngine
from medi2i.errors import ExportError, ModelFormatError, OptionsError
from medi2i.settings import InferenceSettings

if TYPE_CHECKING:
    from pydantic import BaseModel

    from medi2i.method import Method


def load_program(bundle_root: str | Path) -> torch.nn.Module:
    """The bundle's program (``models/model.pt2`` under ``bundle_root``) as a module: the
    ``program`` of its ``inference.json``.

    Raises:
        ModelFormatError: There is no such file (a run from outside the bundle folder
            without ``--bundle_root``); under ``python -m monai.bundle`` the message is
            printed as one line on stderr and the process exits with status 1 instead,
            rather than in MONAI's "Failed to evaluate" traceback.
    """
    path = Path(bundle_root) / "models" / "model.pt2"
    if not path.is_file():
        message = (
            f"{path}: no such file (bundle_root is {str(bundle_root)!r}); run from the "
            "bundle folder or pass --bundle_root BUNDLE to python -m monai.bundle"
        )
        if _under_monai_bundle_command():
            print(f"Error: {message}", file=sys.stderr)
            raise SystemExit(ModelFormatError.exit_code)
        raise ModelFormatError(message)
    module: torch.nn.Module = torch.export.load(str(path)).module()
    return module


def _under_monai_bundle_command() -> bool:
    """Whether this process is ``python -m monai.bundle``."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(spec, "name", None) in ("monai.bundle.__main__", "monai.bundle")


def _uniform(value: float | Sequence[float], name: str) -> float:
    """A MONAI inferer's ``overlap`` or ``sigma_scale`` as one number (medi2i's settings
    hold one for every axis)."""
    values = [float(v) for v in value] if isinstance(value, Sequence) else [float(value)]
    if not values or any(v != values[0] for v in values):
        raise OptionsError(
            f"the bundle's inferer has {name} {list(values)}, which differs by axis; give "
            f"one {name} for every axis in configs/inference.json"
        )
    return values[0]


def inferer_settings(
    inferer: Callable[..., Any], network: torch.nn.Module, *, force_modality: bool = False
) -> InferenceSettings:
    """The settings the bundle's ``inferer`` runs ``network`` on the windows with, as
    medi2i's provenance records them: its window size, overlap, blending, Gaussian
    sigma and windows per batch, the device it runs the network on (``sw_device``,
    else the network's), and float32 (the bundle runs no mixed precision, so ``amp``
    is off). What ``inference.json`` sets is what ran, edited or not.

    Raises:
        OptionsError: A setting medi2i cannot record (an overlap that differs by axis,
            a blending mode other than ``gaussian`` or ``constant``).
    """
    from pydantic import ValidationError

    roi = getattr(inferer, "roi_size", None)
    mode = getattr(inferer, "mode", "gaussian")
    device = getattr(inferer, "sw_device", None)
    if device is None:
        device = next((p.device for p in network.parameters()), "cpu")
    batch = getattr(inferer, "sw_batch_size", None)
    fields = {
        "roi_size": None if roi is None else tuple(int(n) for n in roi),
        "sw_batch_size": None if batch is None else int(batch),
        "overlap": _uniform(getattr(inferer, "overlap", 0.25), "overlap"),
        "blend": str(getattr(mode, "value", mode)),
        "sigma_scale": _uniform(getattr(inferer, "sigma_scale", 0.125), "sigma_scale"),
        "device": str(device),
        "amp": False,
    }
    try:
        return InferenceSettings(progress=False, force_modality=force_modality, **fields)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise OptionsError(
            f"the bundle's inferer ({where}: {error['msg']}) is not one medi2i can run and "
            "record; fix it in configs/inference.json"
        ) from None


class _InfererEngine(SlidingWindowEngine):
    """An engine that runs a MONAI inferer with a given network on the windows, in place
    of the method's predictor (what the exported network reproduces)."""

    def __init__(
        self, network: torch.nn.Module, inferer: Callable[..., Any], *, shrinks: bool = False
    ) -> None:
        super().__init__(settings=InferenceSettings(device="cpu", progress=False))
        self._network = network
        self._inferer = inferer
        self._shrinks = shrinks  # the program takes the engine's shrunk windows

    def run(
        self,
        image: torch.Tensor,
        predictor: Callable[[torch.Tensor], torch.Tensor],
        **_: Any,
    ) -> torch.Tensor:
        volume = image.as_tensor() if hasattr(image, "as_tensor") else image
        self._network.eval()
        with torch.no_grad():
            output = self._shrunk(volume)(volume.float()[None], self._network)
        result: torch.Tensor = torch.as_tensor(output)[0].float().cpu()
        return result

    def _shrunk(self, volume: torch.Tensor) -> Callable[..., Any]:
        """The inferer with the window medi2i's engine uses on this volume: shrunk along
        axes where the volume is shorter (MONAI's inferer would pad the volume to the
        full window instead, which a network normalizing by window statistics feels),
        when the exported program takes that size (``shrinks_by`` in its description);
        else the inferer as given."""
        import copy

        from medi2i.engine import window_size

        roi = getattr(self._inferer, "roi_size", None)
        if not self._shrinks or roi is None or len(roi) != 3:
            return self._inferer
        shrunk = window_size(tuple(volume.shape[1:]), tuple(int(n) for n in roi))
        if shrunk == tuple(int(n) for n in roi):
            return self._inferer
        inferer: Any = copy.copy(self._inferer)
        inferer.roi_size = shrunk
        inferer.roi_weight_map = None  # the full window's blending weights: made anew
        shrunk_inferer: Callable[..., Any] = inferer
        return shrunk_inferer

    def run_pointwise(
        self,
        image: torch.Tensor,
        predictor: Callable[[torch.Tensor], torch.Tensor],
        **kwargs: Any,
    ) -> torch.Tensor:
        return self.run(image, predictor, **kwargs)


def _program_description(model: Path) -> dict[str, Any]:
    """The description of the bundle's program (``models/model.pt2.json``, beside the
    model ``model``); empty for a bundle written before it had one."""
    description = model.parent / "model.pt2.json"
    if not description.is_file():
        return {}
    try:
        found = json.loads(description.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{description}: not a readable description ({exc})") from None
    if not isinstance(found, dict):
        raise ModelFormatError(f"{description}: not the description of a medi2i export")
    return found


def _check_program(program: Path, description: Mapping[str, Any]) -> str:
    """The SHA-256 of the bundle's program ``program``, checked against the one its
    description recorded at export (a bundle exported before descriptions held it is
    not checked).

    Raises:
        ModelFormatError: The program is not the one the bundle was exported with
            (another export's ``.pt2`` put in its place, a damaged file).
    """
    from medi2i.hashing import file_sha256

    try:
        found = file_sha256(program)
    except OSError as exc:
        raise ModelFormatError(f"{program}: cannot read the bundle's program ({exc})") from None
    expected = description.get("sha256")
    if expected is not None and found != expected:
        raise ModelFormatError(
            f"{program}: its SHA-256 is not the one {program.name}.json recorded at export "
            "(another program put in its place, or a damaged file); export the bundle "
            "again (medi2i export MODEL BUNDLE --format monai-bundle)"
        )
    return found


def _check_model(model: Path, description: Mapping[str, Any]) -> None:
    """Refuse a model folder other than the one the bundle's program was exported from
    (its content's SHA-256, ``model_sha256`` in the description; a bundle exported
    before descriptions held it is not checked): another folder's pre- and
    postprocessing around the exported network gave wrong numbers, and another
    method's folder could not run it at all.

    Raises:
        ModelFormatError: ``model`` is not the exported model folder.
    """
    from medi2i.export import model_sha256

    expected = description.get("model_sha256")
    if expected is None:
        return
    if model_sha256(model) != expected:
        raise ModelFormatError(
            f"{model}: not the model folder the bundle was exported with (its content's "
            "SHA-256 is not the one model.pt2.json recorded at export: another model put "
            "in its place, or an edited one); export the bundle again (medi2i export "
            "MODEL BUNDLE --format monai-bundle)"
        )


def _record_program(output: Path, program: Path, sha256: str) -> None:
    """Make the provenance sidecar of ``output`` name the program that ran the windows
    (its weights): the model folder's weights did not run."""
    import os

    from medi2i.io.atomic import atomic_path
    from medi2i.provenance import sidecar_path

    sidecar = sidecar_path(output)
    record = json.loads(sidecar.read_text(encoding="utf-8"))
    record["weights_sha256"] = sha256
    record["program"] = {"path": os.fspath(program.absolute()), "sha256": sha256}
    with atomic_path(sidecar) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")


def _program_shrinks(description: Mapping[str, Any]) -> bool:
    """Whether the bundle's program takes shrunk windows, as its description says."""
    window = description.get("window")
    return isinstance(window, dict) and window.get("shrinks_by") is not None


def _run_condition(
    method: Method[Any, Any],
    program: Path,
    description: Mapping[str, Any],
    condition: Mapping[str, object] | None,
) -> BaseModel:
    """The condition the bundle runs: the one its program was exported for when none
    is given, and a different one refused (the program holds one condition's network;
    another condition's pre- and postprocessing around it gave the wrong numbers).
    Both are parsed by the method's ``Condition``, so equal values spelled otherwise
    pass. A bundle whose program has no description runs what it is given."""
    exported_raw = description.get("condition")
    parsed: BaseModel
    if not isinstance(exported_raw, Mapping):
        parsed = method.parse_condition(condition)
        return parsed
    exported: BaseModel = method.parse_condition(exported_raw)
    if not condition:
        return exported
    parsed = method.parse_condition(condition)
    if parsed != exported:
        raise OptionsError(
            f"{program} was exported for the condition {exported.model_dump(mode='json')}, "
            f"this run asks for {parsed.model_dump(mode='json')}; export the bundle for it "
            "(medi2i export --format monai-bundle --condition key=value)"
        )
    return parsed


def predict_file(
    model: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    network: torch.nn.Module,
    inferer: Callable[..., Any],
    *,
    condition: Mapping[str, object] | None = None,
    plugins: Sequence[str] = (),
    overwrite: bool = False,
    force_modality: bool = False,
) -> Path:
    """The bundle's ``run``: medi2i's predict path with ``inferer`` running ``network``
    on the windows instead of medi2i's engine and the method's own network. ``plugins``
    are installed plugins to load by name (as ``medi2i --plugin NAME``) besides the
    default ones: the one that registers the model's method when it is opt-in.
    ``overwrite`` and ``force_modality`` are medi2i predict's. The provenance sidecar's
    ``weights_sha256`` (and ``program``) is the SHA-256 of ``models/model.pt2``, and its
    ``settings`` are the inferer's (:func:`inferer_settings`); medi2i's steps around the
    windows run on the CPU.

    Raises:
        ExportError: The model's method does not run its network on windows alone.
        ModelFormatError: ``models/model.pt2`` is not the program the bundle was
            exported with (its SHA-256 in ``models/model.pt2.json``), or ``model`` is
            not the model folder it was exported from (``model_sha256`` there).
        OptionsError: ``condition`` is not the one the bundle's program was exported
            for (``models/model.pt2.json``); none given runs that one. The inferer has
            a setting medi2i cannot record.
    """
    from medi2i.model_folder import load_model
    from medi2i.plugins import add_installed_plugin, load_plugins
    from medi2i.prediction import predict
    from medi2i.registry import Registry

    loaded = load_plugins()
    for name in plugins:
        add_installed_plugin(loaded, name)
    registry = Registry(loaded)
    description = _program_description(Path(model))
    program = Path(model).parent / "model.pt2"
    sha256 = _check_program(program, description)
    _check_model(Path(model), description)
    settings = inferer_settings(inferer, network, force_modality=force_modality)
    method = load_model(model, registry=registry)
    parsed = _run_condition(method, program, description, condition)
    refusal = getattr(method, "export_refusal", lambda _: "no window network")(parsed)
    if refusal:
        raise ExportError(f"method {method.id!r} cannot run from a bundle: {refusal}")
    written = predict(
        input_path,
        output_path,
        model=model,
        condition=parsed,
        settings=settings,
        engine=_InfererEngine(network, inferer, shrinks=_program_shrinks(description)),
        registry=registry,
        overwrite=overwrite,
    )
    _record_program(written, program, sha256)
    return written


_BUNDLE_FLAGS = {
    # medi2i predict's flags as a bundle's run takes them (the Python names that follow
    # them in messages are kept)
    "--overwrite": "--overwrite true to monai.bundle run",
    "--force-modality": "--force_modality true to monai.bundle run",
}


def _bundle_message(message: str) -> str:
    """``message`` with medi2i predict's flags replaced by the bundle run's."""
    import re

    return re.sub(r"--(?:overwrite|force-modality)\b", lambda m: _BUNDLE_FLAGS[m[0]], message)


def _flag(value: object, name: str) -> bool:
    """A config flag as ``monai.bundle run`` passes it (``--overwrite true`` gives the
    text ``"true"``, a bare ``--overwrite`` gives ``True``)."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise OptionsError(f"--{name} {value!r}: give --{name} true or --{name} false")


def run_bundle(
    *args: Any, overwrite: object = False, force_modality: object = False, **kwargs: Any
) -> Path:
    """The ``run`` of a bundle's ``inference.json``: :func:`predict_file`, with a medi2i
    error printed as one line on stderr and the process ended with its exit status
    (``SystemExit``), as ``medi2i predict`` does, rather than buried in MONAI's
    "Failed to evaluate" traceback. ``args`` and ``kwargs`` are :func:`predict_file`'s;
    ``overwrite`` and ``force_modality`` come as ``monai.bundle run`` passes them (a bool
    or the text ``true``/``false``). Call :func:`predict_file` from Python."""
    import sys

    from medi2i.errors import Medi2iError

    try:
        return predict_file(
            *args,
            overwrite=_flag(overwrite, "overwrite"),
            force_modality=_flag(force_modality, "force_modality"),
            **kwargs,
        )
    except Medi2iError as exc:
        print(f"Error: {_bundle_message(str(exc))}", file=sys.stderr)
        raise SystemExit(exc.exit_code) from None
