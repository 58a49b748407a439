"""The choices ``wholebrain segment`` offers, in one light module.

The CLI builds its ``--device``, ``--skull-strip`` and ``--canvases`` choices from these, and
:class:`~wholebrain.segment.predict.Segmenter` checks its arguments against them; neither
imports torch to read them.
"""

from __future__ import annotations

__all__ = ["BOUNDARIES", "CANVAS_SHIFTS", "DEVICES", "SKULL_STRIP"]

DEVICES = ("auto", "cpu", "cuda")
SKULL_STRIP = ("auto", "off")  # auto: whole-head scans only; off: the scan as given
BOUNDARIES = ("probabilities", "labels")  # how scan voxels between canvas voxels are labelled
# Canvas offsets (in canvas voxels) per number of canvases: the second canvas's voxel centres
# sit at the centres of the first's 2x2x2 cubes; four canvases put them on a face-centred
# lattice. Held-out sub-09/10, step-5700 model, flip TTA: mean Dice 0.668 (1), 0.675 (2),
# 0.678 (4) (benchmarks/results/cpu_model_eval.txt).
CANVAS_SHIFTS: dict[int, tuple[tuple[float, float, float], ...]] = {
    1: ((0.0, 0.0, 0.0),),
    2: ((0.0, 0.0, 0.0), (0.5, 0.5, 0.5)),
    4: ((0.0, 0.0, 0.0), (0.5, 0.5, 0.0), (0.5, 0.0, 0.5), (0.0, 0.5, 0.5)),
}
