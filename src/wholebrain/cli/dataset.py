"""``wholebrain dataset``: build a manifest from a folder layout, validate it, cache it.

    wholebrain dataset import mindboggle ../shared/data/mindboggle-oasis-trt-20-dev \\
        -o cohort/manifest.csv --cache cohort/cache --val 2
    wholebrain dataset check cohort/manifest.csv
    wholebrain dataset cache cohort/manifest.csv --cache cohort/cache
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

LAYOUT_NAMES = ("mindboggle", "freesurfer", "fsl", "bids")  # keep in step with data.layouts


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "dataset",
        help="build, check and cache a training manifest",
        description="Build a manifest (CSV: subject, image, annotation, format, protocol, "
        "split) from a folder layout, validate every file, and cache subjects conformed.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    build = actions.add_parser(
        "import",
        help="find subjects in a folder layout and write a manifest",
        description="Layouts: mindboggle (sub-XX/t1w_brain.nii.gz + labels_dkt31_aseg.nii.gz), "
        "freesurfer (SUBJECTS_DIR/<s>/mri/orig.mgz + aparc.DKTatlas+aseg.mgz or aseg.mgz), "
        "fsl (a folder of scans with FAST *_seg/*_pveseg and FIRST *_firstseg beside them), "
        "bids (sub-*/[ses-*/]anat/*_T1w.nii[.gz], annotations from derivatives/*/..._desc-*_dseg).",
    )
    build.add_argument("layout", choices=LAYOUT_NAMES)
    build.add_argument("root", help="the folder to read")
    build.add_argument("-o", "--output", required=True, help="manifest CSV to write")
    build.add_argument("--cache", metavar="DIR", help="also store every subject conformed here")
    build.add_argument(
        "--val", type=int, default=0, metavar="N", help="put N random subjects in the val split"
    )
    build.add_argument("--seed", type=int, default=0, help="seed of the validation draw")
    build.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave subjects with unusable files out of the manifest instead of failing",
    )
    build.add_argument("--force", action="store_true", help="overwrite an existing manifest")
    build.set_defaults(run=run_import)

    check = actions.add_parser("check", help="validate every file of a manifest")
    check.add_argument("manifest")
    check.set_defaults(run=run_check)

    cache = actions.add_parser("cache", help="store every subject of a manifest conformed")
    cache.add_argument("manifest")
    cache.add_argument("--cache", metavar="DIR", required=True, help="cache folder")
    cache.add_argument("--force", action="store_true", help="rebuild subjects already cached")
    cache.set_defaults(run=run_cache)


def _summary(entries: list) -> str:  # type: ignore[type-arg]
    from wholebrain.data.manifest import subjects

    grouped = subjects(entries)
    by_protocol: dict[str, int] = {}
    for e in entries:
        by_protocol[e.protocol or "unlabelled"] = by_protocol.get(e.protocol or "unlabelled", 0) + 1
    counts = ", ".join(f"{n} {p}" for p, n in sorted(by_protocol.items()))
    return f"{len(grouped)} subjects ({counts})"


def run_import(args: argparse.Namespace) -> int:
    from pathlib import Path

    from wholebrain.data.cache import InvalidSubjectsError, prepare_subjects
    from wholebrain.data.layouts import find_subjects
    from wholebrain.data.manifest import assign_validation, write_manifest
    from wholebrain.errors import OutputExistsError

    output = Path(args.output)
    if output.exists() and not args.force:
        raise OutputExistsError(output)  # before minutes of validation, not after
    entries = find_subjects(args.layout, args.root)
    if args.val:
        entries = assign_validation(entries, args.val, args.seed)
    try:
        report = prepare_subjects(entries, args.cache, progress=not args.quiet)
    except InvalidSubjectsError as error:
        if not args.skip_bad:
            raise
        log.warning("%s", error)
        entries = [e for e in entries if e.subject not in error.subjects]
        log.warning("left out %d subject(s): %s", len(error.subjects), ", ".join(error.subjects))
        report = None
    write_manifest(entries, output, force=args.force)
    print(f"wrote {output}: {_summary(entries)}")
    if args.cache and report is not None:
        print(f"cache {args.cache}: {report.cached} written, {report.up_to_date} up to date")
    return 0


def run_check(args: argparse.Namespace) -> int:
    from wholebrain.data.cache import prepare_subjects
    from wholebrain.data.manifest import read_manifest

    entries = read_manifest(args.manifest)
    report = prepare_subjects(entries, None, progress=not args.quiet)
    print(f"{args.manifest}: all {report.checked} subjects usable: {_summary(entries)}")
    return 0


def run_cache(args: argparse.Namespace) -> int:
    from wholebrain.data.cache import prepare_subjects
    from wholebrain.data.manifest import read_manifest

    entries = read_manifest(args.manifest)
    report = prepare_subjects(entries, args.cache, force=args.force, progress=not args.quiet)
    print(f"cache {args.cache}: {report.cached} written, {report.up_to_date} up to date")
    return 0
