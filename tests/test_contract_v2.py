"""The Method contract's shapes for unpaired, multi-domain, conditioned, multi-output and
adapting methods: domains reach preprocessing and the model folder, conditions decide the
outputs, named outputs are written each with its provenance, per-volume state is reset,
intensity augmentation follows the method, frozen auxiliary networks are checked."""

from __future__ import annotations

import json
import types
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor
from pydantic import BaseModel, ConfigDict

from medi2i import (
    AdaptContext,
    AuxiliaryNetwork,
    DataKind,
    DomainSpec,
    Method,
    NoCondition,
    Options,
    Output,
    PredictContext,
    Task,
    Training,
    VolumeSpec,
    hookimpl,
)
from medi2i.data.cases import IMAGE, Case, CaseSet
from medi2i.errors import ModelFormatError, OptionsError
from medi2i.hashing import file_sha256
from medi2i.io import read_volume, write_volume
from medi2i.io.base import volume_from_array
from medi2i.model_folder import load_model, read_manifest, save_model
from medi2i.plugins import load_plugins
from medi2i.prediction import named_output_path, predict, predict_all, predict_outputs
from medi2i.registry import Registry
from medi2i.settings import InferenceSettings
from medi2i.training.auxiliary import load_auxiliary_networks
from medi2i.training.config import AugmentationConfig
from medi2i.training.data import TrainingVolume, VolumeStore, load_training_volume
from medi2i.training.patches import PatchSampler

QUIET = InferenceSettings(device="cpu", progress=False)


def image(values: np.ndarray | None = None) -> MetaTensor:
    data = values if values is not None else np.linspace(0, 1, 8 * 8 * 8).reshape(8, 8, 8)
    affine = np.diag([1.0, 1.0, 2.0, 1.0])
    return volume_from_array(np.asarray(data, np.float32), affine, path=Path("test.nii.gz"))


class Direction(BaseModel):
    """Which domain to translate into."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    to: str | None = None


class TwoWay(Method[Options, Direction]):
    """A two-way MR↔CT toy: records the domains it was given, scales per domain."""

    id = "two-way-toy"
    tasks = (Task.TRANSLATION,)
    data = DataKind.UNPAIRED
    training = Training.FIT
    input_spec = VolumeSpec()
    output_spec = VolumeSpec()

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.seen: list[tuple[str, str | None]] = []

    def fit(self, volumes: Sequence[MetaTensor]) -> None:
        """Its per-domain scales are fixed; fitting only records that it happened."""
        self.seen.append(("fit", None))

    def target(self, condition: Direction) -> str:
        return condition.to or self.domain_names[1]

    def check_condition(self, condition: Direction) -> None:
        if condition.to is not None:
            self.domain(condition.to)  # raises with the known names

    def input_domain(self, condition: Direction) -> str | None:
        (other,) = [n for n in self.domain_names if n != self.target(condition)]
        return other

    def outputs(self, condition: Direction) -> tuple[Output, ...]:
        target = self.target(condition)
        return (Output("", self.domain(target).volume_spec(), target),)

    def preprocess(
        self, image: MetaTensor, *, domain: str | None = None, condition: object = None
    ) -> MetaTensor:
        self.seen.append(("pre", domain))
        return image * (0.001 if domain and self.domain(domain).modality == "CT" else 1.0)

    def predict(self, image: MetaTensor, context: PredictContext[Direction]) -> torch.Tensor:
        return image

    def postprocess(
        self,
        output: MetaTensor,
        image: MetaTensor,
        *,
        domain: str | None = None,
        condition: object = None,
    ) -> MetaTensor:
        self.seen.append(("post", domain))
        return output * (1000.0 if domain and self.domain(domain).modality == "CT" else 1.0)


DOMAINS = (DomainSpec(name="ct", modality="CT", units="HU"), DomainSpec(name="mr", modality="MR"))


class Styles(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    styles: int = 2


class Sampler(Method[Options, Styles]):
    """Yields ``styles`` named outputs, each scaled by its index plus one."""

    id = "style-sampler"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec(modality="MR")

    def outputs(self, condition: Styles) -> tuple[Output, ...]:
        return tuple(
            Output(f"style-{k}", self.output_spec, condition={"style": k})
            for k in range(condition.styles)
        )

    def predict(
        self, image: MetaTensor, context: PredictContext[Styles]
    ) -> Mapping[str, torch.Tensor]:
        return {f"style-{k}": image * (k + 1) for k in range(context.condition.styles)}


class SelfAdapting(Method):
    """Keeps a running offset it changes while predicting (restored after each volume)."""

    id = "self-adapting"
    tasks = (Task.HARMONIZATION,)
    input_spec = output_spec = VolumeSpec()
    restores_state = True
    adapts = True

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self.offset = 0.0

    def predict(self, image: MetaTensor, context: PredictContext[NoCondition]) -> torch.Tensor:
        self.offset += 1.0
        return image + self.offset

    def state_values(self) -> dict[str, float]:  # type: ignore[override]
        return {"offset": self.offset}

    def load_state_values(self, values: Mapping[str, Any]) -> None:
        self.offset = float(values.get("offset", 0.0))

    def adapt(self, volumes: Any, context: AdaptContext) -> None:
        self.offset = float(np.mean([float(v.mean()) for v in volumes]))


def registry_with(*methods: type[Method[Any, Any]]) -> Registry:
    plugin = types.ModuleType("contract_v2_methods")

    @hookimpl
    def register_methods(register: Any) -> None:
        for method in methods:
            register(method)

    plugin.register_methods = register_methods  # type: ignore[attr-defined]
    plugins = load_plugins()
    plugins.manager.register(plugin, name="contract-v2")
    return Registry(plugins)


# -- type parameters and declarations ---------------------------------------------------


def test_type_parameters_give_the_options_and_condition_models() -> None:
    assert TwoWay.Condition is Direction
    assert Sampler.Condition is Styles
    assert TwoWay.Options is Options


def test_a_plugin_api_1_hook_signature_is_refused_at_registration() -> None:
    class Old(Method):
        id = "old-style"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

        def preprocess(self, image):  # type: ignore[no-untyped-def, override]
            return image

        def predict(self, image, context):  # type: ignore[no-untyped-def]
            return image

    with pytest.raises(TypeError, match=r"preprocess must take the keyword arguments domain"):
        Old.validate_class()


def test_training_is_declared_not_inferred() -> None:
    from medi2i.training.routes import training_route

    assert training_route(TwoWay()) == "fit"
    assert training_route(Sampler()) == "save"

    class Forgot(TwoWay):
        id = "forgot"
        training = Training.NONE

    with pytest.raises(OptionsError, match="declares no way to learn"):
        training_route(Forgot())


def test_output_scale_is_per_instance() -> None:
    from medi2i.testing.example_methods import ThroughPlaneUpsampler

    first, second = ThroughPlaneUpsampler(), ThroughPlaneUpsampler()
    second.output_scale = (1.0, 1.0, 4.0)
    assert first.output_scale == (1.0, 1.0, 2.0)


# -- domains and conditions ---------------------------------------------------------------


def test_domains_decide_input_and_output_processing_and_the_output_spec() -> None:
    method = TwoWay()
    method.use_domains(DOMAINS)
    to_ct = predict_outputs(method, image(), settings=QUIET, condition={"to": "ct"})[""]
    assert method.seen == [("pre", "mr"), ("post", "ct")]
    assert to_ct.meta["medi2i.output.modality"] == "CT"
    method.seen.clear()
    to_mr = predict_outputs(method, image(), settings=QUIET, condition={"to": "mr"})[""]
    assert method.seen == [("pre", "ct"), ("post", "mr")]
    assert to_mr.meta["medi2i.output.modality"] == "MR"
    assert to_mr.meta["medi2i.output.units"] == "arbitrary"


def test_a_condition_naming_an_unknown_domain_is_refused_with_the_known_ones() -> None:
    method = TwoWay()
    method.use_domains(DOMAINS)
    with pytest.raises(OptionsError, match=r"no domain 'pet'.*\['ct', 'mr'\]"):
        method.parse_condition({"to": "pet"})


def test_unpaired_methods_need_exactly_two_domains() -> None:
    with pytest.raises(OptionsError, match="exactly two"):
        TwoWay().use_domains(["a", "b", "c"])


def test_training_volumes_are_preprocessed_with_their_domain(tmp_path: Path) -> None:
    method = TwoWay()
    method.use_domains(DOMAINS)
    path = tmp_path / "ct.nii.gz"
    write_volume(image(np.full((8, 8, 8), 1000.0)), path)
    loaded = load_training_volume(
        Case("ct/1", {IMAGE: path}, "ct"),
        method=method,
        kind=DataKind.UNPAIRED,
        domain=0,
        patch_size=(4, 4, 4),
        foreground_threshold=None,
        domain_name="ct",
    )
    assert method.seen == [("pre", "ct")]
    assert float(loaded.input.max()) == pytest.approx(1.0)


def test_domains_are_stored_in_the_model_folder(tmp_path: Path) -> None:
    registry = registry_with(TwoWay)
    method = TwoWay()
    method.use_domains(DOMAINS)
    folder = save_model(method, tmp_path / "model")
    assert [d.name for d in read_manifest(folder).domains] == ["ct", "mr"]
    loaded = load_model(folder, registry=registry)
    assert loaded.domains == DOMAINS


def test_a_two_way_model_writes_a_ct_direction_as_ct_dicom_and_the_other_as_mr(
    tmp_path: Path,
) -> None:
    import pydicom

    registry = registry_with(TwoWay)
    method = TwoWay()
    method.use_domains(DOMAINS)
    model = save_model(method, tmp_path / "model")
    source = tmp_path / "in.nii.gz"
    write_volume(image(np.linspace(0, 500, 512).reshape(8, 8, 8)), source)
    for to, modality in (("ct", "CT"), ("mr", "MR")):
        out = tmp_path / f"to-{to}"
        predict(source, out, model=model, settings=QUIET, condition={"to": to}, registry=registry)
        first = pydicom.dcmread(sorted(out.glob("*.dcm"))[0])
        assert first.Modality == modality
        record = json.loads((tmp_path / f"to-{to}.provenance.json").read_text())
        assert record["condition"] == {"to": to}
        assert [d["name"] for d in record["domains"]] == ["ct", "mr"]


# -- named outputs -------------------------------------------------------------------------


def test_named_output_paths() -> None:
    assert named_output_path(Path("a/sct.nii.gz"), "") == Path("a/sct.nii.gz")
    assert named_output_path(Path("a/sct.nii.gz"), "style-2") == Path("a/sct_style-2.nii.gz")
    assert named_output_path(Path("a/out.mha"), "B") == Path("a/out_B.mha")
    assert named_output_path(Path("a/series"), "B") == Path("a/series_B")
    with pytest.raises(OptionsError, match="letters, digits"):
        named_output_path(Path("a.nii.gz"), "../x")


def test_every_named_output_is_written_with_its_own_provenance(tmp_path: Path) -> None:
    registry = registry_with(Sampler)
    source = tmp_path / "in.nii.gz"
    write_volume(image(), source)
    written = predict_all(
        source,
        tmp_path / "out.nii.gz",
        method="style-sampler",
        settings=QUIET,
        condition={"styles": 3},
        registry=registry,
    )
    assert sorted(written) == ["style-0", "style-1", "style-2"]
    original = read_volume(source).as_tensor()
    for k in range(3):
        path = tmp_path / f"out_style-{k}.nii.gz"
        assert written[f"style-{k}"] == path
        assert torch.allclose(read_volume(path).as_tensor(), original * (k + 1), atol=1e-5)
        record = json.loads((tmp_path / f"out_style-{k}.provenance.json").read_text())
        assert record["output"]["name"] == f"style-{k}"
        assert record["output"]["condition"] == {"style": k}
        assert record["condition"] == {"styles": 3}
    assert not (tmp_path / "out.nii.gz").exists()


def test_predict_refuses_several_outputs_before_writing_anything(tmp_path: Path) -> None:
    registry = registry_with(Sampler)
    source = tmp_path / "in.nii.gz"
    write_volume(image(), source)
    with pytest.raises(OptionsError, match="predict_all"):
        predict(source, tmp_path / "out.nii.gz", method="style-sampler", registry=registry)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.nii.gz"]


def test_an_existing_named_output_is_refused_before_the_inference(tmp_path: Path) -> None:
    from medi2i.errors import OutputError

    registry = registry_with(Sampler)
    source = tmp_path / "in.nii.gz"
    write_volume(image(), source)
    (tmp_path / "out_style-1.nii.gz").write_bytes(b"keep me")
    with pytest.raises(OutputError):
        predict_all(source, tmp_path / "out.nii.gz", method="style-sampler", registry=registry)
    assert (tmp_path / "out_style-1.nii.gz").read_bytes() == b"keep me"
    assert not (tmp_path / "out_style-0.nii.gz").exists()


# -- per-volume state and adaptation -------------------------------------------------------


def test_state_changed_while_predicting_is_restored_after_each_volume() -> None:
    method = SelfAdapting()
    first = predict_outputs(method, image(), settings=QUIET)[""]
    second = predict_outputs(method, image(), settings=QUIET)[""]
    assert torch.equal(first.as_tensor(), second.as_tensor())
    assert method.offset == 0.0


def test_adapt_writes_a_new_model_naming_its_source(tmp_path: Path) -> None:
    from medi2i.adaptation import adapt_model

    registry = registry_with(SelfAdapting)
    source = save_model(SelfAdapting(), tmp_path / "model")
    target = tmp_path / "target.nii.gz"
    write_volume(image(np.full((8, 8, 8), 7.0)), target)
    adapted = adapt_model(source, [target], tmp_path / "adapted", registry=registry)
    manifest = read_manifest(adapted)
    assert manifest.state == {"offset": 7.0}
    assert manifest.adapted_from is not None
    assert manifest.adapted_from.model == str(source)
    assert manifest.adapted_from.data == [str(target)]
    assert read_manifest(source).state == {"offset": 0.0}  # the source is left alone
    with pytest.raises(OptionsError, match="replace its source"):
        adapt_model(source, [target], source, registry=registry)


def test_a_method_that_does_not_adapt_is_refused(tmp_path: Path) -> None:
    from medi2i.adaptation import adapt_model

    registry = registry_with(Sampler)
    source = save_model(Sampler(), tmp_path / "model")
    with pytest.raises(OptionsError, match="does not adapt"):
        adapt_model(source, [tmp_path / "x.nii.gz"], tmp_path / "out", registry=registry)


# -- augmentation roles ----------------------------------------------------------------------


def sampler_for(roles: frozenset[str], kind: DataKind) -> PatchSampler:
    volumes = [
        TrainingVolume(
            f"case{d}",
            torch.full((1, 8, 8, 8), float(d + 1)),
            torch.full((1, 8, 8, 8), 5.0) if kind is DataKind.PAIRED else None,
            np.arange(8 * 8 * 8),
            1.0,
            d,
        )
        for d in range(2)
    ]
    store = VolumeStore(2, volumes.__getitem__, keep=True)
    always = AugmentationConfig(
        enabled=True,
        intensity_probability=1.0,
        noise_probability=0.0,
        flip_probability=0.0,
        rotate90_probability=0.0,
    )
    return PatchSampler(
        store,
        kind=kind,
        groups=[[0], [1]] if kind is DataKind.UNPAIRED else [[0, 1]],
        patch_size=(4, 4, 4),
        batch_size=2,
        patches_per_volume=1,
        foreground_ratio=0.0,
        augmentation=always,
        seed=0,
        rank=0,
        augmented_roles=roles,
        domain_names=("ct", "mr") if kind is DataKind.UNPAIRED else (),
    )


def test_real_target_domain_images_are_not_intensity_augmented_by_default() -> None:
    method = TwoWay()
    roles = frozenset(r for r in ("source", "target", "ct", "mr") if method.augments_intensity(r))
    assert roles == {"source"}
    batch = sampler_for(roles, DataKind.UNPAIRED)(step=0, micro=0)
    assert torch.equal(batch["a"], torch.full_like(batch["a"], 1.0))
    assert torch.equal(batch["b"], torch.full_like(batch["b"], 2.0))
    paired = sampler_for(roles, DataKind.PAIRED)(step=0, micro=0)
    assert torch.equal(paired["target"], torch.full_like(paired["target"], 5.0))
    for patch in paired["source"]:  # sources are augmented: no longer the plain 1 or 2
        assert float(patch.flatten()[0]) not in (1.0, 2.0)


def test_a_method_can_ask_for_a_domain_to_be_augmented() -> None:
    batch = sampler_for(frozenset({"mr"}), DataKind.UNPAIRED)(step=0, micro=0)
    assert torch.equal(batch["a"], torch.full_like(batch["a"], 1.0))
    assert not torch.equal(batch["b"], torch.full_like(batch["b"], 2.0))


# -- auxiliary networks ----------------------------------------------------------------------


def test_auxiliary_networks_are_hash_checked_frozen_and_recorded(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    weights = tmp_path / "features.safetensors"
    save_file({"weight": torch.ones(2, 1, 1, 1, 1), "bias": torch.zeros(2)}, str(weights))

    def build() -> torch.nn.Module:
        return torch.nn.Conv3d(1, 2, 1)

    class WithFeatures(SelfAdapting):
        id = "with-features"
        declared = file_sha256(weights)

        def auxiliary_networks(self) -> dict[str, AuxiliaryNetwork]:
            return {"features": AuxiliaryNetwork(build, weights, self.declared)}

    networks = load_auxiliary_networks(WithFeatures())
    assert torch.equal(networks["features"].weight, torch.ones(2, 1, 1, 1, 1))
    from medi2i.training.trainer import Trainer

    trainer = Trainer({}, device=torch.device("cpu"), auxiliary=networks)
    frozen = trainer.auxiliary["features"]
    assert not frozen.training
    assert not any(p.requires_grad for p in frozen.parameters())
    folder = save_model(WithFeatures(), tmp_path / "model")
    assert read_manifest(folder).auxiliary == {"features": file_sha256(weights)}

    WithFeatures.declared = "0" * 64
    with pytest.raises(ModelFormatError, match="not the declared"):
        load_auxiliary_networks(WithFeatures())


# -- workflow checks --------------------------------------------------------------------------


def unpaired_workflow(tmp_path: Path, **extra: object) -> dict[str, Any]:
    for domain in ("mr", "ct"):
        for k in range(3):
            write_volume(
                image(np.random.default_rng(k).random((8, 8, 8))), tmp_path / domain / f"{k}.nii.gz"
            )
    return {
        "data": {
            "kind": "unpaired",
            "layout": {
                "type": "folders",
                "folders": {"mr": str(tmp_path / "mr"), "ct": str(tmp_path / "ct")},
            },
            "domains": [d.model_dump() for d in DOMAINS],
            **extra,
        },
        "method": {"id": "two-way-toy", "condition": {"to": "ct"}},
        "output": {"root": str(tmp_path / "runs")},
    }


def test_validate_refuses_a_bad_condition_and_an_unpaired_validation_split(tmp_path: Path) -> None:
    from medi2i.data.discovery import discover_splits
    from medi2i.workflow.checks import check_condition, check_validation
    from medi2i.workflow.loader import WorkflowError
    from medi2i.workflow.schema import Workflow

    registry = registry_with(TwoWay)
    raw = unpaired_workflow(tmp_path, split={"validation": 0.34})
    workflow = Workflow.model_validate(raw)
    check_condition(workflow, registry)
    bad = Workflow.model_validate(
        {**raw, "method": {"id": "two-way-toy", "condition": {"to": "x"}}}
    )
    with pytest.raises(WorkflowError, match=r"method.condition: .*no domain 'x'"):
        check_condition(bad, registry)
    with pytest.raises(WorkflowError, match=r"data\.validation_data"):
        check_validation(workflow, discover_splits(workflow.data), registry)


def test_paired_validation_data_validates_unpaired_training(tmp_path: Path) -> None:
    from medi2i.data.discovery import discover_splits
    from medi2i.workflow.checks import check_validation
    from medi2i.workflow.schema import Workflow

    for role in ("source", "target"):
        write_volume(image(), tmp_path / "pairs" / role / "1.nii.gz")
    layout = {
        "type": "folders",
        "folders": {r: str(tmp_path / "pairs" / r) for r in ("source", "target")},
    }
    workflow = Workflow.model_validate(unpaired_workflow(tmp_path, validation_data=layout))
    splits = discover_splits(workflow.data)
    assert splits.validation.kind is DataKind.PAIRED
    assert [c.id for c in splits.validation.cases] == ["1"]
    assert len(splits.train.cases) == 6
    check_validation(workflow, splits, registry_with(TwoWay))


def test_each_validation_case_is_predicted_under_its_own_condition(tmp_path: Path) -> None:
    from medi2i.data.discovery import discover_splits
    from medi2i.training.validation import ValidationCase, validate
    from medi2i.workflow.checks import check_validation
    from medi2i.workflow.loader import WorkflowError
    from medi2i.workflow.schema import Workflow

    method = TwoWay()
    method.use_domains(DOMAINS)
    ramp = np.asarray(image()[0])
    into_ct = ValidationCase("mr-to-ct", image(), 1000 * ramp, None, {"to": "ct"})
    into_mr = ValidationCase("ct-to-mr", image(), 0.001 * ramp, None, {"to": "mr"})
    # the case's condition overrides the workflow's, key by key: both cases are exact
    assert validate(method, [into_ct, into_mr], settings=QUIET, condition={"to": "mr"})[
        "mae"
    ] == pytest.approx(0.0, abs=1e-6)
    # without its own condition a case follows the workflow's, here the wrong direction
    plain = ValidationCase("mr-to-ct", image(), 1000 * ramp, None)
    assert validate(method, [plain], settings=QUIET, condition={"to": "mr"})["mae"] > 400

    for role in ("source", "target"):
        write_volume(image(), tmp_path / "pairs" / f"{role}.nii.gz")
    manifest = tmp_path / "pairs" / "validation.csv"
    manifest.write_text(
        "case,role,path,condition\n"
        "p,source,source.nii.gz,to=nowhere\np,target,target.nii.gz,to=nowhere\n"
    )
    raw = unpaired_workflow(tmp_path, validation_data={"type": "csv", "manifest": str(manifest)})
    workflow = Workflow.model_validate(raw)
    splits = discover_splits(workflow.data)
    assert splits.validation.cases[0].condition == (("to", "nowhere"),)
    with pytest.raises(WorkflowError, match=r"validation case 'p': .*no domain 'nowhere'"):
        check_validation(workflow, splits, registry_with(TwoWay))


def test_cases_keep_the_declared_domain_specs() -> None:
    cases = CaseSet(DataKind.UNPAIRED, (), ("ct", "mr"), DOMAINS)
    assert cases.specs() == DOMAINS
    assert CaseSet(DataKind.UNPAIRED, (), ("a", "b")).specs()[1] == DomainSpec(name="b")


def test_the_input_modality_of_a_two_way_model_follows_the_direction() -> None:
    from medi2i.dicom.source import META_KEY
    from medi2i.errors import InputError

    method = TwoWay()
    method.use_domains(DOMAINS)
    ct_series = image()
    ct_series.meta[META_KEY] = types.SimpleNamespace(modality="CT")
    predict_outputs(method, ct_series, settings=QUIET, condition={"to": "mr"})  # CT in: fine
    with pytest.raises(InputError, match="the series is CT"):
        predict_outputs(method, ct_series, settings=QUIET, condition={"to": "ct"})


def test_the_plugin_option_loads_an_example_plugin_for_one_command() -> None:
    from click.testing import CliRunner

    from medi2i.cli.main import build_cli

    runner = CliRunner()
    plain = runner.invoke(build_cli(load_plugins()), ["methods", "--json"])
    extra = runner.invoke(
        build_cli(load_plugins()),
        ["--plugin", "medi2i.testing.trainable_examples", "methods", "--json"],
    )
    assert plain.exit_code == 0, plain.output
    assert extra.exit_code == 0, extra.output
    assert "example-cycle" not in plain.stdout
    assert "example-cycle" in extra.stdout
    unknown = runner.invoke(build_cli(load_plugins()), ["--plugin", "nope", "methods"])
    assert unknown.exit_code != 0
    assert "nope" in unknown.output


def test_a_workflow_adapts_its_model_before_evaluating_it(tmp_path: Path) -> None:
    from medi2i.workflow.demo_data import write_demo_cases
    from medi2i.workflow.runner import run_workflow
    from medi2i.workflow.schema import Workflow

    write_demo_cases(tmp_path / "cases", count=2, shape=(8, 8, 8))
    write_volume(image(np.full((8, 8, 8), 3.0)), tmp_path / "site-b" / "1.nii.gz")
    write_volume(image(np.full((8, 8, 8), 5.0)), tmp_path / "site-b" / "2.nii.gz")
    workflow = Workflow.model_validate(
        {
            "data": {
                "kind": "paired",
                "layout": {"type": "synthrad", "root": str(tmp_path / "cases")},
                "split": {"test": ["demo001"]},
            },
            "method": {"id": "self-adapting"},
            "adaptation": {
                "data": {"type": "folders", "folders": {"image": str(tmp_path / "site-b")}}
            },
            "evaluation": {"metrics": ["mae"], "mask": None},
            "inference": {"device": "cpu", "progress": False},
            "report": {"enabled": False},
            "output": {"root": str(tmp_path / "runs"), "run_id": "adapted"},
        }
    )
    result = run_workflow(workflow, registry=registry_with(SelfAdapting))
    assert result.model_dir == tmp_path / "runs" / "run-adapted" / "adapted"
    manifest = read_manifest(result.model_dir)
    assert manifest.state == {"offset": 4.0}
    assert manifest.adapted_from is not None
    assert Path(manifest.adapted_from.model).name == "model"
    state = json.loads((tmp_path / "runs" / "run-adapted" / "run.json").read_text())
    assert set(state["stages"]) >= {"train", "adapt", "evaluate"}
    assert state["model"] == "adapted"


def test_domain_modalities_are_dicom_codes_and_names_are_file_safe() -> None:
    from pydantic import ValidationError

    assert DomainSpec(name="ct", modality="ct").modality == "CT"
    assert DomainSpec(name="x", modality=" Any ").modality == "any"
    assert DomainSpec(name="Site A").name == "Site A"
    for bad in ("../ct", "", " a", "a/b"):
        with pytest.raises(ValidationError, match="domain name"):
            DomainSpec(name=bad)


def test_an_adapted_model_never_replaces_an_input_even_with_overwrite(tmp_path: Path) -> None:
    from medi2i.adaptation import adapt_model
    from medi2i.errors import OutputError

    registry = registry_with(SelfAdapting)
    source = save_model(SelfAdapting(), tmp_path / "model")
    series = tmp_path / "site-b"
    write_volume(image(np.full((8, 8, 8), 7.0)), series / "1.nii.gz")
    before = (series / "1.nii.gz").read_bytes()
    for output in (series / "1.nii.gz", series, tmp_path):  # is an input, or holds one
        with pytest.raises(OutputError):
            adapt_model(source, [series / "1.nii.gz"], output, registry=registry, overwrite=True)
    assert (series / "1.nii.gz").read_bytes() == before
    assert read_manifest(source).state == {"offset": 0.0}
