"""The training loop: data → augmentation on the device → network → strategy loss → optimiser.

One step, on every process::

    slots = data.plan(step)              # which subjects and patches: f(seed, step, rank)
    batch = data.load(slots)             # regions read from the cache (DataLoader workers)
    synth.fill(batch); augment(batch)    # on the device, generator seeded by (seed, step, rank)
    loss = strategy.loss(model(image), targets, phase(step))
    backward, clip, step (mixed precision on GPU)

Because every random draw depends only on (seed, step, rank), ``--resume`` from ``last.pt`` at
step k continues exactly as the uninterrupted run would have. Rank 0 alone writes files: the
resolved ``config.toml``, ``metrics.csv`` (and TensorBoard events when tensorboard is
installed), ``last.pt`` every ``checkpoint_every`` steps and ``best.pt`` at each new best
validation Dice.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from wholebrain.data.dataset import TrainingData
from wholebrain.data.synthetic import SYNTH_PROTOCOL, SynthSource
from wholebrain.errors import InputError
from wholebrain.io import atomic_output
from wholebrain.model import ModelConfig, MultiHeadUNet
from wholebrain.protocols import FULL_PROTOCOL
from wholebrain.train.checkpoint import (
    checkpoint_payload,
    read_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from wholebrain.train.config import TrainConfig, config_to_dict, to_toml
from wholebrain.train.distributed import Distributed, setup
from wholebrain.train.feed import Feed
from wholebrain.train.metrics import Metrics, mean_over_ranks
from wholebrain.train.optim import amp_dtype, learning_rate, make_optimizer
from wholebrain.train.strategies import Phase, Strategy
from wholebrain.train.validate import validate

__all__ = ["TrainResult", "train"]

log = logging.getLogger(__name__)

# Keys that may change between a run and its resumption (they do not change what is learnt).
_RESUMABLE_CHANGES = frozenset(
    {"steps", "checkpoint_every", "log_every", "output_dir", "cpu_threads", "ddp_timeout_min"}
    | {"val.every", "val.max_subjects", "data.num_workers"}
)


@dataclass(frozen=True)
class TrainResult:
    """What a run left behind."""

    output_dir: Path  # the run folder
    step: int  # steps done
    last: Path  # last.pt
    best: Path | None  # best.pt, None when never validated
    best_val_dice: float | None  # its validation mean Dice
    seconds: float  # wall time of training, resumed parts included


def train(
    config: TrainConfig,
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
    stop_after: int | None = None,
) -> TrainResult:
    """Train as ``config`` says, in ``config.output_dir`` (under torchrun: with DDP).

    Args:
        config: the resolved training config (:func:`~wholebrain.train.config.load_config`).
        device: "auto", "cpu" or "cuda".
        resume: continue the run in ``output_dir`` from its ``last.pt``.
        progress: a tqdm bar on stderr (rank 0).
        stop_after: stop (as an interruption would, writing ``last.pt``) once this many steps
            are done; the schedule still runs over ``config.steps``.

    Raises:
        InputError: the run folder holds a run and ``resume`` is False, or holds none to
            resume, or the config changed since; data problems (see ``TrainingData``).
    """
    dist = setup(device, timeout_min=config.ddp_timeout_min, cpu_threads=config.cpu_threads)
    try:
        return _Run(config, dist, resume=resume, progress=progress).run(stop_after)
    finally:
        dist.close()


class _Run:
    """One training run on this process: set up in ``__init__`` and ``_build``, then ``run``."""

    # Built by _build() once the data and the strategy are known.
    model: MultiHeadUNet
    net: torch.nn.Module  # the model, wrapped in DistributedDataParallel under torchrun
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    autocast: Callable[[], contextlib.AbstractContextManager[object]]
    memory_format: torch.memory_format  # channels-last under CPU bf16
    feed: Feed
    metrics: Metrics
    bar: Any  # tqdm
    sums: dict[str, list[torch.Tensor]]  # loss terms since the last metrics row
    done: int  # steps finished
    best: float | None  # best validation Dice so far
    began: float  # time.monotonic() at which the run (resumed parts included) started
    resolved: dict[str, Any]  # the resolved config, as stored in checkpoints

    def __init__(
        self, config: TrainConfig, dist: Distributed, *, resume: bool, progress: bool
    ) -> None:
        self.config, self.dist, self.progress = config, dist, progress
        self.folder = Path(config.output_dir)
        self.state = self._resume_state() if resume else self._fresh_folder()
        self.data = self._rank0_first(
            lambda build: TrainingData(
                config.data,
                config.conform,
                seed=config.seed,
                build_cache=build,
                progress=progress and dist.is_main,
            )
        )
        self.synth: SynthSource | None = None
        if config.synth.enabled:
            self.synth = self._rank0_first(
                lambda build: SynthSource(
                    config.synth,
                    config.conform,
                    config.data.cache_dir,
                    dist.device,
                    build_cache=build,
                )
            )
            self.data.synth_maps = len(self.synth)
        partials = [p for p in self.data.protocols if p != FULL_PROTOCOL]
        if self.synth is not None:
            partials.append(SYNTH_PROTOCOL)
        self.strategy = Strategy(
            config.strategy,
            partials,
            steps=config.steps,
            pretrain_steps=config.pretrain_steps,
            full_fraction=config.data.full_fraction,
            synth_fraction=config.synth.fraction if self.synth is not None else 0.0,
            loss_weights=config.loss_weights,
        )
        self._check_pools()

    def _rank0_first(self, make: Callable[[bool], Any]) -> Any:
        """Rank 0 builds the caches while the others wait, then they open them."""
        if not self.dist.is_main:
            self.dist.barrier()
        made = make(self.dist.is_main)
        if self.dist.is_main:
            self.dist.barrier()
        return made

    def _fresh_folder(self) -> dict[str, Any]:
        if (self.folder / "last.pt").exists():
            raise InputError(
                self.folder,
                "a new run folder",
                "a run (last.pt) already there",
                "pass --resume to continue it, or --output for a new run",
            )
        return {}

    def _resume_state(self) -> dict[str, Any]:
        payload = read_checkpoint(self.folder / "last.pt", map_location="cpu")
        stored, current = _flat(payload["train_config"]), _flat(config_to_dict(self.config))
        changed = sorted(
            k
            for k in stored.keys() | current.keys()
            if stored.get(k) != current.get(k) and k not in _RESUMABLE_CHANGES
        )
        if changed:
            raise InputError(
                self.folder / "last.pt",
                "the config the run started with",
                f"changed keys: {', '.join(changed[:5])}",
                "restore them, or start a new run with another --output",
            )
        return payload

    def _check_pools(self) -> None:
        sizes = self.data.pool_sizes()
        phases = []
        for phase in self.strategy.phases:
            shares = {p: s for p, s in phase.shares.items() if s > 0 and sizes[p] > 0}
            if not shares:
                wanted = ", ".join(p for p, s in phase.shares.items() if s > 0)
                raise InputError(
                    self.config.data.manifest or self.config.data.root,
                    f"training subjects in the pools the {self.strategy.name} strategy draws "
                    f"from ({wanted})",
                    f"none (pool sizes {sizes})",
                    "add annotated subjects, enable synth, or pick another strategy",
                )
            phases.append(replace(phase, shares=shares))
        self.strategy.phases = tuple(phases)

    # --- the run -------------------------------------------------------------------------------

    def run(self, stop_after: int | None) -> TrainResult:
        config = self.config
        self._build()
        steps = config.steps if stop_after is None else min(config.steps, stop_after)
        batches = self.feed.batches(self.done, steps)
        start = self.done
        try:
            for step in range(start, steps):
                phase = self.strategy.phase(step)
                lr = learning_rate(config.optim, step, phase)
                image, targets = self.feed.to_device(next(batches), step)
                self._step(image, targets, phase, lr)
                self.done = step + 1
                self.bar.update(1)
                val_dice = self._validate_if_due()
                logging_due = self.done % max(config.log_every, 1) == 0
                if val_dice is not None or logging_due or self.done == config.steps:
                    self._log(phase.name, lr, val_dice)
                every = config.checkpoint_every
                if self.done == steps or (every and self.done % every == 0):
                    self._save("last", None)
        except KeyboardInterrupt:
            if self.done > start:
                self._save("last", None)  # the run resumes from the last finished step
            raise
        finally:
            self.bar.close()
            self.metrics.close()
        best = self.folder / "best.pt" if self.best is not None else None
        seconds = time.monotonic() - self.began
        last = self.folder / "last.pt"
        return TrainResult(self.folder, self.done, last, best, self.best, seconds)

    def _build(self) -> None:
        """Model, optimiser, mixed precision, resumed state, run folder, feed, metrics."""
        config, dist = self.config, self.dist
        torch.manual_seed(config.seed)
        self.model = MultiHeadUNet(config.model, self.strategy.heads).to(dist.device)
        if config.init_weights and not self.state:
            _init_from(self.model, Path(config.init_weights))
        self.optimizer = make_optimizer(self.model, config.optim)
        amp = amp_dtype(config.amp, dist.device)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp == torch.float16)
        device_type = dist.device.type
        self.autocast = (
            (lambda: torch.autocast(device_type, dtype=amp))
            if amp is not None
            else contextlib.nullcontext
        )
        # oneDNN's bf16 convolutions want channels-last tensors (measured 5.1 vs 5.6 s per
        # 64³ step channels-first); in fp32 channels-last is slower, so only with CPU bf16.
        self.memory_format = (
            torch.channels_last_3d
            if amp is not None and device_type == "cpu"
            else torch.contiguous_format
        )
        self.model.to(memory_format=self.memory_format)  # type: ignore[call-overload]
        self.done, self.best, seconds = self._restore() if self.state else (0, None, 0.0)
        self.began = time.monotonic() - seconds
        self.resolved = config_to_dict(config)
        if dist.is_main:
            self.folder.mkdir(parents=True, exist_ok=True)
            now = datetime.datetime.now()
            header = f"resolved training config, wholebrain train, {now:%Y-%m-%d %H:%M}"
            with atomic_output(self.folder / "config.toml", force=True) as tmp:
                tmp.write_text(to_toml(config, header))
        self.net = self.model
        if dist.active:
            self.net = torch.nn.parallel.DistributedDataParallel(
                self.model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None
            )
        self.feed = Feed(config, self.data, self.strategy, self.synth, dist)
        self.metrics = Metrics(self.folder, self.strategy.target_protocols, self.done, dist.is_main)
        self.sums = {}
        from tqdm import tqdm

        self.bar = tqdm(
            total=config.steps,
            initial=self.done,
            unit="step",
            file=sys.stderr,
            disable=not (self.progress and dist.is_main),
            dynamic_ncols=True,
        )

    def _step(
        self, image: torch.Tensor, targets: dict[str, torch.Tensor], phase: Phase, lr: float
    ) -> None:
        """One optimiser step (loss scaling for fp16, gradient clipping)."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with self.autocast():
            logits = self.net(image.contiguous(memory_format=self.memory_format))
        loss, terms = self.strategy.loss(logits, targets, phase)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
        if self.config.optim.grad_clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.optim.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.sums.setdefault("loss", []).append(loss.detach())  # no device sync per step
        for protocol, term in terms.items():
            self.sums.setdefault(f"loss_{protocol}", []).append(term)

    def _validate_if_due(self) -> float | None:
        """Validation Dice when due (every val.every steps and at the end); best.pt if best."""
        config = self.config
        every = config.val.every
        due = self.done == config.steps or bool(every and self.done % every == 0)
        subjects = self.data.val[: config.val.max_subjects or None]
        if not (due and subjects):
            return None
        dice = validate(
            self.model,
            subjects,
            self.dist,
            mode=config.val.mode,
            patch_size_vox=self.feed.patch,
            overlap=config.val.overlap,
            autocast=self.autocast,
        )
        if self.best is None or dice > self.best:
            self.best = dice
            self._save("best", dice)
        return dice

    def _log(self, phase: str, lr: float, val_dice: float | None) -> None:
        means = {k: float(torch.stack(v).mean()) for k, v in self.sums.items()}
        row: dict[str, Any] = mean_over_ranks(means, self.dist)
        seconds = time.monotonic() - self.began
        row.update(step=self.done, phase=phase, lr=lr, val_dice=val_dice, seconds=seconds)
        self.metrics.write(row)
        shown = {"loss": f"{row['loss']:.3f}"}
        if val_dice is not None:
            shown["val"] = f"{val_dice:.3f}"
        self.bar.set_postfix(shown)
        self.sums = {}

    def _save(self, kind: str, val_dice: float | None) -> None:
        """best.pt or last.pt, with everything a resumption needs (rank 0 only)."""
        if not self.dist.is_main:
            return
        last = max(self.done - 1, 0)
        optim = self.config.optim
        training = {
            "optimizer": self.optimizer.state_dict(),
            "grad_scaler": self.scaler.state_dict(),
            # The schedule is a function of the step: its state is the step and this lr.
            "scheduler": {
                "schedule": optim.schedule,
                "lr": learning_rate(optim, last, self.strategy.phase(last)),
            },
            "rng": rng_state(),
            "best_val_dice": self.best,
            "seconds": time.monotonic() - self.began,
        }
        payload = checkpoint_payload(
            self.model,
            kind=kind,
            step=self.done,
            val_dice=val_dice,
            conform=self.config.conform,
            train_config=self.resolved,
            training=training,
        )
        save_checkpoint(self.folder / f"{kind}.pt", payload)

    def _restore(self) -> tuple[int, float | None, float]:
        """Weights, optimiser, loss scaler and RNG from last.pt: (step, best Dice, seconds)."""
        state = self.state
        self.model.load_state_dict(state["model"]["state_dict"])
        training = state["training"]
        self.optimizer.load_state_dict(training["optimizer"])
        self.scaler.load_state_dict(training["grad_scaler"])
        set_rng_state(training["rng"])
        log.info("resuming %s at step %d", self.folder, state["step"])
        return int(state["step"]), training["best_val_dice"], float(training["seconds"])


def _init_from(model: MultiHeadUNet, path: Path) -> None:
    """Copy a checkpoint's trunk and matching heads into ``model`` (``init_weights``).

    Raises:
        InputError: the checkpoint cannot be read, or its trunk is another architecture.
    """
    payload = read_checkpoint(path, map_location="cpu")
    stored = ModelConfig.from_dict(payload["model"]["config"])
    if stored != model.config:
        raise InputError(
            path,
            f"a checkpoint of the configured network (model = {model.config.to_dict()})",
            f"model = {stored.to_dict()}",
            "set [model] to the checkpoint's architecture, or leave init_weights empty",
        )
    own = model.state_dict()
    weights = {
        k: v
        for k, v in payload["model"]["state_dict"].items()
        if k in own and own[k].shape == v.shape
    }
    skipped = sorted({k.split(".")[1] for k in own if k.startswith("heads.") and k not in weights})
    model.load_state_dict(weights, strict=False)
    log.info(
        "initial weights from %s (step %s)%s",
        path,
        payload.get("step"),
        f"; heads started at random: {', '.join(skipped)}" if skipped else "",
    )


def _flat(values: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, dict) and key != "loss_weights":
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out
