"""The built-in demo: a procedural head phantom run through the predict path.

``medi2i demo`` needs no data: it writes a T1-like phantom volume with an oblique,
anisotropic grid, translates it with the reference method, checks that the output
kept the input's geometry, and reports where everything went.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor

    from medi2i.registry import Registry

DEMO_METHOD = "intensity-inversion"


def head_phantom(shape: tuple[int, int, int] = (72, 80, 56), *, seed: int = 0) -> np.ndarray:
    """A T1-like head phantom: scalp fat (bright), skull (dark), grey and white matter,
    ventricles (dark CSF), with mild noise. Values in [0, 1]."""
    rng = np.random.default_rng(seed)
    axes = [np.linspace(-1, 1, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")

    def ellipsoid(rx: float, ry: float, rz: float, cx: float = 0.0, cz: float = 0.0) -> np.ndarray:
        return ((x - cx) / rx) ** 2 + (y / ry) ** 2 + ((z - cz) / rz) ** 2 <= 1.0

    volume = np.zeros(shape, np.float32)
    volume[ellipsoid(0.92, 0.95, 0.9)] = 0.85  # scalp and fat
    volume[ellipsoid(0.85, 0.88, 0.83)] = 0.08  # skull
    volume[ellipsoid(0.8, 0.83, 0.78)] = 0.3  # CSF
    volume[ellipsoid(0.76, 0.79, 0.74)] = 0.55  # grey matter
    volume[ellipsoid(0.6, 0.63, 0.58)] = 0.75  # white matter
    for side in (-0.18, 0.18):
        volume[ellipsoid(0.1, 0.3, 0.12, cx=side, cz=0.05)] = 0.3  # ventricles
    volume += rng.normal(0.0, 0.01, shape).astype(np.float32) * (volume > 0)
    return np.clip(volume, 0.0, 1.0)


def demo_volume() -> MetaTensor:
    """The phantom as a ``MetaTensor`` with a rotated, anisotropic (1.1×1.0×1.5 mm) grid."""
    from monai.data.meta_tensor import MetaTensor

    angle = np.deg2rad(12.0)
    rotation = np.array(
        [[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1.0]]
    )
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.1, 1.0, 1.5])
    affine[:3, 3] = (-40.0, -38.0, -42.0)
    import torch

    data = torch.from_numpy(1000.0 * head_phantom()[None])
    return MetaTensor(
        data, affine=torch.from_numpy(affine), meta={"filename_or_obj": "built-in head phantom"}
    )


def run_demo(output_dir: Path, *, registry: Registry, progress: bool = True) -> Iterator[str]:
    """Write the phantom, translate it, verify geometry; yield report lines."""
    from medi2i.io import read_volume, write_volume
    from medi2i.prediction import predict
    from medi2i.settings import InferenceSettings

    output_dir.mkdir(parents=True, exist_ok=True)
    source = write_volume(demo_volume(), output_dir / "phantom_t1.nii.gz")
    yield f"input:  {source} (built-in head phantom)"
    registry.method(DEMO_METHOD)  # a clear error if the reference plugin is not installed
    target = output_dir / "phantom_inverted.nii.gz"
    written = predict(
        source,
        target,
        method=DEMO_METHOD,
        settings=InferenceSettings(progress=progress),
        registry=registry,
    )
    image, result = read_volume(source), read_volume(written)
    same = tuple(image.shape) == tuple(result.shape) and np.allclose(image.affine, result.affine)
    yield f"output: {written} (method {DEMO_METHOD})"
    yield f"geometry identical to the input: {'yes' if same else 'NO'}"
    yield f"provenance: {written.with_name('phantom_inverted.provenance.json')}"
