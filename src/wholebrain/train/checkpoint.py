"""Checkpoints that describe themselves: one file is the whole model.

A checkpoint (``best.pt`` / ``last.pt`` in the run folder) is a ``torch.save``-d dict of plain
values and tensors only, so it loads with ``torch.load(weights_only=True)`` (no code runs on
load)::

    format, format_version          "wholebrain-checkpoint", 1
    package_version                 wholebrain.__version__ that wrote it
    kind, step, val_dice            "best" or "last", the step, validation mean Dice (or None)
    model                           {"config": ModelConfig dict, "heads": {protocol: K},
                                     "state_dict": weights}
    full_protocol                   the protocol of the full head ("dkt-aseg")
    protocols                       {name: [[id, name, [r, g, b]], ...]}: each head's label table
    conform                         ConformConfig dict: the canvas inputs must be put on
    train_config                    the resolved TrainConfig dict of the run
    training                        resume state: optimizer, grad scaler, RNG states,
                                    best_val_dice, seconds (wall time so far)
    calibration                     optional, written by ``wholebrain calibrate``:
                                    {"log_weights": one per class of the full head,
                                    "brain_pitch_deg": the training scans' mean brain
                                    pitch (optional: the canvas pose), ...}
                                    (:mod:`wholebrain.segment.calibrate`)

Writing goes through :func:`wholebrain.io.atomic_output`: a crash never leaves a half-written
checkpoint. :func:`load_checkpoint` returns the model and a :class:`CheckpointInfo`; nothing
else (no environment variable, no side file) is needed to use it.
"""

from __future__ import annotations

import datetime
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from wholebrain.conform import ConformConfig
from wholebrain.errors import InputError
from wholebrain.io import atomic_output
from wholebrain.model import ModelConfig, MultiHeadUNet
from wholebrain.protocols import FULL_PROTOCOL, Label, Protocol, get_protocol

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "CheckpointInfo",
    "checkpoint_payload",
    "export_for_inference",
    "load_checkpoint",
    "read_checkpoint",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]

FORMAT = "wholebrain-checkpoint"
FORMAT_VERSION = 1


@dataclass(frozen=True, eq=False)
class CheckpointInfo:
    """What a checkpoint says about itself."""

    path: Path  # the file
    kind: str  # "best" (highest validation Dice) or "last"
    step: int  # optimiser steps done
    val_dice: float | None  # validation mean Dice at that step, None if not validated
    model_config: ModelConfig  # the trunk
    heads: dict[str, int]  # protocol -> classes of its head
    protocols: dict[str, Protocol]  # label table of every head
    full_protocol: str  # the head that segments every structure
    conform: ConformConfig  # the canvas
    train_config: dict[str, Any]  # the resolved training config
    package_version: str  # wholebrain version that wrote it
    created: str  # ISO 8601 time of writing (UTC)
    calibration: dict[str, Any] | None = None  # per-class prior weights of the full head


def _protocol_table(name: str) -> list[list[Any]]:
    return [[lab.id, lab.name, list(lab.rgb)] for lab in get_protocol(name).labels]


def rng_state() -> dict[str, Any]:
    """Torch (CPU and CUDA) and Python RNG states; training draws from (seed, step)
    generators, these are kept so code that uses the global generators resumes too."""
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def checkpoint_payload(
    model: MultiHeadUNet,
    *,
    kind: str,
    step: int,
    val_dice: float | None,
    conform: ConformConfig,
    train_config: dict[str, Any],
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The dict :func:`save_checkpoint` writes (see the module docstring)."""
    from wholebrain import __version__

    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": __version__,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "kind": kind,
        "step": step,
        "val_dice": val_dice,
        "model": {
            "config": model.config.to_dict(),
            "heads": dict(model.head_classes),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        },
        "full_protocol": FULL_PROTOCOL,
        "protocols": {p: _protocol_table(p) for p in model.head_classes},
        "conform": asdict(conform),
        "train_config": train_config,
        "training": training or {},
    }


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write a checkpoint atomically (replacing an older one)."""
    path = Path(path)
    with atomic_output(path, force=True) as tmp:
        torch.save(payload, tmp)
    return path


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict, checked to be a wholebrain checkpoint.

    Raises:
        InputError: no such file, not a torch file, not a wholebrain checkpoint, or a newer
            format than this version reads.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "a wholebrain checkpoint (.pt)", "no such file", "check the path")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises many types for foreign or truncated files
        raise InputError(
            path,
            "a wholebrain checkpoint (.pt)",
            f"a file torch cannot read ({type(error).__name__})",
            "pass best.pt or last.pt from a training run folder",
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise InputError(
            path,
            "a wholebrain checkpoint",
            "another kind of torch file",
            "pass best.pt or last.pt from a `wholebrain train` run folder",
        )
    if int(payload.get("format_version", 0)) > FORMAT_VERSION:
        raise InputError(
            path,
            f"checkpoint format {FORMAT_VERSION} or older",
            f"format {payload['format_version']} (wholebrain {payload.get('package_version')})",
            "upgrade wholebrain",
        )
    return payload


def export_for_inference(source: str | Path, target: str | Path, *, force: bool = False) -> Path:
    """Write a small copy of a checkpoint for segmentation: float16 weights, no optimiser.

    Floating-point weights are stored in half precision (inference runs in bf16/fp16 or
    converts them back to float32); the optimiser state and RNG states that resuming needs
    are dropped. Everything :func:`load_checkpoint` reads is kept.

    Raises:
        InputError: ``source`` is not a readable checkpoint.
        OutputExistsError: ``target`` exists and ``force`` is False.
    """
    payload = read_checkpoint(source)
    # DynUNet lists some modules twice (its skip_layers hold the same blocks), so several keys
    # share one tensor: convert each tensor once, or torch.save would store the copies twice.
    halves: dict[tuple[int, int, tuple[int, ...]], torch.Tensor] = {}
    state = {}
    for key, value in payload["model"]["state_dict"].items():
        if value.is_floating_point():
            identity = (value.untyped_storage().data_ptr(), value.storage_offset(), value.shape)
            value = halves.setdefault(identity, value.half())
        state[key] = value
    payload["model"]["state_dict"] = state
    payload["training"] = {}
    target = Path(target)
    with atomic_output(target, force=force) as tmp:
        torch.save(payload, tmp)
    return target


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[MultiHeadUNet, CheckpointInfo]:
    """The trained network (in eval mode, on ``device``) and what the checkpoint says.

    Raises:
        InputError: see :func:`read_checkpoint`.
    """
    payload = read_checkpoint(path)
    model_part = payload["model"]
    config = ModelConfig.from_dict(model_part["config"])
    heads = {str(k): int(v) for k, v in model_part["heads"].items()}
    model = MultiHeadUNet(config, heads)
    # Exported checkpoints hold float16 weights: load_state_dict copies them into float32.
    model.load_state_dict(model_part["state_dict"])
    model.to(device).eval()
    protocols = {
        name: Protocol(
            name,
            tuple(Label(int(i), str(n), (int(c[0]), int(c[1]), int(c[2]))) for i, n, c in rows),
        )
        for name, rows in payload["protocols"].items()
    }
    conform = dict(payload["conform"])
    info = CheckpointInfo(
        path=Path(path),
        kind=str(payload["kind"]),
        step=int(payload["step"]),
        val_dice=None if payload["val_dice"] is None else float(payload["val_dice"]),
        model_config=config,
        heads=heads,
        protocols=protocols,
        full_protocol=str(payload["full_protocol"]),
        conform=ConformConfig(**conform),
        train_config=dict(payload["train_config"]),
        package_version=str(payload["package_version"]),
        created=str(payload["created"]),
        calibration=_calibration(payload, heads, path),
    )
    return model, info


def _calibration(
    payload: dict[str, Any], heads: dict[str, int], path: str | Path
) -> dict[str, Any] | None:
    """The checkpoint's calibration, checked to fit its full head; None when it has none."""
    calibration = payload.get("calibration")
    if calibration is None:
        return None
    weights = calibration.get("log_weights") if isinstance(calibration, dict) else None
    expected = heads.get(str(payload["full_protocol"]))
    if not isinstance(weights, list) or len(weights) != expected:
        found = f"{len(weights)} weights" if isinstance(weights, list) else "no weight list"
        raise InputError(
            path,
            f"a calibration with one log weight per class of the full head ({expected})",
            found,
            "calibrate the model again (wholebrain calibrate)",
        )
    pitch = calibration.get("brain_pitch_deg")
    try:  # the canvas's own check of a pose (ConformConfig: a number in its bounds)
        if pitch is not None:
            ConformConfig(brain_pitch_deg=float(pitch))
    except (TypeError, ValueError) as error:
        raise InputError(
            path,
            "a calibration whose brain_pitch_deg is a pose the canvas takes",
            f"{pitch!r} ({error})",
            "calibrate the model again (wholebrain calibrate)",
        ) from None
    return dict(calibration)
