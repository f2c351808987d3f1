"""Export a trained network method as a MONAI bundle (``medi2i export --format
monai-bundle``).

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
bundle's ``run`` is :mod:`medi2i.monai_bundle`, which ``inference.json`` imports.

Example:
    >>> export_bundle(load_model("run/model"), "run/model", "bundle")  # doctest: +SKIP

    then, from the bundle folder::

        python -m monai.bundle run --config_file configs/inference.json \\
            --meta_file configs/metadata.json --input_path in.nii.gz --output_path out.nii.gz
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from medi2i.engine import DEFAULT_WINDOW_BATCH
from medi2i.errors import ExportError, OptionsError
from medi2i.export import export_program
from medi2i.export_files import EXPORT_REMEDY, require_writable_target
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
