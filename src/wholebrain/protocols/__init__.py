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
it needed a decision per label, and as a rule in code (``maps._RULES``) where the rule is the
whole story.

Modules: :mod:`~wholebrain.protocols.table` (:class:`Protocol`, the shipped tables),
:mod:`~wholebrain.protocols.maps` (maps between protocols, structure groups, mirror pairs) and
:mod:`~wholebrain.protocols.importers` (other numberings: Mindboggle, FreeSurfer, SynthSeg,
FSL). Everything public is importable from this package.
"""

from __future__ import annotations

from wholebrain.protocols.maps import (
    class_matrix,
    flip_permutation,
    map_labels,
    partial_map,
    structure_groups,
)
from wholebrain.protocols.table import (
    FULL_PROTOCOL,
    Label,
    Protocol,
    available_protocols,
    get_protocol,
)

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
