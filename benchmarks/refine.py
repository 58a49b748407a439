"""How much the cortical-ribbon refinement (``wholebrain.segment.refine``) buys, rule by rule.

    python benchmarks/refine.py [--model PATH] [--subjects sub-01 ... sub-08] [--spacing X Y Z]

For each Mindboggle subject: ``Segmenter`` with segment's defaults but ``refine=False`` (the
network's labels as they come back from its canvas), then those labels refined in several ways,
each scored by ``wholebrain.evaluate`` (``evaluate_pair``, dkt-aseg, white matter derived from
``t1w_brain``) against the manual labels:

- ``network``: unrefined;
- ``no signal``: rule 1 alone (no cortex on voxels of intensity 0);
- ``fraction F``: both rules, the grey/white threshold F of the way from the local cortex mean to
  the local white matter mean (``segment.refine.FRACTION`` is the default), without the dark
  part of rule 1;
- ``one threshold``: the same with the default fraction, but means over the whole scan
  (``sigma_mm`` 10 m) instead of local ones;
- ``dark D``: both rules with the default fraction, and cortex darker than D times the local
  cortex mean cleared too (``segment.refine.DARK`` is the default; 0 above);
- ``depth D mm``: all the defaults, but rule 2 repeated until it reaches D mm along the finest
  voxel axis (``segment.refine.DEPTH_MM`` is the default; one pass on 1 mm voxels whatever D
  up to 1, two for 1 mm on 0.7 mm voxels).

``--spacing``: the scans are first resampled to these voxel sizes (``robustness.resampled``: a
slice profile, then linear interpolation), as scans acquired on another grid would be; the
labels are scored on the original grid. Resampling blurs the edge of a skull-stripped scan,
so its sulci are no longer exactly 0: what the dark part of rule 1 is for.

The default subjects are the eight the shipped model trained on: the refinement's settings are
chosen there, and the held-out sub-09/10 (``--subjects sub-09 sub-10``) only check the choice.
Needs ../shared/data.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
from grid_ceiling import group_columns, group_means
from robustness import resampled

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mindboggle-oasis-trt-20-dev"
TRAINING = tuple(f"sub-{n:02d}" for n in range(1, 9))
FRACTIONS = (0.3, 0.35, 0.4, 0.45, 0.5)
GLOBAL_SIGMA_MM = 1e4  # wider than any head: one threshold for the whole scan
DARKS = (0.3, 0.4, 0.5, 0.6, 0.7)
DEPTHS_MM = (0.5, 1.0, 1.5, 2.0)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--subjects", nargs="+", default=list(TRAINING), metavar="SUBJECT")
    parser.add_argument("--root", type=Path, default=DATA, help="the Mindboggle folder")
    parser.add_argument(
        "--spacing", nargs=3, type=float, metavar=("X", "Y", "Z"), help="resample the scans first"
    )
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"no Mindboggle data at {args.root}: nothing to measure", file=sys.stderr)
        return 2

    from wholebrain.evaluate import Evaluation, evaluate_pair
    from wholebrain.io import Volume, load_image
    from wholebrain.segment.predict import Segmenter
    from wholebrain.segment.refine import (
        DARK,
        DEPTH_MM,
        FRACTION,
        cortex_white_matter_pairs,
        refine_cortex,
    )

    machine.header("wholebrain cortical-ribbon refinement", ["benchmarks/refine.py", *argv])
    segmenter = Segmenter(args.model, refine=False)
    pairs = cortex_white_matter_pairs(segmenter.protocol)
    calibrated = "calibrated" if segmenter.calibrated else "uncalibrated"
    grid = "x".join(f"{s:g}" for s in args.spacing) + " mm" if args.spacing else "as given"
    print(
        f"model: {segmenter.checkpoint.path} (step {segmenter.checkpoint.step}, {calibrated}), "
        f"flip TTA, {segmenter.canvases} canvases; scans {grid}; scored by wholebrain evaluate "
        "(dkt-aseg) on the original grid"
    )
    variants: dict[str, dict[str, object]] = {
        "network": {},
        "no signal": {"grey_white": False},
        **{f"fraction {f:g}": {"fraction": f, "dark": 0} for f in FRACTIONS},
        f"one threshold {FRACTION:g}": {"sigma_mm": GLOBAL_SIGMA_MM, "dark": 0},
        **{f"dark {d:g}" + (" (default)" if d == DARK else ""): {"dark": d} for d in DARKS},
        **{
            f"depth {d:g} mm" + (" (default)" if d == DEPTH_MM else ""): {"depth_mm": d}
            for d in DEPTHS_MM
        },
    }
    results: dict[str, list] = {name: [] for name in variants}
    print(
        f"{'subject':<8} {'variant':<20} {'cortical':>8} {'subcort':>8} {'all':>6} "
        f"{'HD95 mm':>8} {'changed':>8} {'refine s':>8}"
    )
    for subject in args.subjects:
        brain_file = args.root / subject / "t1w_brain.nii.gz"
        labels_file = args.root / subject / "labels_dkt31_aseg.nii.gz"
        scan = load_image(brain_file)
        if args.spacing:
            scan = Volume(*resampled(scan.data, scan.affine, tuple(args.spacing)))
        network = segmenter.segment(scan).labels
        for name, settings in variants.items():
            labels = network.copy()
            started = time.perf_counter()
            changed = 0
            if name != "network":
                counts = refine_cortex(labels, scan.data, scan.spacing_mm, pairs, **settings)  # type: ignore[arg-type]
                changed = sum(counts.values())
            seconds = time.perf_counter() - started
            result = evaluate_pair(
                Volume(labels, scan.affine),
                labels_file,
                protocol="dkt-aseg",
                ref_format="mindboggle",
                ref_brain=brain_file,
            )
            results[name].append(result)
            means = group_means(Evaluation("dkt-aseg", (result,)))
            print(_row(subject, name, means, f"{changed:8d} {seconds:8.2f}"))
    print()
    for name in variants:
        means = group_means(Evaluation("dkt-aseg", tuple(results[name])))
        print(_row("mean", name, means, ""))
    return 0


def _row(subject: str, variant: str, means: dict[str, dict[str, float]], tail: str) -> str:
    return f"{subject:<8} {variant:<20} {group_columns(means)} {tail}"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
