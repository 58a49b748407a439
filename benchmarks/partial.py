"""Benchmark of wholebrain.partial's tissue classifier against manual labels, templates and Atropos.

Run: ``python benchmarks/partial.py`` (``--quick`` for 2 subjects and no Atropos; ``--save`` also
writes the printed report to ``benchmarks/results/partial.txt``; ``--qc DIR`` writes PNGs of the
whole-head results there -- outside the repository: they show third-party scans). Prints

1. machine, versions, command, date and load;
2. Mindboggle dev subjects (``../shared/data``): Dice of CSF/GM/WM per subject and mean, and
   seconds per scan, built-in vs ANTs Atropos (k-means start, 3 classes, MRF [0.1,1x1x1]) with
   the same canvas and mask. Reference: ``labels_dkt31_aseg`` imported as ``mindboggle``
   (brain mask = t1 > 0) and mapped to the ``tissue`` protocol;
3. where the built-in classifier's errors come from on those subjects (confusions by structure);
4. nilearn's ICBM152 2009a T1: Dice of GM/WM against its probability maps thresholded at 0.5;
5. the measurements that chose the method: mixture with or without partial-volume classes, bias
   correction (none, EM-interleaved polynomial, N4), MRF strength and neighbourhood, on the
   Mindboggle images as they are and with added Rician noise;
6. the brain mask: deepbet on synthetic whole-head images made from the real label maps of
   ``synthseg-label-maps`` (Dice against their brain labels) and on the skull-stripped
   Mindboggle images (Dice against t1 > 0);
7. whole-head ``unlabelled-t1w/ixi002_t1w.mgz``: seconds per stage, tissue volumes.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import scipy
from scipy import ndimage

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
from wholebrain.conform import conform
from wholebrain.examples import icbm152_path
from wholebrain.io import Volume, load_image, load_labels
from wholebrain.partial import brainmask
from wholebrain.partial.tissue import CANVAS, BuiltinConfig, classify_tissue, segment_canvas
from wholebrain.protocols import map_labels
from wholebrain.protocols.importers import import_labels

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
MINDBOGGLE = SHARED_DATA / "mindboggle-oasis-trt-20-dev"
SYNTHSEG = SHARED_DATA / "synthseg-label-maps"
IXI = SHARED_DATA / "unlabelled-t1w" / "ixi002_t1w.mgz"
RESULTS = Path(__file__).resolve().parent / "results" / "partial.txt"
TISSUES = ("CSF", "GM", "WM")


# --- helpers -------------------------------------------------------------------------------------


def dice(a: np.ndarray, b: np.ndarray) -> float:
    total = np.count_nonzero(a) + np.count_nonzero(b)
    return float(2 * np.count_nonzero(a & b) / total) if total else float("nan")


def tissue_dice(labels: np.ndarray, reference: np.ndarray) -> list[float]:
    return [dice(labels == k, reference == k) for k in (1, 2, 3)]


def header(argv: list[str]) -> None:
    versions = {"scipy": scipy.__version__, "nibabel": nib.__version__}
    for name in ("antspyx", "deepbet"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "absent"
    machine.header("wholebrain partial (tissue classifier) benchmark", argv, versions)


def _load() -> str:
    if not hasattr(os, "getloadavg"):
        return "?"
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def row(cells: list[str], widths: list[int]) -> str:
    pairs = enumerate(zip(cells, widths, strict=True))
    return "  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs)


@dataclass(frozen=True, eq=False)
class Subject:
    name: str
    volume: Volume
    reference: np.ndarray  # tissue labels 0..3 on the native grid
    full: np.ndarray  # dkt-aseg ids on the native grid


def mindboggle(limit: int | None) -> list[Subject]:
    subjects = []
    for folder in sorted(MINDBOGGLE.glob("sub-*"))[:limit]:
        volume = load_image(folder / "t1w_brain.nii.gz")
        labels = load_labels(folder / "labels_dkt31_aseg.nii.gz")
        full, protocol = import_labels(
            labels.data, "mindboggle", brain_mask=volume.data > 0, spacing_mm=volume.spacing_mm
        )
        reference = map_labels(full, "tissue", protocol).astype(np.uint8)
        subjects.append(Subject(folder.name, volume, reference, full))
    return subjects


# --- 2. Mindboggle: built-in vs Atropos ----------------------------------------------------------


def mindboggle_table(subjects: list[Subject], atropos: bool) -> dict[str, list[np.ndarray]]:
    methods = ["builtin"] + (["atropos"] if atropos else [])
    print(f"## Mindboggle dev subjects: Dice per tissue, seconds per scan ({', '.join(methods)})")
    print("reference: labels_dkt31_aseg (manual cortex + FreeSurfer aseg) -> tissue; mask t1 > 0")
    widths = [8] + [6, 6, 6, 7] * len(methods)
    cells = ["subject"]
    for method in methods:
        cells += [f"{method[:4]} CSF", "GM", "WM", "s"]
    print(row(cells, widths))
    results: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    stage_seconds: list[dict[str, float]] = []
    outputs: dict[str, list[np.ndarray]] = {m: [] for m in methods}
    for subject in subjects:
        cells = [subject.name]
        for method in methods:
            result = classify_tissue(subject.volume, method=method)
            scores = tissue_dice(result.labels, subject.reference)
            results[method].append(np.array([*scores, result.seconds["total"]]))
            outputs[method].append(result.labels)
            if method == "builtin":
                stage_seconds.append(result.seconds)
            cells += [f"{s:.3f}" for s in scores] + [f"{result.seconds['total']:.1f}"]
        print(row(cells, widths), flush=True)
    cells = ["mean"]
    for method in methods:
        mean = np.mean(results[method], axis=0)
        cells += [f"{s:.3f}" for s in mean[:3]] + [f"{mean[3]:.1f}"]
    print(row(cells, widths))
    stages = {k: float(np.mean([s[k] for s in stage_seconds])) for k in stage_seconds[0]}
    print(
        "built-in mean seconds per stage: " + ", ".join(f"{k} {v:.2f}" for k, v in stages.items())
    )
    print()
    return outputs


# --- 3. error analysis ---------------------------------------------------------------------------

_GROUPS = {
    "cortex (DKT31)": lambda ids: (ids >= 1000) & (ids < 3000),
    "thalamus": lambda ids: np.isin(ids, [10, 49]),
    "pallidum": lambda ids: np.isin(ids, [13, 52]),
    "putamen": lambda ids: np.isin(ids, [12, 51]),
    "caudate": lambda ids: np.isin(ids, [11, 50]),
    "hippocampus/amygdala": lambda ids: np.isin(ids, [17, 18, 53, 54]),
    "cerebellar cortex": lambda ids: np.isin(ids, [8, 47]),
    "accumbens/basal forebrain/vessel": lambda ids: np.isin(ids, [26, 58, 91, 92, 30, 62]),
    "cerebral WM": lambda ids: np.isin(ids, [2, 41]),
    "cerebellar WM": lambda ids: np.isin(ids, [7, 46]),
    "brainstem/ventral DC/chiasm": lambda ids: np.isin(ids, [16, 28, 60, 85]),
    "ventricles/CSF": lambda ids: np.isin(ids, [4, 5, 14, 15, 24, 43, 44, 72]),
}


def error_table(subjects: list[Subject], outputs: list[np.ndarray]) -> None:
    print("## Where the built-in classifier's errors come from (Mindboggle, all subjects summed)")
    confusion = np.zeros((4, 4), np.int64)
    for subject, labels in zip(subjects, outputs, strict=True):
        confusion += np.bincount(
            subject.reference.ravel().astype(np.int64) * 4 + labels.ravel(), minlength=16
        ).reshape(4, 4)
    names = ("bg", *TISSUES)
    print("confusion (voxels; rows reference, columns built-in):")
    widths = [10] + [11] * 4
    print(row(["ref \\ out", *names], widths))
    for k in range(4):
        print(row([names[k]] + [str(v) for v in confusion[k]], widths))
    print()
    print("reference voxels by structure and the tissue the built-in gave them (% of structure):")
    widths = [34, 10, 6, 6, 6, 6]
    print(row(["structure (reference tissue)", "voxels", "bg", "CSF", "GM", "WM"], widths))
    for name, select in _GROUPS.items():
        counts = np.zeros(4, np.int64)
        for subject, labels in zip(subjects, outputs, strict=True):
            counts += np.bincount(labels[select(subject.full)], minlength=4)[:4]
        share = 100 * counts / max(1, counts.sum())
        print(row([name, str(counts.sum())] + [f"{v:.1f}" for v in share], widths))
    # Grey matter the reference has outside the brain mask cannot be found by any classifier.
    outside = sum(np.count_nonzero((s.reference == 2) & (s.volume.data == 0)) for s in subjects)
    gm_total = sum(np.count_nonzero(s.reference == 2) for s in subjects)
    print(
        f"reference GM outside the image's foreground (t1 == 0): {outside} voxels "
        f"({100 * outside / gm_total:.1f}% of reference GM)"
    )
    print()


# --- 4. ICBM152 ----------------------------------------------------------------------------------


def icbm_table(atropos: bool) -> None:
    print("## ICBM152 2009a (nilearn): Dice vs GM/WM probability maps > 0.5")
    volume = load_image(icbm152_path("t1"))
    gm, wm = (_probability(icbm152_path(kind)) > 0.5 for kind in ("gm", "wm"))
    widths = [8, 6, 6, 7, 8]
    print(row(["method", "GM", "WM", "s", "mask L"], widths))
    for method in ["builtin"] + (["atropos"] if atropos else []):
        result = classify_tissue(volume, method=method)
        litres = np.count_nonzero(result.brain_mask) * np.prod(volume.spacing_mm) / 1e6
        cells = [
            method,
            f"{dice(result.labels == 2, gm):.3f}",
            f"{dice(result.labels == 3, wm):.3f}",
            f"{result.seconds['total']:.1f}",
            f"{litres:.2f}",
        ]
        print(row(cells, widths), flush=True)
    print()


def _probability(path: Path) -> np.ndarray:
    """A probability map; nilearn's "converted" ICBM152 maps store 0..1 as uint8 0..255."""
    data = np.asarray(nib.load(path).dataobj, dtype=np.float32)
    return data / 255.0 if data.max() > 1.0 else data


# --- 5. design choices ---------------------------------------------------------------------------


def rician(image: np.ndarray, mask: np.ndarray, level: float, seed: int) -> np.ndarray:
    """Magnitude of complex Gaussian noise of ``level`` x the 95th brain percentile, in the mask."""
    rng = np.random.default_rng(seed)
    sigma = level * float(np.percentile(image[mask], 95))
    noise = rng.normal(0, sigma, (2, *image.shape)).astype(np.float32)
    out = np.hypot(image + noise[0], noise[1])
    out[~mask] = 0
    return out


def ablation_table(subjects: list[Subject], quick: bool) -> None:
    print("## Design choices (built-in on the canvas, Mindboggle subjects, mean Dice CSF/GM/WM)")
    canvases = []
    for subject in subjects:
        conformed = conform(subject.volume, CANVAS)
        mask = conformed.labels_to_canvas((subject.volume.data > 0).astype(np.uint8)) > 0
        reference = conformed.labels_to_canvas(subject.reference)
        canvases.append((conformed.image, mask, reference))
    default = BuiltinConfig()
    no_mrf = replace(default, mrf_beta=0.0)

    def bias(**changes: Any) -> BuiltinConfig:
        return replace(no_mrf, bias=replace(default.bias, **changes))

    variants: list[tuple[str, BuiltinConfig]] = [
        ("3 Gaussians, no bias, no MRF", bias(method="none", partial_volume=False)),
        ("+ partial-volume classes", bias(method="none")),
        ("+ bias: EM, polynomial deg 4", no_mrf),
        ("  bias: EM, poly deg 4 unregularised", bias(regularisation=0.0)),
        ("  bias: EM, polynomial deg 2", bias(degree=2)),
        ("  bias: EM, polynomial deg 6", bias(degree=6)),
        ("  bias: EM, Gaussian-smoothed", bias(field="smooth")),
        ("  bias: ANTs N4, then EM", bias(method="n4")),
        ("+ MRF 6-nbr beta 0.3 (default)", default),
        ("  MRF 6-nbr beta 0.15", replace(default, mrf_beta=0.15)),
        ("  MRF 6-nbr beta 0.6", replace(default, mrf_beta=0.6)),
        ("  MRF 26-nbr beta 0.05", replace(default, mrf_beta=0.05, mrf_neighbours=26)),
        ("  MRF 26-nbr beta 0.1", replace(default, mrf_beta=0.1, mrf_neighbours=26)),
    ]
    default_name = "default: " + describe(default)
    if quick:
        variants = [variants[0], variants[1], variants[2], variants[8]]
    levels = (0.0,) if quick else (0.0, 0.04, 0.08)
    widths = [36] + [20] * len(levels) + [6]
    print(f"({default_name}; noise: Rician, sigma = level x 95th brain percentile)")
    print(row(["variant"] + [f"noise {lv:.0%}" for lv in levels] + ["s"], widths))
    noisy = {
        level: [
            (rician(image, mask, level, seed) if level else image, mask, reference)
            for seed, (image, mask, reference) in enumerate(canvases)
        ]
        for level in levels
    }
    for name, config in variants:
        cells, seconds = [name], []
        for level in levels:
            if level and config.bias.method == "n4":
                cells.append("(not run: 25 s/scan)")
                continue
            scores = []
            for image, mask, reference in noisy[level]:
                start = time.perf_counter()
                labels = segment_canvas(image, mask, config)
                seconds.append(time.perf_counter() - start)
                scores.append(tissue_dice(labels, reference))
            cells.append(" ".join(f"{s:.3f}" for s in np.mean(scores, axis=0)))
        print(row([*cells, f"{np.mean(seconds):.1f}"], widths), flush=True)
    print()


def describe(config: BuiltinConfig) -> str:
    bias = config.bias
    text = f"bias {bias.method}"
    if bias.method == "em":
        text += f" {bias.field}" + (f" deg {bias.degree}" if bias.field == "polynomial" else "")
    if config.mrf_beta > 0:
        text += f", MRF {config.mrf_neighbours}-nbr beta {config.mrf_beta}"
        text += f" x{config.mrf_iterations}"
    return text + (", partial-volume classes" if bias.partial_volume else "")


# --- 6. brain mask -------------------------------------------------------------------------------

# Mean T1 intensity per label of the SynthSeg maps (FreeSurfer ids; 5xx extra-cerebral): a plain,
# realistic-looking whole head to test skull stripping on, with exact brain labels.
_WM = (2, 41, 7, 46, 16, 28, 60, 85)
_GM = (3, 42, 8, 47, 17, 18, 26, 58, 53, 54, 11, 12, 50, 51, 136, 137, 163, 164)
_CSF = (4, 5, 43, 44, 14, 15, 24, 72)
_HEAD = {502: 30, 506: 100, 507: 80, 508: 50, 509: 60, 511: 140, 512: 120, 514: 90, 515: 15,
         516: 40, 530: 60}  # fmt: skip
_MEANS = {
    **dict.fromkeys(_WM, 110), **dict.fromkeys(_GM, 70), **dict.fromkeys(_CSF, 25),
    10: 92, 49: 92, 13: 100, 52: 100, 30: 60, 62: 60, **_HEAD,
}  # fmt: skip


def synthetic_head(path: Path, seed: int) -> tuple[Volume, np.ndarray, np.ndarray]:
    """(image, brain labels mask, brain + extra-cerebral CSF mask) from a SynthSeg label map."""
    img = nib.load(path)
    labels = np.asarray(img.dataobj).astype(np.int32)
    rng = np.random.default_rng(seed)
    means = np.full(labels.max() + 1, 3.0, np.float32)
    for label, value in _MEANS.items():
        if label < means.size:
            means[label] = value * (1 + 0.1 * rng.normal())
    image = means[labels] + rng.normal(0, 1, labels.shape).astype(np.float32) * (
        3 + 0.04 * means[labels]
    )
    image = ndimage.gaussian_filter(image, 0.6)
    coarse = rng.normal(0, 1, (4, 4, 4))
    field = ndimage.zoom(coarse, np.array(labels.shape) / 4, order=3)[
        tuple(slice(0, n) for n in labels.shape)
    ]
    image = np.maximum(image * np.exp(0.1 * field), 0).astype(np.float32)
    brain = ((labels > 0) & (labels < 100) & (labels != 24)) | np.isin(labels, (136, 137, 163, 164))
    return Volume(image, img.affine), brain, brain | (labels == 24)


def mask_table(subjects: list[Subject], n_heads: int) -> None:
    print("## Brain mask: deepbet on the 1 mm canvas (CPU)")
    heads = sorted(SYNTHSEG.glob("training_seg_*.nii.gz"))[:n_heads]
    widths = [24, 10, 12, 9, 9, 7]
    print(
        "synthetic whole heads from real label maps (per-label Gaussian intensities, noise, bias)"
    )
    print(row(["image", "brain", "brain+CSF", "mask L", "truth L", "s"], widths))
    scores = []
    for index, path in enumerate(heads):
        volume, brain, brain_csf = synthetic_head(path, index)
        assert brainmask.looks_skull_stripped(volume) is False
        conformed = conform(volume, CANVAS)
        start = time.perf_counter()
        mask = brainmask.deepbet_mask(conformed.image)
        seconds = time.perf_counter() - start
        native = conformed.to_native(mask.astype(np.uint8)) > 0
        pair = (dice(native, brain), dice(native, brain_csf))
        scores.append([*pair, seconds])
        cells = [
            path.name.split(".")[0],
            f"{pair[0]:.3f}",
            f"{pair[1]:.3f}",
            f"{native.sum() / 1e6:.2f}",
            f"{brain_csf.sum() / 1e6:.2f}",
            f"{seconds:.1f}",
        ]
        print(row(cells, widths), flush=True)
    if scores:
        mean = np.mean(scores, axis=0)
        print(row(["mean", f"{mean[0]:.3f}", f"{mean[1]:.3f}", "", "", f"{mean[2]:.1f}"], widths))
    print("skull-stripped Mindboggle images given to deepbet anyway (Dice vs t1 > 0):")
    values = []
    for subject in subjects:
        conformed = conform(subject.volume, CANVAS)
        mask = brainmask.deepbet_mask(conformed.image)
        native = conformed.to_native(mask.astype(np.uint8)) > 0
        values.append(dice(native, subject.volume.data > 0))
    print("  " + " ".join(f"{v:.3f}" for v in values) + f"  (mean {np.mean(values):.3f})")
    print()


# --- 7. whole head -------------------------------------------------------------------------------


def whole_head_table(qc: Path | None) -> None:
    print(f"## Whole-head scan {IXI.name}: built-in, seconds per stage (deepbet mask)")
    volume = load_image(IXI)
    brainmask._load_deepbet()  # loaded once per process (0.4 s), as in a cohort run
    result = classify_tissue(volume)
    print("seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()))
    voxel_ml = float(np.prod(volume.spacing_mm)) / 1000
    volumes = [np.count_nonzero(result.labels == k) * voxel_ml for k in (1, 2, 3)]
    print(
        f"mask {np.count_nonzero(result.brain_mask) * voxel_ml:.0f} mL; "
        + ", ".join(f"{n} {v:.0f} mL" for n, v in zip(TISSUES, volumes, strict=True))
    )
    if qc is not None:
        path = qc / f"{IXI.name.split('.')[0]}_tissue.png"
        qc_picture(volume, result.labels, path)
        print(f"QC picture: {path}")
    print()


def qc_picture(volume: Volume, labels: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conformed = conform(volume, CANVAS)
    canvas_labels = conformed.labels_to_canvas(labels)
    image = conformed.image
    colours = np.array(
        [[0, 0, 0, 0], [0.2, 0.4, 1, 0.45], [0.1, 0.9, 0.2, 0.35], [1, 0.9, 0.1, 0.35]]
    )
    figure, axes = plt.subplots(2, 3, figsize=(12, 8))
    centre = [
        int(np.mean(np.nonzero(canvas_labels.any(axis=tuple(a for a in range(3) if a != k)))))
        for k in range(3)
    ]
    for k in range(3):
        plane = np.take(image, centre[k], axis=k).T
        overlay = colours[np.take(canvas_labels, centre[k], axis=k).T]
        for row_index in range(2):
            axes[row_index, k].imshow(
                plane, cmap="gray", origin="lower", vmax=np.percentile(image, 99.5)
            )
            if row_index:
                axes[row_index, k].imshow(overlay, origin="lower")
            axes[row_index, k].axis("off")
    figure.suptitle(f"{path.stem}: CSF blue, GM green, WM yellow")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)


# --- main ----------------------------------------------------------------------------------------


@contextmanager
def tee(save: Path | None) -> Iterator[None]:
    """Print as usual, and also keep a copy to write to ``save`` at the end."""
    if save is None:
        yield
        return
    buffer = io.StringIO()
    original = sys.stdout

    class Both(io.TextIOBase):
        def write(self, text: str) -> int:
            original.write(text)
            original.flush()
            return buffer.write(text)

    with redirect_stdout(Both()):
        yield
    save.parent.mkdir(parents=True, exist_ok=True)
    save.write_text(buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 subjects, no Atropos")
    parser.add_argument("--no-atropos", action="store_true", help="skip ANTs Atropos")
    parser.add_argument("--subjects", type=int, default=None, help="first N Mindboggle subjects")
    parser.add_argument("--heads", type=int, default=5, help="synthetic whole heads for deepbet")
    parser.add_argument("--save", action="store_true", help=f"also write the report to {RESULTS}")
    parser.add_argument("--qc", type=Path, default=None, help="folder for QC PNGs (not the repo)")
    args = parser.parse_args(argv)
    limit = 2 if args.quick else args.subjects
    atropos = not (args.quick or args.no_atropos)
    with tee(RESULTS if args.save else None):
        header(["benchmarks/partial.py", *argv])
        if not MINDBOGGLE.is_dir():
            print(f"{MINDBOGGLE} absent: only the ICBM152 part runs")
            icbm_table(atropos)
            return 0
        brainmask._load_deepbet()  # once per process, as in a cohort run
        subjects = mindboggle(limit)
        outputs = mindboggle_table(subjects, atropos)
        error_table(subjects, outputs["builtin"])
        icbm_table(atropos)
        ablation_table(subjects, args.quick)
        mask_table(subjects, 1 if args.quick else args.heads)
        whole_head_table(args.qc)
        print(f"load after the run: {_load()} (1/5/15 min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
