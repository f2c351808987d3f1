"""Run the quality benchmarks: baselines, registered methods and trained models, side by side.

For each benchmark (Q1-Q3 and Q1x of BENCHMARKS.md) the harness builds the data
(:mod:`medi2i_bench.datasets`), evaluates every contender on the test cases with the
benchmark's metrics, and writes ``<task>_<label>.json`` (all values and the
environment), ``<task>_<label>.md`` (the table) and one montage PNG per test case.
``label`` is ``baselines`` when only the baselines ran, else ``comparison``.

Baselines, methods and trained models run alike (:mod:`medi2i_bench.contenders`):
through :func:`medi2i.predict_tensor`, exactly as ``medi2i predict`` runs them, fitted
on the benchmark's training data as a workflow's train stage would fit them; trained
models are never refitted. The metrics are registered metrics (the ``register_metrics``
hook), picked by name or preset (:data:`BENCHMARK_METRICS`), so a name in a table means
what it means in ``medi2i evaluate`` and in a workflow's evaluation.

Example:
    >>> from medi2i_bench.harness import run_benchmarks
    >>> run_benchmarks(tasks=["q2"], output_dir="results")  # doctest: +SKIP
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from medi2i import OptionsError
from medi2i_bench.baselines import baselines_for
from medi2i_bench.contenders import (
    Contender,
    ContenderKind,
    FloatArray,
    fit_for,
    fitted_note,
    method_contender,
)
from medi2i_bench.datasets import (
    TASKS,
    BenchCase,
    BenchDataset,
    TaskName,
    build_splits,
    splits_of,
)
from medi2i_bench.figures import write_result_montages
from medi2i_bench.model_origin import model_training_note

if TYPE_CHECKING:
    from medi2i import InferenceSettings, Method, Metric, Registry

BENCHMARK_METRICS: dict[TaskName, str] = {
    "q1": "synthrad",
    "q1x": "synthrad",
    "q2": "super_resolution",
    "q3": "mr",
    "q3m": "mr",
    "q4": "synthrad",
    "q2c": "super_resolution",
}
"""The registered metrics of each benchmark, as a preset or names
(:data:`medi2i.evaluation.METRIC_PRESETS`), all inside the benchmark's mask: Q1 and Q1x
the SynthRAD2025 metrics and the air MAE; Q2 PSNR and SSIM; Q3 MAE, PSNR, SSIM and the
histogram distance."""

MEAN_TABLES = frozenset({"q3m"})
"""Benchmarks whose Markdown adds each contender's mean over the cases (Q3m: the mean
over its six pairs of scanners, the number its target is stated in)."""

TITLES: dict[TaskName, str] = {
    "q1": "Q1 — MR→CT on the real head CT (pseudo-T1w MR simulated from it)",
    "q2": "Q2 — through-plane super-resolution of real T1w MR (Colin27)",
    "q3": "Q3 — cross-scanner harmonization of real T1w MR (Colin27, scanner B → A)",
    "q1x": "Q1x — cross-subject MR→CT on three real CTs (head, two chests; pseudo-T1w MR)",
    "q3m": "Q3m — multi-scanner harmonization of real T1w MR (Colin27, every pair of A, B, C)",
    "q4": "Q4 — MR→CT under scanner shift (Q1x split a; pseudo-T1w MR under scanners A, B, C)",
    "q2c": "Q2c — clinical-like thick slices of real T1w MR (Colin27 at 1×1×5 and 0.8×0.8×4 mm)",
}


@dataclass(frozen=True)
class BenchResult:
    """One benchmark's outcome.

    Attributes:
        task: ``"q1"``, ``"q2"`` or ``"q3"``.
        contenders: What was evaluated, in table order.
        metrics: ``(name, units, higher_is_better)`` per metric, in column order.
        scores: Metric values by metric name, by case, by contender name.
        seconds: Wall time of each contender over all test cases (prediction only).
        predictions: Each contender's prediction per ``(contender, case)``.
        dataset_fingerprint: Fingerprint of the data (sources, simulators, seeds).
        cases: Scored case names (test cases, and for Q1x each split's validation
            case before its test case).
        environment: Machine, versions and date.
        splits: For a benchmark with splits (Q1x), the case names of each split's
            ``train``, ``validation`` and ``test`` parts.
        notes: By contender name and case name, why that prediction was not made on
            the reference's voxel size (:attr:`Contender.grid_note`: a ×2 model on a ×4
            case); the tables mark those rows.
    """

    task: TaskName
    contenders: tuple[Contender, ...]
    metrics: tuple[tuple[str, str, bool], ...]
    scores: dict[str, dict[str, dict[str, float]]]
    seconds: dict[str, float]
    predictions: dict[tuple[str, str], FloatArray]
    dataset_fingerprint: str
    cases: tuple[str, ...]
    environment: dict[str, str]
    splits: dict[str, dict[str, list[str]]] = field(default_factory=dict)
    notes: dict[str, dict[str, str]] = field(default_factory=dict)

    def to_json(self) -> str:
        """Everything but the predictions, as JSON (NaN and infinities as ``null``)."""
        record = {
            "benchmark": self.task,
            "title": TITLES[self.task],
            "protocol": "BENCHMARKS.md, " + protocol_name(self.task),
            "dataset_fingerprint": self.dataset_fingerprint,
            "test_cases": list(self.cases),
            **({"splits": self.splits} if self.splits else {}),
            "metrics": [{"name": n, "units": u, "higher_is_better": h} for n, u, h in self.metrics],
            "results": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "description": c.description,
                    "seconds": round(self.seconds[c.name], 3),
                    "cases": {k: _finite(v) for k, v in self.scores[c.name].items()},
                    **({"notes": self.notes[c.name]} if self.notes.get(c.name) else {}),
                }
                for c in self.contenders
            ],
            "environment": self.environment,
        }
        return json.dumps(record, indent=2, ensure_ascii=False) + "\n"

    def to_markdown(self) -> str:
        """The results table, a legend of the contenders and the environment."""
        header = ["contender", "kind", "case"] + [_column(n, u, h) for n, u, h in self.metrics]
        lines = [
            f"# {TITLES[self.task]}",
            "",
            _table_row(header),
            _table_row(["---"] * len(header)),
        ]
        for contender in self.contenders:
            for case in self.cases:
                values = self.scores[contender.name][case]
                cells = [_number(values[n], u) for n, u, _ in self.metrics]
                shown = f"{case} †" if case in self.notes.get(contender.name, {}) else case
                lines.append(_table_row([contender.name, contender.kind, shown, *cells]))
        if self.task in MEAN_TABLES:
            lines += ["", f"Mean over the {len(self.cases)} cases:", ""]
            lines += [_table_row(header[:1] + header[3:]), _table_row(["---"] * (len(header) - 2))]
            for contender in self.contenders:
                scores = [self.scores[contender.name][case] for case in self.cases]
                means = [float(np.mean([v[n] for v in scores])) for n, _, _ in self.metrics]
                cells = [_number(m, u) for m, (_, u, _) in zip(means, self.metrics, strict=True)]
                lines.append(_table_row([contender.name, *cells]))
        lines += ["", "↑ higher is better, ↓ lower is better.", ""]
        lines += [f"- `{c.name}`: {c.description}" for c in self.contenders]
        lines += [
            f"- † `{name}` on {case}: {note}"
            for name, by_case in self.notes.items()
            for case, note in by_case.items()
        ]
        if self.splits:
            lines += [
                "",
                "Splits (cases the baselines and methods are fitted on / validated on / "
                "tested on; a model row was trained outside the benchmark, its legend "
                "says on what):",
            ]
            lines += [
                f"- {name}: {', '.join(parts['train'])} / {', '.join(parts['validation'])} / "
                f"{', '.join(parts['test'])}"
                for name, parts in self.splits.items()
            ]
            lines += [
                "",
                "Rows of a `-val` case score the held-out slices of a training subject, "
                "those of a `-test` case the test subject. The baselines have no setting "
                "to choose: one configuration each, scored once. A model row is one "
                "trained configuration; its model folder says how it was chosen on the "
                "validation case.",
            ]
        env = self.environment
        versions = ", ".join(
            f"{k} {env[k]}" for k in ("python", "numpy", "scipy", "scikit-image", "torch", "monai")
        )
        lines += [
            "",
            f"Protocol: BENCHMARKS.md {protocol_name(self.task)}; data fingerprint "
            f"`{self.dataset_fingerprint[:12]}`.",
            f"Run {env['date']} on {env['machine']}; medi2i {env['medi2i']}, {versions}.",
        ]
        return "\n".join(lines) + "\n"


def protocol_name(task: TaskName) -> str:
    """The benchmark's name as BENCHMARKS.md writes it: ``"Q1"``, ``"Q1x"``."""
    return task[:2].upper() + task[2:]


def write_tables(result: BenchResult, folder: Path, *, label: str) -> list[Path]:
    """Write ``<task>_<label>.json`` and ``.md`` into ``folder`` (atomically)."""
    from medi2i.io import atomic_path

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for suffix, text in ((".json", result.to_json()), (".md", result.to_markdown())):
        path = folder / f"{result.task}_{label}{suffix}"
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def _finite(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (v if np.isfinite(v) else None) for k, v in values.items()}


_LABELS = {
    "mae": "MAE",
    "psnr": "PSNR",
    "ssim": "SSIM",
    "synthrad_mae": "SynthRAD MAE",
    "synthrad_psnr": "SynthRAD PSNR",
    "synthrad_ms_ssim": "SynthRAD MS-SSIM",
    "air_mae": "air MAE",
}
"""Column labels of metric names that are acronyms; others are their name in words."""


def _column(name: str, units: str, higher_is_better: bool) -> str:
    label = _LABELS.get(name, name.replace("_", " "))
    unit = f" ({units})" if units else ""
    return f"{label}{unit} {'↑' if higher_is_better else '↓'}"


def _number(value: float, units: str) -> str:
    if not np.isfinite(value):
        return str(value)
    return f"{value:.2f}" if units else f"{value:.4f}"


def _table_row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def metrics_for(task: TaskName, registry: Registry | None = None) -> tuple[Metric, ...]:
    """The registered metrics of a benchmark (:data:`BENCHMARK_METRICS`).

    Args:
        task: The benchmark.
        registry: Where the metrics are registered; the installed plugins when ``None``.

    Raises:
        OptionsError: A metric is not registered.
    """
    from medi2i import Registry
    from medi2i.evaluation import select_metrics

    registry = registry if registry is not None else Registry()
    return tuple(select_metrics(BENCHMARK_METRICS[task], registry.metrics))


def run_benchmarks(
    *,
    tasks: Sequence[TaskName] = TASKS,
    methods: Sequence[str] = (),
    method_options: Mapping[str, object] | None = None,
    models: Sequence[str | Path] = (),
    output_dir: str | Path,
    work_dir: str | Path | None = None,
    settings: InferenceSettings | None = None,
    registry: Registry | None = None,
    splits: Sequence[str] | None = None,
    log: Callable[[str], None] = lambda line: None,
) -> list[BenchResult]:
    """Run baselines plus the named methods and trained models on the chosen benchmarks.

    A benchmark with splits (Q1x) runs each split on its own: the baselines and methods
    are fitted on that split's training cases and scored on its validation and test
    cases; the splits' rows go into one result.

    Args:
        tasks: Benchmarks to run, among ``"q1"``, ``"q2"``, ``"q3"``, ``"q1x"``.
        methods: Ids of registered methods (each runs on the benchmarks of its tasks).
        method_options: Options given to every method of ``methods`` (named in its
            row's legend); each method's defaults when ``None``.
        models: Trained-model folders or zips.
        output_dir: Where the JSON, Markdown and PNG files go.
        work_dir: Cache of the built datasets; the user cache folder when ``None``.
        settings: Inference settings for methods (no progress bar by default).
        registry: Installed plugins; loaded when ``None`` and needed.
        splits: The splits to run of a benchmark that has splits (Q1x: ``"a"``,
            ``"b"``); all when ``None``. Benchmarks without splits ignore it.
        log: Called with one line per step, for progress output.

    Returns:
        One result per benchmark, in ``tasks`` order.

    Raises:
        OptionsError: A method or model serves none of the chosen benchmarks, or must
            be trained first; a trained model is given for more than one split (it was
            trained on one split, and another split may test on its training data).
        InputError: The shared data is missing (``MEDI2I_DATA_DIR``).
    """
    from medi2i import InferenceSettings, Registry

    settings = settings or InferenceSettings(progress=False)
    registry = registry if registry is not None else Registry()
    loaded = _load_contenders(methods, models, registry, method_options)
    _check_served(loaded, tasks)
    results = []
    for task in tasks:
        chosen = splits if splits_of(task) else None
        log(f"{task}: building or reading the prepared data")
        datasets = build_splits(task, work_dir=work_dir, splits=chosen)
        if models and len(datasets) > 1:
            raise OptionsError(
                f"a trained model belongs to one split of {task}, whose test subject "
                f"another split trains on: choose one with --split "
                f"({', '.join(d.split for d in datasets)})"
            )
        parts = [_run_one(dataset, loaded, settings, registry, log) for dataset in datasets]
        result = parts[0] if len(parts) == 1 else merge_results(parts, datasets)
        label = (
            "comparison" if any(c.kind != "baseline" for c in result.contenders) else "baselines"
        )
        shown = replace(datasets[0], test=tuple(case for d in datasets for case in d.test))
        write_tables(result, Path(output_dir), label=label)
        write_result_montages(result, shown, Path(output_dir), label=label)
        results.append(result)
    return results


def _run_one(
    dataset: BenchDataset,
    loaded: Sequence[LoadedContender],
    settings: InferenceSettings,
    registry: Registry,
    log: Callable[[str], None],
) -> BenchResult:
    served = [entry for entry in loaded if _serves(entry[2], dataset.task)]
    for name, kind, method, _ in served:  # first: a method that cannot be fitted stops the run
        fit_for(method, kind, dataset, name)
    contenders = baselines_for(dataset, registry=registry, settings=settings)
    baseline_names = {c.name for c in contenders}
    for name, kind, method, origin in served:
        # a method may share its id with a baseline it provides (monotone-mapping)
        label = f"{name}-{kind}" if name in baseline_names else name
        description = (
            f"{kind} {method.id} {method.version}{_given_options(method, kind)}"
            f"{fitted_note(method, kind, dataset)}{_origin_note(origin, dataset)}"
        )
        contenders.append(
            method_contender(label, kind, method, dataset, settings, description=description)
        )
    cases = dataset.validation + dataset.test
    result = evaluate(dataset, contenders, cases=cases, log=log, registry=registry)
    if not dataset.split:
        return result
    parts = {
        "train": [c.name for c in dataset.train_pairs],
        "validation": [c.name for c in dataset.validation],
        "test": [c.name for c in dataset.test],
    }
    return replace(result, splits={dataset.split: parts})


def _origin_note(model: Path | None, dataset: BenchDataset) -> str:
    """``"; trained outside the benchmark, on ..."``: a model row's training data, as
    its folder records it (:func:`~medi2i_bench.model_origin.model_training_note`)."""
    if model is None:
        return ""
    return "; " + model_training_note(model, [case.name for case in dataset.test])


def _given_options(method: Method, kind: ContenderKind) -> str:
    """``"; options a=1, b=2"``: the options set on a registered method (not a model's)."""
    given = method.options.model_dump(exclude_unset=True) if kind == "method" else {}
    if not given:
        return ""
    return "; options " + ", ".join(f"{key}={value}" for key, value in sorted(given.items()))


def merge_results(parts: Sequence[BenchResult], datasets: Sequence[BenchDataset]) -> BenchResult:
    """One result from the results of a benchmark's splits (same contenders, other cases).

    A contender whose description differs between splits (e.g. a mapping fitted on
    each split's training data) gets each split's description, prefixed by the split.

    Raises:
        OptionsError: The splits were not run with the same contenders.
    """
    names = [c.name for c in parts[0].contenders]
    if any([c.name for c in part.contenders] != names for part in parts):
        raise OptionsError("every split must be run with the same contenders")
    contenders = []
    for index, first in enumerate(parts[0].contenders):
        texts = [part.contenders[index].description for part in parts]
        if len(set(texts)) > 1:
            labels = [d.split for d in datasets]
            texts = [f"split {label}: {text}" for label, text in zip(labels, texts, strict=True)]
            first = replace(first, description="; ".join(texts))
        contenders.append(first)
    return BenchResult(
        task=parts[0].task,
        contenders=tuple(contenders),
        metrics=parts[0].metrics,
        scores={n: {k: v for p in parts for k, v in p.scores[n].items()} for n in names},
        seconds={n: sum(p.seconds[n] for p in parts) for n in names},
        predictions={k: v for p in parts for k, v in p.predictions.items()},
        dataset_fingerprint=parts[0].dataset_fingerprint,
        cases=tuple(case for p in parts for case in p.cases),
        environment=parts[-1].environment,
        splits={k: v for p in parts for k, v in p.splits.items()},
        notes=_merged_notes(parts),
    )


def _merged_notes(parts: Sequence[BenchResult]) -> dict[str, dict[str, str]]:
    merged: dict[str, dict[str, str]] = {}
    for part in parts:
        for name, by_case in part.notes.items():
            merged.setdefault(name, {}).update(by_case)
    return merged


def evaluate(
    dataset: BenchDataset,
    contenders: Sequence[Contender],
    *,
    cases: Sequence[BenchCase] | None = None,
    log: Callable[[str], None] = lambda line: None,
    registry: Registry | None = None,
) -> BenchResult:
    """Score every contender on every test case of ``dataset``; keep the predictions.

    Args:
        dataset: The benchmark's data.
        contenders: What to score.
        cases: The cases to score; ``dataset.test`` when ``None``.
        log: Called with one line per prediction.
        registry: Where the benchmark's metrics are registered; the installed plugins
            when ``None``.

    Raises:
        OptionsError: Two contenders share a name (e.g. two model folders of one name).
    """
    names = [c.name for c in contenders]
    if len(set(names)) != len(names):
        raise OptionsError(f"contender names must be unique, got {names}; rename a model folder")
    metrics = metrics_for(dataset.task, registry)
    scores: dict[str, dict[str, dict[str, float]]] = {name: {} for name in names}
    seconds = dict.fromkeys(names, 0.0)
    predictions: dict[tuple[str, str], FloatArray] = {}
    notes: dict[str, dict[str, str]] = {}
    scored = tuple(dataset.test if cases is None else cases)
    for contender in contenders:
        for case in scored:
            log(f"{dataset.task}: {contender.name} on {case.name}")
            note = contender.grid_note(case) if contender.grid_note is not None else None
            if note is not None:
                notes.setdefault(contender.name, {})[case.name] = note
                log(f"{dataset.task}: note: {contender.name} on {case.name}: {note}")
            started = time.perf_counter()
            prediction = _checked(contender.predict(case), case, contender.name)
            seconds[contender.name] += time.perf_counter() - started
            predictions[(contender.name, case.name)] = prediction
            scores[contender.name][case.name] = _scores(metrics, case, prediction)
    return BenchResult(
        task=dataset.task,
        contenders=tuple(contenders),
        metrics=tuple((m.name, m.units, m.higher_is_better) for m in metrics),
        scores=scores,
        seconds=seconds,
        predictions=predictions,
        dataset_fingerprint=dataset.fingerprint,
        cases=tuple(case.name for case in scored),
        environment=environment(),
        notes=notes,
    )


def _scores(metrics: Sequence[Metric], case: BenchCase, prediction: FloatArray) -> dict[str, float]:
    from medi2i.evaluation import evaluate_case

    return evaluate_case(case.target.array, prediction, case.mask.array, metrics)


def _checked(prediction: npt.ArrayLike, case: BenchCase, name: str) -> FloatArray:
    array = np.asarray(prediction, np.float32)
    if array.shape != case.target.array.shape:
        raise OptionsError(
            f"{name} returned shape {array.shape} for {case.name}, expected the reference's "
            f"{case.target.array.shape}"
        )
    return array


def environment() -> dict[str, str]:
    """Machine, library versions and date, recorded with every result."""
    import os
    from importlib.metadata import PackageNotFoundError, version

    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.system()}",
        "python": platform.python_version(),
    }
    for package in ("medi2i", "numpy", "scipy", "scikit-image", "torch", "monai"):
        try:
            record[package] = version(package)
        except PackageNotFoundError:
            record[package] = "not installed"
    return record


# -- methods and models -----------------------------------------------------------------

_TASK_OF = {
    "q1": "translation",
    "q2": "super-resolution",
    "q3": "harmonization",
    "q1x": "translation",
    "q3m": "harmonization",
    "q4": "translation",
    "q2c": "super-resolution",
}
LoadedContender = tuple[str, ContenderKind, "Method", "Path | None"]
"""Row name, kind, the method, and the folder or zip of a trained model (else ``None``)."""


def _load_contenders(
    methods: Sequence[str],
    models: Sequence[str | Path],
    registry: Registry,
    method_options: Mapping[str, object] | None = None,
) -> list[LoadedContender]:
    from medi2i import load_model

    loaded: list[LoadedContender] = []
    for method_id in methods:
        loaded.append((method_id, "method", registry.method(method_id)(method_options), None))
    for model in models:
        path = Path(model)
        loaded.append((path.name, "model", load_model(path, registry=registry), path))
    return loaded


def _serves(method: Method, task: TaskName) -> bool:
    if task == "q3m" and _two_domain(method):
        return False  # a two-domain model covers one of Q3m's six pairs: Q3 scores it
    return any(t.value == _TASK_OF[task] for t in method.tasks)


def _two_domain(method: Method) -> bool:
    """Whether ``method`` translates between two domains only (a two-way condition, or
    unpaired data), so covers one of Q3m's six pairs of scanners."""
    return "direction" in method.Condition.model_fields or method.data.value == "unpaired"


def _check_served(loaded: Sequence[LoadedContender], tasks: Sequence[TaskName]) -> None:
    for name, _, method, _ in loaded:
        if not any(_serves(method, task) for task in tasks):
            served = ", ".join(t.value for t in method.tasks)
            wanted = ", ".join(f"{t} ({_TASK_OF[t]})" for t in tasks)
            two_domain = _two_domain(method) and "q3m" in tasks
            hint = " (a two-domain model is scored on q3, not q3m)" if two_domain else ""
            raise OptionsError(
                f"{name} serves {served}, none of the chosen benchmarks {wanted}{hint}; "
                "choose another --task"
            )
