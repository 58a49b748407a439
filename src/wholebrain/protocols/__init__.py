"""Label protocols: which ids a label map may hold, their names and colours, and how they merge.

A *protocol* is a table of labels (id, name, RGB colour) shipped as package data in
``protocols/tables/<name>.tsv``. The *full* protocol :data:`FULL_PROTOCOL` (``dkt-aseg``) holds
every structure the network segments: FreeSurfer colour-table ids, names and colours, the 62
DKT31 cortical regions and 36 non-cortical structures plus background (99 classes). A *partial*
protocol is coarser; it is defined by a many-to-one map from the full protocol, so each full label
belongs to exactly one partial class:

============ ======= =====================================================================
protocol     classes map from ``dkt-aseg`` (and where it is defined)
============ ======= =====================================================================
``aseg``     39      cortical regions -> 3/42 cerebral cortex, all else kept (rule in code)
``tissue``   4       0 background, 1 CSF, 2 GM, 3 WM (``tables/dkt-aseg_to_tissue.tsv``,
                     a judgement per label, commented there; vessels 30/62 -> GM)
``first``    16      the 15 FSL FIRST structures kept, all else incl. background -> 0 (rule)
``brain``    2       every non-zero label -> 1 (rule)
============ ======= =====================================================================

A map ships as ``tables/dkt-aseg_to_<partial>.tsv`` (columns ``full_id``, ``partial_id``) where
it needed a decision per label, and as a rule in :data:`_RULES` where the rule is the whole
story. Importers from other numberings (Mindboggle, FreeSurfer, SynthSeg, FSL) live in
:mod:`wholebrain.protocols.importers`.
"""

from __future__ import annotations

import functools
import itertools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wholebrain.errors import InputError

__all__ = [
    "FULL_PROTOCOL",
    "Label",
    "Protocol",
    "available_protocols",
    "class_matrix",
    "flip_permutation",
    "get_protocol",
    "map_labels",
    "partial_map",
    "structure_groups",
]

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
    text = resources.files(__name__).joinpath("tables", filename).read_text("utf-8")
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines or tuple(lines[0].split("\t")) != header:
        raise ValueError(f"protocols/tables/{filename}: header must be {header}")
    rows = [ln.split("\t") for ln in lines[1:]]
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"protocols/tables/{filename}: bad row {row}")
    return rows


def _table_names() -> list[str]:
    tables = resources.files(__name__).joinpath("tables")
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


def _aseg_rule(full_id: int) -> int:
    if 1000 <= full_id < 2000:
        return 3  # Left-Cerebral-Cortex
    if 2000 <= full_id < 3000:
        return 42  # Right-Cerebral-Cortex
    return full_id


_FIRST_IDS = frozenset({10, 11, 12, 13, 16, 17, 18, 26, 49, 50, 51, 52, 53, 54, 58})

# Partial maps that are a rule rather than a table: full id -> partial id.
_RULES: dict[str, Callable[[int], int]] = {
    "aseg": _aseg_rule,
    "first": lambda full_id: full_id if full_id in _FIRST_IDS else 0,
    "brain": lambda full_id: int(full_id != 0),
}


@functools.cache
def _partial_map(partial: str) -> dict[int, int]:
    target = get_protocol(partial)
    full_ids = [int(i) for i in get_protocol(FULL_PROTOCOL).ids]
    if partial == FULL_PROTOCOL:
        return {i: i for i in full_ids}
    if partial in _RULES:
        mapping = {i: _RULES[partial](i) for i in full_ids}
    else:
        filename = f"{FULL_PROTOCOL}_to_{partial}.tsv"
        rows = _table_rows(filename, _MAP_HEADER)
        mapping = {int(f): int(p) for f, p in rows}
        if len(mapping) != len(rows) or set(mapping) != set(full_ids):
            raise ValueError(f"protocols/tables/{filename}: must list every full id once")
    unknown = set(mapping.values()) - {int(i) for i in target.ids}
    if unknown:
        raise ValueError(f"map to {partial!r} gives ids outside it: {sorted(unknown)}")
    return mapping


def partial_map(partial: str) -> dict[int, int]:
    """The many-to-one map full id -> partial id (a fresh dict).

    Raises:
        InputError: no protocol is called ``partial``.
    """
    return dict(_partial_map(partial))


@functools.cache
def _map_lut(source: str, target: str) -> NDArray[np.int32]:
    """source id -> target id (-1: not in ``source``); ``target`` must be coarser."""
    src = get_protocol(source)
    get_protocol(target)  # an unknown target name fails here, with the known names
    to_src, to_dst = _partial_map(source), _partial_map(target)
    images: dict[int, set[int]] = {int(i): set() for i in src.ids}
    for full_id, src_id in to_src.items():
        images[src_id].add(to_dst[full_id])
    ambiguous = sorted(i for i, s in images.items() if len(s) != 1)
    if ambiguous:
        raise InputError(
            "protocol",
            f"a target protocol coarser than {source!r}",
            f"{target!r}, in which {source!r} ids {ambiguous[:_MAX_LISTED_IDS]} have no single "
            "class",
            f"map to a protocol that merges {source!r} classes, e.g. from {FULL_PROTOCOL!r}",
        )
    lut = np.full(int(src.ids[-1]) + 1, -1, dtype=np.int32)
    for src_id, (dst_id,) in images.items():
        lut[src_id] = dst_id
    lut.setflags(write=False)
    return lut


def map_labels(label_map: ArrayLike, target: str, source: str = FULL_PROTOCOL) -> NDArray[np.int32]:
    """Convert a label map from protocol ``source`` to the coarser protocol ``target``.

    Any pair works where ``target`` merges ``source`` classes (``dkt-aseg`` -> anything,
    ``aseg`` -> ``tissue``/``first``/``brain``, ``tissue`` -> ``brain``); ``source == target``
    only validates.

    Args:
        label_map: ids of ``source``, any shape.
        target: name of the protocol to map to.
        source: name of the protocol of ``label_map``.

    Returns:
        Ids of ``target``, same shape, int32.

    Raises:
        InputError: unknown protocol, ``target`` not coarser than ``source``, or ids in
            ``label_map`` that ``source`` does not have.
    """
    lut = _map_lut(source, target)
    out = _apply_lut(
        lut,
        label_map,
        source=None,
        expected=f"label ids of protocol {source!r}",
        todo=f"convert the map to {source!r} ids first (wholebrain.protocols.importers)",
    )
    return out.astype(np.int32, copy=False)


@functools.cache
def _class_matrix(partial: str) -> NDArray[np.float32]:
    full, part = get_protocol(FULL_PROTOCOL), get_protocol(partial)
    matrix = np.zeros((part.num_classes, full.num_classes), dtype=np.float32)
    for full_id, part_id in _partial_map(partial).items():
        matrix[part.index_of(part_id), full.index_of(full_id)] = 1.0
    matrix.setflags(write=False)
    return matrix


def class_matrix(partial: str) -> NDArray[np.float32]:
    """Which full classes each partial class merges.

    Returns:
        (K_partial, K_full) float32 of 0/1; row i is partial class index i, column j full class
        index j; every column sums to 1. ``probs_partial = class_matrix(p) @ probs_full``
        (over the class axis) gives the marginal probabilities of the partial classes.

    Raises:
        InputError: no protocol is called ``partial``.
    """
    return _class_matrix(partial).copy()


# Deep grey and subcortical structures of the "subcortical" group of structure_groups(), by
# label name (each on the left and right): the structures FreeSurfer's aseg segments as
# subcortical grey matter plus the ventral diencephalon and Mindboggle's basal forebrain.
# Brain stem, cerebellum, ventricles, CSF, vessels, optic chiasm and white matter are not in it.
_SUBCORTICAL_STRUCTURES = (
    "Thalamus",
    "Caudate",
    "Putamen",
    "Pallidum",
    "Hippocampus",
    "Amygdala",
    "Accumbens-area",
    "VentralDC",
    "Basal-Forebrain",
)
_SUBCORTICAL_NAMES = frozenset(
    f"{side}-{structure}" for side in ("Left", "Right") for structure in _SUBCORTICAL_STRUCTURES
)


def _is_cortical(name: str) -> bool:
    return name.startswith(("ctx-lh-", "ctx-rh-")) or name in (
        "Left-Cerebral-Cortex",
        "Right-Cerebral-Cortex",
    )


@functools.cache
def _structure_groups(protocol: str) -> tuple[tuple[str, tuple[int, ...]], ...]:
    labels = get_protocol(protocol).labels[1:]  # without background (id 0)
    groups = (
        ("cortical", tuple(lab.id for lab in labels if _is_cortical(lab.name))),
        ("subcortical", tuple(lab.id for lab in labels if lab.name in _SUBCORTICAL_NAMES)),
        ("all", tuple(lab.id for lab in labels)),
    )
    return tuple((name, ids) for name, ids in groups if ids)


def structure_groups(protocol: str) -> dict[str, tuple[int, ...]]:
    """Named groups of a protocol's structures, for the group means of evaluation reports.

    Groups are found by label name, so they mean the same thing in every protocol that has
    them; a group with no member in ``protocol`` is left out:

    - ``"cortical"``: the cortical regions, ``ctx-lh-*``/``ctx-rh-*`` (the 62 DKT31 regions
      1002-1035/2002-2035 of ``dkt-aseg``), or Left/Right-Cerebral-Cortex 3/42 where the
      cortex is one label per hemisphere (``aseg``).
    - ``"subcortical"``: deep grey and subcortical structures, left and right: thalamus,
      caudate, putamen, pallidum, hippocampus, amygdala, accumbens area, ventral DC and
      basal forebrain (ids 10, 11, 12, 13, 17, 18, 26, 28, 91 and 49, 50, 51, 52, 53, 54,
      58, 60, 92: 18 in ``dkt-aseg`` and ``aseg``, 14 in ``first``). Brain stem,
      cerebellum, ventricles, CSF, vessels, optic chiasm and white matter are not in it.
    - ``"all"``: every label of the protocol but background (id 0), in every protocol.

    ``tissue`` and ``brain`` have ``"all"`` only.

    Args:
        protocol: name of a shipped protocol.

    Returns:
        Group name -> label ids sorted ascending, in the order cortical, subcortical, all
        (a fresh dict).

    Raises:
        InputError: no protocol has that name.
    """
    return dict(_structure_groups(protocol))


# Name prefixes of the two hemispheres' twins: "Left-Putamen" <-> "Right-Putamen",
# "ctx-lh-insula" <-> "ctx-rh-insula".
_MIRROR_PREFIXES = (("Left-", "Right-"), ("ctx-lh-", "ctx-rh-"))


@functools.cache
def _flip_permutation(protocol: str) -> NDArray[np.intp]:
    proto = get_protocol(protocol)
    index = {name: i for i, name in enumerate(proto.names)}
    permutation = np.arange(proto.num_classes, dtype=np.intp)
    for i, name in enumerate(proto.names):
        for left, right in _MIRROR_PREFIXES:
            for mine, other in ((left, right), (right, left)):
                if name.startswith(mine):
                    twin = other + name.removeprefix(mine)
                    if twin not in index:
                        raise ValueError(f"protocol {protocol!r}: {name} has no mirror {twin}")
                    permutation[i] = index[twin]
    permutation.setflags(write=False)
    return permutation


def flip_permutation(protocol: str) -> NDArray[np.intp]:
    """Class index -> class index of its left/right mirror, for left-right flips.

    ``Left-*`` <-> ``Right-*`` and ``ctx-lh-*`` <-> ``ctx-rh-*`` by name; midline and
    hemisphere-free classes (background, 3rd-Ventricle, Brain-Stem, CSF, the tissue classes)
    map to themselves. After flipping an image along X (left-right in RAS), its label map of
    class indices ``c`` becomes ``flip_permutation(protocol)[c]``. The permutation is its own
    inverse.

    Args:
        protocol: name of a shipped protocol.

    Returns:
        (K,) intp, a permutation of 0..K-1 (a fresh array).

    Raises:
        InputError: no protocol has that name.
    """
    return _flip_permutation(protocol).copy()
