"""wholebrain.segment.calibrate: class weights fitted to manual volumes, carried and applied."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from wholebrain.cli import main
from wholebrain.errors import InputError, OutputExistsError
from wholebrain.protocols import flip_permutation, get_protocol
from wholebrain.segment.calibrate import (
    BOUND,
    CanvasSample,
    calibrate_model,
    fit_log_weights,
    predicted_counts,
    sample_canvas,
    write_calibrated,
)
from wholebrain.segment.predict import Segmenter
from wholebrain.train.checkpoint import load_checkpoint, read_checkpoint

FULL = "dkt-aseg"
PROTOCOL = get_protocol(FULL)
K = PROTOCOL.num_classes
LEFT, RIGHT = PROTOCOL.index_of(12), PROTOCOL.index_of(51)  # Left-/Right-Putamen
CAUDATE = PROTOCOL.index_of(11)  # Left-Caudate


def _ramp_sample(left: int, right: int, n: int, bias: float) -> tuple[np.ndarray, np.ndarray]:
    """n voxels along a line from ``left`` to ``right``: the manual boundary in the middle, the
    network's probabilities shifted by ``bias`` (> 0: ``right`` grows into ``left``)."""
    x = np.linspace(-1, 1, n)
    p_right = 1 / (1 + np.exp(-(x + bias) * 6))
    probabilities = np.zeros((n, K), np.float64)
    probabilities[:, right] = p_right
    probabilities[:, left] = 1 - p_right
    reference = np.where(x < 0, left, right)
    return np.round(probabilities * 255).astype(np.uint8), reference


def _sample(left: int, right: int, n: int, bias: float) -> CanvasSample:
    probabilities, reference = _ramp_sample(left, right, n, bias)
    return sample_canvas(probabilities.reshape(n, 1, 1, K), reference.reshape(n, 1, 1))


def test_a_canvas_keeps_only_the_voxels_weights_could_relabel() -> None:
    probabilities, reference = _ramp_sample(LEFT, CAUDATE, 200, 0.0)
    sample = sample_canvas(probabilities.reshape(10, 20, 1, K), reference.reshape(10, 20, 1))
    top = probabilities.max(axis=1)
    assert len(sample.probabilities) == int((top < 250).sum()) > 0
    settled = probabilities[top >= 250].argmax(axis=1)
    assert sample.certain.sum() == len(settled) and sample.certain[LEFT] > 0
    assert sample.reference[LEFT] == sample.reference[CAUDATE] == 100
    # Counts with no weights are the plain argmax.
    counts = predicted_counts(sample, np.zeros(K, np.float32))
    np.testing.assert_array_equal(counts, np.bincount(probabilities.argmax(1), minlength=K))


def test_a_weight_moves_the_boundary_towards_the_lighter_class() -> None:
    sample = _sample(LEFT, CAUDATE, 400, 0.0)
    plain = predicted_counts(sample, np.zeros(K, np.float32))
    weights = np.zeros(K, np.float32)
    weights[CAUDATE] = 0.5
    heavier = predicted_counts(sample, weights)
    assert heavier[CAUDATE] > plain[CAUDATE] and heavier[LEFT] < plain[LEFT]
    assert heavier.sum() == plain.sum()


def test_the_fit_brings_an_undersegmented_structure_back_to_its_manual_volume() -> None:
    # The network lets the caudate grow 20 % of the way into the putamen on every scan.
    samples = [_sample(LEFT, CAUDATE, 600, 0.2) for _ in range(3)]
    log_weights, volumes = fit_log_weights(samples, FULL)
    manual, before, after = volumes["manual"], volumes["before"], volumes["after"]
    assert before[LEFT] < 0.85 * manual[LEFT]
    assert abs(after[LEFT] - manual[LEFT]) <= 0.03 * manual[LEFT]  # from > 15 %
    assert log_weights[LEFT] > 0 > log_weights[CAUDATE]
    assert log_weights[0] == 0  # the reference level
    assert (log_weights[manual + manual[flip_permutation(FULL)] == 0] == 0).all()


def test_left_and_right_share_their_weight_and_weights_stay_bounded() -> None:
    # The putamen undersegmented on the left only; later, one the network never predicts.
    samples = [
        _sample(LEFT, CAUDATE, 600, 0.3),
        _sample(RIGHT, PROTOCOL.index_of(50), 600, 0.0),
    ]
    log_weights, _ = fit_log_weights(samples, FULL)
    twin = flip_permutation(FULL)
    np.testing.assert_array_equal(log_weights, log_weights[twin])
    starved = _sample(LEFT, CAUDATE, 600, 5.0)  # the putamen almost never wins
    log_weights, _ = fit_log_weights([starved], FULL, rounds=40)
    assert np.abs(log_weights).max() <= BOUND
    assert log_weights[LEFT] == pytest.approx(BOUND)


def test_nothing_to_fit_on_is_an_error() -> None:
    with pytest.raises(ValueError, match="no canvas"):
        fit_log_weights([], FULL)


def test_a_calibrated_checkpoint_carries_its_weights(tiny_model: Path, tmp_path: Path) -> None:
    weights = np.linspace(-0.5, 0.5, K).astype(np.float32)
    target = write_calibrated(
        tiny_model, tmp_path / "cal.pt", weights, ["sub-01"], method="test", force=False
    )
    _, info = load_checkpoint(target)
    assert info.calibration is not None
    np.testing.assert_allclose(info.calibration["log_weights"], weights, atol=1e-6)
    assert info.calibration["subjects"] == ["sub-01"] and info.calibration["method"] == "test"
    assert load_checkpoint(tiny_model)[1].calibration is None
    with pytest.raises(OutputExistsError):
        write_calibrated(tiny_model, target, weights, ["sub-01"], method="test")
    broken = read_checkpoint(target)
    broken["calibration"]["log_weights"] = [0.0] * 3
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(InputError, match="one log weight per class"):
        load_checkpoint(tmp_path / "broken.pt")


def test_a_calibrated_pose_turns_the_canvases_unless_told_not_to(
    tiny_model: Path, tmp_path: Path, phantom: Callable[[str], tuple[np.ndarray, np.ndarray]]
) -> None:
    weights = np.zeros(K, np.float32)
    posed = write_calibrated(
        tiny_model, tmp_path / "posed.pt", weights, ["x"], method="t", brain_pitch_deg=18.5
    )
    unposed = write_calibrated(tiny_model, tmp_path / "plain.pt", weights, ["x"], method="t")
    assert load_checkpoint(posed)[1].calibration["brain_pitch_deg"] == 18.5  # type: ignore[index]
    assert "brain_pitch_deg" not in (load_checkpoint(unposed)[1].calibration or {})
    turned = Segmenter(posed, device="cpu")
    assert turned.pose_pitch_deg == 18.5
    assert Segmenter(posed, device="cpu", pose=False).pose_pitch_deg is None
    assert Segmenter(unposed, device="cpu").pose_pitch_deg is None
    # The box phantom is symmetric front to back: pitch 0, so its canvas turns by -18.5 deg.
    rotation = turned.conformed_canvases(_volume())[0].canvas_affine[:3, :3]
    assert np.degrees(np.arctan2(rotation[2, 1], rotation[1, 1])) == pytest.approx(-18.5)
    plain = Segmenter(posed, device="cpu", pose=False).conformed_canvases(_volume())[0]
    np.testing.assert_array_equal(plain.canvas_affine[:3, :3], np.diag([4.0, 4.0, 4.0]))
    # A whole head left unstripped keeps the world axes: its long axis is not the brain's.
    from wholebrain.io import Volume

    head, affine = phantom("head-noise")
    kept = Segmenter(posed, device="cpu", skull_strip="off")
    assert kept.brain_pitch_deg(Volume(head, affine)) is None
    (canvas,) = Segmenter(posed, device="cpu", skull_strip="off", canvases=1).conformed_canvases(
        Volume(head, affine)
    )
    np.testing.assert_array_equal(canvas.canvas_affine[:3, :3], np.diag([4.0, 4.0, 4.0]))
    brain, affine = phantom("brain")
    assert kept.brain_pitch_deg(Volume(brain, affine)) is not None
    broken = read_checkpoint(posed)
    broken["calibration"]["brain_pitch_deg"] = 90.0
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(InputError, match="brain_pitch_deg"):
        load_checkpoint(tmp_path / "broken.pt")


@pytest.mark.parametrize("tta", [True, False])
def test_the_segmenter_weights_the_probabilities_unless_told_not_to(
    tiny_model: Path, tmp_path: Path, tta: bool
) -> None:
    weights = np.zeros(K, np.float32)
    weights[CAUDATE] = 1.0  # e times as likely
    calibrated = write_calibrated(tiny_model, tmp_path / "cal.pt", weights, ["x"], method="t")
    canvas = np.random.default_rng(5).random((48, 56, 48), dtype=np.float32)
    plain = Segmenter(tiny_model, device="cpu", tta=tta, precision="float32")
    weighted = Segmenter(calibrated, device="cpu", tta=tta, precision="float32")
    off = Segmenter(calibrated, device="cpu", tta=tta, precision="float32", calibrate=False)
    assert weighted.calibrated and not off.calibrated and not plain.calibrated

    classes, _, _, _ = plain._predict(canvas, True)
    # The expected: the network's (TTA-averaged) probabilities in float, times the weights,
    # normalised again; the slab loop must give them rounded to 1/255.
    exact = _exact_probabilities(plain, canvas, tta) * np.exp(weights)
    expected = exact / exact.sum(-1, keepdims=True)
    got, got_probabilities, _, _ = weighted._predict(canvas, True)
    assert got_probabilities is not None
    assert np.abs(got_probabilities - expected * 255).max() <= 0.51
    assert (got == expected.argmax(-1)).mean() > 0.999  # float sums in another order: ties
    assert (got == CAUDATE).sum() > (classes == CAUDATE).sum()
    # The path without probabilities (logits + log weights) labels alike.
    assert (weighted._predict(canvas, False)[0] == got).mean() > 0.999
    np.testing.assert_array_equal(off._predict(canvas, True)[0], classes)
    # What calibrate fits on is the network's own probabilities.
    conformed = weighted.conformed_canvases(_volume())[0]
    np.testing.assert_array_equal(
        weighted.canvas_probabilities(conformed), plain.canvas_probabilities(conformed)
    )


def _exact_probabilities(segmenter: Segmenter, canvas: np.ndarray, tta: bool) -> np.ndarray:
    """Class-last float64 probabilities of the full head, mirrored pass averaged in if ``tta``."""
    image = torch.from_numpy(canvas)[None, None]
    with torch.inference_mode():
        total = torch.softmax(segmenter.model(image)[FULL], 1)[0].double()
        if tta:
            swap = torch.as_tensor(flip_permutation(FULL))
            mirrored = torch.softmax(segmenter.model(image.flip(2))[FULL], 1)[0].flip(1)[swap]
            total = (total + mirrored.double()) / 2
    return total.permute(1, 2, 3, 0).numpy()


def _volume():  # type: ignore[no-untyped-def]
    from wholebrain.io import Volume

    data = np.zeros((40, 48, 40), np.float32)
    data[8:32, 8:40, 8:32] = 100
    return Volume(data, np.diag([4.0, 4.0, 4.0, 1.0]))


def _cohort(
    tmp_path: Path,
    phantom: Callable[[str], tuple[np.ndarray, np.ndarray]],
    write_image: Callable[..., Path],
) -> Path:
    """A manifest of two skull-stripped phantoms with dkt-aseg labels (putamen / caudate /
    white matter), one in split train and one in val."""
    data, affine = phantom("brain")
    labels = np.zeros(data.shape, np.int32)
    labels[data > 90] = 2  # white matter
    labels[(data > 0) & (data <= 90)] = 1035  # 'insula': the grey shell
    labels[30:40, 40:56, 30:40] = 12
    labels[40:50, 40:56, 30:40] = 11
    rows = ["subject,image,annotation,format,protocol,split"]
    for subject, split in (("sub-01", "train"), ("sub-02", "val")):
        image = write_image(data, affine, f"{subject}_T1w.nii.gz")
        annotation = write_image(labels, affine, f"{subject}_dseg.nii.gz")
        rows.append(f"{subject},{image},{annotation},{FULL},{FULL},{split}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    return manifest


def test_calibrate_fits_on_the_train_rows_and_writes_a_model_segment_reads(
    tiny_model: Path,
    tmp_path: Path,
    phantom: Callable[[str], tuple[np.ndarray, np.ndarray]],
    write_image: Callable[..., Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    manifest = _cohort(tmp_path, phantom, write_image)
    output = tmp_path / "calibrated.pt"
    result = calibrate_model(tiny_model, manifest, output, device="cpu")
    assert result.subjects == ("sub-01",) and result.path == output
    assert result.volumes["manual"][PROTOCOL.index_of(12)] > 0
    _, info = load_checkpoint(output)
    assert info.calibration is not None and info.calibration["subjects"] == ["sub-01"]
    assert "volume matching" in info.calibration["method"]
    np.testing.assert_allclose(info.calibration["log_weights"], result.log_weights, atol=1e-6)
    # The pose: the training scan's brain pitch, measured as the segmenter measures it.
    from wholebrain.io import load_image

    measured = Segmenter(tiny_model, device="cpu").brain_pitch_deg(
        load_image(tmp_path / "sub-01_T1w.nii.gz")
    )
    assert measured is not None
    assert result.pitches_deg == (measured,) and result.brain_pitch_deg == measured
    assert info.calibration["brain_pitch_deg"] == measured
    unposed = calibrate_model(tiny_model, manifest, tmp_path / "u.pt", device="cpu", pose=False)
    assert unposed.brain_pitch_deg is None and unposed.pitches_deg == ()

    # The command: the same fit, a table, and no overwrite without --force.
    status = main(["-q", "calibrate", str(manifest), "--model", str(tiny_model), "-o", str(output)])
    assert status == 1 and "existing file" in capsys.readouterr().err
    args = ["calibrate", str(manifest), "--model", str(tiny_model), "-o", str(output), "--force"]
    assert main(["-q", *args, "--split", "train", "val", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "fitted on 2 scans: sub-01, sub-02" in out and "mean |volume error|" in out
    assert "pose: canvases turned so the brain lies at" in out
    assert f"wrote {output}" in out


def test_calibrate_needs_full_annotations_in_the_split(
    tiny_model: Path,
    tmp_path: Path,
    phantom: Callable[[str], tuple[np.ndarray, np.ndarray]],
    write_image: Callable[..., Path],
) -> None:
    manifest = _cohort(tmp_path, phantom, write_image)
    with pytest.raises(InputError, match="split test"):
        calibrate_model(tiny_model, manifest, tmp_path / "x.pt", splits=("test",), device="cpu")
    assert not (tmp_path / "x.pt").exists()
