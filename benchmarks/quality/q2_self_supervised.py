"""Q2 (or Q2c) validation of a self-supervised super-resolution method, on the MNI152
inputs.

A method that learns from the input itself (``smore``) never reads Q2's training pairs,
so the thick-slice MNI152 volumes (×4 and ×2) are data it has not seen and can validate
its settings on: this script scores the method, with the given options, beside the
interpolation baselines on ``mni152-x4`` and ``mni152-x2``, with Q2's registered metrics
(PSNR and SSIM in the head mask) and the bench harness. The Colin27 test cases are not
read; score the chosen configuration on them once with

    medi2i bench run --task q2 --method smore --option align=centres --option KEY=VALUE ...

``--task q2c`` does the same on Q2c's clinical-like MNI152 inputs (1×1×5 mm and
0.8×0.8×4 mm).

Run (after ``medi2i bench prepare --task q2 --work-dir bench-work``)::

    python benchmarks/quality/q2_self_supervised.py --method smore --option align=centres \\
        --option steps=300 --label steps-300 --work-dir bench-work \\
        --output benchmarks/quality/results/q2_self_supervised

It writes ``q2_validation-LABEL.{json,md}`` and prints the table; the seconds each
prediction took (fitting included, both cases together) are in the JSON.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    from medi2i_bench.baselines import baselines_for
    from medi2i_bench.contenders import method_contender
    from medi2i_bench.datasets import build_dataset
    from medi2i_bench.harness import evaluate, write_tables

    from medi2i import DataKind, InferenceSettings, OptionsError, Registry
    from medi2i.cli.options import key_values

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=("q2", "q2c"), default="q2")
    parser.add_argument("--method", required=True, help="registered method id (e.g. smore)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--label", required=True, help="names this configuration's files")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work-dir", type=Path, default=None)
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args(argv)

    registry = Registry()
    options = key_values(tuple(args.option), "--option")
    method = registry.method(args.method)(options or None)
    if method.data is not DataKind.NONE:
        raise OptionsError(
            f"{args.method} learns from {method.data.value} data, and MNI152 is "
            f"{args.task}'s training data: it cannot validate on it; use medi2i bench run"
        )
    dataset = build_dataset(args.task, work_dir=args.work_dir)
    settings = InferenceSettings(progress=False, seed=args.seed)
    shown = ", ".join(f"{k}={v}" for k, v in sorted(options.items()))
    contenders = [
        *baselines_for(dataset, registry=registry, settings=settings),
        method_contender(
            args.method,
            "method",
            method,
            dataset,
            settings,
            description=f"method {method.id} {method.version}; options {shown}; seed {args.seed}",
        ),
    ]
    result = evaluate(dataset, contenders, cases=dataset.train_pairs, log=print, registry=registry)
    write_tables(result, args.output, label=f"validation-{args.label}")
    print(result.to_markdown())


if __name__ == "__main__":
    main()
