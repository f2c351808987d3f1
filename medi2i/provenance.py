"""The provenance sidecar written next to every output: what produced it, and from what.

``OUT.provenance.json`` holds the method, its version and plugin, the options, domains
and condition, the model's, the weights' and the input's hashes and the inference
settings (with the seed): enough to make the output again. Its ``output`` entry
describes the output file; its ``condition`` there, present only for an output that
declares one, is what tells that output apart from the others of the same prediction.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.hashing import file_sha256
from medi2i.method import Method, Output
from medi2i.patch_network import PatchNetworkMethod
from medi2i.settings import InferenceSettings

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor
    from pydantic import BaseModel

    from medi2i.dicom.source import DicomSource
    from medi2i.registry import Registry


def output_record(output: Output) -> dict[str, object]:
    """The ``output`` entry of a provenance record: the output's name, modality, units
    and domain, and, only when the method gives it one, the output's own ``condition``
    (:attr:`medi2i.Output.condition`: what tells it apart from the other outputs of the
    same prediction, e.g. ``{"style": 2}``). The condition the prediction ran under is the
    record's top-level ``condition``; an output without a condition of its own has no
    ``condition`` here, rather than an empty one that reads as "no condition used"."""
    record: dict[str, object] = {
        "name": output.name,
        "modality": output.spec.modality,
        "units": output.spec.units,
        "domain": output.domain,
    }
    if output.condition:
        record["condition"] = json.loads(json.dumps(dict(output.condition), default=str))
    return record


def provenance(
    method: Method,
    *,
    source: Path,
    model: str | Path | None,
    settings: InferenceSettings,
    registry: Registry,
    image: MetaTensor | None = None,
    condition: BaseModel | None = None,
) -> dict[str, object]:
    """What produced an output: method, plugin, options, domains, condition, weights and
    input hashes (with the settings' seed, enough to make the output again).

    ``input.sha256`` identifies the input's content: for an input file, the SHA-256 of
    its bytes (``input.hashed`` is ``"file"``); for a folder (a DICOM series) it is
    :func:`volume_sha256` of the volume read from it (``"volume"``), so the same pixel
    data gives the same hash whatever the file names, slice order in the folder,
    transfer syntax or header edits. It is ``None`` only for a folder when ``image``
    (the volume read from ``source``) is not given.

    ``model_sha256`` identifies the model's state: for a model folder or zip, the
    SHA-256 of its manifest (:func:`medi2i.export.model_sha256`), which holds the
    options and the fitted values (a Nyúl model's landmarks, a z-score target) as well
    as the weights' hash, so a model without weights (``weights_sha256`` null) and one
    refitted at the same path are told apart; for an ONNX file, the file's SHA-256.
    ``None`` without a model.
    """
    from medi2i import __version__
    from medi2i.export import model_sha256
    from medi2i.model_folder import read_manifest
    from medi2i.onnx_model import is_onnx_model

    owner = registry.method_owner(method.id)
    plugin = next((i for i in registry.plugins.infos if i.name == owner), None)
    weights = state = None
    if model is not None and is_onnx_model(model):
        weights = state = file_sha256(model)  # the ONNX file holds the weights
    elif model is not None:
        manifest = read_manifest(model)
        weights = manifest.weights.sha256 if manifest.weights else None
        state = model_sha256(model)  # options and fitted values, weights by hash
    return {
        "medi2i_version": __version__,
        "method": {"id": method.id, "version": method.version},
        "plugin": {"name": owner, "version": plugin.version if plugin else None},
        "options": method.options.model_dump(mode="json"),
        "domains": [d.model_dump(mode="json") for d in method.domains],
        "condition": condition.model_dump(mode="json") if condition is not None else None,
        "model": str(Path(model).resolve()) if model is not None else None,  # as input.path
        "model_sha256": state,
        "weights_sha256": weights,
        "input": input_hash(source, image),
        "settings": settings.model_dump(mode="json"),
        # what the settings came to on this machine: "auto" resolved, and AMP only on CUDA
        "ran_on": _ran_on(settings),
        # the window the sliding window asks for when the settings leave it to the method
        # (it shrinks along an axis shorter than that); null for methods without windows
        "window": list(settings.roi_size or method.roi_size())
        if isinstance(method, PatchNetworkMethod)
        else None,
        "python": platform.python_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def run_record(facts: Mapping[str, object]) -> object:
    """What a method reported about one prediction (:attr:`medi2i.PredictContext.facts`,
    e.g. the steps a time budget stopped at), as the ``run`` entry of a provenance
    record: JSON values, anything else as its text."""
    return json.loads(json.dumps(dict(facts), default=str))


def _ran_on(settings: InferenceSettings) -> dict[str, object]:
    from medi2i.engine import resolve_device
    from medi2i.errors import Medi2iError

    try:
        device = resolve_device(settings.device)
    except Medi2iError:
        return {"device": settings.device, "amp": False}
    return {"device": str(device), "amp": bool(settings.amp and device.type == "cuda")}


def is_provenance_record(path: Path) -> bool:
    """Whether ``path`` is a provenance sidecar that medi2i wrote."""
    try:
        if not path.is_file() or path.stat().st_size > (1 << 22):
            return False
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and {"medi2i_version", "method", "input"} <= set(record)


def sidecar_path(output: Path) -> Path:
    """``out.nii.gz`` → ``out.provenance.json``; a series folder ``out.v2`` →
    ``out.v2.provenance.json``."""
    from medi2i.io.destinations import file_suffix

    name = output.name
    for suffix in (".nii.gz", file_suffix(output)):
        if suffix and name.endswith(suffix):
            name = name[: -len(suffix)]
            break
    return output.with_name(name + ".provenance.json")


@contextmanager
def staged_sidecar(output: Path, record: Mapping[str, object]) -> Iterator[None]:
    """Write ``output``'s provenance sidecar to a temporary file first, let the body
    write the output, and only then put the sidecar in place: an output and its sidecar
    are replaced together or not at all (a full disk stops the sidecar before the
    output is touched, and a failed output leaves the earlier sidecar as it was). The
    sidecar is renamed right after the output, Ctrl-C held off between the two, so an
    interrupted overwrite never pairs a new output with an old sidecar."""
    from medi2i.io.atomic import atomic_path, placed_with

    final = sidecar_path(output)
    with atomic_path(final) as tmp:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        with placed_with(tmp, final, output=Path(output)):  # renamed with the output
            yield


def volume_sha256(image: MetaTensor) -> str:
    """SHA-256 of a read volume: the text ``medi2i-volume-v1``, its shape (e.g.
    ``(1, 256, 256, 160)``), then its voxels as little-endian float32 in C order.

    The values are those after reading (rescaled, HU for CT), on the read grid; the
    affine is not included.
    """
    import numpy as np

    values = np.ascontiguousarray(image.detach().cpu().numpy(), dtype="<f4")
    digest = hashlib.sha256(f"medi2i-volume-v1{tuple(values.shape)}".encode())
    digest.update(values.tobytes())
    return digest.hexdigest()


def input_hash(source: Path, image: MetaTensor | None) -> dict[str, object]:
    """``{"path", "sha256", "hashed"}`` of an input (see :func:`provenance`): the bytes
    of a file (``"file"``), :func:`volume_sha256` of the volume read from a folder
    (``"volume"``), or no hash for a folder whose volume is not given. A volume read
    from a DICOM series adds its ``series_instance_uid`` and
    ``slice_position_residual_mm``, the farthest a slice was moved onto the fitted
    regular grid (a ``--slice-tolerance`` above the default lets it exceed that).

    ``path`` is absolute (resolved), so a sidecar names its input wherever it is read
    from; :func:`without_source` drops it where an output must not name its source."""
    path = str(source.resolve())
    if source.is_file():  # not a folder (e.g. DICOM series); its files are hashed by its reader
        return {"path": path, "sha256": file_sha256(source), "hashed": "file"}
    if image is None:
        return {"path": path, "sha256": None, "hashed": None}
    record: dict[str, object] = {
        "path": path,
        "sha256": volume_sha256(image),
        "hashed": "volume",
    }
    dicom = _dicom_source(image)
    if dicom is not None:
        record["series_instance_uid"] = dicom.series_instance_uid
        # the farthest a slice was moved onto the regular grid (--slice-tolerance allows more)
        record["slice_position_residual_mm"] = dicom.position_residual_mm
    return record


def without_source(entry: object, *, keep_uid: bool = False) -> object:
    """A provenance's ``input`` entry (:func:`input_hash`) without its path and, unless
    ``keep_uid``, without its series UID: for outputs that must not name their source
    (de-identified batches, the DICOM node's spool)."""
    if not isinstance(entry, dict):
        return entry
    dropped = () if keep_uid else ("series_instance_uid",)
    return {**{key: value for key, value in entry.items() if key not in dropped}, "path": None}


def _dicom_source(image: MetaTensor) -> DicomSource | None:
    from medi2i.dicom.source import META_KEY, DicomSource

    source = getattr(image, "meta", {}).get(META_KEY)
    return source if isinstance(source, DicomSource) else None
