"""A third-party reader is written with ``medi2i``'s public names only.

The ``VolumeReader`` docstring told reader authors to build their volume with
``volume_from_array``, which only ``medi2i.io.base`` had: a plugin may import only
``medi2i`` and ``medi2i.testing``, so a reader written from the docstring either reached
into an internal module or built a bare ``MetaTensor`` without the file in its metadata.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import medi2i
from medi2i import VolumeReader


class NpyReader(VolumeReader):
    """``.npy`` arrays on a 2 mm grid, as a made-up plugin format."""

    name = "test-npy"
    description = "NumPy arrays (.npy)"
    suffixes = (".npy",)

    def read(self, path: Path):  # type: ignore[no-untyped-def]
        array = np.load(path, allow_pickle=False)
        return medi2i.volume_from_array(array, np.diag([2.0, 2.0, 2.0, 1.0]), path=path)


def test_volume_from_array_is_public() -> None:
    assert "volume_from_array" in medi2i.__all__
    assert "medi2i.volume_from_array" in (VolumeReader.__doc__ or "")


def test_a_reader_built_on_it_reads_a_volume_that_names_its_file(tmp_path: Path) -> None:
    path = tmp_path / "scan.npy"
    np.save(path, np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6))
    volume = medi2i.read_volume(path, readers=[NpyReader()])
    assert tuple(volume.shape) == (1, 4, 5, 6)
    assert volume.dtype == torch.float32
    assert volume.meta["filename_or_obj"] == str(path)
    np.testing.assert_allclose(np.asarray(volume.affine)[0, 0], 2.0)
