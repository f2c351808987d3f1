"""Export a trained network method as a MONAI bundle.

A MONAI bundle is a folder that MONAI's own tooling reads (``python -m monai.bundle
verify_metadata|verify_net_in_out|run``) and that MONAI Label and MONAI Deploy consume::

    BUNDLE/
      configs/metadata.json   network_data_format, versions, task, references
      configs/inference.json  the network, the sliding-window inferer, the run
      models/model.pt2        the network's window function (torch.export, as
                              ``medi2i export --format torch-export`` writes it)
      models/model.pt2.json   its description, with its SHA-256 (checked by ``run``)
      models/medi2i/          the medi2i model folder (or medi2i.zip): options and
                              fitted values
      docs/README.md          what the bundle does and how to run it

``network_def`` is the exported window function: MONAI instantiates it from the
``.pt2`` file with torch alone, so ``verify_net_in_out`` checks it without medi2i. The
windows it is run on are MONAI's ``SlidingWindowInferer`` with the settings medi2i
predicts with (window size, overlap, Gaussian blending, edge replication); medi2i's
engine blends bit for bit as that inferer does. What happens around the windows is
the method's own Python (reorientation and resampling to its working grid, intensity
normalization fitted on the training data, the way back to the input's grid and
units), so the bundle's ``run`` calls medi2i for it, with MONAI's inferer and the
exported network in place of medi2i's engine and network: ``required_packages_version``
names medi2i and the method's plugin.

Example:
    >>> export_bundle(load_model("run/model"), "run/model", "bundle")  # doctest: +SKIP

    then, from the bundle folder::

        python -m monai.bundle run --config_file configs/inference.json \\
            --meta_file configs/metadata.json --input_path in.nii.gz --output_path out.nii.gz
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medi2i.engine import DEFAULT_WINDOW_BATCH, SlidingWindowEngine
from medi2i.errors import ModelFormatError, OptionsError
from medi2i.export import EXPORT_REMEDY, ExportError, export_program, require_writable_target
from medi2i.settings import InferenceSettings

if TYPE_CHECKING:
    from pydantic import BaseModel

    from medi2i.method import Method
    from medi2i.registry import Registry

SCHEMA_URL = (
    "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/"
    "meta_schema_20240725.json"
)
"""The MONAI bundle metadata schema the metadata follows (MONAI's current one)."""


def export_bundle(
    method: Method[Any, Any],
    model: str | Path,
    folder: str | Path,
    *,
    condition: BaseModel | Mapping[str, object] | None = None,
    settings: InferenceSettings | None = None,
    registry: Registry | None = None,
    overwrite: bool = False,
) -> Path:
    """Write ``method`` (loaded from the model folder ``model``) as a MONAI bundle.

    Args:
        method: The loaded method.
        model: Its model folder (or zip), copied into the bundle for the steps around
            the network.
        folder: The bundle folder to create; it must not exist (unless ``overwrite``),
            nor be named like a file (``bundle.onnx``). Written in a temporary sibling
            and renamed at the end, so a failed export leaves nothing.
        condition: The predict-time condition the network is exported for.
        settings: The sliding-window settings the bundle's inferer uses (window size,
            overlap, blending); medi2i's defaults otherwise.
        registry: The registry the method was loaded with. When its plugin is not
            loaded by default (``--plugin NAME``), the bundle's run loads it by name.
        overwrite: Replace an existing bundle folder that medi2i exported, when it holds
            nothing but what the export wrote (or an empty folder): the new one is
            written in full beside it and swapped in; a failed export keeps the old.
            Any other folder, a bundle holding other files (a run's input and output)
            and a link are refused.

    Returns:
        The bundle folder.

    Raises:
        ExportError: The method cannot be exported (see :func:`medi2i.export.export_program`).
        OptionsError: ``folder`` exists and ``overwrite`` is not set, its name ends in
            a file's suffix, or the condition is invalid.
        OutputError: ``folder`` lies inside the model folder (or holds it), is not a
            bundle medi2i exported, holds files its export did not write, or is a
            link, and ``overwrite`` is set, its folder cannot be
            written to (checked before the work), or it appeared while the export
            ran (it is kept; the export's staging copy is removed).
    """
    from medi2i import __version__
    from medi2i.io.atomic import atomic_path, refusing_existing
    from medi2i.io.destinations import check_destination

    folder = Path(folder)
    _require_folder_name(folder)
    if overwrite:
        _require_replaceable_bundle(folder)
    elif folder.exists() or folder.is_symlink():
        raise OptionsError(
            f"{folder} exists; choose another bundle folder, or pass --overwrite "
            "(overwrite=True in Python) to replace it"
        )
    # the bundle holds a copy of the model folder: inside it, the copy would copy itself
    check_destination(folder, inputs=[Path(model)], overwrite=overwrite, folder=True)
    require_writable_target(folder)
    settings = settings or InferenceSettings()
    if settings.mirror_axes:
        raise ExportError(
            "test-time mirroring (mirror_axes) is not part of a MONAI sliding-window "
            "inferer; export without it"
        )
    if any(settings.reflect_padding):
        raise ExportError(
            "reflection padding (reflect_padding) is not part of a MONAI sliding-window "
            "inferer; export without it"
        )
    parsed = method.parse_condition(condition)
    # the folder was checked free, but the export takes seconds: a folder made there
    # meanwhile (empty or not) is kept and this export's staging copy removed; with
    # overwrite the finished staging folder is swapped in for the old bundle
    claim: AbstractContextManager[None] = (
        nullcontext() if overwrite else refusing_existing(empty_folders=False, remedy=EXPORT_REMEDY)
    )
    with claim, atomic_path(folder) as staging:
        (staging / "configs").mkdir(parents=True)
        (staging / "docs").mkdir()
        models = staging / "models"
        models.mkdir()
        result = export_program(method, models / "model.pt2", condition=parsed, model=model)
        copied = _copy_model(Path(model), models)
        roi = list(settings.roi_size or method.roi_size())  # type: ignore[attr-defined]
        metadata = _metadata(method, parsed, roi, result.max_difference, __version__)
        plugins = _plugins_to_load(method, registry)
        inference = _inference(roi, settings, json.loads(parsed.model_dump_json()), copied, plugins)
        for name, content in (("metadata.json", metadata), ("inference.json", inference)):
            (staging / "configs" / name).write_text(json.dumps(content, indent=2) + "\n")
        (staging / "docs" / "README.md").write_text(_readme(method, roi, parsed))
    return folder


FILE_SUFFIXES = frozenset(
    {".onnx", ".pt2", ".pt", ".pth", ".ckpt", ".safetensors", ".zip", ".tar", ".nii", ".gz"}
    | {".nrrd", ".nhdr", ".mha", ".mhd", ".dcm", ".json", ".yaml", ".yml", ".h5", ".npy"}
)
"""Suffixes of files medi2i reads or writes, which a bundle folder's name must not end in."""


def _require_folder_name(folder: Path) -> None:
    """Refuse a bundle folder named like a file (``bundle.onnx``, ``out.nii.gz``): the
    other formats' outputs are checked by suffix, and a folder under such a name is
    taken for a file by people and tools alike."""
    if folder.suffix.lower() in FILE_SUFFIXES:
        plain = folder.with_name(folder.name.split(".")[0] or "bundle")
        raise OptionsError(
            f"{folder}: --format monai-bundle writes a folder, but the name ends in "
            f"{folder.suffix} (a file's suffix); name the bundle folder without it, e.g. {plain}"
        )


BUNDLE_FILES = (
    "configs/metadata.json",
    "configs/inference.json",
    "docs/README.md",
    "models/model.pt2",
    "models/model.pt2.json",
)
"""The files :func:`export_bundle` writes, besides the model folder's copy."""
BUNDLE_FOLDERS = ("configs", "docs", "models")
MODEL_COPIES = ("models/medi2i", "models/medi2i.zip")
"""Where the export copies the model folder (or zip): all of it is the export's."""


def _require_replaceable_bundle(folder: Path) -> None:
    """Refuse to replace ``folder`` (``overwrite``) unless it is empty, or a bundle that
    medi2i exported (:func:`is_medi2i_bundle`) holding nothing but what the export
    wrote: overwrite consents to replacing an export, not to deleting a MONAI model-zoo
    bundle, nor the inputs and outputs a user ran the bundle on inside its folder (as
    its README shows). A link is never replaced through, even to such a bundle.

    Raises:
        OutputError: One line saying why, and what to do; nothing was deleted.
    """
    import os

    from medi2i.errors import OutputError

    if not (folder.exists() or folder.is_symlink()):
        return
    kept = "--overwrite replaces only a bundle folder that medi2i exported, so nothing was deleted"
    if folder.is_symlink():
        raise OutputError(
            f"{folder} is a symbolic link (to {os.readlink(folder)}), and a bundle is never "
            f"replaced through a link; {kept}: export to the folder it points to, or to a "
            "new folder"
        )
    if not folder.is_dir():
        raise OutputError(f"{folder} is not a folder; {kept}: choose another bundle folder")
    if not any(folder.iterdir()):
        return
    if not is_medi2i_bundle(folder):
        raise OutputError(
            f"{folder} is a folder that is not a bundle medi2i exported (no models/"
            f"model.pt2.json of medi2i's, or no medi2i in configs/metadata.json); {kept}: "
            "choose another bundle folder"
        )
    foreign = _files_not_exported(folder)
    if foreign:
        shown = ", ".join(foreign[:3]) + (
            f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        )
        raise OutputError(
            f"{folder} holds files the bundle export did not write ({shown}); {kept}: move "
            "them out of the bundle folder and export again, or export to a new folder"
        )


def is_medi2i_bundle(folder: Path) -> bool:
    """Whether ``folder`` is a MONAI bundle that medi2i exported: its
    ``models/model.pt2.json`` is a medi2i export's description and its
    ``configs/metadata.json`` names medi2i among the required packages (a MONAI
    model-zoo bundle has ``configs/inference.json`` too, but neither of these)."""
    description = _json_object(folder / "models" / "model.pt2.json")
    metadata = _json_object(folder / "configs" / "metadata.json")
    packages = metadata.get("required_packages_version")
    return (
        description.get("format") == "medi2i-torch-export/1"
        and isinstance(packages, dict)
        and "medi2i" in packages
        and (folder / "configs" / "inference.json").is_file()
    )


def _json_object(path: Path) -> dict[str, Any]:
    """The JSON object in ``path``; empty when it is not a readable file holding one."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > (1 << 22):
            return {}
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _files_not_exported(folder: Path) -> list[str]:
    """What ``folder`` (a medi2i bundle) holds that :func:`export_bundle` did not write,
    relative to it, sorted (a folder of such things once, with a trailing ``/``)."""
    import os

    found: list[str] = []
    for root, folders, files in os.walk(folder):  # links are listed, never followed
        relative = Path(root).relative_to(folder)
        for name in sorted(folders):
            inside = (relative / name).as_posix()
            if inside in MODEL_COPIES and not (Path(root) / name).is_symlink():
                folders.remove(name)  # the model folder's copy: all of it is the export's
            elif inside not in BUNDLE_FOLDERS or (Path(root) / name).is_symlink():
                found.append(inside + "/")
                folders.remove(name)
        for name in files:
            inside = (relative / name).as_posix()
            exported = inside in BUNDLE_FILES or inside in MODEL_COPIES
            if not exported or (Path(root) / name).is_symlink():
                found.append(inside)
    return sorted(found)


def _copy_model(model: Path, models: Path) -> str:
    """Copy the model folder (or zip, as it is: zips are read, never extracted) into the
    bundle's ``models``; returns its name there."""
    if model.is_dir():
        shutil.copytree(model, models / "medi2i")
        return "medi2i"
    shutil.copyfile(model, models / "medi2i.zip")
    return "medi2i.zip"


def _tensor(spec: Any, channels: int, shape: Sequence[int], *, what: str) -> dict[str, Any]:
    return {
        "type": "image",
        # normalized intensities, not the image's units (HU for CT): medi2i maps them
        # (the method's preprocess and postprocess, fitted values in models/medi2i)
        "format": "magnitude",
        "num_channels": channels,
        "spatial_shape": [int(n) for n in shape],
        "dtype": "float32",
        # the network sees and gives the method's normalized intensities, whose range
        # the method does not declare: left empty rather than guessed
        "value_range": [],
        "is_patch_data": True,
        "channel_def": {
            str(c): f"{spec.modality} {what}, in the method's normalized intensities (not "
            f"{spec.modality} units; medi2i's run maps them)"
            for c in range(channels)
        },
    }


def _metadata(
    method: Method[Any, Any], condition: BaseModel, roi: list[int], difference: float, version: str
) -> dict[str, Any]:
    import monai
    import numpy as np

    from medi2i.errors import Medi2iError
    from medi2i.registry import Registry

    registry = Registry()
    try:
        owner = registry.method_owner(method.id)
    except Medi2iError:  # a method of a plugin loaded by name (--plugin), not installed
        owner = None
    plugin = next((i for i in registry.plugins.infos if i.name == owner), None)
    packages = {"medi2i": version}
    if plugin is not None and plugin.distribution and plugin.distribution != "medi2i":
        packages[plugin.distribution] = plugin.version or method.version
    scale = getattr(method, "output_scale", (1.0, 1.0, 1.0))
    out_shape = [round(n * s) for n, s in zip(roi, scale, strict=True)]
    channels = method.input_spec.channels
    return {
        "schema": SCHEMA_URL,
        "version": "0.1.0",
        "changelog": {"0.1.0": f"exported by medi2i {version}"},
        "monai_version": monai.__version__,
        "pytorch_version": torch.__version__.split("+")[0],
        "numpy_version": np.__version__,
        "required_packages_version": packages,
        "name": f"medi2i {method.id}",
        "task": f"{method.input_spec.modality} to {method.output_spec.modality} "
        f"translation ({method.id}, condition {condition.model_dump_json()})",
        "description": (
            f"The window network of the medi2i method {method.id!r}, exported with "
            "torch.export, run on sliding windows of the method's preprocessed input; "
            "medi2i does the steps around the windows (see docs/README.md). Windows are "
            f"preprocessed intensities; the largest difference of the exported network "
            f"from medi2i's forward on the export's check windows was {difference:.2e}."
        ),
        "authors": "the trainers of the medi2i model in models/medi2i (see its card)",
        "copyright": "as stated in the model card of models/medi2i",
        "references": [method.paper] if method.paper else [],
        "intended_use": "research; not for clinical use",
        "data_type": "nibabel",
        "network_data_format": {
            "inputs": {"image": _tensor(method.input_spec, channels, roi, what="input")},
            "outputs": {
                "pred": _tensor(method.output_spec, channels, out_shape, what="translated")
            },
        },
    }


def _plugins_to_load(method: Method[Any, Any], registry: Registry | None) -> list[str]:
    """The plugin that registers ``method`` when the default plugins do not (it was
    loaded by name), which the bundle's run must load by that name; else none."""
    from medi2i.errors import Medi2iError
    from medi2i.registry import Registry

    try:
        Registry().method(method.id)
        return []
    except Medi2iError:
        pass
    if registry is None:
        raise ExportError(
            f"method {method.id!r} is not registered by the plugins loaded by default; "
            "pass the registry it was loaded with, so the bundle's run can load its plugin"
        )
    return [registry.method_owner(method.id)]


def _inference(
    roi: list[int], settings: InferenceSettings, condition: Any, model: str, plugins: list[str]
) -> dict[str, Any]:
    return {
        "imports": ["$import torch", "$import medi2i.monai_bundle as monai_bundle"],
        "bundle_root": ".",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "input_path": "input.nii.gz",
        "output_path": "output.nii.gz",
        # torch.export.load, after checking the file is there: a run from outside the
        # bundle folder without --bundle_root gets one line rather than a traceback
        "program": "$monai_bundle.load_program(@bundle_root)",
        # a plain GraphModule of the program's graph: the exported module refuses
        # .eval(), which MONAI's tools call
        "network_def": "$torch.fx.GraphModule(@program, @program.graph)",
        "network": "$@network_def.to(@device)",
        "inferer": {
            "_target_": "SlidingWindowInferer",
            "roi_size": roi,
            # the engine's own choice on a GPU when the settings leave it (None)
            "sw_batch_size": settings.sw_batch_size or DEFAULT_WINDOW_BATCH,
            "overlap": settings.overlap,
            "mode": settings.blend,
            "sigma_scale": settings.sigma_scale,
            "padding_mode": "replicate",
            "sw_device": "@device",
            "device": "$torch.device('cpu')",
        },
        "condition": condition,
        # plugins medi2i does not load by default that the model's method needs
        "plugins": plugins,
        # --overwrite true / --force_modality true on monai.bundle run, as medi2i
        # predict's --overwrite and --force-modality
        "overwrite": False,
        "force_modality": False,
        "run": [
            f"$monai_bundle.run_bundle(@bundle_root + '/models/{model}', "
            "@input_path, @output_path, @network, @inferer, condition=@condition, "
            "plugins=@plugins, overwrite=@overwrite, force_modality=@force_modality)"
        ],
    }


def _readme(method: Method[Any, Any], roi: list[int], condition: BaseModel) -> str:
    return f"""# medi2i {method.id} as a MONAI bundle

The window network of the medi2i method `{method.id}` (condition
`{condition.model_dump_json()}`), exported by `medi2i export --format monai-bundle`.

- `models/model.pt2`: the network on a batch of windows of {roi} voxels of the
  preprocessed input, a torch.export program (`torch.export.load(path).module()`).
- `models/medi2i` (or `models/medi2i.zip`): the medi2i model (options, fitted values,
  card).
- `configs/inference.json`: MONAI's `SlidingWindowInferer` with medi2i's window
  settings, and a `run` that reads the input, lets medi2i do the steps around the
  windows (working grid, intensity normalization, back to the input's grid and units)
  and writes the output.

Check and run it with MONAI's tools, from this folder (from elsewhere, pass
`--bundle_root BUNDLE` too: `bundle_root` is `.`, the folder the command runs in):

    python -m monai.bundle verify_net_in_out network_def --meta_file configs/metadata.json \\
        --config_file configs/inference.json
    python -m monai.bundle run --config_file configs/inference.json \\
        --meta_file configs/metadata.json --input_path in.nii.gz --output_path out.nii.gz

`run` needs medi2i and the method's plugin (`required_packages_version`). Add
`--overwrite true` to replace an existing output, and `--force_modality true` to
translate an input of another modality than the method takes. `run` refuses a
`models/model.pt2` other than the one exported (its SHA-256 is in
`models/model.pt2.json`), and a `models/medi2i` other than the model folder it was
exported from (`model_sha256` there): export the bundle again instead of swapping
programs or models. The output's provenance records the inferer's settings as the run
used them (window, overlap, blending, windows per batch, device; float32).
"""


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
