"""Tests of plugin discovery and isolation.

The first half installs small plugin distributions for real (pip, setuptools, entry
points) into a temporary folder and runs medi2i in a subprocess that sees them; the
second half covers the remaining switches in-process with fake entry points.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import Method, Task, VolumeSpec, hookimpl, hookspecs
from medi2i.cli.main import build_cli
from medi2i.errors import PluginError
from medi2i.grid import Grid
from medi2i.method import MethodClass, Options
from medi2i.plugins import (
    API_CHECK,
    BUILTIN_PLUGINS,
    PluginSet,
    PluginWarning,
    add_installed_plugin,
    load_plugins,
)
from medi2i.registry import Registry
from medi2i.testing import check_method_contract, make_volume, write_volume_file
from medi2i.testing.example_methods import (
    EXAMPLE_METHODS,
    DomainOffset,
    FittedStandardization,
    PointwiseNet,
)

ENV_SWITCHES = ("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "MEDI2I_LOAD_PLUGINS", "MEDI2I_STRICT_PLUGINS")

# -- real installs ------------------------------------------------------------------------

HELLO_MODULE = '''
import medi2i


@medi2i.hookimpl
def register_methods(register):
    from medi2i import Method, Task, VolumeSpec

    class Echo(Method):
        """Echo: returns its input."""

        id = "hello-echo"
        tasks = (Task.TRANSLATION,)
        input_spec = output_spec = VolumeSpec()

        def predict(self, image, context):
            return image

    register(Echo)
'''

BROKEN_MODULE = """
raise ImportError("No module named 'a_missing_dependency'")
"""

DISTRIBUTIONS = {
    # distribution: (entry-point name, module, version, module source)
    "medi2i-hello": ("hello", "medi2i_hello", "1.2.3", HELLO_MODULE),
    "medi2i-broken": ("broken", "medi2i_broken", "0.0.1", BROKEN_MODULE),
}

REPORT_SCRIPT = """
import json, warnings
from medi2i.errors import Medi2iError
from medi2i.plugins import load_plugins
from medi2i.registry import Registry

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    try:
        registry = Registry(load_plugins())
        methods = {mid: registry.method_owner(mid) for mid in registry.methods}
    except Medi2iError as exc:
        print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        raise SystemExit(0)
print(json.dumps({
    "plugins": {
        info.name: {"version": info.version, "distribution": info.distribution,
                    "hooks": list(info.hooks), "builtin": info.builtin}
        for info in registry.plugins.infos
    },
    "failures": [vars(failure) for failure in registry.plugins.failures],
    "methods": methods,
    "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
}))
"""


def write_distribution(root: Path, dist: str) -> Path:
    entry_point, module, version, source = DISTRIBUTIONS[dist]
    folder = root / dist
    folder.mkdir()
    (folder / "pyproject.toml").write_text(
        textwrap.dedent(
            f"""\
            [build-system]
            requires = ["setuptools>=64"]
            build-backend = "setuptools.build_meta"

            [project]
            name = "{dist}"
            version = "{version}"

            [project.entry-points.medi2i]
            {entry_point} = "{module}"

            [tool.setuptools]
            py-modules = ["{module}"]
            """
        )
    )
    (folder / f"{module}.py").write_text(source)
    return folder


def pip_install(sources: list[Path], site: Path) -> None:
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps"]
    command += ["--no-build-isolation", "--no-index", "--target", str(site)]
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    result = subprocess.run(
        [*command, *map(str, sources)], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, f"pip could not install the test plugins:\n{result.stderr}"


def install_without_pip(site: Path) -> None:
    """What pip would leave in ``site``: the module and a ``.dist-info`` with entry points.

    Only used where setuptools is missing (e.g. a Python 3.12+ virtualenv without it).
    """
    site.mkdir(parents=True)
    for dist, (entry_point, module, version, source) in DISTRIBUTIONS.items():
        (site / f"{module}.py").write_text(source)
        info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(f"[medi2i]\n{entry_point} = {module}\n")


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding the installed test distributions (put it on PYTHONPATH)."""
    root = tmp_path_factory.mktemp("plugin-dists")
    site = root / "site"
    if importlib.util.find_spec("setuptools") is None:
        install_without_pip(site)
    else:
        pip_install([write_distribution(root, dist) for dist in DISTRIBUTIONS], site)
    return site


def run_medi2i(site: Path, *args: str, **env_switches: str) -> subprocess.CompletedProcess[str]:
    """Run Python in a subprocess that sees the plugins installed in ``site``."""
    env = {k: v for k, v in os.environ.items() if k not in ENV_SWITCHES}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    result = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, env={**env, **env_switches}
    )
    assert result.returncode == 0, f"medi2i failed:\n{result.stdout}\n{result.stderr}"
    return result


def plugin_report(site: Path, **env_switches: str) -> dict[str, Any]:
    result = run_medi2i(site, "-c", REPORT_SCRIPT, **env_switches)
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def test_an_installed_plugin_is_discovered_with_its_version_and_method(plugin_site: Path) -> None:
    report = plugin_report(plugin_site, MEDI2I_LOAD_PLUGINS="hello")

    assert report["plugins"]["hello"] == {
        "version": "1.2.3",
        "distribution": "medi2i-hello",
        "hooks": ["register_methods"],
        "builtin": False,
    }
    assert report["methods"] == {"hello-echo": "hello"}
    assert report["failures"] == []


def test_a_plugin_that_fails_to_import_is_skipped_and_reported(plugin_site: Path) -> None:
    report = plugin_report(plugin_site)

    assert {"hello", "invert"} <= set(report["plugins"])
    assert "broken" not in report["plugins"]
    assert report["methods"]["hello-echo"] == "hello"
    [failure] = report["failures"]
    assert (failure["name"], failure["stage"]) == ("broken", "import")
    assert "ImportError" in failure["error"]
    assert "a_missing_dependency" in failure["error"]
    [warning] = report["warnings"]
    assert warning.startswith("PluginWarning: plugin 'broken' failed during import")


def test_a_plugin_that_fails_to_import_is_fatal_in_strict_mode(plugin_site: Path) -> None:
    report = plugin_report(plugin_site, MEDI2I_STRICT_PLUGINS="1")

    assert report["error"] == "PluginError"
    assert "'broken'" in report["message"]
    assert "a_missing_dependency" in report["message"]


def test_disabling_autoload_loads_only_the_builtins(plugin_site: Path) -> None:
    report = plugin_report(plugin_site, MEDI2I_DISABLE_PLUGIN_AUTOLOAD="1")

    assert list(report["plugins"]) == list(BUILTIN_PLUGINS)
    assert report["methods"] == {}


def test_load_plugins_selects_by_distribution_name(plugin_site: Path) -> None:
    report = plugin_report(plugin_site, MEDI2I_LOAD_PLUGINS=" medi2i-hello ")

    assert list(report["plugins"]) == [*BUILTIN_PLUGINS, "hello"]
    assert report["failures"] == [], "the broken plugin was not selected, so not imported"


def test_the_plugins_command_lists_the_reference_plugin(plugin_site: Path) -> None:
    result = run_medi2i(plugin_site, "-m", "medi2i", "plugins", "--json")
    listing = json.loads(result.stdout)

    plugins = {plugin["name"]: plugin for plugin in listing["plugins"]}
    assert listing["plugin_api"] == medi2i.PLUGIN_API_VERSION
    assert plugins["invert"]["version"] == "0.1.0"
    assert plugins["invert"]["distribution"] == "medi2i-invert"
    assert plugins["invert"]["api"] == medi2i.PLUGIN_API_VERSION
    assert plugins["hello"]["version"] == "1.2.3"
    assert plugins["hello"]["api"] == "undeclared"
    assert [failure["name"] for failure in listing["failures"]] == ["broken"]
    assert "plugin 'broken' failed during import" in result.stderr


# -- in-process, with fake entry points ---------------------------------------------------


class Echo(Method):
    """Echo: returns its input."""

    id = "echo"
    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image  # type: ignore[no-any-return]


@dataclass
class FakeDistribution:
    name: str
    version: str


@dataclass
class FakeEntryPoint:
    """Quacks like ``importlib.metadata.EntryPoint`` for ``medi2i.plugins``."""

    name: str
    target: types.ModuleType | Exception
    dist: FakeDistribution | None = None

    @property
    def value(self) -> str:
        return f"fake_{self.name}"

    def load(self) -> types.ModuleType:
        if isinstance(self.target, Exception):
            raise self.target
        return self.target


def plugin(name: str, **hooks: Callable[..., None]) -> types.ModuleType:
    module = types.ModuleType(name)
    for hook_name, function in hooks.items():
        setattr(module, hook_name, hookimpl(function))
    return module


def registering(*methods: MethodClass) -> Callable[[Callable[[MethodClass], None]], None]:
    def register_methods(register: Callable[[MethodClass], None]) -> None:
        for method in methods:
            register(method)

    return register_methods


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> list[FakeEntryPoint]:
    """The entry points ``load_plugins`` will see; tests append to it."""
    for name in ENV_SWITCHES:
        monkeypatch.delenv(name, raising=False)
    entry_points: list[FakeEntryPoint] = []

    def fake_entry_points(*, group: str) -> list[FakeEntryPoint]:
        return entry_points if group == "medi2i" else []

    monkeypatch.setattr(importlib.metadata, "entry_points", fake_entry_points)
    return entry_points


def loaded_names(plugins: PluginSet) -> list[str]:
    return [info.name for info in plugins.infos]


def test_builtins_come_first_and_are_marked_builtin(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))

    plugins = load_plugins()

    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "echo"]
    assert [info.builtin for info in plugins.infos] == [True, False]


def test_a_plugin_whose_register_hook_raises_is_skipped(installed: list[FakeEntryPoint]) -> None:
    def register_methods(register: Callable[[MethodClass], None]) -> None:
        raise RuntimeError("weights server is down")

    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))
    installed.append(FakeEntryPoint("flaky", plugin("flaky", register_methods=register_methods)))
    registry = Registry(load_plugins())

    with pytest.warns(PluginWarning, match=r"'flaky' failed during register_methods.*server"):
        assert registry.methods == {"echo": Echo}
    [failure] = registry.plugins.failures
    assert (failure.name, failure.stage) == ("flaky", "register_methods")
    assert "RuntimeError: weights server is down" in failure.error
    # where the plugin's code raised, for its author
    assert f"(at {__file__}, line " in failure.error


def test_a_failed_import_is_fatal_when_strict_is_asked(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("broken", ImportError("no module named 'onnx'")))

    with pytest.raises(PluginError, match=r"'broken' failed during import.*onnx") as error:
        load_plugins(strict=True)
    assert "skipped" not in str(error.value)  # it was not: the command stops


def test_autoload_can_be_disabled(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))
    monkeypatch.setenv("MEDI2I_DISABLE_PLUGIN_AUTOLOAD", "1")

    assert loaded_names(load_plugins()) == list(BUILTIN_PLUGINS)


@pytest.mark.parametrize(
    ("selection", "expected"),
    [
        ("first", ["first"]),
        ("medi2i-second", ["second"]),
        ("first,second", ["first", "second"]),
        ("", []),
    ],
)
def test_load_plugins_loads_only_the_named_ones(
    installed: list[FakeEntryPoint],
    monkeypatch: pytest.MonkeyPatch,
    selection: str,
    expected: list[str],
) -> None:
    installed.append(
        FakeEntryPoint("first", plugin("first"), FakeDistribution("medi2i-first", "1"))
    )
    installed.append(
        FakeEntryPoint("second", plugin("second"), FakeDistribution("medi2i-second", "2"))
    )
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", selection)

    assert loaded_names(load_plugins()) == [*BUILTIN_PLUGINS, *expected]


def test_a_selected_name_that_nothing_installed_has_is_reported(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(
        FakeEntryPoint("first", plugin("first"), FakeDistribution("medi2i-first", "1"))
    )
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "medi2i-first,frist")

    with pytest.warns(PluginWarning, match=r"'frist' failed during selection.*installed: first"):
        plugins = load_plugins()
    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "first"]
    with pytest.raises(PluginError, match="'frist' failed during selection"):
        load_plugins(strict=True)


def misspelled_plugin() -> types.ModuleType:
    return plugin("typo", register_method=registering(Echo))  # not register_methods


def test_a_misspelled_hook_is_reported_and_the_plugin_skipped(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("typo", misspelled_plugin()))
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))

    with pytest.warns(PluginWarning, match="'typo' failed during validation"):
        plugins = load_plugins()

    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "echo"]
    [failure] = plugins.failures
    assert failure.stage == "validation"
    assert "register_method" in failure.error
    assert plugins.manager.get_plugin("typo") is None


def test_a_misspelled_hook_is_fatal_in_strict_mode(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(FakeEntryPoint("typo", misspelled_plugin()))
    monkeypatch.setenv("MEDI2I_STRICT_PLUGINS", "1")

    with pytest.raises(PluginError, match=r"'typo' implements an unknown hook.*register_method"):
        load_plugins()


def test_a_hook_with_wrong_arguments_is_reported_and_skipped(
    installed: list[FakeEntryPoint],
) -> None:
    def register_methods(registrar: Callable[[MethodClass], None]) -> None:
        registrar(Echo)

    def register_metrics(register: Callable[[object], None]) -> None:
        register(types.SimpleNamespace(name="half-registered"))

    odd = plugin("odd", register_methods=register_methods, register_metrics=register_metrics)
    installed.append(FakeEntryPoint("odd", odd))

    with pytest.warns(PluginWarning, match="(?s)'odd' failed during import.*registrar"):
        plugins = load_plugins()

    assert loaded_names(plugins) == list(BUILTIN_PLUGINS)
    assert plugins.manager.get_plugin("odd") is None, "a half-registered plugin was left behind"


def test_one_method_id_from_two_plugins_is_an_error_naming_both(
    installed: list[FakeEntryPoint],
) -> None:
    class EchoAgain(Echo):
        """Another echo."""

    installed.append(FakeEntryPoint("one", plugin("one", register_methods=registering(Echo))))
    installed.append(FakeEntryPoint("two", plugin("two", register_methods=registering(EchoAgain))))
    registry = Registry(load_plugins())

    with pytest.raises(
        PluginError, match=r"method 'echo' is registered by both plugin 'one' and plugin 'two'"
    ):
        _ = registry.methods


def test_two_plugins_with_one_name_are_an_error(installed: list[FakeEntryPoint]) -> None:
    installed.append(FakeEntryPoint("echo", plugin("echo_a"), FakeDistribution("medi2i-a", "1")))
    installed.append(FakeEntryPoint("echo", plugin("echo_b"), FakeDistribution("medi2i-b", "1")))

    with pytest.raises(PluginError, match="two plugins are named 'echo'"):
        load_plugins()


def test_every_plugin_manager_is_new(installed: list[FakeEntryPoint]) -> None:
    assert load_plugins().manager is not load_plugins().manager


def declaring(name: str, api: object) -> types.ModuleType:
    """A plugin module that registers :class:`Echo` and declares ``MEDI2I_PLUGIN_API``."""
    module = plugin(name, register_methods=registering(Echo))
    module.MEDI2I_PLUGIN_API = api  # type: ignore[attr-defined]
    return module


def test_the_plugin_api_version_is_public_and_major_dot_minor() -> None:
    assert medi2i.PLUGIN_API_VERSION == hookspecs.PLUGIN_API_VERSION
    assert "PLUGIN_API_VERSION" in medi2i.__all__
    major, minor = medi2i.PLUGIN_API_VERSION.split(".")
    assert major.isdigit()
    assert minor.isdigit()


def test_a_plugin_declaring_another_major_api_is_reported_and_skipped(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("old", declaring("old", "1.4")))
    installed.append(FakeEntryPoint("echo", plugin("echo", register_methods=registering(Echo))))

    with pytest.warns(PluginWarning, match="plugin 'old' failed during plugin API check") as caught:
        plugins = load_plugins()

    assert loaded_names(plugins) == [*BUILTIN_PLUGINS, "echo"]
    assert plugins.manager.get_plugin("old") is None
    [failure] = plugins.failures
    assert (failure.name, failure.stage) == ("old", API_CHECK)
    assert "plugin API 1.4" in failure.error
    assert f"supports plugin API {medi2i.PLUGIN_API_VERSION}" in failure.error
    [warning] = caught
    assert "\n" not in str(warning.message)
    assert Registry(plugins).methods == {"echo": Echo}


def test_a_plugin_declaring_another_major_api_is_fatal_in_strict_mode(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("future", declaring("future", "3.0")))

    with pytest.raises(PluginError, match=r"'future' failed during plugin API check.*API 3\.0"):
        load_plugins(strict=True)


def test_strict_plugins_on_the_command_line_refuses_an_api_mismatch(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("old", declaring("old", "1.0")))
    with pytest.warns(PluginWarning, match="'old' failed during plugin API check"):
        plugins = load_plugins()

    result = CliRunner().invoke(build_cli(plugins), ["--strict-plugins", "plugins"])
    assert result.exit_code == PluginError.exit_code
    assert "plugins failed to load: old (--strict-plugins is set)" in result.output
    assert CliRunner().invoke(build_cli(plugins), ["plugins"]).exit_code == 0


@pytest.mark.parametrize("api", [2.0, "2", "v2.0", "2.0.1", ""])
def test_a_plugin_api_that_is_not_major_dot_minor_is_reported_and_skipped(
    installed: list[FakeEntryPoint], api: object
) -> None:
    installed.append(FakeEntryPoint("odd", declaring("odd", api)))

    with pytest.warns(PluginWarning, match="'odd' failed during plugin API check"):
        plugins = load_plugins()

    assert loaded_names(plugins) == list(BUILTIN_PLUGINS)
    [failure] = plugins.failures
    assert "'MAJOR.MINOR' string" in failure.error


def test_plugins_of_the_same_major_api_or_none_declared_are_loaded(
    installed: list[FakeEntryPoint],
) -> None:
    major = medi2i.PLUGIN_API_VERSION.split(".")[0]
    installed.append(FakeEntryPoint("current", declaring("current", medi2i.PLUGIN_API_VERSION)))
    installed.append(FakeEntryPoint("newer", declaring("newer", f"{major}.99")))
    installed.append(FakeEntryPoint("silent", plugin("silent")))

    plugins = load_plugins()

    apis = {info.name: (info.api, info.api_shown) for info in plugins.infos}
    assert apis == {
        "medi2i.builtins": (medi2i.PLUGIN_API_VERSION, medi2i.PLUGIN_API_VERSION),
        "current": (medi2i.PLUGIN_API_VERSION, medi2i.PLUGIN_API_VERSION),
        "newer": (f"{major}.99", f"{major}.99"),
        "silent": (None, "undeclared"),
    }
    assert plugins.failures == []


def test_the_plugins_command_shows_the_supported_and_the_declared_apis(
    installed: list[FakeEntryPoint],
) -> None:
    installed.append(FakeEntryPoint("current", declaring("current", medi2i.PLUGIN_API_VERSION)))
    installed.append(FakeEntryPoint("silent", plugin("silent")))
    installed.append(FakeEntryPoint("old", declaring("old", "1.0")))
    with pytest.warns(PluginWarning):
        plugins = load_plugins()
    cli = build_cli(plugins)

    listing = CliRunner().invoke(cli, ["plugins", "--json"])
    assert listing.exit_code == 0, listing.output
    document = json.loads(listing.output)
    assert document["plugin_api"] == medi2i.PLUGIN_API_VERSION
    apis = {entry["name"]: entry["api"] for entry in document["plugins"]}
    assert apis == {
        "medi2i.builtins": medi2i.PLUGIN_API_VERSION,
        "current": medi2i.PLUGIN_API_VERSION,
        "silent": "undeclared",
    }
    [failure] = document["failures"]
    assert (failure["name"], failure["stage"]) == ("old", API_CHECK)

    table = CliRunner().invoke(cli, ["plugins"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0] == f"plugin API: {medi2i.PLUGIN_API_VERSION}"
    assert lines[1].split() == ["plugin", "version", "api", "hooks"]
    assert lines[3].split()[:3] == ["current", "?", medi2i.PLUGIN_API_VERSION]
    assert lines[4].split()[:3] == ["silent", "?", "undeclared"]
    assert "failed: old (plugin API check): it declares plugin API 1.0" in table.output


def test_a_workflow_cannot_select_a_plugin_of_another_major_api(
    installed: list[FakeEntryPoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    installed.append(FakeEntryPoint("old", declaring("old", "1.0")))
    monkeypatch.setenv("MEDI2I_LOAD_PLUGINS", "")  # loaded by name only, as a workflow does
    plugins = load_plugins()

    with pytest.raises(PluginError, match=r"plugin 'old' cannot be loaded: .*plugin API 1\.0"):
        add_installed_plugin(plugins, "old")
    assert plugins.manager.get_plugin("old") is None


def test_the_first_party_plugins_declare_the_current_api() -> None:
    plugins = load_plugins()
    first_party = [info for info in plugins.infos if not info.builtin]

    assert first_party, "the tests load the first-party plugins"
    assert {info.name: info.api for info in first_party} == {
        info.name: medi2i.PLUGIN_API_VERSION for info in first_party
    }


def test_the_public_hookimpl_marker_is_the_one_plugins_use() -> None:
    assert medi2i.hookimpl is hookimpl
    assert medi2i.hookimpl.project_name == "medi2i"


# -- the kit plugin authors test with ------------------------------------------------------


def fit_if_needed(method: Method) -> None:
    if isinstance(method, FittedStandardization):
        method.fit([make_volume(seed=7).numpy()])


@pytest.mark.parametrize("method_cls", EXAMPLE_METHODS, ids=lambda cls: cls.id)
def test_the_contract_check_accepts_every_shape_of_method(method_cls: MethodClass) -> None:
    check_method_contract(method_cls, prepare=fit_if_needed)


class DeclaresTwoChannels(PointwiseNet):
    """Declares two output channels and predicts one."""

    id = "declares-two-channels"
    output_spec = VolumeSpec(channels=2)


class PredictsNaN(DomainOffset):
    """Predicts NaN everywhere."""

    id = "predicts-nan"

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image * float("nan")  # type: ignore[no-any-return]


class ForgetsItsWeights(PointwiseNet):
    """Keeps its (randomly initialized) weights out of the model folder."""

    id = "forgets-its-weights"

    def build_network(self) -> torch.nn.Module:
        return torch.nn.Conv3d(1, 1, 1)

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: Any) -> None:
        pass


class ModifiesItsInput(DomainOffset):
    """Scales the caller's volume in place."""

    id = "modifies-its-input"

    def preprocess(self, image: Any, **_: Any) -> Any:
        return image.mul_(2.0)


class HasNoId(Method):
    """Forgot to name itself."""

    tasks = (Task.TRANSLATION,)
    input_spec = output_spec = VolumeSpec()

    def predict(self, image: Any, context: Any) -> torch.Tensor:
        return image  # type: ignore[no-any-return]


class NeedsStrength(Options):
    strength: float


class HasNoDefaultOptions(DomainOffset):
    """Has an option without a default."""

    id = "has-no-default-options"
    Options = NeedsStrength


@pytest.mark.parametrize(
    ("method_cls", "problem"),
    [
        (DeclaresTwoChannels, "output has 1 channels, its output_spec declares 2"),
        (PredictsNaN, "NaN or infinite"),
        (ForgetsItsWeights, "loaded from its model folder predicts differently"),
        (ModifiesItsInput, "modified its input volume in place"),
        (HasNoDefaultOptions, "does not construct with its default options"),
        (HasNoId, "does not set 'id'"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else "",
)
def test_the_contract_check_catches_a_broken_method(method_cls: MethodClass, problem: str) -> None:
    with pytest.raises(AssertionError, match=problem):
        check_method_contract(method_cls)


def test_make_volume_is_a_smooth_float_volume_on_an_oblique_grid() -> None:
    volume = make_volume((24, 20, 16), spacing=(0.9, 1.1, 2.0), origin=(-10.0, 5.0, 30.0))
    grid = Grid.of(volume)

    assert volume.shape == (1, 24, 20, 16)
    assert volume.dtype == torch.float32
    assert grid.spacing == pytest.approx((0.9, 1.1, 2.0))
    assert grid.affine[:3, 3].tolist() == [-10.0, 5.0, 30.0]
    rotation = grid.affine[:3, :3] / np.asarray(grid.spacing)
    assert not np.allclose(rotation, np.eye(3), atol=0.05), "the grid should be oblique"
    steps = volume.diff(dim=1).abs().max() / (volume.max() - volume.min())
    assert float(steps) < 0.3, "neighbouring voxels should be close: the volume is smooth"


def test_make_volume_depends_only_on_its_seed() -> None:
    assert torch.equal(make_volume(seed=1), make_volume(seed=1))
    assert not torch.equal(make_volume(seed=1), make_volume(seed=2))
    assert float(make_volume(kind="constant").std()) == 0.0


def test_an_unknown_volume_kind_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown volume kind"):
        make_volume(kind="noise")  # type: ignore[arg-type]


def test_write_volume_file_round_trips_through_the_reader(tmp_path: Path) -> None:
    path = write_volume_file(tmp_path, "oblique.nii.gz", shape=(12, 10, 8), seed=4)
    written = medi2i.read_volume(path)
    expected = make_volume((12, 10, 8), seed=4)

    assert path == tmp_path / "oblique.nii.gz"
    assert torch.allclose(written.as_tensor(), expected.as_tensor())
    assert np.allclose(Grid.of(written).affine, Grid.of(expected).affine, atol=1e-5)


def test_the_fixtures_give_a_volume_its_file_and_a_registry(
    medi2i_volume: MetaTensor, medi2i_volume_file: Path, medi2i_registry: Registry
) -> None:
    assert medi2i_volume.shape == (1, 24, 20, 16)
    assert torch.allclose(medi2i.read_volume(medi2i_volume_file).as_tensor(), medi2i_volume)
    assert "nifti" in medi2i_registry.readers
