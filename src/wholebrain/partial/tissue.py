"""Automatic tissue classification (CSF / GM / WM) of a T1-weighted scan: :func:`classify_tissue`.

Methods:

* ``"builtin"`` (default): the classical approach of FSL FAST and ANTs Atropos, vectorised:
  brain mask (:mod:`~wholebrain.partial.brainmask`), then on the 1 mm canvas a bias field
  interleaved with EM of a Gaussian mixture with partial-volume classes
  (:mod:`~wholebrain.partial.bias`, :mod:`~wholebrain.partial.mixture`) and a Potts Markov
  random field by mean field (:mod:`~wholebrain.partial.mrf`). Needs numpy, scipy and torch only
  (plus deepbet for whole-head scans).
* ``"atropos"``: ANTs Atropos through antspyx (``pip install wholebrain[ants]``).
* ``"fsl"``: FSL FAST (``fast`` on the PATH).

All three see the same canvas image and brain mask, and their labels come back to the input
grid. Labels follow FSL FAST: 0 background, 1 CSF, 2 GM, 3 WM (the ``tissue`` protocol).
``benchmarks/partial.py`` measures the methods against manual labels.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from wholebrain.conform import ConformConfig, conform
from wholebrain.errors import InputError
from wholebrain.io import Volume
from wholebrain.partial.bias import (
    LOOKUP_BINS,
    BiasConfig,
    bin_centres,
    bin_index,
    estimate_bias,
    upsample_field,
)
from wholebrain.partial.brainmask import canvas_brain_mask
from wholebrain.partial.mrf import mean_field
from wholebrain.resample import bounding_box

__all__ = [
    "METHODS",
    "BuiltinConfig",
    "TissueResult",
    "classify_tissue",
    "segment_canvas",
]

log = logging.getLogger(__name__)

METHODS = ("builtin", "atropos", "fsl")  # the values of classify_tissue's ``method``
STAGES = ("conform", "mask", "bias", "em", "mrf", "native", "total")  # keys of seconds

# The canvas the classifier works on: conform's defaults, but the intensities are scaled by the
# foreground maximum rather than clipped at its 99th percentile, so the top of the white-matter
# peak keeps its shape (clipping piles 1% of the brain into one bin, which EM fits poorly).
CANVAS = ConformConfig(high_percentile=100.0)


@dataclass(frozen=True)
class BuiltinConfig:
    """Settings of the built-in classifier (defaults chosen in ``benchmarks/partial.py``)."""

    bias: BiasConfig = field(default_factory=BiasConfig)  # bias field and its EM rounds
    mrf_beta: float = 0.3  # Potts interaction per neighbour; 0 = no MRF
    mrf_iterations: int = 3  # mean-field updates
    mrf_neighbours: int = 6  # Potts neighbourhood: 6 (faces) or 26 (3x3x3 box)


@dataclass(frozen=True, eq=False)
class TissueResult:
    """What :func:`classify_tissue` returns.

    Attributes:
        labels: input-grid (X, Y, Z) uint8: 0 background, 1 CSF, 2 GM, 3 WM (FSL FAST's order).
        brain_mask: input-grid (X, Y, Z) bool mask the tissues were classified in.
        method: the method used ("builtin", "atropos" or "fsl").
        seconds: wall-clock seconds per stage: "mask", "bias", "em", "mrf" and "total" always;
            also "conform" and "native" (the canvas round trip). External methods report their
            whole run under "em".
    """

    labels: np.ndarray  # (X, Y, Z) uint8 on the input grid
    brain_mask: np.ndarray  # (X, Y, Z) bool on the input grid
    method: str  # "builtin", "atropos" or "fsl"
    seconds: dict[str, float]  # wall-clock seconds per stage


def classify_tissue(
    volume: Volume,
    *,
    method: str = "builtin",
    brain_mask: np.ndarray | None = None,
    seed: int = 0,
) -> TissueResult:
    """Classify a T1-weighted scan into background, CSF, grey and white matter.

    Args:
        volume: a T1-weighted image, any orientation and voxel size, whole head or
            skull-stripped.
        method: "builtin", "atropos" (needs antspyx) or "fsl" (needs FSL's ``fast``).
        brain_mask: (X, Y, Z) on the input grid, non-zero inside the brain; None: computed
            (the foreground of a skull-stripped image, deepbet for a whole-head scan).
        seed: seed of the random parts (Atropos' k-means start; the built-in classifier is
            deterministic).

    Returns:
        Labels and mask on the input grid, the method and the seconds per stage.

    Raises:
        InputError: unknown method, its software missing, a brain mask of another shape, or
            an empty brain mask.
    """
    if method not in METHODS:
        raise InputError(
            volume.name,
            f"a tissue classification method ({', '.join(METHODS)})",
            repr(method),
            "pick one of those",
        )
    runner = _external_runner(method, volume.name)  # fails before any work if software is missing
    seconds = dict.fromkeys(STAGES, 0.0)
    start = time.perf_counter()
    conformed = conform(volume, CANVAS)
    seconds["conform"] = time.perf_counter() - start

    tick = time.perf_counter()
    if brain_mask is None:
        canvas_mask = canvas_brain_mask(volume, conformed)
        native_mask = None
    else:
        native_mask = _check_mask(brain_mask, volume)
        canvas_mask = conformed.labels_to_canvas(native_mask.astype(np.uint8)) > 0
    if not canvas_mask.any():
        raise InputError(
            volume.name,
            "a brain mask with some brain in it",
            "an empty mask",
            "check the mask (or the image, if the mask was computed)",
        )
    seconds["mask"] = time.perf_counter() - tick

    if runner is None:
        canvas_labels = segment_canvas(conformed.image, canvas_mask, BuiltinConfig(), seconds)
    else:
        tick = time.perf_counter()
        canvas_labels = runner(conformed.image, canvas_mask, seed)
        seconds["em"] = time.perf_counter() - tick

    tick = time.perf_counter()
    labels = conformed.to_native(canvas_labels.astype(np.uint8))
    if native_mask is None:
        native_mask = conformed.to_native(canvas_mask.astype(np.uint8)) > 0
    labels[~native_mask] = 0
    seconds["native"] = time.perf_counter() - tick
    seconds["total"] = time.perf_counter() - start
    log.info(
        "%s: tissue (%s) in %.1f s (%s)",
        volume.name,
        method,
        seconds["total"],
        ", ".join(f"{k} {v:.1f}" for k, v in seconds.items() if k != "total"),
    )
    return TissueResult(labels=labels, brain_mask=native_mask, method=method, seconds=seconds)


def segment_canvas(
    image: np.ndarray,
    mask: np.ndarray,
    config: BuiltinConfig = BuiltinConfig(),
    seconds: dict[str, float] | None = None,
) -> np.ndarray:
    """The built-in classifier on an image already on a 1 mm grid (the canvas).

    Args:
        image: (X, Y, Z) float32 intensities, T1-weighted (WM brightest).
        mask: (X, Y, Z) bool brain mask.
        config: bias, mixture and MRF settings.
        seconds: if given, "bias", "em" and "mrf" are added to it (the mixture EM that runs
            inside the bias rounds counts as "em").

    Returns:
        (X, Y, Z) uint8 labels: 0 outside the mask, 1 CSF, 2 GM, 3 WM.
    """
    if not mask.any():
        raise ValueError("segment_canvas needs a non-empty mask")
    times = seconds if seconds is not None else {}
    tick = time.perf_counter()
    box = bounding_box(mask, margin=2)
    assert box is not None  # the mask is not empty (checked above)
    crop_image, crop_mask = image[box], mask[box]
    if config.bias.method == "n4":
        from wholebrain.partial.external import n4_correct

        crop_image = n4_correct(crop_image, crop_mask)
    fit = estimate_bias(crop_image, crop_mask, config.bias)
    log_field = upsample_field(fit.log_field, crop_mask.shape)
    # EM runs inside the bias rounds: its share is reported under "em", the rest under "bias".
    times["bias"] = times.get("bias", 0.0) + time.perf_counter() - tick - fit.em_seconds

    tick = time.perf_counter() - fit.em_seconds
    corrected = crop_image[crop_mask] * np.exp(-log_field[crop_mask]) / fit.scale
    table = fit.mixture.tissue_log_likelihood(bin_centres(LOOKUP_BINS)).astype(np.float32)
    # (3, N): each voxel's row of the table (its intensity to 1/1000 of the WM mean).
    log_likelihood = np.ascontiguousarray(table.T)[:, bin_index(corrected, LOOKUP_BINS)]
    times["em"] = times.get("em", 0.0) + time.perf_counter() - tick

    tick = time.perf_counter()
    posterior = mean_field(
        log_likelihood,
        crop_mask,
        beta=config.mrf_beta,
        iterations=config.mrf_iterations,
        neighbours=config.mrf_neighbours,
    )
    labels = np.zeros(image.shape, np.uint8)
    crop_labels = labels[box]
    crop_labels[crop_mask] = posterior.argmax(axis=0).astype(np.uint8) + 1
    times["mrf"] = times.get("mrf", 0.0) + time.perf_counter() - tick
    return labels


def _check_mask(brain_mask: np.ndarray, volume: Volume) -> np.ndarray:
    mask = np.asarray(brain_mask)
    if mask.shape != volume.shape:
        raise InputError(
            volume.name,
            f"a brain mask on the image's grid ({'x'.join(map(str, volume.shape))} voxels)",
            f"a mask of shape {'x'.join(map(str, mask.shape))}",
            "resample the mask onto the image (nearest neighbour) or leave it out",
        )
    inside: np.ndarray = mask != 0
    return inside


def _external_runner(
    method: str, source: str
) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray] | None:
    """The canvas classifier of an external method (checked to be installed), None for builtin."""
    if method == "builtin":
        return None
    from wholebrain.partial import external

    return external.runner(method, source)
