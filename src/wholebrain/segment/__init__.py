"""Whole-brain segmentation of T1-weighted scans with a trained model.

- :mod:`~wholebrain.segment.predict`: :class:`Segmenter` (a checkpoint loaded once; conform,
  network, back to the scan's grid);
- :mod:`~wholebrain.segment.volumes`: the volume table (per structure and totals);
- :mod:`~wholebrain.segment.qc`: the QC picture;
- :mod:`~wholebrain.segment.run`: ``wholebrain segment`` over a cohort (inputs, outputs,
  one scan at a time through :mod:`wholebrain.cohort`).

Import the submodules you need: this package imports none of them at load time, so the CLI
stays fast.
"""
