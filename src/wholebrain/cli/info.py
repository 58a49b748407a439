"""``wholebrain info FILE...``: what wholebrain sees in an image, and whether it accepts it.

For each file it prints format, shape, voxel size, orientation, sform/qform codes, data type,
intensity range and a guess of whether the image is skull-stripped, then the verdict of the
input rules (``wholebrain.io``). Exit status 0 when every file passes, 1 otherwise; each
rejected file also gets one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wholebrain info``."""
    parser = subparsers.add_parser(
        "info",
        help="describe images and check that wholebrain accepts them",
        description=(
            "Describe each file (format, shape, voxel size, orientation, sform/qform, data "
            "type, intensities, skull-stripped or not) and check it against the input rules. "
            "Exit status 0 when every file passes, 1 otherwise."
        ),
    )
    parser.add_argument("files", nargs="*", metavar="FILE", help="NIfTI (.nii, .nii.gz) or MGH")
    parser.add_argument(
        "--example",
        action="store_true",
        help="also describe the ICBM152 T1 that ships inside nilearn's wheel",
    )
    parser.add_argument(
        "--labels",
        action="store_true",
        help="check the files as label maps (integer values) instead of T1 images",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print one report per file; 0 if every file passes the input rules, else 1."""
    from wholebrain.io import inspect

    files = list(args.files)
    if args.example:
        from wholebrain.examples import icbm152_path

        files.append(str(icbm152_path("t1")))
    if not files:
        print("wholebrain info: error: give at least one FILE or --example", file=sys.stderr)
        return 2
    status = 0
    for index, name in enumerate(files):
        report = inspect(name, as_labels=args.labels)
        if index:
            print()
        print(report.to_text(), flush=True)
        if not report.ok:
            status = 1
            if args.debug and report.debug_traceback:
                print(report.debug_traceback, end="", file=sys.stderr)
            print(f"wholebrain info: error: {report.verdict}", file=sys.stderr, flush=True)
    return status
