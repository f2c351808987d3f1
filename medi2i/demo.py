"""The built-in demo: MR to synthetic CT, from DICOM in to DICOM out, on CPU.

``medi2i demo`` needs no data. It

1. writes paired MR/CT head phantoms (:mod:`medi2i.synth`) in SynthRAD's layout;
2. writes a workflow for them and runs it: a small regression U-Net trains for a few
   hundred steps, predicts the held-out phantom and reports metrics and figures;
3. writes the held-out phantom's MR as a DICOM series, translates that series with the
   trained model into a synthetic CT DICOM series (and a NIfTI copy), and scores and
   draws it against the phantom's CT.

Everything lands in one folder; rerunning continues the same run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

if TYPE_CHECKING:
    from medi2i.registry import Registry
    from medi2i.workflow.schema import Workflow

DEMO_METHOD = "regression-unet"
CASES = 5
SHAPE = (48, 56, 48)
SPACING_MM = (3.5, 3.5, 3.5)
TEST_CASE = "demo004"

TRAINING = {
    "steps": 300,
    "batch_size": 2,
    "checkpoint_every": 100,
    "validate_every": 150,
    "log_every": 10,
    "device": "cpu",
    "seed": 0,
}

_MARK = "medi2i demo:"
"""How the description of the demo's workflow starts: it marks a folder as the demo's."""

WORKFLOW = {
    "version": 1,
    "description": f"{_MARK} MR to synthetic CT on procedural head phantoms, on CPU.",
    "data": {
        "kind": "paired",
        "cards": ["head_phantoms"],
        "layout": {"type": "synthrad", "root": "data", "source": "mr", "target": "ct"},
        "split": {"validation": ["demo003"], "test": [TEST_CASE], "seed": 0},
    },
    "method": {
        "id": DEMO_METHOD,
        "options": {
            "roi_size": [32, 32, 32],
            "filters": [8, 16, 32, 64],
            "optimizer": "adam",
            "learning_rate": 0.002,
            "lr_schedule": "constant",
        },
    },
    "inference": {"device": "cpu", "progress": False},
    "evaluation": {"split": "test", "metrics": ["synthrad"], "mask": "mask"},
    "report": {"format": "markdown", "figures": True, "cases": 1},
    "output": {"root": "runs", "name": "mr-to-ct", "run_id": "demo"},
}


def run_demo(output_dir: Path, *, registry: Registry, progress: bool = True) -> Iterator[str]:
    """Run the demo into ``output_dir``; yield one line per step for the user."""
    from medi2i.workflow.demo_data import write_demo_cases
    from medi2i.workflow.loader import load_workflow
    from medi2i.workflow.runner import run_workflow

    registry.method(DEMO_METHOD)  # a clear error if the method plugin is not installed
    workflow_path = output_dir / "mr_to_ct.yaml"
    _require_demo_folder(output_dir, workflow_path)
    output_dir.mkdir(parents=True, exist_ok=True)
    # the workflow first: it marks the folder as the demo's, so a rerun may continue it
    settings = {**WORKFLOW, "training": {**TRAINING, "progress": progress}}
    workflow_path.write_text(yaml.safe_dump(settings, sort_keys=False))
    write_demo_cases(output_dir / "data", count=CASES, shape=SHAPE, spacing_mm=SPACING_MM)
    yield f"data: {CASES} paired MR/CT head phantoms in {output_dir / 'data'}"
    yield f"workflow: {workflow_path} (rerun it with `medi2i run {workflow_path}`)"
    workflow = load_workflow(workflow_path, registry=registry)
    try:
        result = run_workflow(workflow, registry=registry, echo=lambda line: None)
    except KeyboardInterrupt as exc:
        # the run's own message names --run-dir, which the demo command does not take
        raise type(exc)(_interrupted(output_dir, workflow)) from None
    assert result.model_dir is not None  # the train stage always saves a model
    yield f"trained model: {result.model_dir}"
    yield f"report: {result.report_path}"
    yield from _dicom_round_trip(output_dir, result.model_dir, registry=registry, progress=progress)


def _interrupted(output_dir: Path, workflow: Workflow) -> str:
    """What an interrupted demo keeps and what a rerun does: as ``medi2i run`` says it,
    from the run folder's last training checkpoint (none before the first
    ``checkpoint_every`` steps: a rerun trains again from step 0)."""
    from medi2i.workflow import run_folder

    step = run_folder.checkpoint_step(run_folder.run_folder_for(workflow))
    again = f"`medi2i demo --output {output_dir}`"
    if step is None:
        return (
            f"Interrupted; {output_dir} keeps the demo's finished stages, but no training "
            f"checkpoint yet (training.checkpoint_every steps had not passed): running {again} "
            "again would start training again from step 0"
        )
    return (
        f"Interrupted; {output_dir} keeps the demo's finished stages and the checkpoint of "
        f"step {step}, where training resumes: run {again} again to continue it"
    )


def _require_demo_folder(output_dir: Path, workflow_path: Path) -> None:
    """Refuse a folder the demo would write over: it replaces its own files there (the
    workflow, the synthetic CTs, the figure), so it takes only a new or empty folder or
    the folder of an earlier demo (its workflow has the demo's description).

    Raises:
        OutputError: ``output_dir`` is a file, or a folder holding other data.
    """
    from medi2i.errors import OutputError

    if output_dir.exists() and not output_dir.is_dir():
        raise OutputError(f"{output_dir} is a file; give the demo a new or empty folder (--output)")
    if not output_dir.is_dir() or not any(output_dir.iterdir()):
        return
    try:
        earlier = yaml.safe_load(workflow_path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        earlier = None
    if not (isinstance(earlier, dict) and str(earlier.get("description", "")).startswith(_MARK)):
        raise OutputError(
            f"{output_dir} is a folder that is not empty and holds no earlier demo "
            f"({workflow_path.name}); the demo replaces its own files there, so give it a "
            "new or empty folder (--output), or the folder of an earlier demo to continue it"
        )


def _dicom_round_trip(
    output_dir: Path, model_dir: Path, *, registry: Registry, progress: bool
) -> Iterator[str]:
    """MR phantom as DICOM → synthetic CT as DICOM and NIfTI, scored and drawn."""
    import numpy as np

    from medi2i.dicom.writing.derived_series import write_derived_series
    from medi2i.evaluation import synthrad
    from medi2i.grid import Grid
    from medi2i.io import read_volume
    from medi2i.prediction import predict
    from medi2i.report.figures import case_rows, slice_montage
    from medi2i.settings import InferenceSettings

    case = output_dir / "data" / TEST_CASE
    mr, ct, mask = (read_volume(case / f"{name}.nii.gz") for name in ("mr", "ct", "mask"))
    series = output_dir / "dicom" / "mr"
    if not series.is_dir():
        write_derived_series(
            mr, series, source=None, modality="MR", method_id="medi2i-phantom", method_version="1"
        )
    yield f"DICOM MR series (held-out phantom): {series}"
    settings = InferenceSettings(progress=progress)
    for target in (output_dir / "dicom" / "synthetic_ct", output_dir / "synthetic_ct.nii.gz"):
        # a rerun of the demo replaces what its own earlier run wrote here
        written = predict(
            series, target, model=model_dir, settings=settings, registry=registry, overwrite=True
        )
        yield f"synthetic CT: {written}"
    sct = read_volume(written)
    same_grid = Grid.of(sct).same_as(Grid.of(mr))
    yield f"synthetic CT on the MR series' grid: {'yes' if same_grid else 'NO'}"
    reference, values, inside = ct.numpy()[0], sct.numpy()[0], mask.numpy()[0]
    scores = {
        "MAE (HU)": synthrad.mae(reference, values, inside),
        "PSNR (dB)": synthrad.psnr(reference, values, inside),
        "MS-SSIM": synthrad.ms_ssim(reference, values, inside),
    }
    yield "from DICOM, against the phantom CT: " + ", ".join(
        f"{name} {value:.3g}" for name, value in scores.items()
    )
    rows = case_rows(
        source=mr.numpy()[0],
        output=values,
        reference=reference,
        units="HU",
        input_label="input (MR, DICOM)",
    )
    figure = slice_montage(
        rows,
        affine=np.asarray(mr.affine),
        path=output_dir / "dicom_case.png",
        title=f"{TEST_CASE} from DICOM: MAE {scores['MAE (HU)']:.0f} HU",
        centre_mask=inside,
    )
    yield f"figure: {figure}"
