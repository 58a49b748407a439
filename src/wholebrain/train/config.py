"""The training configuration: frozen dataclasses loaded from TOML, and written back.

A config file has top-level keys (:class:`TrainConfig`'s own fields) and one table per
section, each the config dataclass of the module that uses it::

    strategy = "multitask"
    steps = 50000
    [model]      # wholebrain.model.ModelConfig
    [conform]    # wholebrain.conform.ConformConfig
    [data]       # wholebrain.data.dataset.DataConfig
    [augment]    # wholebrain.data.augment.AugmentConfig
    [synth]      # wholebrain.data.synthetic.SynthDataConfig ([synth.generator]: SynthConfig)
    [optim]      # OptimConfig
    [val]        # ValConfig

Omitted keys take their defaults. Paths are relative to the config file's folder and are
stored absolute in the *resolved* config (:func:`to_toml`), which every run folder and
checkpoint keeps. Every problem is an :class:`~wholebrain.errors.InputError` naming the file
and the key.
"""

from __future__ import annotations

import dataclasses
import json
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wholebrain.conform import ConformConfig
from wholebrain.data.augment import AugmentConfig
from wholebrain.data.dataset import DataConfig
from wholebrain.data.synthetic import SynthDataConfig
from wholebrain.errors import InputError
from wholebrain.model import ModelConfig

__all__ = [
    "AMP_MODES",
    "STRATEGIES",
    "OptimConfig",
    "TrainConfig",
    "ValConfig",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "to_toml",
]

STRATEGIES = ("full-only", "pretrain-finetune", "multitask", "marginal")
AMP_MODES = ("auto", "bf16", "fp16", "off")
# Keys holding paths: resolved against the config file's folder.
_PATH_KEYS = frozenset(
    {
        "output_dir",
        "init_weights",
        "data.manifest",
        "data.root",
        "data.cache_dir",
        "synth.label_maps",
        "synth.priors",
    }
)


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser and learning-rate schedule."""

    optimizer: str = "adamw"  # "adamw" or "sgd" (Nesterov momentum, nnU-Net's choice)
    lr: float = 1e-3  # peak learning rate (nnU-Net's SGD: 0.01)
    weight_decay: float = 3e-5  # decoupled (AdamW) or L2 (SGD) weight decay
    momentum: float = 0.99  # SGD only: Nesterov momentum
    schedule: str = "poly"  # "poly" lr (1 - t)^0.9 (nnU-Net), "cosine" or "constant"; per phase
    warmup_steps: int = 0  # linear warm-up from 0 at the start of each phase
    grad_clip: float = 12.0  # clip the gradient norm to this (nnU-Net: 12; 0 = off)

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "sgd"):
            raise ValueError(f"optimizer must be 'adamw' or 'sgd', not {self.optimizer!r}")
        if self.schedule not in ("poly", "cosine", "constant"):
            raise ValueError(
                f"schedule must be 'poly', 'cosine' or 'constant', not {self.schedule!r}"
            )
        if not self.lr > 0 or self.weight_decay < 0 or self.warmup_steps < 0 or self.grad_clip < 0:
            raise ValueError("lr must be > 0; weight_decay, warmup_steps, grad_clip >= 0")


@dataclass(frozen=True)
class ValConfig:
    """Validation Dice on the held-out full-annotation subjects (split "val")."""

    every: int = 1000  # validate every this many steps and at the end (0 = only at the end)
    mode: str = "sliding"  # "sliding": windows of the patch size (MONAI); "whole": whole canvas
    overlap: float = 0.25  # sliding windows: overlap of neighbouring windows
    max_subjects: int = 0  # validate on at most this many val subjects (0 = all)

    def __post_init__(self) -> None:
        if self.mode not in ("sliding", "whole"):
            raise ValueError(f"mode must be 'sliding' or 'whole', not {self.mode!r}")
        if not 0 <= self.overlap < 1 or self.every < 0 or self.max_subjects < 0:
            raise ValueError("overlap must be in [0, 1); every and max_subjects >= 0")


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run needs; stored (resolved) in every run folder and checkpoint."""

    strategy: str = "multitask"  # full-only | pretrain-finetune | multitask | marginal
    steps: int = 50_000  # optimiser steps in all (all phases together)
    pretrain_steps: int = 0  # pretrain-finetune: steps on the partial heads before the full head
    batch_size: int = 2  # samples per step and process (the global batch is this x processes)
    seed: int = 0  # seeds the initial weights, the data plan and every augmentation draw
    # Mixed precision on GPU: "auto" = bf16 where supported else fp16; always off on CPU.
    amp: str = "auto"
    loss_weights: dict[str, float] = field(default_factory=dict)  # protocol -> weight (default 1)
    checkpoint_every: int = 1000  # write last.pt every this many steps (and at the end)
    log_every: int = 50  # one metrics.csv row per this many steps (losses averaged over them)
    output_dir: str = ""  # the run folder ("" = runs/<config file name> in the working directory)
    cpu_threads: int = 0  # torch threads per process on CPU (0 = cores / local processes)
    ddp_timeout_min: float = 60.0  # collective timeout under torchrun (rank 0 builds the cache)
    # Start from these weights (a checkpoint of the same architecture: best.pt, last.pt, the
    # shipped model) instead of random ones, e.g. to fine-tune the shipped model on a cohort;
    # heads that the checkpoint lacks or sizes differently start random. "" = random start.
    init_weights: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)  # the network
    conform: ConformConfig = field(default_factory=ConformConfig)  # the canvas
    data: DataConfig = field(default_factory=lambda: DataConfig(manifest="manifest.csv"))
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # augmentation
    synth: SynthDataConfig = field(default_factory=SynthDataConfig)  # synthetic scans
    optim: OptimConfig = field(default_factory=OptimConfig)  # optimiser and schedule
    val: ValConfig = field(default_factory=ValConfig)  # validation

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"strategy must be one of {', '.join(STRATEGIES)}, not {self.strategy!r}"
            )
        if self.amp not in AMP_MODES:
            raise ValueError(f"amp must be one of {', '.join(AMP_MODES)}, not {self.amp!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(
                f"steps and batch_size must be >= 1, not {self.steps}, {self.batch_size}"
            )
        if self.strategy == "pretrain-finetune" and not 0 < self.pretrain_steps < self.steps:
            raise ValueError(
                f"pretrain-finetune needs 0 < pretrain_steps < steps, not {self.pretrain_steps}"
            )
        if self.data.full_fraction + (self.synth.fraction if self.synth.enabled else 0) > 1:
            raise ValueError("data.full_fraction + synth.fraction must be at most 1")
        for name in ("checkpoint_every", "log_every", "cpu_threads"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        patch = self.data.patch_size_vox or self.conform.canvas_shape_vox
        divisor = self.model.divisor
        if self.data.patch_size_vox and any(p % divisor for p in patch):
            raise ValueError(
                f"data.patch_size_vox {list(patch)} must be multiples of {divisor} "
                f"(model.filters has {len(self.model.filters)} levels)"
            )
        from wholebrain.protocols import available_protocols

        unknown = sorted(set(self.loss_weights) - set(available_protocols()))
        if unknown:
            raise ValueError(
                f"loss_weights names unknown protocol(s) {', '.join(unknown)}; "
                f"known: {', '.join(available_protocols())}"
            )
        if self.model.in_channels != 1:
            raise ValueError("model.in_channels must be 1: training reads one T1w channel")


# --- dict <-> dataclass --------------------------------------------------------------------


def config_to_dict(config: Any) -> dict[str, Any]:
    """The config as plain TOML-able values (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))  # type: ignore[no-any-return]


def config_from_dict(
    values: Mapping[str, Any], *, source: str | Path | None = None, base: Path | None = None
) -> TrainConfig:
    """Build a :class:`TrainConfig` from nested dicts (a parsed TOML file or a checkpoint's).

    Args:
        values: the nested tables.
        source: file named in errors.
        base: folder that relative paths are resolved against (None: leave them).

    Raises:
        InputError: an unknown key, a value of the wrong type, or a value out of range.
    """
    config: TrainConfig = _build(TrainConfig, values, "", source)
    if base is not None:
        config = _resolve_paths(config, base)
    return config


def _build(
    cls: type[Any], values: Mapping[str, Any], prefix: str, source: str | Path | None
) -> Any:
    if not isinstance(values, Mapping):
        raise InputError(source, f"a table [{prefix.rstrip('.')}]", repr(values), "make it a table")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        raise InputError(
            source,
            f"keys of {where}: {', '.join(fields)}",
            f"unknown key {prefix}{unknown[0]}",
            "fix its spelling or remove it",
        )
    kwargs = {
        name: _convert(hints[name], value, f"{prefix}{name}", source)
        for name, value in values.items()
    }
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as error:
        where = f"[{prefix.rstrip('.')}]" if prefix else "the top level"
        raise InputError(source, f"valid values in {where}", str(error), "fix the value") from None


def _convert(hint: Any, value: Any, key: str, source: str | Path | None) -> Any:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)

    def wrong(expected: str) -> InputError:
        return InputError(source, f"{key} = {expected}", f"{value!r}", f"fix {key}")

    if dataclasses.is_dataclass(hint):
        return _build(typing.cast(type, hint), value, f"{key}.", source)
    if origin is typing.Literal:
        if value not in args:
            raise wrong(f"one of {', '.join(map(str, args))}")
        return value
    if origin in (types.UnionType, typing.Union):
        for arg in args:
            try:
                return _convert(arg, value, key, source)
            except InputError:
                continue
        raise wrong(" or ".join(getattr(a, "__name__", str(a)) for a in args))
    if hint is type(None):  # Optional settings: a JSON copy (checkpoints) holds null
        if value is not None:
            raise wrong("null")
        return None
    if hint is bool:
        if not isinstance(value, bool):
            raise wrong("true or false")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong("an integer")
        return value
    if hint is float:
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise wrong("a number")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise wrong("a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(args[0], v, key, source) for v in value)
        if len(value) != len(args):
            raise wrong(f"a list of {len(args)} values")
        return tuple(_convert(a, v, key, source) for a, v in zip(args, value, strict=True))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise wrong("a table")
        return {str(k): _convert(args[1], v, f"{key}.{k}", source) for k, v in value.items()}
    raise TypeError(f"config field {key}: unsupported type {hint}")  # a programming error


def _resolve_paths(config: TrainConfig, base: Path) -> TrainConfig:
    def resolve(text: str) -> str:
        if not text:
            return text
        path = Path(text).expanduser()
        return str((path if path.is_absolute() else base / path).resolve())

    changes: dict[str, Any] = {}
    for key in _PATH_KEYS:
        section, _, name = key.rpartition(".")
        owner = getattr(config, section) if section else config
        new = resolve(getattr(owner, name))
        if section:
            owner = changes.get(section, owner)
            changes[section] = dataclasses.replace(owner, **{name: new})
        else:
            changes[name] = new
    return dataclasses.replace(config, **changes)


def load_config(path: str | Path) -> TrainConfig:
    """Read a training config TOML file; relative paths are resolved against its folder,
    and an empty ``output_dir`` becomes ``runs/<file stem>`` in the working directory.

    Raises:
        InputError: the file is missing or not TOML, or a key or value is wrong.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "a training config TOML file", "no such file", "check the path")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, "a TOML file", f"invalid TOML ({error})", "fix the syntax") from None
    config = config_from_dict(values, source=path, base=path.parent.resolve())
    if not config.output_dir:
        config = dataclasses.replace(config, output_dir=str(Path.cwd() / "runs" / path.stem))
    return config


# --- writing -------------------------------------------------------------------------------


def to_toml(config: TrainConfig, header: str = "") -> str:
    """The config as TOML text that :func:`load_config` reads back to an equal config."""
    lines = [f"# {line}" for line in header.splitlines()]
    lines += _table(config, "")
    return "\n".join(lines).strip() + "\n"


def _table(config: Any, name: str) -> list[str]:
    """Scalars of one dataclass, then its dataclass fields as [sub.tables]."""
    lines = [f"\n[{name}]"] if name else []
    sections = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if value is None and f.default is None:
            continue  # TOML has no null: the absent key reads back as the default, None
        if dataclasses.is_dataclass(value):
            sections.append((f.name, value))
        else:
            lines.append(f"{_key(f.name)} = {_value(json.loads(json.dumps(value)))}")
    for key, section in sections:
        lines += _table(section, f"{name}.{key}" if name else key)
    return lines


def _key(key: str) -> str:
    return key if key.replace("_", "").isalnum() else json.dumps(key)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # JSON string escapes are valid TOML basic-string escapes
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {value!r} as TOML")
