"""Find subjects, scans and annotations in the folder layouts users already have.

Each finder returns manifest :class:`~wholebrain.data.manifest.Entry` rows without
reading any image; validation happens later, for all subjects at once
(:func:`wholebrain.data.cache.prepare_subjects`).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

from wholebrain.data.manifest import Entry
from wholebrain.errors import InputError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".nii.gz", ".nii", ".mgz", ".mgh")

# Outputs of FSL FAST / FIRST / BET that sit beside the scans and are not scans themselves.
_FSL_OUTPUT = re.compile(
    r"_(seg|pveseg|pve_\d|mixeltype|seg_\d|firstseg|origsegs|mask|brain_mask|restore|bias)$"
)


def split_image_name(path: Path) -> tuple[str, str]:
    """``sub-01_T1w.nii.gz`` → ``("sub-01_T1w", ".nii.gz")``; ("", "") if not an image."""
    name = path.name
    for suffix in IMAGE_SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)], suffix
    return "", ""


def output_stem(path: str | Path) -> str:
    """The prefix of the files made from a scan: ``sub-01_T1w.nii.gz`` → ``sub-01``,
    ``orig.mgz`` → ``orig`` (image suffix and a trailing BIDS ``_T1w`` removed)."""
    name = Path(path).name
    stem = split_image_name(Path(name))[0] or name
    return stem.removesuffix("_T1w") or stem


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and split_image_name(p)[0])


def _require_folder(root: Path, layout: str) -> None:
    if not root.is_dir():
        raise InputError(
            root, f"a folder in the {layout} layout", "no such folder", "check the path"
        )


def find_mindboggle(root: Path) -> list[Entry]:
    """Mindboggle-101 as in ``../shared/data/mindboggle-oasis-trt-20-dev``:
    ``sub-XX/t1w_brain.nii.gz`` with ``sub-XX/labels_dkt31_aseg.nii.gz`` (full annotation,
    Mindboggle numbering). A subject without the label file is listed unlabelled."""
    _require_folder(root, "Mindboggle")
    entries = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        image = folder / "t1w_brain.nii.gz"
        if not image.is_file():
            continue
        labels = folder / "labels_dkt31_aseg.nii.gz"
        if labels.is_file():
            entries.append(Entry(folder.name, image, labels, "mindboggle", "dkt-aseg"))
        else:
            entries.append(Entry(folder.name, image))
    return entries


def find_freesurfer(subjects_dir: Path) -> list[Entry]:
    """FreeSurfer subjects: ``<subject>/mri/orig.mgz`` with ``aparc.DKTatlas+aseg.mgz``
    (full annotation) or, failing that, ``aseg.mgz`` (partial ``aseg`` annotation)."""
    _require_folder(subjects_dir, "FreeSurfer SUBJECTS_DIR")
    entries = []
    for folder in sorted(p for p in subjects_dir.iterdir() if (p / "mri").is_dir()):
        mri = folder / "mri"
        image = mri / "orig.mgz"
        if not image.is_file():
            log.warning("%s: no mri/orig.mgz, subject skipped", folder)
            continue
        if (mri / "aparc.DKTatlas+aseg.mgz").is_file():
            entries.append(
                Entry(
                    folder.name,
                    image,
                    mri / "aparc.DKTatlas+aseg.mgz",
                    "freesurfer-dkt",
                    "dkt-aseg",
                )
            )
        elif (mri / "aseg.mgz").is_file():
            entries.append(Entry(folder.name, image, mri / "aseg.mgz", "freesurfer-aseg", "aseg"))
        else:
            entries.append(Entry(folder.name, image))
    return entries


def find_fsl(folder: Path) -> list[Entry]:
    """A folder of scans with FSL outputs beside them.

    ``X.nii.gz`` is a scan; ``X*_seg`` / ``X*_pveseg`` (FAST hard segmentations) give a
    ``tissue`` annotation and ``X*_firstseg`` (FIRST) a ``first`` annotation. An output
    belongs to the scan with the longest matching name, so ``X_brain_seg`` goes with
    ``X_brain`` when both ``X`` and ``X_brain`` are present.
    """
    _require_folder(folder, "FSL")
    files = _images_in(folder)
    scans = {
        split_image_name(p)[0]: p for p in files if not _FSL_OUTPUT.search(split_image_name(p)[0])
    }
    found: dict[str, dict[str, Path]] = {stem: {} for stem in scans}
    for path in files:
        stem = split_image_name(path)[0]
        kind = (
            "fsl-first"
            if stem.endswith("_firstseg")
            else "fsl-fast"
            if stem.endswith(("_seg", "_pveseg"))
            else None
        )
        if kind is None:
            continue
        owners = [s for s in scans if stem.startswith(s + "_")]
        if not owners:
            log.warning("%s: FSL output without a matching scan, ignored", path)
            continue
        owner = max(owners, key=len)
        # FAST writes both _seg and _pveseg; the hard _seg is the documented one.
        if kind in found[owner] and not stem.endswith("_seg"):
            continue
        found[owner][kind] = path
    protocol_of = {"fsl-fast": "tissue", "fsl-first": "first"}
    entries = []
    for stem, image in scans.items():
        outputs = found[stem]
        if not outputs:
            entries.append(Entry(stem, image))
        for kind in sorted(outputs):
            entries.append(Entry(stem, image, outputs[kind], kind, protocol_of[kind]))
    return entries


# BIDS derivatives: the ``desc-`` entity of a ``_dseg`` file says its numbering.
BIDS_DESC_FORMATS = {
    "wholebrain": "dkt-aseg",  # ours (`wholebrain segment`)
    "tissue": "tissue",  # ours (`wholebrain partial`), FSL FAST convention
    "aseg": "freesurfer-aseg",  # fMRIPrep / FreeSurfer aseg numbering
    "aparcdkt": "freesurfer-dkt",
    "dktaseg": "dkt-aseg",  # ours (`wholebrain partial --import`, full protocol)
    "first": "first",  # ours (`wholebrain partial --method register`)
}


def find_bids(root: Path) -> list[Entry]:
    """A BIDS dataset: every ``sub-*/[ses-*/]anat/*_T1w.nii[.gz]`` is a scan (subject id
    ``sub-X[_ses-Y][_acq-Z...]``); ``derivatives/*/sub-*/.../anat/<same prefix>_desc-<d>_dseg``
    files become annotations when ``<d>`` is in :data:`BIDS_DESC_FORMATS`."""
    _require_folder(root, "BIDS")
    if not (root / "dataset_description.json").is_file():
        log.warning("%s: no dataset_description.json; reading it as BIDS anyway", root)
    scans = sorted(p for p in root.glob("sub-*/**/anat/*_T1w.nii*") if split_image_name(p)[0])
    derivatives = root / "derivatives"
    dsegs = sorted(derivatives.glob("*/sub-*/**/anat/*_dseg.nii*")) if derivatives.is_dir() else []
    entries = []
    for scan in scans:
        prefix = split_image_name(scan)[0][: -len("_T1w")]
        matched = False
        for dseg in dsegs:
            stem = split_image_name(dseg)[0]
            match = re.fullmatch(
                re.escape(prefix) + r"(?:_space-orig)?_desc-([A-Za-z0-9]+)_dseg", stem
            )
            if match is None:
                continue
            fmt = BIDS_DESC_FORMATS.get(match.group(1))
            if fmt is None:
                log.info("%s: desc-%s is not a known numbering, ignored", dseg, match.group(1))
                continue
            from wholebrain.protocols.importers import IMPORT_FORMATS

            entries.append(Entry(prefix, scan, dseg, fmt, IMPORT_FORMATS[fmt]))
            matched = True
        if not matched:
            entries.append(Entry(prefix, scan))
    return entries


LAYOUTS: dict[str, Callable[[Path], list[Entry]]] = {
    "mindboggle": find_mindboggle,
    "freesurfer": find_freesurfer,
    "fsl": find_fsl,
    "bids": find_bids,
}


def find_subjects(layout: str, root: str | Path) -> list[Entry]:
    """Entries for every subject found under ``root`` in the given layout."""
    if layout not in LAYOUTS:
        raise InputError(None, f"a layout among {', '.join(LAYOUTS)}", repr(layout), "pick one")
    entries = LAYOUTS[layout](Path(root))
    if not entries:
        raise InputError(
            root, f"scans in the {layout} layout", "none", "check the folder and layout"
        )
    return entries
