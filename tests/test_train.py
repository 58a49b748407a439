"""Training: strategies, the loop, checkpoints, resume, configs and the CLI (wholebrain.train)."""

from __future__ import annotations

import csv
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training_fixtures import TINY_MODEL, make_cohort, tiny_config
from wholebrain.cli import main
from wholebrain.data.augment import AugmentConfig
from wholebrain.data.dataset import TrainingData
from wholebrain.errors import InputError
from wholebrain.losses import IGNORE_INDEX, dice_ce_loss, marginal_dice_ce_loss
from wholebrain.model import MultiHeadUNet
from wholebrain.protocols import class_matrix, get_protocol
from wholebrain.train import (
    OptimConfig,
    Strategy,
    TrainConfig,
    load_checkpoint,
    load_config,
    read_checkpoint,
    to_toml,
    train,
)
from wholebrain.train.optim import amp_dtype, learning_rate
from wholebrain.train.validate import predict_full, validate

SHAPE = (16, 16, 16)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One torch thread: on a shared 2-core machine two spin-waiting threads are ~4x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cohort")
    make_cohort(root, shape=SHAPE)
    return root


def _config(cohort: Path, run: Path, **changes: object) -> TrainConfig:
    config = tiny_config(cohort, cohort / "manifest.csv", shape=SHAPE, output_dir=str(run))
    return replace(config, **changes)  # type: ignore[arg-type]


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------- learning end to end


@pytest.mark.parametrize("strategy", ["multitask", "marginal"])
def test_training_learns(strategy: str, cohort: Path, tmp_path: Path) -> None:
    config = _config(
        cohort,
        tmp_path / "run",
        strategy=strategy,
        steps=60,
        log_every=10,
        optim=OptimConfig(lr=0.05, schedule="constant"),
    )
    data = TrainingData(config.data, config.conform, build_cache=True)
    torch.manual_seed(0)
    untrained = MultiHeadUNet(TINY_MODEL, {"dkt-aseg": 99})
    from wholebrain.train.distributed import setup

    chance = validate(
        untrained, data.val, setup("cpu"), mode="whole", patch_size_vox=SHAPE, overlap=0
    )
    result = train(config, device="cpu", progress=False)
    rows = _rows(tmp_path / "run")
    assert float(rows[-1]["loss_dkt-aseg"]) < 0.6 * float(rows[0]["loss_dkt-aseg"])
    assert float(rows[-1]["loss_tissue"]) < 0.6 * float(rows[0]["loss_tissue"])
    assert result.best_val_dice is not None
    assert result.best_val_dice > max(0.2, 4 * chance)


# ---------------------------------------------------------------- strategies


def test_strategies_select_heads_pools_and_targets() -> None:
    full_only = Strategy("full-only", ["tissue"], steps=10)
    assert full_only.heads == {"dkt-aseg": 99}
    assert full_only.target_protocols == ("dkt-aseg",)
    assert full_only.phase(3).shares == {"full": 1.0}

    multitask = Strategy("multitask", ["tissue", "aseg"], steps=10, full_fraction=0.3)
    assert multitask.heads == {"dkt-aseg": 99, "tissue": 4, "aseg": 39}
    assert multitask.derive_targets
    assert multitask.phase(0).shares == pytest.approx({"full": 0.3, "partial": 0.7, "synth": 0})

    marginal = Strategy("marginal", ["tissue"], steps=10, synth_fraction=0.2)
    assert marginal.heads == {"dkt-aseg": 99}
    assert marginal.target_protocols == ("dkt-aseg", "tissue")
    assert not marginal.derive_targets

    transfer = Strategy("pretrain-finetune", ["tissue"], steps=10, pretrain_steps=4)
    assert transfer.heads == {"dkt-aseg": 99, "tissue": 4}
    pre, fine = transfer.phase(3), transfer.phase(4)
    assert (pre.name, pre.heads, set(pre.shares)) == ("pretrain", ("tissue",), {"partial", "synth"})
    assert (fine.name, fine.heads, fine.shares) == ("finetune", ("dkt-aseg",), {"full": 1.0})
    with pytest.raises(ValueError, match="unknown strategy"):
        Strategy("bogus", [], steps=1)


def _logits_and_targets() -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    gen = torch.Generator().manual_seed(0)
    logits = {
        "dkt-aseg": torch.randn((2, 99, 4, 4, 4), generator=gen, requires_grad=True),
        "tissue": torch.randn((2, 4, 4, 4, 4), generator=gen, requires_grad=True),
    }
    full = torch.randint(0, 99, (2, 4, 4, 4), generator=gen, dtype=torch.uint8)
    full[1] = IGNORE_INDEX  # sample 1 is a partial subject
    tissue = torch.randint(0, 4, (2, 4, 4, 4), generator=gen, dtype=torch.uint8)
    return logits, {"dkt-aseg": full, "tissue": tissue}


def test_multitask_loss_is_the_weighted_sum_of_head_losses() -> None:
    logits, targets = _logits_and_targets()
    strategy = Strategy("multitask", ["tissue"], steps=1, loss_weights={"tissue": 0.5})
    total, terms = strategy.loss(logits, targets, strategy.phase(0))
    full = dice_ce_loss(logits["dkt-aseg"], targets["dkt-aseg"])
    tissue = dice_ce_loss(logits["tissue"], targets["tissue"])
    torch.testing.assert_close(total, full + 0.5 * tissue)
    torch.testing.assert_close(terms["tissue"], tissue.detach())


def test_marginal_loss_supervises_partial_labels_through_the_full_head() -> None:
    logits, targets = _logits_and_targets()
    only_full = {"dkt-aseg": logits["dkt-aseg"]}
    strategy = Strategy("marginal", ["tissue"], steps=1)
    total, terms = strategy.loss(only_full, targets, strategy.phase(0))
    matrix = torch.from_numpy(class_matrix("tissue"))
    expected = dice_ce_loss(logits["dkt-aseg"], targets["dkt-aseg"]) + marginal_dice_ce_loss(
        logits["dkt-aseg"], targets["tissue"], matrix
    )
    torch.testing.assert_close(total, expected)
    assert set(terms) == {"dkt-aseg", "tissue"}


def test_under_ddp_every_head_gets_a_gradient_even_without_a_loss_term(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    strategy = Strategy("pretrain-finetune", ["tissue"], steps=4, pretrain_steps=2)
    logits, targets = _logits_and_targets()
    total, terms = strategy.loss(logits, targets, strategy.phase(0))  # tissue only
    assert set(terms) == {"tissue"}
    total.backward()
    assert logits["dkt-aseg"].grad is None  # one process: no full-size zero pass

    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: True)
    logits, targets = _logits_and_targets()
    total, _ = strategy.loss(logits, targets, strategy.phase(0))
    total.backward()
    assert logits["dkt-aseg"].grad is not None  # zero, but there: DDP needs it
    assert float(logits["dkt-aseg"].grad.abs().sum()) == 0


def test_learning_rate_schedules() -> None:
    phase = Strategy("full-only", [], steps=100).phase(0)
    poly = OptimConfig(lr=1.0, schedule="poly", warmup_steps=10)
    assert learning_rate(poly, 0, phase) == pytest.approx(0.1)
    assert learning_rate(poly, 10, phase) == pytest.approx(1.0)
    assert learning_rate(poly, 99, phase) < 0.05
    cosine = OptimConfig(lr=1.0, schedule="cosine")
    assert learning_rate(cosine, 50, phase) == pytest.approx(0.5)
    assert learning_rate(OptimConfig(lr=0.3, schedule="constant"), 77, phase) == 0.3


@pytest.mark.parametrize("units", [True, False])
def test_cpu_bf16_only_where_the_cpu_has_bf16_units(
    units: bool, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Emulated bf16 made a step of the shipped network >120 s on an AVX2-only CPU (fp32: ~3.5 s):
    # a config asking for bf16 must not do that to whoever trains on such a machine.
    monkeypatch.setattr("wholebrain.train.optim.cpu_has_bf16_units", lambda: units)
    cpu = torch.device("cpu")
    assert amp_dtype("bf16", cpu) == (torch.bfloat16 if units else None)
    assert ("no bf16 matrix units" in caplog.text) is not units
    assert amp_dtype("auto", cpu) is None and amp_dtype("off", cpu) is None


# ---------------------------------------------------------------- resume, checkpoints


def test_resume_continues_the_same_run(cohort: Path, tmp_path: Path) -> None:
    augment = AugmentConfig(spatial_prob=0.5, elastic_nodes=3, resolution_prob=0.5)
    common = {"steps": 8, "augment": augment, "checkpoint_every": 0, "log_every": 2}
    whole = _config(cohort, tmp_path / "whole", **common)
    parts = _config(cohort, tmp_path / "parts", **common)
    train(whole, device="cpu", progress=False)
    first = train(parts, device="cpu", progress=False, stop_after=3)
    assert first.step == 3 and read_checkpoint(first.last)["step"] == 3
    with pytest.raises(InputError, match="already there; pass --resume"):
        train(parts, device="cpu", progress=False)
    second = train(parts, device="cpu", progress=False, resume=True)
    assert second.step == 8
    a = read_checkpoint(tmp_path / "whole" / "last.pt")["model"]["state_dict"]
    b = read_checkpoint(tmp_path / "parts" / "last.pt")["model"]["state_dict"]
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-5)
    assert [r["step"] for r in _rows(tmp_path / "parts")] == ["2", "4", "6", "8"]


def test_dataloader_workers_read_the_same_batches(cohort: Path, tmp_path: Path) -> None:
    runs = []
    for workers in (0, 1):
        config = _config(cohort, tmp_path / f"w{workers}", steps=3, checkpoint_every=0)
        config = replace(config, data=replace(config.data, num_workers=workers))
        runs.append(train(config, device="cpu", progress=False))
    a, b = (read_checkpoint(r.last)["model"]["state_dict"] for r in runs)
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_resume_refuses_a_changed_config(cohort: Path, tmp_path: Path) -> None:
    config = _config(cohort, tmp_path / "run", steps=2)
    train(config, device="cpu", progress=False)
    with pytest.raises(InputError, match="changed keys: seed"):
        train(replace(config, seed=1), device="cpu", progress=False, resume=True)
    extended = train(replace(config, steps=3), device="cpu", progress=False, resume=True)
    assert extended.step == 3
    with pytest.raises(InputError, match="no such file"):
        train(replace(config, output_dir=str(tmp_path / "none")), device="cpu", resume=True)


def test_checkpoint_describes_itself_and_loads(cohort: Path, tmp_path: Path) -> None:
    config = _config(cohort, tmp_path / "run", steps=3)
    result = train(config, device="cpu", progress=False)
    assert result.best is not None and result.best_val_dice is not None
    model, info = load_checkpoint(result.best)
    assert not model.training
    assert info.kind == "best" and info.step == 3
    assert info.val_dice == pytest.approx(result.best_val_dice)
    assert info.heads == {"dkt-aseg": 99, "tissue": 4}
    assert info.model_config == TINY_MODEL
    assert info.conform == config.conform
    assert info.full_protocol == "dkt-aseg"
    for name in ("dkt-aseg", "tissue"):
        assert info.protocols[name].labels == get_protocol(name).labels
    assert load_config_dict(info.train_config) == config
    from wholebrain import __version__

    assert info.package_version == __version__
    raw = read_checkpoint(result.last)
    assert set(raw["training"]) >= {"optimizer", "grad_scaler", "rng", "scheduler", "seconds"}
    last_model, _ = load_checkpoint(result.last)
    image = torch.rand((1, 1, *SHAPE))
    with torch.no_grad():
        torch.testing.assert_close(model(image)["tissue"], last_model(image)["tissue"])
    assert (tmp_path / "run" / "config.toml").is_file()


def load_config_dict(values: dict[str, object]) -> TrainConfig:
    from wholebrain.train.config import config_from_dict

    return config_from_dict(values)


def test_read_checkpoint_rejects_other_files(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_checkpoint(tmp_path / "missing.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(InputError, match="a file torch cannot read"):
        read_checkpoint(tmp_path / "text.pt")
    torch.save({"weights": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(InputError, match="another kind of torch file"):
        load_checkpoint(tmp_path / "other.pt")


def test_newer_checkpoint_formats_are_refused(tmp_path: Path) -> None:
    torch.save({"format": "wholebrain-checkpoint", "format_version": 99}, tmp_path / "new.pt")
    with pytest.raises(InputError, match="upgrade wholebrain"):
        read_checkpoint(tmp_path / "new.pt")


def test_a_strategy_without_its_subjects_is_an_input_error(cohort: Path, tmp_path: Path) -> None:
    config = _config(cohort, tmp_path / "run", strategy="pretrain-finetune", pretrain_steps=1)
    only_full = replace(config.data, subjects=("sub-00", "sub-01", "sub-02"))
    with pytest.raises(InputError, match=r"draws from \(partial\), found none"):
        train(replace(config, data=only_full), device="cpu", progress=False)


def test_device_and_torchrun_environment_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    from wholebrain.train.distributed import setup

    with pytest.raises(InputError, match="a device among auto, cpu, cuda"):
        setup("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="a CUDA GPU for --device cuda"):
            setup("cuda")
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(InputError, match="environment variable WORLD_SIZE"):
        setup("cpu")


def test_validation_modes_agree_on_shape(cohort: Path) -> None:
    torch.manual_seed(0)
    model = MultiHeadUNet(TINY_MODEL, {"dkt-aseg": 99}).eval()
    image = torch.rand((1, 1, 13, 16, 10))
    whole = predict_full(model, image, mode="whole", patch_size_vox=(8, 8, 8), overlap=0)
    sliding = predict_full(model, image, mode="sliding", patch_size_vox=(8, 8, 8), overlap=0.25)
    assert whole.shape == sliding.shape == (13, 16, 10)


# ---------------------------------------------------------------- configs and the CLI


def test_config_round_trips_through_toml(tmp_path: Path) -> None:
    config = TrainConfig(loss_weights={"dkt-aseg": 2.0, "tissue": 0.5})
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config, "a header\nof two lines"))
    loaded = load_config(path)
    assert replace(loaded, output_dir="", data=config.data) == replace(config, output_dir="")
    assert loaded.data.manifest == str(tmp_path / "manifest.csv")  # relative to the file
    assert loaded.output_dir == str(Path.cwd() / "runs" / "c")
    # An optional setting left at None is left out (TOML has no null) and reads back as None.
    assert "brain_pitch_deg" not in path.read_text()
    assert loaded.conform.brain_pitch_deg is None
    posed = replace(config, conform=replace(config.conform, brain_pitch_deg=20.0))
    path.write_text(to_toml(posed))
    assert load_config(path).conform.brain_pitch_deg == 20.0


def test_config_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    path = tmp_path / "sub" / "c.toml"
    path.write_text('output_dir = "runs/x"\n[data]\nlayout = "mindboggle"\nroot = "../data"\n')
    config = load_config(path)
    assert config.data.root == str(tmp_path / "data")
    assert config.data.cache_dir == str(tmp_path / "sub" / "cache")
    assert config.output_dir == str(tmp_path / "sub" / "runs" / "x")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('strategy = "bogus"', "strategy must be one of full-only, pretrain-finetune"),
        ("steps = 1.5", "expected steps = an integer, found 1.5"),
        ("[data]\npatch_sise = [8, 8, 8]", "unknown key data.patch_sise"),
        (
            '[model]\nfilters = [4, 8, 16]\n[data]\nmanifest = "m.csv"\npatch_size_vox = [6, 6, 6]',
            "multiples of 4",
        ),
        ("[data]\npatch_size_vox = [64, 64, 64]", "give either manifest or layout"),
        ('strategy = "pretrain-finetune"', "needs 0 < pretrain_steps < steps"),
        ("[optim]\nschedule = 'step'", "schedule must be 'poly'"),
        ("[augment]\nbackground_level = [0.1]", "expected augment.background_level = a list of 2"),
        ("steps = ", "invalid TOML"),
        ("loss_weights = { tisue = 1.0 }", "loss_weights names unknown protocol"),
        (
            "[data]\nmanifest = 'm.csv'\nfull_fraction = 0.9\n[synth]\nenabled = true\n"
            "label_maps = 'maps'\nfraction = 0.2",
            "full_fraction \\+ synth.fraction must be at most 1",
        ),
    ],
)
def test_config_errors_are_input_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text + "\n")
    with pytest.raises(InputError, match=message):
        load_config(path)


def test_cli_reports_config_errors_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "c.toml").write_text('strategy = "bogus"\n')
    assert main(["train", str(tmp_path / "c.toml")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("wholebrain train: error: ") and "\n" not in err
    assert "strategy must be one of" in err
    assert main(["train", str(tmp_path / "missing.toml")]) == 1
    err = capsys.readouterr().err.strip()
    assert "missing.toml: expected a training config TOML file, found no such file" in err
    assert "\n" not in err


def test_cli_trains_and_refuses_to_overwrite_a_run(
    cohort: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _config(cohort, tmp_path / "unused", steps=2)
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config))
    run = tmp_path / "cli-run"
    args = ["--quiet", "train", str(path), "--device", "cpu", "--output", str(run)]
    assert main(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    _model, info = load_checkpoint(run / "best.pt")
    assert info.step == 2
    assert main(args) == 1
    assert "pass --resume to continue it" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0


def test_cli_lists_train() -> None:
    from wholebrain.cli import build_parser

    assert "train" in build_parser().format_help()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_shipped_configs_load(path: Path) -> None:
    config = load_config(path)
    assert config.strategy in ("full-only", "pretrain-finetune", "multitask", "marginal")
    assert np.all(np.array(config.data.patch_size_vox) % config.model.divisor == 0)


def test_init_weights_copies_the_trunk_and_matching_heads(tmp_path: Path) -> None:
    from wholebrain.conform import ConformConfig
    from wholebrain.model import ModelConfig
    from wholebrain.train.checkpoint import checkpoint_payload, save_checkpoint
    from wholebrain.train.loop import _init_from

    torch.manual_seed(1)
    source = MultiHeadUNet(TINY_MODEL, {"dkt-aseg": 99, "tissue": 4})
    payload = checkpoint_payload(
        source, kind="last", step=3, val_dice=None, conform=ConformConfig(), train_config={}
    )
    path = save_checkpoint(tmp_path / "source.pt", payload)
    torch.manual_seed(2)
    target = MultiHeadUNet(TINY_MODEL, {"dkt-aseg": 99, "aseg": 39})
    aseg_before = target.heads["aseg"].weight.detach().clone()
    _init_from(target, path)
    for key, value in source.state_dict().items():
        if not key.startswith("heads.tissue"):
            torch.testing.assert_close(target.state_dict()[key], value)
    torch.testing.assert_close(target.heads["aseg"].weight, aseg_before)  # not in the source
    other = MultiHeadUNet(ModelConfig(filters=(4, 8, 16, 32)), {"dkt-aseg": 99})
    with pytest.raises(InputError, match="architecture"):
        _init_from(other, path)


@pytest.mark.slow
def test_sigterm_saves_the_run_like_ctrl_c(cohort: Path, tmp_path: Path) -> None:
    """kill / SLURM's SIGTERM: last.pt at the last finished step, exit 130, --resume goes on."""
    config = _config(cohort, tmp_path / "run", steps=100_000, log_every=1, checkpoint_every=0)
    path = tmp_path / "long.toml"
    path.write_text(to_toml(config))
    command = [sys.executable, "-m", "wholebrain", "--quiet", "train", str(path), "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "run" / "metrics.csv"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None:
        if metrics.exists() and len(metrics.read_text().splitlines()) >= 3:  # header + 2 steps
            break
        time.sleep(0.2)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr[-2000:]
    assert "interrupted" in stderr
    step = read_checkpoint(tmp_path / "run" / "last.pt")["step"]
    assert 2 <= step < 100_000
