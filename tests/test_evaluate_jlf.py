"""Multi-atlas joint label fusion: the grid, the way back, a tiny synthetic fusion, the errors."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import blob_phantom
from wholebrain.evaluate.jlf import (
    FusionConfig,
    WarpedAtlas,
    fuse,
    fusion_grid,
    segment_by_fusion,
    to_native,
    warp_atlas,
)
from wholebrain.io import Volume

pytest.importorskip("ants", reason="needs antspyx (pip install 'wholebrain[ants]')")

# Blobs: label id -> (centre in voxels, radius in voxels, intensity).
_BLOBS = {
    10: ((14, 20, 18), 5, 180.0),
    49: ((26, 20, 18), 5, 140.0),
    17: ((14, 12, 14), 3.5, 60.0),
    53: ((26, 12, 14), 3.5, 220.0),
}
_SPACING_MM = 2.0
# A 2 mm grid of 48 x 48 x 40 voxels holds the 80 x 80 x 64 mm phantom with room around it.
_CONFIG = FusionConfig(
    spacing_mm=_SPACING_MM, field_of_view_mm=(96.0, 96.0, 80.0), type_of_transform="Affine"
)


def _phantom(shift_vox: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    return blob_phantom(shift_vox, _BLOBS)


def _volume(data: np.ndarray, flipped: bool = False) -> Volume:
    if not flipped:
        return Volume(data, np.diag([_SPACING_MM, _SPACING_MM, _SPACING_MM, 1.0]))
    # The same world, stored LAS (first axis reversed).
    affine = np.diag([-_SPACING_MM, _SPACING_MM, _SPACING_MM, 1.0])
    affine[0, 3] = _SPACING_MM * (data.shape[0] - 1)
    return Volume(data[::-1].copy(), affine)


def _dice(a: np.ndarray, b: np.ndarray, label_id: int) -> float:
    x, y = a == label_id, b == label_id
    return float(2 * (x & y).sum() / (x.sum() + y.sum()))


def test_grid_and_back_keep_the_labels() -> None:
    image, labels = _phantom((0, 0, 0))
    target = _volume(image, flipped=True)
    truth = labels[::-1].copy()
    grid = fusion_grid(target, _CONFIG)
    assert grid.conformed.config.canvas_shape_vox == (48, 48, 40)
    assert grid.shape == grid.conformed.image[grid.box].shape
    assert grid.shape[0] < 48  # cropped to the foreground box plus the margin
    on_grid = grid.conformed.labels_to_canvas(truth)[grid.box]
    back = to_native(on_grid, grid)
    assert back.shape == target.shape
    assert all(_dice(back, truth, label_id) > 0.9 for label_id in _BLOBS)


def test_segment_by_fusion_recovers_shifted_blobs() -> None:
    atlases = []
    for shift in ((0, 0, 0), (2, -1, 1)):
        image, labels = _phantom(shift)
        atlases.append((_volume(image), labels))
    target_image, truth = _phantom((1, 1, -1))
    target = _volume(target_image, flipped=True)
    labels = segment_by_fusion(target, atlases, _CONFIG)
    assert labels.shape == target.shape
    truth = truth[::-1]
    assert {int(v) for v in np.unique(labels)} <= {0, *_BLOBS}
    assert min(_dice(labels, truth, label_id) for label_id in _BLOBS) > 0.7


def test_one_atlas_is_its_warped_labels() -> None:
    image, labels = _phantom((0, 0, 0))
    grid = fusion_grid(_volume(image), _CONFIG)
    warped = warp_atlas(_volume(image), labels, grid, _CONFIG)
    assert warped.labels.shape == grid.shape and warped.image.shape == grid.shape
    assert warped.seconds > 0
    np.testing.assert_array_equal(fuse(grid, [warped], _CONFIG), warped.labels)


def test_errors() -> None:
    image, labels = _phantom((0, 0, 0))
    grid = fusion_grid(_volume(image), _CONFIG)
    with pytest.raises(ValueError, match="at least one atlas"):
        fuse(grid, [], _CONFIG)
    with pytest.raises(ValueError, match="at least one atlas"):
        segment_by_fusion(_volume(image), [], _CONFIG)
    wrong = WarpedAtlas(np.zeros((3, 3, 3), np.float32), np.zeros((3, 3, 3), np.int32), 0.0)
    with pytest.raises(ValueError, match="not the target's"):
        fuse(grid, [wrong, wrong], _CONFIG)
    with pytest.raises(ValueError, match="do not fit the atlas"):
        warp_atlas(_volume(image), labels[:-1], grid, _CONFIG)
    with pytest.raises(ValueError, match="do not fit the grid"):
        to_native(np.zeros((3, 3, 3), np.int32), grid)


def test_config_checks_and_key() -> None:
    with pytest.raises(ValueError, match="spacing_mm must be > 0"):
        FusionConfig(spacing_mm=0)
    with pytest.raises(ValueError, match="4 voxels a side"):
        FusionConfig(spacing_mm=2.0, field_of_view_mm=(4.0, 100.0, 100.0))
    with pytest.raises(ValueError, match="radius_vox"):
        FusionConfig(search_radius_vox=-1)
    with pytest.raises(ValueError, match="beta and rho"):
        FusionConfig(beta=0)
    assert FusionConfig().conform.canvas_shape_vox == (96, 112, 112)
    assert FusionConfig().key() == "SyN-2mm-192x224x224-m4"
    assert (
        FusionConfig(type_of_transform="antsRegistrationSyNQuick[s]")
        .key()
        .startswith("antsRegistrationSyNQuicks-")
    )
