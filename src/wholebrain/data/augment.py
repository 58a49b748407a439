"""Augmentation on the training device: batched torch, one resampling, labels kept exact.

:class:`Augmenter` takes the regions a :class:`~wholebrain.data.dataset.Batch` read (patch plus
context) and returns patches:

1. **spatial** (per sample, with ``spatial_prob``): a random affine (rotation, scaling, shear)
   composed with a smooth elastic displacement, applied in *one* ``grid_sample``: the image
   trilinear, the label maps nearest (classes never mix). Output voxels whose source lies
   outside the region read get ``IGNORE_INDEX`` (no supervision where nothing was read);
2. **flip** left-right (X in RAS), every label channel permuted with
   :func:`wholebrain.protocols.flip_permutation` so Left-* stays on the left;
3. **background** variation: Mindboggle scans are masked tightly along the labels, and a
   network that only sees them learns "the brain ends where the intensity drops to 0". A random
   band outside the mask gets CSF/tissue-like smooth intensities and the rest of the background
   a noise floor, as after a looser skull stripping or none (labels there stay background);
4. **intensity**: bias field (:meth:`wholebrain.synth.SynthGenerator.bias_field`), gamma,
   contrast, lower acquisition resolution with blur and noise
   (:meth:`wholebrain.synth.SynthGenerator.acquire`), Gaussian noise.

Synthetic samples (already deformed and corrupted by the generator) only get the flip.

Randomness comes only from the ``torch.Generator`` passed in (the loop seeds it from
(seed, step, rank)), so a resumed run repeats the draws. The spatial transform is written here
because the synth generator's ``deform`` resamples label slots only (nearest neighbour), not an
image with its labels.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from wholebrain.conform import ConformConfig
from wholebrain.losses import IGNORE_INDEX
from wholebrain.protocols import flip_permutation

if TYPE_CHECKING:
    from wholebrain.synth import SynthGenerator

__all__ = ["AugmentConfig", "Augmenter", "context_vox"]

_FOREGROUND_LEVEL = 0.02  # normalised intensity above which a voxel is inside the scan's mask


@dataclass(frozen=True)
class AugmentConfig:
    """Random augmentation of training patches (probabilities are per sample)."""

    enabled: bool = True  # false: patches go to the network as read
    spatial_prob: float = 0.7  # share of samples given a random affine + elastic deformation
    rotation_deg: float = 15.0  # rotation about each axis ~ U(-r, r) degrees
    scaling: float = 0.15  # scale per axis ~ U(1 - s, 1 + s)
    shearing: float = 0.02  # each off-diagonal shear term ~ U(-s, s)
    elastic_std_vox: float = 2.0  # std of the smooth displacement at its nodes, voxels (0 = off)
    elastic_nodes: int = 5  # nodes per axis of the displacement grid (its smoothness)
    flip_prob: float = 0.5  # left-right flip, left/right labels swapped
    background_prob: float = 0.5  # tissue-like band outside the mask and a background noise floor
    background_band_vox: int = 8  # the band reaches up to this many voxels beyond the mask
    background_level: tuple[float, float] = (0.05, 0.5)  # band intensity range (WM is ~0.85)
    bias_prob: float = 0.5  # multiplicative smooth bias field
    bias_std: float = 0.3  # std of the log-field nodes ~ U(0, this)
    bias_shape_factor: float = 0.05  # bias nodes per patch voxel (0.05: ~6 nodes on 128 voxels)
    gamma_prob: float = 0.3  # intensity ** exp(N(0, gamma_std))
    gamma_std: float = 0.3  # std of the log gamma
    contrast_prob: float = 0.3  # intensities times a factor ~ U(contrast_range)
    contrast_range: tuple[float, float] = (0.75, 1.25)  # the factor's range
    resolution_prob: float = 0.2  # simulate a thicker-sliced or coarser acquisition (blur)
    max_resolution_mm: float = 4.0  # coarsest voxel size (one thick axis or isotropic)
    noise_prob: float = 0.3  # additive Gaussian noise
    noise_std: float = 0.05  # its std ~ U(0, this), normalised intensity units

    def __post_init__(self) -> None:
        for name in (
            "spatial_prob",
            "flip_prob",
            "background_prob",
            "bias_prob",
            "gamma_prob",
            "contrast_prob",
            "resolution_prob",
            "noise_prob",
        ):
            if not 0 <= getattr(self, name) <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        for name in ("background_level", "contrast_range"):
            pair = tuple(float(v) for v in getattr(self, name))
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, not {pair}")
            object.__setattr__(self, name, pair)
        if not 0 <= self.scaling < 1:
            raise ValueError(f"scaling must be in [0, 1), not {self.scaling}")
        if self.elastic_nodes < 2:
            raise ValueError(f"elastic_nodes must be >= 2, not {self.elastic_nodes}")
        if self.max_resolution_mm < 1:
            raise ValueError(f"max_resolution_mm must be >= 1, not {self.max_resolution_mm}")

    @property
    def spatial(self) -> bool:
        return self.enabled and self.spatial_prob > 0


def context_vox(config: AugmentConfig, patch_size_vox: Sequence[int]) -> tuple[int, int, int]:
    """Voxels read beyond each side of the patch so the spatial transform rarely reaches
    outside what was read: the patch's half diagonal times (sin(rotation) + scaling + 2 shear)
    plus three elastic standard deviations."""
    if not config.spatial:
        return (0, 0, 0)
    half = max(patch_size_vox) / 2
    spread = math.sin(math.radians(config.rotation_deg)) + config.scaling + 2 * config.shearing
    margin = math.ceil(half * spread + 3 * config.elastic_std_vox)
    return (margin, margin, margin)


class Augmenter:
    """Batched augmentation on one device (see the module docstring for the steps).

    Args:
        config: probabilities and ranges.
        protocols: the protocol of each label channel (for the flip's label swap).
        device: where tensors live.
        conform: the canvas (its spacing sets the simulated acquisition resolutions).
    """

    def __init__(
        self,
        config: AugmentConfig,
        protocols: Sequence[str],
        device: torch.device,
        conform: ConformConfig,
    ) -> None:
        self.config = config
        self.protocols = tuple(protocols)
        self.device = device
        self.conform = conform
        luts = torch.arange(256, dtype=torch.int64).repeat(len(self.protocols), 1)
        for j, protocol in enumerate(self.protocols):
            permutation = torch.from_numpy(flip_permutation(protocol)).to(torch.int64)
            luts[j, : permutation.numel()] = permutation
        self._flip_luts = luts.to(device)  # (P, 256): IGNORE_INDEX and unused stay put

    @functools.cached_property
    def _corruptor(self) -> SynthGenerator:
        """The synth generator used for its bias field and acquisition simulation."""
        from wholebrain.synth import SynthConfig, SynthGenerator

        cfg = self.config
        synth = SynthConfig(
            contrast="uniform",
            bias_std=cfg.bias_std,
            bias_shape_factor=cfg.bias_shape_factor,
            max_res_iso_mm=cfg.max_resolution_mm,
            max_res_aniso_mm=cfg.max_resolution_mm,
            prob_min=0.0,
            noise_std=0.0,  # noise is a step of its own here
        )
        return SynthGenerator(synth, device=self.device, conform_config=self.conform)

    def __call__(
        self,
        image: torch.Tensor,
        labels: torch.Tensor,
        patch_size_vox: Sequence[int],
        gen: torch.Generator,
        synthetic: Sequence[int] = (),
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Augment a batch and cut the patches out of the regions.

        Args:
            image: (B, 1, RX, RY, RZ) float32 regions.
            labels: (B, P, RX, RY, RZ) uint8 class indices (``IGNORE_INDEX`` where unknown).
            patch_size_vox: (X, Y, Z) of the output; each at most the region's size.
            gen: the randomness, on this augmenter's device.
            synthetic: batch positions of synthetic samples (flip only).

        Returns:
            (image (B, 1, X, Y, Z) float32, labels (B, P, X, Y, Z) uint8).
        """
        cfg = self.config
        batch = image.shape[0]
        real = torch.ones(batch, dtype=torch.bool, device=self.device)
        real[list(synthetic)] = False
        if not cfg.enabled:
            return _centre_crop(image, patch_size_vox), _centre_crop(labels, patch_size_vox)
        spatial = self._pick(cfg.spatial_prob, real, gen)
        image, labels = self.spatial(image, labels, patch_size_vox, spatial, gen)
        everyone = torch.ones_like(real)
        image, labels = self.flip(image, labels, self._pick(cfg.flip_prob, everyone, gen))
        image = self.background(image, self._pick(cfg.background_prob, real, gen), gen)
        image = self.intensity(image, real, gen)
        return image, labels

    def _pick(self, probability: float, among: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """(B,) bool: which of the samples ``among`` get a step (one draw per sample)."""
        chosen = torch.rand(among.shape[0], generator=gen, device=self.device) < probability
        return chosen & among

    # --- 1. spatial ----------------------------------------------------------------------------

    def spatial(
        self,
        image: torch.Tensor,
        labels: torch.Tensor,
        patch_size_vox: Sequence[int],
        chosen: torch.Tensor,
        gen: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Affine + elastic for the ``chosen`` samples, a centre crop for the others."""
        cfg = self.config
        region = list(image.shape[2:])
        patch = [int(p) for p in patch_size_vox]
        batch = image.shape[0]
        if not bool(chosen.any()):
            return _centre_crop(image, patch), _centre_crop(labels, patch)
        matrix = self._random_matrix(batch, gen)
        displacement = self._random_displacement(batch, patch, gen)
        eye = torch.eye(3, device=self.device).expand(batch, 3, 3)
        matrix = torch.where(chosen[:, None, None], matrix, eye)
        displacement = displacement * chosen[:, None, None, None, None]
        # Output voxel o -> region voxel c_R + M (o - c_p) + d(o), then grid_sample's [-1, 1].
        axes = [
            torch.arange(p, device=self.device, dtype=torch.float32) - (p - 1) / 2 for p in patch
        ]
        offsets = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)  # (X, Y, Z, 3)
        source = torch.einsum("xyzj,bij->bxyzi", offsets, matrix) + displacement
        half = torch.tensor([(r - 1) / 2 for r in region], device=self.device).clamp_min(0.5)
        grid = (source / half).flip(-1)  # grid_sample wants (Z, Y, X) for (B, C, X, Y, Z)
        out_image = F.grid_sample(
            image, grid, mode="bilinear", padding_mode="zeros", align_corners=True
        )
        known = torch.ones_like(labels[:, :1], dtype=torch.float32)
        stacked = torch.cat([labels.float(), known], dim=1)
        sampled = F.grid_sample(
            stacked, grid, mode="nearest", padding_mode="zeros", align_corners=True
        )
        out_labels = torch.where(sampled[:, -1:] > 0.5, sampled[:, :-1], float(IGNORE_INDEX)).to(
            torch.uint8
        )
        if cfg.spatial_prob < 1:  # untouched samples: exact crops, no interpolation at all
            keep = ~chosen
            out_image[keep] = _centre_crop(image[keep], patch)
            out_labels[keep] = _centre_crop(labels[keep], patch)
        return out_image, out_labels

    def _random_matrix(self, batch: int, gen: torch.Generator) -> torch.Tensor:
        """(B, 3, 3) rotation @ shear @ scaling (voxel axes X, Y, Z)."""
        cfg = self.config
        u = torch.rand((batch, 12), generator=gen, device=self.device) * 2 - 1  # U(-1, 1)
        angles = torch.deg2rad(u[:, :3] * cfg.rotation_deg)
        scales = 1 + u[:, 3:6] * cfg.scaling
        cos, sin = torch.cos(angles), torch.sin(angles)
        rotation = torch.eye(3, device=self.device).repeat(batch, 1, 1)
        for axis, (a, b) in enumerate(((1, 2), (0, 2), (0, 1))):
            r = torch.eye(3, device=self.device).repeat(batch, 1, 1)
            r[:, a, a], r[:, a, b], r[:, b, a], r[:, b, b] = (
                cos[:, axis],
                -sin[:, axis],
                sin[:, axis],
                cos[:, axis],
            )
            rotation = rotation @ r
        shear = torch.eye(3, device=self.device).repeat(batch, 1, 1)
        for k, (i, j) in enumerate(((0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1))):
            shear[:, i, j] = u[:, 6 + k] * cfg.shearing
        return rotation @ shear @ torch.diag_embed(scales)

    def _random_displacement(
        self, batch: int, patch: list[int], gen: torch.Generator
    ) -> torch.Tensor:
        """(B, X, Y, Z, 3) smooth displacement in voxels: Gaussian nodes, trilinear between."""
        cfg = self.config
        nodes = cfg.elastic_nodes
        coarse = torch.randn((batch, 3, nodes, nodes, nodes), generator=gen, device=self.device)
        if cfg.elastic_std_vox == 0:
            return torch.zeros((batch, *patch, 3), device=self.device)
        field = F.interpolate(
            coarse * cfg.elastic_std_vox, size=patch, mode="trilinear", align_corners=True
        )
        return field.permute(0, 2, 3, 4, 1)

    # --- 2. flip -------------------------------------------------------------------------------

    def flip(
        self, image: torch.Tensor, labels: torch.Tensor, chosen: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mirror the ``chosen`` samples along X and swap their left/right classes."""
        if not bool(chosen.any()):
            return image, labels
        image, labels = image.clone(), labels.clone()
        image[chosen] = image[chosen].flip(2)
        mirrored = labels[chosen].flip(2).long()  # (n, P, X, Y, Z)
        for j in range(labels.shape[1]):
            mirrored[:, j] = self._flip_luts[j][mirrored[:, j]]
        labels[chosen] = mirrored.to(labels.dtype)
        return image, labels

    # --- 3. background -------------------------------------------------------------------------

    def background(
        self, image: torch.Tensor, chosen: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """A smooth tissue-like band outside the mask, then a noise floor in the background."""
        cfg = self.config
        if not bool(chosen.any()) or cfg.background_band_vox < 1:
            return image
        batch, _, *shape = image.shape
        u = torch.rand((batch, 4), generator=gen, device=self.device)
        smooth = F.interpolate(
            torch.rand((batch, 1, 4, 4, 4), generator=gen, device=self.device),
            size=shape,
            mode="trilinear",
            align_corners=True,
        )
        noise = torch.randn(image.shape, generator=gen, device=self.device)
        image = image.clone()
        low, high = cfg.background_level
        for b in torch.nonzero(chosen).flatten().tolist():
            outside = image[b : b + 1] <= _FOREGROUND_LEVEL
            radius = 1 + int(u[b, 0] * cfg.background_band_vox)
            inside = (~outside).float()
            reach = F.max_pool3d(inside, 2 * radius + 1, stride=1, padding=radius) > 0
            band = reach & outside
            level = low + (high - low) * u[b, 1]
            # Texture between half and the full level, with a little noise of its own.
            texture = level * (0.5 + 0.5 * smooth[b : b + 1]) + 0.05 * level * noise[b : b + 1]
            floor = (u[b, 2] * 0.05) * noise[b : b + 1].abs()  # Rician-like air, up to 0.05
            image[b : b + 1] = torch.where(
                band, texture, torch.where(outside, floor, image[b : b + 1])
            )
        return image

    # --- 4. intensity --------------------------------------------------------------------------

    def intensity(
        self, image: torch.Tensor, real: torch.Tensor, gen: torch.Generator
    ) -> torch.Tensor:
        """Bias, gamma, contrast, acquisition resolution, noise (each per sample)."""
        cfg = self.config
        batch = image.shape[0]
        bias = self._pick(cfg.bias_prob, real, gen)
        gamma = self._pick(cfg.gamma_prob, real, gen)
        contrast = self._pick(cfg.contrast_prob, real, gen)
        resolution = self._pick(cfg.resolution_prob, real, gen)
        noisy = self._pick(cfg.noise_prob, real, gen)
        draws = torch.rand((batch, 3), generator=gen, device=self.device)
        log_gamma = torch.randn(batch, generator=gen, device=self.device) * cfg.gamma_std
        image = image.clone()
        if bool(bias.any()) and cfg.bias_std > 0:
            field = self._corruptor.bias_field(int(bias.sum()), list(image.shape[2:]), gen)
            image[bias] = image[bias] * field
        if bool(gamma.any()):
            exponent = torch.exp(log_gamma)[:, None, None, None, None]
            image = torch.where(
                gamma[:, None, None, None, None], image.clamp_min(0) ** exponent, image
            )
        if bool(contrast.any()):
            low, high = cfg.contrast_range
            factor = (low + (high - low) * draws[:, 0])[:, None, None, None, None]
            image = torch.where(contrast[:, None, None, None, None], image * factor, image)
        if bool(resolution.any()):
            image[resolution] = self._corruptor.acquire(image[resolution].contiguous(), gen)
        if bool(noisy.any()) and cfg.noise_std > 0:
            std = (draws[:, 1] * cfg.noise_std)[:, None, None, None, None]
            noise = torch.randn(image.shape, generator=gen, device=self.device) * std
            image = torch.where(noisy[:, None, None, None, None], image + noise, image)
        return image


def _centre_crop(volume: torch.Tensor, patch: Sequence[int]) -> torch.Tensor:
    """The centred (X, Y, Z) = ``patch`` part of (B, C, RX, RY, RZ)."""
    starts = [(r - p) // 2 for r, p in zip(volume.shape[2:], patch, strict=True)]
    return volume[
        :,
        :,
        starts[0] : starts[0] + patch[0],
        starts[1] : starts[1] + patch[1],
        starts[2] : starts[2] + patch[2],
    ]
