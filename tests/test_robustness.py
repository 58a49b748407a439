"""benchmarks/robustness.py: the variants keep the anatomy where the affines say it is."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import robustness as rb  # a script beside machine.py, not a package

# Mindboggle's axis order (ASL), 1 mm, a little off the origin.
ASL = np.array([[0, 0, -1, 40], [1, 0, 0, -60], [0, 1, 0, -50], [0, 0, 0, 1]], float)


def _world(affine: np.ndarray, index: tuple[int, ...]) -> np.ndarray:
    return (affine @ np.append(index, 1))[:3]


def test_reorienting_moves_voxels_but_not_their_world_positions() -> None:
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    for codes in ("RAS", "PIR"):
        turned, affine = rb.reoriented(data, ASL, codes)
        assert nib.aff2axcodes(affine) == tuple(codes)
        assert sorted(turned.shape) == sorted(data.shape)
        # Every voxel keeps its value at its world position.
        for index in [(0, 0, 0), (4, 5, 6), (2, 3, 1)]:
            there = np.linalg.solve(affine, np.append(_world(ASL, index), 1))[:3]
            assert turned[tuple(np.round(there).astype(int))] == data[index]


def test_tilting_rotates_about_the_volume_centre() -> None:
    shape = (9, 11, 13)
    affine = rb.tilted(ASL, shape, world_axis=0, degrees=15)
    centre = tuple((n - 1) / 2 for n in shape)
    np.testing.assert_allclose(_world(affine, centre), _world(ASL, centre))
    # A rigid turn about R: voxel sizes and R coordinates stay, A/S turn by 15 degrees.
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), 1)
    step_old = ASL[:3, 1]  # voxel axis 1 runs along S
    step_new = affine[:3, 1]
    assert step_new[0] == pytest.approx(step_old[0])
    assert np.degrees(np.arccos(step_new @ step_old)) == pytest.approx(15)


def test_resampling_keeps_the_field_of_view_and_the_anatomy() -> None:
    data = np.zeros((20, 20, 20), np.float32)
    data[5:15, 8:12, 2:18] = 100  # a bar
    image, affine = rb.resampled(data, ASL, (1.0, 1.0, 2.0))
    assert image.shape == (20, 20, 10)
    np.testing.assert_allclose(np.linalg.norm(affine[:3, :3], axis=0), (1, 1, 2))
    # The first and last voxels' outer faces bound the same extent as before.
    old_ends = _world(ASL, (0, 0, -0.5)), _world(ASL, (0, 0, 19.5))
    new_ends = _world(affine, (0, 0, -0.5)), _world(affine, (0, 0, 9.5))
    np.testing.assert_allclose(new_ends, old_ends)
    # The bar lies where it was, and the slice profile blurs along the thick axis only.
    back = rb.labels_on((image > 50).astype(np.int32), affine, (data, ASL))
    assert np.count_nonzero(back[5:15, 8:12, 3:17] == 0) == 0
    assert image[10, 10, 0] < 100 < image[10, 10, 5] + 1
    assert image[4, 10, 5] == 0 and image[10, 7, 5] == 0


def test_finer_voxels_get_no_blur() -> None:
    data = np.zeros((10, 10, 10), np.float32)
    data[3:7, 3:7, 3:7] = 1
    image, _ = rb.resampled(data, np.eye(4), (0.5, 0.5, 0.5))
    assert image.shape == (20, 20, 20)
    assert image.max() == 1 and image[10, 10, 10] == 1


def test_labels_on_another_grid_take_the_nearest_voxel() -> None:
    labels = np.arange(27, dtype=np.int32).reshape(3, 3, 3)
    target = np.zeros((3, 3, 3)), ASL @ np.eye(4)
    np.testing.assert_array_equal(rb.labels_on(labels, ASL, target), labels)
    shifted = ASL.copy()
    shifted[:3, 3] += ASL[:3, 0]  # one voxel further along axis 0
    moved = rb.labels_on(labels, ASL, (np.zeros((2, 3, 3)), shifted))
    np.testing.assert_array_equal(moved, labels[1:])


def test_intensity_variants_keep_the_brain_mask_and_stay_in_range() -> None:
    data = np.zeros((16, 16, 16), np.float32)
    data[4:12, 4:12, 4:12] = np.linspace(50, 150, 8)[None, None, :]
    field = rb.bias_field(data.shape)
    assert field.min() == pytest.approx(0.866, abs=1e-3)
    assert field.max() == pytest.approx(1.241, abs=1e-3)
    noisy = rb.rician_noise(data, 0.04)
    assert np.array_equal(noisy > 0, data > 0)
    assert 0.03 < np.std(noisy[data > 0] - data[data > 0]) / 150 < 0.05
    curved = rb.gamma(data, 0.7)
    assert curved.max() == pytest.approx(data.max())
    assert np.array_equal(curved > 0, data > 0)
    # A power below 1 lifts the darker tissue towards the brighter: less contrast.
    assert curved[8, 8, 4] / curved[8, 8, 11] > data[8, 8, 4] / data[8, 8, 11]


def test_every_variant_keeps_three_dimensions() -> None:
    data = np.random.default_rng(1).random((12, 14, 10)).astype(np.float32) + 1
    for variant in rb.VARIANTS:
        image, affine = variant.make(data, ASL)
        assert image.ndim == 3 and affine.shape == (4, 4), variant.name
        assert np.isfinite(image).all(), variant.name


def test_variants_scored_on_their_own_voxels_keep_every_voxel_in_place() -> None:
    # Those not marked moves_voxels are scored against the labels array as it is, under the
    # variant's affine: their voxel (i, j, k) must still be the same point of the brain.
    data = np.random.default_rng(2).random((12, 14, 10)).astype(np.float32) + 1
    data[3, 4, 5] = 1000
    for variant in rb.VARIANTS:
        image, _ = variant.make(data, ASL)
        if variant.moves_voxels:
            continue
        assert image.shape == data.shape, variant.name
        assert np.unravel_index(image.argmax(), image.shape) == (3, 4, 5), variant.name
    reordered = {v.name for v in rb.VARIANTS if v.make(data, ASL)[0].shape != data.shape}
    assert reordered <= {v.name for v in rb.VARIANTS if v.moves_voxels}
