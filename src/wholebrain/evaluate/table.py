"""Results of an evaluation: per-structure rows, group means, the summary over pairs, outputs.

The TSV (:meth:`Evaluation.write_tsv`) has one row per (pair, structure) and per (pair, group),
then the summary rows: ``pair`` = ``mean`` and ``sd`` (sample standard deviation) over the
pairs, per structure and per group. Missing values are ``n/a`` (as in BIDS tables).

======================= ===============================================================
column                  meaning
======================= ===============================================================
``pair``                1, 2, ... in the order given; ``mean`` / ``sd`` for the summary
``pred``, ``ref``       the two files (``n/a`` in summary rows)
``kind``                ``structure`` or ``group``
``id``                  label id of the structure (``n/a`` for groups)
``name``                structure name, or group name (``cortical``, ``subcortical``,
                        ``all``: :func:`wholebrain.protocols.structure_groups`)
``n``                   how many Dice values the row's Dice is over: per pair, 1 (or 0
                        when the structure is in neither map) for a structure and the
                        number of structures scored for a group; in summary rows, the
                        number of pairs
``dice``                Dice, 0..1
``hd95_mm``             95th-percentile Hausdorff distance, mm
``assd_mm``             average symmetric surface distance, mm
``volume_diff_pct``     (V_pred - V_ref) / V_ref, percent, signed
``abs_volume_diff_pct`` its absolute value (a group's mean absolute volume error)
``volume_pred_mm3``     structure volume in the prediction, mm³ (``n/a`` for groups)
``volume_ref_mm3``      structure volume in the reference, mm³ (``n/a`` for groups)
``pred_resampled``      ``true`` when the prediction was resampled onto the reference grid
======================= ===============================================================

Means skip NaN: a structure in neither map, or HD95/ASSD of a structure missing from one map,
does not enter a group mean (its Dice 0 does). A group's mean in the summary is the mean over
pairs of the pairs' group means.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from wholebrain.evaluate.metrics import LabelMetrics
from wholebrain.io import atomic_output
from wholebrain.protocols import get_protocol, structure_groups

__all__ = ["COLUMNS", "METRICS", "Evaluation", "PairResult"]

METRICS = ("dice", "hd95_mm", "assd_mm", "volume_diff_pct", "abs_volume_diff_pct")
"""The metric columns, in table order; group rows hold their means."""

_VOLUMES = ("volume_pred_mm3", "volume_ref_mm3")
COLUMNS = (
    "pair",
    "pred",
    "ref",
    "kind",
    "id",
    "name",
    "n",
    *METRICS,
    *_VOLUMES,
    "pred_resampled",
)
"""The columns of the TSV table, in order."""

_MISSING = "n/a"
# Readable table on stdout: (metric, heading, decimals).
_TEXT_COLUMNS = (
    ("dice", "Dice", 3),
    ("hd95_mm", "HD95 mm", 2),
    ("assd_mm", "ASSD mm", 2),
    ("abs_volume_diff_pct", "|dV| %", 1),
)


@dataclass(frozen=True, eq=False)
class PairResult:
    """The scores of one (prediction, reference) pair, from :func:`evaluate_pair`."""

    pred: str  # the prediction's file ("<in-memory volume>" when given loaded)
    ref: str  # the reference's file
    protocol: str  # the protocol scored in
    metrics: LabelMetrics  # every non-background label of the protocol, in protocol order
    voxel_volume_mm3: float  # volume of one reference voxel
    resampled: bool  # the prediction was resampled onto the reference grid
    unscored: tuple[int, ...] = ()  # label ids left NaN (e.g. unlabelled Mindboggle WM)
    notes: tuple[str, ...] = ()  # what was done to the inputs, one sentence each

    def values(self) -> dict[str, NDArray[np.float64]]:
        """Each metric and volume column: (K,) float64, one entry per label, NaN if missing."""
        m = self.metrics
        volumes = {
            "volume_pred_mm3": m.voxels_pred * self.voxel_volume_mm3,
            "volume_ref_mm3": m.voxels_ref * self.voxel_volume_mm3,
        }
        drop = np.isin(m.labels, self.unscored)
        for array in volumes.values():
            array[drop] = np.nan
        return {
            "dice": m.dice,
            "hd95_mm": m.hd95_mm,
            "assd_mm": m.assd_mm,
            "volume_diff_pct": m.volume_diff_pct,
            "abs_volume_diff_pct": np.abs(m.volume_diff_pct),
            **volumes,
        }


@dataclass(frozen=True, eq=False)
class Evaluation:
    """The results of many pairs scored in one protocol, from :func:`evaluate_pairs`."""

    protocol: str  # the protocol every pair was scored in
    pairs: tuple[PairResult, ...]  # in the order given

    @property
    def labels(self) -> NDArray[np.int64]:
        """(K,) the label ids scored: the protocol's, without background."""
        return get_protocol(self.protocol).ids[1:].astype(np.int64)

    @property
    def names(self) -> tuple[str, ...]:
        """The K structure names."""
        return get_protocol(self.protocol).names[1:]

    @property
    def groups(self) -> dict[str, tuple[int, ...]]:
        """Group name -> label ids (:func:`wholebrain.protocols.structure_groups`)."""
        return structure_groups(self.protocol)

    def structure_values(self) -> dict[str, NDArray[np.float64]]:
        """Each metric and volume column: (P, K) float64 over pairs and structures."""
        per_pair = [pair.values() for pair in self.pairs]
        return {key: np.stack([v[key] for v in per_pair]) for key in (*METRICS, *_VOLUMES)}

    def group_values(self) -> tuple[dict[str, NDArray[np.float64]], NDArray[np.int64]]:
        """Group means per pair: ({metric: (P, G)}, n (P, G)), groups in :attr:`groups` order.

        ``n`` counts the structures of the group with a Dice in that pair.
        """
        structures = self.structure_values()
        members = [np.isin(self.labels, ids) for ids in self.groups.values()]
        means = {
            key: np.stack([_nanmean(structures[key][:, m], axis=1) for m in members], axis=1)
            for key in METRICS
        }
        dice = structures["dice"]
        n = np.stack([np.isfinite(dice[:, m]).sum(axis=1) for m in members], axis=1)
        return means, n.astype(np.int64)

    def rows(self) -> list[dict[str, str]]:
        """The TSV rows (see the module docstring), values formatted as text."""
        structures = self.structure_values()
        group_means, group_n = self.group_values()
        group_names = list(self.groups)
        rows: list[dict[str, str]] = []
        for p, pair in enumerate(self.pairs):
            common = {
                "pair": str(p + 1),
                "pred": pair.pred,
                "ref": pair.ref,
                "pred_resampled": "true" if pair.resampled else "false",
            }
            for k, (label, name) in enumerate(zip(self.labels, self.names, strict=True)):
                n = int(np.isfinite(structures["dice"][p, k]))
                values = {key: structures[key][p, k] for key in (*METRICS, *_VOLUMES)}
                rows.append(_row(common, "structure", str(label), name, n, values))
            for g, group in enumerate(group_names):
                values = {key: group_means[key][p, g] for key in METRICS}
                rows.append(_row(common, "group", _MISSING, group, group_n[p, g], values))
        for statistic, reduce in (("mean", _nanmean), ("sd", _nanstd)):
            common = {"pair": statistic}
            pairs_with_dice = np.isfinite(structures["dice"]).sum(axis=0)
            for k, (label, name) in enumerate(zip(self.labels, self.names, strict=True)):
                values = {
                    key: reduce(structures[key][:, k], axis=0) for key in (*METRICS, *_VOLUMES)
                }
                n = int(pairs_with_dice[k])
                rows.append(_row(common, "structure", str(label), name, n, values))
            groups_with_dice = np.isfinite(group_means["dice"]).sum(axis=0)
            for g, group in enumerate(group_names):
                values = {key: reduce(group_means[key][:, g], axis=0) for key in METRICS}
                n = int(groups_with_dice[g])
                rows.append(_row(common, "group", _MISSING, group, n, values))
        return rows

    def write_tsv(self, path: str | Path, *, force: bool = False) -> Path:
        """Write :meth:`rows` as a tab-separated table, atomically.

        Raises:
            OutputExistsError: ``path`` exists and ``force`` is False.
            InputError: ``path`` is a folder or cannot be written.
        """
        target = Path(path)
        lines = ["\t".join(COLUMNS)]
        lines += ["\t".join(row[c] for c in COLUMNS) for row in self.rows()]
        with atomic_output(target, force=force) as tmp:
            tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
        return target

    def to_text(self) -> str:
        """A readable summary: the pairs, their notes, and group means per pair and overall."""
        n_pairs = len(self.pairs)
        lines = [
            f"{n_pairs} pair{'s' if n_pairs != 1 else ''} scored in protocol {self.protocol} "
            f"({self.labels.size} structures)"
        ]
        for p, pair in enumerate(self.pairs):
            lines.append(f"pair {p + 1}: {pair.pred} vs reference {pair.ref}")
            lines += [f"  note: {note}" for note in pair.notes]
        group_means, group_n = self.group_values()
        table = [["pair", "group", "n", *(heading for _, heading, _ in _TEXT_COLUMNS)]]
        for p in range(n_pairs):
            for g, group in enumerate(self.groups):
                cells = [_text(group_means[key][p, g], d) for key, _, d in _TEXT_COLUMNS]
                table.append([str(p + 1), group, str(group_n[p, g]), *cells])
        if n_pairs > 1:
            for statistic, reduce in (("mean", _nanmean), ("sd", _nanstd)):
                for g, group in enumerate(self.groups):
                    column = {key: group_means[key][:, g] for key, _, _ in _TEXT_COLUMNS}
                    n = int(np.isfinite(column["dice"]).sum())
                    cells = [
                        _text(float(reduce(column[key], axis=0)), d) for key, _, d in _TEXT_COLUMNS
                    ]
                    table.append([statistic, group, str(n), *cells])
        widths = [max(len(row[c]) for row in table) for c in range(len(table[0]))]
        lines.append("")
        for row in table:
            left = [cell.ljust(w) for cell, w in zip(row[:2], widths, strict=False)]
            right = [cell.rjust(w) for cell, w in zip(row[2:], widths[2:], strict=True)]
            lines.append("  ".join(left + right).rstrip())
        return "\n".join(lines)


# --- helpers -------------------------------------------------------------------------------------


def _row(
    common: dict[str, str],
    kind: str,
    label: str,
    name: str,
    n: int | np.integer,
    values: dict[str, float | np.floating],
) -> dict[str, str]:
    row = dict.fromkeys(COLUMNS, _MISSING)
    row.update(common)
    row.update(kind=kind, id=label, name=name, n=str(int(n)))
    row.update({key: _number(float(value)) for key, value in values.items()})
    return row


def _number(value: float) -> str:
    """A TSV value: 6 decimals without trailing zeros; ``n/a`` for NaN."""
    if not math.isfinite(value):
        return _MISSING
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _text(value: float, decimals: int) -> str:
    return _MISSING if not math.isfinite(value) else f"{value:.{decimals}f}"


def _nanmean(values: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    """Mean over ``axis`` of the finite values; NaN (and no warning) where there are none."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    total = np.where(finite, values, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean: NDArray[np.float64] = np.where(count > 0, total / count, np.nan)
    return mean


def _nanstd(values: NDArray[np.float64], axis: int) -> NDArray[np.float64]:
    """Sample standard deviation (ddof 1) of the finite values; NaN with fewer than two."""
    finite = np.isfinite(values)
    count = finite.sum(axis=axis)
    mean = np.expand_dims(_nanmean(values, axis), axis)
    squares = np.where(finite, (values - mean) ** 2, 0.0).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        sd: NDArray[np.float64] = np.where(count > 1, np.sqrt(squares / (count - 1)), np.nan)
    return sd
