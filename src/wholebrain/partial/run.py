"""``wholebrain partial`` for a cohort: which scans, which files each writes, and doing one.

Planning turns the user's inputs into :class:`PartialItem` s (one per subject) for
:func:`wholebrain.cohort.run_cohort`; the ``*_subject`` functions do one item; afterwards
:func:`merge_manifest` adds the annotations written to a training manifest.

Inputs (:func:`collect_scans`) are image files, folders (every image directly inside, except
files whose name marks them as label maps or outputs: ``*_dseg``, ``*_seg``, ``*_mask``,
``labels*``, ``aseg``, ...) and manifest CSVs (their images, with their subject ids). A file's
subject id is :func:`~wholebrain.data.layouts.output_stem` of its name (``sub-01_T1w.nii.gz``
-> ``sub-01``). Outputs, in the output folder::

    <subject>_desc-<protocol>_dseg.nii.gz   label map on the scan's grid (shape, affine, header)
    <subject>_desc-<protocol>_dseg.tsv      its label table (BIDS dseg.tsv: index, name, color)

``<protocol>`` is ``tissue``, ``first``, ``aseg`` or ``dktaseg`` (the protocol name without
its hyphen: BIDS entity values are alphanumeric).
"""

from __future__ import annotations

import functools
import importlib
import logging
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from wholebrain.cohort import WorkItem
from wholebrain.data.layouts import find_subjects, output_stem, split_image_name
from wholebrain.data.manifest import Entry, read_manifest, subjects, write_manifest
from wholebrain.errors import InputError
from wholebrain.io import Volume, load_image, load_labels, save_volume
from wholebrain.partial.registration import DEFAULT_TRANSFORM
from wholebrain.protocols import get_protocol, map_labels
from wholebrain.protocols.importers import import_labels

__all__ = [
    "IMPORT_LAYOUTS",
    "TISSUE_METHODS",
    "AtlasConfig",
    "PartialItem",
    "PlannedMap",
    "Scan",
    "TissueConfig",
    "check_manifest",
    "classify_subject",
    "collect_scans",
    "import_subject",
    "merge_manifest",
    "plan_import",
    "plan_maps",
    "register_subject",
    "tissue_module",
]

log = logging.getLogger(__name__)

TISSUE_METHODS = ("builtin", "atropos", "fsl")  # classify_tissue's methods
IMPORT_LAYOUTS = ("fsl", "freesurfer")  # layouts whose existing outputs can be imported
# Name tokens of files that are label maps or tool outputs, not scans to annotate.
_NOT_A_SCAN = re.compile(
    r"(?:^|[_.+-])(?:dseg|probseg|seg|pveseg|firstseg|origsegs|mask|labels?|aseg|aparc|"
    r"wmparc|ribbon|mixeltype|pve|bias|restore)(?:[_.+-]|$)",
    re.IGNORECASE,
)


# --- what each subject writes ------------------------------------------------------------------


@dataclass(frozen=True)
class PlannedMap:
    """One label map an item writes (and its label table beside it)."""

    protocol: str  # protocol of the map written
    path: Path  # <outdir>/<subject>_desc-<protocol>_dseg.nii.gz
    source: Path | None = None  # the file converted into it (imports); None when computed
    source_format: str = ""  # numbering of ``source``: an import format such as "fsl-fast"

    @property
    def table(self) -> Path:
        """The label table (TSV) beside the map."""
        return self.path.with_name(self.path.name.removesuffix(".nii.gz") + ".tsv")


@dataclass(frozen=True)
class PartialItem(WorkItem):
    """A subject of ``wholebrain partial``: its scan and the maps it writes."""

    maps: tuple[PlannedMap, ...] = ()  # in writing order; outputs = each map and its table


@dataclass(frozen=True)
class Scan:
    """An input scan with its subject id."""

    subject: str  # names the outputs and the manifest rows
    image: Path  # the T1-weighted scan


def map_path(outdir: Path, subject: str, protocol: str) -> Path:
    """``<outdir>/<subject>_desc-<protocol without '-'>_dseg.nii.gz``."""
    return outdir / f"{subject}_desc-{protocol.replace('-', '')}_dseg.nii.gz"


def _item(subject: str, image: Path, maps: Sequence[PlannedMap]) -> PartialItem:
    outputs = tuple(path for m in maps for path in (m.path, m.table))
    return PartialItem(subject, image, outputs, tuple(maps))


# --- inputs ----------------------------------------------------------------------------------


def collect_scans(inputs: Sequence[str | Path]) -> list[Scan]:
    """The scans named by image files, folders and manifest CSVs, each once.

    Raises:
        InputError: an input that is none of these, a folder without images, or no scan at
            all (an empty manifest).
    """
    scans: list[Scan] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            scans += _scans_in_folder(path)
        elif path.suffix.lower() == ".csv":
            scans += [
                Scan(rows[0].subject, rows[0].image)
                for rows in subjects(read_manifest(path)).values()
            ]
        elif split_image_name(path)[0] or not path.exists():
            scans.append(Scan(output_stem(path), path))  # a missing file fails in its item
        else:
            raise InputError(
                path,
                "an image (.nii, .nii.gz, .mgz, .mgh), a folder of images or a manifest .csv",
                f"a file named {path.name!r}",
                "convert it to NIfTI first (dcm2niix for DICOM)",
            )
    seen: set[Path] = set()
    unique = []
    for scan in scans:
        key = scan.image.absolute()
        if key not in seen:
            seen.add(key)
            unique.append(scan)
    if not unique:
        raise InputError(
            ", ".join(str(i) for i in inputs), "scans to annotate", "none", "check the inputs"
        )
    return unique


def _scans_in_folder(folder: Path) -> list[Scan]:
    images = sorted(p for p in folder.iterdir() if p.is_file() and split_image_name(p)[0])
    scans = [p for p in images if not _NOT_A_SCAN.search(split_image_name(p)[0])]
    if len(scans) < len(images):
        left_out = sorted(set(images) - set(scans))
        log.info(
            "%s: %d file(s) left out as label maps or outputs: %s",
            folder,
            len(left_out),
            ", ".join(p.name for p in left_out[:5]) + (" ..." if len(left_out) > 5 else ""),
        )
    if not scans:
        subfolders = sum(p.is_dir() for p in folder.iterdir())
        raise InputError(
            folder,
            "images to annotate (.nii, .nii.gz, .mgz, .mgh) directly in the folder",
            f"none ({len(images)} label maps or outputs, {subfolders} subfolders)",
            "give the image files, or a manifest CSV listing them (wholebrain dataset import "
            "writes one for Mindboggle, FreeSurfer, FSL and BIDS layouts)",
        )
    return [Scan(output_stem(p), p) for p in scans]


def plan_maps(scans: Iterable[Scan], outdir: Path, protocol: str) -> list[PartialItem]:
    """One item per scan writing one computed map of ``protocol``."""
    return [
        _item(s.subject, s.image, [PlannedMap(protocol, map_path(outdir, s.subject, protocol))])
        for s in scans
    ]


def plan_import(layout: str, roots: Sequence[str | Path], outdir: Path) -> list[PartialItem]:
    """One item per subject with existing annotations in ``layout`` under each root.

    FSL: FAST ``*_seg``/``*_pveseg`` -> ``tissue``, FIRST ``*_firstseg`` -> ``first``.
    FreeSurfer: ``aparc.DKTatlas+aseg.mgz`` -> ``dkt-aseg``, or else ``aseg.mgz`` -> ``aseg``.

    Raises:
        InputError: unknown layout, a root that is not such a folder, or no annotation at all.
    """
    if layout not in IMPORT_LAYOUTS:
        raise InputError(
            "--import", f"one of {', '.join(IMPORT_LAYOUTS)}", repr(layout), "pick one"
        )
    items = []
    unannotated = []
    for root in roots:
        for rows in subjects(find_subjects(layout, root)).values():
            subject = rows[0].subject.removesuffix("_T1w") or rows[0].subject
            maps = [
                PlannedMap(
                    r.protocol, map_path(outdir, subject, r.protocol), r.annotation, r.format
                )
                for r in rows
                if r.annotation is not None
            ]
            if maps:
                items.append(_item(subject, rows[0].image, maps))
            else:
                unannotated.append(subject)
    if unannotated:
        log.warning(
            "%d scan(s) without %s annotations left out: %s",
            len(unannotated),
            layout,
            ", ".join(unannotated[:5]) + (" ..." if len(unannotated) > 5 else ""),
        )
    if not items:
        expected = "FAST *_seg / FIRST *_firstseg" if layout == "fsl" else "aseg.mgz"
        raise InputError(
            ", ".join(str(r) for r in roots),
            f"{layout} outputs to import ({expected} beside the scans)",
            "none",
            f"run {'FAST or FIRST' if layout == 'fsl' else 'recon-all'} first, or annotate "
            "the scans with wholebrain partial --method builtin",
        )
    return items


# --- doing one subject -------------------------------------------------------------------------


@dataclass(frozen=True)
class TissueConfig:
    """How ``classify_subject`` classifies tissue."""

    method: str = "builtin"  # classify_tissue method: builtin, atropos or fsl
    seed: int = 0  # seed of the classifier's random initialisation


@dataclass(frozen=True)
class AtlasConfig:
    """The atlas of ``register_subject``."""

    image: Path  # atlas T1-weighted scan
    labels: Path  # its label map, on its grid
    format: str = "dkt-aseg"  # numbering of ``labels``: an import format (e.g. "mindboggle")
    type_of_transform: str = DEFAULT_TRANSFORM  # ants.registration preset


def classify_subject(config: TissueConfig, item: PartialItem) -> str:
    """Classify the scan into background/CSF/GM/WM and write the ``tissue`` map and table."""
    volume = load_image(item.input)
    result = tissue_module().classify_tissue(volume, method=config.method, seed=config.seed)
    labels = np.asarray(result.labels)
    if labels.shape != volume.shape:
        raise ValueError(f"classify_tissue returned shape {labels.shape}, not {volume.shape}")
    _write(labels, volume, item.maps[0])
    return _volumes(labels, volume, "tissue")


def register_subject(config: AtlasConfig, item: PartialItem) -> str:
    """Register the atlas to the scan and write the propagated ``first`` map and table."""
    from wholebrain.partial.registration import RegistrationConfig, register_atlas

    atlas, atlas_labels, atlas_protocol = load_atlas(config.image, config.labels, config.format)
    volume = load_image(item.input)
    start = time.perf_counter()
    labels = register_atlas(
        atlas,
        atlas_labels,
        volume,
        atlas_protocol=atlas_protocol,
        config=RegistrationConfig(type_of_transform=config.type_of_transform),
    )
    seconds = time.perf_counter() - start
    _write(labels, volume, item.maps[0])
    found = len(np.unique(labels)) - 1
    return f"{found} of 15 FIRST structures, registration {seconds:.0f} s"


def import_subject(item: PartialItem) -> str:
    """Convert each existing annotation of the subject to our ids and write it."""
    image = load_image(item.input)
    notes = []
    for planned in item.maps:
        if planned.source is None:
            raise ValueError(f"{planned.path}: an import needs a source file")
        source = load_labels(planned.source, like=image)
        labels, _ = import_labels(
            source.data,
            planned.source_format,
            spacing_mm=source.spacing_mm,
            source=str(planned.source),
        )
        _write(labels, source, planned)
        notes.append(f"{planned.protocol} from {planned.source.name}")
    return ", ".join(notes)


def tissue_module() -> Any:
    """:mod:`wholebrain.partial.tissue`, imported on first use (and looked up at each call, so
    tests can replace ``classify_tissue``).

    Raises:
        InputError: the module cannot be imported (an incomplete installation).
    """
    try:
        return importlib.import_module("wholebrain.partial.tissue")
    except ImportError as error:
        raise InputError(
            None,
            "the tissue classifier wholebrain.partial.tissue",
            f"it cannot be imported ({error})",
            "reinstall wholebrain (pip install --force-reinstall wholebrain)",
        ) from None


@functools.cache
def load_atlas(image: Path, labels: Path, fmt: str) -> tuple[Volume, np.ndarray, str]:
    """The atlas scan and its labels converted to a wholebrain protocol (loaded once per process).

    Returns:
        (atlas scan, (X, Y, Z) int32 label ids, their protocol).

    Raises:
        InputError: unreadable files, labels on another grid, or ids the format cannot hold.
    """
    volume = load_image(image)
    label_map = load_labels(labels, like=volume)
    converted, protocol = import_labels(
        label_map.data,
        fmt,
        brain_mask=volume.data > 0 if fmt == "mindboggle" else None,
        spacing_mm=volume.spacing_mm,
        source=str(labels),
    )
    map_labels(converted, "first", source=protocol)  # an atlas too coarse fails here, once
    return volume, converted, protocol


def _write(labels: np.ndarray, like: Volume, planned: PlannedMap) -> None:
    # force: an item runs only when its outputs are incomplete or --force was given.
    save_volume(labels, like, planned.path, force=True)
    get_protocol(planned.protocol).write_tsv(planned.table)


def _volumes(labels: np.ndarray, like: Volume, protocol: str) -> str:
    """``"CSF 310 mL, GM 705 mL, WM 480 mL"``: a quick sanity check of a map."""
    voxel_ml = abs(float(np.linalg.det(like.affine[:3, :3]))) / 1000.0
    counts = np.bincount(labels.ravel().astype(np.int64, copy=False))
    parts = [
        f"{lab.name} {counts[lab.id] * voxel_ml:.0f} mL"
        for lab in get_protocol(protocol).labels[1:]
        if lab.id < counts.size
    ]
    return ", ".join(parts)


# --- the manifest ------------------------------------------------------------------------------


def _entries(items: Iterable[PartialItem]) -> list[Entry]:
    return [
        Entry(item.subject, item.input.resolve(), m.path.resolve(), m.protocol, m.protocol)
        for item in items
        for m in item.maps
    ]


def _resolved(entries: Iterable[Entry]) -> list[Entry]:
    return [
        replace(e, image=e.image.resolve(), annotation=e.annotation and e.annotation.resolve())
        for e in entries
    ]


def check_manifest(path: Path, items: Iterable[PartialItem]) -> None:
    """Check, before any work, that the items can be merged into the manifest at ``path``.

    Raises:
        InputError: the manifest is unreadable, or gives one of the subject ids another image.
    """
    if not path.exists():
        return
    images = {e.subject: e.image for e in _resolved(read_manifest(path))}
    for item in items:
        known = images.get(item.subject)
        if known is not None and known != item.input.resolve():
            raise InputError(
                path,
                f"subject {item.subject!r} with the image {item.input}",
                f"it with another image, {known}",
                "use another --manifest, or give the scans distinct names",
            )


def merge_manifest(path: Path, items: Sequence[PartialItem]) -> int:
    """Add the items' maps to the manifest at ``path`` (created if needed), atomically.

    One row per subject and protocol: a new row replaces an existing one of the same subject
    and protocol, an unlabelled row of the subject is dropped; other rows and a subject's
    split are kept. Concurrent shards are serialised by a lock on the manifest's folder.

    Returns:
        The number of rows added or replaced.

    Raises:
        InputError: the existing manifest is unreadable or gives a subject another image.
    """
    from wholebrain.cohort import folder_lock

    new = _entries(items)
    if not new:
        return 0
    with folder_lock(path.parent):
        existing = _resolved(read_manifest(path)) if path.exists() else []
        split = {e.subject: e.split for e in existing if e.split}
        new = [replace(e, split=split.get(e.subject, "")) for e in new]
        by_key = {(e.subject, e.protocol): e for e in new}
        annotated = {e.subject for e in new}
        merged = []
        for e in existing:
            if (e.subject, e.protocol) in by_key:
                merged.append(by_key.pop((e.subject, e.protocol)))
            elif not (e.annotation is None and e.subject in annotated):
                merged.append(e)
        merged += by_key.values()
        write_manifest(merged, path, force=True)
    return len(new)
