"""benchmarks/mirror_symmetry.py: the mirror image of a scan and its reference."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np

from wholebrain.io import Volume

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import mirror_symmetry as ms  # a script beside machine.py, not a package

# An ASL-ordered grid like Mindboggle's: voxel axis 2 runs from right (z=0, world x +2.5 mm)
# to left (z=5, world x -2.5 mm).
ASL = np.array([[0, 0, -1, 2.5], [1, 0, 0, -2], [0, 1, 0, -2], [0, 0, 0, 1]], float)


def test_the_left_right_axis_is_found_from_the_affine() -> None:
    assert nib.aff2axcodes(ASL) == ("A", "S", "L")
    assert ms.left_right_axis(ASL) == 2
    assert ms.left_right_axis(np.eye(4)) == 0


def test_mirroring_moves_left_structures_to_the_right_under_their_twin_names() -> None:
    reference = np.zeros((4, 4, 6), np.int32)
    reference[1, 1, 5] = 12  # Left-Putamen, on the left
    reference[2, 2, 4] = 1035  # ctx-lh-insula
    reference[1, 2, 3] = 16  # Brain-Stem: midline, keeps its name
    image = Volume(np.arange(96, dtype=np.float32).reshape(4, 4, 6), ASL)
    mirror = ms.mirrored(ms.Scan(image, reference))
    assert mirror.reference[1, 1, 0] == 51  # Right-Putamen, now on the right
    assert mirror.reference[2, 2, 1] == 2035  # ctx-rh-insula
    assert mirror.reference[1, 2, 2] == 16
    assert np.count_nonzero(mirror.reference) == 3
    np.testing.assert_array_equal(mirror.image.data, image.data[:, :, ::-1])
    np.testing.assert_array_equal(mirror.image.affine, ASL)
    twice = ms.mirrored(mirror)
    np.testing.assert_array_equal(twice.reference, reference)
    np.testing.assert_array_equal(twice.image.data, image.data)
