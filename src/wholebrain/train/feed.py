"""What each step feeds the network: batches read ahead on the CPU, finished on the device.

:class:`Feed` wraps the data of a run: a ``DataLoader`` over step numbers reads each step's
regions (:meth:`TrainingData.plan` + :meth:`TrainingData.load`, in worker processes when
``data.num_workers`` > 0), and :meth:`Feed.to_device` draws the synthetic slots and augments
the batch on the training device with a generator seeded by (seed, step, rank).
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from wholebrain.data.augment import Augmenter, context_vox
from wholebrain.data.batch import Batch, step_seed
from wholebrain.data.dataset import TrainingData
from wholebrain.data.synthetic import SynthSource
from wholebrain.train.config import TrainConfig
from wholebrain.train.distributed import Distributed
from wholebrain.train.strategies import Strategy

__all__ = ["Feed"]


class _StepBatches(torch.utils.data.Dataset[Batch]):
    """Item s: the CPU batch of step s for one rank (picklable, for DataLoader workers)."""

    def __init__(self, feed: Feed) -> None:
        self.data, self.strategy = feed.data, feed.strategy
        self.batch_size, self.context = feed.config.batch_size, feed.context
        self.rank, self.world_size = feed.dist.rank, feed.dist.world_size

    def __len__(self) -> int:
        return self.strategy.phases[-1].stop

    def __getitem__(self, step: int) -> Batch:
        shares = self.strategy.phase(step).shares
        slots = self.data.plan(
            step, shares, batch_size=self.batch_size, rank=self.rank, world_size=self.world_size
        )
        return self.data.load(
            slots,
            self.strategy.target_protocols,
            context_vox=self.context,
            derive=self.strategy.derive_targets,
        )


class Feed:
    """The batches of a run, from the cache to augmented patches on the device."""

    def __init__(
        self,
        config: TrainConfig,
        data: TrainingData,
        strategy: Strategy,
        synth: SynthSource | None,
        dist: Distributed,
    ) -> None:
        self.config, self.data, self.strategy, self.synth, self.dist = (
            config,
            data,
            strategy,
            synth,
            dist,
        )
        self.patch = data.patch_size_vox
        self.context = context_vox(config.augment, self.patch)
        self.augment = Augmenter(
            config.augment, strategy.target_protocols, dist.device, config.conform
        )

    def batches(self, start: int, stop: int) -> Iterator[Batch]:
        """CPU batches of steps ``start .. stop - 1``, read ahead by the DataLoader workers."""
        workers = self.config.data.num_workers
        loader = torch.utils.data.DataLoader(
            _StepBatches(self),
            batch_size=None,
            sampler=range(start, stop),
            num_workers=workers,
            pin_memory=self.dist.device.type == "cuda",
            prefetch_factor=4 if workers else None,
        )
        return iter(loader)

    def to_device(self, batch: Batch, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(image (B, 1, X, Y, Z), protocol -> targets (B, X, Y, Z)) on the device."""
        device = self.dist.device
        image = batch.image.to(device, non_blocking=True)
        labels = batch.labels.to(device, non_blocking=True)
        gen = torch.Generator(device=device)
        gen.manual_seed(step_seed(self.config.seed, step, 1 + self.dist.rank))
        if self.synth is not None:
            self.synth.fill(
                batch,
                image,
                labels,
                patch_size_vox=self.patch,
                context_vox=self.context,
                foreground_fraction=self.config.data.foreground_fraction,
                gen=gen,
                derive=self.strategy.derive_targets,
            )
        image, labels = self.augment(image, labels, self.patch, gen, synthetic=batch.synthetic)
        return image, {p: labels[:, j] for j, p in enumerate(batch.protocols)}
