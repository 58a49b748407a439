"""wholebrain: whole-brain segmentation of T1-weighted MRI.

A 3D network trained on a few full annotations and many automatic partial ones
(Dai et al., MICCAI DART 2019). See ``docs/`` and the README.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("wholebrain")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
