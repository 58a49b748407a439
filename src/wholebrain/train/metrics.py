"""The run's metrics: ``metrics.csv`` (and TensorBoard events when tensorboard is installed).

Columns: ``step, phase, loss, loss_<protocol>..., lr, val_dice, seconds``; losses are means
over the steps since the previous row and over the processes (DDP); ``seconds`` is the wall
time of training so far, resumed parts included. Only rank 0 writes.
"""

from __future__ import annotations

import csv
import logging
import math
from pathlib import Path
from typing import Any

from wholebrain.io import atomic_output
from wholebrain.train.distributed import Distributed

__all__ = ["Metrics", "mean_over_ranks"]

log = logging.getLogger(__name__)


class Metrics:
    """metrics.csv (and TensorBoard when installed), written by rank 0."""

    def __init__(self, folder: Path, protocols: tuple[str, ...], start: int, enabled: bool) -> None:
        self.path = folder / "metrics.csv"
        self.columns = [
            "step",
            "phase",
            "loss",
            *(f"loss_{p}" for p in protocols),
            "lr",
            "val_dice",
            "seconds",
        ]
        self.enabled = enabled
        self.board: Any = None
        if not enabled:
            return
        kept: list[list[str]] = []
        if start > 0 and self.path.is_file():  # a resumed run: drop rows past its checkpoint
            with self.path.open(newline="") as handle:
                rows = list(csv.reader(handle))
            kept = [r for r in rows[1:] if r and int(r[0]) <= start]
        with atomic_output(self.path, force=True) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerows([self.columns, *kept])
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            log.debug("tensorboard is not installed: metrics go to %s only", self.path)
        else:
            self.board = SummaryWriter(str(folder / "tensorboard"), purge_step=start or None)

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        with self.path.open("a", newline="") as handle:
            csv.writer(handle, lineterminator="\n").writerow(
                [_cell(row.get(c)) for c in self.columns]
            )
        if self.board is not None:
            for key, value in row.items():
                if (
                    key not in ("step", "phase")
                    and isinstance(value, float)
                    and math.isfinite(value)
                ):
                    self.board.add_scalar(key.replace("loss_", "loss/"), value, row["step"])

    def close(self) -> None:
        if self.board is not None:
            self.board.close()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return str(value)


def mean_over_ranks(values: dict[str, float], dist: Distributed) -> dict[str, float]:
    """Each key's mean over the processes that have it (a head may lack targets on some)."""
    parts = dist.gather(values)
    keys = dict.fromkeys(k for part in parts for k in part)
    return {k: sum(p[k] for p in parts if k in p) / sum(k in p for p in parts) for k in keys}
