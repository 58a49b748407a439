"""wholebrain.resample: the engines behind conform (most are tested through Conformed in
test_conform.py); here what conform's combination of canvases samples directly."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from wholebrain.resample import sample_classes


def test_sample_classes_is_scipys_trilinear_of_each_points_class() -> None:
    rng = np.random.default_rng(0)
    scores = rng.random((9, 10, 8, 5)).astype(np.float32)
    matrix = np.array(
        [[0.9, 0.1, 0.0, 0.3], [0.0, 1.1, -0.2, -0.4], [0.1, 0.0, 0.8, 0.2], [0, 0, 0, 1]]
    )
    points = rng.uniform(0, 9, (3, 400))
    classes = rng.integers(0, 5, 400)
    got = sample_classes(scores, matrix, points, classes)
    voxels = matrix[:3, :3] @ points + matrix[:3, 3:4]
    expected = np.empty(400)
    for c in range(5):
        chosen = classes == c
        # Past the edge class 0 blends into 1 and the others into 0 (grid-constant pads 0).
        padded = scores[..., c] - (1.0 if c == 0 else 0.0)
        sampled = ndimage.map_coordinates(padded, voxels[:, chosen], order=1, mode="grid-constant")
        expected[chosen] = sampled + (1.0 if c == 0 else 0.0)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    inside = np.all((voxels >= 0) & (voxels <= np.array([8, 9, 7])[:, None]), axis=0)
    assert 0 < inside.sum() < 400  # both cases were exercised


def test_sample_classes_reads_uint8_scores_on_their_scale() -> None:
    scores = np.zeros((4, 4, 4, 3), np.uint8)
    scores[..., 1] = 200
    points = np.array([[1.5, -5.0], [1.5, 1.0], [1.5, 1.0]])  # inside; far outside
    got = sample_classes(scores, np.eye(4), points, np.array([1, 0]))
    np.testing.assert_allclose(got, [200.0, 255.0])


def test_bounding_box_grows_by_the_margin_clipped_and_is_none_when_empty() -> None:
    from wholebrain.resample import bounding_box

    mask = np.zeros((10, 12, 14), bool)
    assert bounding_box(mask) is None
    mask[2, 5:7, 13] = True
    assert bounding_box(mask) == (slice(2, 3), slice(5, 7), slice(13, 14))
    assert bounding_box(mask, margin=3) == (slice(0, 6), slice(2, 10), slice(10, 14))
