"""The in-memory image (:class:`Volume`) and the geometry of voxel grids.

Owns what every other part of :mod:`wholebrain.io` needs about a grid: voxel size and
orientation from an affine, comparing two affines, describing a grid in a message, and
:func:`check_same_grid` with its tolerances. Knows nothing about files.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from wholebrain.errors import InputError

GRID_TOL_MM = 1e-3  # two affines are the same grid if their translations agree to this...
GRID_TOL_LINEAR = 1e-4  # ...and their 3x3 (rotation x voxel size) parts to this

_aff2axcodes: Any = nib.aff2axcodes  # untyped in nibabel; Any keeps mypy --strict quiet


@dataclass(frozen=True, eq=False)
class Volume:
    """A 3D image or label map with its place in the world.

    Attributes:
        data: (X, Y, Z) array in the file's voxel order; float32 for images, int32 for label maps.
        affine: (4, 4) float64 voxel -> world (RAS+, mm) matrix, as nibabel's ``img.affine``.
        header: the nibabel header of the source file (copied on save); None in memory.
        path: the file it was loaded from; None in memory.
    """

    data: np.ndarray  # (X, Y, Z) voxels, file order
    affine: np.ndarray  # (4, 4) float64, voxel index -> RAS+ mm
    header: Any | None = None  # nibabel header of the source file, or None
    path: Path | None = None  # source file, or None

    def __post_init__(self) -> None:
        # Programming errors, not user input: a Volume is built by this module or by code.
        if self.data.ndim != 3:
            raise ValueError(f"Volume data must be 3D (X, Y, Z), not shape {self.data.shape}")
        affine = np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"Volume affine must be (4, 4), not {affine.shape}")
        object.__setattr__(self, "affine", affine)

    @property
    def shape(self) -> tuple[int, int, int]:
        """Number of voxels along each axis (X, Y, Z)."""
        x, y, z = self.data.shape
        return int(x), int(y), int(z)

    @property
    def spacing_mm(self) -> tuple[float, float, float]:
        """Voxel size along each voxel axis in mm (column norms of the affine)."""
        x, y, z = _spacing_mm(self.affine)
        return x, y, z

    @property
    def orientation(self) -> str:
        """Anatomical direction of increasing voxel indices, e.g. ``"RAS"`` or ``"LIA"``."""
        return _orientation(self.affine)

    @property
    def name(self) -> str:
        """The file name for messages (``"<in-memory volume>"`` when there is none)."""
        return str(self.path) if self.path is not None else "<in-memory volume>"


def check_same_grid(a: Volume, b: Volume) -> None:
    """Check that two volumes share one voxel grid (shape and affine).

    Raises:
        InputError: naming ``b``'s file, with both grids described (shape, voxel size,
            orientation, and the affine difference when those agree).
    """
    translation_mm, linear = _affine_difference(a.affine, b.affine)
    if a.shape == b.shape and translation_mm <= GRID_TOL_MM and linear <= GRID_TOL_LINEAR:
        return
    found = _describe_grid(b)
    if found == _describe_grid(a):
        found += f", but its affine differs by {translation_mm:.3g} mm / {linear:.3g} in rotation"
    raise InputError(
        b.name,
        f"the voxel grid of {a.name} ({_describe_grid(a)})",
        found,
        "resample it onto that image with nearest-neighbour interpolation (e.g. nilearn's "
        "resample_to_img(labels, image, interpolation='nearest') or mri_vol2vol --regheader "
        "--interp nearest)",
    )


# --- geometry helpers ------------------------------------------------------------------------


def _describe_grid(volume: Volume) -> str:
    shape = "x".join(str(n) for n in volume.shape)
    voxel = " x ".join(_num(s) for s in volume.spacing_mm)
    return f"{shape} voxels of {voxel} mm, {_orientation(volume.affine, default='?')}"


def _spacing_mm(affine: np.ndarray) -> tuple[float, float, float]:
    x, y, z = np.sqrt(np.sum(np.asarray(affine)[:3, :3] ** 2, axis=0))
    return float(x), float(y), float(z)


def _orientation(affine: np.ndarray, default: str | None = None) -> str:
    try:
        codes = _aff2axcodes(affine)
    except Exception:  # singular or non-finite affines have no orientation
        if default is None:
            raise
        return default
    if None in codes:
        if default is None:
            raise ValueError(f"the affine has no orientation:\n{affine}")
        return default
    return "".join(codes)


def _affine_difference(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """(largest translation difference in mm, largest 3x3 element difference)."""
    diff = np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    return float(diff[:3, 3].max()), float(diff[:3, :3].max())


def _num(value: float) -> str:
    """A number for a message: ``0.1``, ``256``, ``1.2e+03``-style only when needed."""
    return f"{value:.4g}"
