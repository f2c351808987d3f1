"""The training contract check: a method trained by gradient steps trains, resumes
exactly, and survives its model folder.

Example (in a plugin's tests)::

    from medi2i.testing import check_training_contract
    from medi2i_mine.method import MyMethod

    def test_training_contract(tmp_path) -> None:
        check_training_contract(MyMethod, tmp_path, options={"roi_size": (16, 16, 16)})
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from medi2i.errors import Medi2iError
from medi2i.method import DomainSpec, Method, MethodClass, Training
from medi2i.testing.contract import (
    _STATE_NOT_SAVED,
    CONTRACT_SETTINGS,
    _check_class,
    _construct,
    _differing,
    _registry_of,
    _unrepeatable,
)

if TYPE_CHECKING:
    import torch
    from monai.data.meta_tensor import MetaTensor

    from medi2i.data.cases import CaseSet
    from medi2i.training import TrainingConfig, TrainResult

Shape = tuple[int, int, int]


def check_training_contract(
    method_cls: MethodClass,
    tmp_path: Path,
    *,
    options: Mapping[str, object] | None = None,
    steps: int = 4,
    domains: Sequence[DomainSpec | str] | None = None,
    condition: Mapping[str, object] | None = None,
    patch_size: Shape | None = None,
    batch_size: int = 2,
) -> None:
    """Check that ``method_cls`` keeps the training side of the Method contract.

    On toy cases of the method's data kind (written under ``tmp_path`` by
    :func:`medi2i.testing.synthetic_training_cases`), with toy unlabelled inputs for a
    method that learns from them too (:meth:`~medi2i.Method.learns_from_unlabelled`),
    on the CPU, each property failing with its own message:

    1. :func:`medi2i.training.train` runs ``steps`` steps; every logged loss is finite
       and the steps change the weights of some training module;
    2. a run stopped after ``steps // 2`` steps and resumed from its checkpoint in a new
       method instance ends with bitwise the same weights (every training module,
       :meth:`~medi2i.Method.state_tensors`) and the same
       :meth:`~medi2i.Method.training_state` as the uninterrupted run;
    3. the trained-model folder loads (through a registry holding only
       ``method_cls``) with the same options and domains, and predicts what the trained
       instance predicts, output by output.

    Every instance is made under the same torch seed, so networks built in
    ``__init__`` start alike too. The caller's random generators are left as they were.

    Args:
        method_cls: A method with ``training = Training.GRADIENT``.
        tmp_path: An empty folder for the data and the runs (pytest's ``tmp_path``).
        options: Options to construct it with (keep the networks and ``roi_size`` small).
        steps: Steps of the uninterrupted run (>= 2).
        domains: Domains of unpaired or multi-domain toy data (label order; a plain name
            is a domain of ``"any"`` modality); MR and CT, or three MR scanners, by default.
        condition: Predict-time condition of the reload check (its defaults if ``None``).
        patch_size: Training patch size; the method's window when ``None``.
        batch_size: Patches per batch.

    Raises:
        AssertionError: A property does not hold; the message says which.
        ValueError: ``steps`` is below 2.
    """
    if steps < 2:
        raise ValueError(f"the check resumes a run after steps // 2 steps: steps >= 2, not {steps}")
    _check_class(method_cls)
    probe = _construct(method_cls, options)
    if probe.training is not Training.GRADIENT:
        raise AssertionError(
            f"{method_cls.id} is trained by {probe.training.value!r}, not by gradient steps; "
            "check_training_contract checks methods with training = Training.GRADIENT"
        )
    from medi2i.testing.domain_cases import synthetic_training_cases

    data = synthetic_training_cases(probe, Path(tmp_path) / "data", domains=domains)
    unlabelled = None
    if probe.learns_from_unlabelled():
        from medi2i.testing.domain_cases import write_single_domain_cases

        unlabelled = write_single_domain_cases(Path(tmp_path) / "unlabelled", count=2, seed=50)
    config = _config(steps, patch_size, batch_size)
    runs = _Runs(method_cls, options, data, config, Path(tmp_path), unlabelled)
    with _random_state_kept():
        initial = _initial_modules(runs)
        whole = runs.train("uninterrupted", steps=steps, resume=False)
        _check_losses(whole, steps)
        _check_learned(initial, whole.method)
        runs.train("resumed", steps=steps // 2, resume=False)
        resumed = runs.train("resumed", steps=steps, resume=True)
        _check_resumed(whole, resumed, steps // 2)
        _check_reload(whole, data, condition)


def train_briefly(
    method: Method[Any, Any],
    tmp_path: Path,
    *,
    steps: int = 4,
    domains: Sequence[DomainSpec | str] | None = None,
    patch_size: Shape | None = None,
    batch_size: int = 2,
) -> CaseSet:
    """Train ``method`` in place for ``steps`` steps on toy cases of its data kind, on
    the CPU, for behaviour tests that need a trained method (its domains, the scales its
    training records), not a good one.

    The cases are those of :func:`check_training_contract`
    (:func:`medi2i.testing.synthetic_training_cases`), written under ``tmp_path``
    with the run. The caller's random generators are left as they were.

    Example (in a plugin's tests)::

        method = MyStar({"roi_size": (16, 16, 16)})
        data = train_briefly(method, tmp_path, steps=2)  # three MR scanners
        scanner_b = read_volume(data.cases[2].images["image"])

    Args:
        method: A method with ``training = Training.GRADIENT``.
        tmp_path: An empty folder for the data and the run (pytest's ``tmp_path``).
        steps: Training steps.
        domains: Domains of unpaired or multi-domain toy data (label order; a plain name
            is a domain of ``"any"`` modality); MR and CT, or three MR scanners, by default.
        patch_size: Training patch size; the method's window when ``None``.
        batch_size: Patches per batch.

    Returns:
        The toy training cases (with their domains).

    Raises:
        AssertionError: Training failed; the message says why.
    """
    from medi2i.testing.domain_cases import synthetic_training_cases
    from medi2i.training import train

    data = synthetic_training_cases(method, Path(tmp_path) / "data", domains=domains)
    config = _config(steps, patch_size, batch_size)
    with _random_state_kept():
        try:
            train(method, data, config=config, run_dir=Path(tmp_path) / "run", resume=False)
        except Medi2iError as exc:
            raise AssertionError(f"{method.id}: training failed: {exc}") from exc
    return data


@dataclass(frozen=True)
class _Trained:
    method: Method[Any, Any]
    result: TrainResult


@dataclass(frozen=True)
class _Runs:
    method_cls: MethodClass
    options: Mapping[str, object] | None
    data: CaseSet
    config: TrainingConfig
    folder: Path
    unlabelled: CaseSet | None = None

    def new_method(self) -> Method[Any, Any]:
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.config.seed)
            return self.method_cls(self.options)

    def train(self, name: str, *, steps: int, resume: bool) -> _Trained:
        from medi2i.training import train

        method = self.new_method()
        config = self.config.model_copy(update={"steps": steps, "checkpoint_every": steps})
        what = f"resuming {name!r} to step {steps}" if resume else f"{steps} steps of {name!r}"
        try:
            result = train(
                method,
                self.data,
                config=config,
                run_dir=self.folder / name,
                resume=resume,
                unlabelled=self.unlabelled,
            )
        except Medi2iError as exc:
            raise AssertionError(f"{method.id}: training failed ({what}): {exc}") from exc
        return _Trained(method, result)


def _config(steps: int, patch_size: Shape | None, batch_size: int) -> TrainingConfig:
    from medi2i.training import TrainingConfig

    return TrainingConfig(
        steps=steps,
        batch_size=batch_size,
        patch_size=patch_size,
        amp=False,
        device="cpu",
        seed=0,
        log_every=1,
        checkpoint_every=steps,
        cache="memory",
        num_workers=0,
        progress=False,
    )


@contextmanager
def _random_state_kept() -> Iterator[None]:
    """Give back torch's, NumPy's and Python's global generators as they were (training
    seeds them, and a resume restores them from its checkpoint)."""
    import torch

    numpy_state, python_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=[]):
        try:
            yield
        finally:
            np.random.set_state(numpy_state)
            random.setstate(python_state)


def _initial_modules(runs: _Runs) -> dict[str, dict[str, torch.Tensor]]:
    """The weights a run starts from, made as the trainer makes them: domains first,
    then the modules under the run's seed."""
    import torch

    from medi2i.training.data import domain_labels

    method = runs.new_method()
    names = domain_labels(runs.data)
    if names:
        by_name = {spec.name: spec for spec in runs.data.specs()}
        method.use_domains([by_name.get(name, DomainSpec(name=name)) for name in names])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(runs.config.seed)
        return _module_weights(method)


def _module_weights(method: Method[Any, Any]) -> dict[str, dict[str, torch.Tensor]]:
    return {
        name: {key: value.detach().cpu().clone() for key, value in module.state_dict().items()}
        for name, module in method.training_modules().items()
    }


def _check_losses(run: _Trained, steps: int) -> None:
    from medi2i.training import read_history

    name = run.method.id
    records = [r for r in read_history(run.result.history) if "losses" in r]
    if run.result.steps != steps or [r["step"] for r in records] != list(range(1, steps + 1)):
        raise AssertionError(
            f"{name}: a run of {steps} steps logged the steps {[r['step'] for r in records]}"
        )
    if not run.result.final_losses:
        raise AssertionError(
            f"{name}: training_step returned no losses; return the losses it optimises"
        )
    for record in records:
        bad = {k: v for k, v in record["losses"].items() if v is None or not math.isfinite(v)}
        if bad:
            raise AssertionError(f"{name}: losses of step {record['step']} are not finite: {bad}")


def _check_learned(
    initial: Mapping[str, Mapping[str, torch.Tensor]], method: Method[Any, Any]
) -> None:
    """Every training module with trainable parameters changed: a module whose optimizer
    holds another module's parameters, or that is never stepped, would stay as built."""
    import torch

    trained = _module_weights(method)
    if set(trained) != set(initial):
        raise AssertionError(
            f"{method.id}: training_modules() gave {sorted(initial)} before training and "
            f"{sorted(trained)} after; return the same modules every time"
        )
    trainable = {
        name: [key for key, parameter in module.named_parameters() if parameter.requires_grad]
        for name, module in method.training_modules().items()
    }
    unchanged = sorted(
        name
        for name, keys in trainable.items()
        if keys and all(torch.equal(trained[name][key], initial[name][key]) for key in keys)
    )
    if unchanged == sorted(name for name, keys in trainable.items() if keys):
        raise AssertionError(
            f"{method.id}: training changed no weight of {sorted(trained)}; does training_step "
            "call trainer.backward and trainer.step on the optimizers it registered?"
        )
    if unchanged:
        raise AssertionError(
            f"{method.id}: training changed no weight of the training module(s) {unchanged} "
            "(the others changed): its optimizer holds other parameters, or the module is "
            "never stepped; give each optimizer trainer.modules[name].parameters() and call "
            "trainer.backward and trainer.step for it in training_step"
        )


def _check_resumed(whole: _Trained, resumed: _Trained, stopped: int) -> None:
    name = whole.method.id
    if resumed.result.first_step != stopped:
        raise AssertionError(
            f"{name}: the resumed run started at step {resumed.result.first_step}, not at the "
            f"checkpoint of step {stopped}"
        )
    hint = (
        f"a run stopped after step {stopped} and resumed does not end as the run that was not "
        "interrupted"
    )
    modules = (_module_weights(whole.method), _module_weights(resumed.method))
    _require_same(modules[0], modules[1], f"{name}: {hint}: training module weights", "")
    _require_same(
        whole.method.state_tensors(),
        resumed.method.state_tensors(),
        f"{name}: {hint}: state_tensors()",
        "",
    )
    _require_same(
        whole.method.training_state(),
        resumed.method.training_state(),
        f"{name}: {hint}: training_state() (what a resumed run needs beyond weights and "
        "optimizers: image pools, EMA weights; save it in training_state and restore it in "
        "load_training_state)",
        "",
    )


def _require_same(expected: Any, actual: Any, what: str, where: str) -> None:
    """Raise naming the first place where two nested states differ (tensors bitwise)."""
    import torch

    if isinstance(expected, torch.Tensor) or isinstance(actual, torch.Tensor):
        same = (
            isinstance(expected, torch.Tensor)
            and isinstance(actual, torch.Tensor)
            and expected.dtype == actual.dtype
            and expected.shape == actual.shape
            and torch.equal(expected.cpu(), actual.cpu())
        )
        if not same:
            raise AssertionError(f"{what} differ at {where or 'the top level'}")
    elif isinstance(expected, Mapping) and isinstance(actual, Mapping):
        if set(expected) != set(actual):
            raise AssertionError(
                f"{what} differ at {where or 'the top level'}: keys {sorted(map(str, expected))} "
                f"against {sorted(map(str, actual))}"
            )
        for key in expected:
            _require_same(expected[key], actual[key], what, f"{where}[{key!r}]")
    elif isinstance(expected, (list, tuple)) and isinstance(actual, (list, tuple)):
        if len(expected) != len(actual):
            raise AssertionError(
                f"{what} differ at {where or 'the top level'}: {len(expected)} items "
                f"against {len(actual)}"
            )
        for index, (one, other) in enumerate(zip(expected, actual, strict=True)):
            _require_same(one, other, what, f"{where}[{index}]")
    elif expected != actual:
        raise AssertionError(
            f"{what} differ at {where or 'the top level'}: {expected!r} != {actual!r}"
        )


def _check_reload(run: _Trained, data: CaseSet, condition: Mapping[str, object] | None) -> None:
    from medi2i.model_folder import load_model

    method, name = run.method, run.method.id
    try:
        loaded = load_model(run.result.model_dir, registry=_registry_of(type(method)))
    except Medi2iError as exc:
        raise AssertionError(f"{name}: the trained model folder does not load: {exc}") from exc
    if type(loaded) is not type(method):
        raise AssertionError(f"{name}: loading the model folder gave {type(loaded).__name__}")
    if loaded.options != method.options:
        raise AssertionError(
            f"{name}: options changed in the model folder: {method.options!r} became "
            f"{loaded.options!r}"
        )
    if loaded.domains != method.domains:
        raise AssertionError(
            f"{name}: the model folder holds the domains {list(loaded.domains)}, the trained "
            f"method had {list(method.domains)}"
        )
    image = _input_image(method, data, condition)
    expected, actual = _outputs(method, image, condition), _outputs(loaded, image, condition)
    if sorted(actual) != sorted(expected):
        raise AssertionError(
            f"{name}: the loaded model yields the outputs {sorted(actual)}, the trained "
            f"method {sorted(expected)}"
        )
    differing = _differing(expected, actual)
    if differing is not None:
        reason = _unrepeatable(method, expected, lambda: _outputs(method, image, condition))
        if reason is not None:
            raise AssertionError(
                f"{name}: the method loaded from its model folder predicts{differing} "
                f"differently from the trained one, and {reason}"
            )
        raise AssertionError(
            f"{name}: the method loaded from its model folder predicts{differing} "
            f"differently from the trained one (which predicts the same twice); "
            f"{_STATE_NOT_SAVED}"
        )


def _input_image(
    method: Method[Any, Any], data: CaseSet, condition: Mapping[str, object] | None
) -> MetaTensor:
    """A training volume of the domain the method reads under ``condition``."""
    from medi2i.io import read_volume

    try:
        domain = method.input_domain(method.parse_condition(condition))
    except Medi2iError as exc:
        raise AssertionError(f"{method.id}: the condition {condition!r} is refused: {exc}") from exc
    for case in data.cases:
        if domain is None or case.domain == domain:
            role = "source" if "source" in case.images else "image"
            return read_volume(case.images[role])
    raise AssertionError(
        f"{method.id}: input_domain() names {domain!r}, which is none of the data's domains "
        f"{list(data.domains)}"
    )


def _outputs(
    method: Method[Any, Any], image: MetaTensor, condition: Mapping[str, object] | None
) -> dict[str, MetaTensor]:
    from medi2i.prediction import predict_outputs

    try:
        return predict_outputs(method, image, settings=CONTRACT_SETTINGS, condition=condition)
    except Medi2iError as exc:
        raise AssertionError(f"{method.id}: predicting after training failed: {exc}") from exc
