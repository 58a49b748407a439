"""``wholebrain partial``: automatic partial annotations for a cohort of unlabelled scans.

    wholebrain partial scans/ -o partial/                         # built-in tissue classifier
    wholebrain partial cohort/manifest.csv -o cohort/partial --jobs 4
    wholebrain partial scans/ -o partial/ --shard ${SLURM_ARRAY_TASK_ID}/16
    wholebrain partial --import fsl fsl_outputs/ -o partial/      # FAST / FIRST -> tissue / first
    wholebrain partial --import freesurfer $SUBJECTS_DIR -o partial/
    wholebrain partial scans/ -o partial/ --method register \\
        --atlas-image atlas/t1w_brain.nii.gz --atlas-labels atlas/labels.nii.gz \\
        --atlas-format mindboggle                                   # needs wholebrain[ants]

Each subject gets ``<subject>_desc-<protocol>_dseg.nii.gz`` on its scan's grid and a label
table beside it; the annotations are merged into a manifest (``OUTDIR/manifest.csv`` by
default) ready for ``wholebrain dataset cache`` and training. Subjects whose outputs exist are
skipped (``--force`` redoes them); a failing subject does not stop the others, and the exit
status is 1 if any failed (see ``OUTDIR/wholebrain_partial_summary.tsv``).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

from wholebrain.cli._cohort import add_cohort_arguments, echo_result, exit_status

if TYPE_CHECKING:  # types only: cli modules import nothing heavy at load time
    from wholebrain.partial.run import AtlasConfig, PartialItem

log = logging.getLogger(__name__)

TISSUE_METHODS = ("builtin", "atropos", "fsl")  # keep in step with partial.run.TISSUE_METHODS
IMPORT_LAYOUTS = ("fsl", "freesurfer")  # keep in step with partial.run.IMPORT_LAYOUTS


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "partial",
        help="make partial annotations (tissue classes, subcortical structures) for a cohort",
        description="Annotate unlabelled scans automatically, or import the annotations a "
        "cohort already has, writing <subject>_desc-<protocol>_dseg.nii.gz (on each scan's "
        "grid) + .tsv label table into OUTDIR and adding them to a manifest.",
        epilog="INPUT: image files (.nii, .nii.gz, .mgz, .mgh; subject id = file name without "
        "suffix and _T1w), folders (every image directly inside; label maps and outputs such "
        "as *_dseg, *_seg, *_mask, labels* are left out) or manifest CSVs (their images and "
        "subject ids). With --import, INPUT is the folder to read: fsl = scans with FAST "
        "*_seg/*_pveseg (-> tissue) and FIRST *_firstseg (-> first) beside them; freesurfer = "
        "a SUBJECTS_DIR (aparc.DKTatlas+aseg.mgz -> dkt-aseg, else aseg.mgz -> aseg).",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="scans, folders or manifests")
    parser.add_argument("-o", "--output", required=True, metavar="OUTDIR", help="output folder")
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--method",
        choices=(*TISSUE_METHODS, "register"),
        default="builtin",
        help="builtin (default; no other software), atropos (ANTs, needs wholebrain[ants]) or "
        "fsl (FAST, needs FSL) for tissue classes; register: an atlas's subcortical "
        "structures (FIRST protocol) by ANTs SyN registration",
    )
    source.add_argument(
        "--import",
        dest="import_layout",
        choices=IMPORT_LAYOUTS,
        metavar="LAYOUT",
        help="convert existing outputs instead: fsl (FAST, FIRST) or freesurfer (aseg)",
    )
    atlas = parser.add_argument_group("atlas (with --method register)")
    atlas.add_argument("--atlas-image", metavar="FILE", help="the atlas T1-weighted scan")
    atlas.add_argument("--atlas-labels", metavar="FILE", help="its label map (same grid)")
    atlas.add_argument(
        "--atlas-format",
        default="dkt-aseg",
        metavar="FORMAT",
        help="numbering of --atlas-labels: dkt-aseg (default; wholebrain/FreeSurfer ids), "
        "mindboggle, freesurfer-dkt, freesurfer-aseg, aseg, first",
    )
    atlas.add_argument(
        "--transform",
        default="SyN",  # keep in step with registration.DEFAULT_TRANSFORM
        metavar="PRESET",
        help="ants.registration type_of_transform (default %(default)s: about 2-3 min a scan on "
        "2 cores; antsRegistrationSyNQuick[s] costs 1.7x as much for the same Dice)",
    )
    cohort = add_cohort_arguments(parser, "subjects")
    cohort.add_argument(
        "--manifest", metavar="CSV", help="manifest to add the annotations to (OUTDIR/manifest.csv)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from functools import partial
    from pathlib import Path

    from wholebrain.cohort import parse_shard, run_cohort, summary_path
    from wholebrain.partial import run as job

    given_atlas = args.atlas_image or args.atlas_labels
    if given_atlas and (args.import_layout or args.method != "register"):
        from wholebrain.errors import InputError

        mode = f"--import {args.import_layout}" if args.import_layout else f"--method {args.method}"
        raise InputError(
            "--atlas-image/--atlas-labels",
            "them with --method register only",
            mode,
            "add --method register, or leave the atlas out",
        )
    shard = parse_shard(args.shard) if args.shard else None
    outdir = Path(args.output)
    manifest = Path(args.manifest) if args.manifest else outdir / "manifest.csv"
    function: Callable[[PartialItem], str]
    if args.import_layout:
        items = job.plan_import(args.import_layout, args.inputs, outdir)
        function = job.import_subject
        what = f"{args.import_layout} annotations imported"
    elif args.method == "register":
        atlas = _atlas(args)
        items = job.plan_maps(job.collect_scans(args.inputs), outdir, "first")
        function = partial(job.register_subject, atlas)
        what = "atlas structures registered"
    else:
        job.tissue_module()  # fail now, not once per subject, if it cannot be imported
        items = job.plan_maps(job.collect_scans(args.inputs), outdir, "tissue")
        function = partial(job.classify_subject, job.TissueConfig(method=args.method))
        what = f"tissue classified ({args.method})"
    job.check_manifest(manifest, items)

    report = run_cohort(
        items,
        function,
        summary_path(outdir, "partial", shard),
        jobs=args.jobs,
        shard=shard,
        force=args.force,
        progress=not args.quiet,
        description="partial",
        on_result=echo_result,
    )
    succeeded = [r.item for r in report.succeeded if isinstance(r.item, job.PartialItem)]
    rows = job.merge_manifest(manifest, succeeded)
    print(f"{what}: {report.describe()}")
    protocols = sorted({m.protocol for item in items for m in item.maps})
    desc = ",".join(p.replace("-", "") for p in protocols)
    print(f"outputs: {outdir}/<subject>_desc-{{{desc}}}_dseg.nii.gz (+ .tsv label tables)")
    print(f"summary: {report.summary}")
    if rows:
        print(f"manifest: {manifest} ({rows} annotation rows added or updated)")
    return exit_status("partial", report, "subjects")


def _atlas(args: argparse.Namespace) -> AtlasConfig:
    """The atlas of --method register, checked and loaded once before any subject."""
    from pathlib import Path

    from wholebrain.errors import InputError
    from wholebrain.partial import run as job
    from wholebrain.partial.registration import load_ants

    if not (args.atlas_image and args.atlas_labels):
        given = [
            f
            for f, v in (("--atlas-image", args.atlas_image), ("--atlas-labels", args.atlas_labels))
            if v
        ]
        raise InputError(
            "--method register",
            "--atlas-image and --atlas-labels",
            f"only {given[0]}" if given else "neither",
            "give an atlas scan and its label map (e.g. a Mindboggle subject's t1w_brain.nii.gz "
            "and labels_dkt31_aseg.nii.gz with --atlas-format mindboggle)",
        )
    load_ants()  # a missing antspyx is one message, not one failure per subject
    config = job.AtlasConfig(
        Path(args.atlas_image), Path(args.atlas_labels), args.atlas_format, args.transform
    )
    job.load_atlas(config.image, config.labels, config.format)  # bad atlas files fail here
    return config
