"""The report stage: gather what a run left in its folder into ``report.md`` or ``.html``.

The report needs only the run folder (not the data or the plugins): the resolved
config, ``run.json``, the trainer's ``logs/train.jsonl``, the evaluate stage's
``metrics/`` (with ``scored-model.json``: which model folder was scored, from which
step and why) and the saved predictions. Missing parts (no evaluation yet, figures
turned off) leave their section out rather than failing. To tell cases of different
tasks apart (:func:`case_groups`) it reads the evaluated files' headers and a CSV
manifest's conditions where it can, and otherwise pools them.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from medi2i.report.figures import (
    ORIENTATION_NOTE,
    Curve,
    case_rows,
    read_training_curves,
    slice_montage,
    training_curves,
)
from medi2i.report.render import REPORT_FILES, Figure, Report, Section, write_report
from medi2i.workflow.evaluation import EvaluatedCase, EvaluationRecord, read_evaluation
from medi2i.workflow.run_folder import Log, RunFolder, RunState, checkpoint_step
from medi2i.workflow.schema import Workflow
from medi2i.workflow.scored_model import (
    BEST_MODEL,
    ScoredModel,
    ScoredRecord,
    best_of,
    choose_scored_model,
    read_scored_record,
)

if TYPE_CHECKING:
    from medi2i.data.discovery import DataSplits
    from medi2i.registry import Registry


def report_stage(
    workflow: Workflow, run: RunFolder, log: Log, registry: Registry | None = None
) -> Path:
    """Draw the figures and write the report; return its path. ``registry`` (the run's)
    tells whether the method is trained in steps, fitted or saved as it is."""
    evaluation = read_evaluation(run)
    scored = _scored(workflow, run) if evaluation is not None else None
    sections = [_run_section(workflow, run, evaluation, registry, scored)]
    if evaluation is not None:
        groups = case_groups(workflow, evaluation, registry)
        sections.append(_metrics_section(workflow, evaluation, scored, groups))
    curves = read_training_curves(run.train_log)
    if curves:
        sections.append(_training_section(workflow, run, curves))
    if evaluation is not None and workflow.report.figures and workflow.report.cases > 0:
        sections.append(_cases_section(workflow, run, evaluation))
    sections.append(_rerun_section(run, RunState.read(run).world_size))
    subtitle = _subtitle(workflow, RunState.read(run))
    report = Report(title=f"Run {run.root.name}", subtitle=subtitle, sections=sections)
    path = write_report(report, run.root, format=workflow.report.format)
    for earlier in (run.root / name for name in REPORT_FILES.values()):
        if earlier != path and earlier.is_file():  # the other format's, of an earlier run
            earlier.unlink()
            log(f"report: removed {earlier.name}, written before in the other format")
    RunState.read(run).finished(run, "report")
    log(f"report: {path}")
    return path


def _subtitle(workflow: Workflow, state: RunState | None = None) -> str:
    """The workflow's description and, after it, the ``--set`` overrides the run applied,
    in training and in this command (the description is the file's text, which does not
    know them)."""
    description = workflow.description.strip()
    trained = state.train_overrides if state is not None else None
    overrides = list(dict.fromkeys((*(trained or ()), *workflow.overrides)))
    if not overrides:
        return description
    applied = ", ".join(overrides)
    note = f"(run with --set {applied}, which this description does not reflect)"
    return f"{description} {note}".lstrip()


def _scored(workflow: Workflow, run: RunFolder) -> ScoredRecord:
    """What the evaluation scored: its record, or for an evaluation made before medi2i
    recorded it, the folder ``run.json`` names (those evaluations scored it)."""
    from dataclasses import replace

    record = read_scored_record(run)
    if record is not None:
        return record
    model = RunState.read(run).model_dir(run)
    reason = (
        "the folder run.json names, which evaluations scored before medi2i recorded the "
        "scored folder and before evaluation.checkpoint"
    )
    if model is None:
        scored = ScoredModel(folder="unknown", choice="last", reason=reason)
    else:  # as evaluation.checkpoint: last chooses it, for its step
        evaluation = workflow.evaluation.model_copy(update={"checkpoint": "last"})
        legacy = workflow.model_copy(update={"evaluation": evaluation})
        scored = replace(choose_scored_model(legacy, run, model), reason=reason)
    data = workflow.evaluation.data
    where = "evaluation.data" if data is not None else f"the {workflow.evaluation.split} split"
    return ScoredRecord(model=scored, checkpoint="last", where=where)


def _run_section(
    workflow: Workflow,
    run: RunFolder,
    evaluation: EvaluationRecord | None,
    registry: Registry | None = None,
    scored: ScoredRecord | None = None,
) -> Section:
    from medi2i import __version__

    method = workflow.method
    state = RunState.read(run)
    facts = [
        ("method", method.id if method.id is not None else f"trained model {method.model}"),
        ("options", _options_text(workflow, run)),
        ("overrides (--set)", _overrides_text(workflow, state)),
        ("data", f"{workflow.data.kind}, {workflow.data.layout.type} layout"),
        ("training steps", _training_steps(workflow, registry)),
        ("model folders", _model_folders(run, state)),
        ("medi2i", __version__),
    ]
    if state.resumed_from is not None:
        facts.insert(5, ("training resumed", f"from the checkpoint of step {state.resumed_from}"))
    if state.world_size is not None and state.world_size > 1:
        processes = f"{state.world_size} (torchrun), {state.patches_per_step} patches per step"
        facts.insert(5, ("training processes", processes))
    if evaluation is not None and scored is not None:
        facts.append(("scored model", scored.model.describe()))
        condition = _scored_under(evaluation)
        if condition is not None:
            facts.append(("scored under", condition))
        where = (
            "evaluation.data" if workflow.evaluation.data else f"{workflow.evaluation.split} split"
        )
        cases = f"{len(evaluation.cases)} ({where})"
        if scored.on_validation:
            shared = "all of them" if scored.all_on_validation else f"{len(scored.on_validation)}"
            cases += f"; {shared} validation data, not a held-out test"
        if scored.on_training:
            seen = "all of them" if scored.all_on_training else f"{len(scored.on_training)}"
            cases += (
                f"; {seen} training images of an unpaired/multi-domain method (the pairing "
                "was never seen, but the images were), not a held-out test"
            )
        facts.append(("evaluated cases", cases))
        outside = [case.id for case in evaluation.cases if case.spacing_note() is not None]
        if outside:
            facts.append(
                (
                    "spacing outside training",
                    f"{len(outside)} case(s) ({', '.join(outside)}): their metrics are "
                    "included in the summary",
                )
            )
    facts += [(f"{stage} finished", stamp) for stage, stamp in state.stages.items()]
    return Section("Run", facts=facts)


def _scored_under(evaluation: EvaluationRecord) -> str | None:
    """The predict-time condition the evaluated cases were predicted under
    (``direction=b2a, from=B, to=A``), each case's where they differ; ``None`` for a
    method without condition (or an evaluation made before medi2i recorded it)."""
    from medi2i.workflow.evaluation import condition_text, shared_condition

    cases = evaluation.cases
    if not any(case.condition for case in cases):
        return None
    shared = shared_condition(cases)
    if shared is not None:
        return condition_text(shared)
    each = "; ".join(
        f"{case.id}: {condition_text(case.condition or {}) or 'none'}" for case in cases
    )
    return f"differs by case: {each}"


def _overrides_text(workflow: Workflow, state: RunState) -> str:
    """The ``--set`` overrides the model was trained with and, when this command (e.g.
    ``medi2i evaluate``) was given others, those too."""
    now = ", ".join(workflow.overrides) or "none"
    if state.train_overrides is None or tuple(state.train_overrides) == workflow.overrides:
        return now  # a folder from before run.json recorded them, or one command for all
    trained = ", ".join(state.train_overrides) or "none"
    return f"training: {trained}; this evaluation and report: {now}"


def _training_steps(workflow: Workflow, registry: Registry | None) -> str:
    """The steps the trainer took, or why there are none: a fitted method (Nyul, a
    z-score fit) or one with nothing to learn never takes the trainer's steps, nor uses
    validation cases."""
    if workflow.method.id is None:
        return "none (a trained model)"
    if registry is not None:
        from medi2i.workflow.checks import validation_configured, workflow_training_route

        route = workflow_training_route(workflow, registry)
        unused = "; validation: not used" if validation_configured(workflow) else ""
        if route == "fit":
            return f"none (fitted on whole volumes{unused})"
        if route == "save":
            return f"none (nothing to learn{unused})"
    return str(workflow.training.steps)


def _options_text(workflow: Workflow, run: RunFolder) -> str:
    """Every option the model was made with (its defaults included, as its folder holds
    them); the workflow's own when no model folder exists yet."""
    from medi2i.errors import Medi2iError
    from medi2i.model_folder import read_manifest

    folder = RunState.read(run).model_dir(run)
    if folder is not None:
        try:
            return json.dumps(read_manifest(folder).options, sort_keys=True)
        except Medi2iError:
            pass  # a missing or unreadable folder: say what the workflow asked for
    options = workflow.method.options
    return json.dumps(options, sort_keys=True) if options else "defaults"


def _model_folders(run: RunFolder, state: RunState) -> str:
    """The model folders the run holds, each with its step: ``model (the last step,
    12); best-model (step 6, validation MAE 37.5)``."""
    model = state.model_dir(run)
    if model is None:
        return "none yet"
    if not model.resolve().is_relative_to(run.root.resolve()):
        return f"{model} (given by the workflow)"
    shown = []
    last = checkpoint_step(run)
    if run.model.is_dir():
        shown.append(f"model (the last step, {last})" if last is not None else "model")
    best = run.root / BEST_MODEL
    if best.is_dir():
        kept = best_of(best)
        shown.append(
            f"{BEST_MODEL} (step {kept[0]}, validation MAE {kept[1]:.4g}, the lowest)"
            if kept is not None
            else BEST_MODEL
        )
    if run.adapted.is_dir():
        shown.append("adapted (the adapt stage's model)")
    return "; ".join(shown) or _relative(model, run)


def _relative(path: Path | None, run: RunFolder) -> str:
    if path is None:
        return "none yet"
    return str(path.relative_to(run.root)) if path.is_relative_to(run.root) else str(path)


def _metrics_section(
    workflow: Workflow,
    evaluation: EvaluationRecord,
    scored: ScoredRecord | None = None,
    groups: Mapping[str, str] | None = None,
) -> Section:
    from medi2i.evaluation import aggregate, per_case_markdown, to_markdown

    mask = workflow.evaluation.mask
    region = f"inside the {mask!r} volume of each case" if mask else "over whole volumes"
    masked = sum(case.mask is not None for case in evaluation.cases)
    if mask and masked < len(evaluation.cases):
        region += f" ({len(evaluation.cases) - masked} cases had no mask: whole volume)"
    units = evaluation.units
    whose = f" of {scored.model.shown()}" if scored is not None else ""
    text = f"Metrics of the predictions{whose} against their references, {region}."
    if scored is not None:
        note = scored.validation_note()
        if note is not None:
            text += f" WARNING: {note}."
    notes = {case.id: case.spacing_note() for case in evaluation.cases if case.spacing_note()}
    if notes:
        shown = "; ".join(f"{case_id!r}: {note}" for case_id, note in notes.items())
        text += (
            f" WARNING: the summary includes {len(notes)} case(s) whose voxel spacing lies "
            f"outside the spacings the model was trained on ({shown}); their outputs may be "
            "wrong without any error."
        )
    # the note on the case's own row of the per-case table
    rows = {
        f"{case_id} (spacing outside training)" if case_id in notes else case_id: values
        for case_id, values in evaluation.per_case.items()
    }
    pooled = to_markdown(aggregate(evaluation.per_case), units=units)
    summaries = [("Summary over cases", pooled)]
    if groups:
        labels = list(dict.fromkeys(groups.values()))
        text += (
            f" The evaluated cases are {len(labels)} different tasks ({'; '.join(labels)}): "
            "each has its own summary; the summary over all cases pools them (its mean and "
            "spread mix the tasks)."
        )
        summaries = [
            (f"Summary: {label}", _group_table(evaluation, groups, label)) for label in labels
        ]
        summaries.append((f"Summary over all cases (pools {len(labels)} tasks)", pooled))
    return Section(
        "Metrics",
        text=text,
        tables=(*summaries, ("Per case", per_case_markdown(rows, units=units))),
    )


def _group_table(evaluation: EvaluationRecord, groups: Mapping[str, str], label: str) -> str:
    from medi2i.evaluation import aggregate, to_markdown

    cases = {k: v for k, v in evaluation.per_case.items() if groups.get(k) == label}
    return to_markdown(aggregate(cases), units=evaluation.units)


def case_groups(
    workflow: Workflow, evaluation: EvaluationRecord, registry: Registry | None = None
) -> dict[str, str]:
    """The task of each evaluated case, by case id, when the cases are of different
    tasks; empty when they are all of one (the report then has one summary).

    A case's task is its condition (a CSV manifest's ``condition`` column with
    ``method.condition``: the source → target pair of a multi-domain method) and, for a
    method that changes the voxel spacing (super-resolution), the input's spacing
    against the reference's (its factor). A part that cannot be told for every case
    (a data folder gone, a DICOM input) does not split the cases.
    """
    conditions = _case_conditions(workflow, registry)
    factors = _case_factors(evaluation, registry)
    labels = {
        case.id: ", ".join(part for part in (conditions.get(case.id), factors.get(case.id)) if part)
        for case in evaluation.cases
    }
    return labels if len(set(labels.values())) > 1 else {}


def _case_conditions(workflow: Workflow, registry: Registry | None) -> dict[str, str]:
    """Each evaluated case's condition as text, read from its CSV manifest (the only
    layout with per-case conditions); empty when it cannot be read."""
    from medi2i.data.cases import case_condition
    from medi2i.errors import Medi2iError
    from medi2i.workflow.evaluation import evaluation_cases
    from medi2i.workflow.stages import workflow_splits

    data = workflow.evaluation.data or workflow.data
    if data.layout.type != "csv" or (workflow.evaluation.data is None and registry is None):
        return {}
    known = registry

    def splits() -> DataSplits:
        assert known is not None
        return workflow_splits(workflow, known)

    try:
        cases = evaluation_cases(workflow, splits)
    except (Medi2iError, OSError):
        return {}
    return {
        case.id: _condition_text(case_condition(workflow.method.condition, case.condition))
        for case in cases
    }


def _condition_text(condition: Mapping[str, object] | None) -> str:
    """``B → A`` for a ``source_domain``/``target_domain`` pair, else ``key=value`` pairs."""
    if not condition:
        return ""
    rest = {k: v for k, v in condition.items() if k not in ("source_domain", "target_domain")}
    parts = [f"{key}={value}" for key, value in sorted(rest.items())]
    if "target_domain" in condition:
        source = condition.get("source_domain", "any")
        parts.insert(0, f"{source} → {condition['target_domain']}")
    return ", ".join(parts)


def _case_factors(evaluation: EvaluationRecord, registry: Registry | None) -> dict[str, str]:
    """Each case's input spacing against its reference's, from the files' headers, when
    one differs (super-resolution: ``input 1x1x4 mm → 1x1x1 mm (×4)``); empty when no
    input's spacing differs from its reference's, or one cannot be read."""
    from medi2i.errors import Medi2iError
    from medi2i.io import read_grid

    readers = list(registry.readers.values()) if registry is not None else None
    spacings = {}
    for case in evaluation.cases:
        try:
            source = read_grid(case.original_source or case.source, readers=readers)
            reference = read_grid(case.reference, readers=readers)
        except (Medi2iError, OSError):
            return {}
        if source is None or reference is None:
            return {}
        spacings[case.id] = (source.spacing, reference.spacing)
    if all(_same_spacing(*pair) for pair in spacings.values()):
        return {}
    return {case_id: _factor_text(*pair) for case_id, pair in spacings.items()}


def _same_spacing(source: Sequence[float], reference: Sequence[float]) -> bool:
    return all(math.isclose(a, b, rel_tol=1e-3) for a, b in zip(source, reference, strict=True))


def _factor_text(source: Sequence[float], reference: Sequence[float]) -> str:
    if _same_spacing(source, reference):
        return f"input {_mm(source)} mm, the reference's spacing"
    factor = max(a / b for a, b in zip(source, reference, strict=True) if b > 0)
    return f"input {_mm(source)} mm → {_mm(reference)} mm (×{factor:.3g})"


def _mm(spacing: Sequence[float]) -> str:
    return "x".join(f"{float(value):.3g}" for value in spacing)


def _training_section(workflow: Workflow, run: RunFolder, curves: list[Curve]) -> Section:
    from medi2i.training.history import read_history

    last = ", ".join(f"{c.name} {c.values[-1]:.4g}" for c in curves)
    text = f"Logged every {workflow.training.log_every} steps; last values: {last}."
    findings = [str(e["health"]) for e in read_history(run.train_log) if "health" in e]
    if findings:
        text += " Training health: " + " ".join(f"WARNING: {f}." for f in findings)
    if not workflow.report.figures:
        return Section("Training", text=text)
    path = training_curves(curves, path=run.figures / "training_curves.png", title="training")
    figure = Figure(str(path.relative_to(run.root)), "Losses and validation values by step.")
    return Section("Training", text=text, figures=(figure,))


def _cases_section(workflow: Workflow, run: RunFolder, evaluation: EvaluationRecord) -> Section:
    shown = [case for case in evaluation.cases if case.prediction is not None]
    figures = [_case_montage(run, case, evaluation) for case in shown[: workflow.report.cases]]
    text = (
        "Orthogonal slices through the centre of each case's mask: input, output, reference "
        "and output minus reference (output and reference share one grey window). "
        f"{ORIENTATION_NOTE}"
    )
    return Section("Cases", text=text, figures=figures)


def _case_montage(run: RunFolder, case: EvaluatedCase, evaluation: EvaluationRecord) -> Figure:
    import numpy as np

    from medi2i.io import read_volume
    from medi2i.workflow.evaluation import prediction_stem

    assert case.prediction is not None
    output = read_volume(run.root / case.prediction)
    volumes = {
        "source": read_volume(case.source),
        "reference": read_volume(case.reference),
        **({"mask": read_volume(case.mask)} if case.mask else {}),
    }
    arrays = {name: np.asarray(v.as_tensor()[0], np.float64) for name, v in volumes.items()}
    modality, units = _model_specs(run)
    rows = case_rows(
        source=arrays["source"],
        output=np.asarray(output.as_tensor()[0], np.float64),
        reference=arrays["reference"],
        units=units,
        input_label=f"input ({modality})" if modality else "input",
    )
    path = slice_montage(
        rows,
        affine=np.asarray(output.affine, np.float64),
        path=run.figures / f"case_{prediction_stem(case.id)}.png",
        title=case.id + _values_line(evaluation.per_case.get(case.id, {})),
        centre_mask=arrays.get("mask"),
    )
    return Figure(str(path.relative_to(run.root)), f"Case {case.id}.")


def _model_specs(run: RunFolder) -> tuple[str, str]:
    """The model's input modality and output units (``"MR"``, ``"HU"``), if known."""
    from medi2i.errors import Medi2iError
    from medi2i.model_folder import read_manifest

    model = RunState.read(run).model_dir(run)
    if model is None:
        return "", ""
    try:
        manifest = read_manifest(model)
    except Medi2iError:
        return "", ""
    modality = "" if manifest.input.modality == "any" else manifest.input.modality
    units = "" if manifest.output.units == "arbitrary" else manifest.output.units
    return modality, units


def _values_line(values: dict[str, float]) -> str:
    if not values:
        return ""
    # n/a for a metric that could not be measured (NaN), as the report's tables say
    return "\n" + ", ".join(
        f"{name} {'n/a' if math.isnan(value) else f'{value:.4g}'}" for name, value in values.items()
    )


def _rerun_section(run: RunFolder, world_size: int | None = None) -> Section:
    """How to continue the run, or start it afresh: under ``torchrun`` with as many
    processes as trained it (another number trains another model)."""
    config = run.config.name
    launch = "medi2i run"
    continued = (
        "training resumes from its last checkpoint"
        if checkpoint_step(run) is not None
        else "its stages run again in this folder; it trained no steps"
    )
    text = (
        f"{config} in the run folder is the workflow with every default filled in. "
        f"The first command continues this run ({continued}); the second starts a fresh "
        "one."
    )
    if world_size is not None and world_size > 1:
        launch = f"torchrun --nproc_per_node {world_size} -m medi2i run"
        text += (
            f" It trained in {world_size} processes: with another number of processes "
            "the model differs (on several machines, give torchrun's own options)."
        )
    return Section(
        "Rerun",
        text=text,
        code=(f"{launch} {config} --run-dir .\n{launch} {config} --set output.run_id=rerun"),
    )
