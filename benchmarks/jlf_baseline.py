"""Joint label fusion of Mindboggle atlases onto target scans: the multi-atlas baseline.

    python benchmarks/jlf_baseline.py -o out/jlf \\
        --atlases sub-01 sub-02 sub-03 sub-04 sub-05 sub-06 sub-07 sub-08 \\
        --targets sub-09 sub-10
    wholebrain evaluate --pred out/jlf/sub-09_desc-jlf_dseg.nii.gz ... \\
        --ref .../sub-09/labels_dkt31_aseg.nii.gz ... --ref-format mindboggle \\
        --ref-brain .../sub-09/t1w_brain.nii.gz ...

Every atlas (its T1 and its manual labels, imported to dkt-aseg ids with white matter derived
as ``--ref-format mindboggle`` does) is registered to every target with ANTs SyN and the
warped labels are fused (``wholebrain.evaluate.jlf``: registration and fusion on a
``--spacing`` mm grid, labels brought back to the target's own grid as the network's are).
Writes ``<target>_desc-jlf_dseg.nii.gz`` per target and prints the seconds each took, so the
model card can compare the network with the atlases it was trained on, at their cost.

The fusion labels wherever an atlas does, also where a skull-stripped target has no signal
(its mask: tight in Mindboggle, so the sulcal CSF), which ``wholebrain segment``'s refinement
does not allow its own labels. So that the comparison is between labellings and not between
masks, two more maps per target: ``desc-jlfnosignal`` (rule 1 of ``segment.refine``: no cortex
where the target has no signal, what a fusion restricted to the target's mask gives) and
``desc-jlfrefined`` (both rules, as ``segment`` refines the network's labels).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mindboggle-oasis-trt-20-dev"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-o", "--output", required=True, type=Path)
    parser.add_argument("--atlases", nargs="+", required=True, metavar="SUBJECT")
    parser.add_argument("--targets", nargs="+", required=True, metavar="SUBJECT")
    parser.add_argument("--root", type=Path, default=DATA, help="the Mindboggle folder")
    parser.add_argument("--spacing", type=float, default=2.0, help="registration grid, mm")
    parser.add_argument("--transform", default="SyN", help="ants.registration preset")
    args = parser.parse_args(argv)

    from wholebrain.evaluate.jlf import FusionConfig, segment_by_fusion
    from wholebrain.io import load_image, load_labels, save_volume
    from wholebrain.protocols import get_protocol
    from wholebrain.protocols.importers import import_labels
    from wholebrain.segment.refine import cortex_white_matter_pairs, refine_cortex

    pairs = cortex_white_matter_pairs(get_protocol("dkt-aseg"))
    refinements = {"jlfnosignal": {"grey_white": False}, "jlfrefined": {"grey_white": True}}

    machine.header("wholebrain joint label fusion baseline", ["benchmarks/jlf_baseline.py", *argv])
    config = FusionConfig(spacing_mm=args.spacing, type_of_transform=args.transform)
    print(f"grid {args.spacing:g} mm, {args.transform}, {len(args.atlases)} atlases")
    atlases = []
    for subject in args.atlases:
        scan = load_image(args.root / subject / "t1w_brain.nii.gz")
        labels = load_labels(args.root / subject / "labels_dkt31_aseg.nii.gz", like=scan)
        ids, _ = import_labels(
            labels.data, "mindboggle", brain_mask=scan.data > 0, spacing_mm=scan.spacing_mm
        )
        atlases.append((scan, ids))
    for subject in args.targets:
        if subject in args.atlases:
            print(f"{subject}: is an atlas; refusing to score it", file=sys.stderr)
            return 2
        target = load_image(args.root / subject / "t1w_brain.nii.gz")
        started = time.perf_counter()
        fused = segment_by_fusion(target, atlases, config)
        seconds = time.perf_counter() - started
        path = save_volume(
            fused, target, args.output / f"{subject}_desc-jlf_dseg.nii.gz", force=True
        )
        print(f"{subject}: {seconds:.1f} s ({len(atlases)} registrations + fusion) -> {path}")
        for desc, settings in refinements.items():
            labels = fused.copy()
            changed = refine_cortex(labels, target.data, target.spacing_mm, pairs, **settings)
            path = save_volume(
                labels, target, args.output / f"{subject}_desc-{desc}_dseg.nii.gz", force=True
            )
            print(f"{subject}: {desc}: {changed} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
