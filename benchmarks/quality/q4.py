"""Q4, MR→CT under scanner shift: how much of the shift's damage each adaptation recovers.

A regression U-Net trained on the pseudo-T1w MR of scanner style A
(``workflows/q4_regression_unet.yaml``) is scored on the Q1x test subject (lung2) under
styles A, B and C, as it is (no adaptation) and with each adaptation:

- ``harmonize-nyul``: the input is first mapped onto style A by Nyul histogram
  standardization fitted on style A's training MR (``medi2i-harmonization``'s ``nyul``
  with its defaults), then translated by the style-A model;
- ``adabn-target``: AdaBN on the target style's training MR (the head's and lung1's,
  whose CT is not used), as ``medi2i adapt`` does, one adapted copy per style;
- ``adabn-input``: AdaBN on each input at predict time (``-c statistics=input``);
- ``--model NAME=PATH`` rows: any other model of the same task (the domain-adversarial
  model of ``workflows/q4_regression_unet_dann.yaml``) scored on every case;
- ``--harmonizer NAME=PATH`` rows: a learned harmonization model (the StarGANs of
  ``workflows/q4_stargan.yaml`` and ``workflows/q4_stargan_source_code.yaml``) first
  translates the input into style A (``-c target_domain=A``, with the case's style as
  ``source_domain``), then the style-A model translates that;
- ``--oracle STYLE=PATH``: a model trained on the target style's own pairs, the bound an
  adaptation can reach (row ``oracle-STYLE``, scored on every case like the others).

Each row is scored on the validation cases (lung1's last slices under each style) and
the test cases (lung2 under each style) with the SynthRAD2025 metrics inside the body
mask and the MAE in air, by the bench harness. The adaptations have no setting to
choose (one configuration each); the models were chosen on their own style's
validation case. The recovered fraction of a row on a target style is

    (MAE of no adaptation - MAE of the row) / (MAE of no adaptation - MAE of the oracle)

on the test case: 1 when the row closes the gap to the oracle, 0 when it changes
nothing, negative when it hurts.

Run (after ``medi2i bench prepare --task q4 --work-dir bench-work``)::

    python benchmarks/quality/q4.py --model-a RUN_A/best-model \\
        --oracle B=RUN_B/best-model --oracle C=RUN_C/best-model \\
        --work-dir bench-work --output benchmarks/quality/results/q4

It writes ``q4_comparison.{json,md}`` (every row and case), ``q4_recovery.json`` and
``q4_recovery.md`` (the recovered fractions) and a montage per test case.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from medi2i_bench.contenders import Contender
    from medi2i_bench.datasets import BenchCase, BenchDataset
    from monai.data.meta_tensor import MetaTensor

    from medi2i import InferenceSettings, Method, Registry

STYLES = ("A", "B", "C")


def main(argv: Sequence[str] | None = None) -> int:
    """Score the Q4 rows and write the tables (see the module docstring)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--model-a", type=Path, required=True, help="the style-A model")
    parser.add_argument("--oracle", action="append", default=[], metavar="STYLE=PATH")
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--harmonizer", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--work-dir", type=Path, default=Path("bench-work"))
    parser.add_argument("--output", type=Path, default=Path("bench-results/q4"))
    parser.add_argument(
        "--validation-only",
        action="store_true",
        help="score the validation cases only (to choose settings before the test)",
    )
    args = parser.parse_args(argv)

    from medi2i_bench.baselines import baselines_for
    from medi2i_bench.datasets import build_dataset
    from medi2i_bench.figures import write_result_montages
    from medi2i_bench.harness import evaluate, write_tables

    from medi2i import InferenceSettings, Registry

    registry = Registry()
    settings = InferenceSettings(device="cpu", progress=False)
    dataset = build_dataset("q4", work_dir=args.work_dir)
    contenders = list(baselines_for(dataset, registry=registry, settings=settings))
    contenders += rows(
        dataset,
        registry,
        settings,
        model_a=args.model_a,
        models=[_pair(spec) for spec in args.model],
        harmonizers=[_pair(spec) for spec in args.harmonizer],
        oracles=[_pair(spec) for spec in args.oracle],
    )
    cases = dataset.validation if args.validation_only else dataset.validation + dataset.test
    result = evaluate(dataset, contenders, cases=cases, log=print, registry=registry)
    args.output.mkdir(parents=True, exist_ok=True)
    write_tables(result, args.output, label="validation" if args.validation_only else "comparison")
    if not args.validation_only:
        write_result_montages(result, dataset, args.output, label="comparison")
        write_recovery(result.scores, args.output)
    return 0


def _pair(spec: str) -> tuple[str, Path]:
    name, _, path = spec.partition("=")
    if not name or not path:
        raise SystemExit(f"expected NAME=PATH, got {spec!r}")
    return name, Path(path)


def rows(
    dataset: BenchDataset,
    registry: Registry,
    settings: InferenceSettings,
    *,
    model_a: Path,
    models: Sequence[tuple[str, Path]] = (),
    harmonizers: Sequence[tuple[str, Path]] = (),
    oracles: Sequence[tuple[str, Path]] = (),
) -> list[Contender]:
    """The rows beside the baselines (module docstring)."""
    from medi2i_bench.contenders import Contender

    from medi2i import load_model

    base = load_model(model_a, registry=registry)
    found = [Contender("no-adaptation", "model", predictor(base, settings), _text(model_a))]
    nyul = nyul_on_source_style(dataset, registry)
    found.append(
        Contender(
            "harmonize-nyul",
            "model",
            predictor(base, settings, before=nyul),
            "Nyul (defaults) fitted on style A's training MR, then the style-A model",
        )
    )
    adapted = {style: adapted_model(model_a, dataset, style, registry) for style in STYLES}
    per_style = {style: predictor(model, settings) for style, model in adapted.items()}
    found.append(
        Contender(
            "adabn-target",
            "model",
            lambda case: per_style[case.source_domain](case),
            "the style-A model with AdaBN on the case's style's training MR (head, lung1)",
        )
    )
    found.append(
        Contender(
            "adabn-input",
            "model",
            predictor(base, settings, condition={"statistics": "input"}),
            "the style-A model with AdaBN on each input (-c statistics=input)",
        )
    )
    for name, path in harmonizers:
        model = load_model(path, registry=registry)
        by_style = {
            style: predictor(base, settings, before=harmonizer(model, settings, source=style))
            for style in STYLES
        }
        text = (
            f"{_text(path)} into style A (-c target_domain=A -c source_domain=<the case's "
            "style>), then the style-A model"
        )
        found.append(
            Contender(name, "model", lambda case, run=by_style: run[case.source_domain](case), text)
        )
    for name, path in models:
        model = load_model(path, registry=registry)
        found.append(Contender(name, "model", predictor(model, settings), _text(path)))
    for style, path in oracles:
        model = load_model(path, registry=registry)
        text = f"oracle: trained on style {style}'s pairs, {_text(path)}"
        found.append(Contender(f"oracle-{style}", "model", predictor(model, settings), text))
    return found


def _text(path: Path) -> str:
    return f"model {path.parent.name}/{path.name}"


def predictor(
    model: Method,
    settings: InferenceSettings,
    *,
    condition: dict[str, object] | None = None,
    before: Callable[[MetaTensor], MetaTensor] | None = None,
) -> Callable[[BenchCase], npt.NDArray[np.float32]]:
    """A contender's prediction: ``model`` on the case's source (after ``before``), on
    the reference's grid, as ``medi2i predict`` runs it."""
    from medi2i import Grid, predict_tensor
    from medi2i.resample import resample_to_grid

    def predict(case: BenchCase) -> npt.NDArray[np.float32]:
        image = case.source.metatensor()
        if before is not None:
            image = before(image)
        output = predict_tensor(model, image, settings=settings, condition=condition)
        shape = tuple(int(n) for n in case.target.array.shape[:3])
        target = Grid(shape, case.target.affine)  # type: ignore[arg-type]
        if not Grid.of(output).same_as(target):
            output = resample_to_grid(output, target, mode="linear")
        return np.asarray(output[0].detach().cpu().numpy(), np.float32)

    return predict


def harmonizer(
    model: Method, settings: InferenceSettings, *, source: str
) -> Callable[[MetaTensor], MetaTensor]:
    """``model`` translating an input of style ``source`` into style A, as a function
    (the source style decides the input's scaling, or the generator's source code, of
    models that use it; others ignore it)."""
    from medi2i import predict_tensor

    condition = {"target_domain": "A", "source_domain": source}

    def harmonize(image: MetaTensor) -> MetaTensor:
        return predict_tensor(model, image, settings=settings, condition=condition)

    return harmonize


def nyul_on_source_style(
    dataset: BenchDataset, registry: Registry
) -> Callable[[MetaTensor], MetaTensor]:
    """Nyul standardization fitted on the training scanner's MR, as a function."""
    from medi2i_bench.contenders import source_style_pairs

    from medi2i import predict_tensor

    nyul = registry.method("nyul")()
    nyul.fit([case.source.metatensor() for case in source_style_pairs(dataset)])

    def harmonize(image: MetaTensor) -> MetaTensor:
        return predict_tensor(nyul, image)

    return harmonize


def adapted_model(path: Path, dataset: BenchDataset, style: str, registry: Registry) -> Method:
    """The model at ``path`` after AdaBN on ``style``'s training MR (as ``medi2i adapt``)."""
    from medi2i import load_model
    from medi2i.adaptation import adapt_method

    model = load_model(path, registry=registry)
    volumes = [
        dataset.folder / "train_pairs" / case.name / "mr.nii.gz"
        for case in dataset.train_pairs
        if case.source_domain == style
    ]
    adapt_method(model, volumes, registry=registry)
    return model


def write_recovery(scores: dict[str, dict[str, dict[str, float]]], folder: Path) -> None:
    """The recovered fraction of the no-adaptation → oracle MAE gap per row and style."""
    metric = "synthrad_mae"
    record: dict[str, dict[str, float | None]] = {}
    for style in STYLES[1:]:
        case = f"lung2-test-{style}"
        before = scores["no-adaptation"][case][metric]
        oracle = scores.get(f"oracle-{style}", {}).get(case, {}).get(metric, float("nan"))
        gap = before - oracle
        for row, by_case in scores.items():
            value = by_case[case][metric]
            fraction = (before - value) / gap if np.isfinite(gap) and gap > 0 else None
            record.setdefault(row, {})[style] = fraction
    (folder / "q4_recovery.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = [
        "# Q4 — share of the scanner shift's MAE damage each row recovers (test: lung2)",
        "",
        "| row | style B | style C |",
        "| --- | --- | --- |",
    ]
    for row, fractions in record.items():
        cells = ["n/a" if f is None else f"{f:.2f}" for f in fractions.values()]
        lines.append(f"| {row} | {' | '.join(cells)} |")
    lines += [
        "",
        "(MAE of no adaptation - MAE of the row) / (MAE of no adaptation - MAE of the "
        "oracle of that style), SynthRAD MAE in the body mask; 1 closes the gap, 0 changes "
        "nothing, below 0 hurts; n/a without an oracle of that style.",
    ]
    (folder / "q4_recovery.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    raise SystemExit(main())
