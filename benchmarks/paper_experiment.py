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
import datetime
import io
import json
import logging
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
from paper.plan import (  # benchmarks/paper/, on sys.path the same way
    GROUPS,
    JLF,
    budget_text,
    duration,
    estimate,
    load_experiment,
    plan_units,
    registration_pairs,
    unit_estimate,
)
from paper.report import shown, write_report
from paper.run import (
    Subjects,
    collect_scores,
    make_tissue_maps,
    run_jlf,
    run_network,
    write_fold_manifest,
)

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "benchmarks"  # the presets sit beside this script: they are not train configs


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
                "config": str(shown(exp.config_path)),
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
