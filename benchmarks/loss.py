"""Speed of the Dice + cross-entropy loss (forward + backward) at 99 classes: ours vs MONAI's.

    python benchmarks/loss.py                 # 2 x 64³ voxels, 99 classes, all CPU threads
    python benchmarks/loss.py --size 80 96 80 --batch 1 --repeats 5

Rows: ``monai.losses.DiceCELoss`` (softmax, one-hot target, batch Dice) and
``wholebrain.losses.dice_ce_loss`` (fused, closed-form gradient), each on float32 logits in
the default (class-major) layout and on bfloat16 channels-last logits, the layout a CPU
network under bf16 autocast hands over (configs/shipped-cpu.toml). Time = the median of
``--repeats`` forward + backward passes after one warm-up; the logits' gradient included.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import torch

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path

CLASSES = 99  # the dkt-aseg protocol, background included


def seconds_per_pass(
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    logits: torch.Tensor,
    target: torch.Tensor,
    repeats: int,
) -> float:
    times = []
    for _ in range(repeats + 1):
        leaf = logits.detach().clone(memory_format=torch.preserve_format).requires_grad_()
        started = time.perf_counter()
        loss_fn(leaf, target).backward()
        times.append(time.perf_counter() - started)
    return statistics.median(times[1:])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, nargs=3, default=(64, 64, 64), metavar=("X", "Y", "Z"))
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per row (5)")
    args = parser.parse_args(argv)

    from monai.losses import DiceCELoss

    from wholebrain.losses import dice_ce_loss

    machine.header("Dice + cross-entropy loss, forward + backward", ["benchmarks/loss.py", *argv])
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch, CLASSES, *args.size)
    target = torch.randint(0, CLASSES, (args.batch, *args.size), generator=generator)
    float32 = torch.randn(shape, generator=generator)
    channels_last = float32.to(torch.bfloat16).contiguous(memory_format=torch.channels_last_3d)
    monai = DiceCELoss(softmax=True, to_onehot_y=True, batch=True)

    def monai_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        loss: torch.Tensor = monai(logits.float(), labels.unsqueeze(1))
        return loss

    print(f"logits {list(shape)}, {torch.get_num_threads()} threads, median of {args.repeats}")
    print()
    print("| loss | float32, class-major | bfloat16, channels-last |")
    print("| --- | ---: | ---: |")
    for name, loss_fn in (
        ("MONAI DiceCELoss", monai_loss),
        ("wholebrain dice_ce_loss", dice_ce_loss),
    ):
        cells = [
            f"{seconds_per_pass(loss_fn, logits, target, args.repeats):.3f} s"
            for logits in (float32, channels_last)
        ]
        print(f"| {name} | {' | '.join(cells)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
