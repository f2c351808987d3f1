"""What a plugin author declares is checked where it is registered, in one line that
names the class, its file and what to write instead: method metadata of the wrong type,
a hook parameter named otherwise than in the hook reference, several broken classes in
one plugin, two classes with one id, a network with integer outputs, and the names of
the public API the guide uses."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import torch

import medi2i
from medi2i import (
    DataKind,
    Method,
    NoCondition,
    Options,
    PatchNetworkMethod,
    Task,
    Training,
    VolumeSpec,
)
from medi2i.errors import PluginError
from medi2i.method import MethodClass
from medi2i.plugins import PluginWarning, add_installed_plugin, load_plugins
from medi2i.registry import Registry
from medi2i.testing import check_method_contract
from tests.fake_plugins import Echo, FakeEntryPoint, install_fake_entry_points, plugin, registering

HERE = __file__.removesuffix("c")  # the file the classes below are defined in


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    return install_fake_entry_points(monkeypatch)


class _Base(Method[Options, NoCondition]):
    tasks = (Task.HARMONIZATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image.float()  # type: ignore[no-any-return]


class StrTasks(_Base):
    id = "str-tasks"
    tasks = ("translation",)  # type: ignore[assignment]


class StrData(_Base):
    id = "str-data"
    data = "single-domain"  # type: ignore[assignment]


class StrTraining(_Base):
    id = "str-training"
    training = "fit"  # type: ignore[assignment]


class DictSpec(_Base):
    id = "dict-spec"
    input_spec = {"modality": "MR"}  # type: ignore[assignment]  # noqa: RUF012


class NumberPaper(_Base):
    id = "number-paper"
    paper = 42  # type: ignore[assignment]


MISDECLARED = [
    (StrTasks, r"tasks = \('translation',\) must be a tuple of medi2i\.Task members, "
     r"e\.g\. \(Task\.TRANSLATION,\)"),
    (StrData, r"data = 'single-domain' must be a medi2i\.DataKind member, "
     r"e\.g\. DataKind\.SINGLE_DOMAIN"),
    (StrTraining, r"training = 'fit' must be a medi2i\.Training member, e\.g\. Training\.FIT"),
    (DictSpec, r"input_spec = \{'modality': 'MR'\} must be a medi2i\.VolumeSpec"),
    (NumberPaper, r"paper = 42 must be a string"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("method_cls", "problem"), MISDECLARED, ids=[c.__name__ for c, _ in MISDECLARED]
)
def test_metadata_of_the_wrong_type_is_refused_at_registration_naming_class_and_file(
    installed: list[FakeEntryPoint], method_cls: MethodClass, problem: str
) -> None:
    """Such classes registered, then crashed ``medi2i methods`` for every method."""
    installed.append(
        FakeEntryPoint("mine", plugin("mine", register_methods=registering(method_cls, Echo)))
    )
    registry = Registry(load_plugins())

    with pytest.warns(PluginWarning) as warned:
        assert registry.methods.keys().isdisjoint({method_cls.id, "echo"})
    [failure] = registry.plugins.failures
    assert "\n" not in failure.error
    assert f"method {method_cls.id!r}: " in failure.error
    assert f"{method_cls.__qualname__}, defined at {HERE}" in failure.error
    assert len(warned) == 1
    assert re.search(problem, failure.error), failure.error


@pytest.mark.parametrize(
    ("method_cls", "problem"), MISDECLARED, ids=[c.__name__ for c, _ in MISDECLARED]
)
def test_the_contract_check_refuses_them_with_an_assertion_error(
    method_cls: MethodClass, problem: str
) -> None:
    with pytest.raises(AssertionError, match=problem):
        check_method_contract(method_cls)


def test_the_enum_members_themselves_still_register(installed: list[FakeEntryPoint]) -> None:
    class Fine(_Base):
        id = "fine"
        tasks = (Task.TRANSLATION, Task.HARMONIZATION)
        data = DataKind.SINGLE_DOMAIN
        training = Training.FIT

        def fit(self, volumes: Any) -> None:
            pass

    installed.append(FakeEntryPoint("mine", plugin("mine", register_methods=registering(Fine))))

    assert "fine" in Registry(load_plugins()).methods


def test_a_misnamed_hook_parameter_is_one_line_naming_plugin_file_and_parameter(
    installed: list[FakeEntryPoint],
) -> None:
    def register_methods(reg: Callable[[MethodClass], None]) -> None:
        reg(Echo)

    installed.append(FakeEntryPoint("mine", plugin("mine", register_methods=register_methods)))

    with pytest.warns(PluginWarning):
        plugins = load_plugins()

    [failure] = plugins.failures
    assert "\n" not in failure.error
    assert "pluggy" not in failure.error
    assert f"register_methods(reg) at {HERE}, line " in failure.error
    assert failure.error.endswith("def register_methods(register)")


def test_a_misnamed_hook_parameter_of_a_plugin_selected_by_name_is_one_line(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    def register_methods(reg: Callable[[MethodClass], None]) -> None:
        reg(Echo)

    installed.append(FakeEntryPoint("mine", plugin("mine", register_methods=register_methods)))
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "")
    plugins = load_plugins()

    with pytest.raises(PluginError) as raised:
        add_installed_plugin(plugins, "mine")
    message = str(raised.value)
    assert "\n" not in message
    assert message.startswith("plugin 'mine' cannot be registered: its hook register_methods(reg)")
    assert message.endswith("def register_methods(register)")


def test_every_broken_class_of_a_plugin_is_listed(installed: list[FakeEntryPoint]) -> None:
    """``medi2i plugins --check`` stopped at the first, as the guide says it does not."""
    installed.append(
        FakeEntryPoint("mine", plugin("mine", register_methods=registering(StrTasks, DictSpec)))
    )
    registry = Registry(load_plugins())

    with pytest.warns(PluginWarning):
        _ = registry.methods
    errors = [failure.error for failure in registry.plugins.failures]
    assert len(errors) == 2
    assert "'str-tasks'" in errors[0]
    assert "'dict-spec'" in errors[1]


def test_one_id_twice_names_both_classes_and_their_file(installed: list[FakeEntryPoint]) -> None:
    class EchoAgain(Echo):
        """Another echo."""

    installed.append(
        FakeEntryPoint("one", plugin("one", register_methods=registering(Echo, EchoAgain)))
    )
    registry = Registry(load_plugins())

    with pytest.warns(PluginWarning):
        _ = registry.methods
    [failure] = registry.plugins.failures
    assert "registers method 'echo' twice (tests.fake_plugins.Echo, defined at " in failure.error
    assert f"EchoAgain, defined at {HERE}" in failure.error


class _WindowOptions(Options):
    roi_size: tuple[int, int, int] = (16, 16, 16)


class _Integers(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x * 100).to(torch.int32)


class _Shrinks(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[..., 2:-2, 2:-2, 2:-2]


class IntegerNetwork(PatchNetworkMethod[_WindowOptions, NoCondition]):
    id = "integer-network"
    tasks = (Task.HARMONIZATION,)
    input_spec = output_spec = VolumeSpec()

    def build_network(self) -> torch.nn.Module:
        return _Integers()


class PointwiseIntegerNetwork(IntegerNetwork):
    id = "pointwise-integer-network"
    pointwise = True


class ShrinkingNetwork(IntegerNetwork):
    id = "shrinking-network"

    def build_network(self) -> torch.nn.Module:
        return _Shrinks()


@pytest.mark.parametrize("method_cls", [IntegerNetwork, PointwiseIntegerNetwork])
def test_a_network_with_integer_outputs_fails_the_contract_check(method_cls: MethodClass) -> None:
    """The guide says integer outputs are refused; a network's were made float32."""
    with pytest.raises(
        AssertionError,
        match=rf"the network of method '{method_cls.id}' returned windows of dtype torch\.int32, "
        "not a floating-point type",
    ):
        check_method_contract(method_cls)


def test_the_engine_names_the_method_whose_network_changes_the_window_size() -> None:
    with pytest.raises(
        AssertionError,
        match=r"the network of method 'shrinking-network' turned windows of \(16, 16, 16\) "
        r"voxels into \(12, 12, 12\)",
    ):
        check_method_contract(ShrinkingNetwork)


@pytest.mark.parametrize("name", ["Case", "CaseSet", "ModelVersionWarning"])
def test_what_the_guide_uses_is_public(name: str) -> None:
    assert name in medi2i.__all__
    assert getattr(medi2i, name).__name__ == name
