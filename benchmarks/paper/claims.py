"""What the scores say: per (k, method) summaries over folds, and the issue's two claims
checked on them."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .plan import GROUPS, JLF

PARTIAL_STRATEGIES = ("multitask", "marginal")  # "with partial annotations", as the claim says
CLAIM_K = 3  # the k of the 95 % claim
CLAIM_SHARE = 0.95
# Below this mean Dice (all structures) the all-annotations network has not learnt the task:
# ratios and differences between strategies are then noise, evidence neither way (a 300-step
# CPU run scored 0.005). Multi-atlas fusion with the same 8 atlases reaches 0.67.
MIN_REFERENCE_DICE = 0.3


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
        grouped.items(), key=lambda item: (item[0][0], method_order(item[0][1]))
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


def method_order(method: str) -> int:
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
    """Check the claims on mean Dice over all structures (definitions: the docstring of
    ``benchmarks/paper_experiment.py``)."""
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
