"""benchmarks/model_card.py reads what the other tools write: ``wholebrain evaluate`` tables and
benchmarks/grid_ceiling.py rows; its verdict follows the target and the baseline."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from wholebrain.errors import InputError
from wholebrain.evaluate import Evaluation, evaluate_pair
from wholebrain.io import Volume
from wholebrain.train.checkpoint import FORMAT, FORMAT_VERSION

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import grid_ceiling  # noqa: E402  (scripts beside machine.py, not a package)
import model_card  # noqa: E402


def test_ceiling_rows_written_by_grid_ceiling_are_read_back(tmp_path: Path) -> None:
    def means(
        cortical: float, subcortical: float, everything: float
    ) -> dict[str, dict[str, float]]:
        return {
            "cortical": {"dice": cortical, "hd95": 1.0},
            "subcortical": {"dice": subcortical, "hd95": 1.0},
            "all": {"dice": everything, "hd95": 1.1},
        }

    lines = [
        "# wholebrain canvas-grid ceiling",
        grid_ceiling._row(1.5, (128, 160, 160), "sub-01", means(0.9, 0.95, 0.91), 3.0),
        grid_ceiling._row(1.5, (128, 160, 160), "mean", means(0.88, 0.906, 0.878), None),
        grid_ceiling._row(2.0, (96, 112, 112), "sub-01", means(0.5, 0.5, 0.5), 2.0),
        grid_ceiling._row(2.0, (96, 112, 112), "mean", means(0.824, 0.863, 0.821), None),
    ]
    path = tmp_path / "grid_ceiling.txt"
    path.write_text("\n".join(lines) + "\n")

    assert model_card.read_ceiling(path, 2.0) == {
        "cortical": 0.824,
        "subcortical": 0.863,
        "all": 0.821,
    }
    assert model_card.read_ceiling(path, 1.5) == {
        "cortical": 0.88,
        "subcortical": 0.906,
        "all": 0.878,
    }
    assert model_card.read_ceiling(path, 1.0) is None
    assert model_card.read_ceiling(tmp_path / "absent.txt", 2.0) is None


def test_scores_are_the_mean_rows_of_an_evaluate_table(tmp_path: Path) -> None:
    # Left thalamus (10), right thalamus (49) and one DKT region (1002); the prediction shifts
    # the thalamus by one voxel and misses half of the cortical block.
    ref = np.zeros((20, 20, 20), np.int32)
    ref[2:8, 2:8, 2:8] = 10
    ref[12:18, 2:8, 2:8] = 49
    ref[2:8, 12:18, 2:8] = 1002
    pred = ref.copy()
    pred[2:8, 2:8, 2:8] = 0
    pred[3:9, 2:8, 2:8] = 10
    pred[2:5, 12:18, 2:8] = 0
    evaluation = Evaluation(
        "dkt-aseg", (evaluate_pair(Volume(pred, np.eye(4)), Volume(ref, np.eye(4))),)
    )
    table = evaluation.write_tsv(tmp_path / "val.tsv")

    scores = model_card.read_scores(table)

    assert scores.structures[10][1] == pytest.approx(5 / 6, abs=1e-5)
    assert scores.structures[49][1] == pytest.approx(1.0, abs=1e-5)
    assert scores.structures[1002][1] == pytest.approx(2 * 108 / (108 + 216), abs=1e-5)
    assert scores.groups["subcortical"] == pytest.approx((5 / 6 + 1.0) / 2, abs=1e-5)
    assert scores.groups["cortical"] == pytest.approx(2 * 108 / (108 + 216), abs=1e-5)
    assert scores.groups["all"] == pytest.approx(
        (5 / 6 + 1.0 + 2 * 108 / (108 + 216)) / 3, abs=1e-5
    )


def test_verdict_needs_the_target_and_the_baseline() -> None:
    baseline = model_card.Scores([], {"all": 0.85, "cortical": 0.8, "subcortical": 0.9}, {}, {})
    assert "does not meet" in model_card.verdict(0.578, None, 0.80)
    assert "does not meet" in model_card.verdict(0.82, baseline, 0.80)
    assert "meets the project's target" in model_card.verdict(0.86, baseline, 0.80)
    assert "meets the project's target" in model_card.verdict(0.81, None, 0.80)
    # Half the target: the sentence says which half.
    half = model_card.verdict(0.86 - 0.1, baseline, 0.80)
    assert "0.760 is below 0.8 and not better than the baseline (0.850)" in half
    better = model_card.Scores([], {"all": 0.67, "cortical": 0.6, "subcortical": 0.8}, {}, {})
    assert "0.675 is below 0.8; it is better than the baseline (0.670)" in model_card.verdict(
        0.675, better, 0.80
    )


def test_a_run_started_from_another_runs_weights_says_so(tmp_path: Path) -> None:
    earlier = tmp_path / "stage-1"
    earlier.mkdir()
    (earlier / "metrics.csv").write_text(
        "step,phase,loss,lr,val_dice,seconds\n"
        "150,train,2.0,0.001,0.41,500\n"
        "300,train,1.5,0.001,0.52,1000\n"
        "450,train,1.4,0.0005,0.50,7200\n"
    )
    line = model_card.started_from(earlier / "best.pt")
    assert "450 steps and 2.0 h" in line
    assert "best validation Dice 0.520, step 300" in line
    # Without the earlier run's folder: only where the weights came from.
    assert model_card.started_from(tmp_path / "gone" / "best.pt").endswith("not at random.")
    # Only the checkpoint left (its run folder lost): the step it holds.
    alone = tmp_path / "alone" / "best-step450.pt"
    alone.parent.mkdir()
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "step": 450}
    torch.save({**payload, "created": "2026-11-22T21:26:19+00:00"}, alone)
    line = model_card.started_from(alone)
    assert line.endswith("not at random: step 450 of an earlier run, exported 2026-11-22.")
    # Read as weights only, as `wholebrain` reads checkpoints: a foreign torch file is refused.
    torch.save({"step": 450}, alone)
    with pytest.raises(InputError, match="another kind of torch file"):
        model_card.started_from(alone)


def test_symmetry_is_quoted_only_for_the_checkpoint_it_measured(tmp_path: Path) -> None:
    path = tmp_path / "mirror_symmetry.txt"
    path.write_text(
        "# Left-right symmetry of the model\n| mean, original | 0.689 | 0.646 |\n\n"
        "symmetry: step=6450 subjects=sub-09,sub-10 mean_abs_change=0.0034 "
        "largest_change=0.0181 cortical_gap=+0.043 mirror_gap=+0.043\n"
    )
    assert model_card.read_symmetry(path, 7650) is None  # another model's measurement
    assert model_card.read_symmetry(tmp_path / "missing.txt", 6450) is None
    fields = model_card.read_symmetry(path, 6450)
    assert fields is not None and fields["mean_abs_change"] == "0.0034"
    line = model_card.symmetry_line(fields)
    assert "sub-09/sub-10" in line and "0.003 on average (at most 0.018)" in line
    assert "not a bias of the model" in line
    # A gap that stays on the label side when the anatomy is mirrored is the model's.
    biased = model_card.symmetry_line({**fields, "mirror_gap": "-0.040"})
    assert "the model is biased" in biased and "not a bias" not in biased


def test_a_calibrated_model_quotes_only_a_calibrated_symmetry(tmp_path: Path) -> None:
    path = tmp_path / "mirror_symmetry.txt"
    path.write_text(
        "symmetry: step=1100 subjects=sub-09,sub-10 mean_abs_change=0.0031 "
        "largest_change=0.0378 cortical_gap=+0.021 mirror_gap=+0.020\n"
        "symmetry: step=1100 calibrated=yes subjects=sub-09,sub-10 mean_abs_change=0.0029 "
        "largest_change=0.0300 cortical_gap=+0.020 mirror_gap=+0.019\n"
    )
    plain = model_card.read_symmetry(path, 1100)
    calibrated = model_card.read_symmetry(path, 1100, calibrated=True)
    assert plain is not None and plain["mean_abs_change"] == "0.0031"
    assert calibrated is not None and calibrated["mean_abs_change"] == "0.0029"
    assert model_card.read_symmetry(path, 1100, calibrated=True, pose="20.0") is None
    assert model_card.pose_field(None) == "none" and model_card.pose_field(19.97) == "20.0"


def _means(cortical: float, subcortical: float, everything: float) -> dict[str, dict[str, float]]:
    return {
        "cortical": {"dice": cortical, "hd95": 4.0},
        "subcortical": {"dice": subcortical, "hd95": 2.0},
        "all": {"dice": everything, "hd95": 3.5},
    }


def _robustness_output() -> str:
    import robustness

    return "\n".join(
        [
            "# wholebrain robustness to geometry and contrast",
            robustness._row("as given", "sub-09", "ASL 1x1x1 mm", _means(0.7, 0.8, 0.75), "", 13),
            "",
            "robustness: step=900 calibrated=no subjects=sub-09",
            robustness._row("as given", "mean", "", _means(0.1, 0.1, 0.1), "", None),
            "robustness: step=1100 calibrated=yes pose=20.0 subjects=sub-09,sub-10",
            robustness._row("as given", "mean", "", _means(0.765, 0.807, 0.769), "", None),
            robustness._row("pitch 15", "mean", "", _means(0.77, 0.81, 0.775), "", None),
            robustness._row("1x1x1.5 mm", "mean", "", _means(0.7, 0.79, 0.72), "     0.929", None),
        ]
    )


def test_robustness_rows_written_by_robustness_are_read_back(tmp_path: Path) -> None:
    path = tmp_path / "robustness.txt"
    path.write_text(_robustness_output() + "\n")
    subjects, rows = model_card.read_robustness(path, 1100, calibrated=True, pose="20.0")
    assert subjects == "sub-09/sub-10"
    assert [r.variant for r in rows] == ["as given", "pitch 15", "1x1x1.5 mm"]
    assert (rows[0].all, rows[0].cortical, rows[0].subcortical) == (0.769, 0.765, 0.807)
    assert rows[0].round_trip is None and rows[2].round_trip == 0.929
    # Another model's measurement, or none, is not quoted.
    assert model_card.read_robustness(path, 1100, calibrated=False) == ("", [])
    assert model_card.read_robustness(path, 1100, calibrated=True) == ("", [])  # another pose
    assert model_card.read_robustness(tmp_path / "absent.txt", 1100, True) == ("", [])


def test_the_card_says_what_the_checkpoint_and_the_tables_say(tmp_path: Path) -> None:
    model = tmp_path / "dkt-aseg.pt"
    model.write_bytes(b"x" * 2_000_000)  # the card quotes the file's size
    checkpoint = {
        "step": 1100,
        "full_protocol": "dkt-aseg",
        "conform": {"canvas_shape_vox": [96, 112, 112], "spacing_mm": 2.0},
        "model": {"state_dict": {"w": torch.zeros(1000, 3)}},
        "train_config": {
            "strategy": "multitask",
            "steps": 1100,
            "batch_size": 2,
            "amp": "bf16",
            "loss_weights": {"dkt-aseg": 1.0, "aseg": 0.5},
            "data": {
                "manifest": "absent.csv",
                "patch_size_vox": [64, 64, 64],
                "full_fraction": 0.8,
                "foreground_fraction": 0.5,
            },
            "optim": {"optimizer": "adamw", "lr": 2e-4, "schedule": "poly"},
            "model": {"filters": [16, 32, 64, 128, 256]},
        },
        "calibration": {
            "log_weights": [0.0, -1.0, 0.5],
            "method": "volume matching",
            "subjects": ["sub-01", "sub-02"],
            "brain_pitch_deg": 19.97,
        },
    }
    structures = {
        10: ("Left-Thalamus", 0.9, 1.5),
        1002: ("ctx-lh-caudalanteriorcingulate", 0.7, 4.0),
    }
    scores = model_card.Scores(
        [("seg/sub-09.nii.gz", "ref/sub-09.nii.gz")],
        {"cortical": 0.765, "subcortical": 0.807, "all": 0.769},
        {"cortical": 0.005, "subcortical": 0.01, "all": 0.008},
        structures,
    )
    baseline = model_card.Scores([], {"cortical": 0.759, "subcortical": 0.784, "all": 0.75}, {}, {})
    path = tmp_path / "robustness.txt"
    path.write_text(_robustness_output() + "\n")
    text = model_card.card(
        checkpoint,
        model,
        scores,
        baseline,
        "JLF in the mask",
        None,
        "a test machine",
        robustness=model_card.read_robustness(path, 1100, calibrated=True, pose="20.0"),
    )
    assert "mean Dice 0.769 over all structures, 0.765 cortical, 0.807 subcortical" in text
    assert "(baseline, JLF in the mask: 0.750 / 0.759 / 0.784)" in text
    assert "0.769 is below 0.8; it is better than the baseline (0.750)" in text
    assert "0.0 M parameters" in text and "2.0 MB as float16" in text
    assert "on a 96x112x112 canvas of 2 mm voxels" in text
    assert "Calibrated by `wholebrain calibrate` on sub-01/sub-02 (volume matching)" in text
    assert "a weight between 0.37 and 1.65" in text
    assert "- Pose: `wholebrain segment` turns each scan's canvases" in text
    assert "lies at 20.0 deg pitch" in text
    assert "| 1002 | ctx-lh-caudalanteriorcingulate | 0.700 | 4.0 | n/a |" in text
    assert "## Robustness" in text and "| pitch 15 | 0.775 | 0.770 | 0.810 |  |" in text
    assert "| 1x1x1.5 mm | 0.720 | 0.700 | 0.790 | 0.929 |" in text
    # Without a calibration or a robustness measurement, neither is mentioned.
    del checkpoint["calibration"]
    bare = model_card.card(checkpoint, model, scores, None, "", None, "a test machine")
    assert "Calibrated" not in bare and "## Robustness" not in bare and "Pose" not in bare
