"""Benchmark of training throughput: our loop vs a plain MONAI loop on random tensors.

Run: ``python benchmarks/train_throughput.py`` (``--device cuda``, ``--steps N``, ``--quick``).

Rows, each measured in a fresh subprocess (so peak memory is that row's own):

- ``MONAI reference``: the same network (``MultiHeadUNet``, same heads), batch and patch, on
  fixed random tensors, ``monai.losses.DiceCELoss`` per head, AdamW: no data path at all;
- the same with the project's loss (``wholebrain.losses.dice_ce_loss``): the loss's own cost;
- ``wholebrain train``: the real :func:`wholebrain.train.train` (``multitask``: full + tissue
  heads) on a phantom cohort written through manifest -> cache: sampler, patch reading,
  device augmentation (affine + elastic, flip, background, bias, gamma, resolution, noise),
  forward, both head losses, backward, optimiser. Timed from its own ``metrics.csv`` between
  the row after the warm-up steps and the last row, so start-up and the final checkpoint and
  validation are not counted;
- the same with ``augment.enabled = false``: the cost of augmentation;
- the data path alone (plan, patch + context reading, augmentation; no network): its
  steps/s is the ceiling the data path puts on training with ``num_workers = 0``.

steps/s, voxels/s (patch voxels x batch x steps/s) and peak memory (CPU: the subprocess's peak
resident set, ``resource.getrusage``; GPU: ``torch.cuda.max_memory_allocated``). The printed
report is also written to ``benchmarks/results/train_throughput.txt``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results" / "train_throughput.txt"
# (canvas, patch, filters) per device: CPU small enough to run on a laptop, GPU the recipe's.
SIZES = {
    "cpu": ((64, 64, 64), (32, 32, 32), (8, 16, 32)),
    "cuda": ((192, 224, 224), (128, 128, 128), (32, 64, 128, 256, 320)),
}


def _header(argv: list[str], device: str) -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = os.getloadavg()
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    import monai

    return [
        "# wholebrain training throughput: our loop vs a plain MONAI loop",
        f"date:     {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"command:  python {' '.join(argv)}",
        f"machine:  {cpu}, {cores} cores usable, {platform.system()} {platform.machine()}",
        f"gpu:      {gpu} (device used: {device})",
        f"load:     {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (1/5/15 min, before the run)",
        f"versions: python {platform.python_version()}, torch {torch.__version__}, "
        f"monai {monai.__version__}, numpy {np.__version__}",
    ]


# --- the rows (each runs in its own process) ----------------------------------------------


def _phantom_cohort(root: Path, canvas: tuple[int, int, int], spacing_mm: float) -> Path:
    """3 full + 3 tissue phantom subjects (ellipsoid brains, left/right labels)."""
    import nibabel as nib

    from wholebrain.data.manifest import Entry, write_manifest

    shape = tuple(int(n * 0.85) for n in canvas)
    entries = []
    for i in range(6):
        rng = np.random.default_rng(i)
        grid = np.indices(shape).astype(np.float32)
        centre = (np.array(shape) - 1) / 2
        rel = (grid - centre[:, None, None, None]) / (np.array(shape) * 0.4)[:, None, None, None]
        r = np.sqrt((rel**2).sum(0))
        left = grid[0] < centre[0]
        full = np.zeros(shape, np.int16)
        tissue = np.zeros(shape, np.int16)
        for lo, hi, ids, t in (
            (0.7, 1, (1028, 2028), 2),
            (0.3, 0.7, (2, 41), 3),
            (0, 0.3, (4, 43), 1),
        ):
            mask = (r >= lo) & (r < hi)
            full[mask & left], full[mask & ~left] = ids
            tissue[mask] = t
        image = np.choose(tissue, [0, 25, 60, 100]).astype(np.float32)
        image += (tissue > 0) * rng.normal(0, 4, shape).astype(np.float32)
        affine = np.diag([spacing_mm] * 3 + [1.0])
        folder = root / f"sub-{i}"
        folder.mkdir(parents=True)
        nib.save(nib.Nifti1Image(image, affine), folder / "t1.nii.gz")
        labels, fmt = (full, "dkt-aseg") if i < 3 else (tissue, "tissue")
        nib.save(nib.Nifti1Image(labels, affine), folder / "labels.nii.gz")
        entries.append(Entry(f"sub-{i}", folder / "t1.nii.gz", folder / "labels.nii.gz", fmt, fmt))
    return write_manifest(entries, root / "manifest.csv")


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def _row_loop(args: argparse.Namespace, augment: bool) -> dict[str, Any]:
    from wholebrain.conform import ConformConfig
    from wholebrain.data.augment import AugmentConfig
    from wholebrain.data.dataset import DataConfig
    from wholebrain.model import ModelConfig
    from wholebrain.train import OptimConfig, TrainConfig, ValConfig, train

    canvas, patch, filters = SIZES[args.device]
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest = _phantom_cohort(root / "cohort", canvas, 1.0)
        warmup, steps = args.warmup, args.warmup + args.steps
        config = TrainConfig(
            strategy="multitask",
            steps=steps,
            batch_size=args.batch,
            log_every=warmup,
            checkpoint_every=0,
            cpu_threads=args.threads,
            output_dir=str(root / "run"),
            model=ModelConfig(filters=filters),
            conform=ConformConfig(canvas_shape_vox=canvas),
            data=DataConfig(
                manifest=str(manifest),
                cache_dir=str(root / "cache"),
                patch_size_vox=patch,
                num_workers=args.workers,
            ),
            augment=AugmentConfig(enabled=augment),
            optim=OptimConfig(lr=1e-3),
            val=ValConfig(every=0),
        )
        if args.device == "cpu":
            config = replace(config, amp="off")
        train(config, device=args.device, progress=False)
        lines = (root / "run" / "metrics.csv").read_text().splitlines()[1:]
        seconds = [float(line.rsplit(",", 1)[1]) for line in lines]
        steps_per_s = args.steps / (seconds[-1] - seconds[0])
    return {"steps_per_s": steps_per_s, "peak_mb": _peak_memory_mb(device)}


def _row_data(args: argparse.Namespace) -> dict[str, Any]:
    """The data path alone: plan, read (patch + context), to the device, augment."""
    from wholebrain.conform import ConformConfig
    from wholebrain.data.augment import AugmentConfig, Augmenter, context_vox
    from wholebrain.data.dataset import DataConfig, TrainingData, step_seed

    if args.threads:
        torch.set_num_threads(args.threads)
    canvas, patch, _ = SIZES[args.device]
    device = torch.device(args.device)
    conform = ConformConfig(canvas_shape_vox=canvas)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        manifest = _phantom_cohort(root / "cohort", canvas, 1.0)
        config = DataConfig(manifest=str(manifest), cache_dir=str(root / "c"), patch_size_vox=patch)
        data = TrainingData(config, conform)
        augment_config = AugmentConfig()
        context = context_vox(augment_config, patch)
        protocols = ("dkt-aseg", "tissue")
        augment = Augmenter(augment_config, protocols, device, conform)
        shares = {"full": 0.5, "partial": 0.5}

        def step(s: int) -> None:
            batch = data.load(
                data.plan(s, shares, batch_size=args.batch), protocols, context_vox=context
            )
            gen = torch.Generator(device=device).manual_seed(step_seed(0, s, 1))
            augment(batch.image.to(device), batch.labels.to(device), patch, gen)

        for s in range(args.warmup):
            step(s)
        start = time.perf_counter()
        for s in range(args.warmup, args.warmup + args.steps):
            step(s)
        if device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - start
    return {"steps_per_s": args.steps / seconds, "peak_mb": _peak_memory_mb(device)}


def _row_monai(args: argparse.Namespace, own_loss: bool = False) -> dict[str, Any]:
    from monai.losses import DiceCELoss

    from wholebrain.losses import dice_ce_loss
    from wholebrain.model import ModelConfig, MultiHeadUNet

    if args.threads:
        torch.set_num_threads(args.threads)
    _, patch, filters = SIZES[args.device]
    device = torch.device(args.device)
    torch.manual_seed(0)
    heads = {"dkt-aseg": 99, "tissue": 4}
    model = MultiHeadUNet(ModelConfig(filters=filters), heads).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    image = torch.randn((args.batch, 1, *patch), device=device)
    targets = {
        h: torch.randint(0, k, (args.batch, 1, *patch), device=device) for h, k in heads.items()
    }
    amp = device.type == "cuda"

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            logits = model(image)
        if own_loss:
            loss = sum(dice_ce_loss(logits[h].float(), targets[h][:, 0]) for h in heads)
        else:
            loss = sum(loss_fn(logits[h].float(), targets[h]) for h in heads)
        loss.backward()  # type: ignore[union-attr]
        optimizer.step()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return {
        "steps_per_s": args.steps / (time.perf_counter() - start),
        "peak_mb": _peak_memory_mb(device),
    }


ROWS = {
    "monai": ("MONAI reference (random tensors, DiceCELoss)", _row_monai),
    "monai-ownloss": (
        "MONAI reference with wholebrain.losses.dice_ce_loss",
        lambda a: _row_monai(a, own_loss=True),
    ),
    "loop-noaug": ("wholebrain train (multitask, no augmentation)", lambda a: _row_loop(a, False)),
    "loop": ("wholebrain train (multitask, augmentation)", lambda a: _row_loop(a, True)),
    "data": ("data path only (plan + read + augment)", _row_data),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--steps", type=int, default=10, help="timed steps per row (10)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (3)")
    parser.add_argument("--batch", type=int, default=2, help="batch size (2)")
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1; 0 = all)")
    parser.add_argument("--quick", action="store_true", help="3 steps per row, a smoke run")
    parser.add_argument("--row", choices=sorted(ROWS), help=argparse.SUPPRESS)  # subprocess
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.warmup = 3, 1
    if args.row:  # one row, in this (fresh) process: print its numbers as JSON
        print(json.dumps(ROWS[args.row][1](args)))
        return 0
    argv_text = sys.argv if argv is None else ["benchmarks/train_throughput.py", *argv]
    lines = _header(argv_text, args.device)
    canvas, patch, filters = SIZES[args.device]
    voxels = args.batch * int(np.prod(patch))
    lines += [
        f"setup:    multitask heads dkt-aseg (99) + tissue (4); filters {list(filters)}; patch "
        f"{'x'.join(map(str, patch))}; batch {args.batch}; canvas {'x'.join(map(str, canvas))}; "
        f"{args.warmup} warm-up + {args.steps} timed steps; {args.threads or 'all'} CPU "
        f"thread(s); {args.workers} DataLoader workers",
        "",
        f"| {'loop':<52} | steps/s | Mvoxels/s | peak memory MB | vs MONAI |",
        f"| {'-' * 52} | ------: | --------: | -------------: | -------: |",
    ]
    results = {}
    for key in ROWS:
        command = [
            sys.executable,
            __file__,
            "--row",
            key,
            *(argv if argv is not None else sys.argv[1:]),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        results[key] = json.loads(done.stdout.strip().splitlines()[-1])
    reference = results["monai"]["steps_per_s"]
    for key in ROWS:
        r = results[key]
        lines.append(
            f"| {ROWS[key][0]:<52} | {r['steps_per_s']:7.3f} "
            f"| {r['steps_per_s'] * voxels / 1e6:9.3f} | {r['peak_mb']:14.0f} "
            f"| {r['steps_per_s'] / reference:7.2f}x |"
        )
    report = "\n".join(lines) + "\n"
    print(report, end="")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
