"""The dataset manifest: one CSV row per (subject, annotation).

Columns: ``subject, image, annotation, format, protocol, split``.

- ``image``: the T1-weighted scan.
- ``annotation``: a label map on the image's grid, or empty for an unlabelled scan.
- ``format``: how the annotation is numbered, one of
  :data:`wholebrain.protocols.importers.IMPORT_FORMATS` (``mindboggle``, ``fsl-fast``, …).
- ``protocol``: the protocol the annotation is in after import (``dkt-aseg``, ``tissue``, …).
- ``split``: ``train``, ``val``, ``test`` or empty.

A subject with several annotations (say FSL FAST and FIRST) has one row per annotation.
Relative paths are relative to the manifest's folder, so a cohort folder can move.
CSV was chosen over TOML because cohorts have thousands of rows and every spreadsheet
and pandas reads it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from wholebrain.errors import InputError
from wholebrain.io import atomic_output

MANIFEST_COLUMNS = ("subject", "image", "annotation", "format", "protocol", "split")
SPLITS = ("train", "val", "test", "")


@dataclass(frozen=True)
class Entry:
    """One row of the manifest."""

    subject: str  # subject (or subject_session) id, unique per image
    image: Path  # the T1-weighted scan
    annotation: Path | None = None  # label map on the image's grid; None for an unlabelled scan
    format: str = ""  # numbering of the annotation file (an importer name); "" when unlabelled
    protocol: str = ""  # protocol of the annotation after import; "" when unlabelled
    split: str = ""  # train / val / test, or "" when not assigned yet


def read_manifest(path: str | Path) -> list[Entry]:
    """Read a manifest CSV, resolving relative paths against its folder.

    Raises:
        InputError: the file is missing, lacks a column, or a row is inconsistent
            (the message gives the line number).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "a manifest CSV file", "no such file", "check the path")
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in MANIFEST_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(
                path,
                f"a manifest with columns {', '.join(MANIFEST_COLUMNS)}",
                f"no column {', '.join(missing)}",
                "write it with `wholebrain dataset import` or add the columns",
            )
        entries = [_entry_from_row(row, path, line) for line, row in enumerate(reader, start=2)]
    _check_unique(entries, path)
    return entries


def _entry_from_row(row: dict[str, str], manifest: Path, line: int) -> Entry:
    where = f"{manifest} line {line}"

    def resolve(text: str) -> Path:
        candidate = Path(text).expanduser()
        return candidate if candidate.is_absolute() else manifest.parent / candidate

    subject = row["subject"].strip()
    image = row["image"].strip()
    if not subject or not image:
        raise InputError(where, "a subject id and an image path", "an empty field", "fill them in")
    annotation = row["annotation"].strip()
    fmt = row["format"].strip()
    protocol = row["protocol"].strip()
    split = row["split"].strip()
    if split not in SPLITS:
        raise InputError(where, "split train, val, test or empty", repr(split), "fix the split")
    if annotation and not (fmt and protocol):
        raise InputError(
            where, "a format and a protocol for the annotation", "an empty field", "fill them in"
        )
    return Entry(
        subject=subject,
        image=resolve(image),
        annotation=resolve(annotation) if annotation else None,
        format=fmt if annotation else "",
        protocol=protocol if annotation else "",
        split=split,
    )


def _check_unique(entries: Sequence[Entry], source: str | Path) -> None:
    images: dict[str, Path] = {}
    seen: set[tuple[str, str]] = set()
    for entry in entries:
        previous = images.setdefault(entry.subject, entry.image)
        if previous != entry.image:
            raise InputError(
                source,
                f"one image per subject id, subject {entry.subject!r}",
                f"two images ({previous} and {entry.image})",
                "give each scan its own subject id (e.g. sub-01_ses-02)",
            )
        key = (entry.subject, entry.protocol)
        if entry.annotation is not None and key in seen:
            raise InputError(
                source,
                f"at most one {entry.protocol!r} annotation for subject {entry.subject!r}",
                "two",
                "keep one row per subject and protocol",
            )
        seen.add(key)


def write_manifest(entries: Iterable[Entry], path: str | Path, *, force: bool = False) -> Path:
    """Write entries as a manifest CSV (atomically); paths inside the manifest's folder
    are written relative to it, others absolute."""
    path = Path(path)
    entries = list(entries)
    _check_unique(entries, path)
    base = path.parent.resolve()

    def portable(p: Path | None) -> str:
        if p is None:
            return ""
        absolute = p.resolve()
        return os.path.relpath(absolute, base) if absolute.is_relative_to(base) else str(absolute)

    with atomic_output(path, force=force) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(MANIFEST_COLUMNS)
        for e in entries:
            writer.writerow(
                [
                    e.subject,
                    portable(e.image),
                    portable(e.annotation),
                    e.format,
                    e.protocol,
                    e.split,
                ]
            )
    return path


def subjects(entries: Iterable[Entry]) -> dict[str, list[Entry]]:
    """Group entries by subject id, keeping the manifest's order."""
    grouped: dict[str, list[Entry]] = {}
    for entry in entries:
        grouped.setdefault(entry.subject, []).append(entry)
    return grouped


def assign_validation(entries: Sequence[Entry], count: int, seed: int) -> list[Entry]:
    """Put ``count`` randomly chosen subjects (seeded) in ``val`` and the rest in ``train``.

    Validation subjects are drawn from those with a full annotation when there are
    any, because validation Dice is measured on the full protocol; at least one of them
    stays in training.
    """
    import numpy as np

    from wholebrain.protocols import FULL_PROTOCOL

    grouped = subjects(entries)
    full = sorted(
        s for s, rows in grouped.items() if any(r.protocol == FULL_PROTOCOL for r in rows)
    )
    pool = full or sorted(grouped)
    if count < 0 or count >= len(pool):
        raise InputError(
            None,
            f"a validation count between 0 and {len(pool) - 1}",
            str(count),
            "leave at least one subject for training",
        )
    rng = np.random.default_rng(seed)
    chosen = set(rng.choice(pool, size=count, replace=False).tolist()) if count else set()
    return [replace(e, split="val" if e.subject in chosen else "train") for e in entries]
