"""Procedural 3D head phantoms with tissue labels and paired MR (T1-like) and CT (HU).

The phantom is defined in millimetres around the centre of the grid, so any shape and
spacing show the same head (cropped if the field of view is too small). One seed
gives one head: the seed varies its size and outline, the layer thicknesses of scalp
and skull, the folding of the cortex, the ventricles and the frontal sinus, and the
CT texture, bias field and noise.

Layers from outside in: skin and muscle, subcutaneous fat, the skull's outer table
(cortical bone), diploë (cancellous bone), inner table, CSF, grey matter folded over
white matter, and two lateral ventricles. An air-filled frontal sinus sits in the front
of the skull, so air and bone touch as they do in real heads (both dark on T1w MR).

Example:
    >>> phantom = head_phantom(shape=(32, 32, 32), spacing_mm=(5.0, 5.0, 5.0), seed=1)
    >>> phantom.ct.shape, bool(phantom.ct.min() >= -1024)
    ((32, 32, 32), True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt
from scipy import ndimage

from medi2i.synth.fields import bias_field, gaussian_blur_mm, rician_noise
from medi2i.synth.scanner_styles import ScannerStyle, apply_style

FloatArray = npt.NDArray[np.float32]
LabelArray = npt.NDArray[np.int16]
Coordinates = tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]

HU_RANGE = (-1024.0, 3071.0)
"""The CT values a phantom can hold (12-bit CT, as in the SynthRAD metrics)."""


class Tissue(IntEnum):
    """Label values of a phantom's tissue map."""

    BACKGROUND = 0
    SKIN = 1
    FAT = 2
    CORTICAL_BONE = 3
    CANCELLOUS_BONE = 4
    CSF = 5
    GREY_MATTER = 6
    WHITE_MATTER = 7
    VENTRICLE = 8
    SINUS_AIR = 9


@dataclass(frozen=True)
class TissueProperties:
    """What a tissue looks like: mean HU, HU texture (std), relative T1w signal (fat = 1)."""

    hu: float
    hu_texture: float
    t1: float


TISSUE_PROPERTIES: dict[Tissue, TissueProperties] = {
    Tissue.BACKGROUND: TissueProperties(hu=-1000.0, hu_texture=0.0, t1=0.0),
    Tissue.SKIN: TissueProperties(hu=40.0, hu_texture=10.0, t1=0.45),
    Tissue.FAT: TissueProperties(hu=-100.0, hu_texture=10.0, t1=1.0),
    Tissue.CORTICAL_BONE: TissueProperties(hu=1400.0, hu_texture=150.0, t1=0.05),
    Tissue.CANCELLOUS_BONE: TissueProperties(hu=450.0, hu_texture=80.0, t1=0.30),
    Tissue.CSF: TissueProperties(hu=8.0, hu_texture=3.0, t1=0.20),
    Tissue.GREY_MATTER: TissueProperties(hu=40.0, hu_texture=3.0, t1=0.60),
    Tissue.WHITE_MATTER: TissueProperties(hu=27.0, hu_texture=3.0, t1=0.75),
    Tissue.VENTRICLE: TissueProperties(hu=8.0, hu_texture=3.0, t1=0.20),
    Tissue.SINUS_AIR: TissueProperties(hu=-1000.0, hu_texture=0.0, t1=0.0),
}
"""Typical adult values; the T1w signals follow the pseudo-T1 curve of benchmark Q1."""

CT_NOISE_HU = 8.0
"""Standard deviation of the CT quantum noise, in HU."""
MR_SCALE = 1000.0
"""MR signal of fat, in arbitrary units."""
MR_NOISE_FRACTION = 0.015
"""Rician noise sigma of the MR as a fraction of :data:`MR_SCALE`."""
MR_BIAS_STRENGTH = 0.15
"""Largest log-amplitude of the MR bias field."""
PARTIAL_VOLUME_FWHM_MM = 1.5
"""FWHM of the blur that gives tissue boundaries partial volume, in mm."""


@dataclass(frozen=True)
class Phantom:
    """A head phantom: labels and paired, aligned MR and CT on one grid.

    Attributes:
        labels: Tissue labels (:class:`Tissue` values), int16, ``(X, Y, Z)``.
        mr: T1-like MR (bias field, Rician noise, partial volume), float32, arbitrary
            units (fat ≈ 1000).
        ct: CT in HU within :data:`HU_RANGE`, float32.
        affine: Voxel-to-world (RAS, mm) affine, centred on the head.
        seed: The seed the phantom was made with.
    """

    labels: LabelArray
    mr: FloatArray
    ct: FloatArray
    affine: npt.NDArray[np.float64]
    seed: int

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along each array axis, in mm."""
        sizes = np.linalg.norm(self.affine[:3, :3], axis=0)
        return (float(sizes[0]), float(sizes[1]), float(sizes[2]))

    @property
    def head_mask(self) -> npt.NDArray[np.bool_]:
        """Voxels inside the head (sinus air included)."""
        return np.asarray(self.labels != Tissue.BACKGROUND)

    def clean_t1(self) -> FloatArray:
        """The noise-free, bias-free T1w signal of the labels (fat = 1), with partial volume."""
        lookup = np.array([TISSUE_PROPERTIES[t].t1 for t in Tissue], np.float32)
        return gaussian_blur_mm(
            lookup[self.labels], spacing_mm=self.spacing_mm, fwhm_mm=(PARTIAL_VOLUME_FWHM_MM,) * 3
        )

    def under_scanner(self, style: ScannerStyle, *, seed: int) -> FloatArray:
        """The phantom's T1w MR as the scanner ``style`` shows it (see
        :func:`~medi2i.synth.scanner_styles.apply_style`); ``seed`` seeds the noise."""
        return apply_style(self.clean_t1(), spacing_mm=self.spacing_mm, style=style, seed=seed)


def head_phantom(
    *,
    shape: Sequence[int] = (80, 96, 80),
    spacing_mm: Sequence[float] = (2.0, 2.0, 2.0),
    seed: int = 0,
) -> Phantom:
    """Make a head phantom with paired MR and CT.

    Args:
        shape: Grid size ``(X, Y, Z)`` in voxels; axes are left→right, posterior→anterior,
            inferior→superior. The default covers 160 × 192 × 160 mm.
        spacing_mm: Voxel size per axis, in mm (anisotropic grids are fine).
        seed: Seed of the anatomy and of the image noise.

    Returns:
        The phantom; its affine centres the head at the world origin.

    Example:
        >>> head_phantom(shape=(24, 24, 24), spacing_mm=(7, 8, 7), seed=0).labels.max() > 0
        np.True_
    """
    grid_shape = (int(shape[0]), int(shape[1]), int(shape[2]))
    spacing = (float(spacing_mm[0]), float(spacing_mm[1]), float(spacing_mm[2]))
    affine = _centred_affine(grid_shape, spacing)
    rng = np.random.default_rng(seed)
    labels = _tissue_labels(_world_coordinates(grid_shape, affine), spacing, rng)
    ct = _ct_from_labels(labels, spacing, rng)
    mr = _mr_from_labels(labels, spacing, rng)
    return Phantom(labels=labels, mr=mr, ct=ct, affine=affine, seed=seed)


def _centred_affine(
    shape: tuple[int, int, int], spacing: tuple[float, float, float]
) -> npt.NDArray[np.float64]:
    affine = np.diag([*spacing, 1.0])
    affine[:3, 3] = [-(n - 1) / 2.0 * s for n, s in zip(shape, spacing, strict=True)]
    return affine


def _world_coordinates(shape: tuple[int, int, int], affine: npt.NDArray[np.float64]) -> Coordinates:
    axes = [affine[i, i] * np.arange(n) + affine[i, 3] for i, n in enumerate(shape)]
    x, y, z = np.meshgrid(*axes, indexing="ij", sparse=True)
    return x, y, z


def _tissue_labels(
    world: Coordinates, spacing: tuple[float, float, float], rng: np.random.Generator
) -> LabelArray:
    x, y, z = world
    semi_axes = np.array([72.0, 92.0, 76.0]) * rng.uniform(0.93, 1.05, 3)
    depth = _depth_below_surface(world, semi_axes, rng)
    shape = np.broadcast_shapes(x.shape, y.shape, z.shape)
    labels = np.zeros(shape, np.int16)
    # layer boundaries in mm below the skin: skin, fat, outer table, diploe, inner table, CSF
    thickness = np.array([2.5, 3.5, 2.0, 3.0, 1.5, 3.0]) * rng.uniform(0.85, 1.15, 6)
    bounds = np.cumsum(thickness)
    layers: tuple[Tissue, ...] = (
        Tissue.SKIN,
        Tissue.FAT,
        Tissue.CORTICAL_BONE,
        Tissue.CANCELLOUS_BONE,
    )
    layers += (Tissue.CORTICAL_BONE, Tissue.CSF)
    labels[depth >= 0] = layers[0]
    for tissue, start in zip(layers[1:], bounds[:-1], strict=True):
        labels[depth >= start] = tissue
    brain_depth = depth - bounds[-1]
    # gyri: the grey/white boundary lies 3-15 mm deep, and CSF-filled sulci follow a
    # level set of a smooth random field (thin folded sheets) through the cortex
    cortex = 3.0 + 12.0 * _smooth_unit_field(shape, spacing, scale_mm=6.0, rng=rng)
    sulci = np.abs(_smooth_unit_field(shape, spacing, scale_mm=5.0, rng=rng) - 0.5) < 0.03
    labels[brain_depth >= 0] = Tissue.GREY_MATTER
    labels[brain_depth >= cortex] = Tissue.WHITE_MATTER
    labels[(brain_depth >= 0) & (brain_depth < 0.8 * cortex) & sulci] = Tissue.CSF
    labels[_ventricles(world, rng)] = Tissue.VENTRICLE
    in_skull = (depth >= bounds[1]) & (depth < bounds[4])
    labels[_frontal_sinus(world, semi_axes, bounds, rng) & in_skull] = Tissue.SINUS_AIR
    return labels


def _depth_below_surface(
    world: Coordinates, semi_axes: npt.NDArray[np.float64], rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Distance (mm) below a randomly dented ellipsoidal scalp along the ray from the
    centre: exact along rays, close to the true distance for a near-spherical head."""
    x, y, z = world
    radius = np.sqrt(x**2 + y**2 + z**2) + 1e-9
    rho = np.sqrt((x / semi_axes[0]) ** 2 + (y / semi_axes[1]) ** 2 + (z / semi_axes[2]) ** 2)
    # a few low-order bumps so that two seeds give two outlines
    dent = np.zeros_like(rho)
    for _ in range(3):
        direction = rng.normal(size=3)
        direction /= np.linalg.norm(direction)
        cosine = (x * direction[0] + y * direction[1] + z * direction[2]) / radius
        dent = dent + rng.uniform(-0.03, 0.03) * cosine**2
    rho = rho / (1.0 + dent)
    return np.asarray(radius * (1.0 / np.maximum(rho, 1e-9) - 1.0))


def _smooth_unit_field(
    shape: tuple[int, ...],
    spacing: tuple[float, float, float],
    *,
    scale_mm: float,
    rng: np.random.Generator,
) -> npt.NDArray[np.float64]:
    """Smooth random values in [0, 1] varying over about ``scale_mm`` (the gyri)."""
    noise = rng.normal(size=shape)
    smooth = ndimage.gaussian_filter(noise, [scale_mm / s for s in spacing], mode="wrap")
    spread = float(smooth.std()) or 1.0
    return np.asarray(np.clip(0.5 + smooth / (4.0 * spread), 0.0, 1.0))


def _ventricles(world: Coordinates, rng: np.random.Generator) -> npt.NDArray[np.bool_]:
    x, y, z = world
    size = np.array([7.0, 24.0, 11.0]) * rng.uniform(0.85, 1.2)
    inside = np.zeros(np.broadcast_shapes(x.shape, y.shape, z.shape), bool)
    for side in (-1.0, 1.0):
        centre = np.array([side * 10.0, 0.0, 10.0]) + rng.normal(0.0, 1.0, 3)
        inside |= ((x - centre[0]) / size[0]) ** 2 + ((y - centre[1]) / size[1]) ** 2 + (
            (z - centre[2]) / size[2]
        ) ** 2 <= 1.0
    return inside


def _frontal_sinus(
    world: Coordinates,
    semi_axes: npt.NDArray[np.float64],
    bounds: npt.NDArray[np.float64],
    rng: np.random.Generator,
) -> npt.NDArray[np.bool_]:
    x, y, z = world
    size = np.array([14.0, 6.0, 9.0]) * rng.uniform(0.8, 1.2)
    # inside the bone at the front of the head, just above eye level
    centre = np.array([0.0, semi_axes[1] - bounds[3] - 2.0, -0.25 * semi_axes[2]])
    distance = ((x - centre[0]) / size[0]) ** 2 + ((y - centre[1]) / size[1]) ** 2
    return np.asarray(distance + ((z - centre[2]) / size[2]) ** 2 <= 1.0)


def _ct_from_labels(
    labels: LabelArray, spacing: tuple[float, float, float], rng: np.random.Generator
) -> FloatArray:
    means = np.array([TISSUE_PROPERTIES[t].hu for t in Tissue], np.float32)
    textures = np.array([TISSUE_PROPERTIES[t].hu_texture for t in Tissue], np.float32)
    texture = ndimage.gaussian_filter(rng.normal(size=labels.shape), 1.0).astype(np.float32)
    texture /= np.float32(texture.std() or 1.0)
    hu = means[labels] + textures[labels] * texture
    hu = gaussian_blur_mm(hu, spacing_mm=spacing, fwhm_mm=(PARTIAL_VOLUME_FWHM_MM,) * 3)
    hu = hu + rng.normal(0.0, CT_NOISE_HU, labels.shape).astype(np.float32)
    return np.clip(hu, *HU_RANGE).astype(np.float32)


def _mr_from_labels(
    labels: LabelArray, spacing: tuple[float, float, float], rng: np.random.Generator
) -> FloatArray:
    lookup = np.array([TISSUE_PROPERTIES[t].t1 for t in Tissue], np.float32)
    signal = gaussian_blur_mm(
        lookup[labels], spacing_mm=spacing, fwhm_mm=(PARTIAL_VOLUME_FWHM_MM,) * 3
    )
    field = bias_field(labels.shape, spacing_mm=spacing, strength=MR_BIAS_STRENGTH, seed=rng)
    clean = signal * field * np.float32(MR_SCALE)
    return rician_noise(clean, sigma=MR_NOISE_FRACTION * MR_SCALE, seed=rng)
