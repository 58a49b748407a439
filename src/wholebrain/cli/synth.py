"""``wholebrain synth``: synthetic whole-head T1w scans (with exact aseg labels) from label maps.

    wholebrain synth ../shared/data/synthseg-label-maps/training_seg_*.nii.gz -o synth/ -n 5 \\
        --manifest synth/manifest.csv

Per label map and sample k: ``<stem>_synth-<k>_T1w.nii.gz`` (float32 image on the canvas,
normalised as conform normalises scans) and ``<stem>_synth-<k>_desc-aseg_dseg.nii.gz`` (``aseg``
ids). Sample k of a map depends only on (seed, map name, k), so reruns skip finished samples and
produce the same files.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from wholebrain.conform import ConformConfig

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "synth",
        help="synthetic T1w scans with exact labels from SynthSeg-style label maps",
        description="Draw SynthSeg-style synthetic whole-head scans (random deformation, "
        "per-class T1 intensities, bias field, resolution, noise) from label maps; labels "
        "are written in the aseg protocol. Skips samples already written unless --force.",
    )
    parser.add_argument("label_maps", nargs="+", metavar="LABELMAP", help="generation label map")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument(
        "-n", "--samples", type=int, default=1, metavar="N", help="samples per label map (1)"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the draws (0)")
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to compute")
    parser.add_argument(
        "--contrast",
        choices=("t1", "uniform"),
        default="t1",
        help="t1: SynthSeg's T1 intensity priors (default); uniform: random contrast",
    )
    parser.add_argument(
        "--priors",
        metavar="DIR",
        help="folder with prior_means_t1.npy and prior_stds_t1.npy (default: priors/ beside "
        "the first label map)",
    )
    parser.add_argument(
        "--manifest",
        metavar="PATH",
        help="add the samples to this manifest CSV (created or extended)",
    )
    parser.add_argument(
        "--canvas",
        type=int,
        nargs=3,
        metavar=("X", "Y", "Z"),
        help="canvas size in voxels (default: conform's, 192 224 224); use the training canvas",
    )
    parser.add_argument("--force", action="store_true", help="overwrite samples already written")
    # Also accepted after the subcommand; SUPPRESS keeps "wholebrain -q synth" working.
    parser.add_argument(
        "--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import hashlib

    import numpy as np
    import torch
    from tqdm import tqdm

    from wholebrain.conform import ConformConfig
    from wholebrain.data.manifest import Entry, read_manifest, write_manifest
    from wholebrain.errors import InputError
    from wholebrain.io import SUFFIXES, save_volume
    from wholebrain.synth import (
        SynthConfig,
        SynthGenerator,
        load_label_map,
        load_t1_priors,
        resolve_device,
    )

    if args.samples < 1:
        raise InputError(None, "--samples of at least 1", str(args.samples), "pass -n 1 or more")
    maps = [Path(p) for p in args.label_maps]
    stems = [_stem(p.name, SUFFIXES) for p in maps]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise InputError(
            None,
            "label maps with distinct file names (they name the outputs)",
            f"{', '.join(repeated)} more than once",
            "rename or copy one of them",
        )
    device = resolve_device(args.device)
    priors = None
    if args.contrast == "t1":
        priors = load_t1_priors(Path(args.priors) if args.priors else maps[0].parent / "priors")
    canvas = ConformConfig() if args.canvas is None else _canvas(args.canvas)
    config = SynthConfig(contrast=args.contrast)
    generator = SynthGenerator(config, priors, device=device, conform_config=canvas)
    out_dir = Path(args.output)
    quiet = bool(getattr(args, "quiet", False))

    entries: list[Entry] = []
    written = skipped = 0
    with tqdm(total=len(maps) * args.samples, desc="synth", unit="scan", disable=quiet) as bar:
        for path, stem in zip(maps, stems, strict=True):
            todo: list[int] = []
            for k in range(args.samples):
                image_path, label_path = _outputs(out_dir, stem, k)
                entries.append(
                    Entry(
                        subject=f"{stem}_synth-{k:03d}",
                        image=image_path,
                        annotation=label_path,
                        format="aseg",
                        protocol="aseg",
                        split="train",
                    )
                )
                if args.force or not (image_path.exists() and label_path.exists()):
                    todo.append(k)
            skipped += args.samples - len(todo)
            bar.update(args.samples - len(todo))
            if not todo:
                continue
            label_map = load_label_map(path, canvas)  # only when something is left to draw
            like = label_map.canvas_volume
            labels = label_map.labels[None].to(device)
            for k in todo:
                # One generator per sample: sample k is the same whatever else was skipped.
                digest = hashlib.sha256(f"{args.seed}:{stem}:{k}".encode()).digest()
                gen = torch.Generator(device=device)
                gen.manual_seed(int.from_bytes(digest[:8], "little") >> 1)
                image, aseg = generator(labels, gen)
                image_path, label_path = _outputs(out_dir, stem, k)
                # A lone file of a pair is our own interrupted output: replace it.
                save_volume(image[0, 0].cpu().numpy(), like, image_path, force=True)
                save_volume(aseg[0].cpu().numpy().astype(np.int32), like, label_path, force=True)
                written += 1
                bar.update(1)
    log.info("wrote %d sample(s), %d already there, in %s", written, skipped, out_dir)
    if args.manifest:
        manifest = Path(args.manifest)
        new = {e.subject for e in entries}
        previous = read_manifest(manifest) if manifest.exists() else []
        kept = [e for e in previous if e.subject not in new]
        write_manifest([*kept, *entries], manifest, force=True)  # extending is the point
        total = len(kept) + len(entries)
        log.info("manifest %s: %d rows, %d of them these samples", manifest, total, len(entries))
    print(f"{out_dir}: {written} written, {skipped} already there")
    return 0


def _canvas(shape: list[int]) -> ConformConfig:
    from wholebrain.conform import ConformConfig
    from wholebrain.errors import InputError

    try:
        return ConformConfig(canvas_shape_vox=(shape[0], shape[1], shape[2]))
    except ValueError as error:
        raise InputError(None, "--canvas of 3 positive sizes", str(shape), str(error)) from None


def _stem(name: str, suffixes: tuple[str, ...]) -> str:
    """File name without its image suffix: ``training_seg_01.nii.gz`` -> ``training_seg_01``."""
    for suffix in sorted(suffixes, key=len, reverse=True):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return name


def _outputs(folder: Path, stem: str, k: int) -> tuple[Path, Path]:
    """(image, labels) paths of sample k of a label map."""
    base = f"{stem}_synth-{k:03d}"
    return folder / f"{base}_T1w.nii.gz", folder / f"{base}_desc-aseg_dseg.nii.gz"
