"""Is the model left-right symmetric? Segment held-out subjects and their mirror images.

Run: ``python benchmarks/mirror_symmetry.py`` (``--model PATH``, ``--subjects sub-09 sub-10``,
``--canvases N``, ``--no-tta``, ``--no-refine``). Needs ../shared/data (Mindboggle dev subjects).

Why: on the held-out subjects the shipped model's right-hemisphere cortical regions score
~0.04 Dice below the left ones (joint label fusion shows no such gap). Two causes would look
the same in a Dice table: a model that treats the hemispheres differently (a bug in the
flip augmentation's label swap, in the flip TTA's mirrored head, or in the conformed grid),
or these subjects' right hemispheres being harder or traced differently. Mirroring tells
them apart. Each subject's scan and reference are flipped along the world's left-right axis
(the reference's classes swapped with ``flip_permutation``): the mirrored scan's *left*
hemisphere is the original *right* one. If the model is symmetric, a structure scores the
same as its mirror twin did on the original (``Left-Putamen`` on the mirror ~ ``Right-Putamen``
on the original), and the hemisphere gap swaps sides with the anatomy; if the model is biased,
the gap stays with the label side.

Prints the machine header, then per subject and mean: cortical and other Left-*/Right-* mean
Dice per hemisphere on the original and the mirrored scan, and how far each structure's Dice
moved between the original and its twin on the mirror (mean and largest absolute change).
"""

from __future__ import annotations

import argparse
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
from model_card import pose_field  # the pose as the card matches it
from wholebrain.evaluate.metrics import dice_per_class
from wholebrain.io import Volume, load_image, load_labels
from wholebrain.protocols import FULL_PROTOCOL, flip_permutation, get_protocol
from wholebrain.protocols.importers import import_labels

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINDBOGGLE = SHARED_DATA / "mindboggle-oasis-trt-20-dev"
HELD_OUT = ("sub-09", "sub-10")  # never trained on (configs/shipped-cpu.toml)

# Name prefixes of each hemisphere: cortical regions, then the other Left-*/Right-* structures.
SIDES = {"left": ("ctx-lh-", "Left-"), "right": ("ctx-rh-", "Right-")}


@dataclass(frozen=True)
class Scan:
    image: Volume
    reference: np.ndarray  # dkt-aseg ids on the image's grid


def left_right_axis(affine: np.ndarray) -> int:
    """The voxel axis that runs most nearly along the world's left-right (RAS X) direction."""
    return int(np.argmax(np.abs(affine[0, :3])))


def mirrored(scan: Scan) -> Scan:
    """The scan and its reference flipped left-right in voxel space, the reference's classes
    swapped: a mirror-image subject on the same grid (the mirror plane is the grid's centre)."""
    axis = left_right_axis(scan.image.affine)
    protocol = get_protocol(FULL_PROTOCOL)
    classes = protocol.to_index(np.flip(scan.reference, axis))
    reference = protocol.from_index(flip_permutation(FULL_PROTOCOL)[classes])
    image = Volume(np.ascontiguousarray(np.flip(scan.image.data, axis)), scan.image.affine)
    return Scan(image, reference)


def load_subject(subject: str) -> Scan:
    folder = MINDBOGGLE / subject
    image = load_image(folder / "t1w_brain.nii.gz")
    labels = load_labels(folder / "labels_dkt31_aseg.nii.gz", like=image)
    reference, _ = import_labels(
        labels.data, "mindboggle", brain_mask=image.data > 0, spacing_mm=image.spacing_mm
    )
    return Scan(image, reference)


def side_mean(dice: np.ndarray, names: tuple[str, ...], prefix: str) -> float:
    chosen = [i for i, name in enumerate(names) if name.startswith(prefix)]
    return float(np.nanmean(dice[chosen]))


def row(label: str, dice: np.ndarray, names: tuple[str, ...]) -> str:
    cells = [side_mean(dice, names, SIDES[side][k]) for k in (0, 1) for side in ("left", "right")]
    return f"| {label} | " + " | ".join(f"{c:.3f}" for c in cells) + " |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, help="checkpoint (default: the shipped model)")
    parser.add_argument("--subjects", nargs="+", default=list(HELD_OUT))
    parser.add_argument("--canvases", type=int, default=2)
    parser.add_argument("--no-tta", action="store_true", help="without flip TTA")
    parser.add_argument("--no-refine", action="store_true", help="without the ribbon refinement")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if not MINDBOGGLE.is_dir():
        print(f"mirror_symmetry: {MINDBOGGLE} is missing (../shared/data)", file=sys.stderr)
        return 2

    from wholebrain.segment.predict import Segmenter  # torch: after the argument checks

    machine.header("Left-right symmetry of the model", sys.argv if argv is None else argv)
    segmenter = Segmenter(
        args.model,
        device=args.device,
        tta=not args.no_tta,
        canvases=args.canvases,
        refine=not args.no_refine,
    )
    protocol = segmenter.protocol
    if protocol.name != FULL_PROTOCOL:  # the references are imported into dkt-aseg ids
        print(
            f"mirror_symmetry: the model labels {protocol.name!r}, not {FULL_PROTOCOL!r}",
            file=sys.stderr,
        )
        return 2
    names, ids = protocol.names[1:], protocol.ids[1:]  # no background
    twins = flip_permutation(protocol.name)[1:] - 1  # mirror twin of each, itself on the midline
    step = segmenter.checkpoint.step
    calibrated = "yes" if segmenter.calibrated else "no"
    pose = pose_field(segmenter.pose_pitch_deg)
    model = f"{args.model or 'shipped'} (step {step}, calibrated {calibrated}, brain pitch {pose})"
    print(
        f"model: {model}, flip TTA {not args.no_tta}, {args.canvases} canvases, "
        f"refined {not args.no_refine}"
    )
    print()
    print("Mean Dice per hemisphere (cortical: the 31 DKT regions a side; other: the non-cortical")
    print("Left-*/Right-* structures). On the mirror, 'left' is the original right hemisphere.")
    print()
    print("| subject, scan | cortical left | cortical right | other Left-* | other Right-* |")
    print("| --- | --- | --- | --- | --- |")
    originals, mirrors = [], []
    for subject in args.subjects:
        scan = load_subject(subject)
        mirror = mirrored(scan)
        for tag, case, store in (("original", scan, originals), ("mirrored", mirror, mirrors)):
            labels = segmenter.segment(case.image).labels
            dice = dice_per_class(labels, case.reference, ids)
            store.append(dice)
            print(row(f"{subject}, {tag}", dice, names))
    with warnings.catch_warnings():  # classes absent from every reference stay NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        original, mirror = np.nanmean(originals, axis=0), np.nanmean(mirrors, axis=0)
    print(row("mean, original", original, names))
    print(row("mean, mirrored", mirror, names))
    print()
    # The same anatomy scored twice: structure s on the original, its twin on the mirror.
    change = np.abs(mirror[twins] - original)
    worst = int(np.nanargmax(change))
    print(
        f"Dice of each structure on the original vs its mirror twin on the mirrored scan "
        f"({np.isfinite(change).sum()} structures): mean |change| {np.nanmean(change):.4f}, "
        f"largest {change[worst]:.4f} ({names[worst]}: {original[worst]:.3f} vs "
        f"{mirror[twins][worst]:.3f})"
    )
    gap = side_mean(original, names, "ctx-lh-") - side_mean(original, names, "ctx-rh-")
    mirror_gap = side_mean(mirror, names, "ctx-rh-") - side_mean(mirror, names, "ctx-lh-")
    print(
        f"cortical gap, original left - right: {gap:+.3f}; the same anatomy on the mirror "
        f"(its right - left): {mirror_gap:+.3f}"
    )
    print()
    # One line for benchmarks/model_card.py (read_symmetry) to quote in the model card.
    print(
        f"symmetry: step={step} calibrated={calibrated} pose={pose} "
        f"subjects={','.join(args.subjects)} "
        f"mean_abs_change={np.nanmean(change):.4f} largest_change={change[worst]:.4f} "
        f"cortical_gap={gap:+.3f} mirror_gap={mirror_gap:+.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
