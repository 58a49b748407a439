"""``wholebrain info``: reports on stdout, one error line per bad file on stderr, exit status."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from wholebrain.cli import main

WriteImage = Callable[..., Path]
SHAPE = (16, 16, 16)


def t1(shape: tuple[int, ...] = SHAPE) -> np.ndarray:
    return np.random.default_rng(0).uniform(10, 100, shape).astype(np.float32)


def _bad_file(kind: str, tmp_path: Path, write_image: WriteImage) -> Path:
    if kind == "missing":
        return tmp_path / "missing.nii.gz"
    if kind == "empty":
        path = tmp_path / "empty.nii.gz"
        path.touch()
        return path
    if kind == "text":
        path = tmp_path / "text.nii"
        path.write_text("not an image\n")
        return path
    if kind == "truncated":
        path = write_image(t1((40, 40, 40)), name="truncated.nii.gz")
        path.write_bytes(path.read_bytes()[:3000])
        return path
    if kind == "nibabel-error":  # nibabel's own message spans two lines
        path = write_image(t1((40, 40, 40)), name="short.nii")
        path.write_bytes(path.read_bytes()[:5000])
        return path
    if kind == "4D":
        return write_image(t1((*SHAPE, 3)), name="4d.nii.gz")
    if kind == "nan":
        data = t1()
        data[0, 0, 0] = np.nan
        return write_image(data, name="nan.nii.gz")
    if kind == "constant":
        return write_image(np.zeros(SHAPE, np.float32), name="constant.nii.gz")
    if kind == "tiny-voxels":
        return write_image(t1(), np.diag([0.1, 2, 2, 1]), name="tiny.nii.gz")
    if kind == "slab":
        return write_image(t1((16, 16, 10)), name="slab.nii.gz")
    raise ValueError(kind)


BAD = ["missing", "empty", "text", "truncated", "nibabel-error", "4D", "nan", "constant"]
BAD += ["tiny-voxels", "slab"]


@pytest.mark.parametrize("kind", BAD)
def test_bad_file_gives_one_line_and_status_1(
    kind: str, tmp_path: Path, write_image: WriteImage, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bad_file(kind, tmp_path, write_image)
    assert main(["info", str(path)]) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith(f"wholebrain info: error: {path}: expected ")
    assert captured.out.splitlines()[0] == str(path)
    assert "verdict" in captured.out


def test_debug_shows_the_traceback(
    tmp_path: Path, write_image: WriteImage, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _bad_file("4D", tmp_path, write_image)
    assert main(["--debug", "info", str(path)]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert "InputError" in err
    assert err.splitlines()[-1].startswith(f"wholebrain info: error: {path}: ")


def test_good_file(write_image: WriteImage, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_image(t1())
    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines()[0] == str(path)
    assert "16 x 16 x 16" in captured.out
    assert captured.out.rstrip().endswith("verdict         ok")


def test_one_bad_file_among_good_ones(
    tmp_path: Path, write_image: WriteImage, capsys: pytest.CaptureFixture[str]
) -> None:
    good = write_image(t1())
    bad = _bad_file("nan", tmp_path, write_image)
    assert main(["info", str(good), str(bad), str(good)]) == 1
    captured = capsys.readouterr()
    assert captured.out.count("verdict") == 3
    (line,) = captured.err.splitlines()
    assert str(bad) in line


def test_labels_option(write_image: WriteImage, capsys: pytest.CaptureFixture[str]) -> None:
    integral = write_image(np.arange(16**3, dtype=np.float32).reshape(SHAPE) % 7, name="a.nii.gz")
    fractional = write_image(t1(), name="b.nii.gz")
    assert main(["info", "--labels", str(integral)]) == 0
    assert "7 distinct labels" in capsys.readouterr().out
    assert main(["info", "--labels", str(fractional)]) == 1
    assert "expected integer label values" in capsys.readouterr().err


def test_sform_qform_disagreement_is_reported_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    img = nib.Nifti1Image(t1(), None)
    img.header.set_sform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    img.header.set_qform(np.diag([-2.0, 2.0, 2.0, 1.0]), code=1)
    path = tmp_path / "forms.nii.gz"
    nib.save(img, path)
    assert main(["info", str(path)]) == 0
    captured = capsys.readouterr()
    assert "1 (scanner) / 1 (scanner) (they DISAGREE: nibabel uses the sform)" in captured.out
    assert "orientation RAS vs LAS" in captured.out
    assert captured.err == ""


def test_console_script(write_image: WriteImage, tmp_path: Path) -> None:
    good = write_image(t1())
    bad = _bad_file("truncated", tmp_path, write_image)
    command = [sys.executable, "-m", "wholebrain", "info"]
    result = subprocess.run([*command, str(good)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "verdict" in result.stdout
    result = subprocess.run([*command, str(bad)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        f"wholebrain info: error: {bad}: expected a readable NIfTI or MGH image, found a "
        "truncated file (the compressed data end early); the file is damaged or not an image; "
        "export or download it again"
    ]


def test_info_module_imports_only_the_standard_library() -> None:
    code = (
        "import sys, wholebrain.cli.info; print('nibabel' in sys.modules, 'numpy' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.split() == ["False", "False"]


@pytest.mark.shared_data
def test_real_mgz(shared_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = shared_data / "unlabelled-t1w" / "ixi002_t1w.mgz"
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "none (MGH format" in out
    assert "skull-stripped  no:" in out
