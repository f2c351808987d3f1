"""Scale-out: DDP training and rank-sharded prediction under torchrun (CPU, Gloo)."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from medi2i.errors import Medi2iError
from medi2i.method import TrainerAPI
from medi2i.plugins import load_plugins
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings
from medi2i.testing import check_distributed_training, trainable_examples
from medi2i.testing.distributed_check import run_torchrun
from medi2i.testing.trainable_examples import TinyAdversarial, TinyRegression, write_paired_cases
from medi2i.training import TrainingConfig, predict_sharded, shard, train
from medi2i.training.distributed import context_from_environment
from medi2i.training.history import read_history

WORLD_SIZE = 2
QUIET = InferenceSettings(device="cpu", progress=False)

_RANK_SCRIPT = textwrap.dedent(
    """
    import faulthandler
    faulthandler.dump_traceback_later(150, exit=True)  # a hung rank shows where, and ends

    import hashlib, json, sys
    from pathlib import Path

    import torch.distributed as dist

    from medi2i.data.cases import Case, CaseSet
    from medi2i.method import DataKind
    from medi2i.plugins import load_plugins
    from medi2i.registry import Registry
    from medi2i.settings import InferenceSettings
    from medi2i.testing import trainable_examples
    from medi2i.testing.trainable_examples import TinyAdversarial, TinyRegression
    from medi2i.training import TrainingConfig, predict_sharded, train
    from medi2i.training.distributed import context_from_environment

    spec = json.loads(Path(sys.argv[1]).read_text())
    out = Path(spec["out"])
    cases = CaseSet(
        kind=DataKind.PAIRED,
        cases=tuple(
            Case(id=c, images={r: Path(p) for r, p in images.items()})
            for c, images in spec["cases"].items()
        ),
    )
    config = TrainingConfig.model_validate(spec["config"])
    context = context_from_environment()
    report = {"rank": context.rank, "world_size": context.world_size}
    for name, method in (("regression", TinyRegression()), ("adversarial", TinyAdversarial())):
        validation = cases if name == "regression" else None
        result = train(method, cases, config=config, run_dir=out / name, validation=validation)
        digest = hashlib.sha256()
        for module in method.training_modules().values():
            for tensor in module.state_dict().values():
                digest.update(tensor.detach().cpu().numpy().tobytes())
        report[name] = {"weights": digest.hexdigest(), "losses": dict(result.final_losses)}
    report["group_kept"] = dist.is_initialized()  # for the sharded prediction that follows

    plugins = load_plugins()
    plugins.manager.register(trainable_examples, name="trainable-examples")
    jobs = [(Path(s), Path(o)) for s, o in spec["jobs"]]
    done = predict_sharded(
        jobs,
        model=out / "regression" / "model",
        settings=InferenceSettings(device="cpu", progress=False),
        registry=Registry(plugins),
    )
    report["written"] = [str(path) for path in done.written]
    report["failed"] = [str(path) for path, _ in done.failed]
    (out / f"rank-{context.rank}.json").write_text(json.dumps(report))
    """
)


def test_ddp_training_and_sharded_prediction_under_torchrun(tmp_path: Path) -> None:
    cases = write_paired_cases(tmp_path / "cases", count=3, shape=(20, 20, 20))
    sources = [c.images["source"] for c in cases.cases] * 2  # 6 jobs: 3 per rank
    spec = {
        "out": str(tmp_path / "out"),
        "cases": {c.id: {r: str(p) for r, p in c.images.items()} for c in cases.cases},
        "config": TrainingConfig(
            steps=4,
            batch_size=2,
            patch_size=(16, 16, 16),
            checkpoint_every=2,
            log_every=1,
            device="cpu",
            progress=False,
        ).model_dump(mode="json"),
        "jobs": [[str(s), str(tmp_path / "pred" / f"{i}.nii.gz")] for i, s in enumerate(sources)],
    }
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    script = tmp_path / "rank.py"
    script.write_text(_RANK_SCRIPT)

    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node", str(WORLD_SIZE), str(script), str(tmp_path / "spec.json")]
    returncode, output = run_torchrun(command, timeout=180)
    assert returncode == 0, output[-8000:]

    reports = [json.loads((tmp_path / "out" / f"rank-{r}.json").read_text()) for r in (0, 1)]
    assert [(r["rank"], r["world_size"]) for r in reports] == [(0, 2), (1, 2)]
    for name in ("regression", "adversarial"):
        # DDP keeps the replicas identical; logged losses are averaged over the ranks
        assert reports[0][name]["weights"] == reports[1][name]["weights"], name
        assert reports[0][name]["losses"] == reports[1][name]["losses"], name
        history = read_history(tmp_path / "out" / name / "logs" / "train.jsonl")
        assert [e["step"] for e in history if "losses" in e] == [1, 2, 3, 4]  # rank 0 only
    assert all(r["group_kept"] for r in reports)

    written = [path for r in reports for path in r["written"]]
    assert sorted(written) == sorted(job[1] for job in spec["jobs"])  # each exactly once
    assert all(r["written"] and not r["failed"] for r in reports)  # both ranks took a share
    assert all(Path(path).is_file() for path in written)


def test_shards_are_disjoint_and_cover_every_item() -> None:
    items = list(range(11))
    shares = [shard(items, rank=r, world_size=3) for r in range(3)]
    assert sorted(i for share in shares for i in share) == items
    assert {len(share) for share in shares} == {3, 4}
    with pytest.raises(ValueError, match="rank 3"):
        shard(items, rank=3, world_size=3)


def test_rank_and_world_size_come_from_the_environment() -> None:
    context = context_from_environment({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (context.rank, context.world_size, context.local_rank) == (3, 4, 1)
    assert context.enabled
    assert not context.is_main
    assert not context_from_environment({}).enabled
    with pytest.raises(Medi2iError, match="torchrun"):
        context_from_environment({"RANK": "4", "WORLD_SIZE": "4"})


def test_sharded_prediction_in_one_process_does_everything_and_resumes(tmp_path: Path) -> None:
    cases = write_paired_cases(tmp_path / "cases", count=2, shape=(20, 20, 20))
    config = TrainingConfig(steps=1, patch_size=(16, 16, 16), device="cpu", progress=False)
    model = train(TinyRegression(), cases, config=config, run_dir=tmp_path / "run").model_dir
    plugins = load_plugins()
    plugins.manager.register(trainable_examples, name="trainable-examples")
    registry = Registry(plugins)
    jobs = [(c.images["source"], tmp_path / "pred" / f"{c.id}.nii.gz") for c in cases.cases]
    jobs.append((tmp_path / "missing.nii.gz", tmp_path / "pred" / "missing.nii.gz"))

    first = predict_sharded(jobs, model=model, settings=QUIET, registry=registry)
    assert first.written == tuple(output for _, output in jobs[:2])
    assert [path for path, _ in first.failed] == [jobs[2][0]]
    again = predict_sharded(jobs, model=model, settings=QUIET, registry=registry)
    assert again.written == ()
    assert again.skipped == first.written


class BypassesDDP(TinyRegression):
    """Calls its own network instead of ``trainer.modules``: no gradient averaging, so
    each process learns from its own batches and the replicas drift apart."""

    def training_step(
        self, batch: Mapping[str, torch.Tensor], trainer: TrainerAPI
    ) -> dict[str, float]:
        loss = F.l1_loss(self.network(batch["source"]).float(), batch["target"])
        trainer.backward(loss, "network")
        trainer.step("network")
        return {"l1": float(loss.detach())}


def test_the_distributed_check_passes_a_method_and_catches_drifting_replicas(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the ranks import this module's classes by name, which pytest's importlib mode
    # makes "test_distributed" or "tests.test_distributed" depending on the run's paths
    here = Path(__file__).parent
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(here), str(here.parent), *sys.path]))
    options = {"hidden": 4}
    check_distributed_training(TinyAdversarial, tmp_path / "ok", options=options, steps=2)
    # the replicas drift apart; rarely, a rank of this deliberately broken method is
    # aborted by Gloo at exit (seen once in a clean-clone run; DDP's gradient hooks,
    # fired outside DDP's forward, may leave work pending), which the check reports as
    # a failed run: refused either way
    with pytest.raises(
        AssertionError, match=r"replicas' parameters differ|under torchrun \(2 processes\) failed"
    ):
        check_distributed_training(BypassesDDP, tmp_path / "drift", options=options, steps=2)
