"""Tests of wholebrain.partial.brainmask: which mask a scan gets, and deepbet's plumbing.

deepbet itself is replaced by a stub except in one test on a real whole-head scan (shared data).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from wholebrain.conform import conform
from wholebrain.errors import InputError
from wholebrain.io import Volume, load_image
from wholebrain.partial import brainmask
from wholebrain.partial.tissue import CANVAS, classify_tissue

Phantom = Callable[[str], tuple[np.ndarray, np.ndarray]]


class StubDeepbet:
    """Stands in for deepbet's BrainExtraction: 'brain' = bright voxels, eroded once."""

    def __init__(self) -> None:
        self.calls: list[tuple[int, ...]] = []

    def run_model(self, image: np.ndarray) -> np.ndarray:
        self.calls.append(image.shape)
        brain = ndimage.binary_erosion(image > 0.3 * image.max(), iterations=1)
        return brain.astype(np.float32)


def test_skull_stripped_guess_follows_wholebrain_info(phantom: Phantom) -> None:
    assert brainmask.looks_skull_stripped(Volume(*phantom("brain"))) is True
    assert brainmask.looks_skull_stripped(Volume(*phantom("head-noise"))) is False


def test_foreground_mask_fills_holes() -> None:
    data = np.zeros((20, 20, 20), np.float32)
    data[4:16, 4:16, 4:16] = 5.0
    data[9:11, 9:11, 9:11] = 0.0  # a hole: masking left a zero inside the brain
    mask = brainmask.foreground_mask(data)
    assert mask[9, 9, 9] and mask.sum() == 12**3


def test_skull_stripped_input_uses_its_foreground(phantom: Phantom) -> None:
    data, affine = phantom("brain")
    volume = Volume(data, affine)
    result = classify_tissue(volume)
    np.testing.assert_array_equal(result.brain_mask, data != 0)
    # conftest's brain: grey shell of 70, white core of 110 (noise 4).
    truth = np.where(data > 90, 3, np.where(data > 0, 2, 0))
    for label in (2, 3):
        a, b = result.labels == label, truth == label
        assert 2 * np.count_nonzero(a & b) / (a.sum() + b.sum()) > 0.95


def test_whole_head_input_uses_deepbet(phantom: Phantom, monkeypatch: pytest.MonkeyPatch) -> None:
    stub = StubDeepbet()
    monkeypatch.setattr(brainmask, "_load_deepbet", lambda: stub)
    volume = Volume(*phantom("head-noise"))
    result = classify_tissue(volume)
    assert stub.calls == [CANVAS.canvas_shape_vox]  # once, on the canvas
    assert result.labels.shape == volume.shape
    assert result.brain_mask.any() and not result.brain_mask.all()
    assert not result.labels[~result.brain_mask].any()


def test_deepbet_mask_keeps_the_largest_component(monkeypatch: pytest.MonkeyPatch) -> None:
    class TwoBlobs:
        def run_model(self, image: np.ndarray) -> np.ndarray:
            out = np.zeros(image.shape, np.float32)
            out[2:10, 2:10, 2:10] = 0.9  # the brain
            out[14:16, 14:16, 14:16] = 0.8  # an eye
            out[5, 5, 5] = 0.1  # a hole
            return out

    monkeypatch.setattr(brainmask, "_load_deepbet", lambda: TwoBlobs())
    mask = brainmask.deepbet_mask(np.zeros((18, 18, 18), np.float32))
    assert mask.sum() == 8**3 and mask[5, 5, 5]


def test_deepbet_missing_is_an_input_error(
    phantom: Phantom, monkeypatch: pytest.MonkeyPatch
) -> None:
    def missing() -> None:
        raise ImportError("No module named 'deepbet'")

    monkeypatch.setattr(brainmask, "_load_deepbet", missing)
    with pytest.raises(InputError, match="pip install deepbet, or pass a brain mask"):
        classify_tissue(Volume(*phantom("head-noise")))


@pytest.mark.shared_data
@pytest.mark.slow
def test_deepbet_on_a_real_whole_head_scan(shared_data: Path) -> None:
    pytest.importorskip("deepbet")
    volume = load_image(shared_data / "unlabelled-t1w" / "ixi002_t1w.mgz")
    assert brainmask.looks_skull_stripped(volume) is False
    conformed = conform(volume, CANVAS)
    mask = brainmask.deepbet_mask(conformed.image)
    litres = mask.sum() / 1e6  # 1 mm canvas voxels
    assert 1.0 < litres < 1.9, litres  # an adult brain with its CSF
