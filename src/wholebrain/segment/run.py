"""``wholebrain segment`` for a cohort: which scans, which files each writes, and doing one.

Inputs (:func:`collect_segment_scans`) are image files, folders of images, manifest CSVs and
BIDS dataset roots (a folder with ``dataset_description.json`` or ``sub-*/[ses-*/]anat/``
folders: every ``*_T1w.nii[.gz]`` in it). Each scan writes, into the output folder (in BIDS
mode under the same ``sub-*/[ses-*/]anat/`` folders as its scan)::

    <stem>_desc-wholebrain_dseg.nii.gz     labels on the scan's own grid (shape, affine, header)
    <stem>_desc-wholebrain_dseg.tsv        the label table (index, name, color): BIDS dseg.tsv
    <stem>_desc-wholebrain_volumes.tsv     mm³ per structure + totals (segment.volumes)
    <stem>_desc-wholebrain_qc.png          three slices with the labels overlaid (segment.qc)
    <stem>_desc-wholebrain_probseg.nii.gz  with --posteriors: class probabilities (see below)

``<stem>`` is the file name without ``.nii``/``.nii.gz``/``.mgz`` and a trailing ``_T1w``.
Posteriors are written on the model's 1 mm RAS canvas (the affine places them in the scan's
world space, so viewers overlay them), as uint8 x 1/255 with one volume per class: on the
scan's own grid 99 float maps of a 256³ scan would take 6.6 GB of memory.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from wholebrain.cohort import WorkItem
from wholebrain.data.layouts import output_stem, split_image_name
from wholebrain.errors import InputError

if TYPE_CHECKING:
    from wholebrain.io import Volume
    from wholebrain.segment.predict import Segmentation, Segmenter

__all__ = [
    "OUTPUT_KINDS",
    "SegmentItem",
    "SegmentOptions",
    "collect_segment_scans",
    "is_bids_root",
    "outputs_for",
    "plan_segment",
    "segment_subject",
]

log = logging.getLogger(__name__)

DESC = "wholebrain"
OUTPUT_KINDS = ("dseg", "dseg_tsv", "volumes", "qc")


@dataclass(frozen=True)
class SegmentItem(WorkItem):
    """One scan to segment; ``outputs`` in the order of :data:`OUTPUT_KINDS` (+ posteriors)."""

    posteriors: bool = False


@dataclass(frozen=True)
class SegmentOptions:
    """How every scan of a run is segmented (picklable: it travels to worker processes)."""

    model: str | None = None  # checkpoint path; None: the shipped model
    device: str = "auto"  # auto | cpu | cuda
    tta: bool = True  # flip test-time augmentation + per-structure agreement
    skull_strip: str = "auto"  # auto: whole-head scans are skull-stripped first; off
    canvases: int = 2  # canvases offset by half a voxel, combined on the scan's grid
    refine: bool = True  # sharpen the cortical ribbon with the scan's intensities
    calibrate: bool = True  # apply the model's class weights (wholebrain calibrate), if any
    pose: bool = True  # turn the canvas to the training scans' brain pitch, if calibrated so


def is_bids_root(folder: Path) -> bool:
    """A BIDS dataset: ``dataset_description.json``, or ``sub-*/[ses-*/]anat/`` folders."""
    if (folder / "dataset_description.json").is_file():
        return True
    return any(folder.glob("sub-*/anat")) or any(folder.glob("sub-*/ses-*/anat"))


def collect_segment_scans(inputs: list[str]) -> list[tuple[Path, Path, str]]:
    """(scan, output subfolder relative to OUTDIR, stem) for every scan the inputs name, once.

    The stem names the outputs: the file name without suffix and ``_T1w`` (BIDS: with its
    entities, ``sub-01_ses-1``), or the subject id of a manifest row (manifests of layouts
    such as Mindboggle's, where every scan is ``t1w_brain.nii.gz``).

    Raises:
        InputError: an input that is none of file, folder, manifest or BIDS root; a BIDS root
            without ``*_T1w`` scans; no scan at all.
    """
    from wholebrain.partial.run import collect_scans

    found: list[tuple[Path, Path, str]] = []
    plain: list[str] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir() and is_bids_root(path):
            scans = sorted(
                p for p in path.glob("sub-*/**/anat/*_T1w.nii*") if split_image_name(p)[0]
            )
            scans = [p for p in scans if "derivatives" not in p.relative_to(path).parts]
            if not scans:
                raise InputError(
                    path,
                    "sub-*/[ses-*/]anat/*_T1w.nii[.gz] scans in the BIDS dataset",
                    "none",
                    "check the dataset, or give the scans themselves",
                )
            found += [(p, p.parent.relative_to(path), output_stem(p)) for p in scans]
        else:
            plain.append(text)
    if plain:
        found += [(scan.image, Path(), scan.subject) for scan in collect_scans(plain)]
    seen: set[Path] = set()
    unique = []
    for scan, folder, stem in found:
        key = scan.absolute()
        if key not in seen:
            seen.add(key)
            unique.append((scan, folder, stem))
    return unique


def outputs_for(outdir: Path, stem: str, *, posteriors: bool = False) -> tuple[Path, ...]:
    """The files one scan writes, in the order of :data:`OUTPUT_KINDS` (+ probseg)."""
    prefix = outdir / f"{stem}_desc-{DESC}"
    paths = [
        Path(f"{prefix}_dseg.nii.gz"),
        Path(f"{prefix}_dseg.tsv"),
        Path(f"{prefix}_volumes.tsv"),
        Path(f"{prefix}_qc.png"),
    ]
    if posteriors:
        paths.append(Path(f"{prefix}_probseg.nii.gz"))
    return tuple(paths)


def plan_segment(
    scans: list[tuple[Path, Path, str]], outdir: Path, *, posteriors: bool = False
) -> list[SegmentItem]:
    """One item per (scan, subfolder, stem); two scans with the same stem in one folder are
    refused by ``cohort.check_unique_outputs`` (their outputs would collide)."""
    items = []
    for scan, folder, stem in scans:
        subject = str(folder / stem) if folder != Path() else stem
        outputs = outputs_for(outdir / folder, stem, posteriors=posteriors)
        items.append(SegmentItem(subject, scan, outputs, posteriors))
    return items


# --- one scan ------------------------------------------------------------------------------

_LOADED: dict[SegmentOptions, Segmenter] = {}  # per process: the model is loaded once


def segmenter(options: SegmentOptions) -> Segmenter:
    """The process's :class:`Segmenter` for ``options`` (loaded on first use)."""
    from wholebrain.segment.predict import Segmenter

    if options not in _LOADED:
        _LOADED[options] = Segmenter(
            options.model,
            device=options.device,
            tta=options.tta,
            skull_strip=options.skull_strip,
            canvases=options.canvases,
            refine=options.refine,
            calibrate=options.calibrate,
            pose=options.pose,
        )
    return _LOADED[options]


def segment_subject(options: SegmentOptions, item: SegmentItem) -> str:
    """Segment one scan and write its files; returns the summary message."""
    from wholebrain.io import load_image, save_volume
    from wholebrain.segment.qc import write_qc_png
    from wholebrain.segment.volumes import volume_rows, write_volume_table

    model = segmenter(options)
    started = time.perf_counter()
    volume = load_image(item.input)
    loaded = time.perf_counter() - started
    result = model.segment(volume, posteriors=item.posteriors)
    protocol = model.protocol

    started = time.perf_counter()
    dseg, table, volumes, qc = item.outputs[:4]
    dseg.parent.mkdir(parents=True, exist_ok=True)
    save_volume(result.labels, volume, dseg, force=True)
    protocol.write_tsv(table)
    voxel_mm3 = float(np.prod(volume.spacing_mm))
    extra_csf = None
    if result.tissue_canvas is not None:
        canvas_voxel_mm3 = result.conformed.config.spacing_mm**3
        outside = (result.canvas_labels == 0) & (result.tissue_canvas == 1)
        extra_csf = float(outside.sum()) * canvas_voxel_mm3
    rows = volume_rows(
        result.labels,
        voxel_mm3,
        protocol,
        flip_agreement=result.flip_agreement,
        extra_csf_mm3=extra_csf,
    )
    write_volume_table(volumes, rows, force=True)
    totals = {r.name: r.volume_mm3 for r in rows if r.index == "total"}
    structures = int(np.count_nonzero([r.volume_mm3 for r in rows if r.index != "total"]))
    network = result.seconds["network"]
    title = (
        f"{item.subject}   wholebrain {protocol.name}: {structures} structures, "
        f"brain {totals['Total-Brain'] / 1000:.0f} mL, network {network:.1f} s"
    )
    picture_image, picture_labels = _picture_grid(volume, result)
    write_qc_png(qc, picture_image, picture_labels, protocol, title=title, force=True)
    if item.posteriors and result.probabilities is not None:
        _write_posteriors(item.outputs[4], result)
    written = time.perf_counter() - started
    seconds = {"load": loaded, **result.seconds, "write": written}
    timing = ", ".join(f"{k} {v:.1f} s" for k, v in seconds.items())
    stripped = "skull-stripped first, " if result.skull_stripped else ""
    return (
        f"{stripped}{structures} structures, GM {totals['Total-Grey-Matter'] / 1000:.0f} mL, "
        f"WM {totals['Total-White-Matter'] / 1000:.0f} mL, "
        f"ICV {totals['Intracranial-Volume'] / 1000:.0f} mL ({timing})"
    )


def _picture_grid(volume: Volume, result: Segmentation) -> tuple[np.ndarray, np.ndarray]:
    """The T1 and the labels on a 1 mm RAS grid for the QC picture.

    A model whose canvas is coarser than 1 mm (the shipped one works at 2 mm) would show a
    blurred scan; the picture instead shows the scan conformed at 1 mm with the labels the
    user gets (those on the scan's own grid) carried onto it. A whole-head scan is shown
    whole (not skull-stripped): a brain mask that cut off brain shows as unlabelled brain.
    """
    if result.picture is not None:  # the whole head, conformed for skull-stripping
        return result.picture.image, result.picture.labels_to_canvas(result.labels)
    if result.conformed.config.spacing_mm <= 1.0:
        return result.conformed.image, result.canvas_labels
    from wholebrain.conform import ConformConfig, conform

    fine = conform(volume, ConformConfig())
    return fine.image, fine.labels_to_canvas(result.labels)


def _write_posteriors(path: Path, result: Segmentation) -> None:
    """(X, Y, Z, K) uint8 probabilities x 255 on the canvas, scl_slope 1/255."""
    import nibabel

    from wholebrain.io import atomic_output

    nib: Any = nibabel  # nibabel has no type hints
    if result.probabilities is None:
        raise ValueError("the segmentation was made without posteriors")
    image = nib.Nifti1Image(result.probabilities, result.conformed.canvas_affine)
    image.header.set_slope_inter(1 / 255, 0)
    image.header.set_xyzt_units("mm")
    image.header.set_intent("vector", name="class probabilities")
    with atomic_output(path, force=True) as tmp:
        nib.save(image, tmp)
