"""The modules of ``benchmarks/paper_experiment.py`` (the entry point: its docstring defines the
experiment), in the order the data flows through them:

- :mod:`paper.plan`: a preset read into an :class:`~paper.plan.Experiment`, its folds, the
  units of work and what they cost;
- :mod:`paper.run`: the dev scans and their tissue maps, each unit trained (or fused) and
  scored into ``scores.tsv`` rows;
- :mod:`paper.claims`: the rows summarised per (k, method) and the issue's two claims checked;
- :mod:`paper.report`: the results table, the plot and ``docs/results.md``.

``benchmarks/`` is not an installed package: the script (and the tests) put it on sys.path,
so this package imports as ``paper``.
"""
