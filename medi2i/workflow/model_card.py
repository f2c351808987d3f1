"""The model card a workflow run writes into its trained model."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from medi2i.method import Method
    from medi2i.workflow.run_folder import RunFolder
    from medi2i.workflow.schema import Workflow


def write_model_card(
    workflow: Workflow,
    run: RunFolder,
    method: Method,
    model_dir: Path,
    *,
    validation_metrics: bool = False,
    command: str = "medi2i run",
) -> None:
    """The trained model's card: its data cards and the run that made it.

    With ``validation_metrics`` (the ``best-model/`` a run keeps) the card also records
    the validation metrics of that model's ``metrics.json`` as ``validation_<name>``
    (the evaluate stage records its metrics only in ``model/``'s card). ``command`` is
    the command that trained it (``medi2i train`` or ``medi2i run``).
    """
    from medi2i import __version__
    from medi2i.cards import IntendedUse, MethodReference, ModelCard, RunProvenance
    from medi2i.model_card_files import attach_card

    card = ModelCard(
        card="model",
        name=card_name(run.root.name),
        method=MethodReference(id=method.id, version=method.version),
        summary=f"{method.summary()} Trained by the workflow run {run.root.name}.",
        training_data=list(workflow.data.cards),
        provenance=RunProvenance(
            medi2i_version=__version__,
            created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            command=f"{command} (resolved config: {run.config.name} in the run folder)",
            seed=workflow.training.seed,
            hardware=hardware_name(workflow.training.device),
        ),
        intended_use=IntendedUse(
            primary="research on data like the training data its cards describe",
            out_of_scope="clinical use; data unlike the training data",
        ),
    )
    if validation_metrics:
        card = card.model_copy(
            update={
                "metrics": _validation_metrics(model_dir),
                "evaluation_data": card.training_data,
            }
        )
    attach_card(model_dir, card)


def card_name(run_name: str) -> str:
    """A model card's ``name`` (lower-case letters, digits, ``_.-``) from a run folder's
    name, which follows the workflow file's name: ``My study é 2`` → ``my-study-e-2``."""
    import re
    import unicodedata

    plain = unicodedata.normalize("NFKD", run_name).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9_.-]+", "-", plain.lower())
    slug = re.sub(r"^[^a-z0-9]+", "", slug)
    return slug or "run"


def _validation_metrics(model_dir: Path) -> dict[str, float]:
    import json
    import math

    path = model_dir / "metrics.json"
    if not path.is_file():
        return {}
    values = json.loads(path.read_text(encoding="utf-8"))
    return {
        f"validation_{name}": float(value)
        for name, value in values.items()
        if name != "validation_step"
        and isinstance(value, int | float)
        and math.isfinite(float(value))
    }


def hardware_name(setting: str) -> str:
    """The device a run's ``device`` setting stands for, as a card records it: ``auto``
    resolved to ``cpu`` or the CUDA device's name (``cuda:0 (NVIDIA H100 80GB HBM3)``)."""
    import torch

    from medi2i.engine import resolve_device
    from medi2i.errors import Medi2iError

    try:
        device = resolve_device(setting)
    except Medi2iError:
        return setting
    if device.type != "cuda":
        return device.type
    return f"{device} ({torch.cuda.get_device_name(device)})"
