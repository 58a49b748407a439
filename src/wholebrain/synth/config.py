"""Settings of the synthetic-scan generator: :class:`SynthConfig`.

Defaults follow SynthSeg (Billot et al., Medical Image Analysis 2023) as published in its code:
``BrainGenerator`` / ``labels_to_image_model`` defaults and the training tutorial
(``scripts/tutorials/3-training.py``, "how we trained SynthSeg"); the lab2im layers for the
resolution and intensity steps (``SampleResolution``, ``IntensityAugmentation``,
``BiasFieldCorruption``). Where a field is ours, its comment says why.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

__all__ = ["CONTRASTS", "Contrast", "SynthConfig"]

Contrast = Literal["t1", "uniform"]
CONTRASTS: tuple[Contrast, ...] = ("t1", "uniform")


@dataclass(frozen=True)
class SynthConfig:
    """How synthetic scans are drawn from label maps (all ranges are per sample).

    Every step can be switched off with a zero (or ``randomise_resolution=False``); the tests
    do that to look at one step at a time.
    """

    # --- spatial: random affine + smooth diffeomorphic deformation (one resampling) ---
    rotation_deg: float = 15.0  # rotation about each axis ~ U(-r, r) degrees (SynthSeg: 15)
    scaling: float = 0.15  # scale per axis ~ U(1 - s, 1 + s) (SynthSeg training: 0.15)
    shearing: float = 0.012  # each off-diagonal shear term ~ U(-s, s) (SynthSeg: 0.012)
    # Shift per axis ~ U(-t, t) mm. Ours: SynthSeg takes random crops of the 256³ maps instead;
    # conform centres real heads on the canvas, so only a small shift is realistic.
    translation_mm: float = 10.0
    nonlin_std_mm: float = 3.0  # std of the low-res velocity field ~ U(0, this) mm (SynthSeg: 3)
    nonlin_shape_factor: float = 0.04  # velocity grid / canvas size (SynthSeg: 0.04, ~9³ nodes)
    # --- contrast: per-class Gaussian intensities (units: the priors' 0..255 scale) ---
    # "t1": class mean ~ N(prior mean), std ~ N(prior std) from prior_means_t1 / prior_stds_t1
    # (SynthSeg's contrast-specific priors); "uniform": every label its own random Gaussian.
    contrast: Contrast = "t1"
    # With contrast "t1": share of samples drawn with "uniform" contrast instead (SynthSeg's
    # mix_prior_and_random uses one half; 0 keeps every sample T1-like).
    uniform_fraction: float = 0.0
    uniform_mean_range: tuple[float, float] = (25.0, 225.0)  # class means ~ U (SynthSeg default)
    uniform_std_range: tuple[float, float] = (5.0, 25.0)  # class stds ~ U (SynthSeg default)
    # --- bias field: exp of a smooth low-res Gaussian field, multiplied in ---
    bias_std: float = 0.5  # std of the log-field nodes ~ U(0, this) (SynthSeg: 0.5)
    bias_shape_factor: float = 0.025  # bias grid / canvas size (SynthSeg: 0.025, ~5³ nodes)
    # --- intensity: clip, min-max to [0, 1], gamma ---
    clip_max: float = 300.0  # intensities clipped to [0, this] before min-max (SynthSeg: 300)
    gamma_std: float = 0.4  # image ** exp(N(0, this)) (SynthSeg: 0.4)
    # --- resolution: blur for the slice thickness, sample at the acquisition spacing, back ---
    # Simulate a random acquisition resolution (SynthSeg). False: the canvas grid, no blur at
    # all (SynthSeg would still blur with sigma 0.5 voxel).
    randomise_resolution: bool = True
    max_res_iso_mm: float = 4.0  # isotropic acquisitions ~ U(1, this) mm (SynthSeg: 4)
    max_res_aniso_mm: float = 8.0  # one random axis ~ U(1, this) mm, thick slices (SynthSeg: 8)
    prob_iso: float = 0.1  # share of isotropic (vs one thick axis) acquisitions (SynthSeg: 0.1)
    prob_min: float = 0.05  # share kept at the canvas resolution (SynthSeg: 0.05)
    blur_range: float = 1.03  # blur sigma x U(1/b, b) (SynthSeg: 1.03)
    # Gaussian noise std ~ U(0, this), in [0, 1] intensity units, added on the acquisition grid.
    # Ours: SynthSeg's only noise is the per-class std; a floor of scanner noise after the blur
    # keeps thick-slice images from looking unnaturally smooth (0.03 ~ an SNR of 25 on WM).
    noise_std: float = 0.03

    def __post_init__(self) -> None:
        for name in (
            "rotation_deg",
            "scaling",
            "shearing",
            "translation_mm",
            "nonlin_std_mm",
            "bias_std",
            "gamma_std",
            "noise_std",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, not {value!r}")
        if not self.scaling < 1:
            raise ValueError(
                f"scaling must be < 1 (scale factors stay positive), not {self.scaling}"
            )
        for name in ("nonlin_shape_factor", "bias_shape_factor"):
            value = getattr(self, name)
            if not 0 < value <= 1:
                raise ValueError(f"{name} must be in (0, 1], not {value!r}")
        if self.contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {CONTRASTS}, not {self.contrast!r}")
        if not 0 <= self.uniform_fraction <= 1:
            raise ValueError(f"uniform_fraction must be in [0, 1], not {self.uniform_fraction}")
        for name in ("uniform_mean_range", "uniform_std_range"):
            pair = tuple(float(v) for v in getattr(self, name))  # lists from TOML are fine
            if len(pair) != 2 or not 0 <= pair[0] <= pair[1]:
                raise ValueError(f"{name} must be (low, high) with 0 <= low <= high, not {pair}")
            object.__setattr__(self, name, pair)
        if not self.clip_max > 0:
            raise ValueError(f"clip_max must be > 0, not {self.clip_max}")
        if not (self.max_res_iso_mm >= 1 and self.max_res_aniso_mm >= 1):
            raise ValueError(
                "max_res_iso_mm and max_res_aniso_mm must be >= 1 (the canvas is 1 mm), not "
                f"{self.max_res_iso_mm} and {self.max_res_aniso_mm}"
            )
        for name in ("prob_iso", "prob_min"):
            value = getattr(self, name)
            if not 0 <= value <= 1:
                raise ValueError(f"{name} must be in [0, 1], not {value!r}")
        if not self.blur_range >= 1:
            raise ValueError(f"blur_range must be >= 1, not {self.blur_range}")
