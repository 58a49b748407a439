"""Opening NIfTI/MGH files and every input rule: :func:`load_image` and :func:`load_labels`.

Everything that can be wrong with a user's input file (missing, empty, text, wrong suffix,
damaged, not 3D, broken or implausible geometry, non-finite, constant or non-integer values)
is found here and raised as an :class:`~wholebrain.errors.InputError`; sform/qform problems
that do not stop loading are logged as warnings.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from wholebrain.errors import InputError
from wholebrain.io.paths import (
    _COMPRESSED_SUFFIXES,
    _describe_missing,
    _describe_suffix,
    _image_suffix,
    _one_line,
    _suffix_list,
)
from wholebrain.io.volume import (
    GRID_TOL_LINEAR,
    GRID_TOL_MM,
    Volume,
    _affine_difference,
    _num,
    _orientation,
    _spacing_mm,
    check_same_grid,
)

log = logging.getLogger(__name__)

# --- thresholds of the input rules ---------------------------------------------------------
MIN_SPACING_MM = 0.2  # smaller voxels mean a wrong unit (µm) in the header, not a real MRI
MAX_SPACING_MM = 6.0  # larger voxels cannot resolve brain structures
MIN_EXTENT_MM = 32.0  # field of view along every axis; less is a slab, localizer or crop

_GZIP_MAGIC = b"\x1f\x8b"
_INT32 = np.iinfo(np.int32)


# --- loading ---------------------------------------------------------------------------------


def load_image(path: str | Path) -> Volume:
    """Load a T1-weighted intensity image, checking every input rule.

    Args:
        path: a ``.nii``, ``.nii.gz``, ``.mgz`` or ``.mgh`` file holding one 3D volume (a 4D
            file with exactly one volume is accepted and squeezed).

    Returns:
        The volume; ``data`` is float32 (X, Y, Z) with the header's scaling applied.

    Raises:
        InputError: the file is missing, empty, not an image, not 3D, has non-finite or
            constant values, or a broken/implausible geometry (see the module constants).
    """
    source, img = _open(path)
    shape3 = _check_geometry(img, source)
    data = _read_image_data(img, source, shape3)
    _log_warnings(_form_warnings(img, source))
    return Volume(data, img.affine, img.header, source)


def load_labels(path: str | Path, like: Volume | None = None) -> Volume:
    """Load a label map (segmentation), checking the geometry rules and integer values.

    Args:
        path: a NIfTI/MGH file of integer labels (stored as integers, or as floats that are
            all whole numbers).
        like: if given, the label map must lie on this volume's grid (same shape, affine
            within ``GRID_TOL_MM`` / ``GRID_TOL_LINEAR``).

    Returns:
        The label map; ``data`` is int32 (X, Y, Z).

    Raises:
        InputError: as :func:`load_image` for the file and geometry, plus non-integer or NaN
            values, values beyond int32, and a grid different from ``like``'s.
    """
    source, img = _open(path)
    shape3 = _check_geometry(img, source)
    data = _read_label_data(img, source, shape3)
    _log_warnings(_form_warnings(img, source))
    labels = Volume(data, img.affine, img.header, source)
    if like is not None:
        check_same_grid(like, labels)
    return labels


# --- opening a file: everything before the data ---------------------------------------------


def _open(path: str | Path) -> tuple[Path, Any]:
    """Check the file itself and read its header; returns (path, nibabel image)."""
    source = Path(path)
    if not source.exists():
        raise InputError(source, "an image file", _describe_missing(source), "check the path")
    if source.is_dir():
        raise InputError(
            source,
            f"an image file ({_suffix_list()})",
            "a folder",
            "give the image file inside it (convert DICOM folders with dcm2niix first)",
        )
    suffix = _image_suffix(source)
    if suffix is None:
        raise InputError(
            source,
            f"a NIfTI or MGH image ({_suffix_list()})",
            _describe_suffix(source),
            "convert it to NIfTI first (dcm2niix for DICOM, mri_convert or nibabel otherwise)",
        )
    try:
        with open(source, "rb") as stream:
            head = stream.read(256)
    except OSError as error:
        raise InputError(
            source, "a readable file", _one_line(error), "check its permissions"
        ) from None
    if not head:
        raise InputError(
            source,
            "an image",
            "an empty file (0 bytes)",
            "it was probably not completely written or downloaded; export or copy it again",
        )
    _check_content_kind(source, suffix, head)
    try:
        # mmap=False: the data end up in memory, so an input can be replaced (even by our
        # own atomic writer with --force) while a Volume made from it is in use.
        img = nib.load(source, mmap=False)
    except MemoryError:
        raise
    except Exception as error:  # nibabel raises a zoo of types on damaged files
        raise _unreadable(source, error) from None
    return source, img


def _check_content_kind(source: Path, suffix: str, head: bytes) -> None:
    """Catch text files and gzip/suffix mismatches before nibabel gives a vaguer message."""
    gzipped = head.startswith(_GZIP_MAGIC)
    if not gzipped and _looks_like_text(head):
        start = " ".join(head[:40].decode("utf-8", "replace").split())
        raise InputError(
            source,
            "an image",
            f"a text file (starting '{start}')",
            "check the path; if it was downloaded, the download failed: fetch it again",
        )
    if gzipped and suffix not in _COMPRESSED_SUFFIXES:
        better = ".nii.gz" if suffix == ".nii" else ".mgz"
        raise InputError(
            source,
            f"uncompressed data as its {suffix} suffix says",
            "gzip-compressed data",
            f"rename it to end in {better}",
        )
    if not gzipped and suffix in _COMPRESSED_SUFFIXES and _looks_like_raw_header(head):
        better = ".nii" if suffix == ".nii.gz" else ".mgh"
        raise InputError(
            source,
            f"gzip-compressed data as its {suffix} suffix says",
            "uncompressed data",
            f"rename it to end in {better}",
        )


def _looks_like_text(head: bytes) -> bool:
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        # The 256 bytes may end inside a multi-byte character.
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return False
    return bool(text) and all(c.isprintable() or c in "\t\r\n" for c in text)


def _looks_like_raw_header(head: bytes) -> bool:
    """An uncompressed NIfTI-1/2 (sizeof_hdr 348/540) or MGH (version 1) header."""
    if len(head) < 4:
        return False
    first = int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big")
    return any(n in (348, 540) for n in first) or first[1] == 1


def _unreadable(source: Path, error: BaseException) -> InputError:
    if isinstance(error, EOFError):
        found = "a truncated file (the compressed data end early)"
    elif isinstance(error, OSError) and "bytes, got" in str(error):
        found = f"a truncated file ({_one_line(error)})"
    else:
        found = f"content nibabel cannot read ({type(error).__name__}: {_one_line(error)})"
    return InputError(
        source,
        "a readable NIfTI or MGH image",
        found,
        "the file is damaged or not an image; export or download it again",
    )


def _check_geometry(img: Any, source: Path) -> tuple[int, int, int]:
    """Apply the shape and affine rules; returns the 3D shape the data will have."""
    shape3 = _check_shape(tuple(int(n) for n in img.shape), source)
    affine = np.asarray(img.affine, dtype=np.float64)
    todo = (
        "the header's geometry is broken: reconvert the scan from DICOM (dcm2niix) or copy "
        "the geometry of the original scan (fslcpgeom)"
    )
    if not np.all(np.isfinite(affine)):
        raise InputError(
            source, "a finite voxel-to-world affine", "NaN or infinite values in it", todo
        )
    spacing = _spacing_mm(affine)
    det = float(np.linalg.det(affine[:3, :3]))
    if min(spacing) == 0 or abs(det) <= 1e-6 * float(np.prod(spacing)):
        voxel = " x ".join(_num(s) for s in spacing)
        raise InputError(
            source,
            "an invertible voxel-to-world affine",
            f"a singular one (voxel size {voxel} mm, determinant {det:.3g})",
            todo,
        )
    codes = _orientation(affine)
    for axis, size in enumerate(spacing):
        if not MIN_SPACING_MM <= size <= MAX_SPACING_MM:
            voxel = " x ".join(_num(s) for s in spacing)
            raise InputError(
                source,
                f"voxel sizes between {_num(MIN_SPACING_MM)} and {_num(MAX_SPACING_MM)} mm",
                f"{_num(size)} mm along axis {axis} ({codes[axis]}; voxel size {voxel} mm)",
                "check the voxel size in the header (a wrong unit, µm or cm, is a common cause) "
                "or resample the image to about 1 mm",
            )
    for axis, (n, size) in enumerate(zip(shape3, spacing, strict=True)):
        if n * size < MIN_EXTENT_MM:
            raise InputError(
                source,
                f"a field of view of at least {_num(MIN_EXTENT_MM)} mm along every axis",
                f"{_num(n * size)} mm along axis {axis} ({codes[axis]}; "
                f"{n} voxels of {_num(size)} mm)",
                "give a whole-brain 3D scan, not a slab, localizer or cropped piece",
            )
    return shape3


def _check_shape(shape: tuple[int, ...], source: Path) -> tuple[int, int, int]:
    text = "x".join(str(n) for n in shape)
    if len(shape) < 3 or 1 in shape[:3]:
        raise InputError(
            source,
            "a 3D image",
            f"a 2D image (shape {text})",
            "give the whole 3D volume, not a single slice",
        )
    n_volumes = int(np.prod(shape[3:]))  # 1 for a 3D shape
    if len(shape) == 4 and n_volumes > 1:
        raise InputError(
            source,
            "a 3D image",
            f"a 4D image with {n_volumes} volumes (shape {text})",
            f"pick one volume N (0 to {n_volumes - 1}), e.g. `fslroi IN OUT N 1` or "
            "nibabel's img.slicer[..., N]",
        )
    if n_volumes > 1:
        raise InputError(
            source,
            "a 3D image",
            f"a {len(shape)}D image (shape {text})",
            "extract the 3D T1 volume first (e.g. with nibabel's img.slicer)",
        )
    # Trailing dimensions of size 1 (a 4D file holding one volume) are squeezed away.
    return shape[0], shape[1], shape[2]


# --- reading the data ------------------------------------------------------------------------


def _read_data(img: Any, source: Path, shape3: tuple[int, int, int], *, as_float: bool) -> Any:
    try:
        # Stored integers come back unscaled and exact (dataobj); scaled data as floats.
        data = img.get_fdata(dtype=np.float32) if as_float else np.asarray(img.dataobj)
    except MemoryError:
        raise
    except Exception as error:  # truncated data: EOFError, OSError, zlib.error, ...
        raise _unreadable(source, error) from None
    return data.reshape(shape3)


def _read_image_data(img: Any, source: Path, shape3: tuple[int, int, int]) -> np.ndarray:
    data: np.ndarray = _read_data(img, source, shape3, as_float=True)
    _check_finite(data, source, "finite intensities")
    low, high = float(data.min()), float(data.max())
    if low == high:
        raise InputError(
            source,
            "an image with varying intensities",
            f"every voxel equal to {_num(low)}",
            "the image is blank: check that this is the right file and that its export worked",
        )
    return data


def _read_label_data(img: Any, source: Path, shape3: tuple[int, int, int]) -> np.ndarray:
    data = _read_data(img, source, shape3, as_float=False)
    todo = (
        "give a label map (segmentation), not an intensity or probability image; if it was "
        "resampled, redo that with nearest-neighbour interpolation"
    )
    if data.dtype.kind == "f":
        _check_finite(data, source, "integer label values", todo)
        fractional = data != np.round(data)
        if fractional.any():
            example = data.flat[int(np.argmax(fractional))]
            raise InputError(
                source,
                "integer label values",
                f"non-integer values such as {_num(float(example))} "
                f"({int(np.count_nonzero(fractional))} voxels)",
                todo,
            )
    elif data.dtype.kind == "b":
        data = data.astype(np.uint8)
    low, high = data.min(), data.max()
    if low < _INT32.min or high > _INT32.max:
        raise InputError(
            source,
            "label values within the 32-bit integer range",
            f"values from {_num(float(low))} to {_num(float(high))}",
            "renumber the labels",
        )
    labels: np.ndarray = data.astype(np.int32, copy=False)
    return labels


def _check_finite(data: np.ndarray, source: Path, expected: str, todo: str | None = None) -> None:
    finite = np.isfinite(data)
    if finite.all():
        return
    n_nan = int(np.count_nonzero(np.isnan(data)))
    n_inf = int(data.size - np.count_nonzero(finite)) - n_nan
    raise InputError(
        source,
        expected,
        f"{n_nan} NaN and {n_inf} infinite voxel values",
        todo or "replace them (e.g. `fslmaths IN -nan OUT`) or fix the step that made the image",
    )


# --- sform/qform warnings (loading goes on) ---------------------------------------------------


def _form_warnings(img: Any, source: Path) -> list[str]:
    if not isinstance(img.header, nib.Nifti1Header):
        return []
    header: Any = img.header
    sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    if sform_code == 0 and qform_code == 0:
        return [
            f"{source}: neither sform nor qform is set (both codes 0), so the orientation is "
            "unknown; nibabel assumes a default one: check left and right in a viewer"
        ]
    if sform_code == 0 or qform_code == 0:
        return []
    sform, qform = header.get_sform(), header.get_qform()
    translation_mm, linear = _affine_difference(sform, qform)
    orient_s, orient_q = _orientation(sform, default="?"), _orientation(qform, default="?")
    if orient_s == orient_q and translation_mm <= GRID_TOL_MM and linear <= GRID_TOL_LINEAR:
        return []
    # How far apart the two put the same voxel: the largest shift over the grid's corners.
    corners = np.array(np.meshgrid(*[(0, n - 1) for n in img.shape[:3]], [1])).reshape(4, -1)
    shift_mm = float(np.linalg.norm((sform - qform) @ corners, axis=0).max())
    what = f"orientation {orient_s} vs {orient_q}, " if orient_s != orient_q else ""
    return [
        f"{source}: the sform (code {sform_code}) and qform (code {qform_code}) disagree "
        f"({what}up to {shift_mm:.3g} mm apart); nibabel and wholebrain use the sform, "
        "other tools may use the qform: check the result in a viewer"
    ]


def _log_warnings(messages: list[str]) -> None:
    for message in messages:
        log.warning(message)
