"""Structure volumes of a segmentation, as the ``_desc-wholebrain_volumes.tsv`` table.

One row per structure of the protocol (also those the scan has none of: volume 0, so every
subject's table has the same rows and cohorts concatenate), then totals:

- ``Total-Grey-Matter``, ``Total-White-Matter``, ``Total-CSF``: the structures grouped by the
  ``tissue`` protocol's map (cortex, deep grey nuclei, cerebellar cortex ... are grey matter;
  ventricles and CSF are CSF), so the three are consistent with the per-structure rows;
- ``Total-Brain``: every labelled voxel (ventricles included);
- ``Intracranial-Volume``: ``Total-Brain`` plus the CSF around the brain that the ``tissue``
  head finds outside the labels (the full protocol has no label for sulcal and peripheral
  CSF); without a tissue head it equals ``Total-Brain`` and says so in its ``source`` column.

Volumes are counted on the input's own grid (voxel count x voxel volume), in mm³.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wholebrain.io import atomic_output
from wholebrain.protocols import Protocol, map_labels

__all__ = ["VolumeRow", "volume_rows", "write_volume_table"]

COLUMNS = ("index", "name", "volume_mm3", "flip_agreement", "source")


@dataclass(frozen=True)
class VolumeRow:
    """One line of the table."""

    index: int | str  # label id, or "total" for the summary rows
    name: str
    volume_mm3: float
    flip_agreement: float | None = None  # flip test-time-augmentation Dice; None with --no-tta
    source: str = "labels"  # what the volume was counted from


def volume_rows(
    labels: np.ndarray,
    voxel_mm3: float,
    protocol: Protocol,
    *,
    flip_agreement: Mapping[int, float] | None = None,
    extra_csf_mm3: float | None = None,
) -> list[VolumeRow]:
    """The rows of the volume table.

    Args:
        labels: (X, Y, Z) label ids of ``protocol`` (0 = background).
        voxel_mm3: the volume of one voxel of ``labels``.
        protocol: the label table (the full protocol, which maps to ``tissue``).
        flip_agreement: label id -> agreement of the mirrored pass (``Segmentation``).
        extra_csf_mm3: CSF outside the labelled brain, for the intracranial volume; None when
            unknown.

    Raises:
        ValueError: ``labels`` holds ids that are not in ``protocol``.
    """
    ids = protocol.ids
    counts = np.bincount(protocol.to_index(labels).ravel(), minlength=protocol.num_classes)
    rows = []
    for position, label in enumerate(protocol.labels):
        if label.id == 0:
            continue
        agreement = None if flip_agreement is None else flip_agreement.get(label.id)
        rows.append(VolumeRow(label.id, label.name, float(counts[position]) * voxel_mm3, agreement))
    tissue_of = map_labels(ids, "tissue", source=protocol.name)
    by_tissue = {t: float(counts[tissue_of == t].sum()) * voxel_mm3 for t in (1, 2, 3)}
    brain = float(counts[ids != 0].sum()) * voxel_mm3
    rows += [
        VolumeRow("total", "Total-Grey-Matter", by_tissue[2], source="labels grouped as tissue"),
        VolumeRow("total", "Total-White-Matter", by_tissue[3], source="labels grouped as tissue"),
        VolumeRow("total", "Total-CSF", by_tissue[1], source="labels grouped as tissue"),
        VolumeRow("total", "Total-Brain", brain, source="every labelled voxel"),
    ]
    if extra_csf_mm3 is None:
        rows.append(VolumeRow("total", "Intracranial-Volume", brain, source="Total-Brain only"))
    else:
        rows.append(
            VolumeRow(
                "total",
                "Intracranial-Volume",
                brain + extra_csf_mm3,
                source="Total-Brain + CSF outside the labels (tissue head)",
            )
        )
    return rows


def write_volume_table(path: str | Path, rows: Sequence[VolumeRow], *, force: bool = False) -> Path:
    """Write the rows as a tab-separated table (atomically).

    Raises:
        OutputExistsError: ``path`` exists and ``force`` is False.
    """
    path = Path(path)
    with atomic_output(path, force=force) as tmp, tmp.open("w", newline="") as handle:
        writer = csv.writer(handle, delimiter="\t", lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            agreement = "n/a" if row.flip_agreement is None else _number(row.flip_agreement, 4)
            writer.writerow(
                (row.index, row.name, _number(row.volume_mm3, 1), agreement, row.source)
            )
    return path


def _number(value: float, digits: int) -> str:
    return "n/a" if np.isnan(value) else f"{value:.{digits}f}"
