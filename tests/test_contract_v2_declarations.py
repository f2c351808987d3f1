"""What a v2 method declares: its options and condition models as type parameters,
keyword-only hook signatures, its training route, a per-instance output scale; and the
``--plugin`` option that loads example methods for one command.
"""

from __future__ import annotations

import pytest

from medi2i import Method, Options, Task, Training, VolumeSpec
from medi2i.errors import OptionsError
from medi2i.plugins import load_plugins
from tests.contract_v2_methods import Direction, Sampler, Styles, TwoWay


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
