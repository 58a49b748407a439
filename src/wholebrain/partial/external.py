"""Tissue classification by other tools on the canvas: ANTs Atropos (antspyx) and FSL FAST.

:func:`runner` checks that the tool is there (an :class:`~wholebrain.errors.InputError` saying
how to install it otherwise) and returns a function ``(image, mask, seed) -> labels`` that runs
it on the canvas image inside the brain mask, so every method sees the same input. Both tools
order their classes by mean intensity, which on a T1-weighted image is CSF, GM, WM: labels
0 background, 1 CSF, 2 GM, 3 WM, as the built-in classifier.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from wholebrain.errors import InputError

__all__ = ["ATROPOS_MRF", "FAST_COMMAND", "n4_correct", "runner"]

CanvasClassifier = Callable[[np.ndarray, np.ndarray, int], np.ndarray]

ATROPOS_INIT = "kmeans[3]"  # Atropos initialisation: k-means, 3 classes
ATROPOS_MRF = "[0.1,1x1x1]"  # Atropos MRF: smoothing factor 0.1, 26-neighbourhood
ATROPOS_CONVERGENCE = "[5,0]"  # Atropos iterations (antspyx's default)
FAST_COMMAND = "fast"  # FSL FAST's executable, looked up on the PATH
_STDERR_TAIL = 300  # characters of a failed tool's output quoted in the error
_nifti: Any = nib.Nifti1Image  # untyped in nibabel; Any keeps mypy --strict quiet
_load: Any = nib.load


def n4_correct(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """ANTs N4 bias-field correction (antspyx defaults) of a 1 mm image inside a mask.

    Args:
        image: (X, Y, Z) float32 intensities, positive in the mask.
        mask: (X, Y, Z) bool.

    Returns:
        (X, Y, Z) float32 corrected intensities.

    Raises:
        InputError: antspyx is not installed.
    """
    ants = _import_ants("bias correction 'n4'")
    corrected = ants.n4_bias_field_correction(
        ants.from_numpy(np.ascontiguousarray(image, dtype=np.float32)),
        mask=ants.from_numpy(mask.astype(np.float32)),
    )
    out: np.ndarray = np.asarray(corrected.numpy(), dtype=np.float32)
    return out


def runner(method: str, source: str | None = None) -> CanvasClassifier:
    """The canvas classifier of an external ``method`` ("atropos" or "fsl"), checked to exist.

    Args:
        method: "atropos" or "fsl".
        source: the image being classified, named in errors.

    Returns:
        ``classify(image, mask, seed) -> labels``: (X, Y, Z) float32 1 mm image and bool mask
        in, (X, Y, Z) uint8 labels (0 outside the mask, 1 CSF, 2 GM, 3 WM) out.

    Raises:
        InputError: the tool is not installed.
        ValueError: ``method`` is not an external method.
    """
    if method == "atropos":
        _import_ants("tissue method 'atropos'", source)
        return _atropos
    if method == "fsl":
        if shutil.which(FAST_COMMAND) is None:
            raise InputError(
                source,
                f"FSL's '{FAST_COMMAND}' on the PATH for tissue method 'fsl'",
                f"no '{FAST_COMMAND}' command",
                "install FSL and source $FSLDIR/etc/fslconf/fsl.sh, or use method 'builtin'",
            )
        return _fast
    raise ValueError(f"method must be 'atropos' or 'fsl', not {method!r}")


def _atropos(image: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """Atropos: k-means start, 3 classes, MRF [0.1, 1x1x1], on the masked canvas."""
    import ants

    ants_image = ants.from_numpy(np.ascontiguousarray(image, dtype=np.float32))
    ants_mask = ants.from_numpy(mask.astype(np.float32))
    with _environment(ANTS_RANDOM_SEED=str(seed)):
        result = ants.atropos(
            a=ants_image, x=ants_mask, i=ATROPOS_INIT, m=ATROPOS_MRF, c=ATROPOS_CONVERGENCE
        )
    labels = np.asarray(result["segmentation"].numpy()).astype(np.uint8)
    labels[~mask] = 0
    return labels


def _fast(image: np.ndarray, mask: np.ndarray, seed: int) -> np.ndarray:
    """FSL FAST (``fast -t 1 -n 3``) on the masked canvas, in a temporary folder."""
    del seed  # FAST is deterministic
    with tempfile.TemporaryDirectory(prefix="wholebrain-fast-") as folder:
        base = Path(folder) / "t1"
        data = np.where(mask, image, 0).astype(np.float32)
        nib.save(_nifti(data, np.eye(4)), f"{base}.nii.gz")
        command = [FAST_COMMAND, "-t", "1", "-n", "3", "-o", str(base), f"{base}.nii.gz"]
        env = {**os.environ, "FSLOUTPUTTYPE": "NIFTI_GZ"}
        done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
        seg = Path(f"{base}_seg.nii.gz")
        if done.returncode != 0 or not seg.is_file():
            output = (done.stderr or done.stdout).strip()[-_STDERR_TAIL:]
            raise InputError(
                "FSL fast",
                "a tissue segmentation (t1_seg.nii.gz)",
                f"exit status {done.returncode}" + (f": {output}" if output else ""),
                "run fast on the image by hand to see why, or use method 'builtin'",
            )
        labels = np.asarray(_load(seg).dataobj).astype(np.uint8)
    if labels.shape != mask.shape:
        raise InputError(
            "FSL fast",
            f"a segmentation of shape {mask.shape}",
            f"shape {labels.shape}",
            "check the FSL installation, or use method 'builtin'",
        )
    labels[~mask] = 0
    return labels


def _import_ants(purpose: str, source: str | None = None) -> Any:
    try:
        import ants
    except ImportError as error:
        raise InputError(
            source,
            f"antspyx installed for {purpose}",
            f"no ANTs Python package ({error})",
            "pip install 'wholebrain[ants]' (or pip install antspyx), or use method 'builtin'",
        ) from error
    return ants


@contextlib.contextmanager
def _environment(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a block (ANTs reads its seed there)."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
