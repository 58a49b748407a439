"""To and from the canvas: a fixed 1 mm RAS grid centred on the head, with the exact inverse.

:func:`conform` reorients a :class:`~wholebrain.io.Volume` to RAS, resamples it to the canvas
(``ConformConfig.canvas_shape_vox`` voxels of ``spacing_mm``), places the canvas on the head and
normalises the intensities. The returned :class:`Conformed` remembers both grids, so
:meth:`Conformed.to_native` brings label or probability maps back onto the input grid (its exact
shape; the input affine applies) and :meth:`Conformed.labels_to_canvas` takes an annotation the
other way.

Canvas placement: the foreground (10% of the way from the background to the 99th percentile,
largest connected component, slabs of at least 4 cm² cross-section) gives the head's extent in
world coordinates. A head that fits the canvas (with ``head_margin_mm`` each side) is centred on
its bounding box; a taller one (whole head with neck) gets the canvas top ``head_margin_mm``
above the top of the head, because the brain is at the top of a head, and L-R/P-A are centred
on the part of the head inside the canvas. At the input's own spacing the canvas is then
snapped to whole input voxels.

Pose (``ConformConfig.brain_pitch_deg``, off by default): the canvas is turned about the
left-right axis, through its centre, so that the long axis of the foreground (its principal
axis in the anterior-superior plane) lies at the given pitch on the canvas: heads scanned
chin-up or chin-down reach the network as it saw its training brains. At most 30 degrees.

Intensities: ``low`` = 0.5th percentile of all voxels (the background) -> 0, ``high`` = 99th
percentile of the foreground -> 1 (white matter lands at ~0.8-0.9), clipped to [0, 1].

Resampling (the shift, axis and general paths, and how label maps are voted) lives in
:mod:`wholebrain.resample`; ``benchmarks/conform.py`` holds the measurements behind it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import numpy as np
from scipy import ndimage

from wholebrain.io import Volume
from wholebrain.resample import (
    LabelInterpolation,
    Reorientation,
    VoxelMap,
    check_map,
    padded_scores,
    plan,
    resample_labels,
    resample_linear,
    sample_classes,
)

__all__ = [
    "ConformConfig",
    "Conformed",
    "conform",
    "conform_shifted",
    "labels_from_canvases",
    "long_axis_pitch_deg",
    "measure_pitch_deg",
    "normalise_intensities",
    "pose_turn_deg",
    "robust_intensity_range",
]

log = logging.getLogger(__name__)

MapKind = Literal["labels", "probabilities"]

_PERCENTILE_SAMPLES = 1_000_000  # voxels sampled (on a regular stride) to estimate percentiles
_HEAD_STEP_MM = 3.0  # resolution of the foreground mask used to place the canvas
_MIN_CROSS_SECTION_MM2 = 400.0  # thinner foreground slabs (ghosts, noise, a nose tip) are no head
_MAX_TURN_DEG = 30.0  # the most ConformConfig.brain_pitch_deg turns a canvas


@dataclass(frozen=True)
class ConformConfig:
    """How inputs are put on the canvas. Stored in every cache and checkpoint."""

    # X (L→R), Y (P→A), Z (I→S) voxels; holds an adult head; each divisible by 32 for the U-Net.
    canvas_shape_vox: tuple[int, int, int] = (192, 224, 224)
    spacing_mm: float = 1.0  # isotropic voxel size of the canvas
    # Label maps: "vote" = argmax of linearly interpolated one-hot maps (keeps thin structures);
    # "nearest" = nearest neighbour (faster, blockier). Intensities are always trilinear.
    label_interpolation: LabelInterpolation = "vote"
    low_percentile: float = 0.5  # percentile of all voxels mapped to 0: the background level
    high_percentile: float = 99.0  # percentile of the foreground mapped to 1: white matter ~0.85
    # Foreground = above low + this x (high percentile of all voxels - low); used for the
    # intensity range and for the head's bounding box.
    foreground_fraction: float = 0.1
    head_margin_mm: float = 6.0  # air kept above the top of a head taller than the canvas
    # Input axes within this (sine of the angle) of the world axes count as axis-aligned: the
    # canvas then takes the input's exact directions, so resampling is separable (and exact
    # array operations at the canvas spacing).
    axis_tolerance: float = 1e-3
    # Pose: turn the canvas about the left-right axis so that the brain's long axis (measured in
    # the anterior-superior plane, degrees, positive = front up) lies at this pitch on it; None:
    # the canvas axes are the world axes. For brain images (segment skull-strips whole heads
    # first): on a whole head the head's own long axis is measured.
    brain_pitch_deg: float | None = None

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.canvas_shape_vox)  # lists from TOML/JSON are fine
        if len(shape) != 3 or min(shape) < 1 or shape != tuple(self.canvas_shape_vox):
            raise ValueError(
                f"canvas_shape_vox must be 3 positive integers, not {self.canvas_shape_vox!r}"
            )
        object.__setattr__(self, "canvas_shape_vox", shape)
        if not self.spacing_mm > 0:
            raise ValueError(f"spacing_mm must be positive, not {self.spacing_mm}")
        if self.label_interpolation not in ("vote", "nearest"):
            raise ValueError(
                f"label_interpolation must be 'vote' or 'nearest', not {self.label_interpolation!r}"
            )
        if not 0 <= self.low_percentile < self.high_percentile <= 100:
            raise ValueError(
                "percentiles must satisfy 0 <= low_percentile < high_percentile <= 100, not "
                f"{self.low_percentile} and {self.high_percentile}"
            )
        if not 0 < self.foreground_fraction < 1:
            raise ValueError(
                f"foreground_fraction must be in (0, 1), not {self.foreground_fraction}"
            )
        if not self.head_margin_mm >= 0:
            raise ValueError(f"head_margin_mm must be >= 0, not {self.head_margin_mm}")
        if not 0 <= self.axis_tolerance <= 0.1:
            raise ValueError(f"axis_tolerance must be in [0, 0.1], not {self.axis_tolerance}")
        if self.brain_pitch_deg is not None and not abs(self.brain_pitch_deg) <= 45:
            raise ValueError(
                f"brain_pitch_deg must be None or in [-45, 45], not {self.brain_pitch_deg}"
            )


@dataclass(frozen=True, eq=False)
class Conformed:
    """An input put on the canvas, and the way back.

    Attributes:
        image: (X, Y, Z) float32 on the canvas, RAS, intensities in [0, 1] (background 0, brain
            white matter ~0.8-0.9).
        canvas_affine: (4, 4) float64 canvas voxel -> world RAS mm.
        native_shape: the input's (X, Y, Z) voxels.
        native_affine: (4, 4) float64 input voxel -> world RAS mm.
        config: the settings used.
        intensity_range: the (low, high) input intensities mapped to 0 and 1.
    """

    image: np.ndarray
    canvas_affine: np.ndarray
    native_shape: tuple[int, int, int]
    native_affine: np.ndarray
    config: ConformConfig
    intensity_range: tuple[float, float]

    def __post_init__(self) -> None:
        # Also built from a cache's JSON (lists): normalise the geometry, refuse a wrong one.
        native_shape = tuple(int(n) for n in self.native_shape)
        if len(native_shape) != 3:
            raise ValueError(f"native_shape must be 3 integers, not {self.native_shape!r}")
        canvas_affine = np.asarray(self.canvas_affine, dtype=np.float64)
        native_affine = np.asarray(self.native_affine, dtype=np.float64)
        if canvas_affine.shape != (4, 4) or native_affine.shape != (4, 4):
            raise ValueError(
                f"affines must be (4, 4), not {canvas_affine.shape} (canvas) and "
                f"{native_affine.shape} (native)"
            )
        if self.image.shape != self.config.canvas_shape_vox:
            raise ValueError(
                f"image must have the canvas shape {self.config.canvas_shape_vox}, "
                f"not {self.image.shape}"
            )
        low, high = self.intensity_range
        object.__setattr__(self, "native_shape", native_shape)
        object.__setattr__(self, "canvas_affine", canvas_affine)
        object.__setattr__(self, "native_affine", native_affine)
        object.__setattr__(self, "intensity_range", (float(low), float(high)))

    def to_native(
        self,
        canvas_array: np.ndarray,
        *,
        kind: MapKind = "labels",
        scores: np.ndarray | None = None,
    ) -> np.ndarray:
        """Bring a label or probability map from the canvas back to the input grid.

        Args:
            canvas_array: ``kind="labels"``: (X, Y, Z) integer labels on the canvas.
                ``kind="probabilities"``: (C, X, Y, Z) float class probabilities, class 0 the
                background.
            kind: which of the two is given.
            scores: labels with ``label_interpolation="vote"`` only: (X, Y, Z, C) class-last
                probabilities of the classes ``0..C-1`` (the labels must be such indices).
                Where the 8 canvas neighbours of a target voxel disagree, each of their labels
                then scores its probability interpolated over the 8 (instead of the share of
                the 8 it holds): the argmax of the interpolated probabilities, among the
                labels that win somewhere nearby, at the cost of 64 gathers per such voxel.

        Returns:
            Labels: ``native_shape`` array of the same dtype and values (``config.label_
            interpolation`` where grids differ; 0 outside the canvas). Probabilities:
            (C, *native_shape) float32, linearly interpolated; outside the canvas class 0 has
            probability 1 and the others 0, so channels still sum to 1.

        Raises:
            ValueError: the array does not have the canvas shape, or the wrong dtype.
        """
        canvas = self.config.canvas_shape_vox
        canvas_array = np.asarray(canvas_array)
        out: np.ndarray
        if scores is not None and kind != "labels":
            raise ValueError("scores go with kind='labels' only")
        if kind == "labels":
            check_map(canvas_array, canvas, "canvas", "to_native", labels=True)
            out = np.empty(self.native_shape, canvas_array.dtype)
            method = self.config.label_interpolation
            flat_scores = None
            if scores is not None:
                flat_scores = padded_scores(canvas_array, scores, method)
            resample_labels(
                canvas_array,
                self._to_canvas.inverse,
                self._reorient.view(out),
                method,
                flat_scores,
            )
        elif kind == "probabilities":
            check_map(canvas_array, canvas, "canvas", "to_native", labels=False)
            fill = np.zeros(canvas_array.shape[0], np.float32)
            fill[0] = 1.0
            out = np.empty((canvas_array.shape[0], *self.native_shape), np.float32)
            target = self._reorient.view(out, lead=1)
            resample_linear(canvas_array, self._to_canvas.inverse, target, fill)
        else:
            raise ValueError(f"kind must be 'labels' or 'probabilities', not {kind!r}")
        return out

    def labels_to_canvas(self, native_labels: np.ndarray) -> np.ndarray:
        """Put a label map on the input grid (e.g. a training annotation) onto the canvas.

        Args:
            native_labels: ``native_shape`` integer labels.

        Returns:
            (X, Y, Z) canvas labels, same dtype and values; 0 where the canvas leaves the input.

        Raises:
            ValueError: the array does not have ``native_shape``, or is not integer.
        """
        native_labels = np.asarray(native_labels)
        check_map(native_labels, self.native_shape, "input", "labels_to_canvas", labels=True)
        out = np.empty(self.config.canvas_shape_vox, native_labels.dtype)
        source = self._reorient.view(native_labels)
        resample_labels(source, self._to_canvas, out, self.config.label_interpolation)
        return out

    @cached_property
    def _plan(self) -> tuple[Reorientation, VoxelMap]:
        return plan(self.native_affine, self.native_shape, self.canvas_affine)

    @property
    def _reorient(self) -> Reorientation:
        return self._plan[0]

    @property
    def _to_canvas(self) -> VoxelMap:
        """Canvas voxel -> (reoriented) input voxel."""
        return self._plan[1]


def conform(
    volume: Volume,
    config: ConformConfig = ConformConfig(),
    *,
    shift_vox: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> Conformed:
    """Put an image on the canvas: RAS, ``config.spacing_mm`` isotropic, centred on the head.

    Args:
        volume: a T1-weighted image, any orientation and voxel size.
        config: canvas size, spacing, normalisation and placement settings.
        shift_vox: move the canvas by this many of its voxels along its axes after placing it
            (e.g. half a voxel: a second canvas whose voxel centres fall between the first's,
            for :func:`labels_from_canvases`).

    Returns:
        The canvas image (float32 in [0, 1]) with both geometries, for the way back.
    """
    return conform_shifted(volume, config, [shift_vox])[0]


def conform_shifted(
    volume: Volume,
    config: ConformConfig,
    shifts_vox: Sequence[tuple[float, float, float]],
) -> list[Conformed]:
    """:func:`conform` on several canvases, each moved by one of ``shifts_vox`` (canvas voxels).

    The intensity levels, the head's centre and the reorientation are found once for all of
    them (they depend on the scan, not on the shift).
    """
    data = np.asarray(volume.data)
    native_affine = np.asarray(volume.affine, dtype=np.float64)
    shape3 = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    low, high, threshold = _intensity_levels(data, config)
    reoriented_affine = Reorientation.from_affine(native_affine, shape3).affine(native_affine)
    centre_mm, head_mm = _head_placement(data, native_affine, threshold, config)
    turn_deg = 0.0
    if config.brain_pitch_deg is not None:
        pitch_deg = long_axis_pitch_deg(head_mm)
        turn_deg = pose_turn_deg(pitch_deg, config.brain_pitch_deg)
        log.debug("conform: long axis pitched %s deg, canvas turned %+.1f deg", pitch_deg, turn_deg)
    placed = _canvas_affine(reoriented_affine, centre_mm, config, turn_deg)
    canvases = []
    for shift_vox in shifts_vox:
        canvas_affine = placed.copy()
        if any(shift_vox):
            canvas_affine[:3, 3] += canvas_affine[:3, :3] @ np.asarray(shift_vox, np.float64)
        reorient, to_canvas = plan(native_affine, shape3, canvas_affine)
        log.debug(
            "conform %s: %s path, intensity range %.4g..%.4g", shape3, to_canvas.kind, low, high
        )
        image = np.empty((1, *config.canvas_shape_vox), np.float32)
        resample_linear(reorient.view(data)[None], to_canvas, image, np.array([low], np.float32))
        canvases.append(
            Conformed(
                image=_normalise_in_place(image[0], low, high),
                canvas_affine=canvas_affine,
                native_shape=shape3,
                native_affine=native_affine,
                config=config,
                intensity_range=(low, high),
            )
        )
    return canvases


def measure_pitch_deg(volume: Volume, config: ConformConfig = ConformConfig()) -> float | None:
    """The pitch of the long axis of the image's foreground, as :func:`conform` measures it for
    ``config.brain_pitch_deg`` (degrees in the world's anterior-superior plane, positive = front
    up; None when it has no long axis). For a skull-stripped brain, the brain's pitch."""
    data = np.asarray(volume.data)
    affine = np.asarray(volume.affine, dtype=np.float64)
    _, _, threshold = _intensity_levels(data, config)
    _, head_mm = _head_placement(data, affine, threshold, config)
    return long_axis_pitch_deg(head_mm)


def labels_from_canvases(
    canvases: Sequence[Conformed], classes: Sequence[np.ndarray], scores: Sequence[np.ndarray]
) -> np.ndarray:
    """Class indices on the input grid from the same scan segmented on several canvases.

    Each canvas's classes go to the input grid with their scores (``to_native``); where the
    canvases then disagree, the class with the largest sum over canvases of its linearly
    interpolated probability wins, among the classes they propose. With canvases offset by
    half a voxel this reads the network's probabilities on a finer grid than any one canvas.

    Args:
        canvases: the scan conformed to each canvas (same input grid).
        classes: per canvas, (X, Y, Z) class indices on it.
        scores: per canvas, (X, Y, Z, C) class-last probabilities on it (same dtype and C).

    Returns:
        ``native_shape`` class indices, the dtype of ``classes[0]``.

    Raises:
        ValueError: no canvas, mismatched lengths or input grids, or what ``to_native`` refuses.
    """
    if not canvases or not len(canvases) == len(classes) == len(scores):
        raise ValueError("give one classes and one scores array per canvas, at least one canvas")
    first = canvases[0]
    for other in canvases[1:]:
        if other.native_shape != first.native_shape or not np.allclose(
            other.native_affine, first.native_affine
        ):
            raise ValueError("the canvases must come from the same input grid")
    natives = [c.to_native(k, scores=p) for c, k, p in zip(canvases, classes, scores, strict=True)]
    labels = natives[0]
    if len(natives) == 1:
        return labels
    proposals = np.stack([n.ravel() for n in natives])
    disagree = np.flatnonzero(np.any(proposals != proposals[0], axis=0))
    if disagree.size == 0:
        return labels
    points = np.array(np.unravel_index(disagree, labels.shape), np.float64)
    candidates = proposals[:, disagree]
    totals = np.zeros(candidates.shape, np.float32)
    for canvas, canvas_scores in zip(canvases, scores, strict=True):
        to_canvas = np.linalg.solve(canvas.canvas_affine, canvas.native_affine)
        for row, candidate in enumerate(candidates):
            totals[row] += sample_classes(canvas_scores, to_canvas, points, candidate)
    chosen = candidates[np.argmax(totals, axis=0), np.arange(disagree.size)]
    labels.ravel()[disagree] = chosen
    return labels


def robust_intensity_range(
    data: np.ndarray, config: ConformConfig = ConformConfig()
) -> tuple[float, float]:
    """The (low, high) intensities that :func:`normalise_intensities` maps to 0 and 1.

    Low is the ``low_percentile`` of all voxels (the background level); high is the
    ``high_percentile`` of the foreground (voxels above ``foreground_fraction`` of the way from
    low to the ``high_percentile`` of all voxels). A few hot voxels move neither.

    Args:
        data: (X, Y, Z) intensities, any real dtype.
        config: the percentiles and the foreground fraction.

    Returns:
        (low, high) in the input's intensity units, high > low.
    """
    low, high, _ = _intensity_levels(data, config)
    return low, high


def normalise_intensities(
    data: np.ndarray,
    config: ConformConfig = ConformConfig(),
    *,
    intensity_range: tuple[float, float] | None = None,
) -> np.ndarray:
    """Map intensities linearly so low -> 0 and high -> 1, clipped to [0, 1].

    Args:
        data: intensities, any shape and real dtype.
        config: percentiles used when ``intensity_range`` is not given.
        intensity_range: (low, high) to use instead of :func:`robust_intensity_range`.

    Returns:
        float32 array of ``data``'s shape, values in [0, 1].
    """
    low, high = robust_intensity_range(data, config) if intensity_range is None else intensity_range
    if not high > low:
        raise ValueError(f"intensity_range must have high > low, not {intensity_range}")
    return _normalise_in_place(np.array(data, dtype=np.float32), low, high)


# --- intensities and canvas placement ------------------------------------------------------


def _sample(data: np.ndarray) -> np.ndarray:
    """About ``_PERCENTILE_SAMPLES`` voxels on a regular stride (deterministic, cheap)."""
    step = max(1, round((data.size / _PERCENTILE_SAMPLES) ** (1 / data.ndim)))
    return np.asarray(data[(slice(None, None, step),) * data.ndim], dtype=np.float32).ravel()


def _intensity_levels(data: np.ndarray, config: ConformConfig) -> tuple[float, float, float]:
    """(low, high, foreground threshold) in input units; see :func:`robust_intensity_range`."""
    sample = _sample(data)
    low, top = (
        float(v) for v in np.percentile(sample, [config.low_percentile, config.high_percentile])
    )
    threshold = low + config.foreground_fraction * (top - low)
    foreground = sample[sample > threshold]
    high = float(np.percentile(foreground, config.high_percentile)) if foreground.size else top
    if not high > low:
        # A constant image: nothing to segment, but keep the pipeline's shapes flowing.
        log.warning("the image has no contrast (robust range %.4g..%.4g); it maps to 0", low, high)
        high = low + 1.0
    return low, high, threshold


def _normalise_in_place(image: np.ndarray, low: float, high: float) -> np.ndarray:
    image -= np.float32(low)
    image *= np.float32(1.0 / (high - low))
    np.clip(image, 0.0, 1.0, out=image)
    return image


def _head_placement(
    data: np.ndarray, affine: np.ndarray, threshold: float, config: ConformConfig
) -> tuple[np.ndarray, np.ndarray]:
    """World point (RAS mm) on which to centre the canvas, and the head's foreground points.

    The foreground (largest connected component above ``threshold``, on a ~3 mm grid) gives the
    head's extent along each world axis, counting only slabs whose foreground cross-section is
    at least ``_MIN_CROSS_SECTION_MM2`` (so ghosting above the head or a nose tip does not count).
    Along I→S, a head that fits (with margins) is centred; a taller one (whole head with neck and
    shoulders) is cut at the bottom: the canvas top sits ``head_margin_mm`` above the top of the
    head, because the brain fills the top of a head. Along L→R and P→A the canvas is centred on
    the foreground inside that I→S range, so shoulders below the canvas do not pull it.

    Returns:
        (the centre, (N, 3) world coordinates of the foreground samples inside that I→S range;
        empty when there is no foreground).
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    steps = np.maximum(1, np.round(_HEAD_STEP_MM / spacing)).astype(int)
    mask = np.asarray(data[:: steps[0], :: steps[1], :: steps[2]]) > threshold
    components, count = ndimage.label(mask)
    if count == 0:
        log.warning("no foreground found; centring the canvas on the field of view")
        centre_vox = (np.array(data.shape) - 1) / 2
        return np.asarray(affine[:3, :3] @ centre_vox + affine[:3, 3]), np.empty((0, 3))
    largest = 1 + int(np.argmax(np.bincount(components.ravel())[1:]))
    points_mm = np.argwhere(components == largest) * steps @ affine[:3, :3].T + affine[:3, 3]
    cell_mm = steps * spacing
    extent_mm = np.array(config.canvas_shape_vox) * config.spacing_mm
    margin = config.head_margin_mm
    bottom, top = _solid_range(points_mm[:, 2], cell_mm)
    if top - bottom + 2 * margin <= extent_mm[2]:
        centre_s = (top + bottom) / 2
    else:
        centre_s = top + margin - extent_mm[2] / 2
    inside = np.abs(points_mm[:, 2] - centre_s) <= extent_mm[2] / 2
    kept = points_mm[inside] if inside.any() else points_mm
    centre = np.array([sum(_solid_range(kept[:, axis], cell_mm)) / 2 for axis in range(3)])
    centre[2] = centre_s
    return centre, kept


def long_axis_pitch_deg(points_mm: np.ndarray) -> float | None:
    """Pitch (degrees, positive = front up) of the long axis of a point cloud in the A-S plane.

    The principal axis of the points' anterior and superior world coordinates, pointed
    forwards; None for fewer than 3 points or no preferred direction (a disc).
    """
    if len(points_mm) < 3:
        return None
    spread = np.cov(np.asarray(points_mm, np.float64)[:, 1:3].T)
    values, vectors = np.linalg.eigh(spread)
    if values[1] <= values[0] * (1 + 1e-6):
        return None
    forward, up = vectors[:, 1] * (1 if vectors[0, 1] >= 0 else -1)
    return float(np.degrees(np.arctan2(up, forward)))


def pose_turn_deg(pitch_deg: float | None, target_deg: float) -> float:
    """How far to turn the canvas about the left-right axis (degrees, positive = its front up)
    so that a long axis pitched ``pitch_deg`` in the world lies at ``target_deg`` on it.

    At most ``_MAX_TURN_DEG`` either way (a pitch measured beyond that is more likely a neck or
    an odd field of view than a head that far tilted); 0 when there is no pitch."""
    if pitch_deg is None:
        return 0.0
    return float(np.clip(pitch_deg - target_deg, -_MAX_TURN_DEG, _MAX_TURN_DEG))


def _solid_range(coords_mm: np.ndarray, cell_mm: np.ndarray) -> tuple[float, float]:
    """Lowest and highest edge of the slabs (perpendicular to one axis) that are solid.

    ``coords_mm`` are the foreground samples' coordinates along that axis; each sample stands
    for a cell of ``cell_mm`` (its sampling steps).
    """
    width = float(cell_mm.max())
    edges = np.arange(coords_mm.min() - width / 2, coords_mm.max() + width, width)
    counts, _ = np.histogram(coords_mm, bins=edges)
    area_mm2 = counts * float(np.prod(cell_mm)) / width
    solid = np.flatnonzero(area_mm2 >= _MIN_CROSS_SECTION_MM2)
    if solid.size == 0:  # a tiny foreground: take all of it
        return float(coords_mm.min()), float(coords_mm.max())
    return float(edges[solid[0]]), float(edges[solid[-1] + 1])


def _canvas_affine(
    reoriented_affine: np.ndarray,
    centre_mm: np.ndarray,
    config: ConformConfig,
    turn_deg: float = 0.0,
) -> np.ndarray:
    """Canvas voxel -> world, centred on ``centre_mm``, turned ``turn_deg`` about L-R.

    Axis-aligned input and no turn: the canvas takes the input's exact axis directions (the
    voxel map is then diagonal); at the canvas spacing it is also snapped to a whole-voxel
    offset of the input (the voxel map is then a shift). Otherwise the canvas axes are the
    world axes turned about the left-right axis by ``turn_deg`` (positive: anterior towards
    superior).
    """
    linear = reoriented_affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    directions = linear / spacing
    turned = abs(turn_deg) > np.degrees(config.axis_tolerance)
    aligned = not turned and np.abs(directions - np.eye(3)).max() <= config.axis_tolerance
    step = config.spacing_mm
    canvas = np.eye(4)
    if aligned:
        canvas[:3, :3] = directions * step
    else:
        angle = np.radians(turn_deg)
        cos, sin = np.cos(angle), np.sin(angle)
        canvas[:3, :3] = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]]) * step
    half = (np.array(config.canvas_shape_vox) - 1) / 2
    canvas[:3, 3] = centre_mm - canvas[:3, :3] @ half
    if aligned and np.abs(spacing - step).max() <= config.axis_tolerance * step:
        corner_vox = np.linalg.solve(linear, canvas[:3, 3] - reoriented_affine[:3, 3])
        shift = np.eye(4)
        shift[:3, 3] = np.round(corner_vox)
        canvas = reoriented_affine @ shift
    return canvas
