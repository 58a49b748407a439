"""Class weights that make the network's structure volumes match the manual labels'.

Why: the shipped network misjudges some structures by the same amount on every scan, the
training scans included (2 mm canvas, step 1100, the 8 training subjects: caudal middle
frontal -33 % / -26 % of the manual volume left / right, rostral middle frontal -31 % / -33 %,
lateral occipital -23 % / -31 %, with scan-to-scan spreads of 6-12 %; the same signs on the
held-out subjects). A bias that holds on the data the network was trained on is not noise a
longer training removes soon; a prior correction does: each class's probability is multiplied
by a weight ``w_k`` (and the probabilities normalised again) before the argmax, which moves
the boundaries between neighbouring structures until the volumes agree.

The weights are fitted on scans with full manual labels (:func:`fit_log_weights`): the
segmenter's own canvases and probabilities (flip TTA as configured, no calibration), the
manual labels put on the same canvases, then a few rounds of ``w_k <- w_k (V_manual /
V_predicted)^rate`` with volumes summed over the scans and over each left/right pair (the
flip TTA treats the two sides alike, so their weights are equal). ``|log w_k| <= BOUND``:
no class is more than e times as likely as the network says. Voxels where one class holds
at least 250/255 of the probability cannot change label under such weights (the runner-up
holds at most 5/255, times e^2 < 250/255) and are counted once, not kept.

The pose comes first: the network segments a brain best in the pose it was trained in (the
shipped step-1100 network on canvases on the world axes, held out: brains pitched -15 degrees
chin down lost 0.028 mean Dice, +15 gained 0.007; on turned canvases 0.773 both ways,
benchmarks/results/robustness.txt), so the mean brain pitch of the calibration scans
(``conform.measure_pitch_deg``, after skull-stripping) is stored too, and the weights are
fitted on canvases turned to it, as ``Segmenter`` then turns every scan's canvases.

Both travel in the checkpoint (``calibration``, see :mod:`wholebrain.train.checkpoint`):
``Segmenter`` applies them unless told not to (``calibrate=False``, ``pose=False``).
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wholebrain.io import atomic_output
from wholebrain.protocols import flip_permutation

__all__ = [
    "BOUND",
    "CalibrationResult",
    "CanvasSample",
    "calibrate_model",
    "fit_log_weights",
    "predicted_counts",
    "sample_canvas",
    "write_calibrated",
]

BOUND = 1.0  # |log w| at most: a class at most e times as (un)likely as the network says
RATE = 0.5  # of the log volume ratio applied per round: halves the error, no overshoot
ROUNDS = 12
_CERTAIN = 250  # of 255: a voxel this sure of one class keeps it under any bounded weights


@dataclass(frozen=True)
class CanvasSample:
    """One canvas of one scan, reduced to what the fit needs.

    Attributes:
        probabilities: (n, K) uint8 probabilities x 255 of the voxels some weights could
            relabel (no class at 250/255 or more).
        certain: (K,) voxels of each class among the others (their label is settled).
        reference: (K,) voxels of each class in the manual labels on the canvas.
    """

    probabilities: np.ndarray
    certain: np.ndarray
    reference: np.ndarray


def sample_canvas(probabilities: np.ndarray, reference: np.ndarray) -> CanvasSample:
    """Reduce a canvas: ``probabilities`` (X, Y, Z, K) uint8 x 255, ``reference`` (X, Y, Z)
    class indices of the manual labels on the same canvas."""
    classes = probabilities.shape[-1]
    flat = probabilities.reshape(-1, classes)
    top = flat.max(axis=1)
    open_ = top < _CERTAIN
    settled = flat[~open_].argmax(axis=1)
    return CanvasSample(
        probabilities=np.ascontiguousarray(flat[open_]),
        certain=np.bincount(settled, minlength=classes),
        reference=np.bincount(reference.ravel().astype(np.int64), minlength=classes),
    )


def predicted_counts(sample: CanvasSample, log_weights: np.ndarray) -> np.ndarray:
    """(K,) voxels of each class after weighting the probabilities by ``exp(log_weights)``."""
    classes = len(log_weights)
    # log(p) + log(w), with p = 0 kept below every real probability (1/255 at least).
    scores = torch.from_numpy(sample.probabilities).float().clamp_min_(0.5).log_()
    scores += torch.from_numpy(np.asarray(log_weights, np.float32))
    labels = scores.argmax(dim=1).numpy()
    return sample.certain + np.bincount(labels, minlength=classes)


def fit_log_weights(
    samples: Sequence[CanvasSample],
    protocol: str,
    *,
    rounds: int = ROUNDS,
    rate: float = RATE,
    bound: float = BOUND,
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Per-class log weights that bring the predicted volumes to the manual ones.

    Args:
        samples: canvases of scans with full manual labels (:func:`sample_canvas`).
        protocol: the full head's protocol (for the left/right pairs).

    Returns:
        (log_weights, volumes): (K,) float32 log weights, 0 for the background and for
        classes no manual label holds; ``volumes`` the voxel counts summed over the samples,
        ``manual``, ``before`` and ``after``.
    """
    if not samples:
        raise ValueError("no canvas to calibrate on")
    twin = flip_permutation(protocol)
    classes = len(twin)
    manual = sum((s.reference for s in samples), np.zeros(classes, np.int64))
    # A structure and its twin share one ratio: their volumes are pooled.
    manual_pair = manual + manual[twin]
    log_weights = np.zeros(classes, np.float32)
    before = _total(samples, log_weights)
    for _ in range(rounds):
        predicted = _total(samples, log_weights)
        predicted_pair = predicted + predicted[twin]
        fitted = manual_pair > 0  # a structure never predicted gets the largest weight
        ratio = np.ones(classes)
        ratio[fitted] = manual_pair[fitted] / np.maximum(predicted_pair[fitted], 1)
        log_weights = np.clip(log_weights + rate * np.log(ratio), -bound, bound)
        log_weights[0] = 0  # the background is the reference level
        log_weights[manual_pair == 0] = 0
        log_weights = log_weights.astype(np.float32)
    after = _total(samples, log_weights)
    return log_weights, {"manual": manual, "before": before, "after": after}


def _total(samples: Sequence[CanvasSample], log_weights: np.ndarray) -> np.ndarray:
    return sum(
        (predicted_counts(s, log_weights) for s in samples), np.zeros(len(log_weights), np.int64)
    )


def write_calibrated(
    source: str | Path,
    target: str | Path,
    log_weights: np.ndarray,
    subjects: Sequence[str],
    *,
    method: str,
    brain_pitch_deg: float | None = None,
    force: bool = False,
) -> Path:
    """A copy of checkpoint ``source`` that carries the calibration (``target``, atomic):
    the class weights and, if given, the brain pitch the canvases are turned to.

    Raises:
        InputError: ``source`` is not a wholebrain checkpoint.
        OutputExistsError: ``target`` exists and ``force`` is False.
    """
    from wholebrain.train.checkpoint import read_checkpoint

    payload = read_checkpoint(source)
    payload["calibration"] = {
        "log_weights": [float(w) for w in log_weights],
        "method": method,
        "subjects": list(subjects),
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if brain_pitch_deg is not None:
        payload["calibration"]["brain_pitch_deg"] = float(brain_pitch_deg)
    target = Path(target)
    with atomic_output(target, force=force) as tmp:
        torch.save(payload, tmp)
    return target


@dataclass(frozen=True)
class CalibrationResult:
    """What :func:`calibrate_model` wrote and fitted."""

    path: Path  # the calibrated checkpoint
    subjects: tuple[str, ...]  # the scans it was fitted on
    names: tuple[str, ...]  # class names of the full head
    log_weights: np.ndarray  # (K,)
    volumes: dict[str, np.ndarray]  # manual / before / after voxel counts on the canvases
    brain_pitch_deg: float | None  # the pose the canvases are turned to; None: not turned
    pitches_deg: tuple[float | None, ...]  # each scan's brain pitch (empty: not measured)


def calibrate_model(
    model: str | Path | None,
    manifest: str | Path,
    output: str | Path,
    *,
    splits: Sequence[str] = ("train",),
    device: str = "auto",
    pose: bool = True,
    force: bool = False,
    progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None,
) -> CalibrationResult:
    """Fit the calibration of ``model`` on the manifest's full annotations in ``splits``.

    Every row whose protocol is the model's full protocol (manual labels of every structure)
    and whose split is one of ``splits`` is segmented as ``wholebrain segment`` would (same
    canvases, flip TTA, skull-stripping; no calibration), and the weights are fitted on all
    their canvases. With ``pose`` (and a model not trained on turned canvases) the scans'
    mean brain pitch is measured first and their canvases are turned to it. The model is
    written again to ``output`` with the weights and the pitch.

    Raises:
        InputError: an unreadable manifest, scan, annotation or checkpoint, or no row to fit on.
        OutputExistsError: ``output`` exists and ``force`` is False.
    """
    from wholebrain.data.cache import load_annotation
    from wholebrain.data.manifest import read_manifest
    from wholebrain.errors import InputError, OutputExistsError
    from wholebrain.io import load_image
    from wholebrain.segment.predict import Segmenter

    output = Path(output)
    if output.exists() and not force:  # before minutes of segmenting, not after
        raise OutputExistsError(output)
    segmenter = Segmenter(model, device=device, pose=False)  # the pose is fitted here
    full = segmenter.info.full_protocol
    rows = [
        row
        for row in read_manifest(manifest)
        if row.annotation is not None and row.protocol == full and row.split in splits
    ]
    if not rows:
        raise InputError(
            manifest,
            f"rows with {full} annotations (every structure) in split {'/'.join(splits)}",
            "none",
            "add the manually labelled scans to the manifest, or name their split with --split",
        )
    pitches: tuple[float | None, ...] = ()
    if pose and segmenter.pose_pitch_deg is None:
        pitches = tuple(
            segmenter.brain_pitch_deg(load_image(row.image))
            for row in (progress(rows) if progress else rows)
        )
        measured = [p for p in pitches if p is not None]
        if measured:
            segmenter.conform_config = replace(
                segmenter.conform_config, brain_pitch_deg=float(np.mean(measured))
            )
    protocol = segmenter.protocol
    samples: list[CanvasSample] = []
    for row in progress(rows) if progress else rows:
        scan = load_image(row.image)
        labels, _ = load_annotation(row, scan)
        for canvas in segmenter.conformed_canvases(scan):
            reference = protocol.to_index(canvas.labels_to_canvas(labels))
            samples.append(sample_canvas(segmenter.canvas_probabilities(canvas), reference))
    log_weights, volumes = fit_log_weights(samples, full)
    subjects = tuple(row.subject for row in rows)
    method = (
        f"volume matching on {segmenter.canvases} canvas(es) per scan, flip TTA "
        f"{'on' if segmenter.tta else 'off'}: {ROUNDS} rounds at rate {RATE}, |log w| <= {BOUND}"
    )
    # A pose the model was trained with belongs to its canvas, not to the calibration.
    pitch = segmenter.pose_pitch_deg if pitches else None
    path = write_calibrated(
        segmenter.info.path,
        output,
        log_weights,
        subjects,
        method=method,
        brain_pitch_deg=pitch,
        force=force,
    )
    return CalibrationResult(path, subjects, protocol.names, log_weights, volumes, pitch, pitches)
