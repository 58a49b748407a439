"""Benchmark of wholebrain.evaluate: per-structure HD95/ASSD/Dice on a real ~100-label pair.

Run: ``python benchmarks/evaluate.py`` (``--repeats N``; ``--quick`` skips MONAI;
``--monai-onehot`` also runs MONAI on the full one-hot volumes, which needs ~10 GB of memory).
Prints
1. the machine, versions, command, load and date;
2. seconds (wall and CPU, median of the repeats) of three implementations of the same
   metrics (HD95 as MONAI's ``percentile=95``, symmetric ASSD, Dice) over every structure:
   - **wholebrain**: ``label_metrics``: one pass finds every structure's surface, neighbour
     rings and a KD-tree give exact distances;
   - **EDT on boxes**: per structure, scipy ``distance_transform_edt(sampling=spacing)`` of
     each surface on the union of the two bounding boxes (found for all structures at once
     with ``ndimage.find_objects``);
   - **MONAI**: ``monai.metrics.compute_hausdorff_distance(percentile=95)`` +
     ``compute_average_surface_distance(symmetric=True)`` + ``compute_dice``, one structure
     at a time as one-hot (1, 2, X, Y, Z) tensors (the full one-hot (1, 99, X, Y, Z) input is
     ~4 GB per side in float32; ``--monai-onehot`` times it too);
   with the largest difference from wholebrain's values;
3. ``evaluate_pair`` end to end (loading, Mindboggle import with the brain mask, metrics):
   the near prediction written as a dkt-aseg file (what ``wholebrain segment`` gives) against
   the Mindboggle reference, and Mindboggle maps on both sides.

Cases on the grid of Mindboggle ``sub-01`` (256x256x160, 1 mm, 98 structures): a "near"
prediction (the reference with its boundaries jittered by one voxel: Dice about 0.8, what a
good model gives) and the "far" one (``sub-02``, another subject, not registered: the worst
case for the distance search). Without ../shared/data a synthetic 98-label parcellation
stands in for the anatomy.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import scipy
from scipy import ndimage

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
from wholebrain.evaluate import evaluate_pair, label_metrics
from wholebrain.io import load_image, load_labels, save_volume
from wholebrain.protocols import get_protocol
from wholebrain.protocols.importers import import_labels

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINDBOGGLE = SHARED_DATA / "mindboggle-oasis-trt-20-dev"
SPACING = (1.0, 1.0, 1.0)


# --- inputs --------------------------------------------------------------------------------------


def mindboggle(subject: str) -> np.ndarray:
    labels = load_labels(MINDBOGGLE / subject / "labels_dkt31_aseg.nii.gz")
    brain = load_image(MINDBOGGLE / subject / "t1w_brain.nii.gz").data > 0
    ids, _ = import_labels(labels.data, "mindboggle", brain_mask=brain)
    return ids


def synthetic(seed: int) -> np.ndarray:
    """A brain-sized ellipsoid on 256x256x160 cut into the 98 labels (Voronoi parcels)."""
    rng = np.random.default_rng(seed)
    ids = get_protocol("dkt-aseg").ids[1:]
    shape = (256, 256, 160)
    centre = np.array(shape) / 2
    seeds = rng.uniform(-1, 1, (4 * ids.size, 3))
    seeds = seeds[(seeds**2).sum(1) < 1][: ids.size] * [68, 85, 65] + centre
    grid = np.indices(shape, dtype=np.float32).reshape(3, -1).T
    inside = (((grid - centre) / [68, 85, 65]) ** 2).sum(1) < 1
    out = np.zeros(grid.shape[0], np.int32)
    out[inside] = ids[scipy.spatial.cKDTree(seeds).query(grid[inside])[1]]
    return out.reshape(shape)


def jitter(labels: np.ndarray, seed: int = 0) -> np.ndarray:
    """Each voxel takes the label of a random voxel at most one step away (per axis)."""
    rng = np.random.default_rng(seed)
    index = np.indices(labels.shape, dtype=np.int16)
    for axis in range(3):
        step = rng.integers(-1, 2, size=labels.shape, dtype=np.int16)
        index[axis] = np.clip(index[axis] + step, 0, labels.shape[axis] - 1)
    return labels[tuple(index)]


# --- the implementations compared ----------------------------------------------------------------


def ours(pred: np.ndarray, ref: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    m = label_metrics(pred, ref, ids, SPACING)
    return {"hd95": m.hd95_mm, "assd": m.assd_mm, "dice": m.dice}


def edt_boxes(pred: np.ndarray, ref: np.ndarray, ids: np.ndarray) -> dict[str, np.ndarray]:
    lut = np.zeros(max(int(pred.max()), int(ref.max()), int(ids.max())) + 1, np.int32)
    lut[ids] = np.arange(1, ids.size + 1)
    pred_i, ref_i = lut[pred], lut[ref]
    boxes_p = ndimage.find_objects(pred_i, ids.size)
    boxes_r = ndimage.find_objects(ref_i, ids.size)
    out = {key: np.full(ids.size, np.nan) for key in ("hd95", "assd", "dice")}
    for k in range(ids.size):
        bp, br = boxes_p[k], boxes_r[k]
        if bp is None or br is None:
            if bp is not None or br is not None:
                out["dice"][k] = 0.0  # in one map only
            continue
        box = tuple(
            slice(min(a.start, b.start), max(a.stop, b.stop)) for a, b in zip(bp, br, strict=True)
        )
        p, r = pred_i[box] == k + 1, ref_i[box] == k + 1
        out["dice"][k] = 2 * np.count_nonzero(p & r) / (np.count_nonzero(p) + np.count_nonzero(r))
        edge_p = p & ~ndimage.binary_erosion(p)
        edge_r = r & ~ndimage.binary_erosion(r)
        d_pr = ndimage.distance_transform_edt(~edge_r, sampling=SPACING)[edge_p]
        d_rp = ndimage.distance_transform_edt(~edge_p, sampling=SPACING)[edge_r]
        out["hd95"][k] = max(np.percentile(d_pr, 95), np.percentile(d_rp, 95))
        out["assd"][k] = (d_pr.sum() + d_rp.sum()) / (d_pr.size + d_rp.size)
    return out


def monai_per_structure(pred: np.ndarray, ref: np.ndarray, ids: np.ndarray) -> dict[str, Any]:
    import torch
    from monai.metrics import (
        compute_average_surface_distance,
        compute_dice,
        compute_hausdorff_distance,
    )

    out = {key: np.full(ids.size, np.nan) for key in ("hd95", "assd", "dice")}
    for k, label in enumerate(ids):
        p, r = pred == label, ref == label
        if not (p.any() and r.any()):
            if p.any() or r.any():
                out["dice"][k] = 0.0  # in one map only; MONAI's compute_dice would say NaN
            continue
        yp = torch.from_numpy(np.stack([~p, p])[None].astype(np.float32))
        y = torch.from_numpy(np.stack([~r, r])[None].astype(np.float32))
        out["hd95"][k] = float(compute_hausdorff_distance(yp, y, percentile=95, spacing=SPACING))
        out["assd"][k] = float(
            compute_average_surface_distance(yp, y, symmetric=True, spacing=SPACING)
        )
        out["dice"][k] = float(compute_dice(yp, y, include_background=False))
    return out


def monai_onehot(pred: np.ndarray, ref: np.ndarray, ids: np.ndarray) -> dict[str, Any]:
    import torch
    from monai.metrics import compute_average_surface_distance, compute_hausdorff_distance

    def onehot(labels: np.ndarray) -> Any:
        lut = np.zeros(int(labels.max()) + 1, np.int64)
        lut[ids] = np.arange(1, ids.size + 1)
        index = torch.from_numpy(lut[labels])[None, None]
        return torch.zeros((1, ids.size + 1, *labels.shape)).scatter_(1, index, 1.0)

    yp, y = onehot(pred), onehot(ref)
    hd = compute_hausdorff_distance(yp, y, percentile=95, spacing=SPACING)[0].numpy()
    assd = compute_average_surface_distance(yp, y, symmetric=True, spacing=SPACING)[0].numpy()
    return {"hd95": hd, "assd": assd}


# --- timing and the report -----------------------------------------------------------------------


def timed(function: Callable[[], Any], repeats: int) -> tuple[float, float, Any]:
    """(median wall seconds, median CPU seconds of this process, the last result)."""
    walls, cpus = [], []
    result = None
    for _ in range(repeats):
        cpu, wall = time.process_time(), time.perf_counter()
        result = function()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return float(np.median(walls)), float(np.median(cpus)), result


def largest_difference(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> str:
    parts = []
    for key in ("hd95", "assd", "dice"):
        if key in a and key in b:
            both = np.isfinite(a[key]) & np.isfinite(b[key])
            same_nan = np.array_equal(np.isnan(a[key]), np.isnan(b[key]))
            diff = float(np.max(np.abs(a[key][both] - b[key][both]), initial=0.0))
            parts.append(f"{key} {diff:.1e}{'' if same_nan else ' (NaN differ)'}")
    return ", ".join(parts)


def header(argv: list[str]) -> None:
    machine.header("wholebrain evaluate benchmark", argv, {"scipy": scipy.__version__})


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (median reported)")
    parser.add_argument("--quick", action="store_true", help="one repeat, no MONAI")
    parser.add_argument(
        "--monai-onehot", action="store_true", help="also MONAI on full one-hot volumes (~10 GB)"
    )
    args = parser.parse_args(argv)
    # MONAI's surface distances call a deprecated argument of its own get_mask_edges.
    warnings.filterwarnings("ignore", "monai.metrics.utils get_mask_edges", FutureWarning)
    repeats = 1 if args.quick else args.repeats
    header(["benchmarks/evaluate.py", *argv])
    real = MINDBOGGLE.is_dir()
    ref = mindboggle("sub-01") if real else synthetic(0)
    cases = {
        "near (jittered reference)": jitter(ref),
        "far (sub-02, not registered)" if real else "far (another parcellation)": (
            mindboggle("sub-02") if real else synthetic(1)
        ),
    }
    ids = get_protocol("dkt-aseg").ids[1:]
    source = "Mindboggle sub-01" if real else "synthetic parcellation (no ../shared/data)"
    print(f"## HD95 + ASSD + Dice of {ids.size} structures, {source}, 256x256x160, seconds")
    print()
    print("| case | implementation | wall s | CPU s | largest difference from wholebrain |")
    print("| --- | --- | ---: | ---: | --- |")
    methods: list[tuple[str, Callable[..., dict[str, Any]], int]] = [
        ("wholebrain label_metrics", ours, repeats),
        ("EDT on bounding boxes (scipy)", edt_boxes, 1),
    ]
    if not args.quick:
        methods.append(("MONAI, one structure at a time", monai_per_structure, 1))
    if args.monai_onehot:
        methods.append(("MONAI, one-hot of all structures", monai_onehot, 1))
    for case, pred in cases.items():
        mean_dice = float(np.nanmean(label_metrics(pred, ref, ids, SPACING).dice))
        reference: dict[str, np.ndarray] = {}
        for name, function, n in methods:
            wall, cpu, result = timed(lambda f=function, p=pred: f(p, ref, ids), n)
            if not reference:
                reference = result
                note = f"(mean Dice {mean_dice:.3f})"
            else:
                note = largest_difference(result, reference)
            print(f"| {case} | {name} | {wall:.2f} | {cpu:.2f} | {note} |", flush=True)
    print()
    if real:
        print("## evaluate_pair end to end (load both, Mindboggle import with t1w_brain, metrics)")
        print()
        print("| pair | wall s | CPU s |")
        print("| --- | ---: | ---: |")
        with tempfile.TemporaryDirectory() as tmp:
            # What `wholebrain segment` would write: dkt-aseg ids on the reference's grid.
            like = load_labels(MINDBOGGLE / "sub-01" / "labels_dkt31_aseg.nii.gz")
            pred_file = save_volume(
                cases["near (jittered reference)"], like, Path(tmp) / "p.nii.gz"
            )
            wall, cpu, _ = timed(
                lambda: evaluate_pair(
                    pred_file,
                    MINDBOGGLE / "sub-01" / "labels_dkt31_aseg.nii.gz",
                    ref_format="mindboggle",
                    ref_brain=MINDBOGGLE / "sub-01" / "t1w_brain.nii.gz",
                ),
                repeats,
            )
            print(
                f"| jittered sub-01 (dkt-aseg file) vs sub-01 (Mindboggle) "
                f"| {wall:.2f} | {cpu:.2f} |"
            )
        for subject in ("sub-01", "sub-02"):
            pred_labels = MINDBOGGLE / subject / "labels_dkt31_aseg.nii.gz"
            wall, cpu, _ = timed(
                lambda p=pred_labels, s=subject: evaluate_pair(
                    p,
                    MINDBOGGLE / "sub-01" / "labels_dkt31_aseg.nii.gz",
                    pred_format="mindboggle",
                    ref_format="mindboggle",
                    pred_brain=MINDBOGGLE / s / "t1w_brain.nii.gz",
                    ref_brain=MINDBOGGLE / "sub-01" / "t1w_brain.nii.gz",
                ),
                repeats,
            )
            print(f"| {subject} vs sub-01 (both Mindboggle) | {wall:.2f} | {cpu:.2f} |")
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
