"""What one training step reads: slots, the CPU batch, and reading regions of the canvas.

Every random choice of a step comes from generators seeded with :func:`step_seed` of
(seed, step, stream), so a step's data is a function of the step alone (resume, DataLoader
workers and torchrun processes all agree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from numpy.typing import NDArray

__all__ = ["POOLS", "Batch", "Slot", "place_patch", "read_region", "step_seed"]

POOLS = ("full", "partial", "synth")  # where a batch slot's sample comes from


def step_seed(seed: int, step: int, stream: int) -> int:
    """A 63-bit seed from (seed, step, stream): independent draws per step, reproducible."""
    words = np.random.SeedSequence([seed, step, stream]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


@dataclass(frozen=True)
class Slot:
    """One sample of a step: its pool, the subject (or label map) and its random numbers."""

    pool: str  # "full", "partial" or "synth"
    index: int  # index into the pool's subjects (or the synthetic label maps)
    randoms: tuple[float, ...]  # uniform draws in [0, 1) that place the patch


@dataclass
class Batch:
    """A batch as read on the CPU; ``synth`` slots are filled on the training device.

    Attributes:
        image: (B, 1, X, Y, Z) float32 regions (the patch plus the augmentation's context).
        labels: (B, P, X, Y, Z) uint8 class indices per protocol of ``protocols``, or
            ``IGNORE_INDEX``.
        protocols: the P target protocols, in channel order.
        slots: what each sample is.
    """

    image: torch.Tensor
    labels: torch.Tensor
    protocols: tuple[str, ...]
    slots: tuple[Slot, ...]

    def pin_memory(self) -> Batch:
        """Page-locked copies (the DataLoader calls this with ``pin_memory=True``)."""
        return Batch(self.image.pin_memory(), self.labels.pin_memory(), self.protocols, self.slots)

    @property
    def synthetic(self) -> list[int]:
        """Positions of the synthetic samples."""
        return [i for i, s in enumerate(self.slots) if s.pool == "synth"]


def read_region(
    array: NDArray[np.generic], start: Sequence[int], size: Sequence[int], fill: float = 0
) -> NDArray[np.generic]:
    """``array[start : start + size]`` of a 3-D array, with ``fill`` outside it (no wrap).

    Only the part inside is read, so a memory-mapped array reads just the region.
    """
    out = np.full(tuple(size), fill, dtype=array.dtype)
    src, dst = [], []
    for s, n, total in zip(start, size, array.shape, strict=True):
        lo, hi = max(s, 0), min(s + n, total)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = array[tuple(src)]
    return out


def place_patch(centre: Sequence[int], patch: Sequence[int], canvas: Sequence[int]) -> list[int]:
    """Corner of a patch around ``centre``, kept inside the canvas (centred if larger)."""
    return [
        min(max(c - p // 2, 0), n - p) if n >= p else (n - p) // 2
        for c, p, n in zip(centre, patch, canvas, strict=True)
    ]
