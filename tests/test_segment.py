"""wholebrain.segment: the Segmenter, the volume table, and the segment command.

A tiny random network (filters 4/8/16 on a 4 mm canvas) stands in for a trained model
wherever the test is about plumbing (grids, files, skipping, failures); the shipped model is
exercised once, on the README's example.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from conftest import _affine
from wholebrain.cli import main
from wholebrain.io import Volume
from wholebrain.protocols import flip_permutation, get_protocol
from wholebrain.segment.predict import (
    Segmenter,
    head_brain_mask,
    keep_largest_brain_component,
    resolve_device,
    strip_skull,
)
from wholebrain.segment.refine import cortex_white_matter_pairs
from wholebrain.segment.run import outputs_for
from wholebrain.segment.volumes import volume_rows, write_volume_table
from wholebrain.train.checkpoint import (
    export_for_inference,
    load_checkpoint,
)

FULL = "dkt-aseg"


@pytest.fixture
def head_scan(
    phantom: Callable[[str], tuple[np.ndarray, np.ndarray]],
    write_image: Callable[..., Path],
) -> Callable[[str], Path]:
    """Factory: a whole-head phantom saved under ``name`` (LIA, 2.5 mm, as FreeSurfer's)."""
    data, _ = phantom("head-noise")
    affine = _affine((2.5, 2.5, 2.5), "LIA", origin_mm=(100, 120, -100))
    lia = np.ascontiguousarray(np.flip(data, 0).transpose(0, 2, 1)[:, ::-1])

    def write(name: str) -> Path:
        return write_image(lia, affine, name)

    return write


# --- the Segmenter -------------------------------------------------------------------------


def test_labels_come_back_on_the_scan_grid(tiny_model: Path, head_scan: Callable) -> None:
    scan = head_scan("sub-01_T1w.nii.gz")
    image = nib.load(scan)
    volume = Volume(np.asanyarray(image.dataobj).astype(np.float32), image.affine, image.header)
    result = Segmenter(tiny_model, device="cpu", tta=False, skull_strip="off").segment(volume)
    assert result.labels.shape == image.shape
    assert result.labels.dtype == np.int16
    assert set(np.unique(result.labels)) <= set(get_protocol(FULL).ids.tolist())
    assert result.canvas_labels.shape == (48, 56, 48)
    assert result.flip_agreement is None and result.probabilities is None
    assert result.tissue_canvas is not None and result.tissue_canvas.max() <= 3
    assert set(result.seconds) == {"conform", "network", "native", "refine"}
    assert not result.skull_stripped and result.picture is None


def test_float32_and_fast_precision_agree_on_most_voxels(tiny_model: Path) -> None:
    canvas = np.random.default_rng(0).random((48, 56, 48), dtype=np.float32)
    fast = Segmenter(tiny_model, device="cpu")._predict(canvas, False)[0]
    exact = Segmenter(tiny_model, device="cpu", precision="float32")._predict(canvas, False)[0]
    # bf16 rounds logits to ~3 significant digits: only near-ties may flip.
    assert (fast == exact).mean() > 0.9


def test_flip_tta_is_exactly_mirror_equivariant(tiny_model: Path) -> None:
    # TTA averages p(x) with the mirrored pass mirrored back (left/right labels swapped),
    # so segmenting the mirrored canvas must give the mirrored, side-swapped labels.
    segmenter = Segmenter(tiny_model, device="cpu", tta=True, precision="float32")
    canvas = np.random.default_rng(1).random((48, 56, 48), dtype=np.float32)
    classes, _, agreement, _ = segmenter._predict(canvas, False)
    mirrored, _, _, _ = segmenter._predict(np.ascontiguousarray(canvas[::-1]), False)
    swapped = flip_permutation(FULL)[classes[::-1]]
    assert (mirrored == swapped).mean() > 0.999  # float sums in another order: rare ties
    assert agreement is not None and agreement.shape == (99,)
    finite = agreement[np.isfinite(agreement)]
    assert finite.size and ((finite >= 0) & (finite <= 1)).all()


def test_flip_tta_is_the_mean_of_the_plain_and_the_swapped_mirrored_probabilities(
    tiny_model: Path,
) -> None:
    # The reference, written the slow obvious way on whole-canvas float32 tensors: what the
    # slab loop (class-last rows, weight-swapped mirrored head) must reproduce.
    segmenter = Segmenter(tiny_model, device="cpu", tta=True, precision="float32")
    canvas = np.random.default_rng(3).random((48, 56, 48), dtype=np.float32)
    image = torch.from_numpy(canvas)[None, None]
    swap = torch.as_tensor(flip_permutation(FULL))
    with torch.inference_mode():
        plain = segmenter.model(image)
        mirrored = segmenter.model(image.flip(2))
    p_plain = torch.softmax(plain[FULL], 1)[0]
    p_mirrored = torch.softmax(mirrored[FULL], 1)[0].flip(1)[swap]
    expected = ((p_plain + p_mirrored) / 2).argmax(0).numpy()
    a, b = p_plain.argmax(0).numpy(), p_mirrored.argmax(0).numpy()

    classes, probabilities, agreement, tissue = segmenter._predict(canvas, True)
    assert (classes == expected).mean() > 0.999  # float sums in another order: rare ties
    mean = ((p_plain + p_mirrored) / 2 * 255).permute(1, 2, 3, 0).numpy()  # classes last
    assert probabilities is not None and np.abs(probabilities - mean).max() <= 0.51
    assert agreement is not None
    for index in (0, 1, int(np.bincount(a.ravel()).argmax())):
        sizes = (a == index).sum() + (b == index).sum()
        dice = 2 * ((a == index) & (b == index)).sum() / sizes if sizes else np.nan
        np.testing.assert_allclose(agreement[index], dice, atol=1e-3, equal_nan=True)
    assert tissue is not None and (tissue == plain["tissue"][0].argmax(0).numpy()).all()


def test_a_canvas_without_extras_gets_the_same_labels_and_no_agreement_or_tissue(
    tiny_model: Path,
) -> None:
    # segment() reads the flip agreement and the tissue map of its first canvas only: the
    # others skip them, and must not change what they do deliver.
    segmenter = Segmenter(tiny_model, device="cpu", tta=True, precision="float32")
    canvas = np.random.default_rng(4).random((48, 56, 48), dtype=np.float32)
    classes, probabilities, agreement, tissue = segmenter._predict(canvas, True)
    bare = segmenter._predict(canvas, True, extras=False)
    assert agreement is not None and tissue is not None
    assert bare[2] is None and bare[3] is None
    assert (bare[0] == classes).all()
    assert bare[1] is not None and probabilities is not None
    assert (bare[1] == probabilities).all()


def test_scored_boundaries_drop_islands_and_match_votes_on_one_hot_probabilities(
    tiny_model: Path, head_scan: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A crafted network output: a brain block (class 5) and an island (class 7) apart from
    # it, both certain. The island is dropped on the canvas; its probabilities must not
    # bring it back between canvas voxels on the scan's grid.
    classes = np.zeros((48, 56, 48), np.uint8)
    classes[10:30, 10:40, 10:30] = 5
    classes[38:44, 45:52, 38:44] = 7
    probabilities = np.eye(99, dtype=np.uint8)[classes] * 255

    def predict(canvas: np.ndarray, posteriors: bool, *, extras: bool = True) -> tuple:
        return classes.copy(), probabilities.copy() if posteriors else None, None, None

    image = nib.load(head_scan("sub-01_T1w.nii.gz"))
    volume = Volume(np.asanyarray(image.dataobj).astype(np.float32), image.affine, image.header)
    labels = {}
    for boundaries in ("probabilities", "labels"):
        segmenter = Segmenter(
            tiny_model,
            device="cpu",
            tta=False,
            skull_strip="off",
            boundaries=boundaries,
            canvases=1,  # the crafted output is for one canvas
        )
        monkeypatch.setattr(segmenter, "_predict", predict)
        labels[boundaries] = segmenter.segment(volume).labels
    protocol = get_protocol(FULL)
    brain, island = int(protocol.ids[5]), int(protocol.ids[7])
    for found in labels.values():
        assert brain in found and island not in found
    # One-hot probabilities interpolate to the one-hot votes.
    assert (labels["probabilities"] == labels["labels"]).mean() > 0.999
    with pytest.raises(ValueError, match="boundaries must be one of"):
        Segmenter(tiny_model, device="cpu", boundaries="nearest")


def test_two_canvases_are_combined_on_the_scan_grid(
    tiny_model: Path, head_scan: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    image = nib.load(head_scan("sub-01_T1w.nii.gz"))
    volume = Volume(np.asanyarray(image.dataobj).astype(np.float32), image.affine, image.header)
    segmenter = Segmenter(tiny_model, device="cpu", tta=False, skull_strip="off", canvases=2)
    seen, extras_asked = [], []
    predict = segmenter._predict

    def watched(canvas: np.ndarray, posteriors: bool, *, extras: bool = True) -> tuple:
        seen.append(canvas)
        extras_asked.append(extras)
        return predict(canvas, posteriors, extras=extras)

    monkeypatch.setattr(segmenter, "_predict", watched)
    result = segmenter.segment(volume)
    assert len(seen) == 2 and not np.array_equal(seen[0], seen[1])  # two offset canvases
    assert np.array_equal(seen[0], result.conformed.image)  # the outputs show the first
    assert extras_asked == [True, False]  # ... and its flip agreement and tissue map alone
    assert result.labels.shape == image.shape
    single = Segmenter(tiny_model, device="cpu", tta=False, skull_strip="off", canvases=1)
    alone = single.segment(volume).labels
    # The second canvas only decides between the labels they propose: most voxels agree.
    assert 0.5 < (alone == result.labels).mean() < 1.0
    with pytest.raises(ValueError, match="canvases must be one of"):
        Segmenter(tiny_model, device="cpu", canvases=3)
    with pytest.raises(ValueError, match="canvases > 1 combine probabilities"):
        Segmenter(tiny_model, device="cpu", boundaries="labels")


def test_the_ribbon_is_refined_on_the_scan_grid_unless_turned_off(
    tiny_model: Path, head_scan: Callable, monkeypatch: pytest.MonkeyPatch
) -> None:
    import wholebrain.segment.predict as predict_module

    image = nib.load(head_scan("sub-01_T1w.nii.gz"))
    volume = Volume(np.asanyarray(image.dataobj).astype(np.float32), image.affine, image.header)
    plain = Segmenter(tiny_model, device="cpu", tta=False, skull_strip="off", refine=False)
    unrefined = plain.segment(volume)
    assert "refine" not in unrefined.seconds
    calls = []
    refine = predict_module.refine_cortex

    def watched(labels: np.ndarray, scan: np.ndarray, *args: object) -> dict[str, int]:
        calls.append((labels.shape, scan is volume.data, args))
        return refine(labels, scan, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(predict_module, "refine_cortex", watched)
    refined = Segmenter(tiny_model, device="cpu", tta=False, skull_strip="off").segment(volume)
    assert calls == [
        (image.shape, True, (volume.spacing_mm, cortex_white_matter_pairs(get_protocol(FULL))))
    ]
    # The network's labels, refined afterwards, are the refined result: nothing else differs.
    expected = unrefined.labels.copy()
    refine(expected, volume.data, volume.spacing_mm, cortex_white_matter_pairs(get_protocol(FULL)))
    np.testing.assert_array_equal(refined.labels, expected)
    np.testing.assert_array_equal(refined.canvas_labels, unrefined.canvas_labels)


def test_posteriors_are_probabilities_on_the_canvas(tiny_model: Path) -> None:
    canvas = np.random.default_rng(2).random((48, 56, 48), dtype=np.float32)
    classes, probabilities, _, _ = Segmenter(tiny_model, device="cpu")._predict(canvas, True)
    assert probabilities is not None and probabilities.shape == (48, 56, 48, 99)
    total = probabilities.sum(-1, dtype=np.int64)
    assert np.abs(total - 255).max() <= 99 // 2 + 1  # each class rounded to 1/255
    # The label is the most probable class, up to the rounding to 1/255.
    chosen = np.take_along_axis(probabilities, classes[..., None].astype(np.intp), -1)[..., 0]
    assert (chosen.astype(int) >= probabilities.max(-1).astype(int) - 1).all()


def test_keep_largest_brain_component_drops_islands() -> None:
    labels = np.zeros((20, 20, 20), np.int16)
    labels[2:12, 2:12, 2:12] = 17
    labels[5:7, 5:7, 5:7] = 2035  # inside: kept
    labels[16:18, 16:18, 16:18] = 53  # an island in the "skull"
    removed = keep_largest_brain_component(labels)
    assert removed == 8
    assert labels[16:18, 16:18, 16:18].max() == 0
    assert (labels[5:7, 5:7, 5:7] == 2035).all()
    assert keep_largest_brain_component(np.zeros((4, 4, 4), np.int16)) == 0


# --- skull-stripping whole-head scans (step 0) ----------------------------------------------


@pytest.fixture
def sphere_mask(monkeypatch: pytest.MonkeyPatch) -> Callable[[float], None]:
    """Factory: make deepbet return a ball of ``radius_mm`` at the 1 mm canvas centre."""

    def use(radius_mm: float) -> None:
        def ball(image: np.ndarray, *, source: str | None = None) -> np.ndarray:
            centre = (np.array(image.shape) - 1) / 2
            grid = np.indices(image.shape) - centre[:, None, None, None]
            result: np.ndarray = (grid**2).sum(0) <= radius_mm**2
            return result

        monkeypatch.setattr("wholebrain.partial.brainmask.deepbet_mask", ball)

    return use


def _world_distance_from_canvas_centre(volume: Volume) -> np.ndarray:
    """Distance (mm) of every voxel of ``volume`` from the centre of its 1 mm canvas."""
    from wholebrain.conform import conform

    fine = conform(volume)
    centre_vox = (np.array(fine.image.shape) - 1) / 2
    centre_mm = fine.canvas_affine[:3, :3] @ centre_vox + fine.canvas_affine[:3, 3]
    ijk = np.indices(volume.shape).reshape(3, -1)
    world = volume.affine[:3, :3] @ ijk + volume.affine[:3, 3:4]
    distance: np.ndarray = np.linalg.norm(world - centre_mm[:, None], axis=0)
    return distance.reshape(volume.shape)


def test_the_head_brain_mask_is_deepbets_and_2_mm_around_it(
    phantom: Callable, sphere_mask: Callable[[float], None]
) -> None:
    sphere_mask(55.0)  # 0.70 L
    data, affine = phantom("head-noise")
    volume = Volume(data, affine)
    brain, fine = head_brain_mask(volume)
    assert brain is not None and brain.shape == data.shape and fine.config.spacing_mm == 1.0
    distance = _world_distance_from_canvas_centre(volume)
    # 2.5 mm voxels: allow one voxel of slack on either side of the 55 + 2 mm boundary.
    assert brain[distance < 55 - 2.5].all() and not brain[distance > 57 + 2.5].any()
    stripped = strip_skull(volume, brain)
    assert stripped.data.dtype == data.dtype
    assert np.array_equal(stripped.data[brain], data[brain]) and (stripped.data[~brain] == 0).all()
    assert np.array_equal(volume.data, data)  # the input is not changed


def test_a_mask_no_brain_could_have_is_not_used(
    phantom: Callable, sphere_mask: Callable[[float], None], caplog: pytest.LogCaptureFixture
) -> None:
    sphere_mask(20.0)  # 0.03 L: deepbet found nearly nothing
    data, affine = phantom("head-noise")
    brain, fine = head_brain_mask(Volume(data, affine))
    assert brain is None and fine.image.ndim == 3
    assert "no adult brain" in caplog.text and "--skull-strip off" in caplog.text


def test_whole_head_scans_are_stripped_before_the_network_and_others_not(
    tiny_model: Path, phantom: Callable, sphere_mask: Callable[[float], None]
) -> None:
    sphere_mask(55.0)
    segmenter = Segmenter(tiny_model, device="cpu")
    data, affine = phantom("head-noise")
    head = Volume(data, affine)
    result = segmenter.segment(head)
    assert result.skull_stripped and "skull-strip" in result.seconds
    assert result.picture is not None  # the unmasked head, for the QC picture
    outside = _world_distance_from_canvas_centre(head) > 57 + 2.5
    assert result.labels[outside].max() == 0
    assert result.labels[~outside].any()
    brain, brain_affine = phantom("brain")
    plain = segmenter.segment(Volume(brain, brain_affine))
    assert not plain.skull_stripped and "skull-strip" not in plain.seconds
    off = Segmenter(tiny_model, device="cpu", skull_strip="off").segment(head)
    assert not off.skull_stripped and "skull-strip" not in off.seconds
    with pytest.raises(ValueError, match="skull_strip must be"):
        Segmenter(tiny_model, skull_strip="bet")


@pytest.mark.shared_data
@pytest.mark.slow
def test_deepbet_strips_a_real_whole_head_scan(shared_data: Path) -> None:
    from wholebrain.io import load_image

    volume = load_image(shared_data / "unlabelled-t1w" / "ixi002_t1w.mgz")
    brain, _ = head_brain_mask(volume)
    assert brain is not None
    kept_l = np.count_nonzero(brain) * float(np.prod(volume.spacing_mm)) / 1e6
    assert 1.0 < kept_l < 1.8  # an adult brain and 2 mm around it; the head is ~3 L
    assert brain[tuple(n // 2 for n in volume.shape)]


def test_device_names_are_checked() -> None:
    assert resolve_device("cpu").type == "cpu"
    with pytest.raises(ValueError, match="device must be one of"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_precision_is_checked(tiny_model: Path) -> None:
    with pytest.raises(ValueError, match="precision must be"):
        Segmenter(tiny_model, precision="int8")


def test_exported_checkpoint_is_smaller_and_predicts_the_same(
    tiny_model: Path, tmp_path: Path
) -> None:
    small = export_for_inference(tiny_model, tmp_path / "small.pt")
    _, info = load_checkpoint(small)
    assert info.step == 7 and info.full_protocol == FULL
    canvas = np.random.default_rng(3).random((48, 56, 48), dtype=np.float32)
    a = Segmenter(tiny_model, device="cpu", precision="float32")._predict(canvas, False)[0]
    b = Segmenter(small, device="cpu", precision="float32")._predict(canvas, False)[0]
    assert (a == b).mean() > 0.99  # float16 weights
    from wholebrain.errors import OutputExistsError

    with pytest.raises(OutputExistsError):
        export_for_inference(tiny_model, small)


# --- the volume table ----------------------------------------------------------------------


def test_volume_rows_count_every_structure_and_consistent_totals(tmp_path: Path) -> None:
    protocol = get_protocol(FULL)
    labels = np.zeros((10, 10, 10), np.int16)
    labels[:2] = 2  # Left-Cerebral-White-Matter: 200 voxels
    labels[2:3] = 1035  # ctx-lh-insula: 100
    labels[3:4, :5] = 4  # Left-Lateral-Ventricle: 50
    labels[4:5, :1] = 17  # Left-Hippocampus: 10
    rows = volume_rows(labels, 2.0, protocol, extra_csf_mm3=30.0)
    by_name = {r.name: r.volume_mm3 for r in rows}
    assert len(rows) == protocol.num_classes - 1 + 5
    assert by_name["Left-Cerebral-White-Matter"] == 400.0
    assert by_name["ctx-lh-insula"] == 200.0
    assert by_name["Right-Putamen"] == 0.0
    assert by_name["Total-White-Matter"] == 400.0
    assert by_name["Total-Grey-Matter"] == 220.0  # cortex + hippocampus
    assert by_name["Total-CSF"] == 100.0
    assert by_name["Total-Brain"] == 720.0
    assert by_name["Intracranial-Volume"] == 750.0
    path = write_volume_table(tmp_path / "v.tsv", rows)
    lines = path.read_text().splitlines()
    assert lines[0].split("\t") == ["index", "name", "volume_mm3", "flip_agreement", "source"]
    assert lines[1].startswith("2\tLeft-Cerebral-White-Matter\t400.0\tn/a")


def test_volume_rows_refuse_ids_outside_the_protocol() -> None:
    labels = np.full((4, 4, 4), 9999, np.int16)
    with pytest.raises(Exception, match="9999"):
        volume_rows(labels, 1.0, get_protocol(FULL))


# --- the command ---------------------------------------------------------------------------


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    # The phantom head would go through deepbet first (5-10 s a scan): the command's
    # plumbing is tested without it, skull-stripping by the tests above.
    code = main(["segment", "--quiet", "--skull-strip", "off", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_segment_writes_the_four_files_on_the_input_grid_and_skips_when_done(
    tiny_model: Path,
    head_scan: Callable,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    scan = head_scan("scans/sub-01_T1w.nii.gz")
    out = tmp_path / "out"
    code, stdout, _ = _run(capsys, str(scan), "-o", str(out), "--model", str(tiny_model))
    assert code == 0, stdout  # flip test-time augmentation is the default
    dseg, table, volumes, qc = outputs_for(out, "sub-01")
    for path in (dseg, table, volumes, qc):
        assert path.is_file(), path
    written, original = nib.load(dseg), nib.load(scan)
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
    assert np.issubdtype(written.get_data_dtype(), np.integer)
    assert table.read_text().startswith("index\tname\tcolor\n0\tUnknown\t#000000\n")
    assert "flip_agreement" in volumes.read_text().splitlines()[0]
    assert qc.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "1 done" in stdout and "sub-01_desc-wholebrain_" in stdout
    assert not list(out.glob(".*tmp*"))  # nothing half-written left behind

    before = dseg.stat().st_mtime_ns
    code, stdout, _ = _run(capsys, str(scan), "-o", str(out), "--model", str(tiny_model))
    assert code == 0 and "1 skipped" in stdout
    assert dseg.stat().st_mtime_ns == before
    code, stdout, _ = _run(
        capsys, str(scan), "-o", str(out), "--model", str(tiny_model), "--force", "--no-tta"
    )
    assert code == 0 and "1 done" in stdout
    agreement = [line.split("\t")[3] for line in volumes.read_text().splitlines()[1:]]
    assert set(agreement) == {"n/a"}  # one pass: nothing to agree with


def test_one_bad_scan_does_not_stop_the_others(
    tiny_model: Path,
    head_scan: Callable,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = head_scan("scans/good_T1w.nii.gz")
    bad = tmp_path / "scans" / "bad_T1w.nii.gz"
    bad.write_text("not an image")
    out = tmp_path / "out"
    code, stdout, stderr = _run(
        capsys, str(bad), str(good), "-o", str(out), "--model", str(tiny_model)
    )
    assert code == 1
    assert "1 done" in stdout and "1 failed" in stdout
    assert "bad" in stderr or "bad" in stdout
    assert outputs_for(out, "good")[0].is_file()
    assert not outputs_for(out, "bad")[0].exists()
    summary = (out / "wholebrain_segment_summary.tsv").read_text()
    assert "failed" in summary and "done" in summary


def test_bids_inputs_mirror_the_subject_folders(
    tiny_model: Path,
    head_scan: Callable,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    head_scan("bids/sub-01/ses-1/anat/sub-01_ses-1_T1w.nii.gz")
    head_scan("bids/sub-02/anat/sub-02_T1w.nii.gz")
    (tmp_path / "bids" / "dataset_description.json").write_text('{"Name": "t"}')
    out = tmp_path / "derivatives"
    code, stdout, _ = _run(
        capsys, str(tmp_path / "bids"), "-o", str(out), "--model", str(tiny_model)
    )
    assert code == 0, stdout
    assert outputs_for(out / "sub-01" / "ses-1" / "anat", "sub-01_ses-1")[0].is_file()
    assert outputs_for(out / "sub-02" / "anat", "sub-02")[3].is_file()


def test_manifest_subject_ids_name_the_outputs(
    tiny_model: Path,
    head_scan: Callable,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Mindboggle-like layout: every scan has the same file name; the manifest's ids tell them
    # apart.
    first = head_scan("sub-a/t1w_brain.nii.gz")
    second = head_scan("sub-b/t1w_brain.nii.gz")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        f"subject,image,annotation,format,protocol,split\nsub-a,{first},,,,\nsub-b,{second},,,,\n"
    )
    out = tmp_path / "out"
    code, stdout, _ = _run(capsys, str(manifest), "-o", str(out), "--model", str(tiny_model))
    assert code == 0, stdout
    assert outputs_for(out, "sub-a")[0].is_file() and outputs_for(out, "sub-b")[0].is_file()


def test_cli_choices_come_from_the_options_module_without_torch(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["segment", "x.nii.gz", "-o", "out", "--canvases", "3"])
    assert exit_info.value.code == 2
    assert "invalid choice: 3 (choose from 1, 2, 4)" in capsys.readouterr().err
    code = "import sys, wholebrain.cli.segment; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("flag", "option"),
    [("--no-refine", "refine"), ("--no-calibration", "calibrate"), ("--no-pose", "pose")],
)
def test_turning_a_step_off_reaches_the_segmenter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, option: str
) -> None:
    import wholebrain.segment.run as job

    asked = []

    def refuse(options: job.SegmentOptions) -> None:
        asked.append(options)
        raise SystemExit(0)

    monkeypatch.setattr(job, "segmenter", refuse)
    scan = tmp_path / "x.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)), scan)
    for flags, on in (([], True), ([flag], False)):
        with pytest.raises(SystemExit):
            main(["segment", str(scan), "-o", str(tmp_path / "out"), *flags])
        assert getattr(asked.pop(), option) is on


def test_no_input_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, stderr = _run(capsys, "-o", str(tmp_path))
    assert code == 1
    assert "no INPUT" in stderr and "--example" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_missing_model_is_one_clear_line(
    head_scan: Callable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = head_scan("s_T1w.nii.gz")
    code, _, stderr = _run(capsys, str(scan), "-o", str(tmp_path), "--model", "nope.pt")
    assert code == 1 and "nope.pt" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_a_missing_shipped_model_is_one_clear_line(
    head_scan: Callable,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("wholebrain.models.SHIPPED_MODEL", "removed.pt")
    scan = head_scan("s_T1w.nii.gz")
    code, _, stderr = _run(capsys, str(scan), "-o", str(tmp_path / "out"))
    assert code == 1 and "removed.pt" in stderr and "--model" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_the_shipped_model_is_a_small_float16_dkt_aseg_checkpoint_with_its_licence() -> None:
    from wholebrain.models import shipped_model_path

    path = shipped_model_path()
    assert path.stat().st_size < 30e6
    payload = torch.load(path, map_location="cpu", weights_only=False)
    weights = payload["model"]["state_dict"]
    assert {t.dtype for t in weights.values() if t.is_floating_point()} == {torch.float16}
    _, info = load_checkpoint(path)
    assert info.full_protocol == FULL and info.heads[FULL] == 99
    licence = (path.parent / "LICENSE-model.txt").read_text()
    assert "CC BY-NC-SA" in licence and "Mindboggle" in licence


# Centres (mm, RAS) of two deep structures in MNI space, where the ICBM152 template lies,
# and how far a centroid may be from them: a model that swaps sides or axes fails here.
_MNI_CENTRES = {
    "Left-Putamen": (-25.0, 2.0, 0.0),
    "Right-Putamen": (25.0, 2.0, 0.0),
    "Left-Thalamus": (-11.0, -18.0, 7.0),
    "Right-Thalamus": (11.0, -18.0, 7.0),
}
_MNI_TOLERANCE_MM = 10.0


@pytest.mark.slow
def test_example_segments_the_icbm152_template_with_the_shipped_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("nilearn", reason="the example scan ships inside nilearn")
    code, stdout, stderr = _run(capsys, "--example", "-o", str(tmp_path))
    assert code == 0, stderr
    assert "dkt-aseg" in stdout and "outputs:" in stdout
    # The shipped model carries its class weights and its training scans' brain pitch.
    assert ", calibrated, brain pitch 20.0 deg) on " in stdout
    (dseg,) = tmp_path.glob("*_desc-wholebrain_dseg.nii.gz")
    stem = dseg.name.removesuffix("_desc-wholebrain_dseg.nii.gz")
    assert all(path.is_file() for path in outputs_for(tmp_path, stem))
    from wholebrain.examples import icbm152_path

    template = nib.load(icbm152_path("t1"))
    labels_image = nib.load(dseg)
    assert labels_image.shape == template.shape
    assert np.allclose(labels_image.affine, template.affine)
    labels = np.asarray(labels_image.dataobj)
    protocol = get_protocol(FULL)
    present = set(np.unique(labels).tolist()) - {0}
    assert present <= set(protocol.ids.tolist()) and len(present) >= 60
    brain_ml = np.count_nonzero(labels) / 1000  # 1 mm voxels
    assert 1000 < brain_ml < 2100  # the ICBM152 brain, a little larger than the average one
    ids = dict(zip(protocol.names, protocol.ids.tolist(), strict=True))

    def centre(mask: np.ndarray) -> np.ndarray:
        assert mask.any()
        world: np.ndarray = template.affine[:3, :3] @ np.argwhere(mask).mean(0)
        return world + template.affine[:3, 3]

    for name, expected in _MNI_CENTRES.items():
        found = centre(labels == ids[name])
        assert np.linalg.norm(found - np.array(expected)) < _MNI_TOLERANCE_MM, (name, found)
    left_cortex = centre((labels >= 1000) & (labels < 2000))
    right_cortex = centre(labels >= 2000)
    assert left_cortex[0] < -20 and right_cortex[0] > 20  # x: the hemispheres
    cerebellum = centre(np.isin(labels, [ids["Left-Cerebellum-Cortex"]]))
    thalamus = centre(labels == ids["Left-Thalamus"])
    assert cerebellum[1] < thalamus[1] - 20 and cerebellum[2] < thalamus[2] - 20  # y, z


def test_posteriors_file_opens_with_nibabel(
    tiny_model: Path, head_scan: Callable, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = head_scan("p_T1w.nii.gz")
    out = tmp_path / "out"
    code, _, _ = _run(capsys, str(scan), "-o", str(out), "--model", str(tiny_model), "--posteriors")
    assert code == 0
    probseg = nib.load(outputs_for(out, "p", posteriors=True)[4])
    assert probseg.shape == (48, 56, 48, 99)
    values = np.asarray(probseg.dataobj[20, 20, 20, :])
    assert 0.95 < values.sum() < 1.2
