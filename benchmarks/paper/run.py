"""Running the units: the dev scans and their references, the automatic tissue maps, each
fold's manifest and training config, then each network trained (or the atlases fused) and its
test scans scored into ``scores.tsv`` rows."""

from __future__ import annotations

import csv
import functools
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .plan import GROUPS, JLF, LABEL_FILE, SCAN_FILE, Experiment, Unit, merge

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

# The script's logger name, kept from when this was one file: its warnings read the same.
log = logging.getLogger("paper_experiment")


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

    values = merge(
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


def collect_scores(preset_root: Path, units: Sequence[Unit]) -> list[dict[str, str]]:
    """Every finished unit's rows, into ``<preset>/scores.tsv``."""
    rows: list[dict[str, str]] = []
    for unit in units:
        path = unit.folder(preset_root) / "scores.tsv"
        if path.exists():
            rows += read_tsv(path)
    write_tsv(preset_root / "scores.tsv", rows, SCORE_COLUMNS)
    return rows
