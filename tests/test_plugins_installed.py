"""Plugin discovery with real installs.

Small plugin distributions are installed for real (pip, setuptools, entry points) into a
temporary folder, and medi2i runs in a subprocess that sees them: a working plugin is
discovered with its version and method, a broken one is skipped and reported (or fatal
in strict mode), and the autoload and selection switches decide what loads.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

import medi2i
from medi2i.plugins import BUILTIN_PLUGINS
from tests.fake_plugins import ENV_SWITCHES

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
