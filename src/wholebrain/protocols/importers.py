"""Importers: label maps in other numberings -> ids of a wholebrain protocol.

========================== ============ ============================================================
format                     protocol     what it reads
========================== ============ ============================================================
``mindboggle``             ``dkt-aseg`` Mindboggle-101 ``labels.DKT31.manual+aseg`` maps
``freesurfer-dkt``         ``dkt-aseg`` FreeSurfer ``aparc.DKTatlas+aseg.mgz``
``freesurfer-aseg``        ``aseg``     FreeSurfer ``aseg.mgz`` (``aparc*+aseg`` too: cortex merged)
``synthseg``               ``aseg``     SynthSeg output (``--parc`` too) and SynthSeg's whole-head
                                        training label maps
``fsl-fast``               ``tissue``   FSL FAST ``*_seg`` / ``*_pveseg`` (3 classes, T1w)
``fsl-first``              ``first``    FSL FIRST ``*_firstseg``
``<protocol name>``        itself       a map already in wholebrain ids: only validated
========================== ============ ============================================================

Rules of the FreeSurfer formats (``mindboggle``, ``freesurfer-dkt``, ``freesurfer-aseg``):

* ids of the target protocol are kept;
* cortical ids the target lacks (1000/2000 unknown, 1001 bankssts, 1004 corpus callosum,
  1032/1033 poles, 3/42 unparcellated cortex, and 20xx twins) take, for ``dkt-aseg``, the label
  of the nearest valid cortical voxel of the same hemisphere; for ``aseg`` they are 3/42;
* white-matter hypointensities 77-82 and the corpus callosum 251-255 are cerebral white matter
  2/41, choroid plexus 31/63 is lateral ventricle 4/43, the vermis (172, 183/184) is
  cerebellum cortex 8/47 and its white matter (177) 7/46, as FreeSurfer's aseg counts them;
* where the side is not in the id (77, 80, 251-255, 172, 177), it is the hemisphere of the
  nearest *hemisphere-specific* labelled voxel (``Left-*``/``ctx-lh-*`` or
  ``Right-*``/``ctx-rh-*``; midline labels such as 3rd/4th ventricle, brain-stem, CSF, optic
  chiasm do not vote); one Euclidean distance transform (voxel size ``spacing_mm``) answers
  every such voxel;
* any other id is an error naming it.

Format specifics:

* ``mindboggle``: cerebellum exterior 6/45 -> 8/47 (FreeSurfer cerebellum cortex); vermis
  630-632 -> 8/47 by hemisphere; cerebral white matter is unlabelled there, so the unlabelled
  voxels inside ``brain_mask`` (required) become 2/41 by hemisphere (the few that are CSF at the
  brain's edge become white matter too: no better guess exists without intensities); id 74 is
  an artefact (in the development data one 12x12x9 box of 522 voxels outside the brain, sub-03)
  and is treated as unlabelled.
* ``synthseg``: brain labels kept; cortical parcels of ``--parc`` -> 3/42; lesions 25/57 ->
  2/41 and 136/137/163/164 (beside the ventricles) -> 4/5/43/44, as SynthSeg's own table
  (``synthseg_segmentation_labels_2.0.npy``) maps them; CSF 24 -> 0, because SynthSeg's 24 is
  all sulcal and extra-cerebral CSF (417 ml in ``training_seg_01``) while the full protocol's 24
  is FreeSurfer's small CSF label (about 1 ml in the Mindboggle maps) and leaves sulcal CSF 0;
  extra-cerebral labels -> 0 until a head class exists: 165 Skull, 257-259 and the training
  maps' 502, 506-509, 511, 512, 514-516, 530 (skull, scalp, eyes, ...). Any other id
  (e.g. 31, 77) is an error: SynthSeg does not write it.
"""

from __future__ import annotations

import functools
import logging
import math
import types
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import ndimage

from wholebrain.errors import InputError
from wholebrain.protocols import FULL_PROTOCOL, available_protocols, get_protocol
from wholebrain.protocols.table import _apply_lut, _integer_labels

__all__ = ["IMPORT_FORMATS", "import_labels"]

log = logging.getLogger(__name__)

IMPORT_FORMATS: Mapping[str, str] = types.MappingProxyType(
    {
        "mindboggle": FULL_PROTOCOL,
        "freesurfer-dkt": FULL_PROTOCOL,
        "freesurfer-aseg": "aseg",
        "synthseg": "aseg",
        "fsl-fast": "tissue",
        "fsl-first": "first",
        **{name: name for name in available_protocols()},
    }
)
"""Import format name -> the protocol its labels are converted to."""

_LEFT, _RIGHT = 1, 2  # hemisphere codes; 0 = not hemisphere-specific
_CORTEX_IDS = (*range(1000, 1036), *range(2000, 2036))
_WM_LIKE_MIDLINE = (77, 80, 251, 252, 253, 254, 255)  # WM-hypointensities, corpus callosum
_SYNTHSEG_EXTRA_CEREBRAL = (
    165,  # Skull
    257,  # CSF-ExtraCerebral
    258,  # Head-ExtraCerebral
    259,  # Eye-Fluid / SkullApprox
    *(502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530),  # SynthSeg training maps' head
)
_PER_VOXEL, _NOT_ALLOWED = -1, -2  # markers in a format's target table
_INITIAL_MARGIN_VOX = 8  # crop margin around the voxels to resolve; doubled when too small


@dataclass(frozen=True)
class _Rule:
    """What one source id becomes."""

    target: int = _PER_VOXEL  # fixed target id, or _PER_VOXEL: decided per voxel (pair, cortex)
    pair: tuple[int, int] | None = None  # (left, right) target, by nearest hemisphere
    cortex: int = 0  # _LEFT/_RIGHT: nearest valid cortical label of that hemisphere
    hemi: int = 0  # hemisphere the id itself states (these voxels decide `pair`)


def _hemisphere(name: str) -> int:
    if name.startswith(("Left-", "ctx-lh-")):
        return _LEFT
    if name.startswith(("Right-", "ctx-rh-")):
        return _RIGHT
    return 0


def _protocol_rules(protocol: str) -> dict[int, _Rule]:
    return {
        lab.id: _Rule(target=lab.id, hemi=_hemisphere(lab.name))
        for lab in get_protocol(protocol).labels
    }


def _freesurfer_rules(protocol: str) -> dict[int, _Rule]:
    """FreeSurfer aseg/aparc+aseg ids -> ``protocol`` (``dkt-aseg`` or ``aseg``)."""
    rules = _protocol_rules(protocol)
    for cid in (*_CORTEX_IDS, 3, 42):
        hemi = _LEFT if cid == 3 or 1000 <= cid < 2000 else _RIGHT
        if cid not in rules:
            if protocol == FULL_PROTOCOL:
                rules[cid] = _Rule(cortex=hemi, hemi=hemi)
            else:
                rules[cid] = _Rule(target=3 if hemi == _LEFT else 42, hemi=hemi)
    for wid in _WM_LIKE_MIDLINE:
        rules[wid] = _Rule(pair=(2, 41))
    rules |= {
        78: _Rule(target=2, hemi=_LEFT),  # Left-WM-hypointensities
        79: _Rule(target=41, hemi=_RIGHT),
        81: _Rule(target=2, hemi=_LEFT),  # Left-non-WM-hypointensities
        82: _Rule(target=41, hemi=_RIGHT),
        31: _Rule(target=4, hemi=_LEFT),  # Left-choroid-plexus
        63: _Rule(target=43, hemi=_RIGHT),
        172: _Rule(pair=(8, 47)),  # Vermis
        177: _Rule(pair=(7, 46)),  # Vermis-White-Matter
        183: _Rule(target=8, hemi=_LEFT),  # Left-Vermis
        184: _Rule(target=47, hemi=_RIGHT),
    }
    return rules


def _mindboggle_rules() -> dict[int, _Rule]:
    rules = _freesurfer_rules(FULL_PROTOCOL)
    rules |= {
        6: _Rule(target=8, hemi=_LEFT),  # Mindboggle left cerebellum exterior
        45: _Rule(target=47, hemi=_RIGHT),
        630: _Rule(pair=(8, 47)),  # vermal lobules I-V
        631: _Rule(pair=(8, 47)),  # VI-VII
        632: _Rule(pair=(8, 47)),  # VIII-X
        74: _Rule(target=0),  # artefact box outside the brain (sub-03)
    }
    return rules


def _synthseg_rules() -> dict[int, _Rule]:
    rules = _protocol_rules("aseg")
    for cid in _CORTEX_IDS:  # --parc output
        rules[cid] = _Rule(target=3, hemi=_LEFT) if cid < 2000 else _Rule(target=42, hemi=_RIGHT)
    rules |= {
        24: _Rule(target=0),  # all sulcal/extra-cerebral CSF in SynthSeg, see module docstring
        25: _Rule(target=2, hemi=_LEFT),  # lesion in the training maps -> WM, as SynthSeg does
        57: _Rule(target=41, hemi=_RIGHT),
        136: _Rule(target=4, hemi=_LEFT),  # next to the ventricles; SynthSeg segments them as
        137: _Rule(target=5, hemi=_LEFT),  # 4/5/43/44
        163: _Rule(target=43, hemi=_RIGHT),
        164: _Rule(target=44, hemi=_RIGHT),
    }
    for eid in _SYNTHSEG_EXTRA_CEREBRAL:
        rules[eid] = _Rule(target=0)
    return rules


@dataclass(frozen=True)
class _Compiled:
    """A format's rules as lookup tables over source ids."""

    target: NDArray[np.int32]  # fixed target, _PER_VOXEL or _NOT_ALLOWED
    hemi: NDArray[np.uint8]  # hemisphere the id states (0: none)
    pair_left: NDArray[np.int32]  # target when the nearest hemisphere is left (-1: no pair)
    pair_right: NDArray[np.int32]
    cortex: NDArray[np.uint8]  # hemisphere whose nearest cortical label the id takes (0: no)


@functools.cache
def _compiled(fmt: str) -> _Compiled:
    if fmt == "mindboggle":
        rules = _mindboggle_rules()
    elif fmt == "freesurfer-dkt":
        rules = _freesurfer_rules(FULL_PROTOCOL)
    elif fmt == "freesurfer-aseg":
        rules = _freesurfer_rules("aseg")
    elif fmt == "synthseg":
        rules = _synthseg_rules()
    else:  # fsl-fast, fsl-first, protocol names: exactly the target protocol's ids
        rules = _protocol_rules(IMPORT_FORMATS[fmt])
    size = max(rules) + 1
    tables = _Compiled(
        target=np.full(size, _NOT_ALLOWED, dtype=np.int32),
        hemi=np.zeros(size, dtype=np.uint8),
        pair_left=np.full(size, -1, dtype=np.int32),
        pair_right=np.full(size, -1, dtype=np.int32),
        cortex=np.zeros(size, dtype=np.uint8),
    )
    for sid, rule in rules.items():
        tables.target[sid] = rule.target
        tables.hemi[sid] = rule.hemi
        tables.cortex[sid] = rule.cortex
        if rule.pair is not None:
            tables.pair_left[sid], tables.pair_right[sid] = rule.pair
    for table in (tables.target, tables.hemi, tables.pair_left, tables.pair_right, tables.cortex):
        table.setflags(write=False)
    return tables


def import_labels(
    label_map: ArrayLike,
    fmt: str,
    *,
    brain_mask: ArrayLike | None = None,
    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0),
    source: str | None = None,
) -> tuple[NDArray[np.int32], str]:
    """Convert a label map from another numbering to the ids of a wholebrain protocol.

    Args:
        label_map: (X, Y, Z) label ids in format ``fmt`` (integer, or float holding integers).
        fmt: a key of :data:`IMPORT_FORMATS`.
        brain_mask: (X, Y, Z), non-zero inside the brain; required for ``mindboggle`` (whose
            unlabelled voxels inside it are cerebral white matter), ignored otherwise.
        spacing_mm: voxel size along X, Y, Z in mm (distances decide hemispheres).
        source: file the labels came from, named in errors.

    Returns:
        (labels, protocol): (X, Y, Z) int32 ids of ``protocol`` = ``IMPORT_FORMATS[fmt]``.

    Raises:
        InputError: unknown format, not 3D, ids the format cannot hold, ``brain_mask`` missing
            or of another shape, or no labelled voxel to decide a hemisphere or cortical region.
    """
    if fmt not in IMPORT_FORMATS:
        raise InputError(
            source,
            f"an import format ({', '.join(IMPORT_FORMATS)})",
            repr(fmt),
            "pick the format that produced the labels",
        )
    protocol = IMPORT_FORMATS[fmt]
    labels = _integer_labels(label_map, source)
    if labels.ndim != 3:
        raise InputError(source, "a 3D label map", f"shape {labels.shape}", "pass one 3D volume")
    spacing = _check_spacing(spacing_mm, source)
    mask: NDArray[np.bool_] | None = None
    if fmt == "mindboggle":
        if brain_mask is None:
            raise InputError(
                source,
                "a brain mask with a Mindboggle label map (its cerebral white matter is "
                "unlabelled)",
                "none",
                "pass brain_mask=t1w_brain > 0",
            )
        mask = np.asarray(brain_mask) != 0
        if mask.shape != labels.shape:
            raise InputError(
                source,
                f"a brain mask of the label map's shape {labels.shape}",
                f"shape {mask.shape}",
                "pass the mask on the label map's grid",
            )

    tables = _compiled(fmt)
    out = _apply_lut(
        tables.target,
        labels,
        source=source,
        expected=f"{fmt} label ids",
        todo=f"check the file is a {fmt} label map (formats: {', '.join(IMPORT_FORMATS)})",
        invalid=_NOT_ALLOWED,
    ).astype(np.int32, copy=False)

    pending = out == _PER_VOXEL
    # 0 here is an unlabelled voxel or a dropped artefact (74): both are filled inside the brain.
    unlabelled_in_brain = None if mask is None else (out == 0) & mask
    if not pending.any() and (unlabelled_in_brain is None or not unlabelled_in_brain.any()):
        return out, protocol
    # Every voxel to resolve and every voxel that can answer lies in the bounding box of the
    # labelled voxels and the mask: work there (a third of a Mindboggle volume).
    region = labels != 0
    if mask is not None:
        region |= mask
    lo, hi = _bbox(region)
    crop = tuple(slice(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True))
    labels_c, out_c, pending_c = labels[crop], out[crop], pending[crop]  # views into the arrays
    cortex_c = tables.cortex[labels_c]
    by_hemi = pending_c & (cortex_c == 0)
    if unlabelled_in_brain is not None:
        by_hemi |= unlabelled_in_brain[crop]
    if by_hemi.any():
        _resolve_hemispheres(out_c, labels_c, np.nonzero(by_hemi), tables, spacing, source)
    for hemi in (_LEFT, _RIGHT):
        todo = np.nonzero(cortex_c == hemi)
        if todo[0].size:
            _resolve_cortex(out_c, todo, hemi, protocol, spacing, source)
    return out, protocol


def _check_spacing(
    spacing_mm: tuple[float, float, float], source: str | None
) -> tuple[float, float, float]:
    values = tuple(float(s) for s in spacing_mm)
    if len(values) != 3 or not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(
            source,
            "3 positive voxel sizes in mm",
            f"spacing_mm={spacing_mm!r}",
            "take them from the image header (header.get_zooms()[:3])",
        )
    return values[0], values[1], values[2]


def _resolve_hemispheres(
    out: NDArray[np.int32],
    labels: NDArray[np.integer],
    todo: tuple[NDArray[np.intp], ...],
    tables: _Compiled,
    spacing_mm: tuple[float, float, float],
    source: str | None,
) -> None:
    """Voxels ``todo`` take their (left, right) target by the nearest hemisphere-specific voxel.

    Unlabelled voxels (Mindboggle's white matter) take (2, 41).
    """
    hemi_of_id = tables.hemi[labels]
    nearest = _nearest_seed(hemi_of_id > 0, todo, spacing_mm)
    if nearest is None:
        raise InputError(
            source,
            "hemisphere-specific labels (Left-*/Right-*) to tell the side of "
            f"{todo[0].size} voxels",
            "none",
            "check the label map is not empty or midline-only",
        )
    left = hemi_of_id[nearest] == _LEFT
    src = labels[todo]
    unlabelled = out[todo] == 0  # the others are _PER_VOXEL ids with a (left, right) pair
    pair_left = np.where(unlabelled, 2, tables.pair_left[src])
    pair_right = np.where(unlabelled, 41, tables.pair_right[src])
    out[todo] = np.where(left, pair_left, pair_right)
    n_left = int(left.sum())
    log.info(
        "%s: %d voxels given a hemisphere (%d left, %d right)",
        source or "label map",
        left.size,
        n_left,
        left.size - n_left,
    )


def _resolve_cortex(
    out: NDArray[np.int32],
    todo: tuple[NDArray[np.intp], ...],
    hemi: int,
    protocol: str,
    spacing_mm: tuple[float, float, float],
    source: str | None,
) -> None:
    """Voxels ``todo`` take the label of the nearest valid cortical voxel of ``hemi``."""
    base = 1000 if hemi == _LEFT else 2000
    nearest = _nearest_seed((out >= base) & (out < base + 1000), todo, spacing_mm)
    side = "left" if hemi == _LEFT else "right"
    if nearest is None:
        raise InputError(
            source,
            f"{protocol} cortical labels in the {side} hemisphere to absorb "
            f"{todo[0].size} voxels of cortex without a {protocol} region",
            "none",
            "use format freesurfer-aseg for maps without a cortical parcellation",
        )
    out[todo] = out[nearest]
    log.info(
        "%s: %d %s cortical voxels given the nearest region",
        source or "label map",
        todo[0].size,
        side,
    )


def _nearest_seed(
    seeds: NDArray[np.bool_],
    targets: tuple[NDArray[np.intp], ...],
    spacing_mm: tuple[float, float, float],
) -> tuple[NDArray[np.intp], ...] | None:
    """For each target voxel (index arrays, as from ``np.nonzero``) the index of the nearest seed.

    The Euclidean distance transform runs once on a crop around the targets. The crop is exact
    when it holds every seed, or when each target's nearest seed inside it is no farther than
    the crop's faces; otherwise the margin doubles.

    Returns:
        Index arrays into ``seeds``, or None when there is no seed.
    """
    if not seeds.any():
        return None
    shape = np.array(seeds.shape)
    spacing = np.asarray(spacing_mm, dtype=np.float64)
    t_lo = np.array([t.min() for t in targets])
    t_hi = np.array([t.max() + 1 for t in targets])
    seeds_lo, seeds_hi = _bbox(seeds)
    s_lo, s_hi = np.minimum(seeds_lo, t_lo), np.maximum(seeds_hi, t_hi)
    margin = _INITIAL_MARGIN_VOX
    while True:
        lo = np.maximum(t_lo - margin, s_lo)
        hi = np.minimum(t_hi + margin, s_hi)
        holds_all = bool(np.all(lo <= seeds_lo) and np.all(hi >= seeds_hi))
        sub = seeds[tuple(slice(a, b) for a, b in zip(lo.tolist(), hi.tolist(), strict=True))]
        if sub.any():
            indices = ndimage.distance_transform_edt(
                ~sub, sampling=spacing, return_distances=False, return_indices=True
            )
            local = tuple(t - a for t, a in zip(targets, lo.tolist(), strict=True))
            near = tuple(indices[k][local] for k in range(3))
            if holds_all or _inside_faces(near, local, lo, hi, shape, spacing):
                return tuple(n + a for n, a in zip(near, lo.tolist(), strict=True))
        margin *= 2


def _inside_faces(
    near: tuple[NDArray[np.intp], ...],
    local: tuple[NDArray[np.intp], ...],
    lo: NDArray[np.intp],
    hi: NDArray[np.intp],
    shape: NDArray[np.intp],
    spacing: NDArray[np.float64],
) -> bool:
    """True when no voxel outside the crop can be nearer than the seed found inside it."""
    dist2 = sum(((n - p) * s) ** 2 for n, p, s in zip(near, local, spacing, strict=True))
    limit = np.full(local[0].shape, np.inf)
    for k in range(3):
        if lo[k] > 0:  # the nearest voxel beyond the low face is at local index -1
            limit = np.minimum(limit, (local[k] + 1) * spacing[k])
        if hi[k] < shape[k]:
            limit = np.minimum(limit, (hi[k] - lo[k] - local[k]) * spacing[k])
    return bool(np.all(dist2 <= limit**2))


def _bbox(mask: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(lo, hi) corners, hi exclusive, of the True voxels of a non-empty mask."""
    lo, hi = [], []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hit = np.flatnonzero(mask.any(axis=other))
        lo.append(hit[0])
        hi.append(hit[-1] + 1)
    return np.array(lo), np.array(hi)
