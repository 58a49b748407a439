"""The generator: label maps on the canvas -> synthetic T1w-like scans, in torch, batched.

One call draws, per sample (Billot et al. 2023, SynthSeg's generative model):

1. **space**: a random affine (rotation, scaling, shearing, translation) and a smooth
   diffeomorphism (a low-res Gaussian velocity field, upsampled, integrated by scaling and
   squaring), composed into one sampling grid and applied once to the labels with
   nearest-neighbour ``grid_sample``; the image is drawn *from these deformed labels*, so
   image and labels agree voxel for voxel;
2. **contrast**: per-class Gaussian intensities (class means/stds from the T1 priors, or
   uniform random);
3. **bias**: a multiplicative smooth field, exp of a low-res Gaussian field;
4. clip to [0, 300], min-max to [0, 1], **gamma**;
5. **resolution**: an acquisition resolution (isotropic, or one thick axis: slices), Gaussian
   blur for the slice thickness, sampling on that grid, **noise** there, and back to the canvas;
6. normalisation as :func:`wholebrain.conform.conform` does it for real scans (0.5th
   percentile -> 0, 99th percentile of the foreground -> 1, clipped), so the network sees the
   same intensity scale in training and at inference.

Labels come out in the ``aseg`` protocol (lookup table built once). Randomness comes only from
the ``torch.Generator`` given (or the generator's own, seeded at construction).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from wholebrain.conform import ConformConfig
from wholebrain.errors import InputError
from wholebrain.synth.config import SynthConfig
from wholebrain.synth.labels import IntensityPriors, LabelTables, label_tables
from wholebrain.synth.resample import along, gaussian_matrix, interp_matrix

__all__ = ["SynthGenerator", "resolve_device"]

_INTEGRATION_STEPS = 7  # scaling and squaring: velocity / 2^7, then 7 self-compositions
_COARSE_FACTOR = 4  # the sampling map is built on a grid 4x coarser than the canvas...
_INTEGRATION_FACTOR = 8  # ...and the velocity (~9³ nodes) integrated on one 8x coarser
_BIAS_TRUNCATION = 3.0  # log-bias nodes clipped at 3 std: bias within exp(±3 * bias_std)
_NORMALISE_SAMPLES = 1_000_000  # voxels (regular stride) behind the final percentiles
_DEFAULT_CONFIG = SynthConfig()
_DEFAULT_CANVAS = ConformConfig()


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; other names as torch reads them.

    Raises:
        InputError: CUDA was asked for and is not available, or the name is unknown.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(
            None, "a device cpu, cuda, cuda:N or auto", repr(device), "pick one of these"
        ) from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InputError(
            None, "a CUDA GPU for --device cuda", "none available", "use --device cpu or auto"
        )
    return resolved


class SynthGenerator:
    """Synthetic T1w-like scans from generation label maps on the canvas.

    Example (training, on the training device)::

        generator = SynthGenerator(SynthConfig(), load_t1_priors(priors_dir), device="cuda",
                                   seed=config.seed + rank)
        images, labels = generator(canvas_labels.to("cuda"))  # (B, 1, X, Y, Z), (B, X, Y, Z)

    Args:
        config: the random ranges.
        priors: T1 intensity priors; required unless ``config.contrast == "uniform"``.
        device: where the work happens (``"cpu"``, ``"cuda"``, ``"auto"``, a torch.device).
        seed: seed of the generator's own ``torch.Generator`` (used when a call passes none).
        conform_config: the canvas spacing and the intensity normalisation to imitate.

    Raises:
        InputError: T1 contrast without priors; an unavailable device.
    """

    def __init__(
        self,
        config: SynthConfig = _DEFAULT_CONFIG,
        priors: IntensityPriors | None = None,
        *,
        device: str | torch.device = "cpu",
        seed: int = 0,
        conform_config: ConformConfig = _DEFAULT_CANVAS,
    ) -> None:
        needs_priors = config.contrast == "t1" and config.uniform_fraction < 1
        if needs_priors and priors is None:
            raise InputError(
                None,
                "T1 intensity priors (prior_means_t1.npy, prior_stds_t1.npy) for contrast 't1'",
                "none",
                "load them with wholebrain.synth.load_t1_priors, or use contrast 'uniform'",
            )
        self.config = config
        self.conform_config = conform_config
        self.device = resolve_device(device)
        self.spacing_mm = float(conform_config.spacing_mm)
        self.tables: LabelTables = label_tables().to(self.device)
        self._prior_means: torch.Tensor | None = None
        self._prior_stds: torch.Tensor | None = None
        if priors is not None:
            self._prior_means = torch.as_tensor(
                priors.means, dtype=torch.float32, device=self.device
            )
            self._prior_stds = torch.as_tensor(priors.stds, dtype=torch.float32, device=self.device)
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)

    # --- the whole pipeline ----------------------------------------------------------------

    @torch.no_grad()
    def __call__(
        self, labels_canvas: torch.Tensor, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw one synthetic scan per label map.

        Args:
            labels_canvas: (B, X, Y, Z) or (X, Y, Z) integer generation ids on the canvas
                (see :func:`~wholebrain.synth.load_label_map`), any device (moved here).
            generator: the randomness; default: this object's own (seeded) generator. Must
                live on this generator's device.

        Returns:
            (images, labels): (B, 1, X, Y, Z) float32 in [0, 1], normalised as conform
            normalises real scans; (B, X, Y, Z) int64 ``aseg`` ids. Both on ``self.device``.

        Raises:
            ValueError: ids the generator does not know (check files with ``load_label_map``).
        """
        gen = self.generator if generator is None else generator
        slots = self.to_slots(labels_canvas)
        slots = self.deform(slots, gen)
        image = self.sample_intensities(slots, gen)
        image = self.corrupt(image, gen)
        return image, self.tables.aseg_id[slots]

    def to_slots(self, labels_canvas: torch.Tensor) -> torch.Tensor:
        """(B, X, Y, Z) generation ids -> int64 slots (positions in the id table)."""
        labels = labels_canvas.to(self.device, non_blocking=True)
        if labels.dim() == 3:
            labels = labels[None]
        if labels.dim() != 4 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
            raise ValueError(
                f"labels must be an integer tensor (B, X, Y, Z), not {tuple(labels.shape)} "
                f"{labels.dtype}"
            )
        table = self.tables.slot_of_id
        low, high = int(labels.min()), int(labels.max())  # scalar checks: no mask tensors
        slots = table[labels.long().clamp_(0, table.numel() - 1)]
        if low < 0 or high >= table.numel() or int(slots.min()) < 0:
            bad = (labels < 0) | (labels >= table.numel())
            bad |= table[labels.long().clamp(0, table.numel() - 1)] < 0
            ids = torch.unique(labels[bad])[:10].tolist()
            raise ValueError(f"label ids the generator does not know: {ids}")
        return slots

    # --- 1. space ----------------------------------------------------------------------------

    def deform(self, slots: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Random affine + diffeomorphism, one nearest-neighbour resampling of the slots.

        The sampling map x -> A (x + u(x)) + b is built on a grid 4x coarser than the canvas
        and interpolated linearly (separable matrix products, cheap): exact for the affine part,
        and the smooth u has no detail at that scale anyway.
        """
        cfg = self.config
        batch, *shape = slots.shape
        has_affine = any((cfg.rotation_deg, cfg.scaling, cfg.shearing, cfg.translation_mm))
        if not has_affine and cfg.nonlin_std_mm == 0:
            return slots
        linear, shift = self._affine_normalised(batch, shape, gen)
        coarse = [max(2, math.ceil(n / _COARSE_FACTOR)) for n in shape]
        axes = [torch.linspace(-1, 1, c, device=self.device) for c in coarse]
        points = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1)[None]  # (1,x,y,z,3)
        if cfg.nonlin_std_mm > 0:
            points = points + self._displacement_normalised(batch, shape, coarse, gen)
        mapped = torch.einsum("bxyzj,bij->bxyzi", points, linear) + shift[:, None, None, None]
        # grid_sample's coordinates run (Z, Y, X) for a (B, C, X, Y, Z) tensor: reverse them.
        grid = mapped.flip(-1).contiguous()
        for axis in (3, 2, 1):  # the largest product last, as one matrix product
            grid = along(grid, interp_matrix(shape[axis - 1], coarse[axis - 1], self.device), axis)
        deformed = F.grid_sample(
            slots[:, None].float(), grid, mode="nearest", padding_mode="zeros", align_corners=True
        )
        return deformed[:, 0].long()

    def _uniform(
        self, size: tuple[int, ...], low: float, high: float, gen: torch.Generator
    ) -> torch.Tensor:
        draw = torch.rand(size, generator=gen, device=self.device)
        return low + (high - low) * draw

    def _affine_normalised(
        self, batch: int, shape: list[int], gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(A, b) in grid_sample's normalised coordinates, axes in (X, Y, Z) order.

        Voxel space: q - c = M (p - c) + t with M = rotation @ shear @ scaling about the canvas
        centre c; normalised coordinates g = (p - c) / h with h = (n - 1) / 2 per axis.
        """
        cfg = self.config
        angles = torch.deg2rad(self._uniform((batch, 3), -cfg.rotation_deg, cfg.rotation_deg, gen))
        scales = self._uniform((batch, 3), 1 - cfg.scaling, 1 + cfg.scaling, gen)
        shears = self._uniform((batch, 6), -cfg.shearing, cfg.shearing, gen)
        shift_mm = self._uniform((batch, 3), -cfg.translation_mm, cfg.translation_mm, gen)
        cos, sin = torch.cos(angles), torch.sin(angles)
        one, zero = torch.ones_like(cos[:, 0]), torch.zeros_like(cos[:, 0])

        def rot(i: int, a: int, b: int) -> torch.Tensor:
            m = [[one, zero, zero], [zero, one, zero], [zero, zero, one]]
            m[a][a], m[a][b], m[b][a], m[b][b] = cos[:, i], -sin[:, i], sin[:, i], cos[:, i]
            return torch.stack([torch.stack(row, -1) for row in m], -2)

        rotation = rot(0, 1, 2) @ rot(1, 0, 2) @ rot(2, 0, 1)
        shear = torch.eye(3, device=self.device).repeat(batch, 1, 1)
        off_diagonal = [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
        for k, (i, j) in enumerate(off_diagonal):
            shear[:, i, j] = shears[:, k]
        matrix = rotation @ shear @ torch.diag_embed(scales)
        half = torch.tensor([(n - 1) / 2 for n in shape], device=self.device).clamp_min(0.5)
        linear = matrix * half[None, None, :] / half[None, :, None]  # H^-1 M H
        shift = shift_mm / self.spacing_mm / half
        return linear, shift

    def _displacement_normalised(
        self, batch: int, shape: list[int], coarse: list[int], gen: torch.Generator
    ) -> torch.Tensor:
        """u of a stationary velocity field integrated over unit time, on the coarse grid.

        Returns:
            (B, x, y, z, 3) displacement in normalised coordinates, components (X, Y, Z).
        """
        cfg = self.config
        small = [max(2, math.ceil(n * cfg.nonlin_shape_factor)) for n in shape]
        std_mm = self._uniform((batch, 1, 1, 1, 1), 0.0, cfg.nonlin_std_mm, gen)
        velocity = torch.randn((batch, 3, *small), generator=gen, device=self.device) * std_mm
        half = torch.tensor([(n - 1) / 2 for n in shape], device=self.device).clamp_min(0.5)
        velocity = velocity / (self.spacing_mm * half.view(1, 3, 1, 1, 1))  # mm -> normalised
        steps = [
            max(s, math.ceil(n / _INTEGRATION_FACTOR)) for s, n in zip(small, shape, strict=True)
        ]
        velocity = F.interpolate(velocity, size=steps, mode="trilinear", align_corners=True)
        identity = F.affine_grid(
            torch.eye(3, 4, device=self.device).expand(batch, 3, 4),
            [batch, 1, *steps],
            align_corners=True,
        )
        field: torch.Tensor = velocity / 2**_INTEGRATION_STEPS  # scaling and squaring
        for _ in range(_INTEGRATION_STEPS):
            at = identity + field.flip(1).permute(0, 2, 3, 4, 1)
            field = field + F.grid_sample(
                field, at, mode="bilinear", padding_mode="border", align_corners=True
            )
        field = F.interpolate(field, size=coarse, mode="trilinear", align_corners=True)
        return field.permute(0, 2, 3, 4, 1)

    # --- 2. contrast -------------------------------------------------------------------------

    def class_parameters(
        self, batch: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample mean and std of every slot, (B, n_slots) each, 0..255 units."""
        cfg = self.config
        n_uniform = self.tables.n_uniform_classes
        low, high = cfg.uniform_mean_range
        u_means = self._uniform((batch, n_uniform), low, high, gen)[:, self.tables.uniform_class]
        low, high = cfg.uniform_std_range
        u_stds = self._uniform((batch, n_uniform), low, high, gen)[:, self.tables.uniform_class]
        pm, ps = self._prior_means, self._prior_stds
        if cfg.contrast == "uniform" or pm is None or ps is None:  # no priors: uniform_fraction 1
            return u_means, u_stds
        n_t1 = pm.shape[1]
        noise = torch.randn((2, batch, n_t1), generator=gen, device=self.device)
        t_means = (pm[0] + pm[1] * noise[0]).clamp_min(0)[:, self.tables.t1_class]
        t_stds = (ps[0] + ps[1] * noise[1]).clamp_min(0)[:, self.tables.t1_class]
        use_uniform = (
            torch.rand((batch, 1), generator=gen, device=self.device) < cfg.uniform_fraction
        )
        return torch.where(use_uniform, u_means, t_means), torch.where(use_uniform, u_stds, t_stds)

    def sample_intensities(self, slots: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Gaussian intensities per class on the (deformed) slots: (B, 1, X, Y, Z) float32."""
        batch = slots.shape[0]
        means, stds = self.class_parameters(batch, gen)
        flat = slots.reshape(batch, -1)
        image = torch.randn(flat.shape, generator=gen, device=self.device)
        image.mul_(stds.gather(1, flat)).add_(means.gather(1, flat))
        return image.clamp_min_(0).reshape(batch, 1, *slots.shape[1:])

    # --- 3.-6. corruption --------------------------------------------------------------------

    def corrupt(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Bias, clip + min-max, gamma, resolution and noise, final normalisation."""
        cfg = self.config
        batch = image.shape[0]
        if cfg.bias_std > 0:
            image = image * self.bias_field(batch, list(image.shape[2:]), gen)
        image = image.clamp_(0, cfg.clip_max)
        low = image.amin(dim=(1, 2, 3, 4), keepdim=True)
        high = image.amax(dim=(1, 2, 3, 4), keepdim=True)
        image = (image - low) / (high - low).clamp_min(1e-6)
        if cfg.gamma_std > 0:
            gamma = torch.exp(
                cfg.gamma_std * torch.randn((batch, 1, 1, 1, 1), generator=gen, device=self.device)
            )
            image = image.clamp_min_(0).pow_(gamma)
        image = self.acquire(image, gen)
        return self.normalise(image)

    def bias_field(self, batch: int, shape: list[int], gen: torch.Generator) -> torch.Tensor:
        """exp of a smooth Gaussian field, (B, 1, X, Y, Z), within exp(±3 * bias_std)."""
        cfg = self.config
        small = [max(2, math.ceil(n * cfg.bias_shape_factor)) for n in shape]
        std = self._uniform((batch, 1, 1, 1), 0.0, cfg.bias_std, gen)
        field = torch.randn((batch, *small), generator=gen, device=self.device)
        field = field.clamp_(-_BIAS_TRUNCATION, _BIAS_TRUNCATION) * std
        for axis in (3, 2, 1):
            field = along(field, interp_matrix(shape[axis - 1], small[axis - 1], self.device), axis)
        return field.exp_()[:, None]

    def acquire(self, image: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        """Simulate an acquisition: blur, sample on its grid, add noise there, back to canvas.

        Per axis the three linear steps are one (n, n) matrix, up @ down @ blur (lab2im's
        blur rule: sigma = 0.75 x slice thickness in canvas voxels, 0.5 where the axis keeps
        the canvas resolution; sampling and return are linear interpolation). The noise is drawn
        on the acquisition grid and follows the way back only.
        """
        cfg = self.config
        batch, _, *shape = image.shape
        spacing = self.spacing_mm
        if not cfg.randomise_resolution:  # the canvas grid itself: noise only
            if cfg.noise_std == 0:
                return image
            scale = self._uniform((batch, 1, 1, 1, 1), 0.0, cfg.noise_std, gen)
            return image + torch.randn(image.shape, generator=gen, device=self.device) * scale
        resolution, thickness = self.sample_resolution(batch, gen)
        sigma = torch.where(resolution > spacing, 0.75 * thickness / spacing, 0.5)
        if cfg.blur_range > 1:
            sigma = sigma * self._uniform((batch, 3), 1 / cfg.blur_range, cfg.blur_range, gen)
        noise_std = self._uniform((batch,), 0.0, cfg.noise_std, gen).tolist()
        sigma_list, resolution_list = sigma.tolist(), resolution.tolist()
        out = torch.empty_like(image)
        for b in range(batch):
            grid = [
                max(2, round(n * spacing / r)) if r > spacing else n
                for n, r in zip(shape, resolution_list[b], strict=True)
            ]
            sample = image[b]  # (1, X, Y, Z): the leading 1 plays the batch axis of along()
            noise = None
            if cfg.noise_std > 0:
                noise = torch.randn((1, *grid), generator=gen, device=self.device) * noise_std[b]
            for axis, (n, m) in enumerate(zip(shape, grid, strict=True), start=1):
                blur = gaussian_matrix(n, sigma_list[b][axis - 1], self.device)
                if m != n:
                    up = interp_matrix(n, m, self.device)
                    blur = up @ (interp_matrix(m, n, self.device) @ blur)
                    noise = None if noise is None else along(noise, up, axis)
                sample = along(sample, blur, axis)
            out[b] = sample if noise is None else sample + noise
        return out

    def sample_resolution(
        self, batch: int, gen: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(resolution, slice thickness) in mm, (B, 3) each, as SynthSeg's SampleResolution.

        With ``prob_min`` the canvas resolution; else isotropic ~ U(canvas, max_res_iso) with
        ``prob_iso``, or one random axis ~ U(canvas, max_res_aniso). Thickness ~ U(canvas, res).
        """
        cfg = self.config
        spacing = self.spacing_mm
        iso = self._uniform((batch, 1), spacing, max(spacing, cfg.max_res_iso_mm), gen)
        thick = self._uniform((batch, 1), spacing, max(spacing, cfg.max_res_aniso_mm), gen)
        axis = torch.randint(0, 3, (batch, 1), generator=gen, device=self.device)
        one_axis = torch.where(torch.arange(3, device=self.device) == axis, thick, spacing)
        draws = torch.rand((batch, 2), generator=gen, device=self.device)
        resolution = torch.where(draws[:, :1] < cfg.prob_iso, iso.expand(batch, 3), one_axis)
        resolution = torch.where(draws[:, 1:] < cfg.prob_min, spacing, resolution)
        fraction = torch.rand((batch, 3), generator=gen, device=self.device)
        return resolution, spacing + (resolution - spacing) * fraction

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        """Per sample, as conform: low percentile -> 0, foreground high percentile -> 1.

        Percentiles by rank (``kthvalue``) on about a million voxels on a regular stride, the
        sample conform takes.
        """
        cc = self.conform_config
        step = max(1, round((image[0].numel() / _NORMALISE_SAMPLES) ** (1 / 3)))
        for b in range(image.shape[0]):
            sample = image[b, 0, ::step, ::step, ::step].reshape(-1)
            low = _percentile(sample, cc.low_percentile)
            top = _percentile(sample, cc.high_percentile)
            foreground = sample[sample > low + cc.foreground_fraction * (top - low)]
            high = _percentile(foreground, cc.high_percentile) if foreground.numel() else top
            high = high if high > low else low + 1.0
            image[b].sub_(low).mul_(1.0 / (high - low)).clamp_(0, 1)
        return image


def _percentile(values: torch.Tensor, percent: float) -> float:
    """The ``percent`` percentile of a 1-D tensor, by nearest rank."""
    k = min(values.numel(), max(1, round(percent / 100 * (values.numel() - 1)) + 1))
    return float(torch.kthvalue(values, k).values)
