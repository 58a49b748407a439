"""Reading and writing volumes: every check on an input image; outputs never half-written.

The rest of the project sees images only as :class:`Volume` (data + voxel-to-world affine);
this module is the one place that knows about NIfTI/MGH files and about what can go wrong with
them. Every problem with a user's file becomes an :class:`~wholebrain.errors.InputError` whose
message names the file, what was expected, what was found and what to do.

Supported formats: NIfTI-1/2 (``.nii``, ``.nii.gz``) and FreeSurfer MGH (``.mgh``, ``.mgz``).

The package is split by task; import from ``wholebrain.io`` itself, not from its modules:

- :mod:`~wholebrain.io.volume`: :class:`Volume` and grid geometry (:func:`check_same_grid`).
- :mod:`~wholebrain.io.load`: opening files and every input rule (:func:`load_image`,
  :func:`load_labels`).
- :mod:`~wholebrain.io.save`: writing (:func:`save_volume`, :func:`atomic_output`).
- :mod:`~wholebrain.io.report`: describing a file for ``wholebrain info`` (:func:`inspect`).
- :mod:`~wholebrain.io.paths`: supported suffixes and file-name messages.
"""

from __future__ import annotations

# Constants are re-exported with "as" so they stay part of the typed interface
# (mypy --strict does not re-export names missing from __all__ otherwise).
from wholebrain.io.load import MAX_SPACING_MM as MAX_SPACING_MM
from wholebrain.io.load import MIN_EXTENT_MM as MIN_EXTENT_MM
from wholebrain.io.load import MIN_SPACING_MM as MIN_SPACING_MM
from wholebrain.io.load import load_image, load_labels
from wholebrain.io.paths import SUFFIXES as SUFFIXES
from wholebrain.io.report import BRAIN_VOLUME_L as BRAIN_VOLUME_L
from wholebrain.io.report import FOREGROUND_FRACTION as FOREGROUND_FRACTION
from wholebrain.io.report import MIN_BACKGROUND_FRACTION as MIN_BACKGROUND_FRACTION
from wholebrain.io.report import MIN_SHARP_EDGE_FRACTION as MIN_SHARP_EDGE_FRACTION
from wholebrain.io.report import ImageReport, inspect
from wholebrain.io.save import atomic_output, save_volume
from wholebrain.io.volume import GRID_TOL_LINEAR as GRID_TOL_LINEAR
from wholebrain.io.volume import GRID_TOL_MM as GRID_TOL_MM
from wholebrain.io.volume import Volume, check_same_grid

__all__ = [
    "ImageReport",
    "Volume",
    "atomic_output",
    "check_same_grid",
    "inspect",
    "load_image",
    "load_labels",
    "save_volume",
]
