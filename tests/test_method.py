"""The Method contract: class validation, options, conditions, grids."""

from __future__ import annotations

import json

import numpy as np
import pytest

from medi2i.errors import OptionsError
from medi2i.grid import Grid
from medi2i.method import DataKind, Method, Task, Training, VolumeSpec
from medi2i.patch_network import PatchNetworkMethod
from medi2i.testing.example_methods import EXAMPLE_METHODS, DomainOffset, PointwiseNet


@pytest.mark.parametrize("method_cls", EXAMPLE_METHODS, ids=lambda m: m.id)
def test_every_example_describes_itself_as_json(method_cls: type[Method]) -> None:
    method_cls.validate_class()
    described = json.loads(method_cls.describe().model_dump_json())
    assert described["id"] == method_cls.id
    assert described["tasks"]
    assert described["summary"].startswith("Shape")


def test_options_reject_unknown_keys_and_wrong_types() -> None:
    with pytest.raises(OptionsError, match="hiden"):
        PointwiseNet({"hiden": 3})
    with pytest.raises(OptionsError, match="hidden"):
        PointwiseNet({"hidden": "many"})
    assert PointwiseNet({"hidden": 2}).options.hidden == 2  # type: ignore[attr-defined]
    with pytest.raises(OptionsError, match=r"hiden: Extra inputs.*\(known: roi_size, hidden\)"):
        PointwiseNet({"hiden": 3})


def test_an_option_given_as_a_condition_is_told_where_it_goes() -> None:
    class Offset(DomainOffset):
        class Options(DomainOffset.Options):
            gain: float = 1.0

    with pytest.raises(OptionsError, match=r"gain is an option, not a condition: -o"):
        Offset().parse_condition({"gain": 2.0})
    with pytest.raises(OptionsError, match=r"target_domain is a predict-time condition.*-c"):
        Offset({"target_domain": "B"})


def test_condition_is_validated_against_the_method_model() -> None:
    assert DomainOffset().parse_condition({"target_domain": "C"}).target_domain == "C"  # type: ignore[attr-defined]
    with pytest.raises(OptionsError, match="condition of method"):
        DomainOffset().parse_condition({"domain": "C"})


@pytest.mark.parametrize("error", [OptionsError, ValueError])
def test_a_plugins_condition_check_is_reported_with_the_method(error: type[Exception]) -> None:
    class Picky(DomainOffset):
        def check_condition(self, condition: object) -> None:
            raise error("only domain A is allowed")

    with pytest.raises(OptionsError) as raised:
        Picky().parse_condition({"target_domain": "B"})
    assert str(raised.value) == (
        "condition of method 'example-domain-offset': only domain A is allowed"
    )


def test_a_condition_message_that_names_the_method_is_kept() -> None:
    class Named(DomainOffset):
        def check_condition(self, condition: object) -> None:
            raise OptionsError(f"method {self.id!r} knows no domain B")

    with pytest.raises(OptionsError, match=r"^method 'example-domain-offset' knows no domain B$"):
        Named().parse_condition({"target_domain": "B"})


@pytest.mark.parametrize("bad_id", ["Upper", "9lives", "with space", ""])
def test_method_ids_are_checked(bad_id: str) -> None:
    class Bad(Method):
        id = bad_id
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

        def predict(self, image, context):  # type: ignore[no-untyped-def]
            return image

    with pytest.raises(TypeError, match="method id"):
        Bad.validate_class()


def test_a_method_without_required_attributes_is_refused() -> None:
    class Incomplete(Method):
        id = "incomplete"

        def predict(self, image, context):  # type: ignore[no-untyped-def]
            return image

    with pytest.raises(TypeError, match="tasks"):
        Incomplete.validate_class()


def test_an_abstract_method_class_is_refused_naming_what_it_lacks() -> None:
    """It registered, was listed, and crashed with a traceback when first built."""

    class NoPredict(Method):
        id = "no-predict"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

    class NoNetwork(PatchNetworkMethod):
        id = "no-network"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

    with pytest.raises(TypeError, match=r"'no-predict' does not implement the abstract method"):
        NoPredict.validate_class()
    with pytest.raises(TypeError, match=r"method\(s\) build_network; define it in"):
        NoNetwork.validate_class()


@pytest.mark.parametrize("version", ["0.1.0", "10.20.30", "1.2.3rc1", "1.2.0.post1", "1.2.0.dev3"])
def test_a_major_minor_patch_version_is_accepted(version: str) -> None:
    class Versioned(DomainOffset):
        pass

    Versioned.version = version
    Versioned.validate_class()


@pytest.mark.parametrize(
    "version", ["one", "1.0", "1", "v1.2.3", "1.2.3.4", "1.2.3-beta", " 1.2.3", 1]
)
def test_a_version_the_model_check_cannot_compare_is_refused(version: object) -> None:
    """A version "one" was saved into model folders and turned their version check off."""

    class Versioned(DomainOffset):
        pass

    Versioned.version = version  # type: ignore[assignment]
    with pytest.raises(TypeError, match=r"version .* is not MAJOR\.MINOR\.PATCH \(digits"):
        Versioned.validate_class()


def test_a_mixin_s_options_and_a_window_default_are_checked_at_registration() -> None:
    """Both failed only at the first preprocess or prediction, as tracebacks."""
    import torch

    from medi2i import MRToCTIntensities, Options, PatchNetworkMethod

    class NoMROptions(Options):
        hidden: int = 4

    class MixedIn(MRToCTIntensities, PatchNetworkMethod[NoMROptions]):
        id = "mixed-in"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

        def build_network(self) -> torch.nn.Module:
            return torch.nn.Identity()

    with pytest.raises(TypeError, match=r"uses MRToCTIntensities, which reads the options "
                       r"mr_normalization, mr_percentiles; .* lacks mr_normalization"):  # fmt: skip
        MixedIn.validate_class()

    class IntWindow(Options):
        roi_size: int = 0

    class Windowed(PatchNetworkMethod[IntWindow]):
        id = "windowed"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

        def build_network(self) -> torch.nn.Module:
            return torch.nn.Identity()

    with pytest.raises(TypeError, match=r"roi_size of method 'windowed' is 0; it must be"):
        Windowed.validate_class()
    with pytest.raises(OptionsError, match=r"roi_size of method 'example-pointwise-net' is"):
        PointwiseNet({"roi_size": [8, -1, 8]}).roi_size()


@pytest.mark.parametrize(
    ("training", "hooks", "missing"),
    [
        (Training.GRADIENT, (), "lacks configure_training, training_step"),
        (Training.GRADIENT, ("configure_training",), r"lacks training_step \(it needs all of"),
        (Training.FIT, (), "does not implement fit, through which"),
        (Training.FIT, ("fit_pairs",), "does not implement fit,.*it implements fit_pairs"),
    ],
)
def test_a_declared_way_of_learning_needs_its_hooks(
    training: Training, hooks: tuple[str, ...], missing: str
) -> None:
    def implemented(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return {}

    Declared = type(
        "Declared",
        (Method,),
        {
            "id": "declared",
            "tasks": (Task.TRANSLATION,),
            "input_spec": VolumeSpec(),
            "output_spec": VolumeSpec(),
            "training": training,
            "predict": lambda self, image, context: image,
            **{hook: implemented for hook in hooks},
        },
    )
    with pytest.raises(TypeError, match=f"declares training = '{training.value}'.*{missing}"):
        Declared.validate_class()
    for hook in ("configure_training", "training_step", "fit"):
        setattr(Declared, hook, implemented)
    Declared.validate_class()


def test_a_fitted_method_needs_the_fit_hook_of_its_data_kind() -> None:
    def implemented(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None

    def declared(data: DataKind, hook: str) -> type[Method]:
        return type(
            "Declared",
            (Method,),
            {
                "id": "declared",
                "tasks": (Task.TRANSLATION,),
                "input_spec": VolumeSpec(),
                "output_spec": VolumeSpec(),
                "training": Training.FIT,
                "data": data,
                "predict": lambda self, image, context: image,
                hook: implemented,
            },
        )

    with pytest.raises(TypeError, match="data = 'paired' but does not implement fit_pairs"):
        declared(DataKind.PAIRED, "fit").validate_class()
    declared(DataKind.PAIRED, "fit_pairs").validate_class()
    with pytest.raises(TypeError, match="data = 'single-domain' but does not implement fit,"):
        declared(DataKind.SINGLE_DOMAIN, "fit_pairs").validate_class()
    declared(DataKind.SINGLE_DOMAIN, "fit").validate_class()
    for kind in (DataKind.UNPAIRED, DataKind.MULTI_DOMAIN):
        expected = f"data = '{kind.value}' but does not implement fit_domains.*implements fit,"
        with pytest.raises(TypeError, match=expected):
            declared(kind, "fit").validate_class()
        declared(kind, "fit_domains").validate_class()


def test_scaled_grid_keeps_the_field_of_view() -> None:
    affine = np.array(
        [[0.0, -1.0, 0.0, 5.0], [2.0, 0.0, 0.0, -3.0], [0, 0, 4.0, 1.0], [0, 0, 0, 1]]
    )
    grid = Grid((10, 12, 8), affine)
    fine = grid.scaled((2.0, 1.0, 4.0))
    assert fine.shape == (20, 12, 32)
    assert np.allclose(fine.spacing, (1.0, 1.0, 1.0))
    for corner in ((-0.5, -0.5, -0.5), (9.5, 11.5, 7.5)):
        old = affine @ np.array([*corner, 1.0])
        index = np.array(corner) * (2.0, 1.0, 4.0) + (np.array((2.0, 1.0, 4.0)) - 1) / 2
        assert np.allclose(fine.affine @ np.array([*index, 1.0]), old)


def test_a_subclass_keeps_the_options_its_parent_set() -> None:
    # a class that sets Options itself, subclassed without type parameters: the
    # grandparent's parameters must not come back (they did, read through inheritance)
    from pydantic import BaseModel, ConfigDict

    from medi2i import NoCondition, PatchNetworkMethod

    class First(BaseModel):
        model_config = ConfigDict(extra="forbid")
        size: int = 1

    class Second(First):
        depth: int = 2

    class Generic(PatchNetworkMethod[First, NoCondition]):  # type: ignore[misc]
        pass

    class Parent(Generic):
        Options = Second

    class Child(Parent):
        pass

    assert Generic.Options is First
    assert Child.Options is Second
