"""Validate every subject of a manifest and store it conformed, ready for training.

Cache layout, one folder per subject (written to a temporary folder and renamed into
place, so a crash never leaves a half-written subject)::

    CACHE/<subject>/image.npy            (X, Y, Z) float16, conformed and normalised
    CACHE/<subject>/labels-<protocol>.npy (X, Y, Z) class indices of that protocol
    CACHE/<subject>/subject.json         geometry, sources and conform settings

The arrays are plain ``.npy`` so training opens them with ``np.load(mmap_mode="r")``
and reads only the patches it samples. A subject whose sources and conform settings
are unchanged is not rebuilt.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from wholebrain.conform import ConformConfig, conform
from wholebrain.data.manifest import Entry, subjects
from wholebrain.errors import WholebrainError
from wholebrain.io import Volume, load_image, load_labels
from wholebrain.protocols import get_protocol
from wholebrain.protocols.importers import import_labels

log = logging.getLogger(__name__)

CACHE_VERSION = 1  # bump when the layout of a cached subject changes
# Formats whose importer needs a brain mask; their scans are skull-stripped, so the
# mask is simply the non-zero voxels of the scan.
_MASK_FROM_IMAGE_FORMATS = frozenset({"mindboggle"})


class InvalidSubjectsError(WholebrainError):
    """Some subjects have files that cannot be used; the message lists every one."""

    def __init__(self, problems: Sequence[tuple[str, str]], total: int) -> None:
        self.problems = list(problems)  # (subject, one-sentence message)
        self.subjects = sorted({subject for subject, _ in self.problems})
        lines = "\n".join(f"  {subject}: {message}" for subject, message in self.problems)
        super().__init__(
            f"{len(self.problems)} problem(s) in {total} subject(s); fix or remove these "
            f"rows and run again:\n{lines}"
        )


@dataclass(frozen=True, eq=False)
class CachedSubject:
    """A subject in the cache; arrays are memory-mapped on access."""

    subject: str
    folder: Path
    canvas_affine: np.ndarray  # (4, 4) canvas voxel -> world RAS mm
    native_shape: tuple[int, int, int]  # the scan's own grid
    native_affine: np.ndarray  # (4, 4) scan voxel -> world
    protocols: tuple[str, ...]  # protocols with an annotation for this subject
    meta: dict[str, Any] = field(default_factory=dict)

    def image(self) -> np.ndarray:
        """(X, Y, Z) float16 conformed intensities, memory-mapped."""
        image: np.ndarray = np.load(self.folder / "image.npy", mmap_mode="r")
        return image

    def labels(self, protocol: str) -> np.ndarray:
        """(X, Y, Z) class indices (0..K-1) of ``protocol``, memory-mapped."""
        if protocol not in self.protocols:
            raise KeyError(f"subject {self.subject} has no {protocol!r} annotation")
        labels: np.ndarray = np.load(self.folder / f"labels-{protocol}.npy", mmap_mode="r")
        return labels


def _fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _wanted_meta(rows: Sequence[Entry], config: ConformConfig) -> dict[str, Any]:
    return {
        "cache_version": CACHE_VERSION,
        "conform": asdict(config),
        "image": _fingerprint(rows[0].image),
        "annotations": {
            r.protocol: {"format": r.format, **_fingerprint(r.annotation)}
            for r in rows
            if r.annotation is not None
        },
    }


def _is_current(folder: Path, wanted: dict[str, Any]) -> bool:
    try:
        stored = json.loads((folder / "subject.json").read_text())
    except (OSError, ValueError):
        return False
    return all(stored.get(k) == _jsonable(v) for k, v in wanted.items())


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value))


def load_annotation(row: Entry, image: Volume) -> tuple[np.ndarray, str]:
    """A manifest row's annotation in wholebrain ids: (labels on ``image``'s grid, protocol).

    Raises:
        InputError: the file fails the input rules or holds ids its format does not have.
        ValueError: the row has no annotation.
    """
    if row.annotation is None:
        raise ValueError(f"manifest row of {row.subject} has no annotation")
    labels = load_labels(row.annotation, like=image)
    mask = image.data > 0 if row.format in _MASK_FROM_IMAGE_FORMATS else None
    return import_labels(
        labels.data,
        row.format,
        brain_mask=mask,
        spacing_mm=image.spacing_mm,
        source=str(row.annotation),
    )


def _check_subject(
    rows: Sequence[Entry],
) -> tuple[Volume, dict[str, np.ndarray], list[tuple[str, str]]]:
    """Load the scan and every annotation, import them; return what loaded and the problems."""
    subject = rows[0].subject
    problems: list[tuple[str, str]] = []
    try:
        image = load_image(rows[0].image)
    except WholebrainError as error:
        return Volume(np.zeros((1, 1, 1), np.float32), np.eye(4)), {}, [(subject, str(error))]
    annotations: dict[str, np.ndarray] = {}
    for row in rows:
        if row.annotation is None:
            continue
        try:
            imported, protocol = load_annotation(row, image)
            if protocol != row.protocol:
                problems.append(
                    (
                        subject,
                        f"{row.annotation}: expected protocol {row.protocol!r} as the manifest "
                        f"says, found format {row.format!r} which gives {protocol!r}; "
                        "fix the manifest row",
                    )
                )
                continue
            annotations[protocol] = imported
        except WholebrainError as error:
            problems.append((subject, str(error)))
    return image, annotations, problems


def _write_subject(
    folder: Path,
    image: Volume,
    annotations: dict[str, np.ndarray],
    meta: dict[str, Any],
    config: ConformConfig,
) -> None:
    conformed = conform(image, config)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        np.save(tmp / "image.npy", conformed.image.astype(np.float16))
        for protocol, labels in annotations.items():
            canvas_ids = conformed.labels_to_canvas(labels)
            np.save(tmp / f"labels-{protocol}.npy", get_protocol(protocol).to_index(canvas_ids))
        meta = {
            **meta,
            "canvas_affine": conformed.canvas_affine.tolist(),
            "native_shape": list(conformed.native_shape),
            "native_affine": conformed.native_affine.tolist(),
            "intensity_range": list(conformed.intensity_range),
        }
        (tmp / "subject.json").write_text(json.dumps(meta, indent=1))
        if folder.exists():
            old = folder.parent / f".old-{folder.name}-{os.getpid()}"
            folder.rename(old)
            tmp.rename(folder)
            shutil.rmtree(old)
        else:
            tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@dataclass(frozen=True)
class PrepareReport:
    """What :func:`prepare_subjects` did."""

    checked: int  # subjects whose files were loaded and validated
    cached: int  # subjects written to the cache in this run
    up_to_date: int  # subjects already in the cache with unchanged sources (not re-read)


def prepare_subjects(
    entries: Sequence[Entry],
    cache_dir: str | Path | None = None,
    *,
    config: ConformConfig | None = None,
    force: bool = False,
    progress: bool = True,
) -> PrepareReport:
    """Validate every subject (all io rules, annotation numbering) and, with a
    ``cache_dir``, store each one conformed.

    Every subject is checked before anything fails, so one run reports all bad
    subjects at once.

    Raises:
        InvalidSubjectsError: listing every problem found.
    """
    from tqdm import tqdm

    config = config or ConformConfig()
    grouped = subjects(entries)
    problems: list[tuple[str, str]] = []
    checked = cached = up_to_date = 0
    cache_root = Path(cache_dir) if cache_dir is not None else None
    for subject, rows in tqdm(
        grouped.items(), desc="subjects", unit="subject", disable=not progress
    ):
        folder = cache_root / subject if cache_root is not None else None
        wanted: dict[str, Any] = {}
        if folder is not None:
            try:
                wanted = _wanted_meta(rows, config)
            except OSError as error:
                problems.append(
                    (
                        subject,
                        f"{error.filename}: expected a readable file, found "
                        f"{error.strerror}; check the path",
                    )
                )
                continue
            wanted["subject"] = subject
            if not force and _is_current(folder, wanted):
                up_to_date += 1
                continue
        image, annotations, subject_problems = _check_subject(rows)
        checked += 1
        problems.extend(subject_problems)
        if subject_problems or folder is None:
            continue
        _write_subject(folder, image, annotations, wanted, config)
        cached += 1
    if problems:
        raise InvalidSubjectsError(problems, len(grouped))
    return PrepareReport(checked=checked, cached=cached, up_to_date=up_to_date)


def open_cached(cache_dir: str | Path, subject: str) -> CachedSubject:
    """Open one cached subject (arrays are memory-mapped when read)."""
    folder = Path(cache_dir) / subject
    try:
        meta = json.loads((folder / "subject.json").read_text())
    except (OSError, ValueError) as error:
        raise WholebrainError(
            f"{folder}: expected a cached subject, found {error}; "
            "build the cache with `wholebrain dataset import ... --cache` or `dataset cache`"
        ) from error
    return CachedSubject(
        subject=subject,
        folder=folder,
        canvas_affine=np.asarray(meta["canvas_affine"]),
        native_shape=tuple(meta["native_shape"]),
        native_affine=np.asarray(meta["native_affine"]),
        protocols=tuple(sorted(meta["annotations"])),
        meta=meta,
    )
