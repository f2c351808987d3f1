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
- onnxruntime runs the windows on the CPU (``CPUExecutionProvider``) whatever
  ``--device`` says; medi2i's steps around them (blending) run on ``--device`` as with
  a model folder, so a device torch cannot use is refused as there.
- The description must be valid (:class:`OnnxDescription`) and its window, condition,
  method, options, domains and fitted values the file's: the file records the window
  and condition in its metadata with a SHA-256 of the rest
  (:func:`medi2i.export.description_sha256`), and its input shape declares the
  window's fixed sizes and the steps of its free ones. An export whose file records no
  such hash (made before medi2i wrote it) is refused: export it again.
- A voxelwise method (``pointwise``) runs on windows, the only shape the file accepts.

Needs the ``onnx`` extra: ``pip install 'medi2i[onnx]'``.

Example:
    >>> from medi2i import InferenceSettings, predict  # doctest: +SKIP
    >>> predict("mr.nii.gz", "sct.nii.gz", model="model.onnx")  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, ValidationError

from medi2i.errors import Medi2iError, ModelFormatError, OptionsError, UnknownMethodError
from medi2i.hashing import file_sha256

if TYPE_CHECKING:
    from medi2i.method import Method
    from medi2i.registry import Registry

ONNX_FORMAT = "medi2i-onnx/1"
"""The ``format`` of the description beside an ONNX export."""
MAX_DESCRIPTION_BYTES = 16 << 20
"""Largest description file read (it holds options and fitted values, not weights)."""
_REEXPORT = "export the model again with medi2i export --format onnx"

Size = Annotated[StrictInt, Field(gt=0)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _MethodPart(_Part):
    id: StrictStr
    version: StrictStr
    distribution: StrictStr | None = None


class _WindowPart(_Part):
    input_shape: tuple[StrictStr, Size, Size, Size, Size]
    output_channels: Size
    output_scale: tuple[float, float, float]
    shrinks_by: tuple[Size, Size, Size] | None = None


class _ModelPart(_Part):
    onnx_sha256: Annotated[StrictStr, Field(pattern=r"^[0-9a-f]{64}$")]
    domains: list[dict[str, Any]]
    state: dict[str, Any]
    medi2i: StrictStr


class OnnxDescription(_Part):
    """What :func:`load_onnx_model` reads from ``model.onnx.json`` (the rest of the
    file is for people), validated before anything is taken from it."""

    format: Literal["medi2i-onnx/1"]
    method: _MethodPart
    options: dict[str, Any]
    condition: dict[str, Any]
    window: _WindowPart
    model: _ModelPart


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
            description is not of this file (SHA-256), or its method, options, domains
            or fitted values are not those the file recorded at export.
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
    if file_sha256(path) != description.model.onnx_sha256:
        raise ModelFormatError(
            f"{path}: the file is not the one {sidecar.name} describes (SHA-256 differs); "
            "keep the pair an export wrote together, or export again"
        )
    session = _session(path)
    record = _file_record(path, sidecar, session, description)
    method_info, model = description.method, description.model
    try:
        method_cls = registry.method(method_info.id)
    except UnknownMethodError as exc:
        from medi2i.model_checks import unregistered_method_error

        raise unregistered_method_error(
            path, method_info.id, method_info.distribution, exc
        ) from None
    check_versions(path, method_cls, registry, method_info.version, model.medi2i)
    try:
        options = method_cls.parse_options(saved_options(method_cls, description.options))
        domains = [DomainSpec.model_validate(domain) for domain in model.domains]
        declared_shapes(f"{path}: {sidecar.name}", method_cls, options, domains)
        runner = _onnx_class(method_cls)
        method = runner(options)
        if domains:
            method.use_domains(domains)
        method.load_state_values(model.state)
        mark_trained(method)  # the weights are the ONNX file's, exported from a model
        condition = method.parse_condition(description.condition)
    except (OptionsError, ModelFormatError, ValidationError) as exc:
        raise ModelFormatError(f"{sidecar}: {' '.join(str(exc).split())}") from exc
    _check_against_file(path, sidecar, description, session, method, condition, record)
    roi = description.window.input_shape[2:]
    method.attach_onnx(path, session, roi, condition, shrinks=description.window.shrinks_by)
    loaded: Method[Any, Any] = method
    return loaded


def _session(path: Path) -> Any:
    import onnxruntime

    try:
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own kinds for a file it cannot load
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelFormatError(f"{path}: onnxruntime cannot load it ({first})") from None


def _read_description(path: Path, sidecar: Path) -> OnnxDescription:
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
    try:
        return OnnxDescription.model_validate(description)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise ModelFormatError(
            f"{sidecar}: not a valid medi2i ONNX description ({where}: {error['msg']}); {_REEXPORT}"
        ) from None


def _file_record(
    path: Path, sidecar: Path, session: Any, description: OnnxDescription
) -> dict[str, Any]:
    """What the ONNX file recorded about itself at export (:data:`medi2i.export.
    ONNX_METADATA_KEY`), with the description's method, options, domains and fitted
    values checked against the hash it holds (:func:`medi2i.export.description_sha256`).

    The description's SHA-256 covers the file, not the description: an edited
    ``body_contour`` or ``mr_normalization`` ran the same network with other steps
    around it (1828 HU off).

    Raises:
        ModelFormatError: The file holds no such record, or one without the hash (an
            export made before medi2i wrote them: export again), or the description's
            values are not the exported ones.
    """
    from medi2i.export import description_sha256
    from medi2i.export_onnx import ONNX_METADATA_KEY

    recorded = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    try:
        written = json.loads(recorded) if recorded is not None else None
    except ValueError:
        written = None
    if not isinstance(written, dict) or not isinstance(written.get("description_sha256"), str):
        raise ModelFormatError(
            f"{path}: the file does not record the options and fitted values it was "
            f"exported with (an export made before medi2i recorded them), so {sidecar.name} "
            f"cannot be checked; {_REEXPORT}"
        )
    found = description_sha256(
        description.method.model_dump(mode="json"),
        description.options,
        description.model.domains,
        description.model.state,
    )
    if found != written["description_sha256"]:
        raise ModelFormatError(
            f"{sidecar}: its method, options or fitted values are not those {path.name} was "
            f"exported with (edited, or another export's); keep the pair an export wrote "
            f"together, or {_REEXPORT}"
        )
    return written


def _check_against_file(
    path: Path,
    sidecar: Path,
    description: OnnxDescription,
    session: Any,
    method: Any,
    condition: Any,
    written: Mapping[str, Any],
) -> None:
    """Refuse a description whose window (or condition) is not the ONNX file's.

    The SHA-256 in the description covers the file, not the description: an edited
    window size ran the network on other windows than it was exported for (1014 HU
    off). The window and condition the file recorded in its metadata (``written``,
    :func:`_file_record`) are compared with it; the file's input is also compared
    with what the graph declares: a fixed size must be the window's, and
    a free one (a window that may shrink) must be a multiple of ``shrinks_by``'s step
    that the export would have left free.
    """
    from medi2i.engine import shrink_step

    def refuse(what: str) -> ModelFormatError:
        return ModelFormatError(
            f"{sidecar}: its window does not fit {path.name} ({what}); keep the pair an "
            f"export wrote together, or {_REEXPORT}"
        )

    window = description.window
    roi = list(window.input_shape[2:])
    try:
        exported_window = _WindowPart.model_validate(written["window"])
        exported_condition = method.parse_condition(written["condition"])
    except (ValueError, TypeError, KeyError, OptionsError):
        raise refuse("the file's own record of them is unreadable") from None
    if exported_window != window:
        raise refuse(
            f"the file was exported for {exported_window.model_dump(mode='json')}, the "
            f"description says {window.model_dump(mode='json')}"
        )
    if exported_condition != condition:
        raise refuse(
            f"the file was exported for the condition "
            f"{exported_condition.model_dump(mode='json')}, the description says "
            f"{condition.model_dump(mode='json')}"
        )
    inputs, outputs = session.get_inputs(), session.get_outputs()
    shape = list(inputs[0].shape) if len(inputs) == 1 else []
    if len(shape) != 5:
        raise refuse(f"the file takes {len(inputs)} inputs of shape {shape}, not one 5-D batch")
    if isinstance(shape[1], int) and shape[1] != window.input_shape[1]:
        raise refuse(f"{shape[1]} input channels, the description says {window.input_shape[1]}")
    out = list(outputs[0].shape) if outputs else []
    if len(out) == 5 and isinstance(out[1], int) and out[1] != window.output_channels:
        raise refuse(f"{out[1]} output channels, the description says {window.output_channels}")
    steps = window.shrinks_by
    for axis, (dim, size) in enumerate(zip(shape[2:], roi, strict=True)):
        step = None if steps is None else steps[axis]
        if step is not None and step != shrink_step(size):
            raise refuse(f"shrinks_by {list(steps or [])} is not what a window of {roi} shrinks by")
        free = step is not None and size // step > 1  # what the export leaves free
        if isinstance(dim, int):
            if dim != size or free:
                raise refuse(f"the file takes windows of {shape[2:]} voxels, not {roi}")
            continue
        if not free:
            raise refuse(
                f"the file's window size {shape[2:]} is free, the description's {roi} is not"
            )
        multiple = re.fullmatch(r"(?:(\d+)\*)?[A-Za-z_]\w*", str(dim))
        if multiple is not None and int(multiple.group(1) or 1) != step:
            raise refuse(f"the file's window is a multiple of {dim}, not of the step {step}")


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
        self,
        path: Path,
        session: Any,
        roi: tuple[int, ...],
        condition: Any,
        *,
        shrinks: object = None,
    ) -> None:
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
