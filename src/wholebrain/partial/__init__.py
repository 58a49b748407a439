"""Automatic partial annotations: tissue classes, subcortical structures, imported maps.

The network learns from a few full annotations and many *partial* ones (see
:mod:`wholebrain.protocols`); this package makes the partial ones for unlabelled scans:

- :mod:`~wholebrain.partial.tissue`: :func:`classify_tissue`, background/CSF/GM/WM on the
  scan's grid (``tissue`` protocol) by the built-in classifier, ANTs Atropos or FSL FAST, with
  :mod:`~wholebrain.partial.brainmask`, :mod:`~wholebrain.partial.bias` and
  :mod:`~wholebrain.partial.external` behind it.
- :mod:`~wholebrain.partial.registration`: :func:`register_atlas`, an atlas's subcortical
  structures carried onto a scan by ANTs SyN (``first`` protocol; optional extra ``ants``).
- :mod:`~wholebrain.partial.run`: ``wholebrain partial`` for a cohort: the inputs, the files
  each subject writes (``<subject>_desc-<protocol>_dseg.nii.gz`` + ``.tsv``), importing FSL
  FAST/FIRST and FreeSurfer outputs, and the manifest rows; the cohort machinery itself
  (skip, shard, jobs, summary) is :mod:`wholebrain.cohort`.

The names below are imported on first use, so importing this package (as the CLI does) loads
neither the classifier nor antspyx.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["RegistrationConfig", "TissueResult", "classify_tissue", "register_atlas"]

# Re-exported name -> the module that defines it.
_LAZY = {
    "classify_tissue": "wholebrain.partial.tissue",
    "TissueResult": "wholebrain.partial.tissue",
    "register_atlas": "wholebrain.partial.registration",
    "RegistrationConfig": "wholebrain.partial.registration",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
