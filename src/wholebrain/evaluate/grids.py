"""Grids of a pair: same grid or not, a grid in words, nearest-neighbour resampling.

The prediction is brought onto the reference grid through the two voxel -> world affines
(both must describe the same world space): each reference voxel takes the label of the
prediction voxel whose centre is nearest to its own centre (ties to the higher index), and
reference voxels outside the prediction's field of view get 0 (background).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from wholebrain.io import GRID_TOL_LINEAR, GRID_TOL_MM, Volume

__all__ = ["describe_grid", "resample_nearest", "same_grid"]

_RESAMPLE_CHUNK_VOX = 1 << 20  # reference voxels resampled per step (bounds the memory)


def same_grid(a: Volume, b: Volume) -> bool:
    """Whether two volumes share one grid (shape, and affine within wholebrain.io's tolerances)."""
    diff = np.abs(a.affine - b.affine)
    return (
        a.shape == b.shape
        and float(diff[:3, 3].max()) <= GRID_TOL_MM
        and float(diff[:3, :3].max()) <= GRID_TOL_LINEAR
    )


def describe_grid(volume: Volume) -> str:
    """E.g. ``"64x64x40 voxels of 2 x 2 x 2 mm, RAS"``."""
    shape = "x".join(str(n) for n in volume.shape)
    voxel = " x ".join(f"{s:.4g}" for s in volume.spacing_mm)
    return f"{shape} voxels of {voxel} mm, {volume.orientation}"


def resample_nearest(
    labels: NDArray[np.int32], affine: NDArray[np.float64], target: Volume
) -> tuple[NDArray[np.int32], NDArray[np.bool_]]:
    """Labels on ``target``'s grid by nearest neighbour through the affines.

    Args:
        labels: (X, Y, Z) label map whose voxel -> world matrix is ``affine``.
        affine: (4, 4) voxel -> world (mm) of ``labels``.
        target: the grid to resample onto.

    Returns:
        (labels on ``target``'s grid, True where a target voxel fell outside ``labels``'
        field of view and got 0).
    """
    to_source = np.linalg.inv(affine) @ target.affine  # target voxel -> source voxel
    shape = target.shape
    out = np.zeros(shape, dtype=labels.dtype)
    outside = np.ones(shape, dtype=bool)
    plane = np.stack(np.meshgrid(np.arange(shape[0]), np.arange(shape[1]), indexing="ij"))
    base = np.tensordot(to_source[:3, :2], plane, axes=1) + to_source[:3, 3, None, None]
    step = max(1, _RESAMPLE_CHUNK_VOX // (shape[0] * shape[1]))
    for z0 in range(0, shape[2], step):
        z = np.arange(z0, min(z0 + step, shape[2]), dtype=np.float64)
        coords = base[..., None] + to_source[:3, 2, None, None, None] * z
        # floor(x + 0.5): the nearest voxel centre, ties to the higher index.
        index = np.floor(coords + 0.5).astype(np.intp)
        inside = np.ones(index.shape[1:], dtype=bool)
        for axis in range(3):
            inside &= (index[axis] >= 0) & (index[axis] < labels.shape[axis])
        chunk = out[:, :, z0 : z0 + z.size]
        chunk[inside] = labels[index[0][inside], index[1][inside], index[2][inside]]
        outside[:, :, z0 : z0 + z.size] = ~inside
    return out, outside
