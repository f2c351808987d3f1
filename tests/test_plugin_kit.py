"""The kit for plugin authors: the pytest plugin and ``medi2i plugin new``."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import json
import os
import re
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import medi2i
from medi2i.cli import plugin_commands
from medi2i.cli.main import Medi2iGroup
from medi2i.cli.plugin_commands import register
from medi2i.plugin_kit import PLUGIN_API, PLUGIN_KINDS
from medi2i.workflow import load_workflow

REPOSITORY = Path(__file__).resolve().parent.parent


def run_python(code: str, *, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


# -- the pytest plugin -------------------------------------------------------------------------


def test_the_fixtures_are_a_pytest_plugin_by_entry_point() -> None:
    project = (REPOSITORY / "pyproject.toml").read_text(encoding="utf-8")

    section = project.split("[project.entry-points.pytest11]\n", 1)[1].split("\n\n", 1)[0]

    assert section.strip() == 'medi2i = "medi2i.testing.pytest_plugin"'


def test_the_pytest_plugin_imports_nothing_heavy_and_loads_no_plugin(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        import medi2i.testing.pytest_plugin
        heavy = ("torch", "monai", "numpy", "medi2i.plugins", "medi2i.registry", "medi2i.method")
        print(json.dumps([name for name in heavy if name in sys.modules]))
        """
    )
    assert json.loads(run_python(code, cwd=tmp_path)) == []


def test_a_plugin_repository_gets_the_fixtures_without_a_conftest(tmp_path: Path) -> None:
    (tmp_path / "test_uses_fixtures.py").write_text(
        textwrap.dedent(
            """
            def test_fixtures(medi2i_volume, medi2i_volume_file):
                assert medi2i_volume.shape == (1, 24, 20, 16)
                assert medi2i_volume_file.name == "input.nii.gz"
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-W", "error"],
        cwd=tmp_path,
        env={**os.environ, "PYTEST_DISABLE_PLUGIN_AUTOLOAD": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 passed" in result.stdout


# -- medi2i plugin new -------------------------------------------------------------------------

KINDS = ("predict-only", "paired", "unpaired", "multi-domain")
DEFAULT_RUN_KIND = "unpaired"
"""The kind whose generated plugin is installed and tested in the default run (the
others are marked slow)."""
TRAINABLE = ("paired", "unpaired", "multi-domain")


def plugin_cli() -> click.Group:
    group = Medi2iGroup("medi2i")
    register(group)
    return group


def new_plugin(tmp_path: Path, kind: str, name: str | None = None) -> Path:
    name = name or f"my-{kind}"
    folder = tmp_path / f"medi2i-{name}"
    result = CliRunner().invoke(
        plugin_cli(), ["plugin", "new", name, "--kind", kind, "--output", str(folder)]
    )
    assert result.exit_code == 0, result.output
    assert f"wrote {folder}" in result.output
    return folder


def medi2i_imports(path: Path) -> list[str]:
    """``module.name`` of every medi2i import in ``path`` (``module`` for plain imports)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "medi2i":
            found += [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] == "medi2i"]
    return found


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_plugin_is_a_complete_distribution(tmp_path: Path, kind: str) -> None:
    folder = new_plugin(tmp_path, kind)
    package = folder / "src" / f"medi2i_my_{kind.replace('-', '_')}"

    written = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert written == sorted(
        [
            "README.md",
            "pyproject.toml",
            f"src/{package.name}/__init__.py",
            f"src/{package.name}/card.yaml",
            f"src/{package.name}/method.py",
            f"src/{package.name}/py.typed",
            "tests/conftest.py",
            "tests/test_method.py",
            "workflows/example.yaml",
        ]
    )
    pyproject = (folder / "pyproject.toml").read_text(encoding="utf-8")
    assert f'[project.entry-points.medi2i]\nmy-{kind} = "{package.name}"' in pyproject
    assert f'name = "medi2i-my-{kind}"' in pyproject
    hooks = (package / "__init__.py").read_text(encoding="utf-8")
    assert f'MEDI2I_PLUGIN_API = "{PLUGIN_API}"' in hooks
    assert PLUGIN_API == "2.0"
    assert "${" not in "".join(p.read_text(encoding="utf-8") for p in folder.rglob("*.*"))
    assert "load_only_plugins(config, [PLUGIN_NAME])" in (folder / "tests/conftest.py").read_text()
    tests = (folder / "tests/test_method.py").read_text(encoding="utf-8")
    assert "check_method_contract(" in tests
    assert ("check_training_contract(" in tests) == (kind in TRAINABLE)
    readme = (folder / "README.md").read_text(encoding="utf-8")
    assert "## Model card" in readme
    assert "medi2i predict" in readme


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_plugin_uses_only_medi2i_s_public_api(tmp_path: Path, kind: str) -> None:
    folder = new_plugin(tmp_path, kind)
    allowed = {f"medi2i.{name}" for name in medi2i.__all__}

    for path in [*folder.rglob("*.py")]:
        compile(path.read_text(encoding="utf-8"), str(path), "exec")  # valid Python
        private = [
            name
            for name in medi2i_imports(path)
            if name not in allowed and not name.startswith("medi2i.testing") and name != "medi2i"
        ]
        assert private == [], f"{path.name} imports {private}"


@pytest.mark.parametrize("kind", KINDS)
def test_a_new_plugin_s_workflow_is_valid(tmp_path: Path, kind: str) -> None:
    folder = new_plugin(tmp_path, kind)

    workflow = load_workflow(folder / "workflows" / "example.yaml")

    assert workflow.method.id == f"my-{kind}"
    assert workflow.plugins == [f"my-{kind}"]
    expected = {"predict-only": "paired"}.get(kind, kind)
    assert workflow.data.kind == expected


@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="needs ruff")
def test_new_plugins_are_lint_clean_and_formatted(tmp_path: Path) -> None:
    folders = [new_plugin(tmp_path, kind) for kind in KINDS]
    rules = ["--isolated", "--line-length", "100", "--target-version", "py310"]
    for folder in folders:
        checks = [
            ["check", *rules, "--select", "E,F,W,I,B,UP,SIM,RUF,PT", "src", "tests"],
            ["format", *rules, "--check", "src", "tests"],
        ]
        for arguments in checks:
            result = subprocess.run(
                [sys.executable, "-m", "ruff", *arguments],
                cwd=folder,
                capture_output=True,
                text=True,
                check=False,
            )
            assert result.returncode == 0, f"{folder.name}: {result.stdout}{result.stderr}"


def test_the_command_offers_the_kit_s_kinds() -> None:
    assert KINDS == PLUGIN_KINDS == plugin_commands.KINDS


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("My_Method", "is not a valid id"),
        ("9lives", "is not a valid id"),
        ("double--dash", "is not a valid id"),
        ("medi2i-mine", "without 'medi2i-'"),
    ],
)
def test_an_invalid_name_is_refused_in_one_line(tmp_path: Path, name: str, problem: str) -> None:
    result = CliRunner().invoke(
        plugin_cli(), ["plugin", "new", name, "--kind", "paired", "--output", str(tmp_path / "x")]
    )

    assert result.exit_code != 0
    assert problem in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_a_name_an_installed_plugin_registers_is_refused(tmp_path: Path) -> None:
    # intensity-inversion is a built-in method: a second plugin with its id would make
    # it unusable for both once installed
    result = CliRunner().invoke(
        plugin_cli(),
        ["plugin", "new", "intensity-inversion", "--kind", "predict-only", "--output",
         str(tmp_path / "x")],
    )  # fmt: skip

    assert result.exit_code != 0
    assert "method id 'intensity-inversion' is already registered by plugin " in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_an_existing_output_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")

    result = CliRunner().invoke(
        plugin_cli(),
        ["plugin", "new", "mine", "--kind", "paired", "--output", str(tmp_path / "taken")],
    )

    assert result.exit_code != 0
    assert "exists already" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]


def test_the_default_output_is_the_distribution_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(plugin_cli(), ["plugin", "new", "mine", "--kind", "unpaired"])

    assert result.exit_code == 0, result.output
    assert (tmp_path / "medi2i-mine" / "src" / "medi2i_mine" / "method.py").is_file()
    # a path: pip reads a bare "medi2i-mine" as a package to download
    assert "next: pip install -e ./medi2i-mine " in result.output


# -- a generated plugin, installed ----------------------------------------------------------------


def install(folder: Path, site: Path) -> dict[str, str]:
    """Install the distribution in ``folder`` into ``site``; the environment that sees it."""
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "--target", str(site), str(folder)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    paths = [str(site), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {"PYTHONPATH": os.pathsep.join(paths), "MEDI2I_LOAD_PLUGINS": folder.name[7:]}


def run_in(folder: Path, env: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )


@pytest.mark.parametrize(
    "kind",
    [
        kind if kind == DEFAULT_RUN_KIND else pytest.param(kind, marks=pytest.mark.slow)
        for kind in KINDS
    ],
)
def test_a_generated_plugin_installs_and_passes_its_own_tests(tmp_path: Path, kind: str) -> None:
    folder = new_plugin(tmp_path, kind)
    env = install(folder, tmp_path / "site")
    name = f"my-{kind}"

    listed = run_in(folder, env, "-c", ENTRY_POINTS)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)[name] == f"medi2i_my_{kind.replace('-', '_')}"

    tests = run_in(folder, env, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout
    assert "failed" not in tests.stdout

    methods = run_in(folder, env, "-m", "medi2i", "methods", "--json")
    assert methods.returncode == 0, methods.stderr
    assert name in [m["id"] for m in json.loads(methods.stdout)]

    workflow = run_in(folder, env, "-m", "medi2i", "validate", "workflows/example.yaml")
    assert workflow.returncode == 0, workflow.stdout + workflow.stderr


ENTRY_POINTS = """\
import json
from importlib.metadata import entry_points
print(json.dumps({ep.name: ep.value for ep in entry_points(group="medi2i")}))
"""


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("mypy") is None, reason="needs mypy")
def test_new_plugins_type_check_strictly(tmp_path: Path) -> None:
    packages = [
        new_plugin(tmp_path, kind) / "src" / f"medi2i_my_{kind.replace('-', '_')}" for kind in KINDS
    ]
    mypy = [sys.executable, "-m", "mypy", "--strict", "--ignore-missing-imports"]
    result = subprocess.run(
        [*mypy, "--cache-dir", str(tmp_path / "mypy-cache"), *map(str, packages)],
        cwd=tmp_path,
        env={**os.environ, "MYPYPATH": str(REPOSITORY)},
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- the guide ------------------------------------------------------------------------------------

GUIDE = REPOSITORY / "docs" / "writing-a-method.md"
PYTHON_BLOCK = re.compile(r"(<!-- complete -->\n)?```python\n(.*?)```", re.DOTALL)


def guide_blocks(*, complete: bool) -> list[str]:
    blocks = PYTHON_BLOCK.findall(GUIDE.read_text(encoding="utf-8"))
    return [textwrap.dedent(code) for marker, code in blocks if bool(marker) or not complete]


def test_every_python_block_of_the_guide_parses() -> None:
    blocks = guide_blocks(complete=False)

    assert len(blocks) > len(guide_blocks(complete=True)) >= 8
    for code in blocks:
        ast.parse(code)


@pytest.mark.parametrize("name", ["check_method_contract", "check_training_contract"])
def test_the_guide_gives_the_contract_checks_real_signatures(name: str) -> None:
    """It showed ``options`` and the rest as positional; they are keyword-only."""
    import medi2i.testing

    guide = " ".join(GUIDE.read_text(encoding="utf-8").split())
    shown = re.search(rf"`{name}\(([^`]*)\)`", guide)
    assert shown, f"the guide shows no signature of {name}"
    documented = ast.parse(f"def f({shown.group(1)}): pass").body[0]
    assert isinstance(documented, ast.FunctionDef)
    parameters = inspect.signature(getattr(medi2i.testing, name)).parameters.values()
    positional = [p for p in parameters if p.kind is p.POSITIONAL_OR_KEYWORD]
    keyword_only = {p.name: p.default for p in parameters if p.kind is p.KEYWORD_ONLY}
    assert len(documented.args.args) == len(positional)
    assert not documented.args.defaults, "the guide gives a positional parameter a default"
    shown_keywords = {
        arg.arg: ast.literal_eval(default)
        for arg, default in zip(
            documented.args.kwonlyargs, documented.args.kw_defaults, strict=True
        )
        if default is not None
    }
    assert shown_keywords == keyword_only


def test_the_guide_installs_plugins_from_a_path() -> None:
    """pip reads a bare ``medi2i-my-method`` as a package to download from the index."""
    commands = re.findall(r"^pip install (.*?)(?:\s+#.*)?$", GUIDE.read_text(), re.MULTILINE)
    local = [c.split()[-1] for c in commands if "-e" in c.split() or "--target" in c]

    assert len(local) >= 3
    assert all(target.startswith(("./", "/", "path/")) for target in local), local


def test_the_modules_the_guide_names_exist() -> None:
    named = set(re.findall(r"\bmedi2i\.testing\.(\w+)", GUIDE.read_text(encoding="utf-8")))

    assert {"cycle_example", "multi_domain_example", "trainable_examples"} <= named
    for module in named:
        importlib.import_module(f"medi2i.testing.{module}")


@pytest.mark.parametrize("index", range(len(guide_blocks(complete=True))))
def test_the_guide_s_complete_examples_run_and_pass_their_tests(index: int, tmp_path: Path) -> None:
    code = guide_blocks(complete=True)[index]
    name = f"writing_a_method_example_{index}"
    module = types.ModuleType(name)
    sys.modules[name] = module  # pydantic resolves annotations through the module
    try:
        exec(compile(code, f"{GUIDE.name}, complete example {index}", "exec"), module.__dict__)
        tests = [value for key, value in vars(module).items() if key.startswith("test_")]
        assert tests, "a complete example shows how it is tested"
        for test in tests:
            folder = tmp_path / test.__name__
            folder.mkdir()
            wants_folder = "tmp_path" in inspect.signature(test).parameters
            test(**({"tmp_path": folder} if wants_folder else {}))
    finally:
        del sys.modules[name]
