"""Training subjects, the full/partial sampler, and the patches of each training step.

The path from files to a batch::

    manifest CSV (or a folder layout) ─prepare_subjects─▶ conformed cache (memory-mapped .npy)
        ─TrainingData─▶ full / partial / val subjects ─plan(step)─▶ slots ─load─▶ CPU batch

Everything random here is a function of ``(seed, step, rank)`` only: :meth:`TrainingData.plan`
seeds a fresh ``torch.Generator`` per step, so an interrupted run that resumes at step k reads
exactly the patches the uninterrupted run read, and a ``DataLoader`` with workers produces the
same batches as the training process itself.

Batch slots come from three *pools*: ``full`` (subjects annotated in the full protocol),
``partial`` (subjects with partial annotations only) and ``synth`` (synthetic scans drawn from
label maps on the training device, :mod:`wholebrain.data.synthetic`). Each slot picks its pool at
random with the configured shares, among the pools the strategy's current phase allows.

Targets: one channel per protocol, class indices of that protocol, ``IGNORE_INDEX`` where the
subject has no annotation that gives that protocol. With ``derive=True`` a protocol is also given
by any finer annotation the subject has (a full annotation gives ``tissue``, ``aseg``, …,
through :func:`wholebrain.protocols.map_labels`).
"""

from __future__ import annotations

import functools
import logging
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from wholebrain.conform import ConformConfig
from wholebrain.data.batch import POOLS, Batch, Slot, place_patch, read_region, step_seed
from wholebrain.data.cache import CachedSubject, open_cached, prepare_subjects
from wholebrain.data.manifest import Entry, assign_validation, read_manifest
from wholebrain.errors import InputError
from wholebrain.losses import IGNORE_INDEX
from wholebrain.protocols import FULL_PROTOCOL, get_protocol, map_labels

__all__ = [
    "POOLS",
    "Batch",
    "DataConfig",
    "Slot",
    "TrainingData",
    "TrainingSubject",
    "derivation_lut",
    "place_patch",
    "read_region",
    "step_seed",
]

log = logging.getLogger(__name__)

_FOREGROUND_SAMPLE = 200_000  # labelled voxels looked at to index a subject's classes
_PER_CLASS = 512  # voxel positions kept per class for foreground-biased patches
_RANDOMS = 8  # uniform numbers drawn per slot (pool, subject, foreground, class, voxel, 3 axes)


@dataclass(frozen=True)
class DataConfig:
    """Where the training subjects come from and how patches are drawn."""

    manifest: str = ""  # manifest CSV (`wholebrain dataset import` writes one); or layout + root
    layout: str = ""  # instead of a manifest: a folder layout (mindboggle, freesurfer, fsl, bids)
    root: str = ""  # the folder read with `layout`
    val_count: int = 0  # with `layout`: full-annotation subjects drawn (seeded) into the val split
    subjects: tuple[str, ...] = ()  # use only these subject ids (empty = every subject)
    cache_dir: str = "cache"  # conformed subjects; missing or stale ones are built at start
    # Reduce the full annotations of training subjects beyond `max_full_subjects` to this
    # partial protocol (simulated partial annotations, as in the paper's experiments); "" = off.
    simulate_partial: str = ""
    max_full_subjects: int = 0  # training subjects that keep their full annotation (0 = all)
    full_fraction: float = 0.5  # share of batch slots drawn from full-annotation subjects
    patch_size_vox: tuple[int, ...] = (128, 128, 128)  # training patch (X, Y, Z); [] = canvas
    # Share of patches centred near a voxel of a random labelled class (nnU-Net oversamples
    # foreground a third of the time); the rest are placed uniformly on the canvas.
    foreground_fraction: float = 0.33
    num_workers: int = 0  # DataLoader processes reading patches ahead (0 = the training process)

    def __post_init__(self) -> None:
        object.__setattr__(self, "patch_size_vox", tuple(int(n) for n in self.patch_size_vox))
        if self.patch_size_vox and (len(self.patch_size_vox) != 3 or min(self.patch_size_vox) < 1):
            raise ValueError(
                f"patch_size_vox must be 3 positive integers or [] (the whole canvas), "
                f"not {list(self.patch_size_vox)}"
            )
        for name in ("full_fraction", "foreground_fraction"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {value}")
        for name in ("val_count", "max_full_subjects", "num_workers"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, not {getattr(self, name)}")
        if bool(self.manifest) == bool(self.layout):
            raise ValueError("give either manifest or layout (with root), not both or neither")
        if self.layout and not self.root:
            raise ValueError(f"layout {self.layout!r} needs root, the folder to read")


@dataclass(frozen=True, eq=False)
class TrainingSubject:
    """A cached subject as training sees it."""

    cached: CachedSubject
    split: str  # train / val / test / ""
    # protocol -> (protocol stored in the cache, class-index LUT applied to it or None)
    sources: dict[str, tuple[str, NDArray[np.uint8] | None]] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.cached.subject

    @property
    def protocols(self) -> tuple[str, ...]:
        """The annotations training uses, after ``simulate_partial``."""
        return tuple(sorted(self.sources))

    @property
    def is_full(self) -> bool:
        return FULL_PROTOCOL in self.sources

    def labels(self, protocol: str, *, derive: bool) -> NDArray[np.uint8] | None:
        """(X, Y, Z) class indices of ``protocol`` (memory-mapped or looked up), or None."""
        source = self.target_source(protocol, derive=derive)
        if source is None:
            return None
        cached, lut = source
        labels = self.cached.labels(cached)
        return labels if lut is None else lut[labels]

    def target_source(
        self, protocol: str, *, derive: bool
    ) -> tuple[str, NDArray[np.uint8] | None] | None:
        """(cached protocol, LUT) that gives ``protocol`` for this subject, or None."""
        if protocol in self.sources:
            return self.sources[protocol]
        if not derive:
            return None
        for own, (cached, lut) in sorted(self.sources.items()):
            step = derivation_lut(own, protocol)
            if step is not None:
                return cached, step if lut is None else step[lut]
        return None


@functools.cache
def derivation_lut(source: str, target: str) -> NDArray[np.uint8] | None:
    """(256,) uint8: class index of ``source`` -> class index of ``target``; None if
    ``target`` is not coarser than ``source``. ``IGNORE_INDEX`` and unused entries map to
    ``IGNORE_INDEX``."""
    src, dst = get_protocol(source), get_protocol(target)
    try:
        ids = map_labels(src.ids, target, source=source)
    except InputError:
        return None
    lut = np.full(256, IGNORE_INDEX, dtype=np.uint8)
    lut[: src.num_classes] = dst.to_index(ids)
    lut.setflags(write=False)
    return lut


class TrainingData:
    """The training and validation subjects, and the patches of every step.

    Args:
        config: where subjects come from, patch size and sampling shares.
        conform: the canvas (subjects are cached on it).
        seed: seeds the validation draw (``layout`` + ``val_count``) and every step's plan.
        build_cache: build missing cache entries (False: only open them; used by ranks > 0
            after rank 0 built the cache).
        progress: tqdm bar while caching.

    Raises:
        InputError: bad manifest or layout, no training subject, unknown ``simulate_partial``.
        InvalidSubjectsError: subjects whose files cannot be used.
    """

    def __init__(
        self,
        config: DataConfig,
        conform: ConformConfig,
        *,
        seed: int = 0,
        build_cache: bool = True,
        progress: bool = False,
    ) -> None:
        self.config = config
        self.conform = conform
        self.seed = seed
        entries = self._entries()
        cache_dir = Path(config.cache_dir)
        if build_cache:
            prepare_subjects(entries, cache_dir, config=conform, progress=progress)
        split_of = {e.subject: e.split for e in entries}
        subjects = [self._subject(open_cached(cache_dir, s), split_of[s]) for s in split_of]
        labelled = [s for s in subjects if s.sources]
        self.val = [s for s in labelled if s.split == "val" and s.is_full]
        train = [s for s in labelled if s.split not in ("val", "test")]
        self.full, self.partial = self._reduce([s for s in train if s.is_full], train)
        if not self.full and not self.partial:
            raise InputError(
                config.manifest or config.root,
                "annotated subjects in the train split (or with no split)",
                f"none among {len(subjects)} subjects",
                "annotate subjects or set their split to train",
            )
        self.patch_size_vox = self._patch_size()
        self.synth_maps = 0  # label maps of the synthetic source, set by whoever attaches one
        self._foreground: dict[str, dict[int, NDArray[np.int64]]] = {}

    # --- subjects ----------------------------------------------------------------------------

    def _entries(self) -> list[Entry]:
        config = self.config
        if config.manifest:
            entries = read_manifest(config.manifest)
        else:
            from wholebrain.data.layouts import find_subjects

            entries = find_subjects(config.layout, config.root)
        if config.subjects:
            missing = sorted(set(config.subjects) - {e.subject for e in entries})
            if missing:
                raise InputError(
                    config.manifest or config.root,
                    "the subjects listed in data.subjects",
                    f"no subject {', '.join(missing[:5])}",
                    "fix data.subjects",
                )
            entries = [e for e in entries if e.subject in config.subjects]
        if config.layout and config.val_count:
            entries = assign_validation(entries, config.val_count, self.seed)
        return entries

    @staticmethod
    def _subject(cached: CachedSubject, split: str) -> TrainingSubject:
        return TrainingSubject(cached, split, {p: (p, None) for p in cached.protocols})

    def _reduce(
        self, full: list[TrainingSubject], train: list[TrainingSubject]
    ) -> tuple[list[TrainingSubject], list[TrainingSubject]]:
        """(full pool, partial pool) after ``simulate_partial``: training subjects beyond
        the first ``max_full_subjects`` (by name) keep only the reduced annotation."""
        config = self.config
        partial = [s for s in train if not s.is_full]
        if not config.simulate_partial:
            return full, partial
        target = config.simulate_partial
        lut = derivation_lut(FULL_PROTOCOL, target)
        if target == FULL_PROTOCOL or lut is None:
            raise InputError(
                "data.simulate_partial",
                f"a partial protocol coarser than {FULL_PROTOCOL!r}",
                repr(target),
                "use e.g. tissue, aseg, first or brain",
            )
        keep = config.max_full_subjects or len(full)
        full = sorted(full, key=lambda s: s.name)
        reduced = [
            TrainingSubject(s.cached, s.split, {target: (FULL_PROTOCOL, lut)}) for s in full[keep:]
        ]
        log.info(
            "%d training subjects keep their full annotation, %d are reduced to %r",
            len(full[:keep]),
            len(reduced),
            target,
        )
        return full[:keep], partial + reduced

    def _patch_size(self) -> tuple[int, int, int]:
        patch = self.config.patch_size_vox or self.conform.canvas_shape_vox
        return (int(patch[0]), int(patch[1]), int(patch[2]))

    @property
    def protocols(self) -> tuple[str, ...]:
        """Protocols annotated in the training pools, the full one first."""
        found = {p for s in (*self.full, *self.partial) for p in s.sources}
        return tuple(sorted(found, key=lambda p: (p != FULL_PROTOCOL, p)))

    def pool_sizes(self) -> dict[str, int]:
        """Subjects (or label maps) per pool."""
        return {"full": len(self.full), "partial": len(self.partial), "synth": self.synth_maps}

    # --- the plan of a step ------------------------------------------------------------------

    def plan(
        self,
        step: int,
        shares: dict[str, float],
        *,
        batch_size: int,
        rank: int = 0,
        world_size: int = 1,
    ) -> tuple[Slot, ...]:
        """The slots of this process at ``step``: a function of (seed, step, rank) only.

        All processes draw the same global batch of ``batch_size * world_size`` slots and
        process ``rank`` takes slots ``rank, rank + world_size, …``: the subjects of one step
        are spread over the processes as DistributedSampler spreads an epoch.

        Args:
            shares: pool -> share of slots (pools missing or with a zero share are not drawn;
                the shares of the others are renormalised).
        """
        pools = [p for p in POOLS if shares.get(p, 0) > 0]
        if not pools:
            raise ValueError(f"no pool to draw from: shares {shares}")
        weights = torch.tensor([shares[p] for p in pools], dtype=torch.float64)
        cumulative = (weights / weights.sum()).cumsum(0).tolist()
        gen = torch.Generator().manual_seed(step_seed(self.seed, step, 0))
        draws = torch.rand((batch_size * world_size, _RANDOMS), generator=gen, dtype=torch.float64)
        slots = []
        for row in draws.tolist()[rank::world_size]:
            pool = pools[min(np.searchsorted(cumulative, row[0], side="right"), len(pools) - 1)]
            size = self.pool_sizes()[pool]
            if size == 0:
                raise ValueError(f"pool {pool!r} is empty")
            slots.append(Slot(pool, min(int(row[1] * size), size - 1), tuple(row[2:])))
        return tuple(slots)

    # --- reading -----------------------------------------------------------------------------

    def load(
        self,
        slots: Sequence[Slot],
        protocols: Sequence[str],
        *,
        context_vox: Sequence[int] = (0, 0, 0),
        derive: bool = True,
    ) -> Batch:
        """Read the regions of ``slots``: the patch plus ``context_vox`` each side.

        Synthetic slots are left as image 0 and labels ``IGNORE_INDEX``; the synthetic
        source fills them on the device.
        """
        patch = self.patch_size_vox
        size = [p + 2 * c for p, c in zip(patch, context_vox, strict=True)]
        image = np.zeros((len(slots), 1, *size), np.float32)
        labels = np.full((len(slots), len(protocols), *size), IGNORE_INDEX, np.uint8)
        for i, slot in enumerate(slots):
            if slot.pool == "synth":
                continue
            subject = (self.full if slot.pool == "full" else self.partial)[slot.index]
            start = self.patch_start(subject, slot.randoms)
            region = [s - c for s, c in zip(start, context_vox, strict=True)]
            image[i, 0] = read_region(subject.cached.image(), region, size)
            for j, protocol in enumerate(protocols):
                source = subject.target_source(protocol, derive=derive)
                if source is None:
                    continue
                cached, lut = source
                # Outside the canvas is outside the head: background, class 0 in every protocol.
                part = read_region(subject.cached.labels(cached), region, size)
                labels[i, j] = part if lut is None else lut[part]
        return Batch(
            torch.from_numpy(image), torch.from_numpy(labels), tuple(protocols), tuple(slots)
        )

    def patch_start(self, subject: TrainingSubject, randoms: Sequence[float]) -> list[int]:
        """Patch corner on the canvas from a slot's random numbers (foreground-biased)."""
        canvas = self.conform.canvas_shape_vox
        patch = self.patch_size_vox
        centre = [int(u * n) for u, n in zip(randoms[3:6], canvas, strict=True)]
        if randoms[0] < self.config.foreground_fraction:
            classes = self.foreground_index(subject)
            if classes:
                keys = sorted(classes)
                positions = classes[keys[int(randoms[1] * len(keys))]]
                flat = int(positions[int(randoms[2] * len(positions))])
                voxel = np.unravel_index(flat, canvas)
                # Jitter by up to a quarter patch so the class is not always in the centre.
                centre = [
                    int(v) + int((u - 0.5) * p / 2)
                    for v, u, p in zip(voxel, randoms[3:6], patch, strict=True)
                ]
        return place_patch(centre, patch, canvas)

    def foreground_index(self, subject: TrainingSubject) -> dict[int, NDArray[np.int64]]:
        """Class index -> up to 512 flat canvas positions of that class (labelled, not 0),
        for the subject's finest annotation; built once per process, reproducibly."""
        if subject.name not in self._foreground:
            protocol = FULL_PROTOCOL if subject.is_full else subject.protocols[0]
            labels = subject.labels(protocol, derive=False)
            assert labels is not None  # the subject's own protocol
            flat = np.asarray(labels).reshape(-1)
            rng = np.random.default_rng(zlib.crc32(subject.name.encode()))
            where = np.flatnonzero((flat != 0) & (flat != IGNORE_INDEX))
            if where.size > _FOREGROUND_SAMPLE:
                where = np.sort(rng.choice(where, _FOREGROUND_SAMPLE, replace=False))
            values = flat[where]
            index = {}
            for c in np.unique(values).tolist():
                positions = where[values == c]
                if positions.size > _PER_CLASS:
                    positions = np.sort(rng.choice(positions, _PER_CLASS, replace=False))
                index[int(c)] = positions.astype(np.int64)
            self._foreground[subject.name] = index
        return self._foreground[subject.name]
