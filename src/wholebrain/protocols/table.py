"""The label tables: :class:`Protocol` (ids, names, colours; mapping class indices and ids) and
the shipped tables in ``protocols/tables/`` (:func:`get_protocol`). See :mod:`wholebrain.protocols`.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wholebrain.errors import InputError

__all__ = ["FULL_PROTOCOL", "Label", "Protocol", "available_protocols", "get_protocol"]

FULL_PROTOCOL = "dkt-aseg"
"""Name of the full protocol: every structure the network segments."""

_TABLE_HEADER = ("id", "name", "R", "G", "B")
_MAP_HEADER = ("full_id", "partial_id")
_MAX_LISTED_IDS = 10  # how many offending ids an error message names before "..."


@dataclass(frozen=True)
class Label:
    """One label of a protocol."""

    id: int  # the value stored in label maps (FreeSurfer colour-table id where one exists)
    name: str  # FreeSurfer-style name without spaces, e.g. "Left-Hippocampus"
    rgb: tuple[int, int, int]  # display colour, each 0..255


@dataclass(frozen=True)
class Protocol:
    """A label protocol: the ids a label map may hold, with names and colours.

    Class *indices* 0..K-1 (what a network head predicts) follow the order of :attr:`labels`,
    which is sorted by id with id 0 (background, or "Other") first.
    """

    name: str  # e.g. "dkt-aseg", "aseg", "tissue"
    labels: tuple[Label, ...]  # sorted by id; the first is id 0
    _lut: NDArray[np.int16] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids = [lab.id for lab in self.labels]
        if not ids or ids[0] != 0:
            raise ValueError(f"protocol {self.name!r}: the first label must have id 0")
        if any(b <= a for a, b in itertools.pairwise(ids)):
            raise ValueError(f"protocol {self.name!r}: label ids must be unique and sorted")
        names = [lab.name for lab in self.labels]
        if len(set(names)) != len(names):
            raise ValueError(f"protocol {self.name!r}: label names must be unique")
        for lab in self.labels:
            if len(lab.rgb) != 3 or not all(0 <= c <= 255 for c in lab.rgb):
                raise ValueError(f"protocol {self.name!r}: colour of {lab.id} not in 0..255")
        if len(ids) > np.iinfo(np.int16).max:
            raise ValueError(f"protocol {self.name!r}: too many labels ({len(ids)})")
        # id -> class index, -1 for ids outside the protocol; one table lookup per voxel.
        lut = np.full(ids[-1] + 1, -1, dtype=np.int16)
        lut[ids] = np.arange(len(ids), dtype=np.int16)
        lut.setflags(write=False)
        object.__setattr__(self, "_lut", lut)

    @property
    def ids(self) -> NDArray[np.int32]:
        """Label ids, shape (K,), int32, in class-index order (a fresh array)."""
        return np.array([lab.id for lab in self.labels], dtype=np.int32)

    @property
    def names(self) -> tuple[str, ...]:
        """Label names in class-index order."""
        return tuple(lab.name for lab in self.labels)

    @property
    def num_classes(self) -> int:
        """Number of classes K, background included."""
        return len(self.labels)

    def label(self, label_id: int) -> Label:
        """The label with id ``label_id``.

        Raises:
            KeyError: ``label_id`` is not in the protocol.
        """
        return self.labels[self.index_of(label_id)]

    def index_of(self, label_id: int) -> int:
        """Class index 0..K-1 of the label with id ``label_id``.

        Raises:
            KeyError: ``label_id`` is not in the protocol.
        """
        if 0 <= label_id < self._lut.size and self._lut[label_id] >= 0:
            return int(self._lut[label_id])
        raise KeyError(f"protocol {self.name!r} has no label id {label_id}")

    def colour_lut(self) -> str:
        """The protocol as a FreeSurfer colour table (``--colormap lut`` in freeview)."""
        width = max(len(lab.name) for lab in self.labels) + 2
        lines = [
            f"# wholebrain protocol {self.name}",
            f"#No. {'Label Name:':<{width}}R   G   B   A",
        ]
        for lab in self.labels:
            r, g, b = lab.rgb
            lines.append(f"{lab.id:<4d} {lab.name:<{width}}{r:<3d} {g:<3d} {b:<3d} 0")
        return "\n".join(lines) + "\n"

    def to_index(self, label_map: ArrayLike, *, source: str | None = None) -> NDArray[np.generic]:
        """Label ids to class indices.

        Args:
            label_map: label ids of this protocol, any shape (integer, or float holding
                integers as in many NIfTI label files).
            source: file the labels came from, named in errors.

        Returns:
            Class indices 0..K-1, same shape, uint8 when K <= 256 else int16.

        Raises:
            InputError: ``label_map`` holds non-integer values or ids outside the protocol
                (the message lists them with their voxel counts).
        """
        index = _apply_lut(
            self._lut,
            label_map,
            source=source,
            expected=f"label ids of protocol {self.name!r}",
            todo=f"convert the map to {self.name!r} ids (wholebrain.protocols.importers)",
        )
        return index.astype(np.uint8 if self.num_classes <= 256 else np.int16)

    def from_index(self, index_map: ArrayLike) -> NDArray[np.int32]:
        """Class indices back to label ids.

        Args:
            index_map: class indices 0..K-1, any shape, integer dtype.

        Returns:
            Label ids, same shape, int32.

        Raises:
            InputError: an index is outside 0..K-1.
        """
        index = np.asarray(index_map)
        if index.size and (
            not np.issubdtype(index.dtype, np.integer)
            or index.min() < 0
            or index.max() >= self.num_classes
        ):
            raise InputError(
                None,
                f"class indices 0..{self.num_classes - 1} of protocol {self.name!r}",
                f"values of dtype {index.dtype} in {index.min()}..{index.max()}",
                "pass the argmax of this protocol's head",
            )
        ids: NDArray[np.int32] = self.ids[index]
        return ids

    def write_tsv(self, path: str | os.PathLike[str]) -> None:
        """Write the BIDS ``dseg.tsv`` sidecar: columns index (the label id), name, color.

        The file is written to a temporary name beside ``path`` and renamed, so a crash
        leaves no half-written table.
        """
        rows = ["index\tname\tcolor"]
        for lab in self.labels:
            r, g, b = lab.rgb
            rows.append(f"{lab.id}\t{lab.name}\t#{r:02x}{g:02x}{b:02x}")
        _atomic_write_text(Path(path), "\n".join(rows) + "\n")


def _atomic_write_text(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _integer_labels(label_map: ArrayLike, source: str | None) -> NDArray[np.integer]:
    """The label map as an integer array (no copy when it already is one).

    NIfTI label files are often stored as float32 (the Mindboggle ones are); whole numbers are
    accepted, anything else is an input error.
    """
    arr = np.asarray(label_map)
    if np.issubdtype(arr.dtype, np.integer):
        return arr
    if arr.dtype == np.bool_:
        return arr.astype(np.uint8)
    if np.issubdtype(arr.dtype, np.floating):
        # NaN != NaN and |inf| >= 2**31, so one test catches every value int32 cannot hold.
        bad = (arr != np.round(arr)) | (np.abs(arr) >= 2**31)
        if bad.any():
            examples = ", ".join(f"{v:g}" for v in np.unique(arr[bad])[:3])
            raise InputError(
                source,
                "integer label ids",
                f"{int(bad.sum())} voxels with non-integer values (e.g. {examples})",
                "pass a label map, not an image or a probability map",
            )
        return arr.astype(np.int32)
    raise InputError(
        source, "integer label ids", f"an array of dtype {arr.dtype}", "pass a label map"
    )


def _describe_ids(arr: NDArray[np.integer], bad: NDArray[np.bool_]) -> str:
    """'1033 (4 voxels), 74 (522 voxels)': the offending ids, most frequent first."""
    values, counts = np.unique(arr[bad], return_counts=True)
    order = np.argsort(-counts, kind="stable")
    parts = [
        f"{int(values[i])} ({int(counts[i])} voxel{'s' if counts[i] > 1 else ''})"
        for i in order[:_MAX_LISTED_IDS]
    ]
    more = f" and {len(values) - _MAX_LISTED_IDS} more" if len(values) > _MAX_LISTED_IDS else ""
    return ", ".join(parts) + more


def _apply_lut(
    lut: NDArray[np.integer],
    label_map: ArrayLike,
    *,
    source: str | None,
    expected: str,
    todo: str,
    invalid: int = -1,
) -> NDArray[np.integer]:
    """``lut[label_map]`` where ``lut`` holds ``invalid`` for ids that are not allowed.

    Raises:
        InputError: naming the ids that are out of the table or map to ``invalid``.
    """
    arr = _integer_labels(label_map, source)
    if arr.size == 0:
        return np.zeros(arr.shape, dtype=lut.dtype)
    out: NDArray[np.integer]
    lo, hi = arr.min(), arr.max()
    if lo < 0 or hi >= lut.size:
        out = lut[np.clip(arr, 0, lut.size - 1)]
        bad = (out == invalid) | (arr < 0) | (arr >= lut.size)
    else:
        out = lut[arr]
        bad = out == invalid
    if bad.any():
        raise InputError(source, expected, f"ids outside it: {_describe_ids(arr, bad)}", todo)
    return out


# --- the tables -----------------------------------------------------------------------------


def _table_rows(filename: str, header: tuple[str, ...]) -> list[list[str]]:
    """Rows of a packaged TSV table; '#' lines are comments."""
    text = resources.files("wholebrain.protocols").joinpath("tables", filename).read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines or tuple(lines[0].split("\t")) != header:
        raise ValueError(f"protocols/tables/{filename}: header must be {header}")
    rows = [ln.split("\t") for ln in lines[1:]]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"protocols/tables/{filename}: bad row {row}")
    return rows


def _table_names() -> list[str]:
    tables = resources.files("wholebrain.protocols").joinpath("tables")
    return [
        entry.name.removesuffix(".tsv")
        for entry in tables.iterdir()
        if entry.name.endswith(".tsv") and "_to_" not in entry.name
    ]


@functools.cache
def available_protocols() -> tuple[str, ...]:
    """Names of the shipped protocols: the full one first, then the partial ones sorted."""
    partial = sorted(n for n in _table_names() if n != FULL_PROTOCOL)
    return (FULL_PROTOCOL, *partial)


@functools.cache
def get_protocol(name: str) -> Protocol:
    """The shipped protocol called ``name`` (loaded once, then cached).

    Raises:
        InputError: no protocol has that name (the message lists the known ones).
    """
    if name not in available_protocols():
        raise InputError(
            "protocol",
            f"one of {', '.join(available_protocols())}",
            repr(name),
            "check the protocol name",
        )
    labels = tuple(
        Label(int(i), n, (int(r), int(g), int(b)))
        for i, n, r, g, b in _table_rows(f"{name}.tsv", _TABLE_HEADER)
    )
    return Protocol(name, labels)
