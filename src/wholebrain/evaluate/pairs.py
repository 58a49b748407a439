"""From two label-map files to scores: numbering, protocol, grid, then :func:`label_metrics`.

One pair goes through these steps (:func:`evaluate_pair`), each side on its own grid first:

1. **Numbering.** A side with a format (``pred_format``/``ref_format``, a key of
   :data:`~wholebrain.protocols.importers.IMPORT_FORMATS`) is converted by
   :func:`~wholebrain.protocols.importers.import_labels`. A side without one holds wholebrain
   ids: those of the evaluation protocol if every id in it belongs there, else those of the
   full protocol ``dkt-aseg``.
2. **Protocol.** Both sides are mapped to the evaluation protocol with
   :func:`~wholebrain.protocols.map_labels` (e.g. ``dkt-aseg`` -> ``tissue``). The evaluation
   protocol is ``protocol`` when given, else the coarser of the formats' protocols (a
   ``freesurfer-aseg`` reference makes it ``aseg``), else ``dkt-aseg``
   (:func:`resolve_protocol`).
3. **Grid.** When the prediction's grid differs from the reference's (shape or affine), the
   prediction is resampled onto the reference grid by nearest neighbour through the two
   affines (both must describe the same world space): each reference voxel takes the label of
   the prediction voxel whose centre is nearest to its centre, ties to the higher index;
   reference voxels outside the prediction's field of view get background. The result says so
   (``PairResult.resampled`` and a note). Distances and volumes are measured on the reference
   grid: voxel axes scaled by its voxel size (the column norms of its affine), exact for any
   rotation, approximate only for sheared affines.

Mindboggle references (format ``mindboggle``) leave the cerebral white matter unlabelled (0
inside the brain). With a brain image (``ref_brain``, e.g. ``t1w_brain.nii.gz``; non-zero
voxels are brain) the unlabelled brain voxels become Left/Right-Cerebral-White-Matter by
hemisphere, as the importer does. Without one, only the labelled voxels count as brain: the
white matter stays background, and the classes of the evaluation protocol that hold cerebral
white matter (2/41 in ``dkt-aseg``/``aseg``, WM in ``tissue``, ...) are not scored (NaN) with a
note saying so; every other structure is scored exactly, because whether the reference calls
those voxels white matter or background does not change any other structure's overlap or
surface. (Filling holes in ``labels > 0`` does not recover the white matter: it leaks through
the medial wall; a 3 mm closing first gets Dice 0.87 against the brain-mask result, too poor to
score.) The same holds for a Mindboggle prediction and ``pred_brain``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from wholebrain.errors import InputError
from wholebrain.evaluate.grids import describe_grid, resample_nearest, same_grid
from wholebrain.evaluate.metrics import LabelMetrics, label_metrics
from wholebrain.evaluate.table import Evaluation, PairResult
from wholebrain.io import Volume, check_same_grid, load_image, load_labels
from wholebrain.protocols import FULL_PROTOCOL, get_protocol, map_labels, partial_map
from wholebrain.protocols.importers import IMPORT_FORMATS, import_labels

__all__ = ["LabelSource", "evaluate_pair", "evaluate_pairs", "resolve_protocol"]

log = logging.getLogger(__name__)

LabelSource = str | Path | Volume
"""A label map (or brain image) given as a file or already loaded."""

_UNLABELLED_WM = (2, 41)  # full-protocol ids Mindboggle leaves unlabelled (cerebral WM)
_MAX_LISTED_IDS = 10  # how many unexpected ids an error message names


def resolve_protocol(
    protocol: str | None = None, pred_format: str | None = None, ref_format: str | None = None
) -> str:
    """The evaluation protocol of a pair (see the module docstring), checked before any loading.

    Args:
        protocol: name of the protocol to score in, or None to choose from the formats.
        pred_format: import format of the predictions, or None (wholebrain ids).
        ref_format: import format of the references, or None (wholebrain ids).

    Returns:
        The protocol name.

    Raises:
        InputError: unknown protocol or format; a format whose protocol cannot be mapped to
            ``protocol``; or, without ``protocol``, two formats whose protocols do not map
            one onto the other (e.g. ``fsl-fast`` and ``fsl-first``).
    """
    sides: list[tuple[str, str]] = []  # (option, protocol of its format)
    for option, fmt in (("--pred-format", pred_format), ("--ref-format", ref_format)):
        if fmt is None:
            continue
        if fmt not in IMPORT_FORMATS:
            raise InputError(
                option,
                f"one of {', '.join(IMPORT_FORMATS)}",
                repr(fmt),
                "name the numbering the label maps are in",
            )
        sides.append((f"{option} {fmt}", IMPORT_FORMATS[fmt]))
    if protocol is not None:
        get_protocol(protocol)  # an unknown name fails here, listing the known ones
        for option, source in sides:
            if not _maps_to(source, protocol):
                raise InputError(
                    "--protocol",
                    f"a protocol that {option} (protocol {source!r}) can be mapped to",
                    f"{protocol!r}, which is finer than {source!r}",
                    f"evaluate in {source!r} or a protocol coarser than it",
                )
        return protocol
    candidates = [source for _, source in sides] or [FULL_PROTOCOL]
    for candidate in candidates:
        if all(_maps_to(source, candidate) for source in candidates):
            return candidate
    raise InputError(
        "--protocol",
        "a protocol both formats can be mapped to",
        f"none given, and {' and '.join(f'{o} ({s!r})' for o, s in sides)} do not map to "
        "each other",
        "name the protocol to score in with --protocol: one that both merge into, if any",
    )


def evaluate_pair(
    pred: LabelSource,
    ref: LabelSource,
    *,
    protocol: str | None = None,
    pred_format: str | None = None,
    ref_format: str | None = None,
    pred_brain: LabelSource | None = None,
    ref_brain: LabelSource | None = None,
) -> PairResult:
    """Score a predicted label map against a reference, structure by structure.

    Args:
        pred: the prediction, a file or a loaded label map.
        ref: the reference (manual) label map; metrics are measured on its grid.
        protocol: protocol to score in (see :func:`resolve_protocol`).
        pred_format: import format of ``pred``, or None for wholebrain ids.
        ref_format: import format of ``ref``, or None for wholebrain ids.
        pred_brain: brain image on ``pred``'s grid, only for format ``mindboggle``.
        ref_brain: brain image on ``ref``'s grid, only for format ``mindboggle``.

    Returns:
        The metrics of every non-background label of the protocol, with notes.

    Raises:
        InputError: a file fails the input rules, holds ids its numbering does not have, a
            brain image is given for another format or lies on another grid, or the two
            maps do not overlap in world space.
    """
    eval_protocol = resolve_protocol(protocol, pred_format, ref_format)
    ref_volume = _load(ref)
    pred_volume = _load(pred)
    ref_ids, ref_notes, ref_unscored = _to_protocol(
        ref_volume, ref_format, eval_protocol, ref_brain, "reference", "--ref-brain"
    )
    pred_ids, pred_notes, pred_unscored = _to_protocol(
        pred_volume, pred_format, eval_protocol, pred_brain, "prediction", "--pred-brain"
    )
    notes = [*pred_notes, *ref_notes]
    resampled = not same_grid(pred_volume, ref_volume)
    if resampled:
        pred_ids, outside = resample_nearest(pred_ids, pred_volume.affine, ref_volume)
        if outside.all():
            raise InputError(
                pred_volume.name,
                f"a label map overlapping the reference {ref_volume.name} in world space",
                f"no overlap ({describe_grid(pred_volume)} vs {describe_grid(ref_volume)})",
                "check that both belong to the same subject and lie in the same space",
            )
        notes.append(
            f"the prediction ({describe_grid(pred_volume)}) was resampled onto the reference "
            f"grid ({describe_grid(ref_volume)}) by nearest neighbour through the affines"
        )
        labelled_outside = int(np.count_nonzero(ref_ids[outside]))
        if labelled_outside:
            notes.append(
                f"{labelled_outside} labelled reference voxels lie outside the prediction's "
                "field of view and count as background there"
            )
    labels = get_protocol(eval_protocol).ids[1:]
    metrics = label_metrics(pred_ids, ref_ids, labels, ref_volume.spacing_mm)
    unscored = tuple(sorted(set(pred_unscored) | set(ref_unscored)))
    if unscored:
        metrics = _without(metrics, unscored)
    for note in notes:
        log.debug("%s vs %s: %s", pred_volume.name, ref_volume.name, note)
    return PairResult(
        pred=pred_volume.name,
        ref=ref_volume.name,
        protocol=eval_protocol,
        metrics=metrics,
        voxel_volume_mm3=float(abs(np.linalg.det(ref_volume.affine[:3, :3]))),
        resampled=resampled,
        unscored=unscored,
        notes=tuple(notes),
    )


def evaluate_pairs(
    preds: Sequence[LabelSource],
    refs: Sequence[LabelSource],
    *,
    protocol: str | None = None,
    pred_format: str | None = None,
    ref_format: str | None = None,
    pred_brains: Sequence[LabelSource] | None = None,
    ref_brains: Sequence[LabelSource] | None = None,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> Evaluation:
    """Score many (prediction, reference) pairs, paired by position.

    Args:
        preds: the predictions.
        refs: the references, as many as ``preds``, in the same order.
        protocol, pred_format, ref_format: as :func:`evaluate_pair`, for every pair.
        pred_brains: one brain image per prediction (format ``mindboggle``), or None.
        ref_brains: one brain image per reference (format ``mindboggle``), or None.
        progress: wraps the iteration over pair indices (e.g. ``tqdm``), or None.

    Returns:
        Every pair's result, with group means and the summary over pairs.

    Raises:
        InputError: no pairs, counts that do not match, or any error of
            :func:`evaluate_pair` (the first bad pair stops the run).
    """
    if not preds or not refs:
        raise InputError(
            "--pred/--ref", "at least one prediction and one reference", "none", "give files"
        )
    _check_count("--ref", "references, one per prediction", len(refs), len(preds))
    if pred_brains is not None:
        _check_count(
            "--pred-brain", "brain images, one per prediction", len(pred_brains), len(preds)
        )
    if ref_brains is not None:
        _check_count("--ref-brain", "brain images, one per reference", len(ref_brains), len(refs))
    eval_protocol = resolve_protocol(protocol, pred_format, ref_format)
    indices: Iterable[int] = range(len(preds))
    if progress is not None:
        indices = progress(indices)
    results = [
        evaluate_pair(
            preds[i],
            refs[i],
            protocol=eval_protocol,
            pred_format=pred_format,
            ref_format=ref_format,
            pred_brain=None if pred_brains is None else pred_brains[i],
            ref_brain=None if ref_brains is None else ref_brains[i],
        )
        for i in indices
    ]
    return Evaluation(eval_protocol, tuple(results))


# --- numbering and protocol --------------------------------------------------------------------


def _maps_to(source: str, target: str) -> bool:
    """Whether every ``source`` class lies in one ``target`` class (``target`` is coarser)."""
    if source == target:
        return True
    to_source, to_target = partial_map(source), partial_map(target)
    images: dict[int, set[int]] = {}
    for full_id, source_id in to_source.items():
        images.setdefault(source_id, set()).add(to_target[full_id])
    return all(len(targets) == 1 for targets in images.values())


def _load(source: LabelSource) -> Volume:
    return source if isinstance(source, Volume) else load_labels(source)


def _to_protocol(
    volume: Volume,
    fmt: str | None,
    protocol: str,
    brain: LabelSource | None,
    role: str,
    brain_option: str,
) -> tuple[NDArray[np.int32], list[str], tuple[int, ...]]:
    """(ids of ``protocol`` on the volume's grid, notes, ids that cannot be scored)."""
    notes: list[str] = []
    unscored: tuple[int, ...] = ()
    if fmt != "mindboggle" and brain is not None:
        brain_name = brain.name if isinstance(brain, Volume) else str(brain)
        raise InputError(
            brain_name,
            f"a brain image only with format mindboggle ({brain_option})",
            f"the {role} in format {fmt or 'wholebrain ids'}",
            f"leave out {brain_option}",
        )
    if fmt is None:
        ids = volume.data.astype(np.int32, copy=False)
        source = _wholebrain_protocol(volume, protocol, role)
    else:
        mask = None
        if fmt == "mindboggle":
            mask, unscored = _mindboggle_mask(volume, brain, protocol)
            if unscored:
                names = ", ".join(get_protocol(protocol).label(i).name for i in unscored)
                notes.append(
                    f"the {role} is a Mindboggle map, whose cerebral white matter is "
                    f"unlabelled, and no brain image was given ({brain_option}): {names} "
                    "not scored"
                )
        ids, source = import_labels(
            volume.data, fmt, brain_mask=mask, spacing_mm=volume.spacing_mm, source=volume.name
        )
    if source != protocol:
        ids = map_labels(ids, protocol, source)
    return ids, notes, unscored


def _wholebrain_protocol(volume: Volume, protocol: str, role: str) -> str:
    """The protocol whose ids a map without a format holds: ``protocol``, else the full one."""
    present = _present_ids(volume.data)
    if present <= set(get_protocol(protocol).ids.tolist()):
        return protocol
    full_ids = set(get_protocol(FULL_PROTOCOL).ids.tolist())
    if present <= full_ids:
        return FULL_PROTOCOL
    allowed = set(get_protocol(protocol).ids.tolist()) | full_ids
    extra = sorted(present - allowed)
    listed = ", ".join(str(i) for i in extra[:_MAX_LISTED_IDS])
    more = f" and {len(extra) - _MAX_LISTED_IDS} more" if len(extra) > _MAX_LISTED_IDS else ""
    either = f"{protocol!r} or {FULL_PROTOCOL!r}" if protocol != FULL_PROTOCOL else repr(protocol)
    option = "--pred-format" if role == "prediction" else "--ref-format"
    raise InputError(
        volume.name,
        f"label ids of protocol {either}",
        f"ids outside it: {listed}{more}",
        f"name the {role}'s numbering with {option} ({', '.join(IMPORT_FORMATS)})",
    )


def _present_ids(data: NDArray[np.integer]) -> set[int]:
    flat = data.reshape(-1)
    if flat.size and int(flat.min()) >= 0 and int(flat.max()) < 1 << 20:
        return set(np.flatnonzero(np.bincount(flat)).tolist())  # far faster than np.unique
    return set(np.unique(flat).tolist())


def _mindboggle_mask(
    volume: Volume, brain: LabelSource | None, protocol: str
) -> tuple[NDArray[np.bool_], tuple[int, ...]]:
    """(brain mask for the importer, ``protocol`` ids left unscored without a brain image)."""
    if brain is None:
        # Only the labelled voxels are brain: nothing is filled, the white matter stays 0.
        to_protocol = partial_map(protocol)
        holding_wm = {to_protocol[i] for i in _UNLABELLED_WM} - {0}
        return np.zeros(volume.shape, dtype=bool), tuple(sorted(holding_wm))
    brain_volume = brain if isinstance(brain, Volume) else load_image(brain)
    check_same_grid(volume, brain_volume)
    mask: NDArray[np.bool_] = brain_volume.data > 0
    return mask, ()


def _without(metrics: LabelMetrics, unscored: tuple[int, ...]) -> LabelMetrics:
    """The metrics with NaN for the labels ``unscored``."""
    drop = np.isin(metrics.labels, unscored)
    values = {}
    for name in ("dice", "hd95_mm", "assd_mm", "volume_diff_pct"):
        array = getattr(metrics, name).copy()
        array[drop] = np.nan
        values[name] = array
    return replace(metrics, **values)


def _check_count(option: str, what: str, found: int, expected: int) -> None:
    if found != expected:
        raise InputError(
            option,
            f"{expected} {what} (pairs are matched by position)",
            str(found),
            "give the files in pairs, in the same order",
        )
