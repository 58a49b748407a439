"""Tests of wholebrain.partial.tissue (and its mixture, bias and MRF parts) on synthetic phantoms.

The phantoms are blobby 2- and 3-class "brains" on a 1 mm grid with a smooth multiplicative bias
field and Gaussian noise; the classifier must find the classes (Dice), the field (correlation),
and its MRF must clean noise. classify_tissue is checked on the input grid of a non-RAS,
anisotropic image; its errors each have a test. One real Mindboggle subject (shared data).
Brain masks: test_partial_brainmask.py.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from wholebrain.errors import InputError
from wholebrain.io import Volume, load_image, load_labels
from wholebrain.partial import external
from wholebrain.partial.bias import BiasConfig, estimate_bias, upsample_field
from wholebrain.partial.mrf import box_sum, face_sum, mean_field
from wholebrain.partial.tissue import BuiltinConfig, TissueResult, classify_tissue, segment_canvas

SHAPE = (72, 80, 64)  # phantom grid, 1 mm voxels
MEANS = {1: 0.3, 2: 0.75, 3: 1.0}  # CSF, GM, WM intensities (T1-like ratios)


def dice(a: np.ndarray, b: np.ndarray, label: int) -> float:
    x, y = a == label, b == label
    return float(2 * np.count_nonzero(x & y) / max(1, np.count_nonzero(x) + np.count_nonzero(y)))


def make_phantom(
    classes: int,
    *,
    bias: float = 0.4,
    noise: float = 0.04,
    seed: int = 0,
    blob_mm: float = 2.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(image, truth labels, brain mask, true multiplicative field) on ``SHAPE``.

    Classes are blobs of smoothed noise inside an ellipsoid (3 classes: CSF, GM, WM in about
    equal parts; 2 classes: GM and WM, as a tightly masked brain). The field is a smooth
    gradient plus a bump, from 1 - bias/2 to 1 + bias/2 across the volume. ``blob_mm``: the
    smoothing of the noise the classes are cut from (larger: coarser structures).
    """
    rng = np.random.default_rng(seed)
    grid = np.indices(SHAPE, dtype=np.float32)
    centre = (np.array(SHAPE, np.float32) - 1) / 2
    radii = np.array(SHAPE, np.float32) / 2 - 3
    inside = (((grid - centre[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0) <= 1
    texture = ndimage.gaussian_filter(rng.normal(size=SHAPE), blob_mm)
    texture = texture[inside]
    truth = np.zeros(SHAPE, np.uint8)
    if classes == 3:
        low, high = np.percentile(texture, [30, 65])
        truth[inside] = np.where(texture < low, 1, np.where(texture < high, 2, 3))
    else:
        truth[inside] = np.where(texture < np.percentile(texture, 50), 2, 3)
    clean = np.zeros(SHAPE, np.float32)
    for label, value in MEANS.items():
        clean[truth == label] = value
    x, y, z = grid / (np.array(SHAPE, np.float32) - 1)[:, None, None, None]
    shape = 0.6 * x + 0.3 * y + 0.1 * z + 0.3 * np.exp(-((x - 0.3) ** 2 + (z - 0.6) ** 2) / 0.1)
    shape = (shape - shape.min()) / (shape.max() - shape.min())
    field = (1 - bias / 2 + bias * shape).astype(np.float32)
    image = clean * field + rng.normal(0, noise, SHAPE).astype(np.float32) * inside
    return image.astype(np.float32), truth, inside, field


# --- the built-in classifier on the canvas ---------------------------------------------------


@pytest.mark.parametrize("classes", [2, 3])
def test_phantom_with_bias_and_noise_is_classified(classes: int) -> None:
    image, truth, mask, _ = make_phantom(classes)
    labels = segment_canvas(image, mask)
    assert labels.dtype == np.uint8
    assert not labels[~mask].any()
    for label in range(4 - classes, 4):
        assert dice(labels, truth, label) >= 0.9, f"class {label}"
    if classes == 2:
        # No CSF in a tightly masked brain: the CSF class must not eat dark grey matter.
        assert np.count_nonzero(labels == 1) < 0.01 * np.count_nonzero(mask)


def test_bias_correction_is_what_handles_the_field() -> None:
    """Without correction the 40% field mixes GM and WM up (so the test above is not trivial)."""
    image, truth, mask, _ = make_phantom(3)
    errors = {}
    for method in ("none", "em"):
        config = BuiltinConfig(bias=BiasConfig(method=method), mrf_beta=0.0)
        labels = segment_canvas(image, mask, config)
        errors[method] = np.count_nonzero(labels[mask] != truth[mask])
    assert errors["em"] < 0.5 * errors["none"]


def test_bias_step_recovers_the_field() -> None:
    image, _, mask, field = make_phantom(3)
    fit = estimate_bias(image, mask, BiasConfig())
    estimate = np.exp(upsample_field(fit.log_field, mask.shape))
    r = np.corrcoef(np.log(estimate[mask]), np.log(field[mask]))[0, 1]
    assert r > 0.95
    # Scale-free: the estimate times the fitted WM mean is the true WM intensity times the field.
    ratio = estimate[mask] / field[mask]
    assert ratio.std() / ratio.mean() < 0.05


def test_mrf_reduces_salt_and_pepper_errors() -> None:
    image, truth, mask, _ = make_phantom(3, bias=0.0, noise=0.12, seed=3)
    em_only = segment_canvas(image, mask, BuiltinConfig(mrf_beta=0.0))
    with_mrf = segment_canvas(image, mask, BuiltinConfig())
    errors_em = np.count_nonzero(em_only[mask] != truth[mask])
    errors_mrf = np.count_nonzero(with_mrf[mask] != truth[mask])
    assert errors_mrf < 0.75 * errors_em


def test_segment_canvas_refuses_an_empty_mask() -> None:
    with pytest.raises(ValueError, match="non-empty mask"):
        segment_canvas(np.ones((8, 8, 8), np.float32), np.zeros((8, 8, 8), bool))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"method": "spm"}, "method must be one of"),
        ({"field": "spline"}, "field must be 'polynomial' or 'smooth'"),
        ({"degree": 9}, "degree must be in 0..8"),
        ({"regularisation": -1.0}, "regularisation must be >= 0"),
    ],
)
def test_bias_config_refuses_bad_values(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BiasConfig(**changes)  # type: ignore[arg-type]


def test_mean_field_refuses_other_neighbourhoods() -> None:
    mask = np.ones((4, 4, 4), bool)
    with pytest.raises(ValueError, match="neighbours must be 6 or 26"):
        mean_field(np.zeros((3, 64), np.float32), mask, beta=0.1, iterations=1, neighbours=18)


def test_mean_field_without_beta_is_the_intensity_posterior() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((6, 7, 8)) > 0.3
    logits = rng.normal(size=(3, int(mask.sum()))).astype(np.float32)
    posterior = mean_field(logits, mask, beta=0.0, iterations=5)
    expected = np.exp(logits) / np.exp(logits).sum(axis=0)
    np.testing.assert_allclose(posterior, expected, rtol=1e-5)


def test_box_and_face_sums_match_convolutions() -> None:
    volume = np.random.default_rng(1).random((2, 5, 6, 7)).astype(np.float32)
    expected = ndimage.convolve(volume, np.ones((1, 3, 3, 3)), mode="constant")
    np.testing.assert_allclose(box_sum(volume), expected, rtol=1e-5)
    cross = np.zeros((1, 3, 3, 3))
    cross[0, 1, 1, [0, 2]] = cross[0, 1, [0, 2], 1] = cross[0, [0, 2], 1, 1] = 1
    expected = ndimage.convolve(volume, cross, mode="constant")
    np.testing.assert_allclose(face_sum(volume), expected, rtol=1e-5)


# --- classify_tissue on the input grid -----------------------------------------------------------


def _to_volume(image: np.ndarray, truth: np.ndarray) -> tuple[Volume, np.ndarray]:
    """The phantom as a non-RAS (PIR-like) anisotropic file grid: 1 x 2 x 3 mm voxels."""
    step = (1, 2, 3)
    data = image[:: step[0], :: step[1], :: step[2]]
    labels = truth[:: step[0], :: step[1], :: step[2]]
    # File axes: x' = -Y (posterior), y' = -Z (inferior), z' = +X (right).
    data = np.flip(np.transpose(data, (1, 2, 0)), (0, 1)).copy()
    labels = np.flip(np.transpose(labels, (1, 2, 0)), (0, 1)).copy()
    affine = np.zeros((4, 4))
    affine[1, 0], affine[2, 1], affine[0, 2] = -step[1], -step[2], step[0]
    affine[:3, 3] = (40.0, 30.0, -35.0)
    affine[3, 3] = 1.0
    return Volume(data * 1000.0, affine), labels


def test_classify_tissue_returns_labels_on_a_non_ras_anisotropic_grid() -> None:
    # Coarse blobs: 3 mm slices must still resolve them (partial volume is not under test).
    image, truth, _, _ = make_phantom(3, bias=0.2, blob_mm=4.0)
    volume, native_truth = _to_volume(image, truth)
    assert volume.orientation == "PIR"
    result = classify_tissue(volume, brain_mask=native_truth > 0)
    assert isinstance(result, TissueResult)
    assert result.labels.shape == volume.shape
    assert result.labels.dtype == np.uint8
    assert result.brain_mask.shape == volume.shape and result.brain_mask.dtype == bool
    assert result.method == "builtin"
    assert set(result.seconds) >= {"mask", "bias", "em", "mrf", "total"}
    assert not result.labels[native_truth == 0].any()
    for label in (1, 2, 3):
        assert dice(result.labels, native_truth, label) >= 0.8, f"class {label}"


# --- errors --------------------------------------------------------------------------------------


def _small_volume() -> Volume:
    image, _, _, _ = make_phantom(2, bias=0.0)
    return Volume(image, np.eye(4))


def test_unknown_method_is_an_input_error() -> None:
    with pytest.raises(InputError, match=r"tissue classification method.*'spm'"):
        classify_tissue(_small_volume(), method="spm")


def test_atropos_missing_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ants", None)  # "import ants" now raises ImportError
    with pytest.raises(InputError, match=r"antspyx.*pip install 'wholebrain\[ants\]'"):
        classify_tissue(_small_volume(), method="atropos")


def test_fsl_missing_is_an_input_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InputError, match="FSL's 'fast' on the PATH"):
        classify_tissue(_small_volume(), method="fsl")


def test_brain_mask_of_another_shape_is_an_input_error() -> None:
    with pytest.raises(InputError, match="brain mask on the image's grid"):
        classify_tissue(_small_volume(), brain_mask=np.ones((3, 3, 3), bool))


def test_empty_brain_mask_is_an_input_error() -> None:
    volume = _small_volume()
    with pytest.raises(InputError, match="found an empty mask"):
        classify_tissue(volume, brain_mask=np.zeros(volume.shape, bool))


def test_failing_fast_is_an_input_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_command(tmp_path, "fast", "import sys\nprint('Image Exception: broken', file=sys.stderr)"
                  "\nsys.exit(1)\n")  # fmt: skip
    monkeypatch.setenv("PATH", str(tmp_path))
    volume = _small_volume()
    with pytest.raises(InputError, match="exit status 1: Image Exception: broken"):
        classify_tissue(volume, method="fsl", brain_mask=volume.data > 0)


# --- external methods ----------------------------------------------------------------------------


def _fake_command(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(f"#!{sys.executable}\n{body}")
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


FAKE_FAST = """
import sys, nibabel as nib, numpy as np
args = sys.argv[1:]
base, image = args[args.index("-o") + 1], args[-1]
data = np.asarray(nib.load(image).dataobj)
top = data.max()
seg = np.where(data > 0.8 * top, 3, np.where(data > 0.45 * top, 2, np.where(data > 0, 1, 0)))
nib.save(nib.Nifti1Image(seg.astype(np.uint8), nib.load(image).affine), base + "_seg.nii.gz")
"""


def test_fsl_method_runs_fast_and_returns_native_labels(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _fake_command(tmp_path, "fast", FAKE_FAST)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    image, truth, _, _ = make_phantom(3, bias=0.0)
    volume, native_truth = _to_volume(image, truth)
    result = classify_tissue(volume, method="fsl", brain_mask=native_truth > 0)
    assert result.method == "fsl" and result.labels.shape == volume.shape
    for label in (1, 2, 3):
        assert dice(result.labels, native_truth, label) >= 0.8


def test_atropos_on_a_small_canvas() -> None:
    pytest.importorskip("ants")
    image, truth, mask, _ = make_phantom(3, bias=0.0)
    labels = external.runner("atropos")(image[::2, ::2, ::2], mask[::2, ::2, ::2], 0)
    for label in (1, 2, 3):
        assert dice(labels, truth[::2, ::2, ::2], label) >= 0.8


def test_fast_output_of_another_shape_is_an_input_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    body = FAKE_FAST.replace("seg.astype(np.uint8)", "seg[:-1].astype(np.uint8)")
    _fake_command(tmp_path, "fast", body)
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    volume = _small_volume()
    with pytest.raises(InputError, match="FSL fast: expected a segmentation of shape"):
        classify_tissue(volume, method="fsl", brain_mask=volume.data > 0)


def test_n4_without_ants_is_an_input_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ants", None)
    image, _, mask, _ = make_phantom(2)
    with pytest.raises(InputError, match="antspyx installed for bias correction 'n4'"):
        segment_canvas(image, mask, BuiltinConfig(bias=BiasConfig(method="n4")))


def test_runner_refuses_builtin() -> None:
    with pytest.raises(ValueError, match="must be 'atropos' or 'fsl'"):
        external.runner("builtin")


# --- real data -----------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_mindboggle_subject_grey_and_white_matter(shared_data: Path) -> None:
    from wholebrain.protocols import map_labels
    from wholebrain.protocols.importers import import_labels

    folder = shared_data / "mindboggle-oasis-trt-20-dev" / "sub-01"
    volume = load_image(folder / "t1w_brain.nii.gz")
    result = classify_tissue(volume)
    full, protocol = import_labels(
        load_labels(folder / "labels_dkt31_aseg.nii.gz").data,
        "mindboggle",
        brain_mask=volume.data > 0,
        spacing_mm=volume.spacing_mm,
    )
    reference = map_labels(full, "tissue", protocol)
    assert result.labels.shape == volume.shape
    assert dice(result.labels, reference, 2) >= 0.8
    assert dice(result.labels, reference, 3) >= 0.8
