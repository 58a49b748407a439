"""``wholebrain partial`` through the CLI entry point, with a fast stand-in tissue classifier."""

from __future__ import annotations

import csv
import importlib
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest

from wholebrain.cli import main
from wholebrain.data.layouts import output_stem
from wholebrain.data.manifest import Entry, read_manifest, write_manifest
from wholebrain.io import Volume

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINDBOGGLE = SHARED_DATA / "mindboggle-oasis-trt-20-dev"

RAS_2MM = np.diag([2.0, 2.0, 2.0, 1.0])
# Anisotropic and not RAS: voxel axes along A, S, L with 1.4 x 1.7 x 3.0 mm voxels.
ASL_ANISO = np.array(
    [[0.0, 0.0, -3.0, 20.0], [1.4, 0.0, 0.0, -17.0], [0.0, 1.7, 0.0, 5.0], [0.0, 0.0, 0.0, 1.0]]
)


@dataclass
class FakeTissueResult:
    labels: np.ndarray  # (X, Y, Z) uint8 0..3
    brain_mask: np.ndarray  # (X, Y, Z) bool
    method: str
    seconds: dict[str, float] = field(default_factory=dict)


def fake_classify_tissue(
    volume: Volume, *, method: str = "builtin", brain_mask: Any = None, seed: int = 0
) -> FakeTissueResult:
    """Intensity tertiles of the non-zero voxels: CSF < GM < WM; instant."""
    data = volume.data
    mask = data > 0
    low, high = np.quantile(data[mask], [1 / 3, 2 / 3])
    labels = np.where(mask, 1 + (data > low).astype(np.uint8) + (data > high), 0)
    return FakeTissueResult(labels.astype(np.uint8), mask, method, {"classify": 0.0})


@pytest.fixture
def fake_tissue(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Stand in for wholebrain.partial.tissue (whose import alone loads torch) with a module
    whose classify_tissue is instant; yields the list of methods it was called with."""
    calls: list[str] = []

    def classify(volume: Volume, **kwargs: Any) -> FakeTissueResult:
        calls.append(kwargs.get("method", "builtin"))
        return fake_classify_tissue(volume, **kwargs)

    module: Any = types.ModuleType("wholebrain.partial.tissue")
    module.classify_tissue = classify
    monkeypatch.setitem(sys.modules, "wholebrain.partial.tissue", module)
    yield calls


def _t1(shape: tuple[int, int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    data = rng.uniform(10, 100, shape).astype(np.float32)
    data[:2] = 0  # some background
    return data


def _write(path: Path, data: np.ndarray, affine: np.ndarray = RAS_2MM) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image_class: Callable[..., Any] = (
        nib.MGHImage if path.name.endswith(".mgz") else nib.Nifti1Image
    )
    nib.save(image_class(data, affine), path)
    return path


def _summary(outdir: Path, name: str = "wholebrain_partial_summary.tsv") -> dict[str, str]:
    with (outdir / name).open(newline="") as handle:
        return {row["subject"]: row["status"] for row in csv.DictReader(handle, delimiter="\t")}


def _manifest_rows(path: Path) -> list[tuple[str, str, str, str]]:
    return sorted(
        (e.subject, e.image.name, e.annotation.name if e.annotation else "", e.protocol)
        for e in read_manifest(path)
    )


def test_output_stem() -> None:
    assert output_stem("a/sub-01_T1w.nii.gz") == "sub-01"
    assert output_stem(Path("orig.mgz")) == "orig"
    assert output_stem("x.mgh") == "x"
    assert output_stem("sub-01_ses-2_T1w.nii") == "sub-01_ses-2"
    assert output_stem("T1w_brain.nii.gz") == "T1w_brain"  # only a trailing _T1w goes
    assert output_stem("_T1w.nii.gz") == "_T1w"  # never an empty stem


def test_tissue_outputs_lie_on_each_input_grid(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    inputs = [
        _write(tmp_path / "in" / "sub-01_T1w.nii.gz", _t1((16, 16, 16))),
        _write(tmp_path / "in" / "sub-02_T1w.nii.gz", _t1((24, 20, 12), 1), ASL_ANISO),
        _write(tmp_path / "fs" / "orig.mgz", _t1((17, 19, 15), 2), np.diag([2.2, 2.2, 2.2, 1])),
    ]
    out = tmp_path / "out"
    status = main(["partial", *map(str, inputs), "-o", str(out), "--quiet"])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert fake_tissue == ["builtin"] * 3
    for source, stem in zip(inputs, ["sub-01", "sub-02", "orig"], strict=True):
        written = nib.load(out / f"{stem}_desc-tissue_dseg.nii.gz")
        original = nib.load(source)
        assert written.shape == original.shape
        np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
        data = np.asarray(written.dataobj)
        assert data.dtype == np.uint8 and set(np.unique(data)) == {0, 1, 2, 3}
        table = (out / f"{stem}_desc-tissue_dseg.tsv").read_text().splitlines()
        assert table[0] == "index\tname\tcolor" and table[3].startswith("2\tGM\t#")
    assert _manifest_rows(out / "manifest.csv") == [
        ("orig", "orig.mgz", "orig_desc-tissue_dseg.nii.gz", "tissue"),
        ("sub-01", "sub-01_T1w.nii.gz", "sub-01_desc-tissue_dseg.nii.gz", "tissue"),
        ("sub-02", "sub-02_T1w.nii.gz", "sub-02_desc-tissue_dseg.nii.gz", "tissue"),
    ]
    entries = read_manifest(out / "manifest.csv")
    assert all(e.format == "tissue" and e.image.resolve() in inputs for e in entries)
    assert "sub-02: done in " in captured.out and " mL" in captured.out
    assert "tissue classified (builtin): 3 subjects: 3 done, 0 skipped, 0 failed" in captured.out
    assert f"outputs: {out}/<subject>_desc-{{tissue}}_dseg.nii.gz" in captured.out
    assert "manifest: " in captured.out and "3 annotation rows" in captured.out
    assert _summary(out) == {"orig": "done", "sub-01": "done", "sub-02": "done"}
    # The manifest is ready for training: every row loads and imports.
    assert main(["dataset", "check", str(out / "manifest.csv")]) == 0


def test_done_subjects_are_skipped_unless_forced(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    scan = _write(tmp_path / "sub-01_T1w.nii.gz", _t1((16, 16, 16)))
    out = tmp_path / "out"
    assert main(["partial", str(scan), "-o", str(out), "-q"]) == 0
    before = (out / "sub-01_desc-tissue_dseg.nii.gz").stat().st_mtime_ns
    assert main(["partial", str(scan), "-o", str(out), "-q", "--method", "atropos"]) == 0
    assert (out / "sub-01_desc-tissue_dseg.nii.gz").stat().st_mtime_ns == before
    assert "1 subject: 0 done, 1 skipped, 0 failed" in capsys.readouterr().out
    assert fake_tissue == ["builtin"]
    assert main(["partial", str(scan), "-o", str(out), "-q", "--force", "--method", "fsl"]) == 0
    assert fake_tissue == ["builtin", "fsl"]
    assert "1 done" in capsys.readouterr().out
    assert len(read_manifest(out / "manifest.csv")) == 1  # still one row per subject
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.csv",
        "sub-01_desc-tissue_dseg.nii.gz",
        "sub-01_desc-tissue_dseg.tsv",
        "wholebrain_partial_summary.tsv",
    ]  # no temporary files left


def test_a_bad_input_fails_alone(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    good = _write(tmp_path / "good.nii.gz", _t1((16, 16, 16)))
    bad = tmp_path / "bad.nii.gz"
    bad.write_bytes(b"")
    missing = tmp_path / "missing.nii.gz"
    out = tmp_path / "out"
    status = main(["-q", "partial", str(bad), str(good), str(missing), "-o", str(out)])
    captured = capsys.readouterr()
    assert status == 1
    assert _summary(out) == {"bad": "failed", "good": "done", "missing": "failed"}
    assert "bad: FAILED after" in captured.out and "empty file (0 bytes)" in captured.out
    assert "wholebrain partial: error: 2 of 3 subjects failed; see" in captured.err
    assert "Traceback" not in captured.err
    assert [e.subject for e in read_manifest(out / "manifest.csv")] == ["good"]
    assert not list(out.glob("bad_*")) and not list(out.glob(".*"))


def test_a_folder_input_leaves_out_label_maps_and_outputs(
    tmp_path: Path, fake_tissue: list[str]
) -> None:
    folder = tmp_path / "scans"
    _write(folder / "sub-01_T1w.nii.gz", _t1((16, 16, 16)))
    _write(folder / "t1w_brain.nii.gz", _t1((16, 16, 16), 1))
    for name in (
        "sub-01_desc-tissue_dseg.nii.gz",
        "sub-01_brain_mask.nii.gz",
        "labels_dkt31_aseg.nii.gz",
        "aparc.DKTatlas+aseg.mgz",
        "t1w_brain_pve_0.nii.gz",
    ):
        _write(folder / name, np.ones((16, 16, 16), np.uint8))
    (folder / "notes.txt").write_text("not an image")
    out = tmp_path / "out"
    assert main(["partial", str(folder), "-o", str(out), "-q"]) == 0
    assert _summary(out) == {"sub-01": "done", "t1w_brain": "done"}


def test_a_folder_without_scans_says_what_to_do(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "root" / "sub-01").mkdir(parents=True)
    assert main(["partial", str(tmp_path / "root"), "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "expected images to annotate" in err and "1 subfolders" in err
    assert "manifest CSV" in err


def test_an_empty_manifest_is_refused(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    write_manifest([], tmp_path / "m.csv")
    assert main(["partial", str(tmp_path / "m.csv"), "-o", str(tmp_path / "out")]) == 1
    assert "m.csv: expected scans to annotate, found none" in capsys.readouterr().err


def test_an_unsupported_file_is_refused(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "scan.dcm").write_bytes(b"DICM")
    assert main(["partial", str(tmp_path / "scan.dcm"), "-o", str(tmp_path / "out")]) == 1
    assert "expected an image (.nii" in capsys.readouterr().err


def test_manifest_input_uses_its_subject_ids_and_merges_rows(
    tmp_path: Path, fake_tissue: list[str]
) -> None:
    # Mindboggle-like: every scan has the same file name; the manifest tells them apart.
    a = _write(tmp_path / "data" / "sub-01" / "t1w_brain.nii.gz", _t1((16, 16, 16)))
    b = _write(tmp_path / "data" / "sub-02" / "t1w_brain.nii.gz", _t1((16, 16, 16), 1))
    labels = _write(tmp_path / "data" / "sub-01" / "labels.nii.gz", np.zeros((16, 16, 16)))
    cohort = tmp_path / "cohort" / "manifest.csv"
    write_manifest(
        [
            Entry("sub-01", a, labels, "mindboggle", "dkt-aseg", "val"),
            Entry("sub-02", b, split="train"),
        ],
        cohort,
    )
    # Outputs beside the manifest: the default manifest is the input one, merged in place.
    assert main(["partial", str(cohort), "-o", str(cohort.parent), "-q"]) == 0
    entries = read_manifest(cohort)
    assert sorted((e.subject, e.protocol, e.split) for e in entries) == [
        ("sub-01", "dkt-aseg", "val"),
        ("sub-01", "tissue", "val"),
        ("sub-02", "tissue", "train"),
    ]
    assert (cohort.parent / "sub-02_desc-tissue_dseg.nii.gz").is_file()
    # A name collision between files is refused before any work.
    out = tmp_path / "out"
    assert main(["partial", str(a), str(b), "-o", str(out), "-q"]) == 1
    assert not out.exists()


def test_a_subject_with_another_image_in_the_manifest_is_refused(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    scan = _write(tmp_path / "a" / "sub-01_T1w.nii.gz", _t1((16, 16, 16)))
    other = _write(tmp_path / "b" / "sub-01.nii.gz", _t1((16, 16, 16)))
    out = tmp_path / "out"
    assert main(["partial", str(scan), "-o", str(out), "-q"]) == 0
    assert main(["partial", str(other), "-o", str(out), "-q", "--force"]) == 1
    assert "expected subject 'sub-01' with the image" in capsys.readouterr().err


def test_shards_split_the_inputs_and_share_the_manifest(
    tmp_path: Path, fake_tissue: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "scans"
    for k in range(5):
        _write(folder / f"s{k}.nii.gz", _t1((16, 16, 16), k))
    out = tmp_path / "out"
    for index in (1, 2):
        assert main(["partial", str(folder), "-o", str(out), "-q", "--shard", f"{index}/2"]) == 0
    first = _summary(out, "wholebrain_partial_summary_shard-1of2.tsv")
    second = _summary(out, "wholebrain_partial_summary_shard-2of2.tsv")
    assert sorted(first) == ["s0", "s2", "s4"] and sorted(second) == ["s1", "s3"]
    assert sorted(e.subject for e in read_manifest(out / "manifest.csv")) == [
        f"s{k}" for k in range(5)
    ]
    capsys.readouterr()
    assert main(["partial", str(folder), "-o", str(out), "--shard", "3/2"]) == 1
    assert "--shard: expected i/n with 1 <= i <= n" in capsys.readouterr().err


def _fsl_folder(root: Path) -> Path:
    shape = (16, 16, 16)
    rng = np.random.default_rng(3)
    for name in ("s1_T1w", "s2", "s3"):
        _write(root / f"{name}.nii.gz", _t1(shape))
    _write(root / "s1_T1w_seg.nii.gz", rng.integers(0, 4, shape).astype(np.uint8))
    first = rng.choice([0, 10, 11, 17, 49, 53, 58], size=shape).astype(np.int16)
    _write(root / "s1_T1w_firstseg.nii.gz", first)
    _write(root / "s2_pveseg.nii.gz", rng.integers(0, 4, shape).astype(np.float32))
    return root


def test_import_fsl(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _fsl_folder(tmp_path / "fsl")
    out = tmp_path / "out"
    # Two processes: the items and the function travel to spawned workers.
    assert main(["partial", "--import", "fsl", str(root), "-o", str(out), "-q", "--jobs", "2"]) == 0
    captured = capsys.readouterr()
    assert "s3" in captured.err  # left out: no FSL output
    assert _manifest_rows(out / "manifest.csv") == [
        ("s1", "s1_T1w.nii.gz", "s1_desc-first_dseg.nii.gz", "first"),
        ("s1", "s1_T1w.nii.gz", "s1_desc-tissue_dseg.nii.gz", "tissue"),
        ("s2", "s2.nii.gz", "s2_desc-tissue_dseg.nii.gz", "tissue"),
    ]
    assert all(e.format == e.protocol for e in read_manifest(out / "manifest.csv"))
    assert main(["-q", "dataset", "check", str(out / "manifest.csv")]) == 0
    for source, output in (("s1_T1w_firstseg", "s1_desc-first"), ("s2_pveseg", "s2_desc-tissue")):
        original = nib.load(root / f"{source}.nii.gz")
        written = nib.load(out / f"{output}_dseg.nii.gz")
        np.testing.assert_array_equal(np.asarray(written.dataobj), original.get_fdata())
        np.testing.assert_allclose(written.affine, original.affine)
        assert (out / f"{output}_dseg.tsv").is_file()
    assert "s1: done in" in captured.out and "first from s1_T1w_firstseg.nii.gz" in captured.out


def test_import_fsl_with_wrong_ids_fails_that_subject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _fsl_folder(tmp_path / "fsl")
    _write(root / "s2_pveseg.nii.gz", np.full((16, 16, 16), 7, np.uint8))
    out = tmp_path / "out"
    assert main(["partial", "--import", "fsl", str(root), "-o", str(out), "-q"]) == 1
    assert _summary(out) == {"s1": "done", "s2": "failed"}
    assert "fsl-fast label ids" in capsys.readouterr().out


def test_import_freesurfer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    subjects_dir = tmp_path / "subjects"
    shape = (16, 16, 16)
    aseg = np.zeros(shape, np.int32)
    aseg[2:8], aseg[8:14] = 2, 41  # white matter, left and right
    aseg[2:8, :4], aseg[8:14, :4] = 3, 42  # cortex
    aseg[5:7, 6:9, 6:9], aseg[9:11, 6:9, 6:9] = 10, 49  # thalamus
    dkt = np.where(aseg == 3, 1028, np.where(aseg == 42, 2028, aseg))
    dkt[2:4, :2] = 1001  # bankssts: not in DKT, takes the nearest region
    for name, labels, file_name in (
        ("bert", aseg, "aseg.mgz"),
        ("ernie", dkt, "aparc.DKTatlas+aseg.mgz"),
    ):
        _write(subjects_dir / name / "mri" / "orig.mgz", _t1(shape))
        _write(subjects_dir / name / "mri" / file_name, labels)
    out = tmp_path / "out"
    assert main(["partial", "--import", "freesurfer", str(subjects_dir), "-o", str(out)]) == 0
    assert _manifest_rows(out / "manifest.csv") == [
        ("bert", "orig.mgz", "bert_desc-aseg_dseg.nii.gz", "aseg"),
        ("ernie", "orig.mgz", "ernie_desc-dktaseg_dseg.nii.gz", "dkt-aseg"),
    ]
    bert = np.asarray(nib.load(out / "bert_desc-aseg_dseg.nii.gz").dataobj)
    np.testing.assert_array_equal(bert, aseg)
    ernie = np.asarray(nib.load(out / "ernie_desc-dktaseg_dseg.nii.gz").dataobj)
    assert set(np.unique(ernie)) == {0, 2, 41, 10, 49, 1028, 2028}
    assert "dkt-aseg\n" not in (out / "ernie_desc-dktaseg_dseg.tsv").read_text()
    assert "freesurfer annotations imported: 2 subjects: 2 done" in capsys.readouterr().out


def test_import_freesurfer_on_another_grid_fails_that_subject(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mri = tmp_path / "subjects" / "bert" / "mri"
    _write(mri / "orig.mgz", _t1((16, 16, 16)))
    _write(mri / "aseg.mgz", np.zeros((16, 16, 17), np.int32))
    out = tmp_path / "out"
    assert main(["partial", "--import", "freesurfer", str(mri.parents[1]), "-o", str(out)]) == 1
    assert _summary(out) == {"bert": "failed"}
    assert "expected the voxel grid of" in capsys.readouterr().out
    assert not (out / "manifest.csv").exists()


def test_import_without_annotations_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(tmp_path / "fsl" / "s1.nii.gz", _t1((16, 16, 16)))
    assert main(["partial", "--import", "fsl", str(tmp_path / "fsl"), "-o", str(tmp_path)]) == 1
    assert "expected fsl outputs to import (FAST *_seg" in capsys.readouterr().err


def _atlas(folder: Path) -> tuple[Path, Path]:
    shape = (16, 16, 16)
    image = _t1(shape)
    labels = np.zeros(shape, np.int32)
    labels[3:8, 4:12, 4:12] = 10  # Left-Thalamus
    labels[8:13, 4:12, 4:12] = 49
    return _write(folder / "atlas.nii.gz", image), _write(folder / "atlas_labels.nii.gz", labels)


def test_register_writes_first_maps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wholebrain.partial import registration

    seen: list[tuple[str, set[int]]] = []

    def fake_register(atlas: Volume, labels: np.ndarray, target: Volume, **kwargs: Any) -> Any:
        seen.append((kwargs["atlas_protocol"], {int(v) for v in np.unique(labels)}))
        out = np.zeros(target.shape, np.int32)
        out[2:5] = 10
        return out

    monkeypatch.setattr(registration, "register_atlas", fake_register)
    monkeypatch.setattr(registration, "load_ants", lambda: None)  # importing antspyx takes seconds
    atlas_image, atlas_labels = _atlas(tmp_path / "atlas")
    scan = _write(tmp_path / "sub-07_T1w.nii.gz", _t1((24, 20, 12), 1), ASL_ANISO)
    out = tmp_path / "out"
    argv = ["partial", str(scan), "-o", str(out), "-q", "--method", "register"]
    atlas_args = ["--atlas-image", str(atlas_image), "--atlas-labels", str(atlas_labels)]
    assert main([*argv, *atlas_args, "--atlas-format", "mindboggle"]) == 0
    # Mindboggle numbering: the unlabelled brain became white matter on import.
    assert seen == [("dkt-aseg", {0, 2, 10, 41, 49})]
    written = nib.load(out / "sub-07_desc-first_dseg.nii.gz")
    assert written.shape == (24, 20, 12)
    np.testing.assert_allclose(written.affine, ASL_ANISO, atol=1e-5)
    assert _manifest_rows(out / "manifest.csv") == [
        ("sub-07", "sub-07_T1w.nii.gz", "sub-07_desc-first_dseg.nii.gz", "first")
    ]
    assert "1 of 15 FIRST structures, registration" in capsys.readouterr().out


def test_register_needs_an_atlas_and_antspyx(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from wholebrain.partial import registration

    real_load_ants = registration.load_ants
    monkeypatch.setattr(registration, "load_ants", lambda: None)  # importing antspyx takes seconds
    scan = _write(tmp_path / "sub-07_T1w.nii.gz", _t1((16, 16, 16)))
    atlas_image, atlas_labels = _atlas(tmp_path / "atlas")
    argv = ["partial", str(scan), "-o", str(tmp_path / "out"), "--method", "register"]
    assert main([*argv, "--atlas-image", str(atlas_image)]) == 1
    assert "expected --atlas-image and --atlas-labels, found only --atlas-image" in (
        capsys.readouterr().err
    )
    atlas_args = ["--atlas-image", str(atlas_image), "--atlas-labels", str(atlas_labels)]
    tissue = _write(tmp_path / "atlas" / "tissue.nii.gz", np.ones((16, 16, 16), np.uint8))
    coarse = ["--atlas-image", str(atlas_image), "--atlas-labels", str(tissue)]
    assert main([*argv, *coarse, "--atlas-format", "tissue"]) == 1
    assert "a target protocol coarser than 'tissue'" in capsys.readouterr().err
    assert main([*argv, *atlas_args, "--atlas-format", "tissue"]) == 1
    assert "expected tissue label ids, found ids outside it: 10 " in capsys.readouterr().err
    monkeypatch.setattr(registration, "load_ants", real_load_ants)
    monkeypatch.setitem(sys.modules, "ants", None)  # `import ants` fails
    assert main([*argv, *atlas_args]) == 1
    assert "pip install 'wholebrain[ants]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_method_and_import_exclude_each_other(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main(["partial", str(tmp_path), "-o", str(tmp_path), "--import", "fsl", "--method", "fsl"])
    assert "not allowed with argument" in capsys.readouterr().err
    assert main(["partial", str(tmp_path), "-o", str(tmp_path), "--atlas-image", "a.nii"]) == 1
    assert "expected them with --method register only, found --method builtin" in (
        capsys.readouterr().err
    )


@pytest.mark.shared_data
@pytest.mark.slow
def test_real_builtin_classifier_on_mindboggle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = MINDBOGGLE / "sub-01" / "t1w_brain.nii.gz"
    if not scan.is_file():
        pytest.skip(f"needs {scan} (../shared/data absent)")
    try:
        importlib.import_module("wholebrain.partial.tissue")
    except ImportError as error:
        pytest.skip(f"the tissue classifier is not importable yet ({error})")
    manifest = tmp_path / "m.csv"
    write_manifest([Entry("sub-01", scan)], manifest)
    out = tmp_path / "out"
    assert main(["partial", str(manifest), "-o", str(out), "-q"]) == 0
    print(capsys.readouterr().out)
    written = nib.load(out / "sub-01_desc-tissue_dseg.nii.gz")
    original = nib.load(scan)
    assert written.shape == original.shape
    np.testing.assert_allclose(written.affine, original.affine, atol=1e-5)
    labels = np.asarray(written.dataobj)
    assert set(np.unique(labels)) == {0, 1, 2, 3}
    brain = np.asarray(original.dataobj) > 0
    # Plumbing, not the classifier's accuracy (its own tests judge that): grey and white matter
    # fill the brain, CSF is present (little of it: Mindboggle's tight masks cut sulcal CSF).
    csf, gm, wm = (float((labels[brain] == k).mean()) for k in (1, 2, 3))
    assert gm > 0.2 and wm > 0.2 and csf > 0, (csf, gm, wm)
    assert not labels[~brain].any() or (labels[~brain] > 0).mean() < 0.01
