"""Writing volumes: :func:`save_volume` and :func:`atomic_output`, outputs never half-written.

Owns the on-disk data type of outputs and the NIfTI/MGH header they get from the image they
lie on; every writer of the project goes through :func:`atomic_output`.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
from nibabel.freesurfer.mghformat import MGHHeader
from numpy.typing import DTypeLike

from wholebrain.errors import InputError, OutputExistsError
from wholebrain.io.paths import (
    _describe_suffix,
    _image_suffix,
    _one_line,
    _split_suffix,
    _suffix_list,
)
from wholebrain.io.volume import Volume

_WRITABLE_TODO = "choose an output folder you can write to"


# --- saving ----------------------------------------------------------------------------------


def save_volume(
    data: np.ndarray,
    like: Volume,
    path: str | Path,
    *,
    force: bool = False,
    dtype: DTypeLike | None = None,
) -> Path:
    """Write an array on ``like``'s grid, atomically, in the format the suffix names.

    The affine is ``like.affine``; a NIfTI header (MGH header for MGH output) of ``like`` is
    copied, keeping its sform/qform codes (the qform is rewritten from the affine so both
    agree); scaling is reset so stored integers are exact. Integer (and bool) data are stored
    in the smallest of uint8/int16/int32 that holds them with a NIfTI "label" intent; float
    data as float32.

    Args:
        data: (X, Y, Z) or (X, Y, Z, C) array whose first three dimensions are ``like.shape``.
        like: the volume whose grid (and header) the output takes.
        path: output file ending in ``.nii``, ``.nii.gz``, ``.mgz`` or ``.mgh``.
        force: overwrite an existing file.
        dtype: on-disk data type instead of the automatic choice (integer types must hold
            the values exactly).

    Returns:
        The path written.

    Raises:
        InputError: unsupported output suffix, or an output folder that cannot be written.
        OutputExistsError: ``path`` exists and ``force`` is False.
        ValueError: ``data`` does not fit ``like``'s grid or the chosen dtype.
    """
    target = Path(path)
    suffix = _image_suffix(target)
    if suffix is None:
        raise InputError(
            target,
            f"an output file name ending in {_suffix_list()}",
            _describe_suffix(target),
            "choose one of these suffixes",
        )
    if data.ndim not in (3, 4) or data.shape[:3] != like.shape:
        raise ValueError(f"data of shape {data.shape} does not fit the grid {like.shape}")
    out = _as_output_dtype(data, dtype)
    is_labels = out.dtype.kind in "iu"
    if suffix in (".mgz", ".mgh"):
        img = _mgh_image(out, like)
    else:
        img = _nifti_image(out, like, is_labels)
    with atomic_output(target, force=force) as tmp:
        nib.save(img, tmp)
    return target


@contextmanager
def atomic_output(path: str | Path, *, force: bool = False) -> Iterator[Path]:
    """Write a file under a temporary name and move it onto ``path`` only when complete.

    Yields a hidden temporary path in the same folder with the same suffix (``x.nii.gz`` ->
    ``.x.tmp-PID-RAND.nii.gz``, so format detection by suffix works); when the block ends
    normally it is ``os.replace``-d onto ``path`` (atomic on one file system), otherwise it is
    deleted. Every writer of the project uses this, so a failed or interrupted run never
    leaves a half-written output.

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is False (checked before the block
            runs and again before the final move).
        InputError: ``path`` is a folder, or its folder cannot be created or written.
    """
    target = Path(path)
    if target.is_dir():
        raise InputError(
            target, "an output file name", "a folder", "give a file name inside that folder"
        )
    if not force and (target.exists() or target.is_symlink()):
        raise OutputExistsError(target)
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise InputError(
            target, "an output folder that can be created", _one_line(error), _WRITABLE_TODO
        ) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(target, "a writable output folder", "no write permission", _WRITABLE_TODO)
    stem, suffix = _split_suffix(target.name)
    tmp = folder / f".{stem}.tmp-{os.getpid()}-{secrets.token_hex(3)}{suffix}"
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"the atomic_output block did not write {tmp}")
        # Another process may have created the output while we were writing.
        if not force and target.exists():
            raise OutputExistsError(target)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# --- writing helpers -------------------------------------------------------------------------


def _as_output_dtype(data: np.ndarray, dtype: DTypeLike | None) -> np.ndarray:
    if dtype is not None:
        wanted = np.dtype(dtype)
        if wanted.kind in "iu" and data.size:
            if data.dtype.kind == "f" and not np.array_equal(data, np.round(data)):
                raise ValueError(f"non-integer values cannot be stored exactly as {wanted}")
            info = np.iinfo(wanted)
            if data.min() < info.min or data.max() > info.max:
                raise ValueError(f"values {data.min()}..{data.max()} do not fit {wanted}")
        return data.astype(wanted, copy=False)
    if data.dtype.kind == "b":
        return data.astype(np.uint8)
    if data.dtype.kind in "iu":
        low, high = (int(data.min()), int(data.max())) if data.size else (0, 0)
        for candidate in (np.uint8, np.int16, np.int32):
            info = np.iinfo(candidate)
            if info.min <= low and high <= info.max:
                return data.astype(candidate, copy=False)
        raise ValueError(f"integer values {low}..{high} do not fit int32")
    return data.astype(np.float32, copy=False)


def _nifti_image(data: np.ndarray, like: Volume, is_labels: bool) -> Any:
    affine = like.affine
    # Typed as Any: nibabel's header and image methods carry no annotations.
    header: Any = None
    sform_code = qform_code = 1  # from MGH or memory: scanner coordinates, as mri_convert writes
    if isinstance(like.header, nib.Nifti1Header):
        source_header: Any = like.header
        header = source_header.copy()
        sform_code, qform_code = int(header["sform_code"]), int(header["qform_code"])
    image_class: Any = nib.Nifti2Image if isinstance(header, nib.Nifti2Header) else nib.Nifti1Image
    img = image_class(data, affine, header=header)
    out = img.header
    if header is None:
        out.set_xyzt_units("mm", "sec")
    out.set_data_dtype(data.dtype)
    out.set_slope_inter(None, None)  # no scaling: stored integers are the labels
    out["cal_min"] = out["cal_max"] = 0  # the source's display range means nothing here
    out.set_intent("label" if is_labels else "none")
    out.set_sform(affine, code=sform_code)
    # The qform cannot hold shears; rewriting it from the affine makes both forms agree.
    out.set_qform(affine, code=qform_code)
    return img


def _mgh_image(data: np.ndarray, like: Volume) -> Any:
    if data.dtype not in (np.uint8, np.int16, np.int32, np.float32):
        raise ValueError(f"MGH files cannot hold {data.dtype}; use uint8, int16, int32 or float32")
    header: Any = None
    if isinstance(like.header, MGHHeader):
        source_header: Any = like.header
        header = source_header.copy()
    image_class: Any = nib.MGHImage
    img = image_class(data, like.affine, header=header)
    img.header.set_data_dtype(data.dtype)
    return img
