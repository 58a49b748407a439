"""``wholebrain dataset import|check|cache`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from wholebrain.cli import main
from wholebrain.data.cache import open_cached
from wholebrain.data.manifest import read_manifest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINDBOGGLE = SHARED_DATA / "mindboggle-oasis-trt-20-dev"


def _fsl_folder(root: Path) -> Path:
    """Three scans with FAST hard segmentations; scan c has a corrupt segmentation."""
    rng = np.random.default_rng(1)
    shape = (36, 36, 36)
    for name in ("a", "b", "c"):
        image = rng.uniform(10, 100, shape).astype(np.float32)
        seg = rng.integers(0, 4, shape).astype(np.uint8)
        root.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(image, np.eye(4)), root / f"{name}.nii.gz")
        nib.save(nib.Nifti1Image(seg, np.eye(4)), root / f"{name}_seg.nii.gz")
    (root / "c_seg.nii.gz").write_bytes(b"\x1f\x8b truncated")
    return root


def test_import_reports_every_bad_subject_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _fsl_folder(tmp_path / "fsl")
    (folder / "b.nii.gz").write_text("")  # empty scan
    status = main(
        ["--quiet", "dataset", "import", "fsl", str(folder), "-o", str(tmp_path / "m.csv")]
    )
    err = capsys.readouterr().err
    assert status == 1
    assert "2 problem(s) in 3 subject(s)" in err
    assert "b: " in err and "c: " in err and "Traceback" not in err
    assert not (tmp_path / "m.csv").exists()  # nothing written when it fails


def test_import_skip_bad_writes_the_good_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = _fsl_folder(tmp_path / "fsl")
    out = tmp_path / "m.csv"
    status = main(
        ["--quiet", "dataset", "import", "fsl", str(folder), "-o", str(out), "--skip-bad"]
    )
    assert status == 0
    assert [e.subject for e in read_manifest(out)] == ["a", "b"]
    captured = capsys.readouterr()
    assert "2 subjects (2 tissue)" in captured.out
    assert "left out 1 subject(s): c" in captured.err
    # check passes on what was written; a second import refuses to overwrite
    assert main(["--quiet", "dataset", "check", str(out)]) == 0
    assert main(["--quiet", "dataset", "import", "fsl", str(folder), "-o", str(out)]) == 1
    assert "--force" in capsys.readouterr().err


def test_cache_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = _fsl_folder(tmp_path / "fsl")
    (folder / "c_seg.nii.gz").unlink()
    out = tmp_path / "m.csv"
    assert main(["--quiet", "dataset", "import", "fsl", str(folder), "-o", str(out)]) == 0
    assert main(["--quiet", "dataset", "cache", str(out), "--cache", str(tmp_path / "cache")]) == 0
    assert "3 written, 0 up to date" in capsys.readouterr().out
    assert main(["--quiet", "dataset", "cache", str(out), "--cache", str(tmp_path / "cache")]) == 0
    assert "0 written, 3 up to date" in capsys.readouterr().out
    assert open_cached(tmp_path / "cache", "a").protocols == ("tissue",)
    assert open_cached(tmp_path / "cache", "c").protocols == ()


@pytest.mark.shared_data
@pytest.mark.skipif(
    not MINDBOGGLE.is_dir(), reason="needs ../shared/data/mindboggle-oasis-trt-20-dev"
)
def test_import_real_mindboggle_subjects(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "mb"
    root.mkdir()
    for subject in ("sub-01", "sub-02"):  # two subjects keep CI fast; the layout is the same
        (root / subject).symlink_to(MINDBOGGLE / subject)
    out = tmp_path / "manifest.csv"
    status = main(
        ["--quiet", "dataset", "import", "mindboggle", str(root), "-o", str(out),
         "--cache", str(tmp_path / "cache"), "--val", "1"]
    )  # fmt: skip
    assert status == 0, capsys.readouterr().err
    entries = read_manifest(out)
    assert sorted(e.split for e in entries) == ["train", "val"]
    cached = open_cached(tmp_path / "cache", "sub-01")
    labels = np.asarray(cached.labels("dkt-aseg"))
    image = np.asarray(cached.image(), dtype=np.float32)
    assert labels.max() > 90  # ~100 classes present
    # every brain voxel of the scan is labelled on the canvas (white matter derived)
    assert np.mean(labels[image > 0.05] > 0) > 0.97
