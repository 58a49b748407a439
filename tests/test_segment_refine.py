"""segment.refine: the cortical ribbon sharpened with the scan's intensities, on phantoms whose
right answer is known (white matter bright, cortex darker, the network's labels a voxel off)."""

from __future__ import annotations

import numpy as np
import pytest

from wholebrain.protocols import get_protocol
from wholebrain.segment.refine import cortex_white_matter_pairs, refine_cortex

PAIRS = cortex_white_matter_pairs(get_protocol("dkt-aseg"))
WHITE, CORTEX = 100.0, 60.0  # T1: white matter brighter than grey


def test_cortical_regions_pair_with_their_hemispheres_white_matter() -> None:
    assert len(PAIRS) == 62  # the DKT31 regions of both hemispheres
    assert PAIRS[1002] == 2 and PAIRS[1035] == 2
    assert PAIRS[2002] == 41 and PAIRS[2035] == 41
    assert cortex_white_matter_pairs(get_protocol("aseg")) == {3: 2, 42: 41}
    assert cortex_white_matter_pairs(get_protocol("tissue")) == {}  # no white matter ids


def _ribbon(shape: tuple[int, int, int] = (24, 24, 24)) -> tuple[np.ndarray, np.ndarray]:
    """True labels and image: left white matter (y < 10), cortex 1002 (10 <= y < 13), zero
    signal beyond (a tight skull-stripping mask, as Mindboggle's)."""
    labels = np.zeros(shape, np.int16)
    image = np.zeros(shape, np.float32)
    labels[:, :10], image[:, :10] = 2, WHITE
    labels[:, 10:13], image[:, 10:13] = 1002, CORTEX
    return labels, image


def test_cortex_without_signal_is_cleared_and_nothing_else() -> None:
    truth, image = _ribbon()
    found = truth.copy()
    found[:, 13:15] = 1002  # the network's ribbon two voxels too thick, into the masked CSF
    found[:, 20] = 24  # CSF labelled where the scan has no signal: not cortex, kept
    changed = refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    assert changed["no-signal"] == 24 * 24 * 2
    expected = truth.copy()
    expected[:, 20] = 24
    np.testing.assert_array_equal(found, expected)


def test_dark_cortex_is_cleared_where_the_scan_is_not_exactly_zero() -> None:
    # A resampled (or unmasked) scan: beyond the cortex the signal fades instead of stopping.
    truth, image = _ribbon()
    image[:, 13], image[:, 14] = 0.6 * CORTEX, 0.3 * CORTEX  # a partial-volume voxel, then CSF
    found = truth.copy()
    found[:, 13:15] = 1002  # the network's ribbon two voxels too thick
    changed = refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    assert changed["dark"] == 24 * 24 and changed["no-signal"] == 0
    assert (found[:, 14] == 0).all()  # darker than half the local cortex: not cortex
    assert (found[:, 13] == 1002).all()  # brighter than half: kept (the partial volume)
    np.testing.assert_array_equal(found[:, :13], truth[:, :13])
    # dark=0: only exact zeros are cleared, as before the dark part of rule 1.
    found = truth.copy()
    found[:, 13:15] = 1002
    assert refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS, dark=0)["dark"] == 0
    assert (found[:, 13:15] == 1002).all()


def test_dark_is_judged_against_the_local_cortex() -> None:
    # The right half twice as bright: the same intensity (35) is more than half of the left
    # half's cortex (60) and less than half of the right half's (120).
    truth, image = _ribbon((64, 24, 24))
    image[32:] *= 2.0
    image[:, 13] = 35.0
    found = truth.copy()
    found[:, 13] = 1002
    refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    assert (found[:20, 13] == 1002).all() and (found[44:, 13] == 0).all()


def test_a_voxel_off_at_the_grey_white_interface_is_put_right_either_way() -> None:
    truth, image = _ribbon()
    too_deep = truth.copy()
    too_deep[:, 9] = 1002  # cortex one voxel into the white matter
    changed = refine_cortex(too_deep, image, (1.0, 1.0, 1.0), PAIRS)
    np.testing.assert_array_equal(too_deep, truth)
    assert changed["to-white"] == 24 * 24 and changed["to-cortex"] == 0

    too_shallow = truth.copy()
    too_shallow[:, 10] = 2  # white matter one voxel into the cortex
    changed = refine_cortex(too_shallow, image, (1.0, 1.0, 1.0), PAIRS)
    np.testing.assert_array_equal(too_shallow, truth)  # 1002, the neighbours' region
    assert changed["to-cortex"] == 24 * 24 and changed["to-white"] == 0


def test_one_millimetre_deep_is_two_passes_on_a_finer_grid() -> None:
    truth, image = _ribbon()
    found = truth.copy()
    found[:, 8:10] = 1002  # two voxels too deep
    fine = found.copy()
    coarse = refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)  # 1 mm voxels: one pass
    assert coarse["to-white"] == 24 * 24 and (found[:, 9] == 1002).all()  # the one beyond
    changed = refine_cortex(fine, image, (0.7, 0.7, 0.7), PAIRS)  # 1.4 mm for two passes
    np.testing.assert_array_equal(fine, truth)
    assert changed["to-white"] == 2 * 24 * 24 and changed["to-cortex"] == 0
    # depth_mm sets how far: three passes on 0.5 mm voxels reach a third voxel; one stays
    deeper = truth.copy()
    deeper[:, 6:10] = 1002
    changed = refine_cortex(deeper, image, (0.5, 0.5, 0.5), PAIRS, depth_mm=1.5)
    assert changed["to-white"] == 3 * 24 * 24
    assert (deeper[:, :9] == 2).all() and (deeper[:, 9] == 1002).all()


def test_only_one_voxel_deep_and_the_right_hemisphere_goes_to_its_own_white_matter() -> None:
    truth, image = _ribbon()
    truth[truth == 2], truth[truth == 1002] = 41, 2002
    found = truth.copy()
    found[:, 8:10] = 2002  # two voxels too deep: only the one at the interface is moved
    refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    assert (found[:, 9] == 2002).all()
    assert (found[:, 8] == 41).all()
    assert (found[:, :8] == 41).all() and (found[:, 10:13] == 2002).all()


def test_the_cortex_takes_the_region_most_of_its_face_neighbours_hold() -> None:
    truth, image = _ribbon()
    truth[12:, 10:13] = 1003  # a second region beside the first
    found = truth.copy()
    found[:, 10] = 2  # the interface voxels of both regions lost to white matter
    refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    np.testing.assert_array_equal(found, truth)


def test_the_threshold_follows_a_bias_field_that_one_global_threshold_would_not() -> None:
    # The right half of the scan twice as bright: its cortex (120) is brighter than the left
    # half's white matter (100), so no one threshold (global means: 114) parts grey from white
    # in both halves.
    truth, image = _ribbon((64, 24, 24))
    image[32:] *= 2.0
    found = truth.copy()
    changed = refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    far = np.r_[0:20, 44:64]  # away from the step, where the local means are pure
    np.testing.assert_array_equal(found[far], truth[far])
    assert changed["to-white"] < 64 * 24 / 2  # what does move sits at the step
    found = truth.copy()
    found[:, 9] = 1002
    refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    np.testing.assert_array_equal(found[far], truth[far])
    # Means reaching across the whole scan (one threshold) get both halves wrong.
    found = truth.copy()
    refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS, sigma_mm=1e4)
    assert (found[44:, 10] == 2).all() and (found[:20, 9] == 1002).all()


def test_nothing_moves_where_white_matter_is_not_the_brighter_tissue() -> None:
    truth, image = _ribbon()
    image[truth == 2], image[truth == 1002] = CORTEX, WHITE  # T2-like: cortex the brighter
    found = truth.copy()
    found[:, 9] = 1002
    changed = refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    assert changed["to-white"] == changed["to-cortex"] == changed["dark"] == 0
    assert (found[:, 9] == 1002).all()


def test_no_white_matter_interior_to_measure_leaves_the_interface_alone() -> None:
    truth, image = _ribbon()
    found = truth.copy()
    found[:, :8] = 17  # one layer of white matter left (y = 8): no interior to take its mean on
    found[:, 9] = 1002
    changed = refine_cortex(found, image, (1.0, 1.0, 1.0), PAIRS)
    assert changed["to-white"] == changed["to-cortex"] == 0


def test_anisotropic_voxels_and_untouched_structures() -> None:
    truth, image = _ribbon()
    truth[:4, :4, :4] = 17  # a hippocampus in the white matter's corner: never touched
    found = truth.copy()
    found[:, 9] = 1002
    refine_cortex(found, image, (1.0, 0.7, 1.5), PAIRS)
    np.testing.assert_array_equal(found, truth)


def test_nothing_to_do_and_bad_shapes() -> None:
    labels = np.full((8, 8, 8), 17, np.int16)
    image = np.ones((8, 8, 8), np.float32)
    assert refine_cortex(labels, image, (1.0, 1.0, 1.0), PAIRS) == {
        "no-signal": 0,
        "dark": 0,
        "to-white": 0,
        "to-cortex": 0,
    }
    assert (labels == 17).all()
    truth, image = _ribbon()
    assert sum(refine_cortex(truth.copy(), image, (1.0, 1.0, 1.0), {}).values()) == 0
    with pytest.raises(ValueError, match="differ in shape"):
        refine_cortex(truth, image[:-1], (1.0, 1.0, 1.0), PAIRS)
