"""The best Dice a network working on a given canvas grid could reach: manual labels round-tripped.

    python benchmarks/grid_ceiling.py [--subjects sub-09 sub-10] [--grids 2:96x112x112 ...]

A network predicts on the canvas (``wholebrain.conform``: whole-head field of view at
``spacing_mm``) and its labels go back to the scan's grid by ``Conformed.to_native``. Even a
perfect network cannot beat the manual labels themselves sent the same way: canvas by
``labels_to_canvas`` (vote), back by ``to_native``. This script does exactly that for Mindboggle
subjects and scores the round trip with ``wholebrain.evaluate`` against the untouched labels
(dkt-aseg, white matter derived from ``t1w_brain`` as ``--ref-format mindboggle`` does). It tells
how far a canvas spacing can go before any training is spent on it: the 62 cortical regions are
thin ribbons, so the loss grows fast with voxel size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mindboggle-oasis-trt-20-dev"
# spacing mm : canvas voxels, each a whole head (~19 x 22 x 22 cm) in steps the U-Net divides.
GRIDS = ("1:192x224x224", "1.5:128x160x160", "2:96x112x112")


def parse_grid(text: str) -> tuple[float, tuple[int, int, int]]:
    """``"2:96x112x112"`` -> (2.0, (96, 112, 112))."""
    spacing, _, shape = text.partition(":")
    sizes = tuple(int(n) for n in shape.split("x"))
    if len(sizes) != 3:
        raise argparse.ArgumentTypeError(f"grid {text!r}: want SPACING:XxYxZ, e.g. 2:96x112x112")
    return float(spacing), (sizes[0], sizes[1], sizes[2])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--subjects", nargs="+", default=["sub-09", "sub-10"], metavar="SUBJECT")
    parser.add_argument("--grids", nargs="+", type=parse_grid, default=list(map(parse_grid, GRIDS)))
    parser.add_argument("--root", type=Path, default=DATA, help="the Mindboggle folder")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"no Mindboggle data at {args.root}: nothing to measure", file=sys.stderr)
        return 2

    from wholebrain.conform import ConformConfig, conform
    from wholebrain.evaluate import Evaluation, evaluate_pair
    from wholebrain.io import Volume, load_image, load_labels
    from wholebrain.protocols.importers import import_labels

    machine.header("wholebrain canvas-grid ceiling", ["benchmarks/grid_ceiling.py", *argv])
    print("manual labels -> canvas (vote) -> scan grid, scored against themselves (dkt-aseg)")
    print(
        f"{'spacing':>7}  {'canvas':<12} {'subject':<8} {'cortical':>8} {'subcort':>8} "
        f"{'all':>6} {'HD95 mm':>8} {'s':>5}"
    )
    for spacing, shape in args.grids:
        config = ConformConfig(canvas_shape_vox=shape, spacing_mm=spacing)
        results = []
        for subject in args.subjects:
            started = time.perf_counter()
            brain_file = args.root / subject / "t1w_brain.nii.gz"
            labels_file = args.root / subject / "labels_dkt31_aseg.nii.gz"
            scan = load_image(brain_file)
            manual = load_labels(labels_file, like=scan)
            ids, _ = import_labels(
                manual.data, "mindboggle", brain_mask=scan.data > 0, spacing_mm=scan.spacing_mm
            )
            conformed = conform(scan, config)
            round_trip = conformed.to_native(conformed.labels_to_canvas(ids))
            result = evaluate_pair(
                Volume(round_trip, scan.affine),
                labels_file,
                protocol="dkt-aseg",
                ref_format="mindboggle",
                ref_brain=brain_file,
            )
            results.append(result)
            seconds = time.perf_counter() - started
            print(
                _row(
                    spacing,
                    shape,
                    subject,
                    group_means(Evaluation("dkt-aseg", (result,))),
                    seconds,
                )
            )
        print(
            _row(spacing, shape, "mean", group_means(Evaluation("dkt-aseg", tuple(results))), None)
        )
    return 0


def group_means(evaluation: Any) -> dict[str, dict[str, float]]:
    """Group -> {"dice", "hd95"}: each pair's group mean, averaged over the pairs."""
    means, _ = evaluation.group_values()
    return {
        group: {
            "dice": float(np.nanmean(means["dice"][:, g])),
            "hd95": float(np.nanmean(means["hd95_mm"][:, g])),
        }
        for g, group in enumerate(evaluation.groups)
    }


def group_columns(means: dict[str, dict[str, float]]) -> str:
    """The columns every Dice benchmark prints: cortical, subcortical and all Dice, HD95 mm."""
    return (
        f"{means['cortical']['dice']:8.3f} {means['subcortical']['dice']:8.3f} "
        f"{means['all']['dice']:6.3f} {means['all']['hd95']:8.2f}"
    )


def _row(
    spacing: float,
    shape: tuple[int, int, int],
    subject: str,
    means: dict[str, dict[str, float]],
    seconds: float | None,
) -> str:
    canvas = "x".join(map(str, shape))
    timing = "" if seconds is None else f"{seconds:5.1f}"
    return f"{spacing:>7g}  {canvas:<12} {subject:<8} {group_columns(means)} {timing:>5}"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
