"""``wholebrain segment``: label every structure of T1-weighted scans with a trained model.

    wholebrain segment --example -o out/                  # nilearn's ICBM152 T1, shipped model
    wholebrain segment sub-01_T1w.nii.gz -o out/
    wholebrain segment scans/ -o out/ --no-tta --canvases 1  # a folder, one pass each (fastest)
    wholebrain segment bids_root/ -o derivatives/wholebrain/   # BIDS: mirrors sub-*/ses-*/anat
    wholebrain segment scans/ -o out/ --shard ${SLURM_ARRAY_TASK_ID}/16 --device cuda

Per scan, in OUTDIR: ``<stem>_desc-wholebrain_dseg.nii.gz`` (labels on the scan's own grid,
FreeSurfer ids), ``_dseg.tsv`` (label table), ``_volumes.tsv`` (mm³ per structure and
totals), ``_qc.png`` (three slices with the labels overlaid); ``--posteriors`` adds
``_probseg.nii.gz``. Scans whose outputs exist are skipped (``--force`` redoes them); a
failing scan does not stop the others, and the exit status is 1 if any failed (see
``OUTDIR/wholebrain_segment_summary.tsv``).
"""

from __future__ import annotations

import argparse
import time

from wholebrain.cli._cohort import add_cohort_arguments, echo_result, exit_status
from wholebrain.segment.options import CANVAS_SHIFTS, DEVICES, SKULL_STRIP


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "segment",
        help="segment T1-weighted scans into ~100 structures (the shipped model by default)",
        description="Segment T1-weighted scans (skull-stripped or whole-head, any orientation, "
        "0.7-1.5 mm voxels) into the dkt-aseg structures: 62 DKT cortical regions, white "
        "matter, subcortical nuclei, ventricles, cerebellum, brain stem.",
        epilog="INPUT: image files (.nii, .nii.gz, .mgz, .mgh), folders of images, manifest "
        "CSVs, or BIDS dataset roots (every sub-*/[ses-*/]anat/*_T1w.nii[.gz]; outputs go to "
        "the same sub-*/[ses-*/]anat/ folders under OUTDIR). <stem> = file name without "
        "suffix and a trailing _T1w.",
    )
    parser.add_argument("inputs", nargs="*", metavar="INPUT", help="scans, folders, BIDS roots")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    parser.add_argument(
        "--example",
        action="store_true",
        help="segment nilearn's ICBM152 2009a T1 (ships in the nilearn wheel; no download)",
    )
    parser.add_argument(
        "--model",
        metavar="CHECKPOINT",
        help="a wholebrain train checkpoint (best.pt, last.pt); default: the shipped model, "
        "when this version ships one",
    )
    parser.add_argument("--device", choices=DEVICES, default="auto", help="default: auto")
    parser.add_argument(
        "--tta",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also segment the left-right mirrored scan and average (default; about twice the "
        "network stage: mean Dice 0.756 -> 0.769 and HD95 4.42 -> 3.85 mm on held-out Mindboggle "
        "subjects with the shipped model, two canvases, refined) and write a per-structure "
        "flip agreement (Dice of the two passes) in the volume table; --no-tta: one pass",
    )
    parser.add_argument(
        "--canvases",
        type=int,
        choices=tuple(CANVAS_SHIFTS),
        default=2,
        help="segment on this many canvases offset by half a voxel and combine their "
        "probabilities on the scan's grid (default 2; each one more network stage: mean Dice "
        "0.763 with 1, 0.769 with 2 on held-out Mindboggle subjects with the shipped model, "
        "flip TTA and the refinement)",
    )
    parser.add_argument(
        "--refine",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="sharpen the cortical ribbon on the scan's grid with the scan's own intensities "
        "(default; ~1 s: no cortex where the scan has no signal, grey or white by a local "
        "intensity threshold 1 mm deep along the grey/white interface; mean Dice 0.746 -> "
        "0.775 on held-out Mindboggle subjects with the shipped model); --no-refine: the "
        "network's labels as they come back from its canvas",
    )
    parser.add_argument(
        "--calibration",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="weight the structures' probabilities by the model's calibration when it has one "
        "(default; fitted by `wholebrain calibrate` so the structure volumes of the training "
        "scans match their manual labels; the shipped model's: mean Dice 0.768 -> 0.775 on "
        "held-out Mindboggle subjects); --no-calibration: the network's own probabilities",
    )
    parser.add_argument(
        "--pose",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="turn the canvas about the left-right axis so the brain's long axis lies at the "
        "pitch of the model's training scans, when its calibration measured it (default; the "
        "network segments best in the pose it learnt: mean Dice 0.769 -> 0.775 on held-out "
        "Mindboggle subjects with the shipped model); --no-pose: the canvas on "
        "the world axes, whatever the head's pitch",
    )
    parser.add_argument(
        "--skull-strip",
        choices=SKULL_STRIP,
        default="auto",
        help="auto (default): a scan that looks whole-head (wholebrain info's guess) is "
        "skull-stripped with deepbet before the network (~5 s on a CPU); off: the scan as given",
    )
    parser.add_argument(
        "--posteriors",
        action="store_true",
        help="also write class probabilities (_probseg.nii.gz, uint8 x 1/255, one volume per "
        "class, on the model's (first) canvas: ~100 MB on disk per scan at 2 mm)",
    )
    add_cohort_arguments(parser, "scans", jobs_note=", each loading the model once")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from functools import partial
    from pathlib import Path

    from wholebrain.cohort import parse_shard, run_cohort, summary_path
    from wholebrain.errors import InputError
    from wholebrain.segment import run as job

    began = time.perf_counter()
    inputs = list(args.inputs)
    if args.example:
        from wholebrain.examples import icbm152_path

        inputs.append(str(icbm152_path("t1")))
    if not inputs:
        raise InputError(
            "wholebrain segment",
            "scans to segment",
            "no INPUT",
            "name scans, folders or a BIDS root, or use --example",
        )
    shard = parse_shard(args.shard) if args.shard else None
    outdir = Path(args.output)
    items = job.plan_segment(job.collect_segment_scans(inputs), outdir, posteriors=args.posteriors)
    options = job.SegmentOptions(
        model=args.model,
        device=args.device,
        tta=args.tta,
        skull_strip=args.skull_strip,
        canvases=args.canvases,
        refine=args.refine,
        calibrate=args.calibration,
        pose=args.pose,
    )
    if args.jobs == 1:  # load (and check) the model once, before the first scan
        model = job.segmenter(options)
        info = model.checkpoint
        print(
            f"model: {info.path} ({info.full_protocol}, {model.protocol.num_classes - 1} "
            f"structures, step {info.step}{', calibrated' if model.calibrated else ''}"
            f"{_pose(model.pose_pitch_deg)}) on "
            f"{model.device}, loaded in "
            f"{model.load_seconds:.1f} s"
        )

    report = run_cohort(
        items,
        partial(job.segment_subject, options),
        summary_path(outdir, "segment", shard),
        jobs=args.jobs,
        shard=shard,
        force=args.force,
        progress=not args.quiet,
        description="segment",
        on_result=echo_result,
    )
    print(f"segmented: {report.describe()} in {time.perf_counter() - began:.1f} s")
    kinds = "{dseg.nii.gz,dseg.tsv,volumes.tsv,qc.png" + (
        ",probseg.nii.gz}" if args.posteriors else "}"
    )
    done = [r for r in report.succeeded]
    if len(done) == 1:
        first = done[0].item.outputs[0]
        print(f"outputs: {str(first).removesuffix('dseg.nii.gz')}{kinds}")
    else:
        print(f"outputs: {outdir}/[sub-*/anat/]<stem>_desc-wholebrain_{kinds}")
    print(f"summary: {report.summary}")
    return exit_status("segment", report, "scans")


def _pose(pitch_deg: float | None) -> str:
    return "" if pitch_deg is None else f", brain pitch {pitch_deg:.1f} deg"
