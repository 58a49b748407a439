"""How protocols relate: full -> partial maps, label conversion between protocols, the class
matrix of the marginal loss, structure groups and left/right mirror pairs. See
:mod:`wholebrain.protocols`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike, NDArray

from wholebrain.errors import InputError
from wholebrain.protocols.table import (
    _MAP_HEADER,
    _MAX_LISTED_IDS,
    FULL_PROTOCOL,
    _apply_lut,
    _table_rows,
    get_protocol,
)

__all__ = [
    "class_matrix",
    "flip_permutation",
    "map_labels",
    "partial_map",
    "structure_groups",
]


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
