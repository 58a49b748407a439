"""The experiment as planned: a preset read into an :class:`Experiment`, its folds, the units
of work (one method on one fold) and what they cost (definitions: the docstring of
``benchmarks/paper_experiment.py``)."""

from __future__ import annotations

import copy
import math
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

JLF = "jlf"
GROUPS = ("cortical", "subcortical", "all")
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


def merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, tables recursively (a new dict)."""
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
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
        values = merge(values, SMOKE_TRAIN)
        paper = merge(paper, SMOKE_PAPER)
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
