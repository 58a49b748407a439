"""Benchmark of wholebrain.synth: synthetic volumes per second at the default canvas.

Run: ``python benchmarks/synth.py`` (``--repeats N``, ``--quick`` for a smoke run). Prints
1. the machine, versions, command and date;
2. volumes per second of ``SynthGenerator`` (default ``SynthConfig``, T1 contrast) on the CPU,
   and on CUDA when available, batch 1 and 2, 192x224x224 canvas (median of the repeats);
3. seconds per step for one volume, to show where the time goes;
4. the comparison behind two implementation choices: the acquisition step (blur + resample +
   back) as one matrix per axis vs a grouped conv3d + ``F.interpolate``; the sampling grid built
   on a 4x coarser grid and upsampled by matrix products vs ``F.affine_grid`` + a full-size
   trilinear upsampling of the displacement.

The label map is SynthSeg's ``training_seg_01`` from ../shared/data when present (T1 priors
beside it), else a synthetic whole-head phantom with fake priors, so the script runs anywhere.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
from wholebrain.conform import ConformConfig
from wholebrain.synth import (
    IntensityPriors,
    SynthConfig,
    SynthGenerator,
    load_label_map,
    load_t1_priors,
)
from wholebrain.synth.resample import along, gaussian_matrix, interp_matrix

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SYNTHSEG = SHARED_DATA / "synthseg-label-maps"


def header(argv: list[str]) -> None:
    machine.header("wholebrain synth benchmark", argv)


def timed(function: Callable[[], Any], repeats: int, device: torch.device) -> float:
    """Median seconds of ``repeats`` calls after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        function()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def phantom_labels(shape: tuple[int, int, int]) -> torch.Tensor:
    """A whole head of generation ids: scalp, skull, CSF, cortex, WM, ventricles, eyes, neck."""
    grid = np.indices(shape, dtype=np.float32)
    offset = grid - ((np.array(shape) - 1) / 2)[:, None, None, None]

    def inside(
        radii: tuple[float, float, float], shift: tuple[float, float, float] = (0, 0, 0)
    ) -> np.ndarray:
        centre = np.array(shift, dtype=np.float32)[:, None, None, None]
        scale = np.array(radii, dtype=np.float32)[:, None, None, None]
        mask: np.ndarray = (((offset - centre) / scale) ** 2).sum(0) <= 1
        return mask

    right = offset[0] > 0
    labels = np.zeros(shape, np.int32)
    labels[inside((60, 40, 70), (0, -10, -80))] = 507  # neck
    for radii, ids in (
        ((80, 100, 85), (511, 511)),
        ((74, 94, 79), (515, 515)),
        ((70, 90, 75), (24, 24)),
        ((66, 86, 71), (3, 42)),
        ((55, 75, 60), (2, 41)),
    ):
        mask = inside(radii, (0, 0, 15))
        labels[mask] = np.where(right, ids[1], ids[0])[mask]
    for side, deep in ((-1, (4, 10, 17)), (1, (43, 49, 53))):
        labels[inside((6, 20, 8), (side * 10, 0, 25))] = deep[0]
        labels[inside((8, 10, 8), (side * 12, -10, 10))] = deep[1]
        labels[inside((6, 14, 6), (side * 25, -5, 0))] = deep[2]
        labels[inside((12, 12, 12), (side * 32, 88, -10))] = 506
    labels[inside((10, 12, 30), (0, -25, -20))] = 16  # brainstem
    return torch.from_numpy(labels)


def inputs() -> tuple[torch.Tensor, IntensityPriors, str]:
    canvas = ConformConfig()
    if (SYNTHSEG / "training_seg_01.nii.gz").is_file():
        label_map = load_label_map(SYNTHSEG / "training_seg_01.nii.gz", canvas)
        return label_map.labels, load_t1_priors(SYNTHSEG / "priors"), "SynthSeg training_seg_01"
    means = np.stack([np.linspace(10, 200, 25), np.full(25, 8.0)])
    stds = np.stack([np.full(25, 10.0), np.full(25, 3.0)])
    labels = phantom_labels(canvas.canvas_shape_vox)
    return labels, IntensityPriors(means=means, stds=stds), "synthetic head phantom"


# --- 2. volumes per second ----------------------------------------------------------------------


def throughput(labels: torch.Tensor, priors: IntensityPriors, repeats: int) -> None:
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    print(f"## volumes per second, default SynthConfig, canvas {tuple(labels.shape)} (median)")
    print()
    print("| device | batch | seconds per call | volumes / s |")
    print("| --- | ---: | ---: | ---: |")
    for device in devices:
        generator = SynthGenerator(SynthConfig(), priors, device=device, seed=0)
        for batch in (1, 2):
            on_device = labels.to(device)[None].expand(batch, *labels.shape).contiguous()
            seconds = timed(functools.partial(generator, on_device), repeats, device)
            print(f"| {device.type} | {batch} | {seconds:.2f} | {batch / seconds:.2f} |")
    print()


# --- 3. where the time goes ---------------------------------------------------------------------


def steps(labels: torch.Tensor, priors: IntensityPriors, repeats: int) -> None:
    generator = SynthGenerator(SynthConfig(), priors, seed=0)
    gen = generator.generator
    batch = labels[None]
    slots = generator.to_slots(batch)
    deformed = generator.deform(slots, gen)
    image = generator.sample_intensities(deformed, gen)
    shape = list(labels.shape)
    parts: list[tuple[str, Callable[[], Any]]] = [
        ("ids -> slots (lookup)", lambda: generator.to_slots(batch)),
        ("affine + diffeomorphism, one grid_sample", lambda: generator.deform(slots, gen)),
        ("per-class Gaussian intensities", lambda: generator.sample_intensities(deformed, gen)),
        ("bias field (exp of smooth field)", lambda: generator.bias_field(1, shape, gen)),
        ("resolution: blur, resample, noise, back", lambda: generator.acquire(image, gen)),
        ("normalise as conform", lambda: generator.normalise(image.clone())),
        ("slots -> aseg (lookup)", lambda: generator.tables.aseg_id[deformed]),
    ]
    print("## one volume, CPU, seconds per step (median)")
    print()
    print("| step | seconds |")
    print("| --- | ---: |")
    for name, function in parts:
        print(f"| {name} | {timed(function, repeats, torch.device('cpu')):.3f} |")
    print()


# --- 4. implementation choices ------------------------------------------------------------------


def engines(shape: tuple[int, int, int], repeats: int) -> None:
    cpu = torch.device("cpu")
    image = torch.rand((1, 1, *shape), generator=torch.Generator().manual_seed(0))
    sigma = [0.5, 0.5, 0.75 * 5.0]  # a 5 mm slice along Z
    grid_lr = [shape[0], shape[1], round(shape[2] / 5.0)]

    def matrices() -> torch.Tensor:
        out = image[0]
        for axis, (n, m) in enumerate(zip(shape, grid_lr, strict=True), start=1):
            blur = gaussian_matrix(n, sigma[axis - 1], cpu)
            if m != n:
                blur = interp_matrix(n, m, cpu) @ (interp_matrix(m, n, cpu) @ blur)
            out = along(out, blur, axis)
        return out

    def convolution() -> torch.Tensor:
        out = image
        for axis in range(3):
            radius = math.ceil(3 * sigma[axis])
            taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
            kernel = torch.exp(-0.5 * (taps / sigma[axis]) ** 2)
            view = [1, 1, 1, 1, 1]
            view[2 + axis] = taps.numel()
            pad = [0] * 6
            pad[2 * (2 - axis)] = pad[2 * (2 - axis) + 1] = radius
            out = F.conv3d(F.pad(out, pad, mode="replicate"), (kernel / kernel.sum()).view(view))
        out = F.interpolate(out, size=grid_lr, mode="trilinear", align_corners=True)
        return F.interpolate(out, size=list(shape), mode="trilinear", align_corners=True)

    coarse = [math.ceil(n / 4) for n in shape]
    displacement = torch.randn((1, 3, *coarse)) * 0.01
    theta = torch.eye(3, 4)[None] * 1.02

    def coarse_grid() -> torch.Tensor:
        axes = [torch.linspace(-1, 1, c) for c in coarse]
        points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)[None]
        grid = (points + displacement.permute(0, 2, 3, 4, 1)) @ theta[0, :, :3].T
        grid = grid.flip(-1).contiguous()
        for axis in (3, 2, 1):
            grid = along(grid, interp_matrix(shape[axis - 1], coarse[axis - 1], cpu), axis)
        return grid

    def full_grid() -> torch.Tensor:
        grid = F.affine_grid(theta, [1, 1, *shape], align_corners=True)
        full = F.interpolate(displacement, size=list(shape), mode="trilinear", align_corners=True)
        return grid + full.flip(1).permute(0, 2, 3, 4, 1)

    error = float((matrices() - convolution()[0]).abs().max())
    print(f"## implementation choices, CPU, canvas {shape}, seconds (median)")
    print()
    print("| operation | implementation | seconds |")
    print("| --- | --- | ---: |")
    rows = [
        ("blur + 5 mm slices + back", "one matrix per axis (chosen)", matrices),
        ("blur + 5 mm slices + back", "conv3d + F.interpolate", convolution),
        ("sampling grid", "4x coarser + matrix upsampling (chosen)", coarse_grid),
        ("sampling grid", "F.affine_grid + full F.interpolate", full_grid),
    ]
    for operation, implementation, function in rows:
        print(f"| {operation} | {implementation} | {timed(function, repeats, cpu):.3f} |")
    print()
    print(f"largest difference between the two acquisition implementations: {error:.2e}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--quick", action="store_true", help="one repeat (smoke run)")
    args = parser.parse_args(argv)
    repeats = 1 if args.quick else max(1, args.repeats)
    header(sys.argv if argv is None else ["benchmarks/synth.py", *argv])
    labels, priors, source = inputs()
    print(f"input: {source}, {int((labels > 0).sum())} labelled voxels on the canvas")
    print()
    throughput(labels, priors, repeats)
    steps(labels, priors, repeats)
    engines(tuple(labels.shape), repeats)  # type: ignore[arg-type]
    return 0


if __name__ == "__main__":
    sys.exit(main())
