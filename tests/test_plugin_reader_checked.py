"""What a plugin reader returns is checked where it is read.

A reader that returned a bare array failed later with an AttributeError traceback; one
that returned a volume without its channel axis was refused by the sliding-window
engine, with a message that told the user to change their image and named neither the
file nor the reader; and a bare ``MetaTensor`` made errors about the input say "the
input volume" instead of the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.data.meta_tensor import MetaTensor

import medi2i
from medi2i import PluginError, VolumeReader


class Returning(VolumeReader):
    name = "test-returning"
    description = "returns what it was told to (.ret)"
    suffixes = (".ret",)

    def __init__(self, result: object) -> None:
        self.result = result

    def read(self, path: Path):  # type: ignore[no-untyped-def]
        return self.result


@pytest.fixture
def path(tmp_path: Path) -> Path:
    made = tmp_path / "scan.ret"
    made.write_bytes(b"made-up format")
    return made


@pytest.mark.parametrize(
    ("result", "said"),
    [
        (np.zeros((4, 4, 4), dtype=np.float32), "returned a ndarray for"),
        (MetaTensor(torch.zeros(4, 4, 4)), r"returned a volume of shape \(4, 4, 4\) for"),
        (MetaTensor(torch.zeros(2, 4, 4, 4)), r"returned a volume of shape \(2, 4, 4, 4\) for"),
    ],
    ids=["array", "no-channel", "two-channels"],
)
def test_a_reader_returning_no_volume_is_named(path: Path, result: object, said: str) -> None:
    with pytest.raises(PluginError, match=rf"reader 'test-returning' {said} .*scan\.ret"):
        medi2i.read_volume(path, readers=[Returning(result)])


def test_a_bare_metatensor_is_named_after_its_file(path: Path) -> None:
    volume = medi2i.read_volume(path, readers=[Returning(MetaTensor(torch.rand(1, 4, 4, 4)))])
    assert volume.meta["filename_or_obj"] == str(path)
