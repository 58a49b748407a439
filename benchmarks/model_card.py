"""Write docs/model_card.md for a model from what was measured: its checkpoint, its training run
and ``wholebrain evaluate`` tables on subjects it never saw.

    python benchmarks/model_card.py --model src/wholebrain/models/dkt-aseg.pt \\
        --run out/runs/shipped-cpu-2mm --eval out/eval/val3900.tsv --baseline \\
        out/eval/jlfnosignal.tsv --baseline-name "JLF, 8 atlases, in the target's mask" \\
        --compare out/eval/jlf.tsv "JLF as fused" -o docs/model_card.md

Nothing in the card is typed by hand except the prose around the numbers: the network and its
canvas come from the checkpoint, the data counts from the run's manifest, the training time and
the validation curve from the run's ``metrics.csv``, every Dice from the evaluation tables
(their ``mean`` rows: the mean over the evaluated subjects).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import math
import platform
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GROUPS = ("cortical", "subcortical", "all")


@dataclass(frozen=True)
class Scores:
    """The ``mean`` rows of one ``wholebrain evaluate`` table."""

    pairs: list[tuple[str, str]]  # (prediction, reference) per pair
    groups: dict[str, float]  # group -> mean Dice over pairs
    group_sd: dict[str, float]
    structures: dict[int, tuple[str, float, float]]  # id -> (name, Dice, HD95 mm)


def read_scores(path: Path) -> Scores:
    """Read a ``wholebrain evaluate -o TABLE.tsv`` file."""
    pairs: dict[str, tuple[str, str]] = {}
    groups: dict[str, float] = {}
    group_sd: dict[str, float] = {}
    structures: dict[int, tuple[str, float, float]] = {}
    with path.open(newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            pair, kind = row["pair"], row["kind"]
            if pair not in ("mean", "sd"):
                pairs.setdefault(pair, (row["pred"], row["ref"]))
            elif kind == "group":
                (groups if pair == "mean" else group_sd)[row["name"]] = _number(row["dice"])
            elif kind == "structure" and pair == "mean":
                structures[int(row["id"])] = (
                    row["name"],
                    _number(row["dice"]),
                    _number(row["hd95_mm"]),
                )
    if not structures or any(g not in groups for g in GROUPS):
        raise SystemExit(f"{path}: not a wholebrain evaluate table with mean rows")
    return Scores(list(pairs.values()), groups, group_sd, structures)


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return math.nan


def read_metrics(run: Path) -> tuple[list[tuple[int, float]], float, int]:
    """(step, validation Dice) pairs, training seconds and the last step of a run folder."""
    curve: list[tuple[int, float]] = []
    seconds, last = 0.0, 0
    with (run / "metrics.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            step = int(row["step"])
            if row.get("val_dice"):
                curve.append((step, float(row["val_dice"])))
            seconds, last = max(seconds, float(row["seconds"])), max(last, step)
    return curve, seconds, last


def started_from(init_weights: Path) -> str:
    """The card's line for a run that began from another run's weights (``init_weights``)."""
    line = f"- Started from the weights of `{_rel(init_weights)}`, not at random"
    if (init_weights.parent / "metrics.csv").is_file():
        curve, seconds, last = read_metrics(init_weights.parent)
        best = max(curve, key=lambda point: point[1]) if curve else None
        line += (
            f": an earlier stage, {last} steps and {seconds / 3600:.1f} h of training before "
            "the ones below"
            + (f" (its best validation Dice {best[1]:.3f}, step {best[0]})" if best else "")
        )
    elif init_weights.is_file():
        # The earlier run's folder is gone (a new machine): the checkpoint still says its step.
        from wholebrain.train import read_checkpoint

        earlier = read_checkpoint(init_weights)
        if "step" in earlier:
            line += f": step {earlier['step']} of an earlier run"
            if earlier.get("created"):
                line += f", exported {str(earlier['created'])[:10]}"
    return line + "."


def manifest_counts(manifest: Path) -> Counter[str]:
    """Rows per (protocol, split) of a training manifest, e.g. ``dkt-aseg/train``."""
    counts: Counter[str] = Counter()
    with manifest.open(newline="") as handle:
        for row in csv.DictReader(handle):
            counts[f"{row.get('protocol') or row['format']}/{row.get('split') or 'train'}"] += 1
    return counts


def read_ceiling(path: Path, spacing: float) -> dict[str, float] | None:
    """The ``mean`` row of benchmarks/grid_ceiling.py's output at ``spacing`` mm, or None.

    Returns {"cortical", "subcortical", "all"} Dice of the manual labels sent through a canvas of
    that spacing and back: the best any network on that grid could score.
    """
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        fields = line.split()
        if len(fields) >= 7 and fields[2] == "mean":
            try:
                if math.isclose(float(fields[0]), spacing):
                    return dict(zip(GROUPS, map(float, fields[3:6]), strict=True))
            except ValueError:
                continue
    return None


def read_symmetry(
    path: Path, step: int, calibrated: bool = False, pose: str = "none"
) -> dict[str, str] | None:
    """The ``symmetry:`` line of benchmarks/mirror_symmetry.py's output, if it measured the
    checkpoint of ``step`` with the same calibration and pose (an older model's symmetry says
    nothing about this one; lines without the fields were measured uncalibrated, unposed), or
    None. ``pose``: :func:`pose_field` of the checkpoint.

    Returns its fields: subjects, mean_abs_change, largest_change, cortical_gap, mirror_gap.
    """
    if not path.is_file():
        return None
    for line in path.read_text().splitlines():
        if line.startswith("symmetry: "):
            fields = dict(item.split("=", 1) for item in line.split()[1:] if "=" in item)
            if fields.get("step") == str(step) and _same_calibration(fields, calibrated, pose):
                return fields
    return None


def pose_field(pitch_deg: float | None) -> str:
    """How the benchmarks' summary lines name a segmenter's pose (``pose=``)."""
    return "none" if pitch_deg is None else f"{pitch_deg:.1f}"


def _same_calibration(fields: dict[str, str], calibrated: bool, pose: str) -> bool:
    return fields.get("calibrated", "no") == ("yes" if calibrated else "no") and (
        fields.get("pose", "none") == pose
    )


@dataclass(frozen=True)
class RobustnessRow:
    """One ``mean`` row of benchmarks/robustness.py: a variant of the held-out scans."""

    variant: str
    cortical: float
    subcortical: float
    all: float
    round_trip: float | None  # the manual labels' own Dice through the variant's grid


def read_robustness(
    path: Path, step: int, calibrated: bool, pose: str = "none"
) -> tuple[str, list[RobustnessRow]]:
    """The subjects and mean rows of benchmarks/robustness.py's output, if it measured this
    checkpoint (step, calibration and pose); else ("", [])."""
    if not path.is_file():
        return "", []
    lines = path.read_text().splitlines()
    found = [
        (i, dict(item.split("=", 1) for item in line.split()[1:] if "=" in item))
        for i, line in enumerate(lines)
        if line.startswith("robustness: ")
    ]
    matching = [
        (i, fields)
        for i, fields in found
        if fields.get("step") == str(step) and _same_calibration(fields, calibrated, pose)
    ]
    if not matching:
        return "", []
    start, fields = matching[-1]
    rows = []
    for line in lines[start + 1 :]:
        # Columns as robustness._row writes them: variant (11), subject (8), grid (22), numbers.
        if len(line) < 20 or line[12:20].strip() != "mean":
            continue
        numbers = [float(n) for n in line[43:].split()]
        trip = numbers[4] if len(numbers) > 4 else None
        rows.append(RobustnessRow(line[:11].strip(), numbers[0], numbers[1], numbers[2], trip))
    return fields.get("subjects", "").replace(",", "/"), rows


def symmetry_line(symmetry: dict[str, str]) -> str:
    """The model card's bullet on left-right symmetry, its reading decided by the numbers: a
    hemisphere gap that moves with the anatomy to the mirror's other side is the subjects', one
    that stays with the label side is the model's."""
    gap, mirror_gap = float(symmetry["cortical_gap"]), float(symmetry["mirror_gap"])
    subjects = symmetry["subjects"].replace(",", "/")
    follows_anatomy = abs(gap - mirror_gap) <= abs(gap) / 2
    reading = (
        "the gap moves with the anatomy to the mirror image's other side, so it is these "
        "subjects' (their right hemispheres' anatomy and tracing), not a bias of the model"
        if follows_anatomy
        else "the gap stays with the label side on the mirror image: the model is biased"
    )
    return (
        f"- Left-right: on {subjects} and their mirror images, each structure's Dice moves by "
        f"{float(symmetry['mean_abs_change']):.3f} on average (at most "
        f"{float(symmetry['largest_change']):.3f}) from the original to its mirror twin. The "
        f"left cortex scores {gap:+.3f} over the right; {reading} "
        "(`benchmarks/mirror_symmetry.py`, `benchmarks/results/mirror_symmetry.txt`)."
    )


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def table(header: list[str], rows: Iterable[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


DEFAULT_HOW = (
    "by `wholebrain segment` with its defaults (flip test-time augmentation, two canvases "
    "offset by half a voxel, the model's calibration if it has one, the cortical ribbon refined "
    "with the scan's own intensities)"
)


def card(
    checkpoint: dict[str, Any],
    model_path: Path,
    scores: Scores,
    baseline: Scores | None,
    baseline_name: str,
    run: Path | None,
    machine: str,
    target: float = 0.80,
    ceiling: dict[str, float] | None = None,
    how: str = DEFAULT_HOW,
    symmetry: dict[str, str] | None = None,
    chosen: str | None = None,
    others: Sequence[tuple[str, Scores]] = (),
    robustness: tuple[str, Sequence[RobustnessRow]] = ("", ()),
) -> str:
    """The card's markdown. ``others``: (name, scores) of more labellings of the same subjects,
    shown beside the baseline in the group table (e.g. the baseline post-processed otherwise);
    ``robustness``: :func:`read_robustness` of the same checkpoint, or nothing."""
    config = checkpoint["train_config"]
    conform = checkpoint["conform"]
    n_params = sum(t.numel() for t in checkpoint["model"]["state_dict"].values())
    canvas = "x".join(str(n) for n in conform["canvas_shape_vox"])
    spacing = conform["spacing_mm"]
    data, optim, model = config["data"], config["optim"], config["model"]
    weights = ", ".join(f"{k} {v:g}" for k, v in config["loss_weights"].items())
    g = scores.groups
    lines = [
        "# Model card: the shipped `dkt-aseg` model",
        "",
        f"*Generated by `benchmarks/model_card.py` on {dt.date.today().isoformat()} from "
        f"`{_rel(model_path)}`, its training run and `wholebrain evaluate` tables; "
        "numbers are measured, not typed.*",
        "",
        "## What it is",
        "",
        f"A 3D U-Net ({len(model['filters'])} levels, filters {model['filters']}, "
        f"{n_params / 1e6:.1f} M parameters, {model_path.stat().st_size / 1e6:.1f} MB as float16) "
        f"that labels a T1-weighted scan with the {checkpoint['full_protocol']} protocol: the 62 "
        "DKT31 cortical regions (FreeSurfer ids 1002-2035) and the FreeSurfer aseg structures, "
        f"on a {canvas} canvas of {spacing:g} mm voxels (RAS); `wholebrain segment` conforms "
        "any scan to it and returns labels on the scan's own grid.",
        "",
        f"**Accuracy on held-out subjects: mean Dice {fmt(g['all'])} over all structures, "
        f"{fmt(g['cortical'])} cortical, {fmt(g['subcortical'])} subcortical**"
        + (
            f" (baseline, {baseline_name}: {fmt(baseline.groups['all'])} / "
            f"{fmt(baseline.groups['cortical'])} / {fmt(baseline.groups['subcortical'])})."
            if baseline
            else "."
        ),
        "",
        verdict(g["all"], baseline, target),
        "",
        "## Intended use and limits",
        "",
        "- Research use: structure volumes and label maps of adult T1-weighted scans, "
        "skull-stripped or whole-head. Not for clinical decisions.",
        "- It was trained on ten healthy adults' manual labels (eight trained on, two held out) "
        "and synthetic whole heads: expect it to be less accurate on children, lesions, "
        "other contrasts and strong motion. Look at the QC picture of every scan.",
        f"- A {spacing:g} mm network: labels are drawn on {spacing:g} mm voxels and carried to "
        "the scan's grid (between canvas voxels of different labels, the label whose "
        "probability interpolates highest wins), so thin structures (the cortical ribbon) lose "
        "detail."
        + (
            f" Even the manual labels, sent through this canvas and back (one-hot votes), score "
            f"only mean Dice {fmt(ceiling['all'])} (cortical {fmt(ceiling['cortical'])}, "
            f"subcortical {fmt(ceiling['subcortical'])}) against themselves: about the ceiling "
            f"of any {spacing:g} mm network on its own (`benchmarks/grid_ceiling.py`, "
            "`benchmarks/results/grid_ceiling.txt`)."
            if ceiling
            else ""
        )
        + " `wholebrain segment` then refines the cortical ribbon on the scan's grid with the "
        "scan's own intensities (no cortex where the scan has no signal or is darker than half "
        "the local cortex; grey or white by a "
        "local intensity threshold, 1 mm deep along the grey/white interface: "
        "`wholebrain.segment.refine`, measured rule by rule in `benchmarks/results/refine.txt`).",
        *([symmetry_line(symmetry)] if symmetry else []),
        "",
        "## Training",
        "",
        f"- Strategy `{config['strategy']}` (one trunk, one head per annotation protocol; "
        f"loss weights {weights}): {config['steps']} planned steps of batch "
        f"{config['batch_size']}, {'x'.join(map(str, data['patch_size_vox']))} patches "
        f"({data['full_fraction']:.0%} of batch slots from full annotations, "
        f"{data['foreground_fraction']:.0%} of patches centred on a labelled class), "
        f"{optim['optimizer']} lr {optim['lr']:g} with a {optim['schedule']} schedule, "
        f"{config['amp']} autocast; augmentation: spatial, bias field, gamma, contrast, "
        "resolution, noise and background (loose masks, noise floors).",
        f"- Checkpoint shipped: step {checkpoint['step']}" + (f" ({chosen})." if chosen else "."),
    ]
    calibration = checkpoint.get("calibration")
    if calibration:
        weights_range = [
            math.exp(min(calibration["log_weights"])),
            math.exp(max(calibration["log_weights"])),
        ]
        lines.append(
            "- Calibrated by `wholebrain calibrate` on "
            f"{'/'.join(calibration['subjects'])} ({calibration['method']}): each structure's "
            f"probability is multiplied by a weight between {weights_range[0]:.2f} and "
            f"{weights_range[1]:.2f}, fitted so that the structure volumes of those training "
            "scans match their manual labels; `wholebrain segment --no-calibration` leaves the "
            "network's own probabilities."
        )
    if calibration and calibration.get("brain_pitch_deg") is not None:
        lines.append(
            "- Pose: `wholebrain segment` turns each scan's canvases about the left-right axis "
            "so that the long axis of its (skull-stripped) brain lies at "
            f"{calibration['brain_pitch_deg']:.1f} deg pitch, front up: the mean of the "
            "calibration scans', the pose the network learnt (at most 30 deg; the weights above "
            "were fitted on canvases turned alike; `--no-pose`: the world axes)."
        )
    if config.get("init_weights"):
        lines.append(started_from(Path(config["init_weights"])))
    if run is not None and (run / "metrics.csv").is_file():
        curve, seconds, last = read_metrics(run)
        lines.append(
            f"- Hardware: {machine}. Training time to step {last}: {seconds / 3600:.1f} h "
            "(wall clock, summed over the sessions the run took)."
        )
        if curve and max(curve, key=lambda point: point[1])[0] == checkpoint["step"]:
            lines.append(
                "- The shipped step is the run's best validation Dice; the validation subjects "
                "are the ones scored below, so that choice makes the scores a little optimistic."
            )
        if curve:
            points = ", ".join(f"{s} {d:.3f}" for s, d in curve)
            lines.append(
                "- Validation Dice on the held-out subjects during training (on the network's "
                f"canvas, step dice): {points}."
            )
        manifest = Path(data["manifest"])
        if not manifest.is_absolute():
            manifest = (run / manifest).resolve()
        if manifest.is_file():
            counts = manifest_counts(manifest)
            parts = ", ".join(f"{n} {key}" for key, n in sorted(counts.items()))
            lines.append(f"- Training manifest rows (protocol/split): {parts}.")
    lines += [
        "",
        "Data (development data in `../shared/data`, never copied into the package):",
        "",
        "- **Few full annotations**: Mindboggle-101 OASIS-TRT-20 subjects 1-8 (manual DKT31 "
        "cortex, FreeSurfer aseg for the rest, converted by the `mindboggle` importer); "
        "subjects 9-10 held out for validation and the scores below.",
        "- **Many partial annotations**: synthetic whole-head scans drawn from the 20 SynthSeg "
        "training label maps (aseg protocol: cortex one label per hemisphere; skull, scalp and "
        "neck in the image), and the built-in tissue classifier's maps of real whole-head scans "
        "(tissue protocol).",
        "",
        "## Accuracy",
        "",
        "Scored by `wholebrain evaluate` against the manual labels of subjects never trained on, "
        f"the labels made {how}:",
        "",
    ]
    lines += [f"- `{_rel(Path(p))}` vs `{_rel(Path(r))}`" for p, r in scores.pairs]
    lines.append("")
    header = ["group", "Dice (mean ± sd)"] + ([baseline_name] if baseline else [])
    header += [name for name, _ in others]
    rows = []
    for group in GROUPS:
        row = [group, f"{fmt(g[group])} ± {fmt(scores.group_sd.get(group, math.nan))}"]
        if baseline:
            row.append(fmt(baseline.groups[group]))
        row += [fmt(other.groups[group]) for _, other in others]
        rows.append(row)
    lines += table(header, rows)
    lines += ["", "Per structure (mean over the held-out subjects):", ""]
    header = ["id", "structure", "Dice", "HD95 mm"] + (
        [f"Dice, {baseline_name}"] if baseline else []
    )
    rows = []
    for label, (name, dice, hd95) in sorted(scores.structures.items()):
        row = [str(label), name, fmt(dice), fmt(hd95, 1)]
        if baseline:
            row.append(fmt(baseline.structures.get(label, ("", math.nan, math.nan))[1]))
        rows.append(row)
    lines += table(header, rows)
    subjects, rows = robustness
    if rows:
        lines += [
            "",
            "## Robustness",
            "",
            f"The held-out {subjects} in other geometries and contrasts (each written to a file "
            "and segmented with segment's defaults; resampled variants scored on the original "
            "1 mm grid, beside what the manual labels themselves keep through the same grid "
            "and back; `benchmarks/robustness.py`, `benchmarks/results/robustness.txt`):",
            "",
        ]
        lines += table(
            ["variant", "Dice all", "cortical", "subcortical", "manual labels' round trip"],
            (
                [
                    r.variant,
                    fmt(r.all),
                    fmt(r.cortical),
                    fmt(r.subcortical),
                    "" if r.round_trip is None else fmt(r.round_trip),
                ]
                for r in rows
            ),
        )
    lines += [
        "",
        "## Reproduce",
        "",
        "```bash",
        "# the cohort and the run: see the comments at the top of configs/shipped-cpu.toml",
        "wholebrain train configs/shipped-cpu.toml --resume",
        'python -c "from wholebrain.train.checkpoint import export_for_inference as e; '
        "e('out/runs/shipped-cpu-2mm/best.pt', 'dkt-aseg.pt')\"",
        "wholebrain calibrate train.csv --model dkt-aseg.pt -o dkt-aseg.pt --force  "
        "# train.csv: the manifest rows of sub-01..08",
        "wholebrain segment val.csv -o out/eval/seg --model dkt-aseg.pt  "
        "# val.csv: subject,image rows of sub-09, sub-10",
        "wholebrain evaluate --pred out/eval/seg/sub-{09,10}_desc-wholebrain_dseg.nii.gz \\",
        "    --ref ../shared/data/mindboggle-oasis-trt-20-dev/sub-{09,10}/labels_dkt31_aseg.nii.gz"
        " \\",
        "    --ref-format mindboggle --ref-brain "
        "../shared/data/mindboggle-oasis-trt-20-dev/sub-{09,10}/t1w_brain.nii.gz -o val.tsv",
        "python benchmarks/model_card.py --model dkt-aseg.pt --run out/runs/shipped-cpu-2mm "
        "--eval val.tsv --baseline jlfnosignal.tsv  "
        "# jlfnosignal.tsv: evaluate of benchmarks/jlf_baseline.py's desc-jlfnosignal maps",
        "```",
        "",
        "## Licence",
        "",
        "The weights are a work derived from Mindboggle-101 (CC BY-NC-SA 3.0) and are "
        "distributed under CC BY-NC-SA 3.0: `src/wholebrain/models/LICENSE-model.txt` (with the "
        "attributions of every data source). The code is under the project's licence.",
        "",
    ]
    return "\n".join(lines)


def verdict(dice_all: float, baseline: Scores | None, target: float) -> str:
    """One sentence: does the model meet the project's accuracy target (issue 5)?"""
    beats = baseline is None or dice_all > baseline.groups["all"]
    if dice_all >= target and beats:
        return f"It meets the project's target (mean Dice >= {target:g}, better than the baseline)."
    missed, met = [], []
    if dice_all < target:
        missed.append(f"below {target:g}")
    else:
        met.append(f"it reaches {target:g}")
    if baseline is not None:
        named = f"the baseline ({baseline.groups['all']:.3f})"
        if beats:
            met.append(f"it is better than {named}")
        else:
            missed.append(f"not better than {named}")
    return (
        f"**It does not meet the project's target yet** (mean Dice >= {target:g} and better than "
        f"the baseline): {dice_all:.3f} is {' and '.join(missed)}"
        + (f"; {', '.join(met)}" if met else "")
        + ". An interim model, shipped so that `wholebrain segment` works out of the box while "
        "training goes on. Check every result against its QC picture."
    )


def _rel(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, required=True, help="the exported checkpoint")
    parser.add_argument("--eval", type=Path, required=True, help="wholebrain evaluate table")
    parser.add_argument("--run", type=Path, help="the training run folder (metrics.csv)")
    parser.add_argument("--baseline", type=Path, help="evaluate table of a baseline method")
    parser.add_argument("--baseline-name", default="baseline")
    parser.add_argument("--machine", default=f"{platform.processor() or 'CPU'}")
    parser.add_argument("--target", type=float, default=0.80, help="mean Dice to meet")
    parser.add_argument(
        "--ceiling",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "grid_ceiling.txt",
        help="benchmarks/grid_ceiling.py output: the best Dice of the model's canvas grid",
    )
    parser.add_argument(
        "--symmetry",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "mirror_symmetry.txt",
        help="benchmarks/mirror_symmetry.py output (quoted if it measured this checkpoint)",
    )
    parser.add_argument(
        "--robustness",
        type=Path,
        default=ROOT / "benchmarks" / "results" / "robustness.txt",
        help="benchmarks/robustness.py output (quoted if it measured this checkpoint)",
    )
    parser.add_argument(
        "--chosen", help="why this step was shipped, when not simply the best validation step"
    )
    parser.add_argument(
        "--how", default=DEFAULT_HOW, help="how the scored labels were made (a phrase)"
    )
    parser.add_argument(
        "--compare",
        nargs=2,
        action="append",
        default=[],
        metavar=("TABLE", "NAME"),
        help="another labelling's evaluate table, shown beside the baseline (repeatable)",
    )
    parser.add_argument("-o", "--output", type=Path, default=ROOT / "docs" / "model_card.md")
    args = parser.parse_args()

    from wholebrain.train import read_checkpoint

    checkpoint = read_checkpoint(args.model)  # weights only: no code in the file runs
    step, calibration = int(checkpoint["step"]), checkpoint.get("calibration")
    calibrated = calibration is not None
    pose = pose_field((calibration or {}).get("brain_pitch_deg"))
    scores = read_scores(args.eval)
    baseline = read_scores(args.baseline) if args.baseline else None
    text = card(
        checkpoint,
        args.model,
        scores,
        baseline,
        args.baseline_name,
        args.run,
        args.machine,
        args.target,
        read_ceiling(args.ceiling, float(checkpoint["conform"]["spacing_mm"])),
        args.how,
        read_symmetry(args.symmetry, step, calibrated, pose),
        args.chosen,
        [(name, read_scores(Path(table))) for table, name in args.compare],
        read_robustness(args.robustness, step, calibrated, pose),
    )
    args.output.write_text(text)
    print(f"wrote {args.output} (mean Dice all {fmt(scores.groups['all'])})")


if __name__ == "__main__":
    main()
