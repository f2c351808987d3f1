"""The command line, in process (click's runner) and, for start-up, as a subprocess."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import click
import numpy as np
import pluggy
import pytest
from click.testing import CliRunner, Result

from medi2i import builtins, hookimpl, hookspecs
from medi2i.cli import main as cli_main
from medi2i.cli.main import build_cli
from medi2i.errors import PluginError
from medi2i.plugins import PluginSet, PluginWarning, load_plugins
from medi2i.testing import example_methods

BUILTIN_COMMANDS = {
    "adapt",
    "average-weights",
    "batch",
    "cards",
    "demo",
    "dicom",
    "evaluate",
    "export",
    "mask",
    "methods",
    "plugin",
    "plugins",
    "predict",
    "run",
    "schema",
    "train",
    "validate",
}


def run(*args: str, examples: bool = True) -> Result:
    plugins = load_plugins()
    if examples:
        plugins.manager.register(example_methods, name="examples")
    return CliRunner().invoke(build_cli(plugins), list(args))


class GreetingCommand:
    """A plugin that adds ``medi2i hello``."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("hello")
        def hello() -> None:
            """Say hello."""
            click.echo("hello from a plugin")


class DicomSubcommand:
    """A plugin that adds ``medi2i dicom hello`` to the built-in ``dicom`` group."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        dicom = cli.commands["dicom"]
        assert isinstance(dicom, click.Group)

        @dicom.command("hello")
        def hello() -> None:
            """Say hello."""
            click.echo("hello from dicom")


class BrokenCommand:
    """A plugin whose ``register_commands`` raises."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        raise RuntimeError("no command today")


def with_plugin(plugin: object, name: str) -> PluginSet:
    plugins = load_plugins()
    plugins.manager.register(plugin, name=name)
    return plugins


def bare_plugin_set() -> PluginSet:
    """A plugin manager with medi2i's hooks and no plugin in it, not even the built-ins."""
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    return PluginSet(manager, strict=False)


def test_every_build_is_a_new_group_with_only_its_plugins_commands() -> None:
    with_greeting = build_cli(with_plugin(GreetingCommand(), "greeting"))
    without = build_cli(load_plugins())

    assert with_greeting is not without
    assert "hello" in with_greeting.commands
    assert "hello" not in without.commands
    assert CliRunner().invoke(with_greeting, ["hello"]).output == "hello from a plugin\n"
    result = CliRunner().invoke(without, ["hello"])
    assert result.exit_code == 2
    assert "No such command 'hello'" in result.output


def test_main_reports_a_command_that_fails_to_register_in_strict_mode_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def strict_plugins() -> PluginSet:
        plugins = with_plugin(BrokenCommand(), "broken-command")
        plugins.strict = True
        return plugins

    monkeypatch.setattr(cli_main, "load_plugins", strict_plugins)
    with pytest.raises(SystemExit) as done:
        cli_main.main(["methods"])

    assert done.value.code == PluginError.exit_code
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("Error: plugin 'broken-command' failed during register_commands")


def test_a_subcommand_added_to_a_built_in_group_stays_in_its_own_build() -> None:
    with_subcommand = build_cli(with_plugin(DicomSubcommand(), "dicom-hello"))
    without = build_cli(load_plugins())

    assert CliRunner().invoke(with_subcommand, ["dicom", "hello"]).output == "hello from dicom\n"
    result = CliRunner().invoke(without, ["dicom", "hello"])
    assert result.exit_code == 2
    assert "No such command 'hello'" in result.output


def test_main_builds_the_command_line_for_each_run(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(cli_main, "load_plugins", lambda: with_plugin(GreetingCommand(), "g"))
    with pytest.raises(SystemExit) as first:
        cli_main.main(["hello"])
    assert first.value.code == 0
    assert "hello from a plugin" in capsys.readouterr().out

    monkeypatch.setattr(cli_main, "load_plugins", load_plugins)
    with pytest.raises(SystemExit) as second:
        cli_main.main(["hello"])
    assert second.value.code == 2
    assert "No such command 'hello'" in capsys.readouterr().err


def test_the_built_in_commands_come_through_the_register_commands_hook() -> None:
    assert build_cli(bare_plugin_set()).commands == {}

    plugins = bare_plugin_set()
    plugins.manager.register(builtins, name="medi2i.builtins")
    assert set(build_cli(plugins).commands) == BUILTIN_COMMANDS
    # installed plugins add theirs (medi2i-bench adds bench), never take one away
    assert set(build_cli(load_plugins()).commands) >= BUILTIN_COMMANDS


def test_a_plugin_whose_register_commands_raises_is_reported_and_skipped() -> None:
    plugins = with_plugin(BrokenCommand(), "broken-command")
    with pytest.warns(PluginWarning, match="'broken-command' failed during register_commands"):
        cli = build_cli(plugins)

    assert set(cli.commands) >= BUILTIN_COMMANDS
    [failure] = plugins.failures
    assert (failure.name, failure.stage) == ("broken-command", "register_commands")
    assert "no command today" in failure.error


def test_a_plugin_whose_register_commands_raises_is_fatal_in_strict_mode() -> None:
    plugins = with_plugin(BrokenCommand(), "broken-command")
    plugins.strict = True
    with pytest.raises(PluginError, match="'broken-command' failed during register_commands"):
        build_cli(plugins)


class BrokenMethods:
    """A plugin whose ``register_methods`` raises."""

    @hookimpl
    def register_methods(self, register: object) -> None:
        raise RuntimeError("weights folder missing")


def test_the_plugins_command_lists_a_plugin_whose_register_hook_raises() -> None:
    plugins = with_plugin(BrokenMethods(), "broken-methods")
    with pytest.warns(PluginWarning, match="'broken-methods' failed during register_methods"):
        table = CliRunner().invoke(build_cli(plugins), ["plugins", "--check"])
    assert table.exit_code == 1, table.output  # --check gates a CI job
    assert "failed: broken-methods (register_methods): RuntimeError: weights folder" in (
        table.output
    )

    plugins = with_plugin(BrokenMethods(), "broken-methods")
    with pytest.warns(PluginWarning):
        listed = CliRunner().invoke(build_cli(plugins), ["plugins", "--check", "--json"])
    assert listed.exit_code == 1
    document = json.loads(listed.output)
    [failure] = document["failures"]
    assert (failure["name"], failure["stage"]) == ("broken-methods", "register_methods")
    assert not any(entry["failed"] for entry in document["plugins"])
    assert CliRunner().invoke(build_cli(load_plugins()), ["plugins", "--check"]).exit_code == 0


class ClashingMethods:
    """A plugin that registers a method id the examples register too."""

    @hookimpl
    def register_methods(self, register: Callable[[type], None]) -> None:
        register(example_methods.SelfRescaling)


def test_the_plugins_check_lists_a_method_id_two_plugins_register() -> None:
    plugins = with_plugin(example_methods, "examples")
    plugins.manager.register(ClashingMethods(), name="clashing")
    table = CliRunner().invoke(build_cli(plugins), ["plugins", "--check"])
    assert table.exit_code == 1, table.output
    [clash] = [line for line in table.output.splitlines() if line.startswith("clash: ")]
    assert clash.startswith("clash: method 'example-self-rescaling' is registered by ")
    assert "'clashing'" in clash
    assert "'examples'" in clash


def test_plugins_json_lists_builtins_with_their_hooks() -> None:
    result = run("plugins", "--json")
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.output)["plugins"]}
    assert listed["medi2i.builtins"]["builtin"] is True
    assert "register_readers" in listed["medi2i.builtins"]["hooks"]


def test_methods_lists_registered_methods_with_their_plugin() -> None:
    result = run("methods", "--json")
    assert result.exit_code == 0, result.output
    methods = {m["id"]: m for m in json.loads(result.output)}
    assert methods["example-domain-offset"]["plugin"] == "examples"
    assert methods["example-domain-offset"]["data"] == "multi-domain"
    table = run("methods")
    assert "example-self-rescaling" in table.output


def test_predict_writes_the_output(tmp_path: Path) -> None:
    from medi2i.io import read_volume
    from medi2i.model_folder import save_model
    from medi2i.testing import write_volume_file
    from medi2i.testing.example_methods import DomainOffset

    source = write_volume_file(tmp_path)
    model = save_model(DomainOffset(), tmp_path / "model")
    out = tmp_path / "out.nrrd"
    result = run(
        "predict",
        str(source),
        str(out),
        "--model",
        str(model),
        "-c",
        "target_domain=B",
        "--no-progress",
        "--device",
        "cpu",
    )
    assert result.exit_code == 0, result.output
    image, written = read_volume(source), read_volume(out)
    np.testing.assert_allclose(written.numpy(), image.numpy() + 100.0, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(written.affine), np.asarray(image.affine), atol=1e-6)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["predict", "missing.nii.gz", "out.nii.gz", "--method", "example-self-rescaling"],
            "missing.nii.gz",
        ),
        (["predict", "in.nii.gz", "out.nii.gz", "--method", "no-such-method"], "no-such-method"),
        (["predict", "in.nii.gz", "out.nii.gz"], "either --method (a method id) or --model"),
        (
            [
                "predict",
                "in.nii.gz",
                "out.nii.gz",
                "--method",
                "example-self-rescaling",
                "--overlap",
                "1.5",
            ],
            "overlap",
        ),
        (
            [
                "predict",
                "in.nii.gz",
                "out.nii.gz",
                "--method",
                "example-self-rescaling",
                "-o",
                "novalue",
            ],
            "key=value",
        ),
    ],
)
def test_user_errors_print_one_line_and_exit_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    from medi2i.testing import write_volume_file

    write_volume_file(tmp_path, name="in.nii.gz")
    result = run(*args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out.nii.gz").exists()


class FailingCommand:
    """A plugin whose command has a bug."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("fail")
        def fail() -> None:
            """Fail."""
            raise RuntimeError("boom\nfrom the plugin")


def test_a_bug_in_a_plugin_keeps_its_traceback_and_says_whose_code_raised() -> None:
    result = CliRunner().invoke(build_cli(with_plugin(FailingCommand(), "failing")), ["fail"])
    assert result.exit_code == 1
    assert "Traceback" in result.output  # what a report to the plugin's authors needs
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("Error: RuntimeError: boom from the plugin (in ")
    assert "test_cli.py line" in last
    assert "raised by a plugin's code, not by medi2i" in last


def test_a_bug_inside_medi2i_asks_for_a_report() -> None:
    from medi2i.cli.main import unexpected_error_summary
    from medi2i.settings import check_device_name

    with pytest.raises(TypeError) as raised:
        check_device_name(None)  # type: ignore[arg-type]
    summary = unexpected_error_summary(raised.value)
    assert "(in medi2i.settings, line " in summary
    assert "an unexpected error inside medi2i: please report it" in summary


def test_debug_shows_the_exception() -> None:
    result = run("--debug", "predict", "missing.nii.gz", "out.nii.gz", "--method", "x")
    assert result.exit_code != 0
    assert result.exception is not None
    assert type(result.exception).__name__ != "SystemExit"


@pytest.mark.parametrize("args", [["--help"], ["plugins"]])
def test_fast_paths_do_not_import_torch_or_monai(args: list[str]) -> None:
    probe = (
        "import sys\nfrom medi2i.cli.main import main\n"
        f"try:\n    main({args!r})\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('torch', 'monai') if m in sys.modules), file=sys.stderr)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stderr.strip().splitlines()[-1] == "[]"


def test_predict_on_a_tree_of_dicom_studies_translates_every_study(tmp_path: Path) -> None:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(0.0, 100.0, (12, 12, 6)).astype(np.float32)
    for study in ("1.2.3.4.1", "1.2.3.4.2"):
        write_series(tmp_path / "tree" / study[-1], volume, modality="MR", study_uid=study)
    result = run(
        "predict",
        str(tmp_path / "tree"),
        str(tmp_path / "out"),
        "--method",
        "example-self-rescaling",
        "--format",
        "nifti",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert "2 done" in result.output
    assert len(list((tmp_path / "out").rglob("*.nii.gz"))) == 2


def _tree_of_one_mr_study(root: Path) -> None:
    """One MR study and one CT study: ``--modality MR`` matches one study only."""
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(0.0, 100.0, (12, 12, 6)).astype(np.float32)
    write_series(root / "1", volume, modality="MR", study_uid="1.2.3.4.1")
    write_series(root / "2", volume - 1000.0, modality="CT", study_uid="1.2.3.4.2")


def test_predict_honours_format_on_a_tree_whatever_the_selection_matches(
    tmp_path: Path,
) -> None:
    """--format given for a tree of studies translates the tree, also when the selection
    matches one study only: a scripted call works on any tree, not on some."""
    _tree_of_one_mr_study(tmp_path / "tree")
    args = ["predict", str(tmp_path / "tree"), str(tmp_path / "out"), "--modality", "MR"]
    result = run(*args, "--method", "example-self-rescaling", "--format", "nifti", "--no-progress")
    assert result.exit_code == 0, result.output
    assert "1 done, 1 skipped" in result.output
    assert len(list((tmp_path / "out").rglob("*.nii.gz"))) == 1
    # a file OUTPUT for a tree is refused, with the way to one input
    file_args = ["predict", str(tmp_path / "tree"), str(tmp_path / "o.nii.gz"), "--modality", "MR"]
    refused = run(*file_args, "--method", "example-self-rescaling", "--format", "nifti")
    assert refused.exit_code == 1
    assert "names a file" in refused.output
    assert "leave --format out" in refused.output
    assert not (tmp_path / "o.nii.gz").exists()


@pytest.mark.parametrize(
    ("output", "formats", "advice"),
    [
        ("out", "nifti", "name it e.g. {tmp}/out.nii.gz for NIfTI"),
        ("out.nii.gz", "dicom", "name it e.g. {tmp}/out for a DICOM series"),
        ("out.nrrd", "nifti", "name it e.g. {tmp}/out.nii.gz for NIfTI"),
        ("c.nii.gz", "dicom,nifti", "asks for 2 formats (dicom and nifti)"),
        ("c", "dicom,nifti", "asks for 2 formats (dicom and nifti)"),
    ],
)
def test_predict_refuses_a_format_that_one_input_would_ignore(
    tmp_path: Path, output: str, formats: str, advice: str
) -> None:
    """One series is one input, whose output's name picks the format: a --format it
    disagrees with is refused, not silently ignored, and the advice is a change (never
    the name given: c.nii.gz already is NIfTI; --format dicom,nifti asks for two)."""
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(0.0, 100.0, (12, 12, 6)).astype(np.float32)
    write_series(tmp_path / "series", volume, modality="MR")
    args = ["predict", str(tmp_path / "series"), str(tmp_path / output)]
    result = run(*args, "--method", "example-self-rescaling", "--format", formats)
    assert result.exit_code == 1, result.output
    line = result.output.strip()
    assert "\n" not in line
    assert "--format applies to a tree of several DICOM studies" in line
    assert advice.format(tmp=tmp_path) in line
    assert f"name it e.g. {tmp_path / output} " not in line
    assert not (tmp_path / output).exists()


@pytest.mark.parametrize(("output", "formats"), [("out.nii.gz", "nifti"), ("out.nii", "nifti")])
def test_predict_accepts_a_format_that_agrees_with_one_output(
    tmp_path: Path, output: str, formats: str
) -> None:
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(0).normal(0.0, 100.0, (12, 12, 6)).astype(np.float32)
    write_series(tmp_path / "series", volume, modality="MR")
    args = ["predict", str(tmp_path / "series"), str(tmp_path / output)]
    result = run(*args, "--method", "example-self-rescaling", "--format", formats, "--no-progress")
    assert result.exit_code == 0, result.output
    assert (tmp_path / output).is_file()


def test_predict_on_one_dicom_series_parses_its_headers_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nibabel as nib

    from medi2i.dicom.reading import file_records as images
    from medi2i.testing.dicom_series import write_series

    volume = np.random.default_rng(1).normal(0.0, 100.0, (12, 10, 6)).round().astype(np.float32)
    write_series(tmp_path / "series", volume, modality="MR")
    parsed: list[Path] = []
    real = images.read_file_record
    monkeypatch.setattr(
        "medi2i.dicom.reading.series_scan.read_file_record",
        lambda path: parsed.append(path) or real(path),
    )
    result = run(
        "predict",
        str(tmp_path / "series"),
        str(tmp_path / "out.nii.gz"),
        "--method",
        "example-self-rescaling",
        "--no-progress",
    )
    assert result.exit_code == 0, result.output
    assert len(parsed) == 6 == len(set(parsed))
    assert nib.load(tmp_path / "out.nii.gz").shape == volume.shape


def test_command_modules_share_only_public_names() -> None:
    """Shared options and helpers come from medi2i.cli.options, never as private names."""
    folder = Path(cli_main.__file__).parent
    private = [
        f"{path.name}: from {node.module} import {alias.name}"
        for path in sorted(folder.glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("medi2i.cli")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []


def test_a_reader_that_goes_away_ends_the_command_without_a_traceback() -> None:
    """``medi2i methods | head -1``: the pipe closes before the command writes."""
    command = [sys.executable, "-c", "from medi2i.cli.main import main; main(['methods'])"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        process.stdout.close()  # nobody reads: the first write fails with a broken pipe
        errors = process.stderr.read().decode()
        process.wait(timeout=120)
    assert "Traceback" not in errors
    assert "please report it" not in errors


class MemoryHungryCommand:
    """A plugin whose command runs out of memory, as numpy or torch report it."""

    @hookimpl
    def register_commands(self, cli: click.Group) -> None:
        @cli.command("hungry")
        @click.option("--torch-style", is_flag=True)
        def hungry(torch_style: bool) -> None:
            """Allocate too much."""
            if torch_style:  # torch's CPU allocator raises a RuntimeError
                raise RuntimeError(
                    "[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: "
                    "can't allocate memory: you tried to allocate 600 bytes"
                )
            raise MemoryError("Unable to allocate 600. MiB for an array")


@pytest.mark.parametrize("flags", [[], ["--torch-style"]])
def test_running_out_of_memory_is_one_line_with_advice(flags: list[str]) -> None:
    cli = build_cli(with_plugin(MemoryHungryCommand(), "hungry"))
    result = CliRunner().invoke(cli, ["hungry", *flags])
    assert result.exit_code == 1
    assert "Traceback" not in result.output  # the machine's limit, not a bug to report
    (line,) = result.output.strip().splitlines()
    assert line.startswith("Error: out of memory: ")
    assert "(in " in line
    assert "test_cli.py line" in line
    assert "--sw-batch-size" in line
    assert "--debug" in line


def test_an_ordinary_runtime_error_is_not_taken_for_memory() -> None:
    import errno

    from medi2i.errors import out_of_memory

    assert out_of_memory(MemoryError())
    assert out_of_memory(OSError(errno.ENOMEM, "Cannot allocate memory"))
    assert not out_of_memory(OSError(errno.EIO, "Input/output error"))
    assert not out_of_memory(RuntimeError("shapes do not match"))
    assert not out_of_memory(ValueError("out of memory"))  # only allocators' RuntimeErrors


def test_a_read_that_runs_out_of_memory_is_not_called_a_corrupt_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    from medi2i.io import nifti
    from medi2i.testing import write_volume_file

    source = write_volume_file(tmp_path, name="big.nii")

    def no_memory(*args: object) -> None:
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(nifti, "_read_voxels", no_memory)
    result = run(
        "predict", str(source), str(tmp_path / "out.nii.gz"), "--method", "example-self-rescaling"
    )
    assert result.exit_code == 1
    (line,) = result.output.strip().splitlines()
    assert line.startswith(f"Error: out of memory: MemoryError: reading {source}: OSError")
    assert "corrupt" not in line
    assert not (tmp_path / "out.nii.gz").exists()
