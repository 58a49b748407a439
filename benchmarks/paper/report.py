"""The report: the results table and plot of each preset folder's scores, the claims'
paragraph, and ``docs/results.md`` made of them."""

from __future__ import annotations

import datetime
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from .claims import CLAIM_SHARE, Summary, claims, method_order, summarise
from .plan import GROUPS, JLF, duration
from .run import read_tsv

ROOT = Path(__file__).resolve().parents[2]  # the repository: this is benchmarks/paper/report.py


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
    methods = sorted({s.method for s in summaries}, key=method_order)
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
            f"Every score: `{shown(scores)}`.",
        ]
    )


def shown(path: Path) -> Path:
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
