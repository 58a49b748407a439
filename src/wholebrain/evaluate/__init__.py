"""Evaluation of label maps against references: per-structure Dice, HD95, ASSD, volume difference.

``wholebrain evaluate`` (:mod:`wholebrain.cli.evaluate`) is :func:`evaluate_pairs` plus
:meth:`Evaluation.write_tsv` and :meth:`Evaluation.to_text`. The package is split by task;
import from ``wholebrain.evaluate`` itself:

- :mod:`~wholebrain.evaluate.metrics`: pure metric functions of arrays and a voxel size
  (:func:`dice_per_class`, :func:`hausdorff_per_class`, :func:`assd_per_class`,
  :func:`volume_difference_per_class`, all at once: :func:`label_metrics`). The definitions
  (surface, HD95 as MONAI computes it, absent structures) are in its docstring. The training
  loop's validation Dice is :func:`dice_per_class`: the project has one Dice.
- :mod:`~wholebrain.evaluate.surfaces`: the engine under them: every label's surface in one
  pass, exact surface distances by neighbour rings and KD-trees.
- :mod:`~wholebrain.evaluate.pairs`: files to scores: numbering (protocol importers), the
  evaluation protocol, Mindboggle brain masks (:func:`evaluate_pair`, :func:`evaluate_pairs`,
  :func:`resolve_protocol`).
- :mod:`~wholebrain.evaluate.grids`: nearest-neighbour resampling onto the reference grid.
- :mod:`~wholebrain.evaluate.table`: the results (:class:`PairResult`, :class:`Evaluation`),
  group means, the summary over pairs, the TSV and the text table.

Conventions in brief: a structure absent from both maps is NaN for every metric and stays
out of means; absent from one map only, it has Dice 0 and HD95/ASSD NaN; distances are in mm
between surface-voxel centres on the reference grid; a prediction on another grid is resampled
onto the reference grid by nearest neighbour through the affines, and the output says so.

This package reads arrays and files only; it never imports ``model`` or ``train``.
"""

from __future__ import annotations

from wholebrain.evaluate.metrics import HD_PERCENTILE as HD_PERCENTILE
from wholebrain.evaluate.metrics import (
    LabelMetrics,
    assd_per_class,
    dice_per_class,
    hausdorff_per_class,
    label_metrics,
    surface_distances_per_class,
    volume_difference_per_class,
)
from wholebrain.evaluate.pairs import LabelSource as LabelSource
from wholebrain.evaluate.pairs import evaluate_pair, evaluate_pairs, resolve_protocol
from wholebrain.evaluate.table import COLUMNS as COLUMNS
from wholebrain.evaluate.table import METRICS as METRICS
from wholebrain.evaluate.table import Evaluation, PairResult

__all__ = [
    "Evaluation",
    "LabelMetrics",
    "PairResult",
    "assd_per_class",
    "dice_per_class",
    "evaluate_pair",
    "evaluate_pairs",
    "hausdorff_per_class",
    "label_metrics",
    "resolve_protocol",
    "surface_distances_per_class",
    "volume_difference_per_class",
]
