"""Multi-process training: ``torchrun --nproc_per_node=2 -m wholebrain train`` with gloo on CPU."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from training_fixtures import make_cohort, tiny_config
from wholebrain.data.augment import AugmentConfig
from wholebrain.train import load_checkpoint, read_checkpoint, to_toml

SHAPE = (16, 16, 16)


@pytest.mark.slow
def test_torchrun_two_gloo_processes(tmp_path: Path) -> None:
    manifest = make_cohort(tmp_path / "cohort", shape=SHAPE)
    config = tiny_config(tmp_path / "cohort", manifest, shape=SHAPE, steps=6, log_every=2)
    config = replace(
        config,
        batch_size=1,
        checkpoint_every=3,
        output_dir=str(tmp_path / "run"),
        augment=AugmentConfig(spatial_prob=0.5, elastic_nodes=3),
    )
    path = tmp_path / "ddp.toml"
    path.write_text(to_toml(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "wholebrain",
        "--quiet",
        "train",
        str(path),
        "--device",
        "cpu",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("trained 6 steps") == 1  # rank 0 alone reports (and writes)
    model, info = load_checkpoint(tmp_path / "run" / "last.pt")
    assert info.step == 6 and info.train_config["batch_size"] == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())
    with (tmp_path / "run" / "metrics.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["step"] for r in rows] == ["2", "4", "6"]
    assert rows[-1]["val_dice"] != ""
    assert read_checkpoint(tmp_path / "run" / "best.pt")["val_dice"] is not None
