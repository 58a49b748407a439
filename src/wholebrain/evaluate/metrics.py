"""Segmentation metrics on label arrays: Dice, Hausdorff (95th percentile), ASSD, volume difference.

Pure functions of arrays and a voxel size: no files, no protocols, no torch. They are the
project's one implementation of these metrics; the training loop's validation Dice is
:func:`dice_per_class` on class-index maps.

Every function takes two label maps of one shape (``pred``, ``ref``; any integer dtype, or
bool) and the label ids to score (``labels``, one value per output entry, in the order given);
values of the maps that are not in ``labels`` count as "none of them". The result is one value
per label, float64.

Definitions (the conventions of ``monai.metrics``, checked against it in the tests):

- **Dice** ``2|P ∩ R| / (|P| + |R|)`` over voxels.
- **Surface** of a structure: its voxels with at least one of their 6 face neighbours outside
  it; a voxel on the array's edge counts as touching the outside. This is MONAI's
  ``binary_erosion(mask) ^ mask`` with scipy's default cross-shaped structuring element.
- **Surface distance** from a surface voxel of P: the Euclidean distance in mm between its
  centre and the nearest surface voxel centre of R (voxel axes scaled by ``spacing_mm``).
- **HD95**: the larger of the two *directed* 95th percentiles,
  ``max(q95(d(P→R)), q95(d(R→P)))``, with linear interpolation between order statistics
  (``np.percentile``'s default, as ``torch.quantile`` in MONAI's
  ``compute_hausdorff_distance(percentile=95)``). This is not medpy's ``hd95``, which takes the
  95th percentile of the two directed sets pooled; the two differ when one surface has far
  outliers the other has not.
- **ASSD** (average symmetric surface distance): the mean of the two directed sets pooled,
  ``(Σ d(P→R) + Σ d(R→P)) / (|∂P| + |∂R|)``, as MONAI's
  ``compute_average_surface_distance(symmetric=True)``.
- **Volume difference**: ``100 (|P| - |R|) / |R|``, signed percent of the reference.

Absent structures: a label absent from both maps gets NaN for every metric (there is nothing
to score, and NaN keeps it out of means). A label absent from one map only gets Dice 0,
HD95/ASSD NaN (no surface to measure to), and volume difference -100 % when the prediction
misses it or NaN when the reference lacks it (a percentage of zero).

How it is fast: all work is on the bounding box of the labels scored; voxel counts come from
one joint ``bincount``; surfaces and exact distances from :mod:`wholebrain.evaluate.surfaces`
(one pass for every label's surface, neighbour rings and KD-trees instead of distance
transforms). ``benchmarks/evaluate.py`` compares this with MONAI and with per-label distance
transforms on bounding boxes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wholebrain.evaluate.surfaces import PAD_VOX, SurfaceDistances, surface_distances

__all__ = [
    "HD_PERCENTILE",
    "LabelMetrics",
    "assd_per_class",
    "dice_per_class",
    "hausdorff_per_class",
    "label_metrics",
    "surface_distances_per_class",
    "volume_difference_per_class",
]

HD_PERCENTILE = 95.0
"""Percentile of the directed surface distances reported as "HD95"."""

_MAX_LUT_SPAN = 1 << 24  # label value range up to which a lookup table maps values to indices
_MAX_CONFUSION_BINS = 1 << 20  # (K + 1)² up to which voxel counts come from one joint bincount


@dataclass(frozen=True, eq=False)
class LabelMetrics:
    """Every metric of every scored label, as returned by :func:`label_metrics`.

    All arrays have shape (K,), one entry per label of :attr:`labels`, in that order.
    """

    labels: NDArray[np.int64]  # the label ids scored
    dice: NDArray[np.float64]  # Dice in 0..1; NaN: absent from both maps
    hd95_mm: NDArray[np.float64]  # HD95 in mm; NaN: absent from either map
    assd_mm: NDArray[np.float64]  # average symmetric surface distance in mm; NaN as hd95_mm
    volume_diff_pct: NDArray[np.float64]  # 100 (|P| - |R|) / |R|; NaN: absent from ref
    voxels_pred: NDArray[np.int64]  # voxel count of the label in pred
    voxels_ref: NDArray[np.int64]  # voxel count of the label in ref


def dice_per_class(pred: ArrayLike, ref: ArrayLike, labels: ArrayLike) -> NDArray[np.float64]:
    """Dice overlap ``2|P ∩ R| / (|P| + |R|)`` of each label.

    Works on arrays of any shape (a batch is pooled); for the training loop, pass class-index
    maps and ``labels=range(K)``.

    Args:
        pred: predicted label map, any shape, integer or bool.
        ref: reference label map of the same shape.
        labels: (K,) distinct label values to score.

    Returns:
        (K,) float64 in 0..1; NaN where a label is absent from both maps.

    Raises:
        ValueError: the maps differ in shape or are not integer, or ``labels`` is not a
            1-D list of distinct integers.
    """
    label_ids, pred_idx, ref_idx = _indexed(pred, ref, labels)
    n_pred, n_ref, n_both = _counts(pred_idx, ref_idx, label_ids.size)
    return _dice(n_pred, n_ref, n_both)


def volume_difference_per_class(
    pred: ArrayLike, ref: ArrayLike, labels: ArrayLike
) -> NDArray[np.float64]:
    """Volume difference ``100 (|P| - |R|) / |R|`` of each label, in percent of the reference.

    Args:
        pred, ref, labels: as :func:`dice_per_class`.

    Returns:
        (K,) float64, signed (negative: the prediction is smaller); -100 where only the
        prediction misses the label, NaN where the reference lacks it.

    Raises:
        ValueError: as :func:`dice_per_class`.
    """
    label_ids, pred_idx, ref_idx = _indexed(pred, ref, labels)
    n_pred, n_ref, _ = _counts(pred_idx, ref_idx, label_ids.size)
    return _volume_difference(n_pred, n_ref)


def surface_distances_per_class(
    pred: ArrayLike, ref: ArrayLike, labels: ArrayLike, spacing_mm: Sequence[float]
) -> list[SurfaceDistances | None]:
    """The directed surface distances of each label, for statistics of one's own.

    Args:
        pred: predicted label map, (X, Y, Z) (or any number of dimensions), integer or bool.
        ref: reference label map of the same shape.
        labels: (K,) distinct label values to score.
        spacing_mm: voxel size along each array axis in mm.

    Returns:
        One entry per label: ``(pred_to_ref, ref_to_pred)``, float64 distances in mm from
        each surface voxel of the label in ``pred`` to the nearest one in ``ref`` (raster
        order), and back; None where the label is absent from either map.

    Raises:
        ValueError: as :func:`dice_per_class`, or ``spacing_mm`` has not one positive finite
            value per axis.
    """
    label_ids, pred_idx, ref_idx = _indexed(pred, ref, labels)
    spacing = _spacing(spacing_mm, pred_idx.ndim)
    return surface_distances(pred_idx, ref_idx, label_ids.size, spacing)


def hausdorff_per_class(
    pred: ArrayLike,
    ref: ArrayLike,
    labels: ArrayLike,
    spacing_mm: Sequence[float],
    percentile: float = HD_PERCENTILE,
) -> NDArray[np.float64]:
    """Percentile Hausdorff distance (HD95 by default) of each label, in mm.

    ``max(q(d(P→R)), q(d(R→P)))`` with ``q`` the ``percentile``-th percentile (linear
    interpolation); ``percentile=100`` gives the Hausdorff distance.

    Args:
        pred, ref, labels, spacing_mm: as :func:`surface_distances_per_class`.
        percentile: in 0..100.

    Returns:
        (K,) float64 mm; NaN where a label is absent from either map.

    Raises:
        ValueError: as :func:`surface_distances_per_class`, or ``percentile`` outside 0..100.
    """
    _check_percentile(percentile)
    distances = surface_distances_per_class(pred, ref, labels, spacing_mm)
    return np.array([_hausdorff(d, percentile) for d in distances], dtype=np.float64)


def assd_per_class(
    pred: ArrayLike, ref: ArrayLike, labels: ArrayLike, spacing_mm: Sequence[float]
) -> NDArray[np.float64]:
    """Average symmetric surface distance of each label, in mm.

    Args:
        pred, ref, labels, spacing_mm: as :func:`surface_distances_per_class`.

    Returns:
        (K,) float64 mm; NaN where a label is absent from either map.

    Raises:
        ValueError: as :func:`surface_distances_per_class`.
    """
    distances = surface_distances_per_class(pred, ref, labels, spacing_mm)
    return np.array([_assd(d) for d in distances], dtype=np.float64)


def label_metrics(
    pred: ArrayLike,
    ref: ArrayLike,
    labels: ArrayLike,
    spacing_mm: Sequence[float],
    percentile: float = HD_PERCENTILE,
) -> LabelMetrics:
    """Dice, HD95, ASSD and volume difference of each label, sharing the work between them.

    Args:
        pred: predicted label map, (X, Y, Z) (or any number of dimensions), integer or bool.
        ref: reference label map of the same shape.
        labels: (K,) distinct label values to score.
        spacing_mm: voxel size along each array axis in mm.
        percentile: percentile of the Hausdorff distance (95 for HD95).

    Returns:
        The metrics, one entry per label.

    Raises:
        ValueError: as :func:`hausdorff_per_class`.
    """
    _check_percentile(percentile)
    label_ids, pred_idx, ref_idx = _indexed(pred, ref, labels)
    spacing = _spacing(spacing_mm, pred_idx.ndim)
    n_pred, n_ref, n_both = _counts(pred_idx, ref_idx, label_ids.size)
    distances = surface_distances(pred_idx, ref_idx, label_ids.size, spacing)
    return LabelMetrics(
        labels=label_ids,
        dice=_dice(n_pred, n_ref, n_both),
        hd95_mm=np.array([_hausdorff(d, percentile) for d in distances], dtype=np.float64),
        assd_mm=np.array([_assd(d) for d in distances], dtype=np.float64),
        volume_diff_pct=_volume_difference(n_pred, n_ref),
        voxels_pred=n_pred,
        voxels_ref=n_ref,
    )


# --- input checks and label indices ----------------------------------------------------------


def _indexed(
    pred: ArrayLike, ref: ArrayLike, labels: ArrayLike
) -> tuple[NDArray[np.int64], NDArray[np.integer], NDArray[np.integer]]:
    """(label ids, pred as indices 0..K with K = other, ref likewise), cropped and padded.

    The crop is the box of the scored voxels, padded with :data:`PAD_VOX` voxels of "other"
    on every side: counts, surfaces and distances are the same on it as on the whole (a
    voxel on the array's edge still touches "other"), and neighbours up to two voxels away
    never wrap around a row.
    """
    pred_arr, ref_arr = _label_array(pred, "pred"), _label_array(ref, "ref")
    if pred_arr.shape != ref_arr.shape:
        raise ValueError(f"pred and ref differ in shape: {pred_arr.shape} vs {ref_arr.shape}")
    label_ids = _label_ids(labels)
    pred_idx, ref_idx = _label_index(pred_arr, label_ids), _label_index(ref_arr, label_ids)
    # Everything outside the box of the scored voxels is "other": leave it out of all work.
    box = _scored_box(pred_idx, ref_idx, label_ids.size)
    k = label_ids.size
    return label_ids, _pad(pred_idx[box], k), _pad(ref_idx[box], k)


def _label_array(values: ArrayLike, what: str) -> NDArray[np.integer]:
    arr = np.asarray(values)
    if arr.dtype == np.bool_:
        return arr.view(np.uint8)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must hold integer labels, not dtype {arr.dtype}")
    return arr


def _label_ids(labels: ArrayLike) -> NDArray[np.int64]:
    ids = np.asarray(labels)
    if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
        raise ValueError(f"labels must be a 1-D list of integers, not {ids.dtype} {ids.shape}")
    ids = ids.astype(np.int64)
    if np.unique(ids).size != ids.size:
        raise ValueError(f"labels must be distinct, got {ids.tolist()}")
    return ids


def _label_index(arr: NDArray[np.integer], label_ids: NDArray[np.int64]) -> NDArray[np.integer]:
    """Index into ``label_ids`` of each voxel's value; ``K = len(label_ids)`` for other values."""
    k = label_ids.size
    dtype = np.uint8 if k < 255 else np.uint16 if k < 65535 else np.int64
    if arr.size == 0 or k == 0:
        return np.full(arr.shape, k, dtype=dtype)
    lo = min(int(arr.min()), int(label_ids.min()))
    hi = max(int(arr.max()), int(label_ids.max()))
    if hi - lo < _MAX_LUT_SPAN:
        lut = np.full(hi - lo + 1, k, dtype=dtype)
        lut[label_ids - lo] = np.arange(k, dtype=dtype)
        index: NDArray[np.integer] = lut[np.subtract(arr, lo, dtype=np.int64)] if lo else lut[arr]
        return index
    # Label values far apart (e.g. hashes): a sorted search instead of a huge table.
    order = np.argsort(label_ids)
    pos = np.clip(np.searchsorted(label_ids[order], arr), 0, k - 1)
    return np.where(label_ids[order][pos] == arr, order[pos], k).astype(dtype)


def _spacing(spacing_mm: Sequence[float], ndim: int) -> NDArray[np.float64]:
    spacing = np.asarray(spacing_mm, dtype=np.float64).reshape(-1)
    if spacing.size != ndim or not np.all(np.isfinite(spacing) & (spacing > 0)):
        raise ValueError(
            f"spacing_mm must hold {ndim} positive voxel sizes (one per axis), "
            f"not {list(spacing_mm)}"
        )
    return spacing


def _check_percentile(percentile: float) -> None:
    if not 0 <= percentile <= 100:
        raise ValueError(f"percentile must be in 0..100, not {percentile}")


# --- overlap and volume ----------------------------------------------------------------------


def _counts(
    pred_idx: NDArray[np.integer], ref_idx: NDArray[np.integer], k: int
) -> tuple[NDArray[np.int64], NDArray[np.int64], NDArray[np.int64]]:
    """Voxel counts per label: (in pred, in ref, in both); one pass, no per-label masks."""
    n = k + 1
    if n * n <= _MAX_CONFUSION_BINS:
        # One bincount of (pred, ref) pairs: the confusion matrix, "other" last.
        wide = np.uint16 if n * n <= 1 << 16 else np.int64
        joint = np.add(np.multiply(pred_idx, n, dtype=wide), ref_idx, dtype=wide)
        confusion = np.bincount(joint.reshape(-1), minlength=n * n).reshape(n, n)
        n_pred, n_ref = confusion.sum(axis=1)[:k], confusion.sum(axis=0)[:k]
        n_both = np.diagonal(confusion)[:k]
    else:
        n_pred = np.bincount(pred_idx.reshape(-1), minlength=n)[:k]
        n_ref = np.bincount(ref_idx.reshape(-1), minlength=n)[:k]
        n_both = np.bincount(pred_idx[pred_idx == ref_idx], minlength=n)[:k]
    return n_pred.astype(np.int64), n_ref.astype(np.int64), n_both.astype(np.int64)


def _dice(
    n_pred: NDArray[np.int64], n_ref: NDArray[np.int64], n_both: NDArray[np.int64]
) -> NDArray[np.float64]:
    total = n_pred + n_ref
    dice = np.full(total.shape, np.nan)
    present = total > 0
    dice[present] = 2.0 * n_both[present] / total[present]
    return dice


def _volume_difference(n_pred: NDArray[np.int64], n_ref: NDArray[np.int64]) -> NDArray[np.float64]:
    diff = np.full(n_ref.shape, np.nan)
    present = n_ref > 0
    diff[present] = 100.0 * (n_pred[present] - n_ref[present]) / n_ref[present]
    return diff


def _scored_box(
    pred_idx: NDArray[np.integer], ref_idx: NDArray[np.integer], k: int
) -> tuple[slice, ...]:
    """The bounding box of the voxels either map scores (empty slices when there are none)."""
    scored = pred_idx < k
    scored |= ref_idx < k
    box = []
    for axis in range(scored.ndim):
        hit = np.flatnonzero(scored.any(axis=tuple(a for a in range(scored.ndim) if a != axis)))
        if hit.size == 0:
            return tuple(slice(0, 0) for _ in range(scored.ndim))
        box.append(slice(int(hit[0]), int(hit[-1]) + 1))
    return tuple(box)


def _pad(index: NDArray[np.integer], k: int) -> NDArray[np.integer]:
    padded: NDArray[np.integer] = np.pad(index, PAD_VOX, constant_values=k)
    return padded


def _hausdorff(distances: SurfaceDistances | None, percentile: float) -> float:
    if distances is None:
        return math.nan
    forward, backward = distances
    return float(max(np.percentile(forward, percentile), np.percentile(backward, percentile)))


def _assd(distances: SurfaceDistances | None) -> float:
    if distances is None:
        return math.nan
    forward, backward = distances
    return float((forward.sum() + backward.sum()) / (forward.size + backward.size))
