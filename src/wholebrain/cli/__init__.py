"""The ``wholebrain`` command: argument parsing, logging set-up and error reporting.

Each subcommand lives in its own module of this package with two functions:
``add_parser(subparsers)`` declares its arguments and ``run(args) -> int`` does the
work. Subcommand modules import only the standard library at module level so that
``wholebrain --help`` answers instantly; heavy imports (torch, nibabel, scipy) happen
inside ``run``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from types import ModuleType

from wholebrain.errors import WholebrainError

log = logging.getLogger("wholebrain")


def _subcommand_modules() -> list[ModuleType]:
    # Imported here, not at module level, so that the list stays the one place to
    # register a subcommand; these modules are cheap to import by contract.
    from wholebrain.cli import calibrate, dataset, evaluate, info, partial, segment, synth, train

    return [info, segment, dataset, partial, evaluate, synth, train, calibrate]


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (also used by the docs and the tests)."""
    from wholebrain import __version__

    parser = argparse.ArgumentParser(
        prog="wholebrain",
        description="Whole-brain segmentation of T1-weighted MRI: FreeSurfer-class labels "
        "in seconds.",
    )
    parser.add_argument("--version", action="version", version=f"wholebrain {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks and debug messages"
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _subcommand_modules():
        module.add_parser(sub)
    return parser


def _configure_logging(debug: bool, quiet: bool) -> None:
    level = logging.DEBUG if debug else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    root = logging.getLogger("wholebrain")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    logging.captureWarnings(True)
    py_warnings = logging.getLogger("py.warnings")
    py_warnings.handlers[:] = [handler]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (0 ok, 1 bad input or failure, 2 usage)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _configure_logging(args.debug, args.quiet)
    try:
        status: int = args.run(args)
    except WholebrainError as error:
        if args.debug:
            traceback.print_exc()
        print(f"wholebrain {args.command}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"wholebrain {args.command}: interrupted", file=sys.stderr)
        return 130
    return status
