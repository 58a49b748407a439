"""``wholebrain train``: train the multi-task network from a TOML config.

    wholebrain train configs/smoke.toml
    wholebrain train configs/gpu-multitask.toml --output runs/mt1 --device cuda
    wholebrain train configs/gpu-multitask.toml --output runs/mt1 --resume  # after Ctrl-C/SIGTERM
    torchrun --nproc_per_node=4 -m wholebrain train configs/gpu-multitask.toml

The run folder holds the resolved ``config.toml``, ``metrics.csv``, ``last.pt`` and
``best.pt`` (self-describing checkpoints: ``wholebrain segment --model best.pt``).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal

log = logging.getLogger(__name__)

DEVICES = ("auto", "cpu", "cuda")


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser(
        "train",
        help="train the network on full and partial annotations",
        description="Train the multi-task network (strategies full-only, pretrain-finetune, "
        "multitask, marginal) as a TOML config says; under torchrun, on every process (DDP).",
    )
    parser.add_argument("config", metavar="CONFIG.toml", help="training config")
    parser.add_argument(
        "--resume", action="store_true", help="continue the run in the output folder (last.pt)"
    )
    parser.add_argument("--device", choices=DEVICES, default="auto", help="where to train")
    parser.add_argument(
        "--output", metavar="DIR", help="run folder (default: output_dir of the config)"
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from wholebrain.train import load_config, train

    if os.environ.get("RANK", "0") != "0":  # under torchrun: rank 0 speaks for all
        logging.getLogger("wholebrain").setLevel(logging.WARNING)
    config = load_config(args.config)
    if args.output:
        config = dataclasses.replace(config, output_dir=str(Path(args.output).resolve()))
    # SIGTERM (kill, SLURM before a time limit or preemption, torchrun stopping its ranks) ends
    # the run as Ctrl-C does: last.pt is written at the last finished step, --resume goes on.
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        result = train(config, device=args.device, resume=args.resume, progress=not args.quiet)
    finally:
        signal.signal(signal.SIGTERM, previous)
    if os.environ.get("RANK", "0") == "0":
        best = (
            f"; best {result.best} (validation Dice {result.best_val_dice:.4f})"
            if result.best is not None and result.best_val_dice is not None
            else ""
        )
        print(f"trained {result.step} steps in {result.seconds:.0f} s: {result.last}{best}")
    return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
