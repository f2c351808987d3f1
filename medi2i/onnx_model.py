"""Predict with an exported ONNX window function: ``medi2i predict --model model.onnx``.

``medi2i export MODEL model.onnx --format onnx`` writes the network's function on a
batch of windows as ONNX, and beside it ``model.onnx.json``: the method, its options,
domains and fitted values (intensity scales, landmarks; everything but the network's
weights), the condition it was exported for, the window size and the ONNX file's
SHA-256. :func:`load_onnx_model` rebuilds the method from that description and runs
its windows in onnxruntime instead of PyTorch; everything around the windows (reading,
orientation and spacing, intensity normalization, blending, postprocessing, writing,
provenance) is medi2i's, unchanged. A model folder is not needed.

What differs from predicting with the model folder:

- The condition is the exported one; another condition is refused (export again with
  ``--condition``).
- Windows are the exported size. ``--roi-size`` must be that size or left unset. Along
  an axis shorter than the window, medi2i's engine shrinks the window to the volume;
  an export made with those sizes free (``"shrinks_by"`` in the description, what
  ``medi2i export`` writes when the network's forward allows it) runs the shrunk
  windows as PyTorch does. A file that takes only its exported size gets the shrunk
  window padded by edge replication and the output cropped back; a network that
  normalizes by the window's statistics (instance normalization) can then give a
  quite different output on such a volume.
- onnxruntime runs on the CPU (``CPUExecutionProvider``) whatever ``--device`` says.
- A voxelwise method (``pointwise``) runs on windows, the only shape the file accepts.

Needs the ``onnx`` extra: ``pip install 'medi2i[onnx]'``.

Example:
    >>> from medi2i import InferenceSettings, predict  # doctest: +SKIP
    >>> predict("mr.nii.gz", "sct.nii.gz", model="model.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F

from medi2i.errors import Medi2iError, ModelFormatError, OptionsError, UnknownMethodError
from medi2i.hashing import file_sha256

if TYPE_CHECKING:
    from medi2i.method import Method
    from medi2i.registry import Registry

ONNX_FORMAT = "medi2i-onnx/1"
"""The ``format`` of the description beside an ONNX export."""
MAX_DESCRIPTION_BYTES = 16 << 20
"""Largest description file read (it holds options and fitted values, not weights)."""


def is_onnx_model(path: str | Path) -> bool:
    """Whether ``--model`` names an ONNX export (its suffix is ``.onnx``).

    Raises:
        OptionsError: ``path`` is not a path (a method object; the message says what
            to pass instead).
    """
    from medi2i.method_references import require_model_path

    require_model_path(path)
    return Path(path).suffix.lower() == ".onnx"


def description_path(path: str | Path) -> Path:
    """``model.onnx`` → ``model.onnx.json``, the description written beside it."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def load_onnx_model(path: str | Path, *, registry: Registry) -> Method[Any, Any]:
    """The method described beside the ONNX export ``path``, its windows run by
    onnxruntime.

    Raises:
        ModelFormatError: The file or its description is missing, unreadable, not a
            medi2i ONNX export, from an export without what predict needs, or the
            description is not of this file (SHA-256).
        Medi2iError: onnxruntime is not installed.
        UnknownMethodError: The method's plugin is not installed.
    """
    from pydantic import ValidationError

    from medi2i.method import DomainSpec
    from medi2i.model_checks import check_versions, declared_shapes
    from medi2i.model_folder import saved_options
    from medi2i.trained_state import mark_trained

    path = Path(path)
    sidecar = description_path(path)
    if not path.is_file():
        raise ModelFormatError(f"{path}: no such ONNX file")
    if not sidecar.is_file():
        raise ModelFormatError(
            f"{path}: its description {sidecar.name} is missing beside it; export the model "
            "again with medi2i export --format onnx, which writes both"
        )
    description = _read_description(path, sidecar)
    if importlib.util.find_spec("onnxruntime") is None:
        raise Medi2iError(f"predicting with {path} needs onnxruntime: pip install 'medi2i[onnx]'")
    if file_sha256(path) != description["model"]["onnx_sha256"]:
        raise ModelFormatError(
            f"{path}: the file is not the one {sidecar.name} describes (SHA-256 differs); "
            "keep the pair an export wrote together, or export again"
        )
    method_info, model = description["method"], description["model"]
    try:
        method_cls = registry.method(str(method_info["id"]))
    except UnknownMethodError as exc:
        from medi2i.model_folder import unregistered_method_error

        made_by = method_info.get("distribution")
        raise unregistered_method_error(
            path, str(method_info["id"]), None if made_by is None else str(made_by), exc
        ) from None
    check_versions(path, method_cls, registry, str(method_info["version"]), model["medi2i"])
    try:
        options = method_cls.parse_options(saved_options(method_cls, description["options"]))
        domains = [DomainSpec.model_validate(domain) for domain in model["domains"]]
        declared_shapes(f"{path}: {sidecar.name}", method_cls, options, domains)
        runner = _onnx_class(method_cls)
        method = runner(options)
        if domains:
            method.use_domains(domains)
        method.load_state_values(model["state"])
        mark_trained(method)  # the weights are the ONNX file's, exported from a model
        condition = method.parse_condition(description["condition"])
    except (OptionsError, ModelFormatError, ValidationError) as exc:
        raise ModelFormatError(f"{sidecar}: {' '.join(str(exc).split())}") from exc
    roi = tuple(int(n) for n in description["window"]["input_shape"][2:])
    method.attach_onnx(path, roi, condition, shrinks=description["window"].get("shrinks_by"))
    loaded: Method[Any, Any] = method
    return loaded


def _read_description(path: Path, sidecar: Path) -> dict[str, Any]:
    try:
        if sidecar.stat().st_size > MAX_DESCRIPTION_BYTES:
            raise ValueError(f"larger than {MAX_DESCRIPTION_BYTES} bytes")
        description = json.loads(sidecar.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelFormatError(f"{sidecar}: not a readable description ({exc})") from None
    if not isinstance(description, dict) or description.get("format") != ONNX_FORMAT:
        raise ModelFormatError(
            f"{sidecar}: not the description of a medi2i ONNX export (format "
            f"{description.get('format') if isinstance(description, dict) else None!r}, "
            f"expected {ONNX_FORMAT!r}); export the model with medi2i export --format onnx"
        )
    model = description.get("model")
    if not isinstance(model, dict) or not {"onnx_sha256", "state", "domains", "medi2i"} <= set(
        model
    ):
        raise ModelFormatError(
            f"{sidecar}: this export predates predicting with ONNX (no fitted values in its "
            "description); export the model again with medi2i export --format onnx"
        )
    for key in ("method", "options", "condition", "window"):
        if not isinstance(description.get(key), dict):
            raise ModelFormatError(f"{sidecar}: {key!r} is missing or not an object")
    return description


_RUNNER_CLASSES: dict[type, type] = {}


def _onnx_class(method_cls: Any) -> Any:
    """``method_cls`` with its window function run by onnxruntime (one class per method
    class, so that loading many exports makes no new classes)."""
    found = _RUNNER_CLASSES.get(method_cls)
    if found is None:
        found = type(
            method_cls.__name__,
            (_OnnxWindows, method_cls),
            {"__module__": method_cls.__module__, "__doc__": method_cls.__doc__},
        )
        _RUNNER_CLASSES[method_cls] = found
    return found


class _OnnxWindows:
    """Mixed in before a network method's class: :meth:`forward` runs the ONNX file."""

    pointwise = False  # the file takes windows of its exported size only
    _onnx: Any = None

    _shrinks = False  # whether the file also takes the engine's shrunk windows

    def attach_onnx(
        self, path: Path, roi: tuple[int, ...], condition: Any, *, shrinks: object = None
    ) -> None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        self._onnx = (path, session, session.get_inputs()[0].name, roi, condition)
        self._shrinks = shrinks is not None

    def parse_condition(self, condition: Any) -> Any:
        """The exported condition when none is given (the only one the file can run;
        the method's own default may be another, e.g. a2b for a b2a export), and a
        different one refused before any work."""
        if self._onnx is None:  # the loader parsing the exported condition itself
            return super().parse_condition(condition)  # type: ignore[misc]
        path, exported = self._onnx[0], self._onnx[4]
        if condition is None or (isinstance(condition, Mapping) and not condition):
            return exported
        parsed = super().parse_condition(condition)  # type: ignore[misc]
        if parsed != exported:
            raise OptionsError(
                f"{path} was exported for the condition {exported.model_dump(mode='json')}, "
                f"this prediction asks for {parsed.model_dump(mode='json')}; export the "
                "model for it (medi2i export --format onnx --condition key=value)"
            )
        return parsed

    @property
    def onnx_path(self) -> Path:
        """The ONNX file whose function this method runs."""
        return Path(self._onnx[0])

    def roi_size(self) -> tuple[int, int, int]:
        roi = self._onnx[3]
        return (int(roi[0]), int(roi[1]), int(roi[2]))

    def predict(self, image: Any, context: Any) -> Any:
        asked = context.engine.settings.roi_size
        roi = self.roi_size()
        if asked is not None and tuple(int(n) for n in asked) != roi:
            raise OptionsError(
                f"{self.onnx_path} takes windows of {list(roi)} voxels; --roi-size "
                f"{list(asked)} cannot be run with it (leave it unset)"
            )
        return super().predict(image, context)  # type: ignore[misc]

    def forward(self, windows: torch.Tensor, condition: Any) -> torch.Tensor:
        path, session, name, roi, exported = self._onnx
        if condition != exported:
            raise OptionsError(
                f"{path} was exported for the condition {exported.model_dump(mode='json')}, "
                f"this prediction asks for {condition.model_dump(mode='json')}; export the "
                "model for it (medi2i export --format onnx --condition key=value)"
            )
        size = tuple(int(n) for n in windows.shape[2:])
        if any(s > r for s, r in zip(size, roi, strict=True)):
            raise OptionsError(
                f"{path} takes windows of {list(roi)} voxels, the prediction gave "
                f"{list(size)}; leave --roi-size unset or give the exported size"
            )
        short = [0, 0, 0] if self._shrinks else [r - s for s, r in zip(size, roi, strict=True)]
        batch = windows.detach().float()
        if any(short):  # a volume shorter than the window: pad to the file's size
            batch = F.pad(
                batch, [p for amount in reversed(short) for p in (0, amount)], "replicate"
            )
        values = np.ascontiguousarray(batch.cpu().numpy())
        out = torch.from_numpy(session.run(None, {name: values})[0]).float()
        if any(short):
            scale = out.shape[2] / roi[0], out.shape[3] / roi[1], out.shape[4] / roi[2]
            keep = [round(s * z) for s, z in zip(size, scale, strict=True)]
            out = out[:, :, : keep[0], : keep[1], : keep[2]]
        return out.to(windows.device)
