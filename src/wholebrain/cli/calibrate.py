"""``wholebrain calibrate``: fit a model's class weights on manually labelled scans.

    wholebrain calibrate cohort/manifest.csv --model runs/x/best.pt -o models/x-calibrated.pt

See :mod:`wholebrain.segment.calibrate` for what is fitted and why.
"""

from __future__ import annotations

import argparse

from wholebrain.segment.options import DEVICES

_SHOWN = 12  # structures listed in the printed table


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wholebrain calibrate``."""
    parser = subparsers.add_parser(
        "calibrate",
        help="fit a model's class weights so its structure volumes match manual labels",
        description=(
            "Segment the manifest's manually labelled scans (rows with the model's full "
            "protocol, split train by default) as `wholebrain segment` would, and fit one weight "
            "per structure that brings the predicted volumes to the manual ones (left and right "
            "alike, each weight within e^-1..e). Writes a copy of the model carrying the "
            "weights; `wholebrain segment --model` applies them (--no-calibration: not). "
            "Calibrate on scans the model was trained on, and check on others with "
            "`wholebrain evaluate`."
        ),
    )
    parser.add_argument("manifest", help="the manifest CSV (wholebrain dataset)")
    parser.add_argument(
        "--model",
        metavar="CHECKPOINT",
        help="the checkpoint to calibrate (default: the shipped model)",
    )
    parser.add_argument(
        "-o", "--output", required=True, metavar="CHECKPOINT", help="the calibrated copy to write"
    )
    parser.add_argument(
        "--split",
        nargs="+",
        default=["train"],
        metavar="SPLIT",
        help="manifest splits whose full annotations are used (default: train)",
    )
    parser.add_argument(
        "--pose",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="measure the scans' mean brain pitch, fit the weights on canvases turned to it, "
        "and store it: segment then turns every scan's canvas so its brain lies at that pitch "
        "(default); --no-pose: canvases on the world axes",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto", help="default: auto")
    parser.add_argument("--force", action="store_true", help="overwrite --output")
    parser.add_argument(
        "--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from wholebrain.segment.calibrate import calibrate_model

    quiet = getattr(args, "quiet", False)
    result = calibrate_model(
        args.model,
        args.manifest,
        args.output,
        splits=tuple(args.split),
        device=args.device,
        pose=args.pose,
        force=args.force,
        progress=None if quiet else lambda rows: tqdm(rows, desc="calibrate", unit="scan"),
    )
    manual = result.volumes["manual"].astype(float)
    before, after = result.volumes["before"], result.volumes["after"]
    with np.errstate(divide="ignore", invalid="ignore"):
        error_before = 100 * (before - manual) / manual
        error_after = 100 * (after - manual) / manual
    labelled = np.flatnonzero(manual[1:] > 0) + 1
    shown = labelled[np.argsort(-np.abs(error_before[labelled]))][:_SHOWN]
    print(f"fitted on {len(result.subjects)} scans: {', '.join(result.subjects)}")
    if result.brain_pitch_deg is not None:
        each = ", ".join("-" if p is None else f"{p:.1f}" for p in result.pitches_deg)
        print(
            f"pose: canvases turned so the brain lies at {result.brain_pitch_deg:.1f} deg pitch "
            f"(the scans' mean; each: {each})"
        )
    print(f"{'structure':<34} {'volume error before':>19} {'after':>8} {'weight':>7}")
    for k in shown:
        print(
            f"{result.names[k]:<34} {error_before[k]:18.1f}% {error_after[k]:7.1f}% "
            f"{np.exp(result.log_weights[k]):7.2f}"
        )
    mean_before = float(np.mean(np.abs(error_before[labelled])))
    mean_after = float(np.mean(np.abs(error_after[labelled])))
    print(
        f"mean |volume error| over {len(labelled)} structures: {mean_before:.1f}% -> "
        f"{mean_after:.1f}% (canvas voxels, summed over the scans)"
    )
    print(f"wrote {result.path}")
    return 0
