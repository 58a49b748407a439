"""Optimiser, learning-rate schedule and mixed precision of a training run.

The schedule is a pure function of the step (and the phase it falls in), so resuming needs
no scheduler state beyond the step count.
"""

from __future__ import annotations

import logging
import math

import torch

from wholebrain.model import cpu_has_bf16_units
from wholebrain.train.config import OptimConfig
from wholebrain.train.strategies import Phase

__all__ = ["amp_dtype", "learning_rate", "make_optimizer"]

log = logging.getLogger(__name__)


def learning_rate(optim: OptimConfig, step: int, phase: Phase) -> float:
    """The learning rate at ``step``: warm-up, then the schedule over the phase."""
    t, n = step - phase.start, max(1, phase.stop - phase.start)
    if t < optim.warmup_steps:
        return optim.lr * (t + 1) / optim.warmup_steps
    fraction = min(1.0, (t - optim.warmup_steps) / max(1, n - optim.warmup_steps))
    if optim.schedule == "poly":
        return float(optim.lr * (1 - fraction) ** 0.9)
    if optim.schedule == "cosine":
        return optim.lr * 0.5 * (1 + math.cos(math.pi * fraction))
    return optim.lr


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``TrainConfig.amp`` on ``device``; None: full precision.

    On CPU only an explicit ``"bf16"`` turns autocast on: it pays on CPUs with bf16 matrix
    units (Intel AMX / AVX512-BF16: 1.5x faster steps with channels_last, see
    benchmarks/train_throughput.py). Elsewhere bf16 is emulated, tens of times slower than
    float32, so a config written on such a machine falls back to float32 with a warning.
    """
    if mode == "off":
        return None
    if device.type != "cuda":
        if mode == "bf16" and not cpu_has_bf16_units():
            log.warning(
                "amp = 'bf16', but this CPU has no bf16 matrix units (AMX / AVX512-BF16): "
                "emulated bf16 is tens of times slower than float32, so training runs in float32"
            )
            return None
        return torch.bfloat16 if mode == "bf16" else None
    if mode == "bf16" or (mode == "auto" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return torch.float16


def make_optimizer(model: torch.nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum or AdamW, as ``optim`` says."""
    if optim.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=optim.lr,
            momentum=optim.momentum,
            nesterov=True,
            weight_decay=optim.weight_decay,
        )
    return torch.optim.AdamW(model.parameters(), lr=optim.lr, weight_decay=optim.weight_decay)
