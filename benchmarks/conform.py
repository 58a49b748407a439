"""Benchmark of wholebrain.conform: conform() and to_native() on 256³-class inputs.

Run: ``python benchmarks/conform.py`` (``--repeats N``; ``--tables api engines dice``; ``--quick``
for a smoke run). Prints
1. the machine, versions, command and date;
2. seconds for conform() (image) and to_native() (labels with ~100 labels; probabilities with
   4 channels) for a FreeSurfer-like 256³ 1 mm LIA input, a 256³ 1 mm oblique input and a
   0.9x0.9x1.5 mm anisotropic input (median of the repeats);
3. the comparison of implementations that chose the resampling engines: scipy.ndimage vs
   torch grid_sample vs a numpy slab engine (1 and 2 threads), and, for label maps,
   nearest vs "vote" (argmax of linearly interpolated one-hot maps) vs one-hot per label on
   each label's bounding box, with Dice against an analytic truth on both grids (and a round
   trip of real Mindboggle labels).

Inputs are synthetic (a head phantom, a 100-label parcellation) so the script runs anywhere;
when ../shared/data holds the Mindboggle labels, the Dice comparison also uses real anatomy.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import scipy
import torch
import torch.nn.functional as F
from scipy import ndimage

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
import wholebrain.resample as resample_module
from wholebrain.conform import ConformConfig, Conformed, conform
from wholebrain.io import Volume

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINDBOGGLE = SHARED_DATA / "mindboggle-oasis-trt-20-dev" / "sub-01"


# --- inputs --------------------------------------------------------------------------------------


def rotation(degrees: tuple[float, float, float]) -> np.ndarray:
    ax, ay, az = np.deg2rad(degrees)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return np.asarray(rz @ ry @ rx)


def centred_affine(linear: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3] = linear
    affine[:3, 3] = -linear @ ((np.array(shape) - 1) / 2) + np.array([0.4, 12.3, 8.7])
    return affine


LIA = np.array([[-1.0, 0, 0], [0, 0, 1.0], [0, -1.0, 0]])
CASES: dict[str, tuple[tuple[int, int, int], np.ndarray]] = {
    "256³ 1 mm LIA (FreeSurfer)": ((256, 256, 256), centred_affine(LIA, (256, 256, 256))),
    "256³ 1 mm oblique (15°,10°,5°)": (
        (256, 256, 256),
        centred_affine(rotation((15, 10, 5)) @ LIA, (256, 256, 256)),
    ),
    "0.9x0.9x1.5 mm RAS 256x256x150": (
        (256, 256, 150),
        centred_affine(np.diag([0.9, 0.9, 1.5]), (256, 256, 150)),
    ),
}


def head_image(shape: tuple[int, int, int], affine: np.ndarray) -> np.ndarray:
    """A whole-head phantom with noise, float32, in the input's voxel order."""
    rng = np.random.default_rng(0)
    index = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = (
        affine[:3, :3].astype(np.float32) @ index + affine[:3, 3:4].astype(np.float32)
    ).reshape(3, *shape)
    x, y, z = world[0], world[1], world[2] - 12.3
    r_head = (x / 78) ** 2 + (y / 100) ** 2 + (z / 95) ** 2
    r_brain = (x / 68) ** 2 + (y / 85) ** 2 + ((z - 12) / 70) ** 2
    image = np.where(r_head < 1, 60.0, 3.0).astype(np.float32)
    image[r_brain < 1] = 80 + 30 * np.cos(x[r_brain < 1] / 6) ** 2
    image += rng.normal(0, 2, shape).astype(np.float32)
    return image


def parcellation(shape: tuple[int, ...], affine: np.ndarray, n_labels: int = 100) -> np.ndarray:
    """A brain-sized ellipsoid cut into ``n_labels`` Voronoi parcels, int32, on any grid."""
    rng = np.random.default_rng(1)
    seeds = rng.uniform(-1, 1, (4 * n_labels, 3))
    seeds = seeds[(seeds**2).sum(1) < 1][:n_labels] * np.array([68, 85, 70]) + [0, 0, 24.3]
    index = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = (affine[:3, :3] @ index + affine[:3, 3:4]).T.astype(np.float32)
    inside = ((world - [0, 0, 24.3]) / [68, 85, 70]) ** 2
    labels = np.zeros(world.shape[0], np.int32)
    mask = inside.sum(1) < 1
    tree = scipy.spatial.cKDTree(seeds)
    labels[mask] = 1 + tree.query(world[mask])[1]
    return labels.reshape(shape)


# --- timing --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Median wall-clock and process CPU seconds of the repeats."""

    wall_s: float
    cpu_s: float  # all threads; > wall when threads help, ~wall x load when the CPU is shared

    def __str__(self) -> str:
        return f"{self.wall_s:.2f} ({self.cpu_s:.2f})"


def median_seconds(function: Callable[[], Any], repeats: int) -> Timing:
    walls, cpus = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        function()
        walls.append(time.perf_counter() - start)
        cpus.append(time.process_time() - cpu)
    return Timing(float(np.median(walls)), float(np.median(cpus)))


def header(argv: list[str]) -> None:
    versions = {"scipy": scipy.__version__, "nibabel": nib.__version__}
    machine.header("wholebrain conform benchmark", argv, versions)


# --- 1. the public API ---------------------------------------------------------------------------


def api_table(repeats: int) -> None:
    print("## conform() and to_native(), default canvas 192x224x224")
    print()
    print("Seconds, median of the repeats: wall clock (process CPU time, all threads).")
    print()
    print(
        "| input | path | conform (image) | to_native labels (100) "
        "| to_native probabilities (4) | conform + to_native labels |"
    )
    print("| --- | --- | ---: | ---: | ---: | ---: |")
    for name, (shape, affine) in CASES.items():
        volume = Volume(head_image(shape, affine), affine)
        conformed = conform(volume)
        labels = parcellation(conformed.image.shape, conformed.canvas_affine)
        onehot = np.stack(
            [labels == 0, labels % 3 == 1, labels % 3 == 2, (labels % 3 == 0) & (labels > 0)]
        )
        probabilities = ndimage.uniform_filter(onehot.astype(np.float32), (1, 3, 3, 3))
        t_conform = median_seconds(lambda v=volume: conform(v), repeats)
        t_labels = median_seconds(lambda c=conformed, a=labels: c.to_native(a), repeats)
        t_probs = median_seconds(
            lambda c=conformed, p=probabilities: c.to_native(p, kind="probabilities"), repeats
        )
        path = conformed._to_canvas.kind
        print(
            f"| {name} | {path} | {t_conform} | {t_labels} | {t_probs} "
            f"| **{t_conform.wall_s + t_labels.wall_s:.2f}** |"
        )
    print()


# --- 2. implementation comparison ------------------------------------------------------------


def grid_sample_linear(
    source: np.ndarray, to_source: np.ndarray, out_shape: tuple[int, int, int], mode: str
) -> np.ndarray:
    """torch grid_sample with an affine grid; source (C, X, Y, Z); zero padding."""
    n_in, n_out = np.array(source.shape[1:]), np.array(out_shape)
    norm_in = np.eye(4)
    norm_in[:3, :3] = np.diag(2 / (n_in - 1))
    norm_in[:3, 3] = -1
    norm_out = np.eye(4)
    norm_out[:3, :3] = np.diag(2 / (n_out - 1))
    norm_out[:3, 3] = -1
    reverse = np.eye(4)[[2, 1, 0, 3]]  # grid_sample's last coordinate indexes the first axis
    theta = reverse @ norm_in @ to_source @ np.linalg.inv(norm_out) @ reverse
    theta_t = torch.tensor(theta[:3], dtype=torch.float32)[None]
    grid = F.affine_grid(theta_t, [1, 1, *out_shape], align_corners=True)
    src = torch.from_numpy(np.ascontiguousarray(source, dtype=np.float32))[None]
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=True)
    return np.asarray(out[0].numpy())


def with_threads(threads: int, function: Callable[[], Any]) -> Callable[[], Any]:
    def run() -> Any:
        saved = resample_module._THREADS
        resample_module._THREADS = threads
        try:
            return function()
        finally:
            resample_module._THREADS = saved

    return run


def engine_table(repeats: int) -> None:
    name = "256³ 1 mm oblique (15°,10°,5°)"
    shape, affine = CASES[name]
    image = head_image(shape, affine)
    conformed = conform(Volume(image, affine))
    canvas_shape = conformed.config.canvas_shape_vox
    to_input = np.linalg.solve(affine, conformed.canvas_affine)  # canvas voxel -> input voxel
    to_canvas = np.linalg.inv(to_input)
    labels = parcellation(canvas_shape, conformed.canvas_affine)
    probabilities = np.stack(
        [labels == 0, labels % 2 == 1, (labels % 2 == 0) & (labels > 0), labels > 90]
    )
    probabilities = probabilities.astype(np.float32)

    print(f"## resampling engines, {name} input, default canvas")
    print()
    print("Seconds, median: wall clock (process CPU time).")
    print()
    print("| operation | implementation | seconds |")
    print("| --- | --- | ---: |")
    rows: list[tuple[str, str, Callable[[], Any]]] = [
        (
            "image → canvas (trilinear)",
            "scipy.ndimage.affine_transform order=1 (1 thread)",
            lambda: ndimage.affine_transform(
                image, to_input[:3, :3], to_input[:3, 3], output_shape=canvas_shape, order=1
            ),
        ),
        (
            "image → canvas (trilinear)",
            "torch affine_grid + grid_sample",
            lambda: grid_sample_linear(image[None], to_input, canvas_shape, "bilinear"),
        ),
        (
            "image → canvas (trilinear)",
            "numpy slab engine (8 gathers + lerps), 1 thread",
            lambda: numpy_slab_linear(image[None], to_input, canvas_shape, threads=1),
        ),
        (
            "image → canvas (trilinear)",
            "numpy slab engine (8 gathers + lerps), 2 threads",
            lambda: numpy_slab_linear(image[None], to_input, canvas_shape, threads=2),
        ),
        (
            "image → canvas (trilinear)",
            "wholebrain: torch grid_sample on slabs, own grid (chosen)",
            lambda: engine_image(image, to_input, canvas_shape),
        ),
        (
            "image → canvas (trilinear)",
            "conform() in all (engine, placement, percentiles, normalisation)",
            lambda: conform(Volume(image, affine)),
        ),
        (
            "labels → input (100 labels)",
            "scipy.ndimage.affine_transform order=0 (nearest)",
            lambda: ndimage.affine_transform(
                labels, to_canvas[:3, :3], to_canvas[:3, 3], output_shape=shape, order=0
            ),
        ),
        (
            "labels → input (100 labels)",
            "torch grid_sample nearest",
            lambda: grid_sample_linear(
                labels[None].astype(np.float32), to_canvas, shape, "nearest"
            ),
        ),
        (
            "labels → input (100 labels)",
            "one-hot per label on its bounding box (scipy order=1) + argmax",
            lambda: onehot_bbox_to_native(labels, to_canvas, shape),
        ),
        (
            "labels → input (100 labels)",
            "wholebrain nearest (numpy slab engine), 2 threads",
            lambda: nearest(conformed).to_native(labels),
        ),
        (
            "labels → input (100 labels)",
            "wholebrain vote (numpy slab engine), 1 thread",
            with_threads(1, lambda: conformed.to_native(labels)),
        ),
        (
            "labels → input (100 labels)",
            "wholebrain vote (numpy slab engine), 2 threads (chosen)",
            with_threads(2, lambda: conformed.to_native(labels)),
        ),
        (
            "probabilities → input (4 channels)",
            "torch affine_grid + grid_sample",
            lambda: grid_sample_linear(probabilities, to_canvas, shape, "bilinear"),
        ),
        (
            "probabilities → input (4 channels)",
            "scipy.ndimage.affine_transform order=1, per channel",
            lambda: [
                ndimage.affine_transform(
                    p, to_canvas[:3, :3], to_canvas[:3, 3], output_shape=shape, order=1
                )
                for p in probabilities
            ],
        ),
        (
            "probabilities → input (4 channels)",
            "numpy slab engine, 2 threads",
            lambda: numpy_slab_linear(probabilities, to_canvas, shape, threads=2),
        ),
        (
            "probabilities → input (4 channels)",
            "wholebrain: torch grid_sample on slabs (chosen), via to_native()",
            lambda: conformed.to_native(probabilities, kind="probabilities"),
        ),
    ]
    for operation, implementation, function in rows:
        print(f"| {operation} | {implementation} | {median_seconds(function, repeats)} |")
    print()


def numpy_slab_linear(
    source: np.ndarray, to_source: np.ndarray, shape: tuple[int, int, int], threads: int
) -> np.ndarray:
    """The numpy alternative measured against grid_sample: per slab of target rows, float32
    coordinates, 8 gathers and 7 lerps per channel; slabs in a thread pool (numpy releases the
    GIL). Zero padding outside. Source (C, X, Y, Z)."""
    channels = source.shape[0]
    padded = np.zeros((channels, *(n + 2 for n in source.shape[1:])), np.float32)
    padded[:, 1:-1, 1:-1, 1:-1] = source
    spatial = padded.shape[1:]
    flats = padded.reshape(channels, -1)
    out = np.empty((channels, *shape), np.float32)
    matrix = to_source.astype(np.float32)
    j = np.arange(shape[1], dtype=np.float32)
    k = np.arange(shape[2], dtype=np.float32)
    in_plane = matrix[:3, 1, None, None] * j[:, None] + matrix[:3, 2, None, None] * k
    upper = np.array(spatial, np.float32)[:, None] - 1.0
    sx, sy = spatial[1] * spatial[2], spatial[2]
    step = max(1, (1 << 18) // (shape[1] * shape[2]))

    def run(first: int) -> None:
        last = min(first + step, shape[0])
        rows = matrix[:3, 3, None] + 1.0 + matrix[:3, 0, None] * np.arange(first, last)
        points = (rows[:, :, None, None] + in_plane[:, None]).reshape(3, -1).astype(np.float32)
        np.clip(points, 0.0, upper, out=points)
        lower = np.minimum(points.astype(np.intp), np.array(spatial)[:, None] - 2)
        fx, fy, fz = points - lower.astype(np.float32)
        base = lower[0] * sx + lower[1] * sy + lower[2]
        for channel, flat in enumerate(flats):

            def lerp_z(offset: int, flat: np.ndarray = flat) -> np.ndarray:
                low = flat[base + offset]
                low += (flat[base + offset + 1] - low) * fz
                return low

            near = lerp_z(0)
            near += (lerp_z(sy) - near) * fy
            far = lerp_z(sx)
            far += (lerp_z(sx + sy) - far) * fy
            near += (far - near) * fx
            out[channel, first:last] = near.reshape(last - first, *shape[1:])

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(run, range(0, shape[0], step)))
    return out


def nearest(conformed: Conformed) -> Conformed:
    return replace(conformed, config=replace(conformed.config, label_interpolation="nearest"))


def engine_image(
    image: np.ndarray, to_input: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    """The general-path engine alone (what conform() uses for oblique inputs)."""
    out = np.empty((1, *shape), np.float32)
    voxel_map = resample_module.VoxelMap(to_input)
    resample_module.resample_linear(image[None], voxel_map, out, np.zeros(1, np.float32))
    return out


def onehot_bbox_to_native(
    labels: np.ndarray, to_canvas: np.ndarray, shape: tuple[int, int, int]
) -> np.ndarray:
    """The textbook alternative: per label, interpolate its one-hot map on its bounding box.

    Exactly argmax over {background, labels} of the linearly interpolated one-hot maps.
    """
    to_input = np.linalg.inv(to_canvas)
    best = np.zeros(shape, np.float32)
    total = np.zeros(shape, np.float32)
    out = np.zeros(shape, np.int32)
    for label, box in enumerate(ndimage.find_objects(labels), start=1):
        if box is None:
            continue
        lo = np.array([b.start - 1 for b in box], float)
        hi = np.array([b.stop for b in box], float)
        corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1)
        target = to_input[:3, :3] @ corners + to_input[:3, 3:4]
        start = np.maximum(np.floor(target.min(1)).astype(int), 0)
        stop = np.minimum(np.ceil(target.max(1)).astype(int) + 1, shape)
        if np.any(stop <= start):
            continue
        region = tuple(slice(a, b) for a, b in zip(start, stop, strict=True))
        offset = to_canvas[:3, :3] @ start + to_canvas[:3, 3]
        score = ndimage.affine_transform(
            (labels == label).astype(np.float32),
            to_canvas[:3, :3],
            offset,
            output_shape=tuple(stop - start),
            order=1,
            mode="grid-constant",
        )
        total[region] += score
        better = score > best[region]
        best[region][better] = score[better]
        out[region][better] = label
    out[1 - total >= best] = 0
    return out


# --- 3. label methods: Dice ------------------------------------------------------------------


def anatomy(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """An analytic brain with thin parts, int32 on any grid (the truth at every resolution).

    Left/right white matter (2/41), a 2.5 mm cortical ribbon cut into 60 parcels (1000+),
    four deep nuclei (10-13, 5-12 mm radii), a 1.5 mm midline sheet (24), a 2 mm slab (4).
    """
    index = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3].astype(np.float32) @ index + affine[:3, 3:4].astype(np.float32)
    x, y, z = world[0], world[1], world[2] - 12.3
    radius = np.sqrt((x / 65) ** 2 + (y / 80) ** 2 + (z / 60) ** 2)
    labels = np.zeros(world.shape[1], np.int32)
    azimuth = ((np.arctan2(y, x) + np.pi) / (2 * np.pi) * 10).astype(int)
    elevation = ((np.arctan2(z, np.hypot(x, y)) + np.pi / 2) / np.pi * 6).astype(int).clip(0, 5)
    brain = radius < 1
    labels[brain] = (1000 + azimuth * 6 + elevation)[brain]
    white = radius < 1 - 2.5 / 68
    labels[white] = np.where(x[white] < 0, 2, 41)
    nuclei = [((-20, 0, 0), (8, 12, 8)), ((20, 0, 0), (8, 12, 8))]
    nuclei += [((-12, -10, -8), (5, 6, 5)), ((12, -10, -8), (5, 6, 5))]
    for label, (centre, semi_axes) in enumerate(nuclei, start=10):
        inside = (((x, y, z) - np.array(centre)[:, None]) / np.array(semi_axes)[:, None]) ** 2
        labels[inside.sum(0) < 1] = label
    labels[(np.abs(x) < 0.75) & (radius < 0.8)] = 24
    labels[(np.abs(z - 10) < 1.0) & ((x / 15) ** 2 + (y / 30) ** 2 < 1)] = 4
    return labels.reshape(shape)


GRIDS = {
    "oblique 1 mm (15°,10°,5°)": rotation((15, 10, 5)),
    "0.9x0.9x1.5 mm": np.diag([0.9, 0.9, 1.5]),
    "1.5 mm": np.eye(3) * 1.5,
    "0.7 mm": np.eye(3) * 0.7,
}


def dice_row(name: str, grid: str, method: str, dice: np.ndarray, seconds: float) -> None:
    print(
        f"| {name} | {grid} | {method} | {dice.mean():.4f} | {np.percentile(dice, 5):.4f} "
        f"| {dice.min():.4f} | {seconds:.2f} |"
    )


def dice_table() -> None:
    columns = "| labels | input grid | method | mean Dice | 5th pct | min | seconds |"
    print("## label maps: nearest vs vote, per-label Dice against the truth")
    print()
    print("Fidelity: the analytic brain drawn on the canvas, brought to the input grid")
    print("(to_native), against the same brain drawn on the input grid; and the other way")
    print("(labels_to_canvas). This is what decides the method.")
    print()
    print(columns)
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for grid, linear in GRIDS.items():
        spacing = np.linalg.norm(linear, axis=0)
        shape = tuple(int(n) for n in np.ceil(np.array([180, 200, 170]) / spacing))
        affine = centred_affine(linear, (shape[0], shape[1], shape[2]))
        truth = anatomy(shape, affine)
        image = np.where(truth > 0, 100.0, 0.0).astype(np.float32)
        for method in ("nearest", "vote"):
            conformed = conform(Volume(image, affine), ConformConfig(label_interpolation=method))
            on_canvas = anatomy(conformed.image.shape, conformed.canvas_affine)
            start = time.perf_counter()
            native = conformed.to_native(on_canvas)
            seconds = time.perf_counter() - start
            dice_row("analytic → to_native", grid, method, per_label_dice(truth, native), seconds)
            start = time.perf_counter()
            canvas = conformed.labels_to_canvas(truth)
            seconds = time.perf_counter() - start
            dice = per_label_dice(on_canvas, canvas)
            dice_row("analytic → labels_to_canvas", grid, method, dice, seconds)
    print()
    if not MINDBOGGLE.is_dir():
        print(f"(round trip on real labels skipped: {MINDBOGGLE} is absent)")
        print()
        return
    print("Round trip on real anatomy: Mindboggle sub-01 DKT31+aseg, unlabelled white matter")
    print("filled with 2/41 by hemisphere, put on each grid (nearest), then → canvas → back.")
    print("A nearest-then-nearest round trip nearly undoes itself, so this favours nearest;")
    print("it bounds the loss, it does not measure fidelity.")
    print()
    print(columns)
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    file = nib.load(MINDBOGGLE / "labels_dkt31_aseg.nii.gz")
    brain = np.asarray(nib.load(MINDBOGGLE / "t1w_brain.nii.gz").dataobj) > 0
    reference = np.asarray(file.dataobj).astype(np.int32)
    world_x = file.affine[0, :3] @ np.indices(reference.shape).reshape(3, -1) + file.affine[0, 3]
    unlabelled = brain & (reference == 0)
    reference[unlabelled] = np.where(world_x.reshape(reference.shape) < 0, 2, 41)[unlabelled]
    middle = (np.array(reference.shape) - 1) / 2
    centre = file.affine[:3, :3] @ middle + file.affine[:3, 3]
    for grid, linear in GRIDS.items():
        shape = tuple(
            int(n) for n in np.ceil(np.array([256, 256, 256]) / np.linalg.norm(linear, axis=0))
        )
        affine = np.eye(4)
        affine[:3, :3] = linear
        affine[:3, 3] = centre - linear @ ((np.array(shape) - 1) / 2)
        to_reference = np.linalg.solve(file.affine, affine)
        truth = ndimage.affine_transform(
            reference, to_reference[:3, :3], to_reference[:3, 3], output_shape=shape, order=0
        )
        image = np.where(truth > 0, 100.0, 0.0).astype(np.float32)
        for method in ("nearest", "vote"):
            conformed = conform(Volume(image, affine), ConformConfig(label_interpolation=method))
            start = time.perf_counter()
            back = conformed.to_native(conformed.labels_to_canvas(truth))
            seconds = time.perf_counter() - start
            dice_row("Mindboggle round trip", grid, method, per_label_dice(truth, back), seconds)
    print()


def per_label_dice(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    n = int(max(a.max(), b.max())) + 1
    pairs = np.bincount(a.ravel().astype(np.int64) * n + b.ravel(), minlength=n * n).reshape(n, n)
    both = np.diag(pairs)
    size_a, size_b = pairs.sum(1), pairs.sum(0)
    present = (size_a > 0)[1:]
    return np.asarray((2 * both / np.maximum(size_a + size_b, 1))[1:][present])


TABLES = {"api": api_table, "engines": engine_table, "dice": lambda repeats: dice_table()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (median reported)")
    parser.add_argument("--quick", action="store_true", help="one repeat, skip the Dice table")
    parser.add_argument(
        "--tables", nargs="+", choices=list(TABLES), default=list(TABLES), help="what to run"
    )
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else args.repeats
    header(["benchmarks/conform.py", *argv])
    oblique = centred_affine(rotation((10, 0, 0)), (64, 64, 64))
    conform(Volume(head_image((64, 64, 64), oblique), oblique))  # warm up: imports torch
    for name in args.tables:
        if not (args.quick and name == "dice"):
            TABLES[name](repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
