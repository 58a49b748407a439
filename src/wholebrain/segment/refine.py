"""Sharpen the cortical ribbon on the scan's own grid with the scan's own intensities.

The network labels 2 mm voxels; the cortex is a 2-3 mm ribbon, so where its labels come back
to a 1 mm scan its two boundaries are off by about a voxel (the manual labels themselves,
through the 2 mm canvas and back, keep only 0.824 mean Dice: benchmarks/grid_ceiling.py).
The scan, at its full resolution, shows both boundaries. Two rules, on the scan's grid:

1. **No cortex without signal.** A voxel whose intensity is exactly 0 (removed by the skull
   stripping, or air) is no cerebral cortex: its cortical label is cleared. Mindboggle's tight
   masks zero the sulcal CSF, so this alone moves the cortex's outer boundary to where the
   tissue ends. Nor is a voxel darker than half the local cortex mean (``dark``): where a
   masked scan was resampled to another grid (its sulci blurred, no longer exactly 0) or the
   sulcal CSF is dark but not masked, that is more CSF than grey matter.
2. **Grey or white by intensity, 1 mm deep.** In a T1 white matter is brighter than
   cortex. Along the grey/white interface the network drew, a cortical voxel brighter than
   ``mg + fraction * (mw - mg)`` becomes white matter of its hemisphere, and a white-matter
   voxel darker than that becomes the cortical region of its face neighbours; ``mg`` and
   ``mw`` are the local mean intensities of the labelled cortex and of the white matter's
   interior (Gaussian-weighted over ``sigma_mm``, so a bias field the scan still carries moves
   the threshold with it). One millimetre deep (one voxel at 1 mm; on finer grids the rule is
   applied again until it has reached that far: two passes at 0.7 mm): the network's labels
   stay the prior, the image only settles the millimetre it could not resolve.

Chosen on the eight training subjects (labels of the shipped model with segment's defaults,
scored by ``wholebrain evaluate``; benchmarks/refine.py, benchmarks/results/refine.txt): mean
Dice 0.775 without, 0.789 with rule 1's zeros, 0.805 with both rules (``fraction`` 0.4;
0.3-0.5 gave 0.799-0.805); one threshold for the whole scan instead of local ones: 0.799.
``dark`` changes nothing there (0.805 for 0.3-0.6: their sulci are exactly 0); on four of
them resampled to 0.7 mm it takes 0.771 to 0.785 (0.3-0.7: 0.781, 0.784, 0.785, 0.783,
0.775), to 1x1x1.5 mm 0.763 to 0.771. In a prototype on four training subjects, two voxels
deep was worse, and a +-25 % bias field added to the scan left the local threshold's gain
intact and took most of the global one's. Depth in millimetres rather than voxels (session 15,
the calibrated and posed model, sub-01..04 resampled to 0.7 mm): one pass 0.782, two 0.784,
three 0.784; at 1 mm one pass 0.802, two 0.801, three 0.801. The held-out sub-09/10 check the
choice (benchmarks/results/cpu_model_eval.txt, robustness.txt).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from scipy import ndimage

from wholebrain.protocols import Protocol
from wholebrain.resample import bounding_box

__all__ = ["cortex_white_matter_pairs", "refine_cortex"]

FRACTION = 0.4  # of the way from cortex to white matter intensity: the grey/white threshold
SIGMA_MM = 6.0  # how far the local mean intensities reach
DARK = 0.5  # cortex darker than this share of the local cortex mean is CSF or background
DEPTH_MM = 1.0  # how far rule 2 reaches from the network's grey/white interface
_COARSE_MM = 4.0  # the local means are computed on blocks of about this size, then interpolated
_MIN_SHARE = 0.02  # Gaussian-weighted share of a tissue below which its global median is used
_FACES = ndimage.generate_binary_structure(3, 1)
_LEFT_WHITE, _RIGHT_WHITE = 2, 41  # FreeSurfer's cerebral white matter


def cortex_white_matter_pairs(protocol: Protocol) -> dict[int, int]:
    """Cortical label id -> the white matter id of its hemisphere, for the protocol's labels.

    FreeSurfer numbering: the DKT/Desikan regions 1000-1999 (left) and 2000-2999 (right), or
    the whole cortex 3 / 42, with cerebral white matter 2 / 41. Empty when the protocol has no
    cerebral white matter labels (the refinement then does nothing).
    """
    ids = {int(i) for i in protocol.ids}
    if not {_LEFT_WHITE, _RIGHT_WHITE} <= ids:
        return {}
    pairs: dict[int, int] = {}
    for label in ids:
        if label == 3 or 1000 <= label < 2000:
            pairs[label] = _LEFT_WHITE
        elif label == 42 or 2000 <= label < 3000:
            pairs[label] = _RIGHT_WHITE
    return pairs


def refine_cortex(
    labels: np.ndarray,
    image: np.ndarray,
    spacing_mm: tuple[float, float, float],
    pairs: Mapping[int, int],
    *,
    fraction: float = FRACTION,
    sigma_mm: float = SIGMA_MM,
    grey_white: bool = True,
    dark: float = DARK,
    depth_mm: float = DEPTH_MM,
) -> dict[str, int]:
    """Apply the two rules of the module docstring to ``labels``, in place.

    Args:
        labels: (X, Y, Z) label ids on the scan's grid (any integer type).
        image: the scan, same shape (the intensities the labels were made from).
        spacing_mm: the scan's voxel sizes.
        pairs: cortical id -> white matter id of the same hemisphere
            (:func:`cortex_white_matter_pairs`).
        fraction: where between the local cortex (0) and white matter (1) means the
            threshold lies.
        sigma_mm: the reach of the local means.
        grey_white: apply rule 2; False: rule 1 alone (benchmarks/refine.py measures each).
        dark: with rule 2, also clear cortex darker than this fraction of the local cortex
            mean (0: only exact zeros).
        depth_mm: rule 2 runs as many passes (each one voxel deep, reading the labels the
            last one left) as it takes to reach this far along the finest voxel axis; at
            least one.

    Returns:
        Voxels changed per rule: ``no-signal`` and ``dark`` (cortex cleared), ``to-white``,
        ``to-cortex``.
    """
    if labels.shape != image.shape:
        raise ValueError(f"labels {labels.shape} and image {image.shape} differ in shape")
    changed = {"no-signal": 0, "dark": 0, "to-white": 0, "to-cortex": 0}
    if not pairs:
        return changed
    white_of = np.zeros(max(max(pairs), _RIGHT_WHITE) + 1, np.int32)
    for cortical, white in pairs.items():
        white_of[cortical] = white
    cortex = _cortex_mask(labels, white_of)
    no_signal = cortex & (image == 0)
    labels[no_signal] = 0
    changed["no-signal"] = int(no_signal.sum())
    cortex &= ~no_signal
    if not grey_white:
        return changed
    passes = max(1, math.ceil(depth_mm / min(spacing_mm) - 1e-3))
    for _ in range(passes):
        found = _grey_white_pass(
            labels, cortex, white_of, image, spacing_mm, fraction, sigma_mm, dark
        )
        if not any(found.values()):
            break
        for rule, count in found.items():
            changed[rule] += count
        cortex = _cortex_mask(labels, white_of)
    return changed


def _cortex_mask(labels: np.ndarray, white_of: np.ndarray) -> np.ndarray:
    """Where ``labels`` holds a cortical id (one with a white matter in ``white_of``)."""
    known = (labels >= 0) & (labels < white_of.size)
    cortex = np.zeros(labels.shape, bool)
    cortex[known] = white_of[labels[known]] > 0
    return cortex


def _grey_white_pass(
    labels: np.ndarray,
    cortex: np.ndarray,
    white_of: np.ndarray,
    image: np.ndarray,
    spacing_mm: tuple[float, float, float],
    fraction: float,
    sigma_mm: float,
    dark: float,
) -> dict[str, int]:
    """Rule 2 one voxel deep along the interface of ``labels`` (in place): the voxels it
    changed, per rule (``dark``, ``to-white``, ``to-cortex``)."""
    changed = {"dark": 0, "to-white": 0, "to-cortex": 0}
    white = (labels == _LEFT_WHITE) | (labels == _RIGHT_WHITE)
    box = bounding_box(cortex | white, margin=1)
    if box is None or not cortex.any() or not white.any():
        return changed
    here = labels[box]
    scan = np.asarray(image[box], dtype=np.float32)
    cortex, white = cortex[box], white[box]

    to_white = cortex & ndimage.binary_dilation(white, _FACES)
    to_cortex = white & ndimage.binary_dilation(cortex, _FACES) & (scan > 0)
    grey, core = cortex & (scan > 0), ndimage.binary_erosion(white, _FACES, 2)
    if not grey.any() or not core.any():  # nothing to measure either tissue's intensity on
        return changed
    where = np.nonzero(to_white | to_cortex | (grey if dark > 0 else False))
    grey_mean, white_mean = _local_means(
        scan, {"grey": grey, "white": core}, spacing_mm, sigma_mm, where
    )
    threshold = grey_mean + fraction * (white_mean - grey_mean)
    # T1 contrast only: where white matter is not the brighter tissue (another contrast, or
    # labels that do not fit the scan) the intensities cannot tell the two apart.
    t1_contrast = white_mean > grey_mean
    value = scan[where]
    whitens = to_white[where] & (value > threshold) & t1_contrast
    greys = to_cortex[where] & (value < threshold) & t1_contrast
    darks = grey[where] & (value < dark * grey_mean) & t1_contrast
    white_at = tuple(w[whitens] for w in where)
    cortex_at = tuple(w[greys] for w in where)
    dark_at = tuple(w[darks] for w in where)

    # Both rules read the network's labels, not each other's changes.
    cortical_neighbour = _face_neighbour_mode(here, cortex, cortex_at)
    here[white_at] = white_of[here[white_at]]
    here[cortex_at] = cortical_neighbour
    here[dark_at] = 0
    changed["dark"] = int(darks.sum())
    changed["to-white"] = int(whitens.sum())
    changed["to-cortex"] = int(greys.sum())
    return changed


def _local_means(
    scan: np.ndarray,
    masks: Mapping[str, np.ndarray],
    spacing_mm: tuple[float, float, float],
    sigma_mm: float,
    where: tuple[np.ndarray, ...],
) -> list[np.ndarray]:
    """Gaussian-weighted mean intensity of each mask's voxels, read at the voxels ``where``.

    Sums over blocks of ~4 mm, smoothed there and interpolated linearly: the means vary over
    centimetres, and a full-resolution filter of the whole brain costs seconds.
    """
    factors = [max(1, round(_COARSE_MM / s)) for s in spacing_mm]
    sigma_blocks = [sigma_mm / (f * s) for f, s in zip(factors, spacing_mm, strict=True)]
    # Block centres in voxel coordinates: block b covers voxels f*b .. f*b + f - 1.
    coords = np.stack([(w + 0.5) / f - 0.5 for w, f in zip(where, factors, strict=True)]).astype(
        np.float32
    )
    block_voxels = float(np.prod(factors))
    means = []
    for mask in masks.values():
        weight = ndimage.gaussian_filter(_block_sum(mask.astype(np.float32), factors), sigma_blocks)
        total = ndimage.gaussian_filter(_block_sum(np.where(mask, scan, 0), factors), sigma_blocks)
        share = ndimage.map_coordinates(weight, coords, order=1, mode="nearest") / block_voxels
        local = ndimage.map_coordinates(total, coords, order=1, mode="nearest") / np.maximum(
            share * block_voxels, 1e-6
        )
        overall = float(np.median(scan[mask])) if mask.any() else 0.0
        means.append(np.where(share > _MIN_SHARE, local, overall))
    return means


def _block_sum(volume: np.ndarray, factors: list[int]) -> np.ndarray:
    """Sums over ``factors``-sized blocks (the volume zero-padded to whole blocks)."""
    padded = np.pad(volume, [(0, (-n) % f) for n, f in zip(volume.shape, factors, strict=True)])
    x, y, z = (n // f for n, f in zip(padded.shape, factors, strict=True))
    fx, fy, fz = factors
    sums: np.ndarray = padded.reshape(x, fx, y, fy, z, fz).sum(axis=(1, 3, 5), dtype=np.float32)
    return sums


def _face_neighbour_mode(
    labels: np.ndarray, cortex: np.ndarray, where: tuple[np.ndarray, ...]
) -> np.ndarray:
    """For each voxel ``where``, the cortical label most of its 6 face neighbours hold (ties:
    the first in -x, +x, -y, +y, -z, +z order); every such voxel has at least one."""
    neighbours = []
    for axis in range(3):
        for step in (-1, 1):
            index = list(where)
            index[axis] = np.clip(where[axis] + step, 0, labels.shape[axis] - 1)
            found = tuple(index)
            neighbours.append(np.where(cortex[found], labels[found], 0))
    stacked = np.stack(neighbours, axis=1)  # (N, 6); 0 = not cortex
    votes = np.zeros(stacked.shape, np.int8)
    for k in range(6):
        votes[:, k] = ((stacked == stacked[:, k : k + 1]) & (stacked != 0)).sum(axis=1)
    chosen: np.ndarray = stacked[np.arange(len(stacked)), votes.argmax(axis=1)]
    return chosen
