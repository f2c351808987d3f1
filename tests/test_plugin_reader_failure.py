"""A plugin reader that raises something unexpected is one line naming it, not a traceback.

A ``KeyError`` from inside a plugin's reader reached the command line as a Python
traceback that named neither the reader nor its plugin; medi2i's own errors, which a
reader raises on purpose about a damaged file, still reach the user as they are.
"""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from click.testing import CliRunner

import medi2i
from medi2i import InputError, PluginError, VolumeReader, hookimpl
from medi2i.cli.main import build_cli
from medi2i.plugins import load_plugins
from medi2i.testing import example_methods


class Raising(VolumeReader):
    name = "test-raising"
    description = "raises what it was told to (.rai)"
    suffixes = (".rai",)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def read(self, path: Path):  # type: ignore[no-untyped-def]
        raise self.error


def plugin_with(reader: VolumeReader) -> types.ModuleType:
    module = types.ModuleType("fake_raising_reader")

    @hookimpl
    def register_readers(register):  # type: ignore[no-untyped-def]
        register(reader)

    module.register_readers = register_readers  # type: ignore[attr-defined]
    return module


@pytest.fixture
def scan(tmp_path: Path) -> Path:
    made = tmp_path / "scan.rai"
    made.write_bytes(b"made-up format")
    return made


def test_a_reader_bug_is_one_line_naming_the_reader_its_plugin_and_the_file(
    scan: Path, tmp_path: Path
) -> None:
    plugins = load_plugins()
    plugins.manager.register(example_methods, name="examples")
    plugins.manager.register(plugin_with(Raising(KeyError("Spacing"))), name="raising-plugin")
    result = CliRunner().invoke(
        build_cli(plugins),
        ["predict", str(scan), str(tmp_path / "out.nii.gz"), "--method", "example-self-rescaling"],
    )
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: reader 'test-raising' of plugin 'raising-plugin' failed on {scan}: "
        "KeyError: 'Spacing'; report it to the plugin's authors (--debug shows the traceback)"
    ]
    assert not (tmp_path / "out.nii.gz").exists()


class Unregistered(Raising):
    name = "test-unregistered"


def test_read_volume_names_a_reader_no_plugin_registered(scan: Path) -> None:
    with pytest.raises(
        PluginError, match=r"^reader 'test-unregistered' failed on .*scan\.rai: ValueError: bad"
    ):
        medi2i.read_volume(scan, readers=[Unregistered(ValueError("bad header"))])


def test_medi2i_errors_of_a_reader_pass_as_they_are(scan: Path) -> None:
    refused = InputError(f"{scan} is truncated")
    with pytest.raises(InputError) as raised:
        medi2i.read_volume(scan, readers=[Raising(refused)])
    assert raised.value is refused
