"""Training: the loop, the strategies, self-describing checkpoints, resume and DDP.

``wholebrain train CONFIG.toml`` (:mod:`wholebrain.cli.train`) is :func:`load_config` then
:func:`train`. The package, by task:

- :mod:`~wholebrain.train.config`: :class:`TrainConfig` (frozen dataclasses) from and to TOML.
- :mod:`~wholebrain.train.strategies`: ``full-only``, ``pretrain-finetune``, ``multitask``,
  ``marginal``: heads, sampling phases and losses.
- :mod:`~wholebrain.train.loop`: :func:`train`, the step, metrics, checkpoints, resume.
- :mod:`~wholebrain.train.validate`: validation Dice (sliding window or whole canvas).
- :mod:`~wholebrain.train.checkpoint`: writing and reading checkpoints
  (:func:`load_checkpoint` gives the model and what it segments).
- :mod:`~wholebrain.train.distributed`: torchrun's process group, the device.
"""

from __future__ import annotations

from wholebrain.train.checkpoint import CheckpointInfo, load_checkpoint, read_checkpoint
from wholebrain.train.config import STRATEGIES as STRATEGIES
from wholebrain.train.config import OptimConfig, TrainConfig, ValConfig, load_config, to_toml
from wholebrain.train.loop import TrainResult, train
from wholebrain.train.strategies import Phase, Strategy

__all__ = [
    "CheckpointInfo",
    "OptimConfig",
    "Phase",
    "Strategy",
    "TrainConfig",
    "TrainResult",
    "ValConfig",
    "load_checkpoint",
    "load_config",
    "read_checkpoint",
    "to_toml",
    "train",
]
