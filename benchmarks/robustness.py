"""Does the shipped model hold up when the same brain comes in another geometry or contrast?

    python benchmarks/robustness.py [--model PATH] [--subjects sub-09 sub-10] [--variants ...]

Users' scans differ from the Mindboggle ones the model learned from: other orientations, heads
tilted in the scanner, 0.7-1.5 mm voxels, thick slices, uncorrected bias fields, noise, another
intensity range or contrast. This script makes each of those from the held-out Mindboggle scans
(so the manual labels still say where every structure is), segments the variant with
``wholebrain segment``'s defaults (the variant is written to a NIfTI file and read back as a
user's file would be) and scores it with ``wholebrain.evaluate`` against the manual labels:

- **another voxel order** (``RAS``, ``PIR``: the voxel array reordered, the affine with it, the
  world unchanged): scored on the original grid, which the prediction reaches exactly (the
  ``round trip`` column says 1.000), so any change in Dice is the pipeline's;
- **a tilted head** (``pitch 15``, ``pitch -15`` (chin down, about the left-right axis),
  ``roll 10``: the affine rotated about the volume's centre):
  the reference labels take the same affine, so nothing is interpolated either;
- **resampled** (``0.7 mm``, ``1.5 mm``, ``1x1x1.5 mm``, ``1x1x2 mm``): the scan resampled
  linearly to the new grid over the same field of view, after a Gaussian slice profile along
  each coarsened axis (FWHM = the new voxel size, as an acquisition would average); the
  prediction is scored on the original 1 mm grid (nearest neighbour), and the ``round trip``
  column gives what the manual labels themselves keep through the same grid and back: the part
  of the loss that no segmenter on that grid avoids;
- **intensity** (``bias 1.4x``: a smooth multiplicative field from 0.87 to 1.24 over the
  volume; ``noise 4%``: Rician noise in the brain, sigma 4 % of its 99th percentile; ``x16``: a
  12-bit intensity range; ``gamma 0.7``: another grey/white contrast).

Needs ../shared/data; about 25 s a variant and subject on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

import machine  # benchmarks/machine.py: python puts the script's folder on sys.path
from grid_ceiling import group_columns, group_means
from model_card import pose_field  # the pose as the card matches it

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "mindboggle-oasis-trt-20-dev"
HELD_OUT = ("sub-09", "sub-10")
FWHM_TO_SIGMA = 1 / (2 * np.sqrt(2 * np.log(2)))

Grid = tuple[np.ndarray, np.ndarray]  # (X, Y, Z) data and its (4, 4) affine


@dataclass(frozen=True)
class Variant:
    """One way a scan of the same brain can differ.

    ``make`` turns (image, affine) into the variant's (image, affine). ``moves_voxels``: the
    variant's voxel array is another one (reordered or resampled), so it is scored on the
    original grid; otherwise the array keeps its voxels and the reference takes the variant's
    affine.
    """

    name: str
    make: Callable[[np.ndarray, np.ndarray], Grid]
    moves_voxels: bool = False


def reoriented(data: np.ndarray, affine: np.ndarray, codes: str) -> Grid:
    """The same voxels stored in axis order ``codes`` (e.g. "RAS"): world positions unchanged."""
    image = nib.Nifti1Image(data, affine)
    target = nib.orientations.axcodes2ornt(tuple(codes))
    transform = nib.orientations.ornt_transform(nib.io_orientation(affine), target)
    turned = image.as_reoriented(transform)
    return np.asarray(turned.dataobj), turned.affine


def tilted(
    affine: np.ndarray, shape: tuple[int, ...], world_axis: int, degrees: float
) -> np.ndarray:
    """``affine`` turned by ``degrees`` about world axis 0/1/2 (R/A/S) through the volume centre."""
    angle = np.deg2rad(degrees)
    a, b = [i for i in range(3) if i != world_axis]
    rotation = np.eye(4)
    rotation[a, a] = rotation[b, b] = np.cos(angle)
    rotation[a, b], rotation[b, a] = -np.sin(angle), np.sin(angle)
    centre = affine @ np.append((np.asarray(shape[:3]) - 1) / 2, 1)
    to_origin, back = np.eye(4), np.eye(4)
    to_origin[:3, 3], back[:3, 3] = -centre[:3], centre[:3]
    return back @ rotation @ to_origin @ affine


def resampled(data: np.ndarray, affine: np.ndarray, spacing_mm: tuple[float, float, float]) -> Grid:
    """``data`` on a grid of ``spacing_mm`` voxels (along its own axes) over the same field of view.

    Coarsened axes are blurred first by a Gaussian slice profile (FWHM = the new voxel size,
    minus the old voxel's own width in quadrature), as an acquisition averages over a slice.
    """
    old = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    factor = np.asarray(spacing_mm, float) / old
    blur = np.sqrt(np.clip(factor**2 - 1, 0, None)) * FWHM_TO_SIGMA
    source = ndimage.gaussian_filter(data.astype(np.float32), blur) if blur.any() else data
    shape = tuple(round(n / f) for n, f in zip(data.shape, factor, strict=True))
    # Voxel centres spread evenly over the old field of view: new i -> old (i + 0.5) f - 0.5.
    offset = (factor - 1) / 2
    image = ndimage.affine_transform(
        source, np.diag(factor), offset=offset, output_shape=shape, order=1, mode="nearest"
    )
    step = np.eye(4)
    step[:3, :3] = np.diag(factor)
    step[:3, 3] = offset
    return image.astype(np.float32), affine @ step


def labels_on(labels: np.ndarray, affine: np.ndarray, grid: Grid) -> np.ndarray:
    """``labels`` (on ``affine``'s grid) sampled at ``grid``'s voxel centres, nearest neighbour."""
    shape, target = grid[0].shape, grid[1]
    voxel_map = np.linalg.inv(affine) @ target
    return ndimage.affine_transform(
        labels, voxel_map[:3, :3], offset=voxel_map[:3, 3], output_shape=shape, order=0
    )


def bias_field(shape: tuple[int, ...], strength: float = 0.12) -> np.ndarray:
    """A smooth multiplicative field exp(strength * low-order polynomial): 0.87-1.24 at 0.12."""
    x, y, z = np.meshgrid(*(np.linspace(-1, 1, n, dtype=np.float32) for n in shape), indexing="ij")
    return np.exp(strength * (0.6 * x + 0.5 * y - 0.4 * z + 0.3 * x * y)).astype(np.float32)


def rician_noise(data: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Rician noise of sigma ``fraction`` x the 99th percentile of the brain, in the brain only."""
    rng = np.random.default_rng(seed)
    brain = data > 0
    sigma = fraction * float(np.percentile(data[brain], 99))
    real = data + rng.normal(0, sigma, data.shape)
    noisy = np.sqrt(real**2 + rng.normal(0, sigma, data.shape) ** 2)
    return np.where(brain, noisy, 0).astype(np.float32)


def gamma(data: np.ndarray, power: float) -> np.ndarray:
    """Intensities through a power curve (range kept): another grey/white contrast."""
    top = float(data.max())
    return (top * (np.clip(data, 0, None) / top) ** power).astype(np.float32)


VARIANTS = (
    Variant("as given", lambda d, a: (d, a)),
    Variant("RAS", lambda d, a: reoriented(d, a, "RAS"), True),
    Variant("PIR", lambda d, a: reoriented(d, a, "PIR"), True),
    Variant("pitch 15", lambda d, a: (d, tilted(a, d.shape, 0, 15))),
    Variant("pitch -15", lambda d, a: (d, tilted(a, d.shape, 0, -15))),
    Variant("roll 10", lambda d, a: (d, tilted(a, d.shape, 1, 10))),
    Variant("0.7 mm", lambda d, a: resampled(d, a, (0.7, 0.7, 0.7)), True),
    Variant("1.5 mm", lambda d, a: resampled(d, a, (1.5, 1.5, 1.5)), True),
    Variant("1x1x1.5 mm", lambda d, a: resampled(d, a, (1.0, 1.0, 1.5)), True),
    Variant("1x1x2 mm", lambda d, a: resampled(d, a, (1.0, 1.0, 2.0)), True),
    Variant("bias 1.4x", lambda d, a: (d * bias_field(d.shape), a)),
    Variant("noise 4%", lambda d, a: (rician_noise(d, 0.04), a)),
    Variant("x16", lambda d, a: (d * 16, a)),
    Variant("gamma 0.7", lambda d, a: (gamma(d, 0.7), a)),
)


def main(argv: list[str]) -> int:
    names = [v.name for v in VARIANTS]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="checkpoint (default: the shipped model)")
    parser.add_argument("--subjects", nargs="+", default=list(HELD_OUT), metavar="SUBJECT")
    parser.add_argument("--variants", nargs="+", default=names, choices=names, metavar="NAME")
    parser.add_argument("--root", type=Path, default=DATA, help="the Mindboggle folder")
    args = parser.parse_args(argv)
    if not args.root.is_dir():
        print(f"no Mindboggle data at {args.root}: nothing to measure", file=sys.stderr)
        return 2

    from wholebrain.evaluate import Evaluation, evaluate_pair
    from wholebrain.io import Volume, load_image, load_labels
    from wholebrain.protocols.importers import import_labels
    from wholebrain.segment.predict import Segmenter

    title = "wholebrain robustness to geometry and contrast"
    machine.header(title, ["benchmarks/robustness.py", *argv])
    segmenter = Segmenter(args.model)
    step, calibrated = segmenter.checkpoint.step, "yes" if segmenter.calibrated else "no"
    pose = pose_field(segmenter.pose_pitch_deg)
    print(
        f"model: {segmenter.checkpoint.path} (step {step}, calibrated {calibrated}, brain pitch "
        f"{pose}), segment's "
        "defaults; scored by wholebrain evaluate (dkt-aseg) against the manual labels"
    )
    print(
        f"{'variant':<11} {'subject':<8} {'grid':<22} {'cortical':>8} {'subcort':>8} {'all':>6} "
        f"{'HD95 mm':>8} {'round trip':>10} {'s':>5}"
    )
    chosen = [v for v in VARIANTS if v.name in args.variants]
    results: dict[str, list] = {v.name: [] for v in chosen}
    trips: dict[str, list] = {v.name: [] for v in chosen}
    with tempfile.TemporaryDirectory() as folder:
        for subject in args.subjects:
            brain_file = args.root / subject / "t1w_brain.nii.gz"
            scan = load_image(brain_file)
            manual = load_labels(args.root / subject / "labels_dkt31_aseg.nii.gz", like=scan)
            # The manual labels in wholebrain's ids, for the round trips through other grids.
            ids, _ = import_labels(
                manual.data, "mindboggle", brain_mask=scan.data > 0, spacing_mm=scan.spacing_mm
            )
            for variant in chosen:
                image, affine = variant.make(scan.data, scan.affine)
                file = Path(folder) / f"{subject}_T1w.nii.gz"
                nib.save(nib.Nifti1Image(image.astype(np.float32), affine), file)
                started = time.perf_counter()
                labels = segmenter.segment(load_image(file)).labels
                seconds = time.perf_counter() - started
                if variant.moves_voxels:  # scored on the original grid; the labels' own loss
                    ref = Volume(manual.data, scan.affine)
                    ref_brain = Volume(scan.data, scan.affine)
                    there = labels_on(ids, scan.affine, (image, affine))
                    trip = evaluate_pair(
                        Volume(there, affine), Volume(ids, scan.affine), protocol="dkt-aseg"
                    )
                    trips[variant.name].append(trip)
                    trip_means = group_means(Evaluation("dkt-aseg", (trip,)))
                    trip_text = f"{trip_means['all']['dice']:10.3f}"
                else:  # the reference moves with the voxels
                    ref, ref_brain = Volume(manual.data, affine), Volume(scan.data, affine)
                    trip_text = ""
                result = evaluate_pair(
                    Volume(labels, affine),
                    ref,
                    protocol="dkt-aseg",
                    ref_format="mindboggle",
                    ref_brain=ref_brain,
                )
                results[variant.name].append(result)
                means = group_means(Evaluation("dkt-aseg", (result,)))
                print(_row(variant.name, subject, _grid(image, affine), means, trip_text, seconds))
    print()
    # The mean rows below are what benchmarks/model_card.py (read_robustness) quotes.
    print(
        f"robustness: step={step} calibrated={calibrated} pose={pose} "
        f"subjects={','.join(args.subjects)}"
    )
    for variant in chosen:
        means = group_means(Evaluation("dkt-aseg", tuple(results[variant.name])))
        trip_text = ""
        if trips[variant.name]:
            trip_means = group_means(Evaluation("dkt-aseg", tuple(trips[variant.name])))
            trip_text = f"{trip_means['all']['dice']:10.3f}"
        print(_row(variant.name, "mean", "", means, trip_text, None))
    return 0


def _grid(image: np.ndarray, affine: np.ndarray) -> str:
    spacing = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    codes = "".join(nib.aff2axcodes(affine))
    return f"{codes} {'x'.join(f'{s:g}' for s in np.round(spacing, 2))} mm"


def _row(
    variant: str,
    subject: str,
    grid: str,
    means: dict[str, dict[str, float]],
    trip: str,
    seconds: float | None,
) -> str:
    timing = "" if seconds is None else f"{seconds:5.1f}"
    return f"{variant:<11} {subject:<8} {grid:<22} {group_columns(means)} {trip:>10} {timing:>5}"


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
