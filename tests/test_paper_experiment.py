"""benchmarks/paper_experiment.py and its modules in benchmarks/paper/: folds, plan, estimate,
results table and claims on made-up scores, the presets, and (slow, with ../shared/data) the
whole experiment in smoke size."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest

from wholebrain.errors import InputError

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
MINDBOGGLE = SHARED_DATA / "mindboggle-oasis-trt-20-dev"
sys.path.insert(0, str(ROOT / "benchmarks"))

import paper_experiment as pe  # noqa: E402  (a script beside machine.py, not a package)
from paper.claims import claims, summarise  # noqa: E402
from paper.plan import (  # noqa: E402
    JLF,
    LABEL_FILE,
    SCAN_FILE,
    Cost,
    Experiment,
    Unit,
    check_folds,
    duration,
    estimate,
    fold_split,
    load_experiment,
    plan_units,
    registration_pairs,
)
from paper.report import results_table, write_report  # noqa: E402
from paper.run import (  # noqa: E402
    SCORE_COLUMNS,
    Subjects,
    read_tsv,
    train_config,
    write_fold_manifest,
    write_tsv,
)

SUBJECTS = [f"sub-{i:02d}" for i in range(1, 11)]


# --- folds and plan ------------------------------------------------------------------------------


def test_folds_rotate_through_the_sorted_subjects() -> None:
    assert fold_split(SUBJECTS[::-1], 3, 0) == (SUBJECTS[:3], SUBJECTS[3:])
    assert fold_split(SUBJECTS, 3, 2)[0] == ["sub-07", "sub-08", "sub-09"]
    assert fold_split(SUBJECTS, 1, 1) == (["sub-02"], ["sub-01", *SUBJECTS[2:]])
    assert fold_split(SUBJECTS, 5, 1) == (SUBJECTS[5:], SUBJECTS[:5])
    # k = 8 wraps round: fold 1 trains on 9, 10, 1..6 and tests on 7, 8.
    train, test = fold_split(SUBJECTS, 8, 1)
    assert train == [*SUBJECTS[8:], *SUBJECTS[:6]] and test == ["sub-07", "sub-08"]
    # Five folds of k = 8 test every subject once.
    tested = [s for f in range(5) for s in fold_split(SUBJECTS, 8, f)[1]]
    assert sorted(tested) == SUBJECTS


def test_fold_counts_that_repeat_or_leave_no_test_are_refused() -> None:
    with pytest.raises(ValueError, match="at most 2 distinct training sets"):
        check_folds(10, 5, 3)
    with pytest.raises(ValueError, match="must leave test subjects"):
        check_folds(10, 10, 1)
    with pytest.raises(ValueError, match="must leave test subjects"):
        fold_split(SUBJECTS, 0, 0)
    check_folds(10, 8, 5)
    check_folds(10, 3, 10)


def _experiment(tmp_path: Path, **changes: object) -> Experiment:
    from wholebrain.evaluate.jlf import FusionConfig

    exp = Experiment(
        name="test",
        config_path=tmp_path / "paper-test.toml",
        dataset=tmp_path,
        subjects=tuple(SUBJECTS),
        ks=(1, 3, 5),
        folds=(3, 3, 2),
        k_all=8,
        folds_all=1,
        strategies=("full-only", "pretrain-finetune", "multitask", "marginal"),
        pretrain_fraction=0.5,
        jlf=True,
        fusion=FusionConfig(),
        cost=Cost(step=1.0, run=10.0, segment=2.0, evaluate=1.0, register=10.0, fuse=1.0),
        template={"steps": 100},
    )
    return dataclasses.replace(exp, **changes)  # type: ignore[arg-type]


def test_plan_and_estimate(tmp_path: Path) -> None:
    exp = _experiment(tmp_path)
    units = plan_units(exp)
    assert len(units) == (3 + 3 + 2 + 1) * 5
    assert units[0] == Unit(1, 0, "full-only", ("sub-01",), tuple(SUBJECTS[1:]))
    assert units[4].method == JLF and units[-1].k == 8
    assert units[0].folder(tmp_path) == tmp_path / "k1" / "fold0" / "full-only"
    assert all(u.method == JLF for u in plan_units(exp, networks=False))
    assert JLF not in {u.method for u in plan_units(exp, jlf=False)}
    # Registrations are counted once per (atlas, target) pair however many folds need them.
    jlf = [u for u in units if u.method == JLF]
    pairs = registration_pairs(jlf)
    assert ("sub-01", "sub-02") in pairs and ("sub-01", "sub-01") not in pairs
    assert len(pairs) < sum(len(u.train) * len(u.test) for u in jlf)
    one = [u for u in units if u.k == 1 and u.fold == 0]
    parts = estimate(exp, one, cached_pairs=set(), prepared=True)
    assert parts["train"] == 4 * (10 + 100 * 1.0)
    assert parts["score"] == 4 * 9 * (2.0 + 1.0)
    assert parts["jlf"] == 9 * (1 * 1.0 + 1.0) + 9 * 10.0
    cached = registration_pairs(one)
    assert estimate(exp, one, cached, prepared=False)["jlf"] == 9 * 2.0
    assert estimate(exp, one, cached, prepared=False)["prepare"] == exp.cost.prepare
    assert duration(3725) == "1 h 02 min" and duration(61) == "1 min 01 s"


@pytest.mark.parametrize("test_tissue", [True, False])
def test_fold_manifest(tmp_path: Path, test_tissue: bool) -> None:
    from wholebrain.data.manifest import read_manifest

    exp = _experiment(tmp_path, test_tissue=test_tissue)
    unit = plan_units(exp)[0]  # k = 1, fold 0: trains on sub-01
    tissue = {s: tmp_path / f"{s}_desc-tissue_dseg.nii.gz" for s in SUBJECTS}
    path = write_fold_manifest(tmp_path / "m.csv", unit, exp, Subjects(tmp_path), tissue)
    rows = {(e.subject, e.protocol, e.format) for e in read_manifest(path)}
    assert ("sub-01", "dkt-aseg", "mindboggle") in rows
    assert ("sub-01_autotissue", "tissue", "tissue") in rows
    assert (("sub-05_autotissue", "tissue", "tissue") in rows) is test_tissue
    assert len(rows) == (11 if test_tissue else 2)


# --- results and claims on made-up scores ------------------------------------------------------


def _rows(dice: dict[tuple[int, str], list[float]], scans: int = 2) -> list[dict[str, str]]:
    """Score rows: (k, method) -> one 'all' Dice per fold (cortical 0.1 less, subcortical 0.1
    more), ``scans`` subjects a fold scoring the fold's value +-0.01."""
    rows = []
    for (k, method), folds in dice.items():
        for fold, value in enumerate(folds):
            for i in range(scans):
                d = value + (0.01 if i % 2 else -0.01)
                rows.append(
                    {
                        "k": str(k),
                        "fold": str(fold),
                        "method": method,
                        "subject": f"sub-{i:02d}",
                        "dice_cortical": f"{d - 0.1:.6f}",
                        "dice_subcortical": f"{d + 0.1:.6f}",
                        "dice_all": f"{d:.6f}",
                        "seconds": str(1.0 + i),
                        "device": "cpu",
                    }
                )
    return rows


def test_summaries_are_mean_and_sd_over_folds() -> None:
    rows = _rows({(1, "full-only"): [0.5, 0.6, 0.7], (8, "jlf"): [0.4]})
    full, jlf = summarise(rows)
    assert (full.k, full.method, full.folds, full.scans) == (1, "full-only", 3, 6)
    assert full.mean["all"] == pytest.approx(0.6)
    assert full.sd["all"] == pytest.approx(0.1)
    assert full.mean["cortical"] == pytest.approx(0.5)
    assert full.fold_means["all"] == pytest.approx([0.5, 0.6, 0.7])
    assert full.seconds == 1.5  # median of 1, 2 in every fold
    assert jlf.folds == 1 and jlf.sd["all"] != jlf.sd["all"]  # one fold: NaN
    table = results_table([full, jlf], k_all=8)
    assert "| 1 | full-only | 3 (6) | 0.500 ± 0.100 | 0.700 ± 0.100 | 0.600 ± 0.100 | 1.5 |" in (
        table
    )
    assert "| 8 (all) | jlf | 1 (2) | 0.300 | 0.500 | 0.400 | 1.5 |" in table


def _table(partial_gain: float, k3_partial: float) -> list[dict[str, str]]:
    dice = {}
    for k in (1, 3, 5):
        base = {1: 0.5, 3: 0.7, 5: 0.75}[k]
        folds = 2
        dice[(k, "full-only")] = [base] * folds
        dice[(k, "multitask")] = [base + partial_gain] * folds
        dice[(k, "marginal")] = [base + partial_gain / 2] * folds
        dice[(k, "jlf")] = [base - 0.1] * folds
    dice[(3, "multitask")] = [k3_partial] * 2
    dice[(8, "full-only")] = [0.80]
    dice[(8, "multitask")] = [0.78]
    return _rows(dice)


def test_claims_hold_when_the_numbers_say_so() -> None:
    verdict = claims(summarise(_table(0.05, 0.77)), ks=(1, 3, 5), k_all=8)
    assert verdict.share_held is True and verdict.share == pytest.approx(0.77 / 0.80)
    assert verdict.beats_held is True
    assert "holds" in verdict.text and "does not hold" not in verdict.text
    assert "(k = 8, full-only)" in verdict.text  # the reference is the best network at k_all


def test_claims_fail_when_the_numbers_say_so() -> None:
    # multitask worse than full-only at k = 1 and 5; at k = 3 below 95 % of 0.80.
    verdict = claims(summarise(_table(-0.02, 0.74)), ks=(1, 3, 5), k_all=8)
    assert verdict.share_held is False and verdict.share == pytest.approx(0.74 / 0.80)
    assert verdict.beats_held is False
    assert verdict.text.count("does not hold") == 2
    assert "- k = 1: marginal" in verdict.text  # the better of multitask and marginal


def test_claims_not_measured_without_the_runs() -> None:
    rows = _rows({(1, "full-only"): [0.5], (1, "jlf"): [0.4]})
    verdict = claims(summarise(rows), ks=(1,), k_all=0)
    assert verdict.share_held is None and verdict.beats_held is None
    assert verdict.text.count("not measured") == 2


def test_report_from_made_up_scores(tmp_path: Path) -> None:
    out = tmp_path / "out"
    preset = out / "made-up"
    preset.mkdir(parents=True)
    write_tsv(preset / "scores.tsv", _table(0.05, 0.77), SCORE_COLUMNS)
    (preset / "experiment.json").write_text(
        '{"config": "configs/paper-x.toml", "k_all": 8, "ks": [1, 3, 5], '
        '"expected_units": 30, "budget": "- 300 steps"}'
    )
    (preset / "invocations.jsonl").write_text(
        '{"command": "python benchmarks/paper_experiment.py --preset x", "header": "# h\\n", '
        '"seconds": 4000, "units_run": 3, "devices": ["cpu"]}\n'
    )
    results = tmp_path / "docs" / "results.md"
    write_report(out, results)
    text = results.read_text()
    assert "## Preset `made-up` (incomplete: 26 of 30 runs)" in text
    assert "python benchmarks/paper_experiment.py --preset x" in text
    assert "1 h 06 min over 1 invocation(s) on cpu" in text
    assert "| 8 (all) | full-only | 1 (2) |" in text
    assert "![Dice vs k, preset made-up](paper-made-up.png)" in text
    assert (tmp_path / "docs" / "paper-made-up.png").read_bytes()[:4] == b"\x89PNG"
    empty = tmp_path / "empty.md"
    write_report(tmp_path / "nothing", empty)
    assert "No preset has results yet." in empty.read_text()


# --- presets -------------------------------------------------------------------------------------


def _preset(tmp_path: Path, paper: str) -> Path:
    for subject in ("sub-01", "sub-02", "sub-03"):
        (tmp_path / "data" / subject).mkdir(parents=True)
        for name in (SCAN_FILE, LABEL_FILE):
            (tmp_path / "data" / subject / name).touch()
    path = tmp_path / "paper-mine.toml"
    path.write_text(f'steps = 10\n[paper]\ndataset = "data"\n{paper}\n')
    return path


def test_load_experiment_reads_the_paper_table(tmp_path: Path) -> None:
    exp = load_experiment(_preset(tmp_path, "ks = [1]\nfolds = [2]\nk_all = 2"))
    assert exp.name == "mine" and exp.subjects == ("sub-01", "sub-02", "sub-03")
    assert exp.all_ks == (1, 2) and exp.folds_of(1) == 2 and exp.folds_of(2) == 1
    assert exp.template == {"steps": 10} and exp.steps == 10
    smoke = load_experiment(_preset(tmp_path / "s", ""), smoke=True)
    assert smoke.name == "smoke" and smoke.ks == (1,) and smoke.steps == 5
    assert smoke.template["conform"]["spacing_mm"] == 4.0


@pytest.mark.parametrize(
    ("paper", "match"),
    [
        ("ks = [1, 2]\nfolds = [1]", "one fold count per k"),
        ('ks = [1]\nfolds = [1]\nstrategies = ["best"]', "strategies"),
        ("ks = [1]\nfolds = [1]\npretrain_fraction = 1.0", "pretrain_fraction"),
        ('ks = [1]\nfolds = [1]\nsubjects = ["sub-99"]', "missing sub-99"),
        ("ks = [1]\nfolds = [1]\n[paper.fusion]\nspacing_mm = -1", r"\[paper.fusion\]"),
        ('ks = [1]\nfolds = [1]\ndataset = "nowhere"', "no such folder"),
        ("ks = [1]\nfolds = [4]", "at most 3 distinct training sets"),
        ("ks = [3]\nfolds = [1]", "must leave test subjects"),
    ],
)
def test_load_experiment_refuses_bad_values(tmp_path: Path, paper: str, match: str) -> None:
    path = _preset(tmp_path, paper)
    text = path.read_text()
    if "nowhere" in paper:  # the case names its own dataset: drop the default one
        text = text.replace('dataset = "data"\n', "")
    path.write_text(text)
    with pytest.raises(InputError, match=match):
        load_experiment(path)


def test_load_experiment_refuses_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        load_experiment(tmp_path / "none.toml")


@pytest.mark.shared_data
@pytest.mark.parametrize("preset", ["cpu", "gpu"])
def test_presets_give_valid_training_configs(preset: str, tmp_path: Path) -> None:
    if not MINDBOGGLE.is_dir():
        pytest.skip(f"needs {MINDBOGGLE}")
    exp = load_experiment(pe.CONFIGS / f"paper-{preset}.toml")
    assert exp.all_ks == (1, 3, 5, 8) and len(exp.subjects) == 10
    shapes = set()
    for strategy in exp.strategies:
        config = train_config(exp, strategy, tmp_path / "m.csv", tmp_path / "run", tmp_path)
        assert config.strategy == strategy and config.data.manifest == str(tmp_path / "m.csv")
        assert Path(config.synth.label_maps).is_dir()
        assert config.pretrain_steps == (
            config.steps // 2 if strategy == "pretrain-finetune" else 0
        )
        shapes.add((config.steps, config.data.patch_size_vox, config.conform, config.model))
    assert len(shapes) == 1  # the same budget for every strategy


# --- the whole experiment, smoke size ------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_smoke_runs_every_stage_and_resumes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (MINDBOGGLE.is_dir() and (SHARED_DATA / "synthseg-label-maps").is_dir()):
        pytest.skip(f"needs {MINDBOGGLE} and the SynthSeg label maps")
    pytest.importorskip("ants", reason="needs antspyx for the JLF baseline")
    out, results = tmp_path / "out", tmp_path / "results.md"
    argv = ["--smoke", "--out", str(out), "--results", str(results), "--quiet"]
    assert pe.main(argv) == 0
    printed = capsys.readouterr().out
    assert "estimate:" in printed and "all runs done" in printed
    rows = read_tsv(out / "smoke" / "scores.tsv")
    assert {(r["method"], r["subject"]) for r in rows} == {
        (m, s) for m in ("full-only", "multitask", "jlf") for s in ("sub-02", "sub-03")
    }
    assert all(0 <= float(r["dice_all"]) <= 1 and float(r["seconds"]) > 0 for r in rows)
    assert float(next(r for r in rows if r["method"] == "jlf")["dice_all"]) > 0.2
    assert (out / "smoke" / "k1" / "fold0" / "multitask" / "train" / "last.pt").exists()
    assert len(list((out / "registrations").rglob("*_to_*.npz"))) == 2
    text = results.read_text()
    assert "## Preset `smoke` (complete)" in text and (tmp_path / "paper-smoke.png").exists()
    # A second invocation finds every result and redoes nothing.
    assert pe.main([*argv, "--prune"]) == 0
    assert "(0 to do)" in capsys.readouterr().out
    assert len((out / "smoke" / "invocations.jsonl").read_text().splitlines()) == 2


def test_claims_not_testable_when_no_network_learnt_the_task() -> None:
    # Every network near zero, as after a few hundred CPU steps: multitask "wins" by noise.
    rows = _rows(
        {
            **{(k, "full-only"): [0.004, 0.006] for k in (1, 3, 5)},
            **{(k, "multitask"): [0.007, 0.008] for k in (1, 3, 5)},
            (8, "full-only"): [0.009],
            (3, "jlf"): [0.6, 0.62],
        }
    )
    verdict = claims(summarise(rows), ks=(1, 3, 5), k_all=8)
    assert verdict.share_held is None and verdict.share is None and verdict.beats_held is None
    assert "Not testable at this budget" in verdict.text and "0.009" in verdict.text
    assert "holds" not in verdict.text
    assert "- k = 3: multitask 0.008 vs full-only 0.005" in verdict.text  # numbers kept
