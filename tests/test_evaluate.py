"""Tests of wholebrain.evaluate: metrics on hand-computed cases and against MONAI, file pairs
(numberings, grids, protocols, Mindboggle masks), group means, the summary and the TSV."""

from __future__ import annotations

import csv
import math
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

from wholebrain.errors import InputError, OutputExistsError
from wholebrain.evaluate import (
    COLUMNS,
    Evaluation,
    assd_per_class,
    dice_per_class,
    evaluate_pair,
    evaluate_pairs,
    hausdorff_per_class,
    label_metrics,
    resolve_protocol,
    surface_distances_per_class,
    volume_difference_per_class,
)
from wholebrain.io import Volume, load_image, load_labels, save_volume
from wholebrain.protocols import get_protocol, structure_groups
from wholebrain.protocols.importers import import_labels

WriteImage = Callable[..., Path]
SHAPE = (16, 16, 16)


def cube(
    corner: tuple[int, int, int], side: int | tuple[int, int, int], shape=SHAPE, label: int = 1
) -> np.ndarray:
    sides = (side,) * 3 if isinstance(side, int) else side
    out = np.zeros(shape, np.int32)
    out[tuple(slice(c, c + s) for c, s in zip(corner, sides, strict=True))] = label
    return out


def pooled_percentile(distances: tuple[np.ndarray, np.ndarray], q: float) -> float:
    """medpy's hd95 convention: the percentile of both directed sets pooled."""
    return float(np.percentile(np.concatenate(distances), q))


# --- Dice and volume ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offset", "expected"),
    [
        ((2, 0, 0), 2 / 3),
        ((3, 0, 0), 1 / 2),
        ((1, 2, 0), 5 / 6 * 4 / 6),
        ((0, 0, 0), 1.0),
        ((6, 0, 0), 0.0),
    ],
)
def test_dice_of_offset_cubes_is_the_exact_fraction(
    offset: tuple[int, int, int], expected: float
) -> None:
    ref = cube((2, 2, 2), 6)
    pred = cube(tuple(2 + o for o in offset), 6)  # type: ignore[arg-type]
    (dice,) = dice_per_class(pred, ref, [1])
    assert dice == expected  # (6-k)/6 per axis: exact in floating point


def test_dice_per_class_for_the_training_loop_class_indices_and_tensors() -> None:
    torch = pytest.importorskip("torch")
    ref = np.zeros((2, 8, 8, 8), np.int64)  # a batch of class-index maps, pooled
    ref[:, 2:6] = 1
    ref[:, 6:] = 2
    pred = ref.copy()
    pred[0, 5] = 2  # 64 voxels of class 1 predicted as 2
    dice = dice_per_class(torch.from_numpy(pred), torch.from_numpy(ref), range(3))
    n1, n2 = 2 * 4 * 64, 2 * 2 * 64
    assert dice == pytest.approx([1.0, 2 * (n1 - 64) / (2 * n1 - 64), 2 * n2 / (2 * n2 + 64)])


def test_volume_difference_is_signed_percent_of_the_reference() -> None:
    ref = cube((2, 2, 2), 4) + cube((9, 9, 9), 2, label=2)
    pred = cube((2, 2, 2), (5, 4, 4)) + cube((9, 9, 9), (2, 2, 1), label=2)
    assert volume_difference_per_class(pred, ref, [1, 2]) == pytest.approx([25.0, -50.0])


def test_absent_structures_nan_from_both_zero_dice_from_one() -> None:
    ref = cube((2, 2, 2), 4, label=1) + cube((9, 9, 9), 3, label=3)
    pred = cube((2, 2, 2), 4, label=1) + cube((9, 2, 2), 3, label=2)
    # 1: in both; 2: pred only; 3: ref only; 4: in neither
    m = label_metrics(pred, ref, [1, 2, 3, 4], (1.0, 1.0, 1.0))
    assert m.dice[:3].tolist() == [1.0, 0.0, 0.0] and math.isnan(m.dice[3])
    assert m.hd95_mm[0] == 0 and np.isnan(m.hd95_mm[1:]).all()
    assert m.assd_mm[0] == 0 and np.isnan(m.assd_mm[1:]).all()
    assert m.volume_diff_pct[0] == 0 and math.isnan(m.volume_diff_pct[1])  # no ref volume
    assert m.volume_diff_pct[2] == -100.0 and math.isnan(m.volume_diff_pct[3])
    assert m.voxels_pred.tolist() == [64, 27, 0, 0] and m.voxels_ref.tolist() == [64, 0, 27, 0]
    assert surface_distances_per_class(pred, ref, [2, 3, 4], (1, 1, 1)) == [None] * 3


# --- surface distances: hand-computed -------------------------------------------------------------

# A 3x3x3 cube and the same cube one voxel further along one axis. Each surface has 26 voxels;
# from the first: 16 are on the other surface too (0), the 9 of the trailing face are one step
# away along the shift axis, and the other cube's centre is one step away across (smallest
# spacing). By symmetry the reverse direction is the same.
SHIFTED_CUBE_CASES = [
    # (shift axis, spacing, HD95, ASSD)
    (0, (1.0, 1.0, 1.0), 1.0, 20 / 52),
    (0, (2.0, 1.0, 1.0), 2.0, 2 * (9 * 2 + 1) / 52),
    (2, (1.0, 1.0, 3.0), 3.0, 2 * (9 * 3 + 1) / 52),
    (1, (0.5, 1.5, 0.5), 1.5, 2 * (9 * 1.5 + 0.5) / 52),
]


@pytest.mark.parametrize(("axis", "spacing", "hd95", "assd"), SHIFTED_CUBE_CASES)
def test_hd95_and_assd_of_a_shifted_cube(
    axis: int, spacing: tuple[float, float, float], hd95: float, assd: float
) -> None:
    ref = cube((5, 5, 5), 3)
    corner = [5, 5, 5]
    corner[axis] += 1
    pred = cube(tuple(corner), 3)  # type: ignore[arg-type]
    assert hausdorff_per_class(pred, ref, [1], spacing) == pytest.approx([hd95])
    assert assd_per_class(pred, ref, [1], spacing) == pytest.approx([assd])
    m = label_metrics(pred, ref, [1], spacing)
    assert (m.hd95_mm[0], m.assd_mm[0]) == pytest.approx((hd95, assd))


def test_hd95_is_the_larger_directed_percentile_not_the_pooled_one() -> None:
    # The prediction has two stray voxels 8 and 9 mm from the cube: 2 of its 28 surface
    # voxels (7 %, above 5 %) but 2 of the 54 pooled ones (under 5 %).
    ref = cube((2, 2, 2), 3)
    pred = ref.copy()
    pred[12:14, 3, 3] = 1
    distances = surface_distances_per_class(pred, ref, [1], (1, 1, 1))[0]
    assert distances is not None
    assert sorted(distances[0])[-2:] == [8.0, 9.0] and distances[1].tolist() == [0.0] * 26
    (hd95,) = hausdorff_per_class(pred, ref, [1], (1, 1, 1))
    assert hd95 == pytest.approx(0.65 * 8)  # np.percentile: 25.65th of 28 sorted values
    assert pooled_percentile(distances, 95) == 0.0
    assert hausdorff_per_class(pred, ref, [1], (1, 1, 1), percentile=100) == [9.0]
    assert assd_per_class(pred, ref, [1], (1, 1, 1)) == pytest.approx([17 / 54])


def test_structures_touching_the_array_edge_have_a_surface_there() -> None:
    ref = cube((0, 0, 0), (3, 16, 16))  # a slab filling the array in y and z
    pred = cube((0, 0, 0), (2, 16, 16))
    d = surface_distances_per_class(pred, ref, [1], (1, 1, 1))[0]
    assert d is not None
    # every voxel of the 2-voxel slab touches the outside (the edge or x=2): all surface
    assert d[0].size == 2 * 16 * 16
    # the reference's x=2 face is 1 mm from the prediction's x=1 face; the rest coincides
    assert sorted(set(d[1].tolist())) == [0.0, 1.0] and np.count_nonzero(d[1]) == 16 * 16


def test_distances_match_brute_force_on_random_shapes(rng: np.random.Generator) -> None:
    spacing = np.array([0.9, 1.3, 2.2])
    ref = (ndimage.gaussian_filter(rng.normal(size=(14, 12, 10)), 1.5) > 0.05).astype(np.int32)
    pred = np.roll(ref, (2, -1, 1), axis=(0, 1, 2))
    pred[10:, :3, :] = 1  # a far piece: exercises the KD-tree
    (forward, backward) = surface_distances_per_class(pred, ref, [1], spacing)[0]  # type: ignore[misc]

    def surface(mask: np.ndarray) -> np.ndarray:
        edge = mask & ~ndimage.binary_erosion(mask)
        return np.argwhere(edge) * spacing

    p, r = surface(pred == 1), surface(ref == 1)
    brute = np.sqrt(((p[:, None] - r[None]) ** 2).sum(-1))
    np.testing.assert_allclose(forward, brute.min(1), atol=1e-12)
    np.testing.assert_allclose(backward, brute.min(0), atol=1e-12)


# --- against MONAI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def monai_metrics() -> Any:
    return pytest.importorskip("monai.metrics")


pytestmark = pytest.mark.filterwarnings(
    # MONAI's own surface-distance code calls a deprecated argument of itself.
    "ignore:monai.metrics.utils get_mask_edges:FutureWarning"
)


def random_labels(rng: np.random.Generator, shape: tuple[int, int, int], n: int) -> np.ndarray:
    fields = ndimage.gaussian_filter(rng.normal(size=(n, *shape)), (0, 2, 2, 2))
    return np.argmax(fields, axis=0).astype(np.int32)


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (1.2, 0.8, 2.5)])
def test_metrics_match_monai(
    monai_metrics: Any, rng: np.random.Generator, spacing: tuple[float, float, float]
) -> None:
    import torch

    n = 5
    ref = random_labels(rng, (20, 18, 16), n)
    pred = ref.copy()
    pred[ndimage.binary_dilation(ref == 2, iterations=2) & (ref != 2)] = 2  # class 2 grows
    pred[3:9, 4:8, 10:14] = 4  # a misplaced block of class 4 (some far voxels)
    pred[ref == 3] = np.roll(ref, 1, axis=0)[ref == 3]  # class 3 shifted about

    def onehot(labels: np.ndarray) -> Any:
        return torch.from_numpy(np.eye(n, dtype=np.float32)[labels].transpose(3, 0, 1, 2)[None])

    yp, y = onehot(pred), onehot(ref)
    ours = label_metrics(pred, ref, range(1, n), spacing)
    theirs_hd = monai_metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=spacing)
    theirs_assd = monai_metrics.compute_average_surface_distance(
        yp, y, symmetric=True, spacing=spacing
    )
    theirs_dice = monai_metrics.compute_dice(yp, y, include_background=False)
    np.testing.assert_allclose(ours.hd95_mm, theirs_hd[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.assd_mm, theirs_assd[0].numpy(), rtol=1e-5)
    np.testing.assert_allclose(ours.dice, theirs_dice[0].numpy(), rtol=1e-6)
    assert ours.hd95_mm.max() > 2  # not a trivial case


def test_hand_cases_match_monai(monai_metrics: Any) -> None:
    import torch

    ref = cube((5, 5, 5), 3)
    pred = cube((5, 5, 6), 3)
    pred[12:14, 6, 6] = 1
    yp = torch.from_numpy(np.stack([pred == 0, pred == 1])[None].astype(np.float32))
    y = torch.from_numpy(np.stack([ref == 0, ref == 1])[None].astype(np.float32))
    spacing = (1.0, 1.0, 3.0)
    theirs = monai_metrics.compute_hausdorff_distance(yp, y, percentile=95, spacing=spacing)
    assert hausdorff_per_class(pred, ref, [1], spacing) == pytest.approx(
        [float(theirs[0, 0])], rel=1e-6
    )


# --- input checks of the metric functions ---------------------------------------------------------


def test_metric_functions_reject_bad_arrays() -> None:
    a = cube((2, 2, 2), 3)
    with pytest.raises(ValueError, match="differ in shape"):
        dice_per_class(a, a[:-1], [1])
    with pytest.raises(ValueError, match="integer labels, not dtype float"):
        dice_per_class(a.astype(np.float32), a, [1])
    with pytest.raises(ValueError, match="1-D list of integers"):
        dice_per_class(a, a, [[1]])
    with pytest.raises(ValueError, match="distinct"):
        dice_per_class(a, a, [1, 1])
    with pytest.raises(ValueError, match="3 positive voxel sizes"):
        hausdorff_per_class(a, a, [1], (1.0, 1.0))
    with pytest.raises(ValueError, match="3 positive voxel sizes"):
        assd_per_class(a, a, [1], (1.0, 0.0, 1.0))
    with pytest.raises(ValueError, match=r"percentile must be in 0\.\.100"):
        hausdorff_per_class(a, a, [1], (1, 1, 1), percentile=101)


def test_bool_masks_and_unusual_label_values() -> None:
    ref = cube((2, 2, 2), 4).astype(bool)
    pred = cube((3, 2, 2), 4).astype(bool)
    assert dice_per_class(pred, ref, [1]) == [0.75]
    big = np.where(ref, 2**30, -7).astype(np.int64)  # far-apart values: no lookup table
    assert dice_per_class(np.where(pred, 2**30, -7), big, [2**30, -7]).tolist() == pytest.approx(
        [0.75, 1 - 16 / (16**3 - 64)]
    )


def test_many_labels_and_two_dimensions_match_naive_definitions(rng: np.random.Generator) -> None:
    ref = rng.integers(0, 300, size=(12, 10, 8))  # more labels than uint8 indices hold
    pred = np.where(rng.random(ref.shape) < 0.8, ref, rng.integers(0, 300, size=ref.shape))
    labels = np.arange(300)
    naive = [
        2 * np.sum((pred == i) & (ref == i)) / (np.sum(pred == i) + np.sum(ref == i))
        if np.any(pred == i) or np.any(ref == i)
        else np.nan
        for i in labels
    ]
    np.testing.assert_allclose(dice_per_class(pred, ref, labels), naive)
    square = np.zeros((9, 9), np.int32)
    square[2:5, 2:5] = 1
    moved = np.roll(square, 1, axis=1)  # in 2D: 8 edge pixels each, 4 at 0 and 4 at 1 mm
    assert assd_per_class(moved, square, [1], (1.0, 1.0)) == pytest.approx([8 / 16])
    assert hausdorff_per_class(moved, square, [1], (1.0, 1.0)) == [1.0]


# --- structure groups -----------------------------------------------------------------------------


def test_structure_groups() -> None:
    full = structure_groups("dkt-aseg")
    assert list(full) == ["cortical", "subcortical", "all"]
    assert len(full["cortical"]) == 62 and all(1000 < i < 3000 for i in full["cortical"])
    assert full["subcortical"] == (
        10,
        11,
        12,
        13,
        17,
        18,
        26,
        28,
        49,
        50,
        51,
        52,
        53,
        54,
        58,
        60,
        91,
        92,
    )
    assert full["all"] == tuple(get_protocol("dkt-aseg").ids[1:].tolist())
    assert structure_groups("aseg")["cortical"] == (3, 42)
    assert 16 not in structure_groups("first")["subcortical"]
    assert structure_groups("tissue") == {"all": (1, 2, 3)}
    with pytest.raises(InputError, match="expected one of dkt-aseg"):
        structure_groups("nope")


# --- files: numberings, Mindboggle masks, grids, protocols ----------------------------------------

AFFINE_2MM = np.diag([2.0, 2.0, 2.0, 1.0])


def mindboggle_like() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(Mindboggle-numbered map, the same anatomy in dkt-aseg ids, brain mask), 24x20x16.

    Two hemisphere boxes with a cortical shell (two DKT regions each), a thalamus, white
    matter (unlabelled in the Mindboggle map) and a cerebellum block in Mindboggle ids 6/45.
    """
    shape = (24, 20, 16)
    mb = np.zeros(shape, np.int32)
    dkt = np.zeros(shape, np.int32)
    brain = np.zeros(shape, bool)
    for x0, wm, ctx, thal, cb_mb, cb_dkt in ((2, 2, 1000, 10, 6, 8), (13, 41, 2000, 49, 45, 47)):
        box = (slice(x0, x0 + 9), slice(2, 18), slice(2, 14))
        brain[box] = True
        shell = np.zeros(shape, bool)
        shell[box] = True
        shell &= ~ndimage.binary_erosion(shell)
        front = np.zeros(shape, bool)
        front[:, :10] = True
        for target in (mb, dkt):
            target[shell & front] = ctx + 2
            target[shell & ~front] = ctx + 3
            target[x0 + 3 : x0 + 6, 8:12, 6:10] = thal
        dkt[box][dkt[box] == 0] = wm
        cerebellum = (slice(x0 + 2, x0 + 7), slice(2, 7), slice(14, 16))
        brain[cerebellum] = True
        mb[cerebellum], dkt[cerebellum] = cb_mb, cb_dkt
    return mb, dkt, brain


@pytest.fixture
def mindboggle_files(write_image: WriteImage) -> dict[str, Path]:
    mb, dkt, brain = mindboggle_like()
    t1 = np.where(brain, 100.0, 0.0).astype(np.float32)
    return {
        "mindboggle": write_image(mb.astype(np.float32), AFFINE_2MM, "mb_labels.nii.gz"),
        "dkt": write_image(dkt.astype(np.int16), AFFINE_2MM, "pred_dkt.nii.gz"),
        "brain": write_image(t1, AFFINE_2MM, "t1w_brain.nii.gz"),
    }


PRESENT = [2, 8, 10, 41, 47, 49, 1002, 1003, 2002, 2003]


def test_mindboggle_reference_with_brain_image_scores_everything(
    mindboggle_files: dict[str, Path],
) -> None:
    result = evaluate_pair(
        mindboggle_files["dkt"],
        mindboggle_files["mindboggle"],
        ref_format="mindboggle",
        ref_brain=mindboggle_files["brain"],
    )
    assert result.protocol == "dkt-aseg" and not result.resampled and result.notes == ()
    labels = result.metrics.labels
    present = np.isin(labels, PRESENT)
    assert (result.metrics.dice[present] == 1).all() and (
        result.metrics.hd95_mm[present] == 0
    ).all()
    assert np.isnan(result.metrics.dice[~present]).all()


def test_mindboggle_reference_without_brain_image_leaves_white_matter_unscored(
    mindboggle_files: dict[str, Path],
) -> None:
    result = evaluate_pair(
        mindboggle_files["dkt"], mindboggle_files["mindboggle"], ref_format="mindboggle"
    )
    m = result.metrics
    wm = np.isin(m.labels, [2, 41])
    present = np.isin(m.labels, PRESENT) & ~wm
    assert np.isnan(m.dice[wm]).all() and (m.dice[present] == 1).all()
    assert result.unscored == (2, 41)
    (note,) = result.notes
    assert "Mindboggle" in note and "--ref-brain" in note
    assert "Left-Cerebral-White-Matter, Right-Cerebral-White-Matter not scored" in note
    # at tissue level, WM is the class left out (GM and CSF are exact)
    tissue = evaluate_pair(
        mindboggle_files["dkt"],
        mindboggle_files["mindboggle"],
        ref_format="mindboggle",
        protocol="tissue",
    )
    assert tissue.unscored == (3,) and tissue.metrics.dice[1] == 1.0
    assert "WM not scored" in tissue.notes[0]


def test_both_sides_in_mindboggle_numbering(mindboggle_files: dict[str, Path]) -> None:
    result = evaluate_pair(
        mindboggle_files["mindboggle"],
        mindboggle_files["mindboggle"],
        pred_format="mindboggle",
        ref_format="mindboggle",
        pred_brain=mindboggle_files["brain"],
        ref_brain=mindboggle_files["brain"],
    )
    present = np.isin(result.metrics.labels, PRESENT)
    assert (result.metrics.dice[present] == 1).all()


def test_prediction_on_a_coarser_grid_is_resampled_and_said_so(write_image: WriteImage) -> None:
    rng = np.random.default_rng(3)
    coarse = np.zeros((20, 20, 20), np.int32)  # 2 mm, RAS
    coarse[4:12, 5:15, 6:14] = 17
    coarse[12:16, 5:15, 6:14] = 1002
    coarse[coarse == 0] = rng.choice([0, 24], size=int((coarse == 0).sum()), p=[0.9, 0.1])
    fine = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2)  # 1 mm, the same voxels split in 8
    ref_affine = np.diag([1.0, 1.0, 1.0, 1.0])
    ref_affine[:3, 3] = -20.5  # 1 mm voxel centres at 2i - 0.5 and 2i + 0.5 of the 2 mm ones
    # the prediction stored LAS: x flipped, as a scanner might write it
    pred_affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    pred_affine[:3, 3] = (18.0, -20.0, -20.0)
    pred = write_image(coarse[::-1].astype(np.int16), pred_affine, "pred_2mm.nii.gz")
    ref = write_image(fine.astype(np.int16), ref_affine, "ref_1mm.nii.gz")
    result = evaluate_pair(pred, ref)
    assert result.resampled
    (note,) = result.notes
    assert "resampled onto the reference grid" in note and "nearest neighbour" in note
    assert "20x20x20 voxels of 2 x 2 x 2 mm, LAS" in note and "40x40x40 voxels of 1 x 1" in note
    present = np.isin(result.metrics.labels, [17, 1002, 24])
    assert (result.metrics.dice[present] == 1).all()
    assert (result.metrics.hd95_mm[present] == 0).all()
    assert result.voxel_volume_mm3 == 1.0
    assert result.metrics.voxels_ref[result.metrics.labels == 17] == 8 * 10 * 8 * 8


def test_field_of_view_partly_outside_and_no_overlap(write_image: WriteImage) -> None:
    labels = cube((2, 2, 2), 10, shape=(20, 20, 20), label=17)
    ref = write_image(labels.astype(np.int16), name="ref.nii.gz")
    shifted = AFFINE_2MM.copy()
    shifted[0, 3] = 10.0  # 5 voxels along x
    pred = write_image(labels.astype(np.int16), shifted, name="pred.nii.gz")
    result = evaluate_pair(pred, ref)
    assert result.resampled and "outside the prediction's field of view" in result.notes[1]
    far = AFFINE_2MM.copy()
    far[:3, 3] = 500.0
    pred_far = write_image(labels.astype(np.int16), far, name="far.nii.gz")
    with pytest.raises(
        InputError, match=r"far.nii.gz: expected a label map overlapping .*no overlap"
    ):
        evaluate_pair(pred_far, ref)


def test_protocol_tissue_maps_both_sides(write_image: WriteImage) -> None:
    ref = cube((2, 2, 2), 6, label=1002) + cube((8, 2, 2), 6, label=2) + cube((2, 9, 2), 4, label=4)
    pred = ref.copy()
    pred[pred == 1002] = 1003  # the wrong cortical region: still grey matter
    ref_path = write_image(ref.astype(np.int16), name="ref.nii.gz")
    pred_path = write_image(pred.astype(np.int16), name="pred.nii.gz")
    full = evaluate_pair(pred_path, ref_path)
    assert full.metrics.dice[full.metrics.labels == 1002] == 0
    tissue = evaluate_pair(pred_path, ref_path, protocol="tissue")
    assert tissue.protocol == "tissue" and tissue.metrics.labels.tolist() == [1, 2, 3]
    assert tissue.metrics.dice.tolist() == [1.0, 1.0, 1.0]
    # maps already in tissue ids are read as such
    tissue = cube((2, 2, 2), 6, label=2) + cube((8, 2, 2), 6, label=3) + cube((2, 9, 2), 4)
    tissue_map = write_image(tissue.astype(np.int16), name="tissue.nii.gz")
    same = evaluate_pair(tissue_map, tissue_map, protocol="tissue")
    assert same.metrics.dice.tolist() == [1.0, 1.0, 1.0]


def test_reference_format_chooses_a_coarser_protocol(write_image: WriteImage) -> None:
    pred = cube((2, 2, 2), 6, label=1002) + cube((8, 2, 2), 6, label=2)
    ref = cube((2, 2, 2), 6, label=3) + cube((8, 2, 2), 6, label=2)  # FreeSurfer aseg
    pred_path = write_image(pred.astype(np.int16), name="pred.nii.gz")
    ref_path = write_image(ref.astype(np.int16), name="aseg.nii.gz")
    result = evaluate_pair(pred_path, ref_path, ref_format="freesurfer-aseg")
    assert result.protocol == "aseg"
    assert result.metrics.dice[np.isin(result.metrics.labels, [2, 3])].tolist() == [1.0, 1.0]


def test_resolve_protocol() -> None:
    assert resolve_protocol() == "dkt-aseg"
    assert resolve_protocol(ref_format="mindboggle") == "dkt-aseg"
    assert resolve_protocol(pred_format="dkt-aseg", ref_format="fsl-fast") == "tissue"
    assert resolve_protocol("brain", "fsl-fast", "mindboggle") == "brain"
    with pytest.raises(InputError, match="--ref-format: expected one of mindboggle"):
        resolve_protocol(ref_format="mindbogle")
    with pytest.raises(InputError, match="protocol: expected one of dkt-aseg"):
        resolve_protocol("tisue")
    with pytest.raises(InputError, match="'dkt-aseg', which is finer than 'tissue'"):
        resolve_protocol("dkt-aseg", ref_format="fsl-fast")
    with pytest.raises(InputError, match="do not map to each other; name the protocol"):
        resolve_protocol(pred_format="fsl-fast", ref_format="fsl-first")


def test_input_errors_of_a_pair(write_image: WriteImage, mindboggle_files: dict[str, Path]) -> None:
    good = write_image(cube((2, 2, 2), 6, label=17).astype(np.int16), name="good.nii.gz")
    aseg = write_image(cube((2, 2, 2), 6, label=3).astype(np.int16), name="aseg.nii.gz")
    with pytest.raises(
        InputError,
        match=r"aseg.nii.gz: expected label ids of protocol 'dkt-aseg'"
        r", found ids outside it: 3; name the reference's "
        r"numbering with --ref-format",
    ):
        evaluate_pair(good, aseg)
    with pytest.raises(
        InputError, match=r"t1w_brain\.nii\.gz: expected a brain image only with format mindboggle"
    ):
        evaluate_pair(good, good, ref_brain=mindboggle_files["brain"])
    other_grid = write_image(
        np.ones((20, 20, 20), np.float32) * 5 + cube((1, 1, 1), 3, shape=(20, 20, 20)),
        name="brain_other.nii.gz",
    )
    with pytest.raises(InputError, match=r"brain_other\.nii\.gz: expected the voxel grid of"):
        evaluate_pair(
            mindboggle_files["dkt"],
            mindboggle_files["mindboggle"],
            ref_format="mindboggle",
            ref_brain=other_grid,
        )
    with pytest.raises(InputError, match=r"missing\.nii\.gz: expected an image file"):
        evaluate_pair(good, good.parent / "missing.nii.gz")


def test_in_memory_volumes() -> None:
    labels = cube((2, 2, 2), 6, label=17)
    volume = Volume(labels, AFFINE_2MM)
    result = evaluate_pair(volume, volume)
    assert result.pred == "<in-memory volume>"
    assert result.voxel_volume_mm3 == pytest.approx(8.0)
    assert result.metrics.voxels_ref[result.metrics.labels == 17] == 216


# --- many pairs, group means, summary, TSV --------------------------------------------------------


@pytest.fixture
def three_pairs(write_image: WriteImage) -> tuple[list[Path], list[Path]]:
    """Hippocampus 17 (subcortical) offset by 0, 1, 2 voxels: Dice 1, 5/6, 4/6; the cortical
    region 1002 is exact; the amygdala 18 is in the first prediction only."""
    preds, refs = [], []
    ref = cube((2, 2, 2), 6, label=17) + cube((10, 2, 2), 4, label=1002)
    for k in range(3):
        pred = cube((2 + k, 2, 2), 6, label=17) + cube((10, 2, 2), 4, label=1002)
        if k == 0:
            pred += cube((2, 10, 2), 3, label=18)
        preds.append(write_image(pred.astype(np.int16), name=f"pred{k}.nii.gz"))
        refs.append(write_image(ref.astype(np.int16), name=f"ref{k}.nii.gz"))
    return preds, refs


def test_many_pairs_group_means_and_summary(
    three_pairs: tuple[list[Path], list[Path]], tmp_path: Path
) -> None:
    preds, refs = three_pairs
    seen: list[int] = []

    def progress(indices: Any) -> Any:
        for i in indices:
            seen.append(i)
            yield i

    evaluation = evaluate_pairs(preds, refs, progress=progress)
    assert seen == [0, 1, 2] and isinstance(evaluation, Evaluation)
    assert list(evaluation.groups) == ["cortical", "subcortical", "all"]
    means, n = evaluation.group_values()
    dice17 = [1.0, 5 / 6, 4 / 6]
    # subcortical: 17 (and 18, Dice 0, in pair 1 only); absent structures stay out of means
    assert means["dice"][:, 1] == pytest.approx([(1.0 + 0.0) / 2, 5 / 6, 4 / 6])
    assert n[:, 1].tolist() == [2, 1, 1] and n[:, 0].tolist() == [1, 1, 1]
    assert means["dice"][:, 2] == pytest.approx([2 / 3, (1 + 5 / 6) / 2, (1 + 4 / 6) / 2])
    assert means["hd95_mm"][0, 1] == 0.0  # 18's HD is NaN (pred only): left out

    rows = evaluation.rows()
    k = evaluation.labels.size
    assert len(rows) == (3 + 2) * (k + 3)
    summary = {(r["pair"], r["name"]): r for r in rows if r["pair"] in ("mean", "sd")}
    assert float(summary["mean", "Left-Hippocampus"]["dice"]) == pytest.approx(
        np.mean(dice17), abs=1e-6
    )
    assert float(summary["sd", "Left-Hippocampus"]["dice"]) == pytest.approx(
        np.std(dice17, ddof=1), abs=1e-6
    )
    assert summary["mean", "Left-Hippocampus"]["n"] == "3"
    assert summary["mean", "Left-Amygdala"]["n"] == "1"  # scored in one pair
    assert summary["mean", "Left-Amygdala"]["dice"] == "0"
    assert summary["mean", "Left-Thalamus"]["dice"] == "n/a"  # in no pair
    assert summary["mean", "subcortical"]["dice"] == pytest.approx(
        f"{np.mean([0.5, 5 / 6, 4 / 6]):.6f}".rstrip("0")
    )
    assert summary["mean", "subcortical"]["kind"] == "group"

    out = evaluation.write_tsv(tmp_path / "out" / "scores.tsv")
    with open(out, newline="") as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    assert list(table[0]) == list(COLUMNS) and len(table) == len(rows)
    first = next(r for r in table if r["pair"] == "2" and r["name"] == "Left-Hippocampus")
    assert first["dice"] == "0.833333" and first["volume_ref_mm3"] == str(216 * 8)
    assert first["hd95_mm"] == "2" and first["pred_resampled"] == "false"
    assert first["pred"] == str(preds[1]) and first["id"] == "17"
    with pytest.raises(OutputExistsError, match="pass --force"):
        evaluation.write_tsv(out)
    evaluation.write_tsv(out, force=True)
    assert [p.name for p in out.parent.iterdir()] == ["scores.tsv"]  # no temporary left

    text = evaluation.to_text()
    assert "3 pairs scored in protocol dkt-aseg (98 structures)" in text
    assert f"pair 2: {preds[1]} vs reference {refs[1]}" in text
    lines = text.splitlines()
    assert any(line.split()[:3] == ["mean", "subcortical", "3"] for line in lines)
    assert any(line.split()[:4] == ["2", "subcortical", "1", "0.833"] for line in lines)


def test_counts_must_match(three_pairs: tuple[list[Path], list[Path]]) -> None:
    preds, refs = three_pairs
    with pytest.raises(InputError, match="--ref: expected 3 references, one per prediction"):
        evaluate_pairs(preds, refs[:2])
    with pytest.raises(InputError, match="--ref-brain: expected 3 brain images"):
        evaluate_pairs(preds, refs, ref_format="mindboggle", ref_brains=refs[:1])
    with pytest.raises(InputError, match="at least one prediction"):
        evaluate_pairs([], [])


# --- real data ------------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_mindboggle_subject_against_itself(shared_data: Path) -> None:
    labels = shared_data / "mindboggle-oasis-trt-20-dev" / "sub-01" / "labels_dkt31_aseg.nii.gz"
    result = evaluate_pair(labels, labels, pred_format="mindboggle", ref_format="mindboggle")
    m = result.metrics
    scored = np.isfinite(m.dice)
    assert scored.sum() >= 90
    assert (m.dice[scored] == 1).all() and (m.hd95_mm[scored] == 0).all()
    assert (m.assd_mm[scored] == 0).all() and (m.volume_diff_pct[scored] == 0).all()


@pytest.mark.shared_data
def test_a_prediction_against_a_mindboggle_reference(shared_data: Path, tmp_path: Path) -> None:
    subject = shared_data / "mindboggle-oasis-trt-20-dev" / "sub-01"
    labels, brain = subject / "labels_dkt31_aseg.nii.gz", subject / "t1w_brain.nii.gz"
    reference = load_labels(labels)
    ids, _ = import_labels(reference.data, "mindboggle", brain_mask=load_image(brain).data > 0)
    # A prediction as `wholebrain segment` writes it (dkt-aseg ids on the reference grid),
    # one voxel off everywhere: Dice about 0.8, like a good model.
    pred = save_volume(np.roll(ids, 1, axis=1), reference, tmp_path / "pred.nii.gz")
    # Speed (target < 5 s per pair) is measured in benchmarks/evaluate.py, not here.
    result = evaluate_pair(pred, labels, ref_format="mindboggle", ref_brain=brain)
    assert 0.6 < np.nanmean(result.metrics.dice) < 0.95
    assert np.nanmax(result.metrics.hd95_mm) >= 1.0


@pytest.mark.shared_data
@pytest.mark.slow
def test_two_different_mindboggle_subjects_smoke(shared_data: Path) -> None:
    # Different subjects, not registered: a smoke check of the worst case for the distance
    # search (every surface far from the other), not a score; its time is in
    # benchmarks/evaluate.py.
    root = shared_data / "mindboggle-oasis-trt-20-dev"
    result = evaluate_pair(
        root / "sub-02" / "labels_dkt31_aseg.nii.gz",
        root / "sub-01" / "labels_dkt31_aseg.nii.gz",
        pred_format="mindboggle",
        ref_format="mindboggle",
        ref_brain=root / "sub-01" / "t1w_brain.nii.gz",
        pred_brain=root / "sub-02" / "t1w_brain.nii.gz",
    )
    assert 0 < np.nanmean(result.metrics.dice) < 0.2
    assert np.nanmean(result.metrics.hd95_mm) > 10


def test_evaluate_imports_neither_model_nor_train_nor_torch() -> None:
    code = (
        "import sys, wholebrain.evaluate; "
        "print(sorted(m for m in sys.modules if m in ('torch', 'wholebrain.model', "
        "'wholebrain.train', 'wholebrain.losses')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"
