"""What the cohort commands (``segment``, ``partial``) share on the command line.

Both run one function over many scans through :func:`wholebrain.cohort.run_cohort`; they take
the same cohort options, print one line per scan done or failed, and end with the same
failure message and exit status.
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # types only: cli modules import nothing heavy at load time
    from wholebrain.cohort import CohortReport, ItemResult


def add_cohort_arguments(
    parser: argparse.ArgumentParser, noun: str, jobs_note: str = ""
) -> argparse._ArgumentGroup:
    """--jobs, --shard, --force (in a "cohort" group, returned for more) and --quiet."""
    cohort = parser.add_argument_group("cohort")
    cohort.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help=f"{noun} in parallel (processes{jobs_note}); default 1",
    )
    cohort.add_argument(
        "--shard", metavar="I/N", help="only the I-th of N parts of the inputs (1-based)"
    )
    cohort.add_argument("--force", action="store_true", help=f"redo {noun} whose outputs exist")
    # SUPPRESS: without the flag here, `wholebrain --quiet COMMAND ...` keeps its value.
    parser.add_argument(
        "--quiet", "-q", action="store_true", default=argparse.SUPPRESS, help="no progress bar"
    )
    return cohort


def echo_result(result: ItemResult) -> None:
    """One line per item done or failed, above the progress bar. Skipped items are only
    counted: a rerun over a large cohort would otherwise print thousands of them."""
    from tqdm import tqdm

    from wholebrain.cohort import format_result

    if result.status != "skipped":
        tqdm.write(format_result(result), file=sys.stdout)


def exit_status(command: str, report: CohortReport, noun: str) -> int:
    """1, with a message naming the summary table, if any item failed; else 0."""
    if not report.failed:
        return 0
    print(
        f"wholebrain {command}: error: {len(report.failed)} of {len(report.results)} {noun} "
        f"failed; see {report.summary}",
        file=sys.stderr,
    )
    return 1
