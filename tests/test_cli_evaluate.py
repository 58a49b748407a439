"""``wholebrain evaluate``: the table on stdout, the TSV, notes, and one-line errors (status 1)."""

from __future__ import annotations

import csv
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from wholebrain.cli import main

WriteImage = Callable[..., Path]


def labels_map(offset: int = 0) -> np.ndarray:
    """Hippocampus (17), a cortical region (1002) and white matter (2) on a 16³ grid."""
    out = np.zeros((16, 16, 16), np.int16)
    out[2 + offset : 8 + offset, 2:8, 2:8] = 17
    out[9:13, 2:14, 2:14] = 1002
    out[2:8, 9:14, 2:14] = 2
    return out


@pytest.fixture
def pair(write_image: WriteImage) -> tuple[Path, Path]:
    return (
        write_image(labels_map(1), name="pred.nii.gz"),
        write_image(labels_map(), name="ref.nii.gz"),
    )


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    (line,) = captured.err.splitlines()
    assert line.startswith("wholebrain evaluate: error: ")
    return line


def test_scores_a_pair_prints_group_means_and_writes_the_table(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.tsv"
    assert main(["evaluate", "--pred", str(pair[0]), "--ref", str(pair[1]), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "1 pair scored in protocol dkt-aseg (98 structures)" in text
    assert f"pair 1: {pair[0]} vs reference {pair[1]}" in text
    rows = {line.split()[1]: line.split() for line in text.splitlines() if line.startswith("1 ")}
    assert rows["cortical"][2:4] == ["1", "1.000"]
    assert rows["subcortical"][2:4] == ["1", "0.833"]  # offset by 1 of 6 voxels
    assert rows["all"][2] == "3"
    assert "mean" not in text.split("pair 1:")[1]  # one pair: no summary lines
    assert text.rstrip().endswith(f"wrote {out}")
    with open(out, newline="") as f:
        table = list(csv.DictReader(f, delimiter="\t"))
    assert {r["pair"] for r in table} == {"1", "mean", "sd"}
    hippocampus = next(r for r in table if r["pair"] == "1" and r["id"] == "17")
    assert hippocampus["dice"] == "0.833333" and hippocampus["hd95_mm"] == "2"


def test_many_pairs_get_summary_lines_and_a_progress_bar(
    pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pred, ref = (str(p) for p in pair)
    assert main(["evaluate", "--pred", pred, ref, "--ref", ref, ref]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert any(line.split()[:4] == ["mean", "subcortical", "2", "0.917"] for line in lines)
    assert any(line.split()[:2] == ["sd", "all"] for line in lines)
    assert "evaluate" in captured.err  # tqdm on stderr
    assert main(["--quiet", "evaluate", "--pred", pred, ref, "--ref", ref, ref]) == 0
    assert capsys.readouterr().err == ""


def test_protocol_and_formats(
    write_image: WriteImage, pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pred, ref = (str(p) for p in pair)
    assert main(["evaluate", "--pred", pred, "--ref", ref, "--protocol", "tissue"]) == 0
    assert "protocol tissue (3 structures)" in capsys.readouterr().out
    aseg = labels_map()
    aseg[aseg == 1002] = 3
    aseg_path = write_image(aseg, name="aseg.mgz")
    args = ["evaluate", "--pred", pred, "--ref", str(aseg_path), "--ref-format", "freesurfer-aseg"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "protocol aseg (38 structures)" in out
    cortical = next(line for line in out.splitlines() if line.startswith("1     cortical"))
    assert cortical.split()[2:4] == ["1", "1.000"]  # 1002 became Left-Cerebral-Cortex


def test_prediction_on_another_grid_is_noted(
    write_image: WriteImage, pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    coarse = labels_map()[::2, ::2, ::2].copy()  # 4 mm
    affine = np.diag([4.0, 4.0, 4.0, 1.0])
    affine[:3, 3] = 1.0  # 4 mm voxel centres between the 2 mm ones
    pred = write_image(coarse, affine, name="pred_4mm.nii.gz")
    assert main(["evaluate", "--pred", str(pred), "--ref", str(pair[1])]) == 0
    out = capsys.readouterr().out
    assert "note: the prediction (8x8x8 voxels of 4 x 4 x 4 mm, RAS) was resampled onto" in out
    assert "by nearest neighbour through the affines" in out


def test_mindboggle_reference_without_brain_is_noted(
    write_image: WriteImage, capsys: pytest.CaptureFixture[str]
) -> None:
    mb = labels_map()
    mb[mb == 2] = 0  # Mindboggle leaves white matter unlabelled
    pred = write_image(labels_map(), name="pred.nii.gz")
    ref = write_image(mb.astype(np.float32), name="labels_dkt31_aseg.nii.gz")
    args = ["evaluate", "--pred", str(pred), "--ref", str(ref), "--ref-format", "mindboggle"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "no brain image was given (--ref-brain)" in out
    assert main([*args, "--ref-brain", str(pred)]) == 0  # any image: non-zero is brain


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--protocol", "nope"], "protocol: expected one of dkt-aseg"),
        (["--ref-format", "nope"], "--ref-format: expected one of mindboggle"),
        (["--protocol", "dkt-aseg", "--ref-format", "fsl-fast"], "finer than 'tissue'"),
        (["--ref-brain", "x.nii.gz"], "expected a brain image only with format mindboggle"),
    ],
)
def test_bad_options_give_one_line(
    pair: tuple[Path, Path], extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["evaluate", "--pred", str(pair[0]), "--ref", str(pair[1]), *extra]) == 1
    assert message in one_error_line(capsys)


def test_count_mismatch_gives_one_line(
    pair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    pred, ref = (str(p) for p in pair)
    assert main(["evaluate", "--pred", pred, pred, "--ref", ref]) == 1
    line = one_error_line(capsys)
    assert "--ref: expected 2 references, one per prediction (pairs are matched by position)" in (
        line
    )
    assert "found 1" in line


def _bad_file(kind: str, tmp_path: Path, write_image: WriteImage) -> Path:
    if kind == "missing":
        return tmp_path / "missing.nii.gz"
    if kind == "text":
        path = tmp_path / "notes.nii.gz"
        path.write_text("not an image\n")
        return path
    if kind == "4D":
        return write_image(np.zeros((16, 16, 16, 2), np.int16), name="4d.nii.gz")
    if kind == "fractional":
        return write_image(labels_map().astype(np.float32) + 0.5, name="prob.nii.gz")
    if kind == "unknown-ids":
        return write_image(labels_map() + 300, name="ids.nii.gz")
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing", "text", "4D", "fractional", "unknown-ids"])
@pytest.mark.parametrize("side", ["pred", "ref"])
def test_bad_files_give_one_line_naming_the_file(
    kind: str,
    side: str,
    pair: tuple[Path, Path],
    tmp_path: Path,
    write_image: WriteImage,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bad = _bad_file(kind, tmp_path, write_image)
    pred, ref = (bad, pair[1]) if side == "pred" else (pair[0], bad)
    out = tmp_path / "scores.tsv"
    assert main(["evaluate", "--pred", str(pred), "--ref", str(ref), "-o", str(out)]) == 1
    assert one_error_line(capsys).startswith(f"wholebrain evaluate: error: {bad}: expected ")
    assert not out.exists()


def test_existing_output_needs_force(
    pair: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scores.tsv"
    out.write_text("keep me\n")
    args = ["evaluate", "--pred", str(pair[0]), "--ref", str(pair[1]), "-o", str(out)]
    assert main(args) == 1
    assert "pass --force to overwrite it" in one_error_line(capsys)
    assert out.read_text() == "keep me\n"
    assert main([*args, "--force"]) == 0
    assert out.read_text().startswith("pair\tpred\tref\t")


def test_help_and_stdlib_only_import() -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "--help"])
    assert exit_info.value.code == 0
    code = "import sys, wholebrain.cli.evaluate; print('numpy' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"
