"""Synthetic whole-head T1w-like scans from label maps: SynthSeg-style domain randomisation.

Billot et al., *SynthSeg: Segmentation of brain MRI scans of any contrast and resolution without
retraining*, Medical Image Analysis 2023. A label map of a real head (brain structures, CSF,
skull, scalp, eyes, neck) is deformed at random and painted with random per-class Gaussian
intensities, then corrupted like a scan (bias field, gamma, resolution, noise). The labels of
every sample are exact, and come out in the ``aseg`` protocol: a partial annotation with respect
to the full protocol (one cortex label per hemisphere), on whole-head images.

Use::

    from wholebrain.synth import SynthConfig, SynthGenerator, load_label_map, load_t1_priors

    label_map = load_label_map("training_seg_01.nii.gz")        # on the canvas, (X, Y, Z)
    generator = SynthGenerator(SynthConfig(), load_t1_priors("priors/"), device="cuda", seed=1)
    images, labels = generator(label_map.labels[None])          # (1, 1, X, Y, Z), (1, X, Y, Z)

The package: :mod:`~wholebrain.synth.config` (:class:`SynthConfig`, the random ranges and
where they come from), :mod:`~wholebrain.synth.labels` (the generation ids, their T1 intensity
classes, the ``aseg`` lookup table, loading maps and priors), :mod:`~wholebrain.synth.generator`
(:class:`SynthGenerator`, the torch pipeline), :mod:`~wholebrain.synth.resample` (separable
resampling as matrix products). ``wholebrain synth`` writes samples to disk;
``benchmarks/synth.py`` measures volumes per second.
"""

from __future__ import annotations

from wholebrain.synth.config import CONTRASTS as CONTRASTS
from wholebrain.synth.config import Contrast, SynthConfig
from wholebrain.synth.generator import SynthGenerator, resolve_device
from wholebrain.synth.labels import N_T1_CLASSES as N_T1_CLASSES
from wholebrain.synth.labels import T1_CLASSES as T1_CLASSES
from wholebrain.synth.labels import (
    IntensityPriors,
    LabelMapOnCanvas,
    known_label_ids,
    load_label_map,
    load_t1_priors,
)

__all__ = [
    "Contrast",
    "IntensityPriors",
    "LabelMapOnCanvas",
    "SynthConfig",
    "SynthGenerator",
    "known_label_ids",
    "load_label_map",
    "load_t1_priors",
    "resolve_device",
]
