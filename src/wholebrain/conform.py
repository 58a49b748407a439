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

Intensities: ``low`` = 0.5th percentile of all voxels (the background) -> 0, ``high`` = 99th
percentile of the foreground -> 1 (white matter lands at ~0.8-0.9), clipped to [0, 1].

Three resampling paths, picked from the voxel-to-voxel map (canvas voxel -> input voxel):

* **shift** -- the input is already at the canvas spacing and its axes are a permutation/flip of
  RAS (FreeSurfer LIA 256³, Mindboggle ASL, RAS): transpose, flip and slice/pad. Lossless.
* **axis** -- axis-aligned but another voxel size (0.7 mm, 0.9x0.9x1.5 mm): separable
  interpolation, one axis at a time.
* **general** -- oblique: coordinates for every target voxel, in slabs; intensities and
  probabilities through torch ``grid_sample`` (trilinear), label maps through a numpy engine.

Intensities use linear interpolation. Label maps use ``"vote"`` by default: the label with the
largest trilinear weight among the 8 neighbours, i.e. exactly the argmax of linearly interpolated
one-hot maps, at a cost independent of the number of labels (only voxels whose 8 neighbours
disagree are voted on); against an analytic truth it beats nearest neighbour by 3-5 points of
mean Dice on oblique, anisotropic, 0.7 and 1.5 mm grids. ``benchmarks/conform.py`` holds the
measurements behind these choices.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Literal

import numpy as np
from nibabel import orientations
from scipy import ndimage

from wholebrain.io import Volume

__all__ = [
    "ConformConfig",
    "Conformed",
    "conform",
    "normalise_intensities",
    "robust_intensity_range",
]

log = logging.getLogger(__name__)

LabelInterpolation = Literal["vote", "nearest"]
MapKind = Literal["labels", "probabilities"]

_EXACT_TOL = 1e-6  # a voxel map whose entries are this close to integers is an exact shift
_PERCENTILE_SAMPLES = 1_000_000  # voxels sampled (on a regular stride) to estimate percentiles
_HEAD_STEP_MM = 3.0  # resolution of the foreground mask used to place the canvas
_MIN_CROSS_SECTION_MM2 = 400.0  # thinner foreground slabs (ghosts, noise, a nose tip) are no head
_SLAB_POINTS = 1 << 18  # target voxels per slab, oblique labels (bounds memory, fits cache)
_GRID_POINTS = 1 << 20  # target voxels per grid_sample call (a 12 MB grid)
_io_orientation: Any = orientations.io_orientation  # untyped in nibabel
# Label resampling runs parts in threads (numpy releases the GIL in gathers and arithmetic):
# ~1.9x faster on 2 idle cores (benchmarks/conform.py); more threads help little (memory bound).
_THREADS = min(4, os.cpu_count() or 1)


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
            _check_map(canvas_array, canvas, "canvas", "to_native", labels=True)
            out = np.empty(self.native_shape, canvas_array.dtype)
            method = self.config.label_interpolation
            padded_scores = None
            if scores is not None:
                padded_scores = _padded_scores(canvas_array, scores, method)
            _resample_labels(
                canvas_array,
                self._to_canvas.inverse,
                self._reorient.view(out),
                method,
                padded_scores,
            )
        elif kind == "probabilities":
            _check_map(canvas_array, canvas, "canvas", "to_native", labels=False)
            fill = np.zeros(canvas_array.shape[0], np.float32)
            fill[0] = 1.0
            out = np.empty((canvas_array.shape[0], *self.native_shape), np.float32)
            target = self._reorient.view(out, lead=1)
            _resample_linear(canvas_array, self._to_canvas.inverse, target, fill)
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
        _check_map(native_labels, self.native_shape, "input", "labels_to_canvas", labels=True)
        out = np.empty(self.config.canvas_shape_vox, native_labels.dtype)
        source = self._reorient.view(native_labels)
        _resample_labels(source, self._to_canvas, out, self.config.label_interpolation)
        return out

    @cached_property
    def _plan(self) -> tuple[_Reorientation, _VoxelMap]:
        return _plan(self.native_affine, self.native_shape, self.canvas_affine)

    @property
    def _reorient(self) -> _Reorientation:
        return self._plan[0]

    @property
    def _to_canvas(self) -> _VoxelMap:
        """Canvas voxel -> (reoriented) input voxel."""
        return self._plan[1]


def conform(volume: Volume, config: ConformConfig = ConformConfig()) -> Conformed:
    """Put an image on the canvas: RAS, ``config.spacing_mm`` isotropic, centred on the head.

    Args:
        volume: a T1-weighted image, any orientation and voxel size.
        config: canvas size, spacing, normalisation and placement settings.

    Returns:
        The canvas image (float32 in [0, 1]) with both geometries, for the way back.
    """
    data = np.asarray(volume.data)
    native_affine = np.asarray(volume.affine, dtype=np.float64)
    shape3 = (int(data.shape[0]), int(data.shape[1]), int(data.shape[2]))
    low, high, threshold = _intensity_levels(data, config)
    reoriented_affine = _Reorientation.from_affine(native_affine, shape3).affine(native_affine)
    centre_mm = _head_centre_mm(data, native_affine, threshold, config)
    canvas_affine = _canvas_affine(reoriented_affine, centre_mm, config)
    reorient, to_canvas = _plan(native_affine, shape3, canvas_affine)
    log.debug("conform %s: %s path, intensity range %.4g..%.4g", shape3, to_canvas.kind, low, high)
    image = np.empty((1, *config.canvas_shape_vox), np.float32)
    _resample_linear(reorient.view(data)[None], to_canvas, image, np.array([low], np.float32))
    canvas_image = _normalise_in_place(image[0], low, high)
    return Conformed(
        image=canvas_image,
        canvas_affine=canvas_affine,
        native_shape=shape3,
        native_affine=native_affine,
        config=config,
        intensity_range=(low, high),
    )


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


def _head_centre_mm(
    data: np.ndarray, affine: np.ndarray, threshold: float, config: ConformConfig
) -> np.ndarray:
    """World point (RAS mm) on which to centre the canvas.

    The foreground (largest connected component above ``threshold``, on a ~3 mm grid) gives the
    head's extent along each world axis, counting only slabs whose foreground cross-section is
    at least ``_MIN_CROSS_SECTION_MM2`` (so ghosting above the head or a nose tip does not count).
    Along I→S, a head that fits (with margins) is centred; a taller one (whole head with neck and
    shoulders) is cut at the bottom: the canvas top sits ``head_margin_mm`` above the top of the
    head, because the brain fills the top of a head. Along L→R and P→A the canvas is centred on
    the foreground inside that I→S range, so shoulders below the canvas do not pull it.
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    steps = np.maximum(1, np.round(_HEAD_STEP_MM / spacing)).astype(int)
    mask = np.asarray(data[:: steps[0], :: steps[1], :: steps[2]]) > threshold
    components, count = ndimage.label(mask)
    if count == 0:
        log.warning("no foreground found; centring the canvas on the field of view")
        centre_vox = (np.array(data.shape) - 1) / 2
        return np.asarray(affine[:3, :3] @ centre_vox + affine[:3, 3])
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
    return centre


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
    reoriented_affine: np.ndarray, centre_mm: np.ndarray, config: ConformConfig
) -> np.ndarray:
    """Canvas voxel -> world, centred on ``centre_mm``.

    Axis-aligned input: the canvas takes the input's exact axis directions (the voxel map is
    then diagonal); at the canvas spacing it is also snapped to a whole-voxel offset of the input
    (the voxel map is then a shift). Oblique input: the canvas axes are the world axes.
    """
    linear = reoriented_affine[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    directions = linear / spacing
    aligned = np.abs(directions - np.eye(3)).max() <= config.axis_tolerance
    step = config.spacing_mm
    canvas = np.eye(4)
    canvas[:3, :3] = directions * step if aligned else np.eye(3) * step
    half = (np.array(config.canvas_shape_vox) - 1) / 2
    canvas[:3, 3] = centre_mm - canvas[:3, :3] @ half
    if aligned and np.abs(spacing - step).max() <= config.axis_tolerance * step:
        corner_vox = np.linalg.solve(linear, canvas[:3, 3] - reoriented_affine[:3, 3])
        shift = np.eye(4)
        shift[:3, 3] = np.round(corner_vox)
        canvas = reoriented_affine @ shift
    return canvas


# --- geometry ----------------------------------------------------------------------------------


def _plan(
    native_affine: np.ndarray, native_shape: tuple[int, int, int], canvas_affine: np.ndarray
) -> tuple[_Reorientation, _VoxelMap]:
    """How input arrays are viewed, and the canvas voxel -> viewed input voxel map.

    Axis-aligned inputs are viewed reoriented (transpose/flip), which makes the map a shift or
    diagonal. An oblique map needs per-voxel coordinates anyway, so the input is used as stored
    (copying or writing a transposed view costs ~0.1 s at 256³).
    """
    reorient = _Reorientation.from_affine(native_affine, native_shape)
    voxel_map = _VoxelMap.between(canvas_affine, reorient.affine(native_affine))
    if voxel_map.kind == "general":
        reorient = _Reorientation((0, 1, 2), (False, False, False), native_shape)
        voxel_map = _VoxelMap.between(canvas_affine, native_affine)
    return reorient, voxel_map


@dataclass(frozen=True)
class _Reorientation:
    """Transpose and flips that bring an array's axes to the nearest of R, A, S (exact)."""

    order: tuple[int, int, int]  # input axis that becomes reoriented axis i
    flip: tuple[bool, bool, bool]  # reoriented axis i runs backwards along its input axis
    shape: tuple[int, int, int]  # input voxels (X, Y, Z)

    @classmethod
    def from_affine(cls, affine: np.ndarray, shape: tuple[int, int, int]) -> _Reorientation:
        ornt = _io_orientation(affine)  # row i: (world axis of input axis i, +1 or -1)
        order = [0, 0, 0]
        flip = [False, False, False]
        for axis, (world, sign) in enumerate(ornt):
            order[int(world)] = axis
            flip[int(world)] = bool(sign < 0)
        return cls((order[0], order[1], order[2]), (flip[0], flip[1], flip[2]), shape)

    def affine(self, native_affine: np.ndarray) -> np.ndarray:
        """Reoriented voxel -> world, from the input's voxel -> world."""
        to_native = np.zeros((4, 4))
        to_native[3, 3] = 1.0
        for axis, (source, backwards) in enumerate(zip(self.order, self.flip, strict=True)):
            to_native[source, axis] = -1.0 if backwards else 1.0
            to_native[source, 3] = self.shape[source] - 1 if backwards else 0.0
        return np.asarray(native_affine @ to_native)

    def view(self, array: np.ndarray, lead: int = 0) -> np.ndarray:
        """The reoriented view of an input-grid array (writes go through to ``array``).

        ``lead`` leading axes (channels) are kept in place.
        """
        moved = array.transpose(*range(lead), *(lead + axis for axis in self.order))
        flips = tuple(slice(None, None, -1 if f else 1) for f in self.flip)
        return moved[(slice(None),) * lead + flips]


@dataclass(frozen=True, eq=False)
class _VoxelMap:
    """Target voxel -> source voxel (4x4), classified by how it can be resampled."""

    matrix: np.ndarray

    @classmethod
    def between(cls, target_affine: np.ndarray, source_affine: np.ndarray) -> _VoxelMap:
        return cls(np.linalg.solve(source_affine, target_affine))

    @cached_property
    def inverse(self) -> _VoxelMap:
        return _VoxelMap(np.linalg.inv(self.matrix))

    @cached_property
    def kind(self) -> Literal["shift", "axis", "general"]:
        linear, offset = self.matrix[:3, :3], self.matrix[:3, 3]
        off_diagonal = np.abs(linear - np.diag(np.diag(linear))).max()
        if off_diagonal > _EXACT_TOL:
            return "general"
        unit = np.abs(np.diag(linear) - 1).max() <= _EXACT_TOL
        whole = np.abs(offset - np.round(offset)).max() <= _EXACT_TOL
        return "shift" if unit and whole else "axis"


def _check_map(
    array: np.ndarray, shape: tuple[int, ...], grid: str, method: str, *, labels: bool
) -> None:
    if labels:
        if array.shape != shape:
            raise ValueError(
                f"{method}: labels must have the {grid} shape {shape}, not {array.shape}"
            )
        if array.dtype.kind not in "iub":
            raise ValueError(
                f"{method}: labels must be integers, not {array.dtype}; "
                "cast with .astype(np.int32) after checking they are whole numbers"
            )
    else:
        if array.ndim != 4 or array.shape[1:] != shape or array.shape[0] < 1:
            raise ValueError(
                f"{method}: probabilities must be (C, *{shape}) with C >= 1 classes, "
                f"not {array.shape}"
            )
        if array.dtype.kind != "f":
            raise ValueError(f"{method}: probabilities must be floats, not {array.dtype}")


# --- resampling engines ----------------------------------------------------------------------
# Every engine samples ``source`` at ``voxel_map.matrix @ target_index`` and writes ``out`` (which
# may be a strided view). Linear engines interpolate channels (C, X, Y, Z) with a per-channel
# ``fill`` outside the source; label engines are 3D with fill 0. Within one voxel past the edge,
# values blend linearly into the fill (a one-voxel border of fill, or the equivalent shift).


def _resample_linear(
    source: np.ndarray, voxel_map: _VoxelMap, out: np.ndarray, fill: np.ndarray
) -> None:
    if voxel_map.kind == "shift":
        _shift(source, voxel_map, out, fill[:, None, None, None])
        return
    if voxel_map.kind == "axis":
        out[...] = _separable_linear(_pad(source, fill), voxel_map, out.shape[1:])
    else:
        _general_linear(source, voxel_map, out, fill)


def _resample_labels(
    source: np.ndarray,
    voxel_map: _VoxelMap,
    out: np.ndarray,
    method: LabelInterpolation,
    scores: np.ndarray | None = None,
) -> None:
    """``scores``: None, or the flat class-last probabilities of ``_padded_scores``."""
    if voxel_map.kind == "shift":
        _shift(source, voxel_map, out, 0)
        return
    # Only the target region that can receive a label is computed; the rest is background.
    box = _target_box(source, voxel_map, out.shape)
    out[...] = 0
    if box is None:
        return
    start = np.array([b.start for b in box])
    box_map = _VoxelMap(voxel_map.matrix @ _translation(start))
    region = out[box]
    padded = _pad(source[None], np.zeros(1, source.dtype))[0]
    if voxel_map.kind == "axis":
        region[...] = _separable_labels(padded, box_map, region.shape, method, scores)
    else:
        _general_labels(padded, box_map, region, method, scores)


def _translation(offset: np.ndarray) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = offset
    return matrix


def _pad(source: np.ndarray, fill: np.ndarray) -> np.ndarray:
    """(C, X+2, Y+2, Z+2) C-contiguous copy with a one-voxel border of per-channel ``fill``."""
    channels = source.shape[0]
    padded = np.empty((channels, *(n + 2 for n in source.shape[1:])), fill.dtype)
    padded[...] = fill.reshape(channels, 1, 1, 1)
    padded[:, 1:-1, 1:-1, 1:-1] = source
    return padded


def _padded_scores(
    labels: np.ndarray, scores: np.ndarray, method: LabelInterpolation
) -> np.ndarray:
    """``scores`` (X, Y, Z, C) checked, padded like the labels (border: all class 0), flat."""
    if method != "vote":
        raise ValueError("scores need label_interpolation='vote'")
    if scores.ndim != 4 or scores.shape[:3] != labels.shape:
        raise ValueError(f"scores must be {labels.shape} x classes, not {scores.shape}")
    if labels.size and (labels.min() < 0 or labels.max() >= scores.shape[3]):
        raise ValueError(f"with scores, labels must be class indices 0..{scores.shape[3] - 1}")
    padded = np.zeros((*(n + 2 for n in labels.shape), scores.shape[3]), scores.dtype)
    padded[..., 0] = 1 if scores.dtype.kind == "f" else np.iinfo(scores.dtype).max
    padded[1:-1, 1:-1, 1:-1] = scores
    return padded.ravel()


def _shift(
    source: np.ndarray, voxel_map: _VoxelMap, out: np.ndarray, fill: np.ndarray | int
) -> None:
    """Whole-voxel offset: copy the overlap, fill the rest (lossless)."""
    offset = np.round(voxel_map.matrix[:3, 3]).astype(int)
    out[...] = fill
    lead = out.ndim - 3
    target, src = [slice(None)] * lead, [slice(None)] * lead
    for k, n_out, n_src in zip(offset, out.shape[lead:], source.shape[lead:], strict=True):
        start, stop = max(0, -k), min(n_out, n_src - k)
        if stop <= start:
            return
        target.append(slice(start, stop))
        src.append(slice(start + k, stop + k))
    out[tuple(target)] = source[tuple(src)]


def _target_box(
    source: np.ndarray, voxel_map: _VoxelMap, shape: tuple[int, ...]
) -> tuple[slice, slice, slice] | None:
    """Target voxels whose interpolation neighbourhood can touch a nonzero source voxel."""
    nonzero = source != 0
    lows, highs = [], []
    for axis in range(3):
        hits = np.flatnonzero(nonzero.any(axis=tuple(a for a in range(3) if a != axis)))
        if hits.size == 0:
            return None
        lows.append(hits[0] - 1.0)
        highs.append(hits[-1] + 1.0)
    corners = np.array(np.meshgrid(*zip(lows, highs, strict=True), indexing="ij")).reshape(3, -1)
    inverse = voxel_map.inverse.matrix
    target = inverse[:3, :3] @ corners + inverse[:3, 3:4]
    start = np.maximum(np.floor(target.min(axis=1)).astype(int) - 1, 0)
    stop = np.minimum(np.ceil(target.max(axis=1)).astype(int) + 2, shape)
    if np.any(stop <= start):
        return None
    return slice(start[0], stop[0]), slice(start[1], stop[1]), slice(start[2], stop[2])


def _axis_positions(
    scale: float, offset: float, n_target: int, n_padded: int
) -> tuple[np.ndarray, np.ndarray]:
    """Lower neighbour index (into the padded source) and weight of the upper one, per voxel."""
    position = scale * np.arange(n_target) + offset + 1.0
    np.clip(position, 0.0, n_padded - 1.0, out=position)
    lower = np.minimum(np.floor(position), n_padded - 2).astype(np.intp)
    return lower, (position - lower).astype(np.float32)


def _separable_linear(
    padded: np.ndarray, voxel_map: _VoxelMap, shape: tuple[int, ...]
) -> np.ndarray:
    """Axis-aligned linear interpolation, one axis at a time (the most shrinking axis first)."""
    result = padded
    scale = np.diag(voxel_map.matrix)[:3]
    for axis in sorted(range(3), key=lambda a: shape[a] / padded.shape[1 + a]):
        lower, weight = _axis_positions(
            scale[axis], voxel_map.matrix[axis, 3], shape[axis], padded.shape[1 + axis]
        )
        view = [1, 1, 1, 1]
        view[1 + axis] = -1
        below = np.take(result, lower, axis=1 + axis)
        above = np.take(result, lower + 1, axis=1 + axis)
        above -= below
        above *= weight.reshape(view)
        below += above
        result = below
    return result


def _separable_labels(
    padded: np.ndarray,
    voxel_map: _VoxelMap,
    shape: tuple[int, ...],
    method: LabelInterpolation,
    scores: np.ndarray | None = None,
) -> np.ndarray:
    positions = [
        _axis_positions(voxel_map.matrix[a, a], voxel_map.matrix[a, 3], shape[a], padded.shape[a])
        for a in range(3)
    ]
    if method == "nearest":
        index = [lower + (weight >= 0.5) for lower, weight in positions]
        nearest: np.ndarray = padded[np.ix_(*index)]
        return nearest
    (lx, wx), (ly, wy), (lz, wz) = positions
    labels: np.ndarray = padded[np.ix_(lx, ly, lz)]
    mixed = np.nonzero(~_uniform_cubes(padded)[np.ix_(lx, ly, lz)])
    if mixed[0].size:
        i, j, k = mixed
        base = (lx[i] * padded.shape[1] + ly[j]) * padded.shape[2] + lz[k]
        flat = padded.ravel()

        def vote(part: slice) -> None:
            ii, jj, kk = i[part], j[part], k[part]
            winners = _vote(flat, padded.shape, base[part], wx[ii], wy[jj], wz[kk], scores)
            labels[ii, jj, kk] = winners

        _in_parallel(vote, _chunks(i.size))
    return labels


def _uniform_cubes(padded: np.ndarray) -> np.ndarray:
    """True where the 2x2x2 cube starting at a voxel holds a single label."""
    nx, ny, nz = (n - 1 for n in padded.shape)
    uniform = np.zeros(padded.shape, bool)

    def compare(part: slice) -> None:
        first = padded[:nx, :ny, :nz][part]
        same = uniform[:nx, :ny, :nz][part]
        same[...] = True
        rows = range(nx)[part]
        for dx, dy, dz in _CORNERS[1:]:
            same &= first == padded[rows.start + dx : rows.stop + dx, dy : dy + ny, dz : dz + nz]

    _in_parallel(compare, _chunks(nx, pieces=_THREADS))
    return uniform


def _chunks(size: int, pieces: int | None = None) -> list[slice]:
    """``size`` items split into about ``pieces`` (default 4 per thread) contiguous slices."""
    step = max(1, -(-size // (pieces or 4 * _THREADS)))
    return [slice(start, min(start + step, size)) for start in range(0, size, step)]


def _in_parallel(function: Callable[[slice], None], parts: list[slice]) -> None:
    """Run ``function`` on each part, ``_THREADS`` at a time (numpy releases the GIL)."""
    if len(parts) <= 1 or _THREADS <= 1:
        for part in parts:
            function(part)
        return
    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(function, parts))


_CORNERS = [(dx, dy, dz) for dx in (0, 1) for dy in (0, 1) for dz in (0, 1)]


def _vote(
    flat: np.ndarray,
    shape: tuple[int, ...],
    base: np.ndarray,
    fx: np.ndarray,
    fy: np.ndarray,
    fz: np.ndarray,
    probabilities: np.ndarray | None = None,
) -> np.ndarray:
    """Label with the largest summed trilinear weight among the 8 neighbours of each point.

    Equals argmax over labels of the linearly interpolated one-hot maps (ties: lowest corner).
    With ``probabilities`` (flat class-last, ``_padded_scores``): the argmax, over the labels
    of the 8 neighbours, of their linearly interpolated probabilities.
    """
    stride_x, stride_y = shape[1] * shape[2], shape[2]
    weights, labels, corners = [], [], []
    for dx, dy, dz in _CORNERS:
        weights.append((fx if dx else 1 - fx) * (fy if dy else 1 - fy) * (fz if dz else 1 - fz))
        corners.append(base + (dx * stride_x + dy * stride_y + dz))
        labels.append(flat[corners[-1]])
    if probabilities is not None:
        classes = probabilities.size // flat.size
        totals = []
        for candidate in labels:
            total = np.zeros(base.shape, np.float32)
            for weight, corner in zip(weights, corners, strict=True):
                total += weight * probabilities[corner * classes + candidate]
            totals.append(total)
        chosen = np.argmax(np.stack(totals), axis=0)
        voted: np.ndarray = np.take_along_axis(np.stack(labels), chosen[None], axis=0)[0]
        return voted
    scores = [w.copy() for w in weights]
    for p in range(8):
        for q in range(p + 1, 8):
            same = labels[p] == labels[q]
            scores[p] += np.where(same, weights[q], 0)
            scores[q] += np.where(same, weights[p], 0)
    best = np.argmax(np.stack(scores), axis=0)
    winners: np.ndarray = np.take_along_axis(np.stack(labels), best[None], axis=0)[0]
    return winners


def _general_linear(
    source: np.ndarray, voxel_map: _VoxelMap, out: np.ndarray, fill: np.ndarray
) -> None:
    """Any affine map, trilinear: torch ``grid_sample`` on slabs of target rows.

    ``source`` is (C, X, Y, Z). Sampling ``source - fill`` with zero padding and adding ``fill``
    back blends into the fill past the edge exactly as the padded engines do, and lets
    grid_sample skip points outside (1.6x faster than its border mode). Chosen over scipy and a
    numpy engine by measurement (benchmarks/conform.py): one fused pass per output voxel.
    """
    import torch  # here: importing wholebrain.conform stays light
    from torch.nn import functional

    channels = source.shape[0]
    offsets = fill.astype(np.float32).reshape(channels, 1, 1, 1)
    shifted = torch.from_numpy(np.subtract(source, offsets, dtype=np.float32))[None]
    spatial = np.array(source.shape[1:])
    target_shape = out.shape[1:]
    # grid_sample takes coordinates in [-1, 1] (align_corners: -1/1 = first/last voxel centre),
    # last axis ordered (z, y, x).
    scale = 2.0 / np.maximum(spatial - 1, 1)
    linear = (voxel_map.matrix[:3, :3] * scale[:, None]).astype(np.float32)
    offset = (voxel_map.matrix[:3, 3] * scale - 1.0).astype(np.float32)
    j = np.arange(target_shape[1], dtype=np.float32)
    k = np.arange(target_shape[2], dtype=np.float32)
    in_plane = linear[:, 1, None, None] * j[:, None] + linear[:, 2, None, None] * k  # (3, Y, Z)
    step = max(1, _GRID_POINTS // (target_shape[1] * target_shape[2]))
    for first in range(0, target_shape[0], step):
        last = min(first + step, target_shape[0])
        rows = offset[:, None] + linear[:, 0, None] * np.arange(first, last, dtype=np.float32)
        grid = np.empty((last - first, *target_shape[1:], 3), np.float32)
        for axis in range(3):
            np.add(rows[axis][:, None, None], in_plane[axis], out=grid[..., 2 - axis])
        sampled = functional.grid_sample(
            shifted,
            torch.from_numpy(grid)[None],
            mode="bilinear",
            padding_mode="zeros",
            align_corners=True,
        )
        np.add(sampled[0].numpy(), offsets, out=out[:, first:last])


def _general_labels(
    padded: np.ndarray,
    voxel_map: _VoxelMap,
    out: np.ndarray,
    method: LabelInterpolation,
    scores: np.ndarray | None = None,
) -> None:
    """Any affine map, labels: coordinates per target voxel, computed and used slab by slab."""
    spatial = padded.shape
    target_shape = out.shape
    matrix = voxel_map.matrix.astype(np.float32)
    shift = matrix[:3, 3] + 1.0  # into the padded source
    j = np.arange(target_shape[1], dtype=np.float32)
    k = np.arange(target_shape[2], dtype=np.float32)
    in_plane = matrix[:3, 1, None, None] * j[:, None] + matrix[:3, 2, None, None] * k  # (3, Y, Z)
    upper = np.array(spatial, np.float32)[:, None] - 1.0
    highest_lower = np.array(spatial, np.intp)[:, None] - 2
    strides = (spatial[1] * spatial[2], spatial[2])
    uniform = _uniform_cubes(padded).ravel() if method == "vote" else None
    flat = padded.ravel()
    step = max(1, _SLAB_POINTS // (target_shape[1] * target_shape[2]))

    def run(part: slice) -> None:
        first, last = part.start, min(part.stop, target_shape[0])
        i = np.arange(first, last, dtype=np.float32)
        rows = shift[:, None] + matrix[:3, 0, None] * i  # (3, slab)
        points = (rows[:, :, None, None] + in_plane[:, None]).reshape(3, -1)
        np.clip(points, 0.0, upper, out=points)
        if uniform is None:  # nearest
            index = (points + 0.5).astype(np.intp)
            base = index[0] * strides[0] + index[1] * strides[1] + index[2]
            out[first:last] = flat[base].reshape(last - first, *target_shape[1:])
            return
        lower = np.minimum(points.astype(np.intp), highest_lower)
        base = lower[0] * strides[0] + lower[1] * strides[1] + lower[2]
        labels = flat[base]
        mixed = np.flatnonzero(~uniform[base])
        if mixed.size:
            fx, fy, fz = points[:, mixed] - lower[:, mixed].astype(np.float32)
            labels[mixed] = _vote(flat, spatial, base[mixed], fx, fy, fz, scores)
        out[first:last] = labels.reshape(last - first, *target_shape[1:])

    _in_parallel(run, [slice(first, first + step) for first in range(0, target_shape[0], step)])
