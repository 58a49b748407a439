"""Synthetic whole-head training scans drawn on the fly from label maps (:mod:`wholebrain.synth`).

The Mindboggle scans are tightly skull-stripped; a network that only sees them learns that the
brain ends where the intensity drops to 0. SynthSeg-style scans drawn from whole-head label maps
(skull, scalp, eyes, neck) at random contrast, resolution and deformation show it heads, and
their labels are exact. They are *partial* annotations: ``aseg`` (one cortex label per
hemisphere), so they feed the ``aseg`` head (``multitask``) or the full head through the
marginal loss (``marginal``).

The label maps are put on the canvas once (:func:`wholebrain.synth.load_label_map`, seconds per
map) and cached as ``CACHE/synth/<name>-<key>.npy``; during training they stay on the training
device and each synthetic slot is drawn there, with the step's generator.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wholebrain.conform import ConformConfig
from wholebrain.data.dataset import Batch, derivation_lut, place_patch
from wholebrain.errors import InputError
from wholebrain.losses import IGNORE_INDEX
from wholebrain.synth.config import SynthConfig

__all__ = ["SYNTH_PROTOCOL", "SynthDataConfig", "SynthSource"]

log = logging.getLogger(__name__)

SYNTH_PROTOCOL = "aseg"  # the protocol of the generator's labels
_LABEL_MAP_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh")


@dataclass(frozen=True)
class SynthDataConfig:
    """Synthetic scans from label maps as a third pool of training samples."""

    enabled: bool = False  # draw synthetic whole-head scans during training
    label_maps: str = ""  # folder of SynthSeg-style label maps (training_seg_XX.nii.gz, ...)
    priors: str = ""  # folder of prior_means_t1.npy / prior_stds_t1.npy ("" = label_maps/priors)
    fraction: float = 0.25  # share of batch slots that are synthetic scans
    max_maps: int = 0  # use at most this many label maps, sorted by name (0 = all)
    generator: SynthConfig = field(default_factory=SynthConfig)  # the generator's random ranges

    def __post_init__(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ValueError(f"fraction must be in [0, 1], not {self.fraction}")
        if self.max_maps < 0:
            raise ValueError(f"max_maps must be >= 0, not {self.max_maps}")
        if self.enabled and not self.label_maps:
            raise ValueError("enabled synthetic scans need label_maps, a folder of label maps")


class SynthSource:
    """The label maps on the training device and the generator that paints them.

    Args:
        config: which maps, how often, the generator's ranges.
        conform: the training canvas.
        cache_dir: where canvas versions of the maps are kept (``cache_dir/synth``).
        device: the training device.
        build_cache: put missing maps on the canvas (False: they must be cached already).

    Raises:
        InputError: the synth module cannot be imported, no label map in the folder, priors
            missing or unreadable, a map with unknown ids.
    """

    def __init__(
        self,
        config: SynthDataConfig,
        conform: ConformConfig,
        cache_dir: str | Path,
        device: torch.device,
        *,
        build_cache: bool = True,
    ) -> None:
        try:
            from wholebrain.synth import SynthGenerator, load_t1_priors
        except ImportError as error:  # the generator is optional for training
            raise InputError(
                "synth.enabled",
                "the wholebrain.synth module for synthetic scans",
                f"it cannot be imported ({error})",
                "set synth.enabled = false or install the complete package",
            ) from None
        self.config = config
        self.conform = conform
        self.device = device
        folder = Path(config.label_maps)
        paths = sorted(p for p in folder.glob("*") if p.name.endswith(_LABEL_MAP_SUFFIXES))
        if config.max_maps:
            paths = paths[: config.max_maps]
        if not paths:
            raise InputError(
                folder,
                "a folder of label maps (*.nii.gz, *.mgz) for synthetic scans",
                "none" if folder.is_dir() else "no such folder",
                "set synth.label_maps to e.g. ../shared/data/synthseg-label-maps",
            )
        gen_config = config.generator
        priors = None
        if gen_config.contrast == "t1" and gen_config.uniform_fraction < 1:
            priors = load_t1_priors(Path(config.priors) if config.priors else folder / "priors")
        maps = [self._canvas_map(p, Path(cache_dir) / "synth", build_cache) for p in paths]
        self.names = tuple(p.name for p in paths)
        self.maps = torch.stack([torch.from_numpy(m) for m in maps]).to(device)
        self.generator = SynthGenerator(gen_config, priors, device=device, conform_config=conform)
        aseg_ids = self.generator.tables.aseg_id.max().item()
        lut = np.full(int(aseg_ids) + 1, IGNORE_INDEX, np.int64)
        from wholebrain.protocols import get_protocol

        protocol = get_protocol(SYNTH_PROTOCOL)
        lut[protocol.ids] = np.arange(protocol.num_classes)
        self._to_index = torch.from_numpy(lut).to(device)
        log.info("synthetic scans from %d label maps in %s", len(paths), folder)

    def __len__(self) -> int:
        return len(self.names)

    def _canvas_map(self, path: Path, folder: Path, build: bool) -> np.ndarray:
        """The map on the canvas, int16 (X, Y, Z), from the cache or put there now."""
        from wholebrain.synth import load_label_map

        stat = path.stat()
        key: dict[str, Any] = {
            "path": str(path.resolve()),
            "size": stat.st_size,
            "mtime_ns": stat.st_mtime_ns,
            "conform": asdict(self.conform),
        }
        digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        stem = path.name.split(".")[0]
        cached = folder / f"{stem}-{digest}.npy"
        if cached.is_file():
            return np.asarray(np.load(cached))
        if not build:
            raise InputError(cached, "a cached synthetic label map", "no such file", "rebuild it")
        labels = load_label_map(path, self.conform).labels.numpy().astype(np.int16)
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{cached.name}.{os.getpid()}.tmp.npy"
        np.save(tmp, labels)
        os.replace(tmp, cached)
        return labels

    def fill(
        self,
        batch: Batch,
        image: torch.Tensor,
        labels: torch.Tensor,
        *,
        patch_size_vox: Sequence[int],
        context_vox: Sequence[int],
        foreground_fraction: float,
        gen: torch.Generator,
        derive: bool,
    ) -> None:
        """Draw the batch's synthetic slots into ``image`` / ``labels`` (device tensors).

        Each scan is drawn on the whole canvas (so its intensities are normalised as
        conform normalises a whole head), then its region (patch + context) is cut, around a
        labelled voxel with probability ``foreground_fraction``.
        """
        positions = batch.synthetic
        if not positions:
            return
        slots = [batch.slots[i] for i in positions]
        maps = self.maps[[s.index for s in slots]]
        scans, ids = self.generator(maps, gen)
        index = self._to_index[ids.clamp(max=self._to_index.numel() - 1)]
        canvas = self.conform.canvas_shape_vox
        size = [p + 2 * c for p, c in zip(patch_size_vox, context_vox, strict=True)]
        luts = {
            j: None if p == SYNTH_PROTOCOL else derivation_lut(SYNTH_PROTOCOL, p)
            for j, p in enumerate(batch.protocols)
        }
        for k, (i, slot) in enumerate(zip(positions, slots, strict=True)):
            u = slot.randoms
            centre = [int(v * n) for v, n in zip(u[3:6], canvas, strict=True)]
            if u[0] < foreground_fraction:
                labelled = torch.nonzero(index[k] > 0)
                if len(labelled):
                    centre = labelled[int(u[2] * len(labelled))].tolist()
            start = place_patch(centre, patch_size_vox, canvas)
            region = [s - c for s, c in zip(start, context_vox, strict=True)]
            image[i, 0] = _crop(scans[k, 0], region, size, 0.0)
            aseg = _crop(index[k], region, size, 0)
            for j, protocol in enumerate(batch.protocols):
                if protocol == SYNTH_PROTOCOL:
                    labels[i, j] = aseg.to(labels.dtype)
                elif derive and luts[j] is not None:
                    lut = torch.from_numpy(np.asarray(luts[j]).astype(np.int64)).to(aseg.device)
                    labels[i, j] = lut[aseg].to(labels.dtype)


def _crop(
    volume: torch.Tensor, start: Sequence[int], size: Sequence[int], fill: float
) -> torch.Tensor:
    """``volume[start : start + size]`` with ``fill`` outside (torch twin of read_region)."""
    out = torch.full(tuple(size), fill, dtype=volume.dtype, device=volume.device)
    src, dst = [], []
    for s, n, total in zip(start, size, volume.shape, strict=True):
        lo, hi = max(s, 0), min(s + n, total)
        if hi <= lo:
            return out
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = volume[tuple(src)]
    return out
