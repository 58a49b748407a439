"""Describing one file for ``wholebrain info``: :class:`ImageReport` and :func:`inspect`.

Applies the input rules of :mod:`wholebrain.io.load` without raising, collects header facts
and value statistics, and guesses whether an image is skull-stripped.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from wholebrain.errors import InputError
from wholebrain.io.load import (
    _check_geometry,
    _form_warnings,
    _open,
    _read_image_data,
    _read_label_data,
)
from wholebrain.io.paths import _COMPRESSED_SUFFIXES, _image_suffix
from wholebrain.io.volume import _num, _orientation, _spacing_mm

# --- the skull-stripping guess (see _guess_skull_stripped) ---------------------------------
MIN_BACKGROUND_FRACTION = 0.10  # share of voxels exactly equal to the border value
FOREGROUND_FRACTION = 0.10  # foreground = above background + this x (99th percentile - background)
BRAIN_VOLUME_L = (0.8, 2.2)  # a skull-stripped adult brain (with a loose or tight mask), litres
MIN_SHARP_EDGE_FRACTION = 0.5  # share of the foreground surface meeting the background directly

_XFORM_NAMES = {0: "unknown", 1: "scanner", 2: "aligned", 3: "talairach", 4: "mni", 5: "template"}


@dataclass(frozen=True)
class ImageReport:
    """What :func:`inspect` found in one file; fields are None where it could not tell."""

    path: Path  # the file inspected
    verdict: str  # "ok", or the InputError message that loading it raises
    file_format: str | None = None  # e.g. "NIfTI-1, gzip-compressed" or "MGH, gzip-compressed"
    shape: tuple[int, ...] | None = None  # as stored, including a 4th+ dimension
    voxel_size_mm: tuple[float, ...] | None = None  # along the three voxel axes, from the affine
    orientation: str | None = None  # axis codes of the affine, e.g. "LIA"
    sform_code: int | None = None  # NIfTI sform code; None for MGH (no sform/qform)
    qform_code: int | None = None  # NIfTI qform code; None for MGH
    forms_agree: bool | None = None  # sform and qform give one grid; None unless both set
    dtype: str | None = None  # on-disk data type
    intensity_min: float | None = None  # smallest value (after the header's scaling)
    intensity_max: float | None = None  # largest value
    robust_range: tuple[float, float] | None = None  # 1st and 99th percentiles (images only)
    n_labels: int | None = None  # number of distinct values (label maps only)
    looks_skull_stripped: bool | None = None  # the guess of _guess_skull_stripped
    skull_strip_reason: str = ""  # one phrase backing that guess
    warnings: tuple[str, ...] = ()  # problems that do not stop loading (sform/qform)
    as_labels: bool = False  # checked as a label map rather than an image
    debug_traceback: str = field(default="", repr=False, compare=False)  # for --debug

    @property
    def ok(self) -> bool:
        """Whether the file passes every input rule."""
        return self.verdict == "ok"

    def to_text(self) -> str:
        """A few aligned lines for a terminal, starting with the file name."""
        rows: list[tuple[str, str]] = []
        if self.file_format is not None:
            rows.append(("format", self.file_format))
        if self.shape is not None:
            rows.append(("shape", " x ".join(str(n) for n in self.shape)))
        if self.voxel_size_mm is not None:
            rows.append(("voxel size", " x ".join(_num(s) for s in self.voxel_size_mm) + " mm"))
        if self.orientation is not None:
            rows.append(("orientation", self.orientation))
        if self.file_format is not None:
            rows.append(("sform / qform", self._forms_text()))
        if self.dtype is not None:
            rows.append(("data type", self.dtype))
        if self.intensity_min is not None and self.intensity_max is not None:
            values = f"min {_num(self.intensity_min)}, max {_num(self.intensity_max)}"
            if self.robust_range is not None:
                low, high = self.robust_range
                values += f", robust range {_num(low)} to {_num(high)} (1st-99th percentile)"
            if self.n_labels is not None:
                values += f", {self.n_labels} distinct labels"
            rows.append(("values", values))
        if not self.as_labels and (self.looks_skull_stripped is not None or self.ok):
            answer = {True: "yes", False: "no", None: "cannot tell"}[self.looks_skull_stripped]
            rows.append(("skull-stripped", f"{answer}: {self.skull_strip_reason}"))
        rows.extend(("warning", text) for text in self.warnings)
        rows.append(("verdict", self.verdict))
        width = max(len(key) for key, _ in rows)
        return "\n".join([str(self.path)] + [f"  {k.ljust(width)}  {v}" for k, v in rows])

    def _forms_text(self) -> str:
        if self.sform_code is None and self.qform_code is None:
            return "none (MGH format: one vox2ras matrix)"
        text = f"{_form_name(self.sform_code)} / {_form_name(self.qform_code)}"
        if self.forms_agree is False:
            text += " (they DISAGREE: nibabel uses the sform)"
        return text


def inspect(path: str | Path, *, as_labels: bool = False) -> ImageReport:
    """Describe a file and give the verdict of the input rules, without raising on bad input.

    Args:
        path: the file to look at.
        as_labels: apply the label-map rules (as :func:`load_labels`) instead of the
            image rules (as :func:`load_image`).

    Returns:
        The report; its ``verdict`` is "ok" or the InputError message.
    """
    source = Path(path)
    info: dict[str, Any] = {"path": source, "as_labels": as_labels}
    try:
        source, img = _open(source)
    except InputError as error:
        return ImageReport(verdict=str(error), debug_traceback=traceback.format_exc(), **info)
    info.update(_header_facts(img, source))
    try:
        shape3 = _check_geometry(img, source)
        if as_labels:
            data = _read_label_data(img, source, shape3)
            info.update(_label_stats(data))
        else:
            data = _read_image_data(img, source, shape3)
            info.update(_image_stats(data))
            voxel_mm3 = float(abs(np.linalg.det(img.affine[:3, :3])))
            stripped, reason = _guess_skull_stripped(data, voxel_mm3)
            info.update(looks_skull_stripped=stripped, skull_strip_reason=reason)
    except InputError as error:
        return ImageReport(verdict=str(error), debug_traceback=traceback.format_exc(), **info)
    return ImageReport(verdict="ok", **info)


# --- header facts and value statistics -----------------------------------------------------


def _header_facts(img: Any, source: Path) -> dict[str, Any]:
    header = img.header
    suffix = _image_suffix(source)
    compressed = ", gzip-compressed" if suffix in _COMPRESSED_SUFFIXES else ""
    if isinstance(header, nib.Nifti2Header):
        file_format = "NIfTI-2" + compressed
    elif isinstance(header, nib.Nifti1Header):
        file_format = "NIfTI-1" + compressed
    else:
        file_format = "MGH" + compressed
    facts: dict[str, Any] = {
        "file_format": file_format,
        "shape": tuple(int(n) for n in img.shape),
        "dtype": str(np.dtype(img.get_data_dtype()).newbyteorder("=")),
        "warnings": tuple(_form_warnings(img, source)),
    }
    affine = np.asarray(img.affine, dtype=np.float64)
    if np.all(np.isfinite(affine)):
        facts["voxel_size_mm"] = tuple(round(s, 6) for s in _spacing_mm(affine))
        facts["orientation"] = _orientation(affine, default="unknown (singular affine)")
    if isinstance(header, nib.Nifti1Header):
        facts["sform_code"] = int(header["sform_code"])
        facts["qform_code"] = int(header["qform_code"])
        if facts["sform_code"] > 0 and facts["qform_code"] > 0:
            facts["forms_agree"] = not _form_warnings(img, source)
    return facts


def _image_stats(data: np.ndarray) -> dict[str, Any]:
    # Percentiles of every 8th voxel: a 256³ image still gives 2M samples, and selection on
    # 16M values full of ties takes half a second.
    sample = data if data.size <= 2**21 else data[::2, ::2, ::2]
    low, high = np.percentile(sample, [1.0, 99.0])
    return {
        "intensity_min": float(data.min()),
        "intensity_max": float(data.max()),
        "robust_range": (float(low), float(high)),
    }


def _label_stats(data: np.ndarray) -> dict[str, Any]:
    low, high = int(data.min()), int(data.max())
    if high - low < 10_000_000:
        # bincount is linear time; np.unique sorts 16M voxels.
        n_labels = int(np.count_nonzero(np.bincount((data - low).ravel())))
    else:
        n_labels = len(np.unique(data))
    return {"intensity_min": float(low), "intensity_max": float(high), "n_labels": n_labels}


# --- the skull-stripping guess ---------------------------------------------------------------


def _guess_skull_stripped(data: np.ndarray, voxel_mm3: float) -> tuple[bool | None, str]:
    """Guess whether an image shows only the brain (skull-stripped) or the whole head.

    A skull-stripped image is a brain-sized foreground set directly against a background of
    one exact value (what the masking wrote); a whole-head scan has far more tissue than a
    brain, and its background is either noise or reached through dim partial-volume voxels.

    Args:
        data: (X, Y, Z) float32 image.
        voxel_mm3: volume of one voxel in mm³.

    Returns:
        (True/False, or None when the clues disagree, and the reason as one phrase).
    """
    border = np.concatenate(
        [data[[0, -1]].ravel(), data[:, [0, -1]].ravel(), data[:, :, [0, -1]].ravel()]
    )
    background = float(np.median(border))
    is_background = data == background
    background_share = float(np.count_nonzero(is_background)) / data.size
    if background_share < MIN_BACKGROUND_FRACTION:
        return False, (
            f"no constant background (only {background_share:.0%} of voxels equal the border "
            f"value {_num(background)}), as in a whole-head scan"
        )
    sample = data[::2, ::2, ::2]  # the 99th percentile of an eighth is as good and 8x faster
    brighter = sample[sample > background]
    if brighter.size == 0:
        return None, "nothing is brighter than the background"
    high = float(np.percentile(brighter, 99))
    foreground = data > background + FOREGROUND_FRACTION * (high - background)
    litres = float(np.count_nonzero(foreground)) * voxel_mm3 / 1e6
    low_l, high_l = BRAIN_VOLUME_L
    if litres > high_l:
        return False, (
            f"the foreground ({litres:.2f} L) is larger than a brain "
            f"({_num(low_l)}-{_num(high_l)} L): the head is still there"
        )
    if litres < low_l:
        return None, (
            f"the foreground ({litres:.2f} L) is smaller than an adult brain "
            f"({_num(low_l)}-{_num(high_l)} L): a child, partial coverage or a mask?"
        )
    sharp = _edge_share(foreground, is_background)
    if sharp >= MIN_SHARP_EDGE_FRACTION:
        return True, (
            f"a brain-sized foreground ({litres:.2f} L) set directly against a constant "
            f"background ({background_share:.0%} of voxels equal {_num(background)})"
        )
    return None, (
        f"a brain-sized foreground ({litres:.2f} L), but only {sharp:.0%} of its surface "
        "meets the constant background directly: a resampled skull-stripped image or a small head?"
    )


def _edge_share(foreground: np.ndarray, background: np.ndarray) -> float:
    """Share of the foreground's surface (voxel faces) whose outer neighbour is background."""
    faces = 0
    on_background = 0
    for axis in range(3):
        fg = np.moveaxis(foreground, axis, 0)
        bg = np.moveaxis(background, axis, 0)
        for inner, outer_fg, outer_bg in ((fg[:-1], fg[1:], bg[1:]), (fg[1:], fg[:-1], bg[:-1])):
            leaving = inner & ~outer_fg
            faces += int(np.count_nonzero(leaving))
            on_background += int(np.count_nonzero(leaving & outer_bg))
    return on_background / faces if faces else 0.0


def _form_name(code: int | None) -> str:
    if code is None:
        return "none"
    return f"{code} ({_XFORM_NAMES.get(code, 'invalid')})"
