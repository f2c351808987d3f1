"""The distributed training check: a method trained by gradient steps trains under
``torchrun`` with DDP (Gloo, CPU processes) and its replicas stay identical.

Example (in a plugin's tests)::

    from medi2i.testing import check_distributed_training
    from medi2i_mine.method import MyMethod

    def test_trains_under_torchrun(tmp_path) -> None:
        check_distributed_training(MyMethod, tmp_path, options={"roi_size": (16, 16, 16)})
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from medi2i.method import DomainSpec, MethodClass, Training
from medi2i.testing.contract import _check_class, _construct

_RANK_SCRIPT = textwrap.dedent(
    """
    import faulthandler
    faulthandler.dump_traceback_later({timeout}, exit=True)  # a hung rank shows where

    import hashlib, importlib, json, math, sys
    from pathlib import Path

    import torch

    from medi2i.data.cases import Case, CaseSet
    from medi2i.method import DataKind, DomainSpec
    from medi2i.training import TrainingConfig, train
    from medi2i.training.distributed import context_from_environment

    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    data = spec["data"]
    cases = CaseSet(
        kind=DataKind(data["kind"]),
        cases=tuple(
            Case(id=c["id"], images={{r: Path(p) for r, p in c["images"].items()}},
                 domain=c["domain"])
            for c in data["cases"]
        ),
        domains=tuple(data["domains"]),
        domain_specs=tuple(DomainSpec.model_validate(s) for s in data["domain_specs"]),
    )
    unlabelled = None
    if spec["unlabelled"] is not None:
        unlabelled = CaseSet(
            kind=DataKind.SINGLE_DOMAIN,
            cases=tuple(
                Case(id=c["id"], images={{r: Path(p) for r, p in c["images"].items()}})
                for c in spec["unlabelled"]
            ),
        )
    module, _, name = spec["method"].partition(":")
    method_cls = importlib.import_module(module)
    for part in name.split("."):
        method_cls = getattr(method_cls, part)
    torch.manual_seed(0)  # every rank builds networks made in __init__ alike
    method = method_cls(spec["options"])
    config = TrainingConfig.model_validate(spec["config"])
    context = context_from_environment()
    result = train(method, cases, config=config, run_dir=out / "run", unlabelled=unlabelled)
    digest = hashlib.sha256()
    for module_name, network in sorted(method.training_modules().items()):
        for key, tensor in sorted(network.named_parameters()):
            digest.update(f"{{module_name}}.{{key}}".encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    report = {{
        "rank": context.rank,
        "world_size": context.world_size,
        "weights": digest.hexdigest(),
        "losses": {{k: (v if math.isfinite(v) else None) for k, v in result.final_losses.items()}},
        "steps": result.steps,
    }}
    (out / f"rank-{{context.rank}}.json").write_text(json.dumps(report))
    """
)


def check_distributed_training(
    method_cls: MethodClass,
    tmp_path: Path,
    *,
    options: Mapping[str, object] | None = None,
    steps: int = 2,
    world_size: int = 2,
    domains: Sequence[DomainSpec] | None = None,
    patch_size: tuple[int, int, int] | None = None,
    batch_size: int = 2,
    timeout: float = 300.0,
) -> None:
    """Check that ``method_cls`` trains with DDP under ``torchrun`` on CPU processes.

    ``world_size`` processes (Gloo backend, one thread each) train the method on toy
    cases of its data kind (:func:`medi2i.testing.synthetic_training_cases`; with toy
    unlabelled inputs too for a method that learns from them) for
    ``steps`` steps. The check fails, with the processes' output, unless every process
    finishes, all of them end with bitwise the same parameters in every training module
    (DDP averages the gradients, so the replicas must not drift), the logged losses are
    finite and the same in every process (they are averaged over the processes), and
    the history is written once, by rank 0, with every step.

    Buffers are not compared: DDP copies rank 0's buffers (batch-norm running
    statistics) to every process before each forward pass, and each process then
    updates its copy with its own batch; the model folder is rank 0's.

    The method class must be importable by its module and name in a fresh interpreter
    (a class defined at module level in an installed package or a test module on the
    path).

    Args:
        method_cls: A method with ``training = Training.GRADIENT``.
        tmp_path: An empty folder for the data and the run (pytest's ``tmp_path``).
        options: Options to construct it with (keep the networks and ``roi_size`` small).
        steps: Training steps (>= 1).
        world_size: Processes (>= 2).
        domains: Domains of unpaired or multi-domain toy data (label order).
        patch_size: Training patch size; the method's window when ``None``.
        batch_size: Patches per batch, per process.
        timeout: Seconds before the processes are stopped and the check fails.

    Raises:
        AssertionError: A property does not hold; the message says which.
        ValueError: ``world_size`` is below 2 or ``steps`` below 1.
    """
    if world_size < 2 or steps < 1:
        raise ValueError(f"needs world_size >= 2 and steps >= 1, not {world_size} and {steps}")
    _check_class(method_cls)
    probe = _construct(method_cls, options)
    if probe.training is not Training.GRADIENT:
        raise AssertionError(
            f"{method_cls.id} is trained by {probe.training.value!r}, not by gradient steps"
        )
    from medi2i.testing.domain_cases import synthetic_training_cases
    from medi2i.training import TrainingConfig
    from medi2i.training.history import read_history

    folder = Path(tmp_path)
    data = synthetic_training_cases(probe, folder / "data", domains=domains)
    unlabelled = None
    if probe.learns_from_unlabelled():
        from medi2i.testing.domain_cases import write_single_domain_cases

        unlabelled = write_single_domain_cases(folder / "unlabelled", count=2, seed=50)
    config = TrainingConfig(
        steps=steps,
        batch_size=batch_size,
        patch_size=patch_size,
        amp=False,
        device="cpu",
        log_every=1,
        checkpoint_every=steps,
        progress=False,
    )
    spec = {
        "out": str(folder / "out"),
        "method": f"{method_cls.__module__}:{method_cls.__qualname__}",
        "options": json.loads(json.dumps(dict(options or {}), default=list)),
        "config": config.model_dump(mode="json"),
        "data": {
            "kind": data.kind.value,
            "cases": [
                {"id": c.id, "images": {r: str(p) for r, p in c.images.items()}, "domain": c.domain}
                for c in data.cases
            ],
            "domains": list(data.domains),
            "domain_specs": [s.model_dump(mode="json") for s in data.domain_specs],
        },
        "unlabelled": None
        if unlabelled is None
        else [
            {"id": c.id, "images": {r: str(p) for r, p in c.images.items()}}
            for c in unlabelled.cases
        ],
    }
    (folder / "out").mkdir(parents=True, exist_ok=True)
    (folder / "spec.json").write_text(json.dumps(spec))
    script = folder / "rank.py"
    script.write_text(_RANK_SCRIPT.format(timeout=int(timeout)))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(world_size), str(script), str(folder / "spec.json")]
    returncode, output = run_torchrun(command, timeout=timeout)
    what = f"{method_cls.id} under torchrun ({world_size} processes)"
    if returncode != 0:
        raise AssertionError(f"{what} failed (exit {returncode}):\n{output[-6000:]}")
    reports = [_report(folder / "out" / f"rank-{rank}.json", what) for rank in range(world_size)]
    if [(r["rank"], r["world_size"]) for r in reports] != [
        (rank, world_size) for rank in range(world_size)
    ]:
        raise AssertionError(f"{what}: the processes did not see {world_size} ranks: {reports}")
    if len({r["weights"] for r in reports}) != 1:
        raise AssertionError(f"{what}: the replicas' parameters differ after {steps} steps")
    losses = [r["losses"] for r in reports]
    if not losses[0] or any(v is None for v in losses[0].values()):
        raise AssertionError(f"{what}: the logged losses are missing or not finite: {losses[0]}")
    if any(other != losses[0] for other in losses[1:]):
        raise AssertionError(f"{what}: the processes logged different losses: {losses}")
    history = read_history(folder / "out" / "run" / "logs" / "train.jsonl")
    logged = [entry["step"] for entry in history if "losses" in entry]
    if logged != list(range(1, steps + 1)):
        raise AssertionError(f"{what}: the history holds steps {logged}, not 1..{steps} once")


def _report(path: Path, what: str) -> dict[str, Any]:
    if not path.is_file():
        raise AssertionError(f"{what}: {path.name} was not written")
    report: dict[str, Any] = json.loads(path.read_text())
    return report


def run_torchrun(
    command: list[str], *, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[int, str]:
    """Run a ``torchrun`` command line with one thread per process (unless ``env`` says
    otherwise) and return its exit status and output; on timeout stop it with SIGTERM,
    on which it stops its ranks (they run in sessions of their own, out of reach of a
    signal to its process group), and fail.

    Raises:
        AssertionError: It did not finish in ``timeout`` seconds.
    """
    environment = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=environment
    )
    try:
        output, _ = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=60)
        raise AssertionError(f"torchrun did not finish in {timeout} s:\n{output[-6000:]}") from None
    return process.returncode, output
