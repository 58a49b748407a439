"""``wholebrain evaluate``: score predicted label maps against references, structure by structure.

    wholebrain evaluate --pred pred/sub-01.nii.gz --ref ref/sub-01.nii.gz -o scores.tsv
    wholebrain evaluate --pred pred/*.nii.gz --ref data/sub-*/labels_dkt31_aseg.nii.gz \\
        --ref-format mindboggle --ref-brain data/sub-*/t1w_brain.nii.gz -o scores.tsv
    wholebrain evaluate --pred pred/*.nii.gz --ref fast/*_seg.nii.gz --ref-format fsl-fast

Prints group means (cortical, subcortical, all) per pair and over pairs on stdout; ``-o``
writes every (pair, structure) row and the summary rows as TSV (see wholebrain.evaluate.table).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from pathlib import Path

_FORMATS_HELP = (
    "numbering of the %s label maps: mindboggle, freesurfer-dkt, freesurfer-aseg, synthseg, "
    "fsl-fast, fsl-first, or a protocol name; default: wholebrain ids (of --protocol if every "
    "id belongs to it, else of dkt-aseg)"
)


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Declare ``wholebrain evaluate``."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score label maps against references (Dice, HD95, ASSD, volume difference)",
        description=(
            "Score each predicted label map against its reference (pairs by position): per "
            "structure Dice, 95th-percentile Hausdorff distance (mm), average symmetric surface "
            "distance (mm) and volume difference (% of the reference), with group means "
            "(cortical, subcortical, all) per pair and over pairs. A prediction on another grid "
            "is resampled onto the reference grid by nearest neighbour through the affines."
        ),
    )
    parser.add_argument(
        "--pred", nargs="+", required=True, metavar="PRED", help="predicted label maps"
    )
    parser.add_argument(
        "--ref", nargs="+", required=True, metavar="REF", help="reference label maps, in order"
    )
    parser.add_argument(
        "--protocol",
        metavar="NAME",
        help="protocol to score in; both sides are mapped to it (dkt-aseg, aseg, tissue, first, "
        "brain); default: the coarser of the formats' protocols, else dkt-aseg",
    )
    parser.add_argument("--pred-format", metavar="F", help=_FORMATS_HELP % "predicted")
    parser.add_argument("--ref-format", metavar="F", help=_FORMATS_HELP % "reference")
    parser.add_argument(
        "--pred-brain",
        nargs="+",
        metavar="IMG",
        help="with --pred-format mindboggle: one brain image per prediction (non-zero = brain), "
        "to label its unlabelled white matter",
    )
    parser.add_argument(
        "--ref-brain",
        nargs="+",
        metavar="IMG",
        help="with --ref-format mindboggle: one brain image per reference (e.g. t1w_brain), to "
        "label its unlabelled white matter; without it cerebral white matter is not scored",
    )
    parser.add_argument("-o", "--output", metavar="TABLE.tsv", help="write the full table here")
    parser.add_argument("--force", action="store_true", help="overwrite an existing table")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Score the pairs, print the group means, write the table; 0 on success."""
    from wholebrain.errors import OutputExistsError
    from wholebrain.evaluate import evaluate_pairs

    output = Path(args.output) if args.output else None
    if output is not None and output.exists() and not args.force:
        raise OutputExistsError(output)  # before the scoring, not after
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None
    if len(args.pred) > 1 and not args.quiet:
        from tqdm import tqdm

        def progress(indices: Iterable[int]) -> Iterable[int]:
            bar: Iterable[int] = tqdm(indices, desc="evaluate", unit="pair", leave=False)
            return bar

    evaluation = evaluate_pairs(
        args.pred,
        args.ref,
        protocol=args.protocol,
        pred_format=args.pred_format,
        ref_format=args.ref_format,
        pred_brains=args.pred_brain,
        ref_brains=args.ref_brain,
        progress=progress,
    )
    print(evaluation.to_text(), flush=True)
    if output is not None:
        evaluation.write_tsv(output, force=args.force)
        print(f"wrote {output}")
    return 0
