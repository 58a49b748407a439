"""The QC picture of a segmentation: one PNG a user can judge at a glance.

:func:`write_qc_png` draws three orthogonal slices (sagittal, coronal, axial) through the centre
of mass of the labelled brain, in two rows: on top the T1 alone (grey, windowed at the 1st-99.5th
percentile of its nonzero voxels), below the same slices with the label map laid over it in the
protocol's colours (filled at half opacity, outlined opaque, background transparent). The T1
alone comes first because a label map can only be judged against the anatomy it hides; the
outlines show where a structure's boundary lies on that anatomy.

Orientation follows the *neurological* convention, and every panel says so with letters at its
edges (L/R, A/P, S/I), because a left-right flip is the error a reader cannot see otherwise:

- coronal, seen from behind: the subject's left on the image left, superior up;
- axial, seen from above: the subject's left on the image left, anterior up;
- sagittal, seen from the subject's left: anterior on the image left, superior up (as freeview).

The arrays are RAS (axis 0 runs left to right, 1 posterior to anterior, 2 inferior to superior)
on an isotropic 1 mm canvas, so slices are drawn transposed with ``origin="lower"`` and equal
aspect. Each panel is cropped to the head (nonzero T1 or any label) so the brain fills the
picture. Matplotlib is imported inside the function and used through its
object-oriented API only (a :class:`~matplotlib.figure.Figure` on an Agg canvas, never pyplot),
so importing this module stays cheap and drawing needs no display and no global state.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from numpy.typing import NDArray

from wholebrain.io import atomic_output
from wholebrain.protocols import Protocol

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["write_qc_png"]

logger = logging.getLogger(__name__)

_FIGSIZE_IN = (15.0, 10.0)  # with _DPI: a 1500 x 1000 px picture
_DPI = 100
_WINDOW_PERCENTILES = (1.0, 99.5)  # T1 grey window, percentiles of the nonzero voxels
_FILL_ALPHA = 0.5  # opacity of a label's interior: the T1 stays visible below it
_OUTLINE_ALPHA = 1.0  # opacity of a label's boundary pixels: where it ends is unmistakable
_UNKNOWN_RGB = (255, 255, 255)  # colour of ids missing from the protocol
_CROP_MARGIN_VOX = 12  # black border around the head: room for the orientation letters
_TEXT_COLOUR = "white"
_MAX_LISTED_IDS = 10  # how many unknown ids the warning names before "..."


@dataclass(frozen=True)
class _View:
    """One panel: which array axis it cuts across and how its two other axes are drawn."""

    name: str  # "sagittal", "coronal" or "axial"
    axis: int  # array axis the slice is taken across (0 = x, 1 = y, 2 = z)
    flip_horizontal: bool  # draw the first remaining axis decreasing from left to right
    letters: tuple[str, str, str, str]  # orientation letters at the left, right, bottom, top


# Neurological convention (see the module docstring). The remaining axes keep their array
# order: the first runs horizontally, the second vertically (upwards, with origin="lower").
_VIEWS = (
    _View("sagittal", 0, True, ("A", "P", "I", "S")),
    _View("coronal", 1, False, ("L", "R", "I", "S")),
    _View("axial", 2, False, ("L", "R", "P", "A")),
)
_AXIS_NAMES = ("x", "y", "z")


def write_qc_png(
    path: str | Path,
    image: np.ndarray,
    labels: np.ndarray,
    protocol: Protocol,
    *,
    title: str = "",
    force: bool = False,
) -> Path:
    """Write the QC picture of a label map on its T1: three slices, T1 alone and with labels.

    The picture is 1500 x 1000 px (dpi 100), black with white text: the title on top, then a
    row of sagittal, coronal and axial T1 slices through the centre of mass of the labels
    (``labels > 0``; the array centre when there are none), then the same slices with the
    labels overlaid. Orientation is neurological (the subject's left on the image left in the
    coronal and axial panels, anterior on the left in the sagittal panel, superior and anterior
    up) and each panel is lettered at its edges. Ids missing from ``protocol`` are drawn white
    and named in one warning. The file is written atomically.

    Args:
        path: output PNG file.
        image: (X, Y, Z) float T1 on an RAS, 1 mm isotropic grid, intensities ~[0, 1]
            (any range works: the grey window is taken from its own percentiles).
        labels: (X, Y, Z) integer label ids of ``protocol`` (0 = background), same grid.
        protocol: the label protocol giving each id its colour.
        title: text at the top, e.g. ``"sub-01 — wholebrain dkt-aseg, 98 structures, 12.3 s"``.
        force: overwrite an existing file.

    Returns:
        The path written.

    Raises:
        ValueError: ``image`` or ``labels`` is not 3-D, their shapes differ, the grid is empty,
            or ``labels`` does not hold integers.
        OutputExistsError: ``path`` exists and ``force`` is False.
        InputError: ``path`` is a folder or its folder cannot be written.
    """
    _check_arrays(image, labels)
    figure = _build_figure(image, labels, protocol, title=title)
    target = Path(path)
    with atomic_output(target, force=force) as tmp:
        # format= is explicit: the temporary name must not decide the format.
        figure.savefig(tmp, format="png", dpi=_DPI, facecolor=figure.get_facecolor())
    return target


# --- checks ----------------------------------------------------------------------------------


def _check_arrays(image: np.ndarray, labels: np.ndarray) -> None:
    if image.ndim != 3 or labels.ndim != 3:
        raise ValueError(
            f"image and labels must be 3-D (X, Y, Z) arrays, "
            f"found shapes {image.shape} and {labels.shape}"
        )
    if image.shape != labels.shape:
        raise ValueError(
            f"image and labels must share one grid, found shapes {image.shape} and {labels.shape}"
        )
    if image.size == 0:
        raise ValueError(f"image and labels are empty (shape {image.shape})")
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must hold integer ids, found dtype {labels.dtype}")


# --- the figure ------------------------------------------------------------------------------


def _build_figure(
    image: np.ndarray, labels: np.ndarray, protocol: Protocol, *, title: str = ""
) -> Figure:
    """The QC figure on an Agg canvas (separate from writing so tests can find the panels).

    Axes are labelled ``"<row> <view>"`` with row ``t1`` or ``labels`` (e.g. ``"t1 coronal"``).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    _check_arrays(image, labels)
    ids = np.asarray(labels)
    if ids.dtype.kind == "b":
        ids = ids.astype(np.uint8)
    grey_lo, grey_hi = _grey_window(image)
    centre = _label_centre(ids)
    crop = _crop_box(image, ids)
    _warn_unknown_ids(ids, protocol)
    lut_ids = protocol.ids.astype(np.int64)
    lut_rgb = np.array([lab.rgb for lab in protocol.labels], dtype=np.uint8)

    figure = Figure(figsize=_FIGSIZE_IN, dpi=_DPI, facecolor="black")
    FigureCanvasAgg(figure)
    if title:
        figure.suptitle(title, color=_TEXT_COLOUR, fontsize=15, y=0.975)
    rows = (("t1", "T1", 0.50), ("labels", "T1 + labels", 0.075))
    for row_key, row_text, bottom in rows:
        figure.text(
            0.012,
            bottom + 0.2,
            row_text,
            color=_TEXT_COLOUR,
            fontsize=12,
            rotation=90,
            ha="center",
            va="center",
        )
        for column, view in enumerate(_VIEWS):
            ax = figure.add_axes((0.03 + column * 0.325, bottom, 0.31, 0.40))
            ax.set_label(f"{row_key} {view.name}")
            ax.set_facecolor("black")
            ax.set_axis_off()
            grey = _panel(image, view, centre, crop)
            ax.imshow(
                grey,
                cmap="gray",
                vmin=grey_lo,
                vmax=grey_hi,
                origin="lower",
                interpolation="nearest",
                aspect="equal",
            )
            if row_key == "labels":
                overlay = _overlay_rgba(_panel(ids, view, centre, crop), lut_ids, lut_rgb)
                ax.imshow(overlay, origin="lower", interpolation="nearest", aspect="equal")
            else:
                where = f"{_AXIS_NAMES[view.axis]} = {centre[view.axis]}"
                ax.set_title(f"{view.name}  ({where})", color=_TEXT_COLOUR, fontsize=12)
            _letter_edges(ax, view.letters)
    figure.text(
        0.5,
        0.02,
        "neurological convention: subject's left on the image left (coronal, axial); "
        "sagittal seen from the left (anterior on the left)",
        color=_TEXT_COLOUR,
        fontsize=10,
        ha="center",
        va="center",
        alpha=0.8,
    )
    return figure


def _letter_edges(ax: Axes, letters: tuple[str, str, str, str]) -> None:
    """Orientation letters inside the panel at its left, right, bottom and top edges."""
    spots = (
        (0.015, 0.5, "left", "center"),
        (0.985, 0.5, "right", "center"),
        (0.5, 0.015, "center", "bottom"),
        (0.5, 0.985, "center", "top"),
    )
    for letter, (x, y, ha, va) in zip(letters, spots, strict=True):
        ax.text(
            x,
            y,
            letter,
            transform=ax.transAxes,
            ha=ha,
            va=va,
            color=_TEXT_COLOUR,
            fontsize=13,
            fontweight="bold",
        )


# --- slices and colours ----------------------------------------------------------------------


def _grey_window(image: np.ndarray) -> tuple[float, float]:
    """The T1 display range: percentiles of the finite nonzero voxels (0..1 when there are none)."""
    values = image[np.isfinite(image) & (image != 0)]
    if values.size == 0:
        return 0.0, 1.0
    lo, hi = (float(v) for v in np.percentile(values, _WINDOW_PERCENTILES))
    if hi <= lo:  # a constant image: show it mid-grey rather than divide by zero
        return lo - 1.0, lo + 1.0
    return lo, hi


def _label_centre(ids: np.ndarray) -> tuple[int, int, int]:
    """Voxel (x, y, z) nearest the centre of mass of ``ids > 0``; the array centre if none."""
    mask = ids > 0
    total = int(np.count_nonzero(mask))
    if total == 0:
        return (ids.shape[0] // 2, ids.shape[1] // 2, ids.shape[2] // 2)
    centre = []
    for axis in range(3):
        # Projections instead of argwhere: no (N, 3) index array for a 256^3 map.
        counts = mask.sum(axis=tuple(a for a in range(3) if a != axis), dtype=np.int64)
        position = float(np.dot(counts, np.arange(ids.shape[axis]))) / total
        centre.append(min(max(round(position), 0), ids.shape[axis] - 1))
    return (centre[0], centre[1], centre[2])


def _crop_box(image: np.ndarray, ids: np.ndarray) -> tuple[slice, slice, slice]:
    """Per-axis index ranges holding the head (nonzero T1 or a label), plus a margin.

    A conformed T1 is exactly 0 outside the scanned field of view, so its nonzero voxels bound
    the head; a noisy background just keeps the whole canvas.
    """
    head = (ids != 0) | (np.nan_to_num(image) != 0)
    if not head.any():
        return (slice(None), slice(None), slice(None))
    box = []
    for axis in range(3):
        present = np.flatnonzero(head.any(axis=tuple(a for a in range(3) if a != axis)))
        start = max(int(present[0]) - _CROP_MARGIN_VOX, 0)
        stop = min(int(present[-1]) + 1 + _CROP_MARGIN_VOX, head.shape[axis])
        box.append(slice(start, stop))
    return (box[0], box[1], box[2])


def _panel(
    volume: np.ndarray,
    view: _View,
    centre: tuple[int, int, int],
    crop: tuple[slice, slice, slice],
) -> np.ndarray:
    """The slice of ``view`` as drawn with ``origin="lower"``: rows bottom to top, columns left to
    right on the page."""
    index: list[int | slice] = list(crop)
    index[view.axis] = centre[view.axis]
    section = volume[tuple(index)]  # (first remaining axis, second remaining axis)
    shown = section.T  # rows = second axis (vertical), columns = first axis (horizontal)
    return shown[:, ::-1] if view.flip_horizontal else shown


def _overlay_rgba(
    ids: np.ndarray, lut_ids: NDArray[np.int64], lut_rgb: NDArray[np.uint8]
) -> NDArray[np.uint8]:
    """(rows, cols, 4) uint8 colours of a 2-D label slice: fill half opaque, outline opaque.

    ``lut_ids`` is sorted, so ``searchsorted`` maps any id (up to 2035 and beyond) to its row of
    ``lut_rgb`` without a dense table; ids not in ``lut_ids`` get :data:`_UNKNOWN_RGB`.
    """
    flat = ids.astype(np.int64)
    row = np.clip(np.searchsorted(lut_ids, flat), 0, lut_ids.size - 1)
    known = lut_ids[row] == flat
    rgba = np.empty((*ids.shape, 4), dtype=np.uint8)
    rgba[..., :3] = np.where(known[..., None], lut_rgb[row], np.array(_UNKNOWN_RGB, np.uint8))
    # A boundary pixel differs from one of its four neighbours (edge padding: the crop
    # border is no boundary).
    padded = np.pad(flat, 1, mode="edge")
    boundary = (
        (padded[1:-1, 1:-1] != padded[:-2, 1:-1])
        | (padded[1:-1, 1:-1] != padded[2:, 1:-1])
        | (padded[1:-1, 1:-1] != padded[1:-1, :-2])
        | (padded[1:-1, 1:-1] != padded[1:-1, 2:])
    )
    alpha = np.where(boundary, _OUTLINE_ALPHA, _FILL_ALPHA)
    rgba[..., 3] = np.where(flat != 0, np.round(alpha * 255), 0).astype(np.uint8)
    return rgba


def _present_ids(ids: np.ndarray) -> NDArray[np.int64]:
    """Sorted distinct values of ``ids`` (a counting pass when they are small and non-negative)."""
    low, high = int(ids.min()), int(ids.max())
    if low >= 0 and high < 1 << 16:
        # bincount is one pass; np.unique sorts all 16 M voxels of a 256^3 map.
        return np.flatnonzero(np.bincount(ids.ravel().astype(np.intp), minlength=high + 1))
    return np.unique(ids).astype(np.int64)


def _warn_unknown_ids(ids: np.ndarray, protocol: Protocol) -> None:
    unknown = np.setdiff1d(_present_ids(ids), protocol.ids)
    if unknown.size:
        listed = ", ".join(str(i) for i in unknown[:_MAX_LISTED_IDS])
        more = ", ..." if unknown.size > _MAX_LISTED_IDS else ""
        logger.warning(
            "QC picture: %d label id(s) not in protocol %r drawn in white: %s%s",
            unknown.size,
            protocol.name,
            listed,
            more,
        )
