"""Small synthetic volumes with non-trivial geometry, for tests of methods and plugins.

The volumes are smooth (Gaussian blobs on a gradient) so that interpolation and
sliding-window blending behave as on real images, and their affine is oblique (rotated,
anisotropic, off-origin) so that a method or reader that drops or transposes the
geometry fails its tests instead of passing by luck.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, TypedDict

import numpy as np

if TYPE_CHECKING:
    from monai.data.meta_tensor import MetaTensor
    from typing_extensions import Unpack

VolumeKind = Literal["blobs", "ramp", "constant"]
Triple = tuple[float, float, float]


class VolumeParameters(TypedDict, total=False):
    """Keyword arguments of :func:`make_volume`, for functions that pass them on."""

    shape: tuple[int, int, int]
    spacing: Triple
    origin: Triple
    rotation_deg: Triple
    seed: int
    kind: VolumeKind


def make_volume(
    shape: tuple[int, int, int] = (24, 20, 16),
    *,
    spacing: Triple = (0.9, 1.1, 2.0),
    origin: Triple = (-10.0, 5.0, 30.0),
    rotation_deg: Triple = (10.0, 0.0, -5.0),
    seed: int = 0,
    kind: VolumeKind = "blobs",
) -> MetaTensor:
    """A single-channel float32 volume on an oblique grid.

    Args:
        shape: Voxels along each array axis.
        spacing: Voxel size along each array axis, in mm.
        origin: World (RAS) position of the centre of voxel ``(0, 0, 0)``, in mm.
        rotation_deg: Rotation of the voxel axes about the world x, y and z axes, in
            degrees (applied in that order).
        seed: Seed of the blob positions, sizes and amplitudes.
        kind: ``"blobs"``: a few Gaussian blobs on a gradient, values about 100 to 1000;
            ``"ramp"``: the gradient alone; ``"constant"``: every voxel 100.

    Returns:
        A ``MetaTensor`` of shape ``(1, *shape)`` with its voxel-to-RAS affine.

    Example:
        >>> make_volume((8, 8, 8)).shape
        torch.Size([1, 8, 8, 8])
    """
    import torch
    from monai.data.meta_tensor import MetaTensor

    values = _intensities(shape, seed=seed, kind=kind)
    affine = volume_affine(spacing=spacing, origin=origin, rotation_deg=rotation_deg)
    return MetaTensor(
        torch.from_numpy(values[None]), affine=torch.from_numpy(affine), meta={"space": "RAS"}
    )


def volume_affine(*, spacing: Triple, origin: Triple, rotation_deg: Triple) -> np.ndarray:
    """The 4x4 voxel-to-RAS affine (mm) of a rotated, anisotropic grid."""
    affine = np.eye(4)
    affine[:3, :3] = _rotation(rotation_deg) @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


def write_volume_file(
    tmp_path: Path, name: str = "input.nii.gz", **kwargs: Unpack[VolumeParameters]
) -> Path:
    """Write a :func:`make_volume` volume into ``tmp_path`` and return its path.

    Args:
        tmp_path: Folder to write into (pytest's ``tmp_path``).
        name: File name; its suffix picks the format (``.nii.gz``, ``.nrrd``, ``.mha``).
        **kwargs: Passed to :func:`make_volume`.
    """
    from medi2i.io import write_volume

    volume = make_volume(**kwargs)
    return Path(write_volume(volume, Path(tmp_path) / name, overwrite=True))


def _intensities(shape: tuple[int, int, int], *, seed: int, kind: VolumeKind) -> np.ndarray:
    if kind not in ("blobs", "ramp", "constant"):
        raise ValueError(f"unknown volume kind {kind!r}; use 'blobs', 'ramp' or 'constant'")
    if kind == "constant":
        return np.full(shape, 100.0, dtype=np.float32)
    # voxel positions as fractions of the extent, so blobs scale with the volume
    axes = [np.linspace(0.0, 1.0, n) for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    values = 100.0 + 150.0 * x + 50.0 * z
    if kind == "blobs":
        values = values + _blobs(x, y, z, np.random.default_rng(seed))
    return values.astype(np.float32)


def _blobs(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, rng: np.random.Generator, count: int = 4
) -> np.ndarray:
    total = np.zeros_like(x)
    for _ in range(count):
        cx, cy, cz = rng.uniform(0.2, 0.8, size=3)
        sigma = rng.uniform(0.1, 0.25)
        amplitude = rng.uniform(300.0, 700.0)
        distance2 = (x - cx) ** 2 + (y - cy) ** 2 + (z - cz) ** 2
        total += amplitude * np.exp(-distance2 / (2.0 * sigma**2))
    return total


def _rotation(angles_deg: Triple) -> np.ndarray:
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx)
