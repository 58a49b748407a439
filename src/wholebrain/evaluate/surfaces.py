"""Surfaces of every label of an index map, and exact surface distances between two maps.

The engine under :func:`wholebrain.evaluate.metrics.label_metrics` (definitions there). Works on
*index maps* prepared by :mod:`~wholebrain.evaluate.metrics`: values 0..K-1 for the labels
scored, K for anything else, cropped to the labels and padded with :data:`PAD_VOX` voxels of K.

- Surfaces: one pass over a map finds the surface voxels of every label at once (a voxel is on
  its label's surface when a face neighbour holds another value).
- Distances: exact, without a distance transform. A surface voxel shared by both surfaces is at
  0; most others have a voxel of the other surface among their nearest neighbours, looked up in
  rings of increasing distance up to twice the smallest spacing (flat-index offsets, no bounds
  checks thanks to the padding); a KD-tree (scipy ``cKDTree``) over the other surface answers
  the rest, and all of them when the first ring answers few (surfaces far apart).
"""

from __future__ import annotations

import functools

import numpy as np
from numpy.typing import NDArray
from scipy.spatial import cKDTree

__all__ = ["PAD_VOX", "SurfaceDistances", "surface_distances"]

PAD_VOX = 2  # "other" voxels padded around index maps: the reach of the neighbour rings
_MIN_RING_ANSWERS = 0.2  # share of surface voxels the nearest ring must answer to go on

SurfaceDistances = tuple[NDArray[np.float64], NDArray[np.float64]]
"""(pred -> ref, ref -> pred) distances in mm of one label's surface voxels, raster order."""


def _surface_voxels(index: NDArray[np.integer], k: int) -> list[NDArray[np.intp]]:
    """Flat indices (ascending) of the surface voxels of each label 0..k-1 of an index map.

    A voxel is on its label's surface when a face neighbour holds another value: per label,
    ``mask & ~binary_erosion(mask)``. The map is padded with "other", so a voxel on the original
    array's edge counts as touching the outside, as in scipy's erosion (border value 0).
    """
    surface = np.zeros(index.shape, dtype=bool)
    for axis in range(index.ndim):
        upper = _along(axis, index.ndim, slice(1, None))
        lower = _along(axis, index.ndim, slice(None, -1))
        differs = index[upper] != index[lower]
        surface[upper] |= differs
        surface[lower] |= differs
    surface &= index < k  # only the labels scored
    flat = np.flatnonzero(surface)
    label = index.reshape(-1)[flat]
    order = np.argsort(label, kind="stable")  # stable: raster order within each label
    flat, label = flat[order], label[order]
    bounds = np.searchsorted(label, np.arange(k + 1))
    return [flat[bounds[i] : bounds[i + 1]] for i in range(k)]


def _along(axis: int, ndim: int, where: slice) -> tuple[slice, ...]:
    return tuple(where if a == axis else slice(None) for a in range(ndim))


def surface_distances(
    pred_idx: NDArray[np.integer],
    ref_idx: NDArray[np.integer],
    k: int,
    spacing: NDArray[np.float64],
) -> list[SurfaceDistances | None]:
    """The directed surface distances of each label 0..k-1 of two index maps.

    Args:
        pred_idx, ref_idx: index maps of one shape (see the module docstring).
        k: number of labels scored.
        spacing: (ndim,) voxel size in mm.

    Returns:
        Per label ``(pred -> ref, ref -> pred)`` float64 mm, or None when the label is
        absent from either map.
    """
    shape = pred_idx.shape
    pred_surfaces = _surface_voxels(pred_idx, k)
    ref_surfaces = _surface_voxels(ref_idx, k)
    distances: list[SurfaceDistances | None] = []
    for pred_flat, ref_flat in zip(pred_surfaces, ref_surfaces, strict=True):
        if pred_flat.size == 0 or ref_flat.size == 0:
            distances.append(None)
        elif np.array_equal(pred_flat, ref_flat):
            distances.append((np.zeros(pred_flat.size), np.zeros(ref_flat.size)))
        else:
            distances.append(
                (
                    _directed(pred_flat, ref_flat, shape, spacing),
                    _directed(ref_flat, pred_flat, shape, spacing),
                )
            )
    return distances


def _directed(
    flat: NDArray[np.intp],
    targets: NDArray[np.intp],
    shape: tuple[int, ...],
    spacing: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Distance in mm from each voxel ``flat`` to the nearest voxel ``targets`` (exact).

    Both are ascending flat indices into ``shape``. Most voxels of a good segmentation's
    surface are answered without a search, by looking at their neighbours in order of
    distance (:func:`_neighbour_offsets`): a voxel that is a target is at 0, and the first
    neighbour that is a target gives the distance. A KD-tree over the targets answers the
    rest, and all of them when the first ring answers few (surfaces far apart).
    """
    distance = np.zeros(flat.size)
    pending = flat[~_member(flat, targets)]  # voxels still unanswered
    strides = np.cumprod((1, *shape[:0:-1]))[::-1]  # C order: flat = index @ strides
    found: list[tuple[NDArray[np.intp], float]] = []
    for ring, (ring_mm, offsets) in enumerate(_neighbour_offsets(tuple(spacing.tolist()))):
        if pending.size == 0:
            break
        answered = np.zeros(pending.size, dtype=bool)
        # No bounds checks: the scored voxels lie PAD_VOX voxels inside the array.
        for step in offsets @ strides:
            answered |= _member(pending + int(step), targets)
        found.append((pending[answered], ring_mm))
        n_before, pending = pending.size, pending[~answered]
        if ring == 0 and pending.size > (1 - _MIN_RING_ANSWERS) * n_before:
            break  # surfaces far apart: the search below is cheaper than more rings
    for voxels, ring_mm in found:
        distance[np.searchsorted(flat, voxels)] = ring_mm
    if pending.size:
        points_mm = _coordinates_mm(pending, shape, spacing)
        targets_mm = _coordinates_mm(targets, shape, spacing)
        # An unbalanced (sliding-midpoint) tree builds faster and answers as fast here.
        tree = cKDTree(targets_mm, leafsize=16, balanced_tree=False, compact_nodes=False)
        distance[np.searchsorted(flat, pending)], _ = tree.query(points_mm, k=1, workers=-1)
    return distance


@functools.cache
def _neighbour_offsets(
    spacing_mm: tuple[float, ...],
) -> tuple[tuple[float, NDArray[np.intp]], ...]:
    """Voxel offsets no farther than twice the smallest spacing, in rings of equal distance.

    Returns ``(distance_mm, offsets (n, ndim))`` by increasing distance. Every offset up to
    the largest distance listed is there, so the first ring holding a target gives the
    exact nearest distance.
    """
    spacing = np.array(spacing_mm)
    reach_mm = 2 * float(spacing.min())
    extent = [np.arange(-r, r + 1) for r in np.floor(reach_mm / spacing).astype(int)]
    offsets = np.stack(np.meshgrid(*extent, indexing="ij"), axis=-1).reshape(-1, spacing.size)
    distance = np.sqrt(((offsets * spacing) ** 2).sum(axis=1))
    distance = np.round(distance, 9)  # equal distances computed along different axes tie
    keep = (distance > 0) & (distance <= np.round(reach_mm, 9))
    offsets, distance = offsets[keep], distance[keep]
    return tuple((float(d), offsets[distance == d]) for d in np.unique(distance))


def _member(values: NDArray[np.intp], sorted_set: NDArray[np.intp]) -> NDArray[np.bool_]:
    """Which ``values`` are in the ascending array ``sorted_set``."""
    pos = np.minimum(np.searchsorted(sorted_set, values), sorted_set.size - 1)
    found: NDArray[np.bool_] = sorted_set[pos] == values
    return found


def _coordinates_mm(
    flat: NDArray[np.intp], shape: tuple[int, ...], spacing: NDArray[np.float64]
) -> NDArray[np.float64]:
    """(n, ndim) voxel-centre coordinates in mm, voxel axes scaled by the spacing."""
    coords = np.stack(np.unravel_index(flat, shape), axis=1).astype(np.float64)
    coords *= spacing
    return coords
