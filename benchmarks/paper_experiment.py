"""The paper's experiment, re-runnable: few full + many partial annotations, four strategies and
multi-atlas joint label fusion, on the Mindboggle dev set (Dai et al., MICCAI DART 2019).

    python benchmarks/paper_experiment.py --preset cpu --estimate   # the plan and its cost only
    python benchmarks/paper_experiment.py --preset cpu              # ~2.5 h on 2 cores; resumable
    python benchmarks/paper_experiment.py --preset gpu --no-jlf --max-minutes 9 --prune
    python benchmarks/paper_experiment.py --preset gpu --jlf-only   # the baseline, on a CPU
    python benchmarks/paper_experiment.py --report-only             # docs/results.md again
    python benchmarks/paper_experiment.py --smoke                   # every stage, tiny, ~2 min

The experiment (presets: ``benchmarks/paper-cpu.toml``, ``benchmarks/paper-gpu.toml``; their
``[paper]`` table is the experiment, the rest the training template every run shares):

- **Folds.** Subjects sorted by id; for each k in ``ks``, fold f trains on the k subjects
  from position f*k on (wrapping round) and tests on all the others. ``folds`` per k; a fold
  count that would repeat a training set is refused.
- **"All available full annotations"**: k = ``k_all`` (8 of the 10 dev subjects, 2 tested per
  fold, rotated the same way); its reference Dice is that of the best network at k_all.
- **Annotations.** Full: the k training subjects' manual ``labels_dkt31_aseg`` (white matter
  filled inside ``t1w_brain`` as ``wholebrain dataset import`` does). Partial: the built-in
  automatic tissue maps (``wholebrain partial``) of *all* dev scans, test scans included (they
  use no manual label; a user has them for the scans they segment too; ``test_tissue =
  false`` leaves them out), each as a partial subject ``<id>_autotissue``; plus synthetic
  whole heads drawn on the fly from the SynthSeg label maps (``[synth]``, ``aseg`` labels).
- **Strategies** ``full-only``, ``pretrain-finetune``, ``multitask``, ``marginal`` with the same
  template (steps, batch, patch, canvas, network; pretrain-finetune splits its steps by
  ``pretrain_fraction``); every run is scored at its last step (no validation split).
- **Baseline** ``jlf``: ANTs SyN registration of the same k subjects to each test scan and
  joint label fusion (:mod:`wholebrain.evaluate.jlf`; one atlas is single-atlas registration),
  on the ``[paper.fusion]`` grid (the target conformed to a 2 mm canvas and cropped to the
  brain); registrations are cached per (atlas, target) pair and shared by every fold and
  preset with the same registration settings.
- **Scores.** Each prediction goes back to the scan's native 1 mm grid (``Segmenter``'s
  ``Conformed.to_native``, for JLF's labels too) and is scored with
  :func:`wholebrain.evaluate.evaluate_pair` against the manual labels imported as
  ``wholebrain evaluate --ref-format mindboggle --ref-brain t1w_brain`` does; group means
  cortical / subcortical / all from :func:`wholebrain.protocols.structure_groups`. Seconds per
  scan: the network's conform + forward + back to the native grid (model loading and file
  I/O excluded); JLF's registrations of the k atlases + fusion + back to the native grid.

Folders (``--out``, default ``out/paper``)::

    partial/                                 tissue maps of the dev scans (shared)
    registrations/<fusion key>/A_to_T.npz    atlas A warped onto target T's fusion grid (shared)
    <preset>/cache/                          conformed training subjects of the preset
    <preset>/k<k>/fold<f>/manifest.csv       the fold's training manifest
    <preset>/k<k>/fold<f>/<method>/          train/ (run folder), evaluation.tsv, scores.tsv
    <preset>/scores.tsv                      every (k, fold, method, subject) score
    <preset>/experiment.json, invocations.jsonl

A run whose ``scores.tsv`` exists is skipped; a run with a ``train/last.pt`` resumes
(``wholebrain train --resume``); an interrupted training (Ctrl-C, SIGTERM) saves ``last.pt``
first. ``docs/results.md`` (and ``docs/paper-<preset>.png``) are regenerated at the end of every
invocation from the score tables of every preset under ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import csv
import datetime
import functools
import io
import json
import logging
import math
import os
import signal
import statistics
import sys
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "benchmarks"  # the presets sit beside this script: they are not train configs
DATA = ROOT.parent / "shared" / "data"
JLF = "jlf"
GROUPS = ("cortical", "subcortical", "all")
PARTIAL_STRATEGIES = ("multitask", "marginal")  # "with partial annotations", as the claim says
CLAIM_K = 3  # the k of the 95 % claim
CLAIM_SHARE = 0.95
# Below this mean Dice (all structures) the all-annotations network has not learnt the task:
# ratios and differences between strategies are then noise, evidence neither way (a 300-step
# CPU run scored 0.005). Multi-atlas fusion with the same 8 atlases reaches 0.67.
MIN_REFERENCE_DICE = 0.3
TISSUE_SUFFIX = "_autotissue"  # subject id of a scan's automatic tissue map in the manifests
SCORE_COLUMNS = (
    "k",
    "fold",
    "method",
    "subject",
    "dice_cortical",
    "dice_subcortical",
    "dice_all",
    "seconds",
    "device",
)
SCAN_FILE = "t1w_brain.nii.gz"
LABEL_FILE = "labels_dkt31_aseg.nii.gz"

# --smoke: the cpu preset shrunk until every stage runs in about two minutes on 2 cores.
SMOKE_TRAIN: dict[str, Any] = {
    "steps": 5,
    "checkpoint_every": 5,
    "log_every": 5,
    "cpu_threads": 1,
    "model": {"filters": [8, 16, 32]},
    "conform": {"canvas_shape_vox": [40, 48, 40], "spacing_mm": 4.0},
    "data": {"patch_size_vox": [24, 24, 24]},
    "synth": {"max_maps": 1},
    "optim": {"warmup_steps": 0},
}
SMOKE_PAPER: dict[str, Any] = {
    "subjects": 3,
    "ks": [1],
    "folds": [1],
    "k_all": 0,
    "strategies": ["full-only", "multitask"],
    "fusion": {"spacing_mm": 4.0},
    "cost": {"step": 0.5, "run": 5.0, "prepare": 30.0, "register": 3.0, "segment": 1.5},
}

log = logging.getLogger("paper_experiment")


# --- the experiment ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cost:
    """Seconds per unit of work, for the estimate (the ``[paper.cost]`` table)."""

    step: float = 0.45  # one training step
    run: float = 10.0  # a training run's set-up, checkpoints
    segment: float = 2.0  # one test scan through the network, back to its grid
    evaluate: float = 1.5  # one scored pair
    register: float = 10.0  # one atlas registered to one target, both resamplings
    fuse: float = 2.5  # fusion per atlas and target, and the way back
    prepare: float = 120.0  # tissue maps, caches, synthetic label maps


@dataclass(frozen=True)
class Experiment:
    """A preset: the ``[paper]`` table and the training template."""

    name: str  # preset name (cpu, gpu, smoke, or the config's stem)
    config_path: Path  # the preset file; relative paths of the template are resolved against it
    dataset: Path  # the Mindboggle folder (sub-XX/t1w_brain.nii.gz, labels_dkt31_aseg.nii.gz)
    subjects: tuple[str, ...]  # sorted subject ids used
    ks: tuple[int, ...]  # full annotations per fold
    folds: tuple[int, ...]  # folds per k
    k_all: int  # the "all available" reference k (0 = not run)
    folds_all: int  # its folds
    strategies: tuple[str, ...]  # training strategies compared
    pretrain_fraction: float  # pretrain-finetune: share of steps on the partial heads
    jlf: bool  # run the multi-atlas baseline
    fusion: Any  # wholebrain.evaluate.jlf.FusionConfig
    cost: Cost  # the estimate's unit costs
    # Train on the automatic tissue maps of the test scans too (transductive, as a user who
    # segments a cohort can); false: only those of the training and unused scans.
    test_tissue: bool = True
    template: dict[str, Any] = field(default_factory=dict)  # training config values

    @property
    def all_ks(self) -> tuple[int, ...]:
        return (*self.ks, self.k_all) if self.k_all else self.ks

    def folds_of(self, k: int) -> int:
        return self.folds_all if k == self.k_all else self.folds[self.ks.index(k)]

    @property
    def steps(self) -> int:
        return int(self.template.get("steps", 50_000))


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, tables recursively (a new dict)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def load_experiment(path: Path, *, smoke: bool = False) -> Experiment:
    """Read a preset file (``[paper]`` + training template); ``smoke`` shrinks it.

    Raises:
        InputError: the file is missing or not TOML, or a ``[paper]`` value is wrong.
    """
    from wholebrain.errors import InputError
    from wholebrain.evaluate.jlf import FusionConfig
    from wholebrain.train.config import STRATEGIES

    if not path.is_file():
        raise InputError(path, "a preset TOML file", "no such file", "check --preset/--config")
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise InputError(path, "a TOML file", f"invalid TOML ({error})", "fix it") from None
    paper = dict(values.pop("paper", {}))
    name = path.stem.removeprefix("paper-")
    if smoke:
        values = _merge(values, SMOKE_TRAIN)
        paper = _merge(paper, SMOKE_PAPER)
        name = "smoke"

    def bad(key: str, expected: str) -> InputError:
        return InputError(path, f"[paper] {key} = {expected}", repr(paper.get(key)), f"fix {key}")

    dataset = (path.parent / str(paper.get("dataset", ""))).resolve()
    if not dataset.is_dir():
        raise InputError(
            dataset,
            "the Mindboggle dev folder (sub-XX/t1w_brain.nii.gz, labels_dkt31_aseg.nii.gz)",
            "no such folder",
            "set [paper] dataset, or put the data in ../shared/data",
        )
    found = sorted(
        p.name
        for p in dataset.iterdir()
        if (p / SCAN_FILE).is_file() and (p / LABEL_FILE).is_file()
    )
    wanted = paper.get("subjects", [])
    if isinstance(wanted, int):  # the first N (smoke)
        subjects = found[:wanted]
    else:
        missing = sorted(set(wanted) - set(found))
        if missing:
            raise bad("subjects", f"subjects of {dataset} (missing {', '.join(missing)})")
        subjects = sorted(wanted) or found
    ks = tuple(int(k) for k in paper.get("ks", (1, 3, 5)))
    folds = tuple(int(f) for f in paper.get("folds", (3, 3, 2)))
    if len(folds) != len(ks):
        raise bad("folds", f"one fold count per k ({len(ks)} values)")
    k_all = int(paper.get("k_all", 0))
    folds_all = int(paper.get("folds_all", 1))
    for k, n in (*zip(ks, folds, strict=True), *([(k_all, folds_all)] if k_all else [])):
        try:
            check_folds(len(subjects), k, n)
        except ValueError as error:
            raise InputError(
                path, "[paper] ks, folds, k_all, folds_all that fit", str(error), "fix them"
            ) from None
    strategies = tuple(paper.get("strategies", STRATEGIES))
    unknown = [s for s in strategies if s not in STRATEGIES]
    if unknown or not strategies:
        raise bad("strategies", f"a list of {', '.join(STRATEGIES)}")
    fraction = float(paper.get("pretrain_fraction", 0.5))
    if not 0 < fraction < 1:
        raise bad("pretrain_fraction", "a number between 0 and 1")
    try:
        fusion = FusionConfig(**paper.get("fusion", {}))
        cost = Cost(**paper.get("cost", {}))
    except (TypeError, ValueError) as error:
        raise InputError(
            path, "valid [paper.fusion] / [paper.cost] keys", str(error), "fix them"
        ) from None
    return Experiment(
        name=name,
        config_path=path.resolve(),
        dataset=dataset,
        subjects=tuple(subjects),
        ks=ks,
        folds=folds,
        k_all=k_all,
        folds_all=folds_all,
        strategies=strategies,
        pretrain_fraction=fraction,
        jlf=bool(paper.get("jlf", True)),
        test_tissue=bool(paper.get("test_tissue", True)),
        fusion=fusion,
        cost=cost,
        template=values,
    )


# --- folds ---------------------------------------------------------------------------------------


def check_folds(n_subjects: int, k: int, folds: int) -> None:
    """Raise ValueError unless ``folds`` folds of ``k`` training subjects out of ``n_subjects``
    leave test subjects and never repeat a training set."""
    if not 1 <= k < n_subjects:
        raise ValueError(f"k = {k} must leave test subjects: 1 <= k < {n_subjects}")
    distinct = n_subjects // math.gcd(n_subjects, k)  # the rotation's period
    if not 1 <= folds <= distinct:
        raise ValueError(
            f"{folds} folds of k = {k} out of {n_subjects} subjects: at most {distinct} "
            "distinct training sets in the rotation"
        )


def fold_split(subjects: Sequence[str], k: int, fold: int) -> tuple[list[str], list[str]]:
    """(training, test) subjects of a fold: the k subjects from position ``fold * k`` on in
    sorted order (wrapping round), and all the others."""
    ordered = sorted(subjects)
    check_folds(len(ordered), k, fold + 1)
    start = (fold * k) % len(ordered)
    train = [ordered[(start + i) % len(ordered)] for i in range(k)]
    return train, [s for s in ordered if s not in train]


@dataclass(frozen=True)
class Unit:
    """One result: a method trained (or fused) on one fold and scored on its test subjects."""

    k: int
    fold: int
    method: str  # a strategy or "jlf"
    train: tuple[str, ...]
    test: tuple[str, ...]

    def folder(self, preset_root: Path) -> Path:
        return preset_root / f"k{self.k}" / f"fold{self.fold}" / self.method

    @property
    def label(self) -> str:
        return f"k={self.k} fold {self.fold} {self.method}"


def plan_units(exp: Experiment, *, networks: bool = True, jlf: bool = True) -> list[Unit]:
    """Every unit of the experiment: by k, fold, then the strategies and JLF."""
    units = []
    for k in exp.all_ks:
        for fold in range(exp.folds_of(k)):
            train, test = fold_split(exp.subjects, k, fold)
            methods = [*(exp.strategies if networks else ()), *((JLF,) if jlf else ())]
            units += [Unit(k, fold, m, tuple(train), tuple(test)) for m in methods]
    return units


# --- estimate ------------------------------------------------------------------------------------


def registration_pairs(units: Iterable[Unit]) -> set[tuple[str, str]]:
    """(atlas, target) pairs the JLF units need."""
    return {(a, t) for u in units if u.method == JLF for a in u.train for t in u.test}


def estimate(
    exp: Experiment, units: Sequence[Unit], cached_pairs: set[tuple[str, str]], prepared: bool
) -> dict[str, float]:
    """Seconds of the units still to do, by kind (``prepare``, ``train``, ``score``, ``jlf``)."""
    cost = exp.cost
    parts = {"prepare": 0.0 if prepared else cost.prepare, "train": 0.0, "score": 0.0, "jlf": 0.0}
    for u in units:
        scans = len(u.test)
        if u.method == JLF:
            parts["jlf"] += scans * (len(u.train) * cost.fuse + cost.evaluate)
        else:
            parts["train"] += cost.run + exp.steps * cost.step
            parts["score"] += scans * (cost.segment + cost.evaluate)
    parts["jlf"] += len(registration_pairs(units) - cached_pairs) * cost.register
    return parts


def unit_estimate(exp: Experiment, unit: Unit, cached_pairs: set[tuple[str, str]]) -> float:
    return sum(estimate(exp, [unit], cached_pairs, prepared=True).values())


def duration(seconds: float) -> str:
    """``1 h 05 min``, ``4 min 10 s``, ``12 s``."""
    seconds = max(float(seconds), 0.0)
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    if seconds >= 60:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{seconds:.0f} s"


# --- data: scans, references, tissue maps, manifests ------------------------------------------


class Subjects:
    """The dev scans and their references (manual labels imported, white matter filled inside
    the brain as ``--ref-format mindboggle --ref-brain t1w_brain`` does), loaded once each."""

    def __init__(self, dataset: Path) -> None:
        self.dataset = dataset

    def scan_path(self, subject: str) -> Path:
        return self.dataset / subject / SCAN_FILE

    def label_path(self, subject: str) -> Path:
        return self.dataset / subject / LABEL_FILE

    @functools.cache  # noqa: B019 (one instance per process; its memory is wanted)
    def scan(self, subject: str) -> Any:
        from wholebrain.io import load_image

        return load_image(self.scan_path(subject))

    @functools.cache  # noqa: B019
    def reference(self, subject: str) -> Any:
        from wholebrain.io import Volume, load_labels
        from wholebrain.protocols.importers import import_labels

        scan = self.scan(subject)
        labels = load_labels(self.label_path(subject), like=scan)
        ids, _ = import_labels(
            labels.data,
            "mindboggle",
            brain_mask=scan.data > 0,
            spacing_mm=scan.spacing_mm,
            source=str(labels.path),
        )
        return Volume(ids, scan.affine, path=labels.path)


def make_tissue_maps(
    exp: Experiment, subjects: Subjects, out: Path, progress: bool
) -> dict[str, Path]:
    """``wholebrain partial`` (built-in classifier) on every dev scan; done ones are skipped."""
    from wholebrain.cohort import run_cohort, summary_path
    from wholebrain.errors import WholebrainError
    from wholebrain.partial import run as job

    folder = out / "partial"
    scans = [job.Scan(s, subjects.scan_path(s)) for s in exp.subjects]
    items = job.plan_maps(scans, folder, "tissue")
    report = run_cohort(
        items,
        functools.partial(job.classify_subject, job.TissueConfig()),
        summary_path(folder, "partial", None),
        progress=progress,
        description="tissue maps",
    )
    if report.failed:
        raise WholebrainError(f"tissue maps failed: {report.describe()}; see {report.summary}")
    return {item.subject: item.maps[0].path for item in items}


def write_fold_manifest(
    path: Path,
    unit: Unit,
    exp: Experiment,
    subjects: Subjects,
    tissue: Mapping[str, Path],
) -> Path:
    """The fold's manifest: the k full subjects, and every scan's tissue map (those of the
    test scans unless ``exp.test_tissue`` is false) as a partial subject of its own
    (``<id>_autotissue``), so a subject's cached entry is the same in every fold."""
    from wholebrain.data.manifest import Entry, write_manifest

    entries = [
        Entry(s, subjects.scan_path(s), subjects.label_path(s), "mindboggle", "dkt-aseg", "train")
        for s in unit.train
    ]
    entries += [
        Entry(s + TISSUE_SUFFIX, subjects.scan_path(s), tissue[s], "tissue", "tissue", "train")
        for s in exp.subjects
        if exp.test_tissue or s not in unit.test
    ]
    return write_manifest(entries, path, force=True)


def train_config(
    exp: Experiment, strategy: str, manifest: Path, output_dir: Path, cache_dir: Path
) -> Any:
    """The run's TrainConfig: the preset's template plus what differs per run."""
    from wholebrain.train.config import config_from_dict

    values = _merge(
        exp.template,
        {
            "strategy": strategy,
            "output_dir": str(output_dir),
            "data": {"manifest": str(manifest), "cache_dir": str(cache_dir)},
        },
    )
    if strategy == "pretrain-finetune":
        values["pretrain_steps"] = max(1, round(exp.steps * exp.pretrain_fraction))
    return config_from_dict(values, source=exp.config_path, base=exp.config_path.parent)


# --- running the units -------------------------------------------------------------------------


def _scores_rows(
    unit: Unit, results: Sequence[Any], seconds: Sequence[float], device: str
) -> list[dict[str, str]]:
    """One row per test subject with the group means of its pair."""
    from wholebrain.evaluate import Evaluation

    evaluation = Evaluation(results[0].protocol, tuple(results))
    means, _ = evaluation.group_values()
    names = list(evaluation.groups)
    rows = []
    for p, subject in enumerate(unit.test):
        row = {"k": str(unit.k), "fold": str(unit.fold), "method": unit.method, "subject": subject}
        for group in GROUPS:
            value = means["dice"][p, names.index(group)] if group in names else math.nan
            row[f"dice_{group}"] = f"{value:.6f}"
        row.update(seconds=f"{seconds[p]:.3f}", device=device)
        rows.append(row)
    return rows


def write_tsv(path: Path, rows: Sequence[Mapping[str, str]], columns: Sequence[str]) -> None:
    from wholebrain.io import atomic_output

    with atomic_output(path, force=True) as tmp:
        lines = ["\t".join(columns)] + ["\t".join(row[c] for c in columns) for row in rows]
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")


def read_tsv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def _finish_unit(
    unit: Unit, folder: Path, results: Sequence[Any], seconds: Sequence[float], device: str
) -> list[dict[str, str]]:
    from wholebrain.evaluate import Evaluation

    Evaluation(results[0].protocol, tuple(results)).write_tsv(folder / "evaluation.tsv", force=True)
    rows = _scores_rows(unit, results, seconds, device)
    write_tsv(folder / "scores.tsv", rows, SCORE_COLUMNS)  # last: its existence = done
    return rows


def run_network(
    unit: Unit,
    exp: Experiment,
    preset_root: Path,
    subjects: Subjects,
    *,
    device: str,
    progress: bool,
    prune: bool,
) -> list[dict[str, str]]:
    """Train (or resume) one strategy on one fold, segment its test scans, score them."""
    import torch

    from wholebrain.evaluate import evaluate_pair
    from wholebrain.io import Volume
    from wholebrain.segment.predict import Segmenter, resolve_device
    from wholebrain.train import read_checkpoint, train

    folder = unit.folder(preset_root)
    manifest = folder.parent / "manifest.csv"
    config = train_config(exp, unit.method, manifest, folder / "train", preset_root / "cache")
    last = folder / "train" / "last.pt"
    done = int(read_checkpoint(last)["step"]) if last.exists() else 0
    if done < config.steps:
        train(config, device=device, resume=last.exists(), progress=progress)
    used = resolve_device(device)
    if used.type == "cpu" and config.cpu_threads:
        torch.set_num_threads(config.cpu_threads)
    # One pass on one canvas (no flip, no shifted canvas) and one-hot votes at the label
    # boundaries: the runs scored before those became segment's defaults stay comparable with
    # the ones scored after; each would help every method alike.
    segmenter = Segmenter(last, device=device, tta=False, boundaries="labels", canvases=1)
    results, seconds = [], []
    for subject in unit.test:
        scan = subjects.scan(subject)
        segmentation = segmenter.segment(scan)
        seconds.append(sum(segmentation.seconds.values()))
        pred = Volume(segmentation.labels, scan.affine, path=Path(unit.method) / subject)
        results.append(evaluate_pair(pred, subjects.reference(subject)))
    rows = _finish_unit(unit, folder, results, seconds, used.type)
    if prune:
        for name in ("last.pt", "best.pt"):
            (folder / "train" / name).unlink(missing_ok=True)
    return rows


def warped_atlas(
    atlas: str, target: str, grid: Any, exp: Experiment, out: Path, subjects: Subjects
) -> Any:
    """Atlas ``atlas`` warped onto ``target``'s fusion grid, from the cache or registered now."""
    from wholebrain.evaluate.jlf import WarpedAtlas, warp_atlas

    path = out / "registrations" / exp.fusion.key() / f"{atlas}_to_{target}.npz"
    if path.exists():
        with np.load(path) as stored:
            if tuple(stored["labels"].shape) == grid.shape:
                return WarpedAtlas(
                    stored["image"].astype(np.float32),
                    stored["labels"].astype(np.int32),
                    float(stored["seconds"]),
                )
        log.warning("%s: made on another grid, registering again", path)
    warped = warp_atlas(subjects.scan(atlas), subjects.reference(atlas).data, grid, exp.fusion)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.npz")
    np.savez_compressed(
        tmp, image=warped.image, labels=warped.labels.astype(np.int16), seconds=warped.seconds
    )
    os.replace(tmp, path)
    return warped


def run_jlf(
    unit: Unit, exp: Experiment, preset_root: Path, out: Path, subjects: Subjects
) -> list[dict[str, str]]:
    """Multi-atlas segmentation of the fold's test scans with its k training subjects."""
    from wholebrain.evaluate import evaluate_pair
    from wholebrain.evaluate.jlf import fuse, fusion_grid, to_native
    from wholebrain.io import Volume

    results, seconds = [], []
    for target in unit.test:
        scan = subjects.scan(target)
        grid = fusion_grid(scan, exp.fusion)
        warped = [warped_atlas(a, target, grid, exp, out, subjects) for a in unit.train]
        started = time.perf_counter()
        labels = to_native(fuse(grid, warped, exp.fusion), grid)
        fused = time.perf_counter() - started
        seconds.append(grid.seconds + sum(w.seconds for w in warped) + fused)
        pred = Volume(labels, scan.affine, path=Path(JLF) / target)
        results.append(evaluate_pair(pred, subjects.reference(target)))
    return _finish_unit(unit, unit.folder(preset_root), results, seconds, "cpu")


# --- results: tables, claims, report ---------------------------------------------------------


@dataclass(frozen=True)
class Summary:
    """One (k, method) row of the results table."""

    k: int
    method: str
    folds: int  # folds with scores
    scans: int  # scored scans over all folds
    mean: dict[str, float]  # group -> mean over folds of the fold's mean Dice
    sd: dict[str, float]  # group -> sample sd over folds (NaN with one fold)
    fold_means: dict[str, list[float]]  # group -> the fold means, in fold order
    seconds: float  # median seconds per scan


def summarise(rows: Iterable[Mapping[str, str]]) -> list[Summary]:
    """Per (k, method): mean ± sd over folds of the folds' mean Dice, median seconds per scan."""
    grouped: dict[tuple[int, str], dict[int, list[Mapping[str, str]]]] = {}
    for row in rows:
        key = (int(row["k"]), row["method"])
        grouped.setdefault(key, {}).setdefault(int(row["fold"]), []).append(row)
    summaries = []
    for (k, method), folds in sorted(
        grouped.items(), key=lambda item: (item[0][0], _order(item[0][1]))
    ):
        fold_means = {
            g: [float(np.nanmean([float(r[f"dice_{g}"]) for r in folds[f]])) for f in sorted(folds)]
            for g in GROUPS
        }
        mean = {g: float(np.mean(v)) for g, v in fold_means.items()}
        sd = {
            g: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan for g, v in fold_means.items()
        }
        seconds = statistics.median(float(r["seconds"]) for f in folds.values() for r in f)
        scans = sum(len(f) for f in folds.values())
        summaries.append(Summary(k, method, len(folds), scans, mean, sd, fold_means, seconds))
    return summaries


def _order(method: str) -> int:
    known = ("full-only", "pretrain-finetune", "multitask", "marginal", JLF)
    return known.index(method) if method in known else len(known)


@dataclass(frozen=True)
class Claims:
    """The two claims of the issue, computed from the table."""

    share_held: bool | None  # k = 3 reaches 95 % of all-annotations Dice (None: not measured)
    share: float | None  # the ratio
    beats_held: bool | None  # multitask/marginal beats full-only at every k (None: not measured)
    text: str  # the paragraph for the report


def claims(summaries: Sequence[Summary], ks: Sequence[int], k_all: int) -> Claims:
    """Check the claims on mean Dice over all structures (definitions: the module docstring)."""
    table = {(s.k, s.method): s for s in summaries}

    def best_partial(k: int) -> Summary | None:
        candidates = [table[(k, m)] for m in PARTIAL_STRATEGIES if (k, m) in table]
        return max(candidates, key=lambda s: s.mean["all"]) if candidates else None

    share_held: bool | None = None
    share: float | None = None
    at_all = [s for s in summaries if s.k == k_all and s.method != JLF]
    ref = max(at_all, key=lambda s: s.mean["all"]) if at_all else None
    untrained = ref is not None and not ref.mean["all"] >= MIN_REFERENCE_DICE
    partial_k = best_partial(CLAIM_K)
    if ref is not None and untrained:
        first = (
            f"**Not testable at this budget.** The best network with all available full "
            f"annotations (k = {k_all}, {ref.method}) reaches a mean Dice (all structures) of "
            f"only {ref.mean['all']:.3f}, below the {MIN_REFERENCE_DICE} under which we count a "
            "network as not having learnt the task: shares and differences between strategies "
            "at this level are noise, evidence neither for nor against the claims. The numbers, "
            "for the record:"
        )
    elif ref is not None and partial_k is not None:
        share = partial_k.mean["all"] / ref.mean["all"] if ref.mean["all"] > 0 else math.nan
        share_held = bool(share >= CLAIM_SHARE)
        first = (
            f"**k = {CLAIM_K} reaches {CLAIM_SHARE:.0%} of the all-annotations Dice: "
            f"{'holds' if share_held else 'does not hold'}.** The better partial-annotation "
            f"model at k = {CLAIM_K} ({partial_k.method}) has mean Dice (all structures) "
            f"{partial_k.mean['all']:.3f}, {share:.1%} of the {ref.mean['all']:.3f} of the best "
            f"network with all available full annotations (k = {k_all}, {ref.method})."
        )
    else:
        first = (
            f"**k = {CLAIM_K} vs all annotations: not measured** (needs multitask or marginal "
            f"at k = {CLAIM_K} and a network at k_all = {k_all or 'none'})."
        )
    details = []
    verdicts = []
    missing = []
    for k in ks:
        full = table.get((k, "full-only"))
        partial = best_partial(k)
        if full is None or partial is None:
            missing.append(k)
            continue
        gain = partial.mean["all"] - full.mean["all"]
        verdicts.append(gain > 0)
        folds = min(partial.folds, full.folds)
        wins = sum(partial.fold_means["all"][f] > full.fold_means["all"][f] for f in range(folds))
        details.append(
            f"- k = {k}: {partial.method} {partial.mean['all']:.3f} vs full-only "
            f"{full.mean['all']:.3f} ({gain:+.3f}; higher in {wins} of {folds} folds)"
        )
    beats_held: bool | None = None
    if untrained:
        return Claims(None, None, None, "\n".join([first, *details]))
    if verdicts and not missing:
        beats_held = all(verdicts)
        second = (
            "**multitask (or marginal) beats full-only at every k: "
            f"{'holds' if beats_held else 'does not hold'}** (mean Dice over all structures, "
            "the better of multitask and marginal at each k):"
        )
    else:
        where = ", ".join(map(str, missing)) or "any k"
        second = f"**multitask (or marginal) vs full-only: not measured** at k = {where}."
    text = "\n".join([first, "", second, *details])
    return Claims(share_held, share, beats_held, text)


def _cell(mean: float, sd: float) -> str:
    if not math.isfinite(mean):
        return "n/a"
    return f"{mean:.3f} ± {sd:.3f}" if math.isfinite(sd) else f"{mean:.3f}"


def results_table(summaries: Sequence[Summary], k_all: int) -> str:
    """The markdown table: mean ± sd over folds per group, seconds per scan."""
    lines = [
        "| k | method | folds (scans) | Dice cortical | Dice subcortical | Dice all | s / scan |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for s in summaries:
        k = f"{s.k} (all)" if s.k == k_all else str(s.k)
        cells = [_cell(s.mean[g], s.sd[g]) for g in GROUPS]
        lines.append(
            f"| {k} | {s.method} | {s.folds} ({s.scans}) | {' | '.join(cells)} | {s.seconds:.1f} |"
        )
    return "\n".join(lines)


def plot(summaries: Sequence[Summary], k_all: int, path: Path, title: str) -> Path:
    """Dice vs k per method, one panel per group, error bars = sd over folds (OO matplotlib)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from wholebrain.io import atomic_output

    figure = Figure(figsize=(12, 3.8), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.subplots(1, len(GROUPS), sharex=True)
    methods = sorted({s.method for s in summaries}, key=_order)
    ks = sorted({s.k for s in summaries})
    for ax, group in zip(axes, GROUPS, strict=True):
        for index, method in enumerate(methods):
            points = [s for s in summaries if s.method == method]
            if not points:
                continue
            offset = (index - (len(methods) - 1) / 2) * 0.08
            ax.errorbar(
                [s.k + offset for s in points],
                [s.mean[group] for s in points],
                yerr=[0.0 if not math.isfinite(s.sd[group]) else s.sd[group] for s in points],
                marker="o",
                capsize=3,
                linestyle="--" if method == JLF else "-",
                label=method,
            )
        ax.set_title(f"Dice, {group}")
        ax.set_xlabel("full annotations k")
        ax.set_xticks(ks, [f"{k}\n(all)" if k == k_all else str(k) for k in ks])
        ax.grid(alpha=0.3)
    reference = [s.mean["all"] for s in summaries if s.k == k_all and s.method != JLF]
    if reference:  # the bar of the first claim
        axes[-1].axhline(
            CLAIM_SHARE * max(reference),
            color="grey",
            linestyle=":",
            label=f"{CLAIM_SHARE:.0%} of the best at k = {k_all}",
        )
    axes[0].set_ylabel("mean Dice over test scans, mean ± sd over folds")
    axes[-1].legend(fontsize="small")
    figure.suptitle(title)
    with atomic_output(path, force=True) as tmp:
        figure.savefig(tmp, dpi=110, format="png")
    return path


def budget_text(exp: Experiment) -> str:
    """The training budget shared by every strategy, and the baseline's settings."""
    t = exp.template
    conform, model, data, optim, synth = (
        t.get(s, {}) for s in ("conform", "model", "data", "optim", "synth")
    )
    canvas = "x".join(str(n) for n in conform.get("canvas_shape_vox", (192, 224, 224)))
    patch = "x".join(str(n) for n in data.get("patch_size_vox", (128, 128, 128)))
    full = data.get("full_fraction", 0.5)
    synth_fraction = synth.get("fraction", 0.25) if synth.get("enabled") else 0.0
    pre = max(1, round(exp.steps * exp.pretrain_fraction))
    f = exp.fusion
    folds = ", ".join(f"k={k}: {exp.folds_of(k)}" for k in exp.all_ks)
    return "\n".join(
        [
            f"- subjects: {len(exp.subjects)} ({exp.subjects[0]} … {exp.subjects[-1]}); "
            f"folds {folds}"
            + (f"; k = {exp.k_all} stands for all available full annotations" if exp.k_all else ""),
            f"- every strategy: {exp.steps} steps of batch {t.get('batch_size', 2)}, patches "
            f"{patch} on a {canvas} canvas of {conform.get('spacing_mm', 1.0):g} mm voxels, "
            f"network filters {list(model.get('filters', []))}, "
            f"{optim.get('optimizer', 'adamw')} lr {optim.get('lr', 1e-3):g} "
            f"({optim.get('schedule', 'poly')}), seed {t.get('seed', 0)}, "
            f"amp {t.get('amp', 'auto')}",
            "- partial annotations: built-in tissue maps of "
            + ("every scan, test scans included" if exp.test_tissue else "the non-test scans")
            + "; synthetic heads drawn on the fly",
            f"- batch slots (multitask, marginal): full {full:g}, tissue maps "
            f"{1 - full - synth_fraction:g}, synthetic heads {synth_fraction:g}; full-only: full "
            f"only; pretrain-finetune: {pre} steps on tissue + synthetic, then {exp.steps - pre} "
            "on the full subjects; loss weights "
            + ", ".join(f"{k} {v:g}" for k, v in t.get("loss_weights", {}).items()),
            f"- JLF: ANTs {f.type_of_transform} on a {f.spacing_mm:g} mm grid (the target "
            "conformed as the network's input is, cropped to the brain), patch radius "
            f"{f.patch_radius_vox}, search radius {f.search_radius_vox} (voxels of that grid), "
            f"beta {f.beta:g}; back to the scan's grid as the network's labels go; k = 1 is "
            "single-atlas registration",
        ]
    )


def preset_section(preset_root: Path, results_dir: Path) -> str | None:
    """The markdown section of one preset folder, or None when it has no scores."""
    scores = preset_root / "scores.tsv"
    meta_path = preset_root / "experiment.json"
    if not scores.exists() or not meta_path.exists():
        return None
    meta = json.loads(meta_path.read_text())
    rows = read_tsv(scores)
    if not rows:
        return None
    summaries = summarise(rows)
    k_all = int(meta["k_all"])
    verdict = claims(summaries, meta["ks"], k_all)
    name = preset_root.name
    png = plot(summaries, k_all, results_dir / f"paper-{name}.png", f"preset {name}")
    invocations = (
        [
            json.loads(line)
            for line in (preset_root / "invocations.jsonl").read_text().splitlines()
            if line.strip()
        ]
        if (preset_root / "invocations.jsonl").exists()
        else []
    )
    worked = [i for i in invocations if i.get("units_run", 0) > 0] or invocations
    total = sum(i.get("seconds", 0.0) for i in invocations)
    devices = sorted({d for i in invocations for d in i.get("devices", [])})
    header = worked[-1]["header"] if worked else "(no invocation recorded)"
    commands = list(dict.fromkeys(i["command"] for i in worked))
    expected = meta["expected_units"]
    done = len({(r["k"], r["fold"], r["method"]) for r in rows})
    status = "complete" if done >= expected else f"incomplete: {done} of {expected} runs"
    return "\n".join(
        [
            f"## Preset `{name}` ({status})",
            "",
            "Machine, date and versions of the last invocation that ran something:",
            "",
            "```text",
            header.rstrip(),
            "```",
            "",
            "Commands (from the repository root):",
            "",
            "```bash",
            *commands,
            "```",
            "",
            f"Compute: {duration(total)} over {len(invocations)} invocation(s) on "
            f"{', '.join(devices) or 'n/a'} (device time, when a GPU was lent: the invocations "
            f"that list cuda). Preset file: `{meta['config']}`.",
            "",
            "Budget:",
            "",
            meta["budget"],
            "",
            "Mean Dice over each fold's test scans, then mean ± sd over folds (a single fold "
            "has no sd); seconds per scan: median over all scored scans.",
            "",
            results_table(summaries, k_all),
            "",
            f"![Dice vs k, preset {name}]({os.path.relpath(png, results_dir)})",
            "",
            "### The claim",
            "",
            verdict.text,
            "",
            f"Every score: `{_shown(scores)}`.",
        ]
    )


def _shown(path: Path) -> Path:
    """``path`` relative to the repository when inside it."""
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def write_report(out: Path, results: Path) -> Path:
    """``results`` (markdown) from every preset folder under ``out`` that has scores."""
    from wholebrain.io import atomic_output

    sections = (
        [
            s
            for p in sorted(out.iterdir())
            if p.is_dir() and (s := preset_section(p, results.parent))
        ]
        if out.is_dir()
        else []
    )
    now = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    text = "\n".join(
        [
            "# Results: the paper's experiment",
            "",
            f"Generated by `benchmarks/paper_experiment.py` on {now}; do not edit by hand "
            "(`python benchmarks/paper_experiment.py --report-only` writes it again).",
            "",
            "Claim under test (issue 6, after Dai et al., MICCAI DART 2019): with partial "
            "annotations, k = 3 full annotations reach at least 95 % of the Dice that all "
            "available full annotations give, and the multi-task (or marginal) model beats "
            "full-only at every k.",
            "",
            "Definitions (the docstring of `benchmarks/paper_experiment.py` has them in "
            "full): subjects sorted by id, fold f of k trains on the k subjects from position "
            "f·k on and tests on all the others; partial annotations are the automatic tissue "
            "maps of every dev scan plus synthetic whole heads drawn on the fly; 'all "
            "available' is the preset's k_all and its Dice that of the best network there; "
            "the claims compare mean Dice over all structures, taking the better of multitask "
            "and marginal. Predictions are scored on each scan's native 1 mm grid against its "
            "manual labels (white matter filled inside the brain mask) with "
            "`wholebrain.evaluate`.",
            "",
            *(s + "\n" for s in sections),
            *([] if sections else ["No preset has results yet."]),
        ]
    )
    with atomic_output(results, force=True) as tmp:
        tmp.write_text(text.rstrip() + "\n", encoding="utf-8")
    return results


# --- main ----------------------------------------------------------------------------------------


def collect_scores(preset_root: Path, units: Sequence[Unit]) -> list[dict[str, str]]:
    """Every finished unit's rows, into ``<preset>/scores.tsv``."""
    rows: list[dict[str, str]] = []
    for unit in units:
        path = unit.folder(preset_root) / "scores.tsv"
        if path.exists():
            rows += read_tsv(path)
    write_tsv(preset_root / "scores.tsv", rows, SCORE_COLUMNS)
    return rows


def _versions() -> dict[str, str]:
    import wholebrain

    versions = {"wholebrain": wholebrain.__version__}
    for name in ("monai", "ants"):
        with contextlib.suppress(ImportError):
            versions[name] = __import__(name).__version__
    return versions


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # train() saves last.pt on KeyboardInterrupt: SIGTERM does the same


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group()
    which.add_argument(
        "--preset", choices=("cpu", "gpu"), default="cpu", help="benchmarks/paper-PRESET.toml"
    )
    which.add_argument("--config", type=Path, help="another preset file")
    parser.add_argument("--smoke", action="store_true", help="the cpu preset shrunk to ~2 min")
    parser.add_argument(
        "--out", type=Path, help="results folder (out/paper; smoke: out/paper-smoke)"
    )
    parser.add_argument(
        "--results", type=Path, help="the markdown report (docs/results.md; smoke: OUT/results.md)"
    )
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--estimate", action="store_true", help="print the plan and its cost, stop")
    parser.add_argument("--report-only", action="store_true", help="only write the report")
    stage = parser.add_mutually_exclusive_group()
    stage.add_argument("--no-jlf", action="store_true", help="skip the multi-atlas baseline")
    stage.add_argument("--jlf-only", action="store_true", help="only the multi-atlas baseline")
    parser.add_argument(
        "--max-minutes", type=float, default=0.0, help="start no unit that would end after this"
    )
    parser.add_argument("--prune", action="store_true", help="delete checkpoints of scored runs")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from wholebrain.errors import WholebrainError

    args = parse_args(argv)
    # As typed from the repository root (argv: the arguments, when called as a function).
    command = ["benchmarks/paper_experiment.py", *(sys.argv[1:] if argv is None else argv)]
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    config_path = args.config or CONFIGS / f"paper-{'cpu' if args.smoke else args.preset}.toml"
    out = (args.out or ROOT / "out" / ("paper-smoke" if args.smoke else "paper")).resolve()
    results = (
        args.results or (out / "results.md" if args.smoke else ROOT / "docs" / "results.md")
    ).resolve()
    if args.report_only:
        print(f"wrote {write_report(out, results)}")
        return 0

    try:
        exp = load_experiment(config_path, smoke=args.smoke)
    except WholebrainError as error:
        print(f"paper_experiment: error: {error}", file=sys.stderr)
        return 1
    preset_root = out / exp.name
    units = plan_units(exp, networks=not args.jlf_only, jlf=exp.jlf and not args.no_jlf)
    todo = [u for u in units if not (u.folder(preset_root) / "scores.tsv").exists()]
    registrations = out / "registrations" / exp.fusion.key()
    cached = (
        {tuple(p.stem.split("_to_")) for p in registrations.glob("*_to_*.npz")}
        if registrations.is_dir()
        else set()
    )
    prepared = (out / "partial").is_dir() and (preset_root / "cache").is_dir()
    parts = estimate(exp, todo, cached, prepared)

    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        machine.header(f"wholebrain paper experiment, preset {exp.name}", command, _versions())
    header = buffer.getvalue()
    print(header, end="")
    pairs = len(registration_pairs(todo) - cached)
    networks = [u for u in todo if u.method != JLF]
    print(
        f"plan: {len(units)} runs ({len(todo)} to do): {len(networks)} trainings of {exp.steps} "
        f"steps, {sum(len(u.test) for u in todo)} scans to score, {pairs} registrations; "
        f"subjects {len(exp.subjects)}, k {list(exp.all_ks)}, strategies {list(exp.strategies)}"
        f"{', jlf' if exp.jlf and not args.no_jlf else ''}"
    )
    print(
        "estimate: "
        + ", ".join(f"{k} {duration(v)}" for k, v in parts.items())
        + f"; total {duration(sum(parts.values()))} "
        f"(cost model: [paper.cost] of {config_path.name})",
        flush=True,
    )
    if args.estimate:
        return 0

    preset_root.mkdir(parents=True, exist_ok=True)
    (preset_root / "experiment.json").write_text(
        json.dumps(
            {
                "config": str(_shown(exp.config_path)),
                "k_all": exp.k_all,
                "ks": list(exp.ks),
                "expected_units": len(plan_units(exp, jlf=exp.jlf)),
                "budget": budget_text(exp),
                "fusion": asdict(exp.fusion),
            },
            indent=1,
        )
    )
    signal.signal(signal.SIGTERM, _interrupt)
    started = time.monotonic()
    progress = not args.quiet
    subjects = Subjects(exp.dataset)
    units_run = 0
    devices: set[str] = set()
    predicted_done = actual_done = 0.0
    stopped = ""
    try:
        needs_tissue = any(u.method != JLF for u in todo)
        tissue = make_tissue_maps(exp, subjects, out, progress) if needs_tissue else {}
        for index, unit in enumerate(todo, start=1):
            cached_now = cached | registration_pairs(units[: units.index(unit)])
            predicted = unit_estimate(exp, unit, cached_now)
            if index == 1 and not prepared:
                predicted += exp.cost.prepare  # the caches are built by the first training
            ratio = actual_done / predicted_done if predicted_done else 1.0
            elapsed = time.monotonic() - started
            if args.max_minutes and elapsed + predicted * ratio > args.max_minutes * 60:
                stopped = f"time budget: {unit.label} would end after {args.max_minutes:g} min"
                break
            if unit.method != JLF:
                manifest = unit.folder(preset_root).parent / "manifest.csv"
                write_fold_manifest(manifest, unit, exp, subjects, tissue)
            began = time.monotonic()
            if unit.method == JLF:
                rows = run_jlf(unit, exp, preset_root, out, subjects)
            else:
                rows = run_network(
                    unit,
                    exp,
                    preset_root,
                    subjects,
                    device=args.device,
                    progress=progress,
                    prune=args.prune,
                )
            took = time.monotonic() - began
            units_run += 1
            devices |= {r["device"] for r in rows}
            predicted_done += predicted
            actual_done += took
            left = sum(
                unit_estimate(exp, u, cached | registration_pairs(units[: units.index(u)]))
                for u in todo[index:]
            ) * (actual_done / predicted_done)
            dice = " / ".join(
                f"{np.nanmean([float(r[f'dice_{g}']) for r in rows]):.3f}" for g in GROUPS
            )
            print(
                f"[{index}/{len(todo)}] {unit.label}: Dice cortical/subcortical/all {dice}; "
                f"{took:.0f} s (estimated {predicted:.0f} s); elapsed "
                f"{duration(time.monotonic() - started)}, about {duration(left)} left",
                flush=True,
            )
    except KeyboardInterrupt:
        stopped = "interrupted (training state saved; run the same command to go on)"
    except WholebrainError as error:
        stopped = f"error: {error}"
    finally:
        seconds = time.monotonic() - started
        with (preset_root / "invocations.jsonl").open("a", encoding="utf-8") as handle:
            record = {
                "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
                "command": "python " + " ".join(command),
                "header": header,
                "seconds": seconds,
                "units_run": units_run,
                "devices": sorted(devices),
            }
            handle.write(json.dumps(record) + "\n")
    collect_scores(preset_root, units)
    report = write_report(out, results)
    remaining = [u for u in units if not (u.folder(preset_root) / "scores.tsv").exists()]
    print(stopped or ("all runs done" if not remaining else f"{len(remaining)} runs left"))
    print(f"scores: {preset_root / 'scores.tsv'}\nreport: {report}")
    if stopped.startswith("error"):
        return 1
    return 130 if stopped.startswith("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
