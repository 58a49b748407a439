"""The canvas and its inverse (wholebrain.conform): geometry, round trips, normalisation."""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from conftest import _affine
from wholebrain.conform import (
    ConformConfig,
    Conformed,
    conform,
    conform_shifted,
    labels_from_canvases,
    long_axis_pitch_deg,
    measure_pitch_deg,
    normalise_intensities,
    pose_turn_deg,
    robust_intensity_range,
)
from wholebrain.io import Volume

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SMALL = ConformConfig(canvas_shape_vox=(64, 64, 64))

# --- synthetic heads ---------------------------------------------------------------------------


def _grid(
    fov_mm: float,
    spacing_mm: tuple[float, float, float],
    axes: str = "RAS",
    angles_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    centre_mm: tuple[float, float, float] = (3.3, -12.6, 20.4),
) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid covering ``fov_mm`` along each axis, centred on ``centre_mm`` (off the origin)."""
    shape = tuple(round(fov_mm / s) for s in spacing_mm)
    affine = _affine(spacing_mm, axes, angles_deg)
    middle = (np.array(shape) - 1) / 2
    affine[:3, 3] = np.array(centre_mm) - affine[:3, :3] @ middle
    return (shape[0], shape[1], shape[2]), affine


# Blobs: (centre offset from the head centre in mm, semi-axes in mm, label). All >= 8 mm radius,
# inside a 68x72x44 mm head, which fits a 64 mm canvas with its margins (so it is centred).
BLOBS = (
    ((-12.0, 6.0, 4.0), (9.0, 11.0, 9.0), 3),
    ((12.0, 6.0, 4.0), (9.0, 11.0, 9.0), 42),
    ((0.0, -14.0, -4.0), (11.0, 8.0, 8.0), 1002),
    ((0.0, 14.0, -10.0), (9.0, 8.0, 8.0), 7),
)
HEAD_SEMI_AXES_MM = (34.0, 36.0, 22.0)


def _world(shape: tuple[int, ...], affine: np.ndarray) -> np.ndarray:
    """(3, X, Y, Z) world coordinates of the voxel centres."""
    index = np.indices(shape, dtype=np.float64).reshape(3, -1)
    return (affine[:3, :3] @ index + affine[:3, 3:4]).reshape(3, *shape)


def _phantom(
    shape: tuple[int, int, int], affine: np.ndarray, centre_mm: tuple[float, float, float]
) -> tuple[np.ndarray, np.ndarray]:
    """(image float32, labels int32) of a head with labelled blobs, on the given grid."""
    xyz = _world(shape, affine) - np.array(centre_mm)[:, None, None, None]
    axes = np.array(HEAD_SEMI_AXES_MM)[:, None, None, None]
    image = np.where(((xyz / axes) ** 2).sum(0) <= 1, 60.0, 2.0).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    for offset, semi_axes, label in BLOBS:
        d = (xyz - np.array(offset)[:, None, None, None]) / np.array(semi_axes)[:, None, None, None]
        inside = (d**2).sum(0) <= 1
        labels[inside] = label
        image[inside] = 100.0 + label % 17
    return image, labels


def _dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    both = np.count_nonzero((a == label) & (b == label))
    return 2 * both / (np.count_nonzero(a == label) + np.count_nonzero(b == label))


def _centroid_mm(labels: np.ndarray, affine: np.ndarray, label: int) -> np.ndarray:
    index = np.argwhere(labels == label).mean(axis=0)
    return np.asarray(affine[:3, :3] @ index + affine[:3, 3])


CENTRE = (3.3, -12.6, 20.4)
# name, spacing (mm), axes, rotation (degrees), field of view (mm), exact round trip expected
CASES = [
    ("RAS-1mm", (1.0, 1.0, 1.0), "RAS", (0, 0, 0), 96, True),
    ("LIA-1mm", (1.0, 1.0, 1.0), "LIA", (0, 0, 0), 96, True),
    ("ASL-1mm", (1.0, 1.0, 1.0), "ASL", (0, 0, 0), 96, True),
    ("oblique-1mm", (1.0, 1.0, 1.0), "RAS", (17, -9, 21), 96, False),
    ("oblique-LIA-1mm", (1.0, 1.0, 1.0), "LIA", (-15, 0, 8), 96, False),
    ("aniso-0.9x0.9x1.5", (0.9, 0.9, 1.5), "PIR", (0, 0, 0), 96, False),
    ("aniso-oblique", (0.9, 0.9, 1.5), "RAS", (0, 16, 0), 96, False),
    ("0.7mm", (0.7, 0.7, 0.7), "LPS", (0, 0, 0), 90, False),
    ("1.5mm", (1.5, 1.5, 1.5), "RAS", (0, 0, 0), 96, False),
]


@pytest.mark.parametrize(
    ("spacing", "axes", "angles", "fov", "exact"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_label_round_trip(
    spacing: tuple[float, float, float],
    axes: str,
    angles: tuple[float, float, float],
    fov: float,
    exact: bool,
) -> None:
    shape, affine = _grid(fov, spacing, axes, angles, CENTRE)
    image, labels = _phantom(shape, affine, CENTRE)
    conformed = conform(Volume(image, affine), SMALL)

    assert nib.aff2axcodes(conformed.canvas_affine) == ("R", "A", "S")
    np.testing.assert_allclose(np.linalg.norm(conformed.canvas_affine[:3, :3], axis=0), 1.0)
    assert conformed.image.shape == SMALL.canvas_shape_vox
    assert conformed.image.dtype == np.float32
    assert conformed.native_shape == shape

    canvas = conformed.labels_to_canvas(labels)
    assert canvas.shape == SMALL.canvas_shape_vox and canvas.dtype == np.int32
    back = conformed.to_native(canvas)
    assert back.shape == shape and back.dtype == np.int32
    if exact:
        np.testing.assert_array_equal(back, labels)
    for _, _, label in BLOBS:
        assert _dice(back, labels, label) >= 0.95, label
        # The blob is where it was in the world, on the canvas and back on the input grid.
        native_mm = _centroid_mm(labels, affine, label)
        canvas_mm = _centroid_mm(canvas, conformed.canvas_affine, label)
        np.testing.assert_allclose(canvas_mm, native_mm, atol=0.3)
        np.testing.assert_allclose(_centroid_mm(back, affine, label), native_mm, atol=0.3)
    if all(s == 1.0 for s in spacing):
        assert np.mean(back == labels) >= 0.99


@pytest.mark.parametrize("case", ["oblique-1mm", "aniso-0.9x0.9x1.5", "0.7mm"])
def test_labels_made_on_the_canvas_land_on_the_input_grid(case: str) -> None:
    """What a model predicts on the canvas lands where the anatomy is on the input grid."""
    _, spacing, axes, angles, fov, _ = next(c for c in CASES if c[0] == case)
    shape, affine = _grid(fov, spacing, axes, angles, CENTRE)
    image, labels = _phantom(shape, affine, CENTRE)
    conformed = conform(Volume(image, affine), SMALL)
    _, on_canvas = _phantom(SMALL.canvas_shape_vox, conformed.canvas_affine, CENTRE)
    back = conformed.to_native(on_canvas)
    for _, _, label in BLOBS:
        assert _dice(back, labels, label) >= 0.95, label


def test_to_native_keeps_dtype_and_fills_outside_with_zero() -> None:
    shape, affine = _grid(120, (1.0, 1.0, 1.0), "LIA", centre_mm=CENTRE)
    image, _ = _phantom(shape, affine, CENTRE)
    conformed = conform(Volume(image, affine), SMALL)
    for dtype in (np.uint8, np.int16, np.int32, np.int64):
        canvas = np.full(SMALL.canvas_shape_vox, 5, dtype)
        back = conformed.to_native(canvas)
        assert back.dtype == dtype and back.shape == shape
        # The 64 mm canvas covers a 64 mm cube of the 120 mm input: the rest is background.
        assert np.count_nonzero(back) == 64**3
        assert set(np.unique(back).tolist()) == {0, 5}
    assert conformed.to_native(np.ones(SMALL.canvas_shape_vox, bool)).dtype == bool


@pytest.mark.parametrize("case", ["LIA-1mm", "oblique-1mm", "aniso-0.9x0.9x1.5"])
def test_probabilities_round_trip_sum_to_one(case: str) -> None:
    _, spacing, axes, angles, _, exact = next(c for c in CASES if c[0] == case)
    shape, affine = _grid(110, spacing, axes, angles, CENTRE)  # larger than the canvas
    image, labels = _phantom(shape, affine, CENTRE)
    conformed = conform(Volume(image, affine), SMALL)
    canvas = conformed.labels_to_canvas(labels)
    classes = [0, *(label for _, _, label in BLOBS)]
    onehot = np.stack([canvas == c for c in classes]).astype(np.float32)
    soft = ndimage.gaussian_filter(onehot, (0, 1.5, 1.5, 1.5))
    soft /= soft.sum(axis=0, keepdims=True)
    native = conformed.to_native(soft, kind="probabilities")
    assert native.shape == (len(classes), *shape) and native.dtype == np.float32
    np.testing.assert_allclose(native.sum(axis=0), 1.0, atol=1e-5)
    assert native.min() >= 0
    corner = native[:, 0, 0, 0]  # far outside the canvas: certainly background
    np.testing.assert_array_equal(corner, [1, 0, 0, 0, 0])
    # Interpolating probabilities then taking the argmax ~ taking the argmax, then the labels.
    argmax = np.asarray(classes)[native.argmax(axis=0)]
    reference = conformed.to_native(np.asarray(classes, np.int32)[soft.argmax(axis=0)])
    if exact:
        np.testing.assert_array_equal(argmax, reference)
    for label in classes[1:]:
        assert _dice(argmax, reference, label) >= 0.95


def test_axis_aligned_one_mm_is_exact_array_operations() -> None:
    """FreeSurfer's LIA 256³ (origin off the voxel grid) maps onto the canvas at whole voxels."""
    shape = (256, 256, 256)
    affine = np.array(
        [[-1.0, 0, 0, 127.6], [0, 0, 1.0, -133.48], [0, -1.0, 0, 134.48], [0, 0, 0, 1]]
    )
    rng = np.random.default_rng(0)
    image = np.zeros(shape, np.float32)
    image[60:200, 50:210, 40:190] = 1 + rng.random((140, 160, 150), dtype=np.float32)  # head
    conformed = conform(Volume(image, affine))
    canvas_vox_to_input = np.linalg.solve(affine, conformed.canvas_affine)
    np.testing.assert_allclose(canvas_vox_to_input, np.round(canvas_vox_to_input), atol=1e-9)
    labels = rng.integers(0, 120, shape, dtype=np.int32)  # salt and pepper: no interpolation
    back = conformed.to_native(conformed.labels_to_canvas(labels))
    region = conformed.to_native(np.ones(ConformConfig().canvas_shape_vox, np.int32)) == 1
    assert region.sum() == np.prod(ConformConfig().canvas_shape_vox)  # canvas inside the input
    np.testing.assert_array_equal(back[region], labels[region])
    assert not back[~region].any()
    # The canvas image is the input's values, rescaled: nothing interpolated.
    canvas_vox = rng.integers(0, 192, (3, 1000))
    input_vox = np.round(canvas_vox_to_input[:3, :3] @ canvas_vox + canvas_vox_to_input[:3, 3:4])
    expected = normalise_intensities(image, intensity_range=conformed.intensity_range)
    np.testing.assert_array_equal(
        conformed.image[tuple(canvas_vox)], expected[tuple(input_vox.astype(int))]
    )


@pytest.mark.parametrize(
    "angles", [(11.0, 7.0, -13.0), (0.0, 0.0, 0.0)], ids=["general-path", "separable-path"]
)
def test_vote_is_argmax_of_linearly_interpolated_one_hot(
    angles: tuple[float, float, float],
) -> None:
    """The label engine equals one-hot + scipy's trilinear + argmax, without the per-label cost."""
    rng = np.random.default_rng(3)
    coarse = rng.integers(0, 6, (9, 10, 8))
    labels = ndimage.zoom(coarse, 4, order=0).astype(np.int32)  # 36x40x32, blocky regions
    shape, affine = _grid(40, (1.2, 1.1, 1.3), "PIR", angles, (0.0, 0.0, 0.0))
    native = Volume(rng.random(shape, dtype=np.float32), affine)
    config = ConformConfig(canvas_shape_vox=(36, 40, 32))
    conformed = conform(native, config)
    back = conformed.to_native(labels)
    # Reference: native voxel -> canvas voxel coordinates, interpolate each one-hot map.
    coords = np.linalg.solve(conformed.canvas_affine, affine) @ np.vstack(
        [np.indices(shape).reshape(3, -1), np.ones((1, int(np.prod(shape))))]
    )
    scores = np.stack(
        [
            ndimage.map_coordinates(
                (labels == c).astype(float), coords[:3], order=1, mode="grid-constant"
            )
            for c in range(6)
        ]
    )
    scores[0] = 1 - scores[1:].sum(axis=0)  # outside the canvas is background
    reference = scores.argmax(axis=0).reshape(shape)
    # Exact ties (0.5/0.5 on a half-voxel grid) may break differently: a handful of voxels.
    assert np.mean(back == reference) > 0.999


@pytest.mark.parametrize(
    "angles", [(11.0, 7.0, -13.0), (0.0, 0.0, 0.0)], ids=["general-path", "separable-path"]
)
def test_vote_with_scores_is_argmax_of_linearly_interpolated_probabilities(
    angles: tuple[float, float, float],
) -> None:
    """Scored votes: interpolate each class's probability, take the argmax (scipy reference)."""
    rng = np.random.default_rng(4)
    probabilities = ndimage.zoom(rng.random((6, 9, 10, 8)), (1, 4, 4, 4), order=1)
    probabilities = ndimage.gaussian_filter(probabilities, (0, 2, 2, 2))
    probabilities /= probabilities.sum(axis=0, keepdims=True)
    labels = probabilities.argmax(axis=0).astype(np.int32)
    shape, affine = _grid(40, (1.2, 1.1, 1.3), "PIR", angles, (0.0, 0.0, 0.0))
    config = ConformConfig(canvas_shape_vox=(36, 40, 32))
    conformed = conform(Volume(rng.random(shape, dtype=np.float32), affine), config)
    class_last = np.ascontiguousarray(probabilities.transpose(1, 2, 3, 0).astype(np.float32))
    scored = conformed.to_native(labels, scores=class_last)
    coords = np.linalg.solve(conformed.canvas_affine, affine) @ np.vstack(
        [np.indices(shape).reshape(3, -1), np.ones((1, int(np.prod(shape))))]
    )
    interpolated = np.stack(
        [
            ndimage.map_coordinates(p, coords[:3], order=1, mode="grid-constant")
            for p in probabilities
        ]
    )
    interpolated[0] += 1 - interpolated.sum(axis=0)  # outside the canvas is background
    reference = interpolated.argmax(axis=0).reshape(shape)
    # Only the labels of the 8 neighbours compete: a class that wins at none of them may
    # (rarely) win between them. The plain vote is further from the reference.
    assert np.mean(scored == reference) > 0.995
    assert np.mean(conformed.to_native(labels) == reference) < np.mean(scored == reference)
    # One-hot scores are the plain vote.
    onehot = np.eye(6, dtype=np.float32)[labels]
    same = conformed.to_native(labels, scores=onehot) == conformed.to_native(labels)
    assert same.mean() > 0.999  # sums in another order: exact ties may break differently


def test_a_shifted_canvas_moves_by_the_given_voxels_and_keeps_the_intensity_scale() -> None:
    shape, affine = _grid(90, (1.0, 1.0, 1.0), "LIA", centre_mm=CENTRE)
    image, _ = _phantom(shape, affine, CENTRE)
    config = replace(SMALL, spacing_mm=2.0, canvas_shape_vox=(40, 40, 40))
    base = conform(Volume(image, affine), config)
    moved = conform(Volume(image, affine), config, shift_vox=(0.5, 0.5, 0.5))
    offset = np.linalg.solve(base.canvas_affine, moved.canvas_affine)
    np.testing.assert_allclose(offset, _translation_matrix((0.5, 0.5, 0.5)), atol=1e-9)
    assert moved.intensity_range == base.intensity_range
    # Its voxels sit between the first canvas's: a smooth image is about their mean.
    between = ndimage.map_coordinates(
        base.image, np.indices((39, 39, 39)).reshape(3, -1) + 0.5, order=1
    )
    assert np.abs(moved.image[:39, :39, :39].ravel() - between).mean() < 0.02


def _translation_matrix(shift: tuple[float, float, float]) -> np.ndarray:
    matrix = np.eye(4)
    matrix[:3, 3] = shift
    return matrix


def test_shifted_canvases_at_once_equal_one_conform_per_shift() -> None:
    shape, affine = _grid(40, (1.1, 0.9, 1.2), "LIA", (9.0, -6.0, 4.0), CENTRE)
    config = replace(SMALL, spacing_mm=2.0, canvas_shape_vox=(32, 32, 32))
    volume = Volume(np.random.default_rng(1).random(shape, dtype=np.float32) + 1, affine)
    shifts = [(0.0, 0.0, 0.0), (0.5, 0.5, 0.5), (0.5, 0.0, 0.5)]
    together = conform_shifted(volume, config, shifts)
    assert len(together) == 3
    for canvas, shift in zip(together, shifts, strict=True):
        alone = conform(volume, config, shift_vox=shift)
        np.testing.assert_array_equal(canvas.image, alone.image)
        np.testing.assert_array_equal(canvas.canvas_affine, alone.canvas_affine)
        assert canvas.intensity_range == alone.intensity_range
    assert not np.array_equal(together[0].canvas_affine, together[1].canvas_affine)


@pytest.mark.parametrize("axes", ["LIA", "oblique"])
def test_canvases_combine_to_the_argmax_of_their_summed_interpolated_probabilities(
    axes: str,
) -> None:
    # Probabilities defined in world space (smooth blobs), sampled on two canvases half a
    # voxel apart: on the input grid the combination must pick the label whose interpolated
    # probabilities sum highest (scipy's trilinear per class is the reference).
    angles = (9.0, -6.0, 4.0) if axes == "oblique" else (0.0, 0.0, 0.0)
    shape, affine = _grid(60, (1.1, 0.9, 1.2), "LIA", angles, CENTRE)
    config = replace(SMALL, spacing_mm=2.0, canvas_shape_vox=(32, 32, 32))
    volume = Volume(np.random.default_rng(0).random(shape, dtype=np.float32) + 1, affine)
    canvases = [conform(volume, config, shift_vox=s) for s in ((0, 0, 0), (0.5, 0.5, 0.5))]
    rng = np.random.default_rng(5)
    centres = rng.uniform(-20, 20, (4, 3)) + np.asarray(CENTRE)

    def field(world: np.ndarray) -> np.ndarray:  # (3, ...) -> (5, ...) probabilities
        logits = [np.full(world.shape[1:], -1.0)]
        logits += [
            2 - np.linalg.norm(world - c.reshape(3, *[1] * (world.ndim - 1)), axis=0) / 8
            for c in centres
        ]
        soft = np.exp(np.stack(logits))
        return soft / soft.sum(axis=0)

    classes, scores = [], []
    for canvas in canvases:
        probabilities = field(_world(config.canvas_shape_vox, canvas.canvas_affine)).astype(
            np.float32
        )
        classes.append(probabilities.argmax(axis=0).astype(np.uint8))
        scores.append(np.ascontiguousarray(np.moveaxis(probabilities, 0, -1)))
    combined = labels_from_canvases(canvases, classes, scores)
    assert combined.shape == shape and combined.dtype == np.uint8

    alone = canvases[0].to_native(classes[0], scores=scores[0])
    np.testing.assert_array_equal(
        labels_from_canvases(canvases[:1], classes[:1], scores[:1]), alone
    )
    index = np.indices(shape).reshape(3, -1)
    total = np.zeros((5, index.shape[1]))
    for canvas, canvas_scores in zip(canvases, scores, strict=True):
        voxels = np.linalg.solve(canvas.canvas_affine, affine) @ np.vstack(
            [index, np.ones((1, index.shape[1]))]
        )
        for c in range(5):
            padded = canvas_scores[..., c] - (1.0 if c == 0 else 0.0)
            total[c] += ndimage.map_coordinates(padded, voxels[:3], order=1, mode="grid-constant")
            total[c] += 1.0 if c == 0 else 0.0
    reference = total.argmax(axis=0).reshape(shape)
    # Only the labels the canvases propose compete: (almost) always the reference's winner.
    assert np.mean(combined == reference) > 0.999
    assert np.mean(alone == reference) < 0.998  # the second canvas changes the answer


def test_canvases_of_other_scans_are_not_combined(small_conformed: Conformed) -> None:
    labels = np.zeros((64, 64, 64), np.uint8)
    scores = np.ones((64, 64, 64, 2), np.float32)
    with pytest.raises(ValueError, match="one classes and one scores array per canvas"):
        labels_from_canvases([small_conformed], [labels, labels], [scores])
    other = replace(small_conformed, native_shape=(10, 10, 10))
    with pytest.raises(ValueError, match="same input grid"):
        labels_from_canvases([small_conformed, other], [labels] * 2, [scores] * 2)


def test_scores_that_do_not_fit_are_refused(small_conformed: Conformed) -> None:
    labels = np.zeros((64, 64, 64), np.int32)
    with pytest.raises(ValueError, match=r"scores must be \(64, 64, 64\) x classes"):
        small_conformed.to_native(labels, scores=np.zeros((64, 64, 64), np.float32))
    labels[0, 0, 0] = 5
    with pytest.raises(ValueError, match=r"labels must be class indices 0..4"):
        small_conformed.to_native(labels, scores=np.zeros((64, 64, 64, 5), np.float32))
    with pytest.raises(ValueError, match="scores go with kind='labels' only"):
        small_conformed.to_native(
            np.zeros((5, 64, 64, 64), np.float32),
            kind="probabilities",
            scores=np.zeros((64, 64, 64, 5), np.float32),
        )


@pytest.mark.parametrize(
    ("spacing", "axes", "angles"),
    [((0.9, 1.1, 1.4), "LIA", (12, -8, 5)), ((0.9, 1.1, 1.4), "LIA", (0, 0, 0))],
    ids=["oblique", "axis-aligned"],
)
def test_image_interpolation_matches_scipy_trilinear(
    spacing: tuple[float, float, float], axes: str, angles: tuple[float, float, float]
) -> None:
    shape, affine = _grid(80, spacing, axes, angles, CENTRE)
    image, _ = _phantom(shape, affine, CENTRE)
    noise = np.random.default_rng(5).random(shape, dtype=np.float32)
    image += ndimage.gaussian_filter(noise, 2) * 20
    conformed = conform(Volume(image, affine), SMALL)
    low, high = conformed.intensity_range
    to_input = np.linalg.solve(affine, conformed.canvas_affine)
    reference = ndimage.affine_transform(
        image,
        to_input[:3, :3],
        to_input[:3, 3],
        output_shape=SMALL.canvas_shape_vox,
        order=1,
        mode="grid-constant",
        cval=low,
    )
    expected = np.clip((reference - low) / (high - low), 0, 1)
    np.testing.assert_allclose(conformed.image, expected, atol=1e-4)


# --- placement ------------------------------------------------------------------------------


def _head_with_neck(spacing_mm: float = 2.0) -> tuple[np.ndarray, np.ndarray, float, float]:
    """A whole-head phantom with a long neck and shoulders in a 300 mm field of view.

    Returns (image, affine, top of the head S mm, bottom of the brain S mm).
    """
    shape, affine = _grid(300, (spacing_mm,) * 3, "LIA", centre_mm=(0.0, 0.0, 0.0))
    x, y, z = _world(shape, affine)
    head = (x / 80) ** 2 + (y / 100) ** 2 + ((z - 60) / 95) ** 2 <= 1  # top of head at 155 mm
    brain = (x / 65) ** 2 + (y / 85) ** 2 + ((z - 75) / 70) ** 2 <= 1  # 5..145 mm
    neck = (x / 55) ** 2 + (y / 55) ** 2 <= 1
    neck &= z < 0
    shoulders = (np.abs(x) < 145) & (np.abs(y) < 70) & (z < -70)
    image = np.full(shape, 3.0, np.float32)
    image[head | neck | shoulders] = 50.0
    image[brain] = 100.0
    return image, affine, 155.0, 5.0


@pytest.mark.slow
def test_whole_head_with_neck_keeps_the_top_of_the_head() -> None:
    image, affine, top_mm, brain_bottom_mm = _head_with_neck()
    conformed = conform(Volume(image, affine))  # default 192x224x224 canvas
    canvas = conformed.canvas_affine
    z_range = canvas[2, 3] + np.array([0, ConformConfig().canvas_shape_vox[2] - 1])
    margin = ConformConfig().head_margin_mm
    assert top_mm <= z_range[1] <= top_mm + margin + 5  # top of the head kept, neck cut
    assert z_range[0] < brain_bottom_mm - 30
    # L-R is centred on the head, not on the shoulders (which are wider than the canvas).
    assert canvas[0, 3] + (ConformConfig().canvas_shape_vox[0] - 1) / 2 == pytest.approx(0, abs=2)
    brain = (image == 100).astype(np.int32)
    assert conformed.labels_to_canvas(brain).sum() * 1.0 == pytest.approx(brain.sum() * 8, rel=0.02)


def test_small_head_is_centred_on_its_bounding_box() -> None:
    shape, affine = _grid(140, (1.0, 1.0, 1.0), "ASL", centre_mm=(0.0, 0.0, 0.0))
    image, _ = _phantom(shape, affine, CENTRE)
    config = ConformConfig(canvas_shape_vox=(128, 128, 128))  # the head fits with margins
    conformed = conform(Volume(image, affine), config)
    centre = conformed.canvas_affine @ np.array([63.5, 63.5, 63.5, 1.0])
    np.testing.assert_allclose(centre[:3], CENTRE, atol=2.0)


def test_noise_speckles_do_not_move_the_canvas() -> None:
    shape, affine = _grid(140, (1.0, 1.0, 1.0), "RAS", centre_mm=(0.0, 0.0, 0.0))
    image, _ = _phantom(shape, affine, CENTRE)
    clean = conform(Volume(image, affine), SMALL)
    image[0:4, 0:4, 130:134] = image[133:137, 3:7, 1:5] = 500.0  # bright specks far from the head
    noisy = conform(Volume(image, affine), SMALL)
    np.testing.assert_allclose(noisy.canvas_affine, clean.canvas_affine)


# --- intensities ----------------------------------------------------------------------------


def test_normalisation_maps_background_to_zero_and_tissue_below_one() -> None:
    shape, affine = _grid(96, (1.0, 1.0, 1.0), "RAS", centre_mm=CENTRE)
    rng = np.random.default_rng(1)
    image, labels = _phantom(shape, affine, CENTRE)
    image += rng.normal(0, 1.0, shape).astype(np.float32)
    conformed = conform(Volume(image, affine), SMALL)
    canvas_labels = conformed.labels_to_canvas(labels)
    assert conformed.image.min() >= 0 and conformed.image.max() <= 1
    assert conformed.image[0, 0, 0] < 0.05 and conformed.image[-1, -1, -1] < 0.05  # air
    assert 0.75 <= np.median(conformed.image[canvas_labels == 42]) <= 1.0


def test_normalisation_ignores_hot_voxels() -> None:
    shape, affine = _grid(96, (1.0, 1.0, 1.0), "RAS", centre_mm=CENTRE)
    image, _ = _phantom(shape, affine, CENTRE)
    image += np.random.default_rng(2).normal(0, 1.0, shape).astype(np.float32)
    before = conform(Volume(image, affine), SMALL)
    hot = np.random.default_rng(3).choice(image.size, image.size // 10_000, replace=False)
    image.ravel()[hot] *= 100  # 0.01% of the voxels at 100x
    after = conform(Volume(image, affine), SMALL)
    assert after.intensity_range == pytest.approx(before.intensity_range, rel=0.02)
    changed = np.abs(after.image - before.image)
    assert np.median(changed) < 1e-3 and np.mean(changed > 0.05) < 0.005


def test_normalise_intensities_helper() -> None:
    data = np.concatenate([np.zeros(5000), np.linspace(10, 110, 5000)]).astype(np.float32)
    low, high = robust_intensity_range(data)
    assert low == 0 and high == pytest.approx(109, abs=0.5)
    out = normalise_intensities(data)
    assert out.dtype == np.float32 and out.min() == 0 and out.max() == 1
    np.testing.assert_allclose(normalise_intensities(data, intensity_range=(10, 110))[-1], 1)
    with pytest.raises(ValueError, match="high > low"):
        normalise_intensities(data, intensity_range=(5, 5))


def test_constant_image_maps_to_zero(caplog: pytest.LogCaptureFixture) -> None:
    volume = Volume(np.full((40, 40, 40), 7.0, np.float32), np.eye(4))
    conformed = conform(volume, SMALL)
    assert not conformed.image.any()
    assert "no contrast" in caplog.text


# --- errors and config ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_conformed() -> Conformed:
    shape, affine = _grid(80, (1.2, 1.2, 1.2), "LIA", centre_mm=CENTRE)
    image, _ = _phantom(shape, affine, CENTRE)
    return conform(Volume(image, affine), SMALL)


def test_wrong_shapes_and_dtypes_are_refused(small_conformed: Conformed) -> None:
    conformed = small_conformed
    native = conformed.native_shape
    with pytest.raises(ValueError, match=r"to_native: labels must have the canvas shape \(64,"):
        conformed.to_native(np.zeros(native, np.int32))
    with pytest.raises(ValueError, match="to_native: labels must be integers, not float32"):
        conformed.to_native(np.zeros((64, 64, 64), np.float32))
    with pytest.raises(ValueError, match=r"probabilities must be \(C, \*\(64, 64, 64\)\)"):
        conformed.to_native(np.zeros((64, 64, 64), np.float32), kind="probabilities")
    with pytest.raises(ValueError, match="probabilities must be floats, not int32"):
        conformed.to_native(np.zeros((2, 64, 64, 64), np.int32), kind="probabilities")
    with pytest.raises(ValueError, match="kind must be 'labels' or 'probabilities'"):
        conformed.to_native(np.zeros((64, 64, 64), np.int32), kind="soft")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"labels_to_canvas: labels must have the input shape"):
        conformed.labels_to_canvas(np.zeros((64, 64, 64), np.int32))
    with pytest.raises(ValueError, match="labels_to_canvas: labels must be integers"):
        conformed.labels_to_canvas(np.zeros(native, np.float64))


def test_conformed_geometry_is_normalised_and_checked(small_conformed: Conformed) -> None:
    """A Conformed rebuilt from a cache's JSON (lists) works like the original."""
    c = small_conformed
    rebuilt = Conformed(
        image=c.image,
        canvas_affine=c.canvas_affine.tolist(),  # type: ignore[arg-type]
        native_shape=list(c.native_shape),  # type: ignore[arg-type]
        native_affine=c.native_affine.tolist(),  # type: ignore[arg-type]
        config=c.config,
        intensity_range=list(c.intensity_range),  # type: ignore[arg-type]
    )
    assert rebuilt.native_shape == c.native_shape
    labels = np.arange(np.prod(SMALL.canvas_shape_vox), dtype=np.int32).reshape(64, 64, 64)
    np.testing.assert_array_equal(rebuilt.to_native(labels), c.to_native(labels))
    with pytest.raises(ValueError, match="native_shape must be 3 integers"):
        replace(c, native_shape=(4, 4))
    with pytest.raises(ValueError, match=r"affines must be \(4, 4\), not \(3, 4\)"):
        replace(c, canvas_affine=c.canvas_affine[:3])
    with pytest.raises(ValueError, match=r"image must have the canvas shape \(64, 64, 64\)"):
        replace(c, image=c.image[1:])


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"canvas_shape_vox": (64, 64)}, "canvas_shape_vox must be 3 positive integers"),
        ({"canvas_shape_vox": (64, 0, 64)}, "canvas_shape_vox must be 3 positive integers"),
        ({"canvas_shape_vox": (64.5, 64, 64)}, "canvas_shape_vox must be 3 positive integers"),
        ({"spacing_mm": 0.0}, "spacing_mm must be positive"),
        ({"label_interpolation": "cubic"}, "label_interpolation must be 'vote' or 'nearest'"),
        ({"low_percentile": 99.5}, "percentiles must satisfy"),
        ({"high_percentile": 101}, "percentiles must satisfy"),
        ({"foreground_fraction": 1.0}, "foreground_fraction must be in"),
        ({"head_margin_mm": -1.0}, "head_margin_mm must be >= 0"),
        ({"axis_tolerance": 0.5}, "axis_tolerance must be in"),
        ({"brain_pitch_deg": 60.0}, "brain_pitch_deg must be None or in"),
    ],
)
def test_config_is_validated(changes: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConformConfig(**changes)  # type: ignore[arg-type]


def test_config_accepts_lists_from_json() -> None:
    config = ConformConfig(**{**asdict(SMALL), "canvas_shape_vox": [64, 64, 64]})  # type: ignore[arg-type]
    assert config == SMALL and config.canvas_shape_vox == (64, 64, 64)


def test_nearest_labels_option() -> None:
    shape, affine = _grid(96, (0.9, 0.9, 1.5), "PIR", (0, 0, 0), CENTRE)
    image, labels = _phantom(shape, affine, CENTRE)
    config = ConformConfig(canvas_shape_vox=(64, 64, 64), label_interpolation="nearest")
    conformed = conform(Volume(image, affine), config)
    back = conformed.to_native(conformed.labels_to_canvas(labels))
    for _, _, label in BLOBS:
        assert _dice(back, labels, label) >= 0.93


# --- pose: the canvas turned to a brain pitch ------------------------------------------------

BRAIN_CANVAS = ConformConfig(canvas_shape_vox=(48, 56, 48), spacing_mm=4.0)  # 192x224x192 mm


def _pitched_brain(pitch_deg: float, axes: str = "RAS") -> tuple[Volume, np.ndarray]:
    """A skull-stripped 'brain' (ellipsoid, 130 x 160 x 110 mm) whose long axis is pitched
    ``pitch_deg`` (front up) in the world, on a 2 mm grid; and a label in its front half."""
    shape, affine = _grid(200, (2.0, 2.0, 2.0), axes, centre_mm=CENTRE)
    xyz = _world(shape, affine) - np.array(CENTRE)[:, None, None, None]
    angle = np.radians(pitch_deg)
    forward = np.cos(angle) * xyz[1] + np.sin(angle) * xyz[2]
    up = -np.sin(angle) * xyz[1] + np.cos(angle) * xyz[2]
    inside = (xyz[0] / 65) ** 2 + (forward / 80) ** 2 + (up / 55) ** 2 <= 1
    image = np.where(inside, 100.0, 0.0).astype(np.float32)
    labels = (inside & (forward > 20)).astype(np.int32) * 1028
    return Volume(image, affine), labels


@pytest.mark.parametrize("pitch", [-12.0, 4.0, 26.0])
def test_the_brain_pitch_is_measured_in_the_world_whatever_the_voxel_order(pitch: float) -> None:
    for axes in ("RAS", "PIL"):
        assert measure_pitch_deg(_pitched_brain(pitch, axes)[0]) == pytest.approx(pitch, abs=1.5)


def test_a_long_axis_points_forwards_and_a_disc_has_none() -> None:
    line = np.array([[0.0, t, -0.5 * t] for t in range(-10, 11)])  # front down: -26.6 deg
    assert long_axis_pitch_deg(line) == pytest.approx(-26.57, abs=0.01)
    assert long_axis_pitch_deg(line[::-1]) == pytest.approx(-26.57, abs=0.01)
    circle = [[0.0, np.cos(a), np.sin(a)] for a in np.linspace(0, 2 * np.pi, 8, endpoint=False)]
    assert long_axis_pitch_deg(np.array(circle)) is None
    assert long_axis_pitch_deg(np.zeros((2, 3))) is None


def test_the_turn_brings_the_pitch_to_the_target_within_bounds() -> None:
    assert pose_turn_deg(5.0, 20.0) == -15.0
    assert pose_turn_deg(None, 20.0) == 0.0
    assert pose_turn_deg(-30.0, 20.0) == -30.0  # at most 30 degrees either way
    assert pose_turn_deg(75.0, 20.0) == 30.0


@pytest.mark.parametrize("pitch", [2.0, 35.0])
def test_a_posed_canvas_holds_the_brain_at_the_target_pitch_and_labels_go_back(
    pitch: float,
) -> None:
    volume, labels = _pitched_brain(pitch, "LIA")
    config = replace(BRAIN_CANVAS, brain_pitch_deg=20.0)
    conformed = conform(volume, config)
    on_canvas = np.argwhere(conformed.image > 0.5) * config.spacing_mm
    assert long_axis_pitch_deg(on_canvas) == pytest.approx(20.0, abs=2.0)
    # The canvas is the world turned about L-R only, centred on the brain as before.
    rotation = conformed.canvas_affine[:3, :3] / config.spacing_mm
    turn = np.degrees(np.arctan2(rotation[2, 1], rotation[1, 1]))
    assert turn == pytest.approx(pitch - 20.0, abs=1.5)
    np.testing.assert_allclose(rotation[:, 0], [1, 0, 0], atol=1e-12)
    unposed = conform(volume, BRAIN_CANVAS)
    middle = np.append((np.array(config.canvas_shape_vox) - 1) / 2, 1)
    np.testing.assert_allclose(
        conformed.canvas_affine @ middle, unposed.canvas_affine @ middle, atol=1e-6
    )
    back = conformed.to_native(conformed.labels_to_canvas(labels))
    assert _dice(back, labels, 1028) >= 0.9  # a 4 mm canvas: blocky, but in place
    assert _centroid_mm(back, volume.affine, 1028) == pytest.approx(
        _centroid_mm(labels, volume.affine, 1028), abs=1.5
    )


# --- default canvas, 300 mm field of view ------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("oblique", [False, True], ids=["axis", "oblique"])
def test_default_canvas_300mm_field_of_view(oblique: bool) -> None:
    angles = (12.0, 0.0, -10.0) if oblique else (0.0, 0.0, 0.0)
    shape, affine = _grid(300, (2.0, 2.0, 2.0), "LIA", angles, CENTRE)
    image, labels = _phantom(shape, affine, CENTRE)
    conformed = conform(Volume(image, affine))
    back = conformed.to_native(conformed.labels_to_canvas(labels))
    assert conformed.image.shape == (192, 224, 224)
    assert back.shape == shape
    for _, _, label in BLOBS:
        assert _dice(back, labels, label) >= 0.95


# --- real data ----------------------------------------------------------------------------------


def _shared(relative: str) -> Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"needs {path} (the shared data folder is absent)")
    return path


@pytest.mark.shared_data
def test_mindboggle_labels_round_trip_exactly() -> None:
    folder = _shared("mindboggle-oasis-trt-20-dev/sub-01")
    image_file = nib.load(folder / "t1w_brain.nii.gz")
    labels = np.asarray(nib.load(folder / "labels_dkt31_aseg.nii.gz").dataobj).astype(np.int32)
    data = np.asarray(image_file.dataobj, dtype=np.float32)
    conformed = conform(Volume(data, image_file.affine))
    assert nib.aff2axcodes(image_file.affine) == ("A", "S", "L")
    canvas = conformed.labels_to_canvas(labels)
    assert np.count_nonzero(canvas) == np.count_nonzero(labels)  # the whole brain fits
    np.testing.assert_array_equal(conformed.to_native(canvas), labels)
    brain = conformed.labels_to_canvas((data > 0).astype(np.int32)).astype(bool)
    assert np.count_nonzero(brain) == np.count_nonzero(data > 0)
    white_matter = brain & (canvas == 0)  # Mindboggle leaves white matter unlabelled
    deep_white_matter = ndimage.binary_erosion(white_matter, iterations=2)
    assert np.median(conformed.image[deep_white_matter]) >= 0.8


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["ixi002_t1w.mgz", "brainchop_t1w.nii.gz", "chris_t1w.nii.gz"])
def test_whole_head_scans_keep_the_brain_in_the_canvas(name: str) -> None:
    image_file = nib.load(_shared(f"unlabelled-t1w/{name}"))
    data = np.asarray(image_file.dataobj, dtype=np.float32)
    conformed = conform(Volume(data, image_file.affine))
    config = conformed.config
    # The brain fills the top ~150 mm of a head: every foreground voxel within 160 mm of the
    # top of the head lies inside the canvas, and the canvas top is just above the head.
    low, high = conformed.intensity_range
    step = 2
    sub = data[::step, ::step, ::step] > low + 0.1 * (high - low)
    label, _ = ndimage.label(sub)
    head = label == 1 + np.argmax(np.bincount(label.ravel())[1:])
    vox = np.argwhere(head) * step
    world = vox @ image_file.affine[:3, :3].T + image_file.affine[:3, 3]
    top = world[:, 2].max()
    upper = world[world[:, 2] > top - 150]
    canvas_vox = (upper - conformed.canvas_affine[:3, 3]) @ np.linalg.inv(
        conformed.canvas_affine[:3, :3]
    ).T
    shape = np.array(config.canvas_shape_vox)
    slack = np.array([0.5, 3.0, 0.5])  # a nose tip may poke out at the front; nothing else
    assert np.all(canvas_vox.min(axis=0) >= -slack)
    assert np.all(canvas_vox.max(axis=0) <= shape - 1 + slack)
