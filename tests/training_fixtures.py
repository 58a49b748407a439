"""Tiny cohorts for the training tests: phantom 'brains' written as NIfTI + a manifest.

Each subject is an ellipsoid brain on a 2 mm grid (RAS): cortex shell, white matter, a
ventricle, split into left and right hemispheres along X. Full subjects carry ``dkt-aseg``
labels (ctx-lh/rh-superiorfrontal 1028/2028, cerebral WM 2/41, lateral ventricles 4/43),
partial ones ``tissue`` labels (1 CSF, 2 GM, 3 WM). Intensities follow the tissue (WM
brightest, ventricle darkest) with noise, so the task is learnable in a few dozen steps.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np

from wholebrain.conform import ConformConfig
from wholebrain.data.augment import AugmentConfig
from wholebrain.data.dataset import DataConfig
from wholebrain.data.manifest import Entry, write_manifest
from wholebrain.model import ModelConfig
from wholebrain.train.config import OptimConfig, TrainConfig, ValConfig

SPACING_MM = 2.0
TINY_MODEL = ModelConfig(filters=(4, 8, 16))  # DynUNet needs 3 levels at least


def phantom(shape: tuple[int, int, int], seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(image float32, dkt-aseg ids int16, tissue ids int16) of one phantom subject."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2 + rng.uniform(-1, 1, 3)
    radius = np.array(shape) * rng.uniform(0.36, 0.42, 3)
    rel = (grid - centre[:, None, None, None]) / radius[:, None, None, None]
    r = np.sqrt((rel**2).sum(0))
    left = grid[0] < centre[0]  # RAS: x grows to the right
    full = np.zeros(shape, np.int16)
    tissue = np.zeros(shape, np.int16)
    cortex, wm, ventricle = (r < 1) & (r >= 0.7), (r < 0.7) & (r >= 0.3), r < 0.3
    for mask, ids, tissue_id in (
        (cortex, (1028, 2028), 2),
        (wm, (2, 41), 3),
        (ventricle, (4, 43), 1),
    ):
        full[mask & left], full[mask & ~left] = ids
        tissue[mask] = tissue_id
    intensity = {0: 0.0, 1: 25.0, 2: 60.0, 3: 100.0}
    image = np.vectorize(intensity.get)(tissue).astype(np.float32)
    image[tissue > 0] += rng.normal(0, 4, int((tissue > 0).sum())).astype(np.float32)
    return image, full, tissue


def _save(path: Path, data: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([SPACING_MM, SPACING_MM, SPACING_MM, 1.0])
    affine[:3, 3] = -SPACING_MM * (np.array(data.shape) - 1) / 2
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def make_cohort(
    root: Path,
    *,
    full: int = 2,
    partial: int = 2,
    val: int = 1,
    shape: tuple[int, int, int] = (24, 24, 24),
) -> Path:
    """Write ``full`` + ``val`` full subjects and ``partial`` tissue subjects; the manifest."""
    entries = []
    for i in range(full + val + partial):
        name = f"sub-{i:02d}"
        image, full_ids, tissue_ids = phantom(shape, seed=i)
        t1 = _save(root / name / "t1.nii.gz", image)
        if i < full + val:
            labels = _save(root / name / "dkt.nii.gz", full_ids)
            split = "val" if i >= full else "train"
            entries.append(Entry(name, t1, labels, "dkt-aseg", "dkt-aseg", split))
        else:
            labels = _save(root / name / "tissue.nii.gz", tissue_ids)
            entries.append(Entry(name, t1, labels, "tissue", "tissue", "train"))
    return write_manifest(entries, root / "manifest.csv")


def tiny_config(
    root: Path, manifest: Path, *, shape: tuple[int, int, int] = (24, 24, 24), **changes: object
) -> TrainConfig:
    """A config that trains in seconds on the tiny cohort (no augmentation, whole canvas)."""
    config = TrainConfig(
        strategy="multitask",
        steps=30,
        batch_size=2,
        seed=0,
        checkpoint_every=10,
        log_every=5,
        output_dir=str(root / "run"),
        model=TINY_MODEL,
        conform=ConformConfig(canvas_shape_vox=shape, spacing_mm=SPACING_MM),
        data=DataConfig(
            manifest=str(manifest),
            cache_dir=str(root / "cache"),
            patch_size_vox=(),
            full_fraction=0.5,
        ),
        augment=AugmentConfig(enabled=False),
        optim=OptimConfig(lr=1e-2, grad_clip=12.0),
        val=ValConfig(every=0, mode="whole"),
    )
    return replace(config, **changes)  # type: ignore[arg-type]
