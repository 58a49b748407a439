"""What a generation label map may hold, how each id looks in T1, and how it is put on the canvas.

Generation labels are SynthSeg's whole-head ids: FreeSurfer aseg numbering for the brain plus
extra-cerebral ids (502-530 in SynthSeg's training maps: skull, scalp, eyes, ...). Each known id
has

* a **T1 intensity class**, a column of SynthSeg's T1 priors ``prior_means_t1.npy`` /
  ``prior_stds_t1.npy`` (shape (2, 25): row 0 the mean, row 1 the std of a *normal* prior on
  the class mean, resp. std, as SynthSeg's ``prior_distributions='normal'`` reads them);
* an **output id** in the ``aseg`` protocol, from :func:`wholebrain.protocols.importers.
  import_labels` with format ``"synthseg"`` (extra-cerebral ids and CSF 24 become 0).

The 25 T1 classes. SynthSeg pairs these priors with ``generation_classes_contrast_specific.npy``,
which ``../shared/data/synthseg-label-maps/priors/`` does not hold (its ``generation_classes.npy``
has 48 classes, left and right apart: the grouping for random contrast). The table below was
rebuilt and checked against data:

* brain classes 0-13: every aseg structure's median T1 intensity in the 10 Mindboggle
  development scans, scaled so cerebral white matter is 160 (prior of class 2), matched to the
  nearest prior mean (measured -> prior): CSF 45 -> 44, white matter 160 -> 160, cortex 92 ->
  96, cerebellar WM 129 -> 136, cerebellar cortex 85 -> 88, thalamus 135 -> 130, putamen
  123 -> 124, pallidum 148 -> 152 (both with the smallest std, 8 vs 8.6), ventral DC 141 ->
  143, caudate 113 / accumbens 102 -> 116, hippocampus 93 / amygdala 91 -> 87, lateral
  ventricles 57 -> 60, brainstem 125 -> 130;
* classes 14-24: the 11 extra-cerebral ids in increasing order; their priors have the large
  stds of mixed tissue (25-84 vs 9-26 in the brain), and the two dark ones fall where expected:
  515 (430 ml surrounding the brain at 10 mm: skull) -> mean 30, 506 (two 7 ml globes in front
  of the brain: eyes) -> 18.

Ids FreeSurfer/SynthSeg outputs may add (cortical parcels 1000-2035, 91/92, 165, 257-259) take
the class of their tissue, so such maps work too.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from numpy.typing import NDArray

from wholebrain.conform import ConformConfig, conform
from wholebrain.errors import InputError
from wholebrain.io import Volume, load_labels
from wholebrain.protocols.importers import import_labels

__all__ = [
    "N_T1_CLASSES",
    "T1_CLASSES",
    "IntensityPriors",
    "LabelMapOnCanvas",
    "known_label_ids",
    "load_label_map",
    "load_t1_priors",
]

log = logging.getLogger(__name__)

_CORTEX_PARCELS = (*range(1000, 1036), *range(2000, 2036))  # FreeSurfer/SynthSeg --parc ids

T1_CLASSES: tuple[tuple[str, tuple[int, ...]], ...] = (
    ("background", (0,)),
    ("CSF (SynthSeg's 24: sulcal and extra-cerebral)", (24, 257)),
    ("cerebral white matter", (2, 41)),
    ("cerebral cortex", (3, 42, *_CORTEX_PARCELS)),
    ("cerebellar white matter", (7, 46)),
    ("cerebellar cortex", (8, 47)),
    ("thalamus", (10, 49)),
    ("putamen", (12, 51)),
    ("pallidum", (13, 52)),
    ("ventral DC", (28, 60)),
    # WM lesions 25/57 are hypointense white matter; optic chiasm and basal forebrain in between.
    (
        "caudate, accumbens, basal forebrain, optic chiasm, lesions",
        (11, 50, 26, 58, 91, 92, 85, 25, 57),
    ),
    ("hippocampus, amygdala, vessels", (17, 53, 18, 54, 30, 62)),
    # 136/137/163/164 lie beside the ventricles; SynthSeg segments them as 4/5/43/44.
    ("ventricles", (4, 43, 5, 44, 14, 15, 72, 136, 137, 163, 164)),
    ("brainstem", (16,)),
    ("extra-cerebral 502", (502,)),
    ("eyes (506; 259 eye fluid)", (506, 259)),
    ("extra-cerebral 507 (258 head soft tissue)", (507, 258)),
    ("extra-cerebral 508", (508,)),
    ("extra-cerebral 509", (509,)),
    ("extra-cerebral 511", (511,)),
    ("extra-cerebral 512", (512,)),
    ("extra-cerebral 514", (514,)),
    ("skull (515; 165 skull)", (515, 165)),
    ("extra-cerebral 516", (516,)),
    ("extra-cerebral 530", (530,)),
)
"""(name, generation ids) of each T1 intensity class, in the priors' column order."""

N_T1_CLASSES = len(T1_CLASSES)
_PRIOR_FILES = ("prior_means_t1.npy", "prior_stds_t1.npy")
_DEFAULT_CANVAS = ConformConfig()


@functools.cache
def known_label_ids() -> tuple[int, ...]:
    """Every generation id a label map may hold, sorted; 0 (background) first."""
    return tuple(sorted(i for _, ids in T1_CLASSES for i in ids))


@dataclass(frozen=True, eq=False)
class LabelTables:
    """Lookup tables over *slots* (positions in :func:`known_label_ids`), as torch tensors.

    Attributes:
        slot_of_id: (max id + 1,) int64, generation id -> slot, -1 for unknown ids.
        aseg_id: (n_slots,) int64, slot -> ``aseg`` protocol id.
        t1_class: (n_slots,) int64, slot -> column of the T1 priors.
        uniform_class: (n_slots,) int64, slot -> class of random contrast (one per structure;
            cortical parcels share their hemisphere's cortex).
    """

    slot_of_id: torch.Tensor
    aseg_id: torch.Tensor
    t1_class: torch.Tensor
    uniform_class: torch.Tensor
    n_uniform_classes: int  # uniform_class.max() + 1, kept here to spare a device sync

    def to(self, device: torch.device) -> LabelTables:
        return LabelTables(
            slot_of_id=self.slot_of_id.to(device),
            aseg_id=self.aseg_id.to(device),
            t1_class=self.t1_class.to(device),
            uniform_class=self.uniform_class.to(device),
            n_uniform_classes=self.n_uniform_classes,
        )


@functools.cache
def label_tables() -> LabelTables:
    """The lookup tables (CPU), built once per process."""
    ids = np.array(known_label_ids(), dtype=np.int64)
    slot_of_id = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    slot_of_id[ids] = np.arange(ids.size)
    # The importer is the one place that knows SynthSeg -> aseg; ask it once for every id.
    aseg, _ = import_labels(ids.reshape(1, 1, -1), "synthseg", source="wholebrain.synth table")
    t1_class = np.empty(ids.size, dtype=np.int64)
    for column, (_, members) in enumerate(T1_CLASSES):
        t1_class[slot_of_id[list(members)]] = column
    representative = np.where(
        (ids >= 1000) & (ids < 2000), 3, np.where((ids >= 2000) & (ids < 3000), 42, ids)
    )
    _, uniform_class = np.unique(representative, return_inverse=True)
    return LabelTables(
        slot_of_id=torch.from_numpy(slot_of_id),
        aseg_id=torch.from_numpy(aseg.reshape(-1).astype(np.int64)),
        t1_class=torch.from_numpy(t1_class),
        uniform_class=torch.from_numpy(uniform_class.astype(np.int64)),
        n_uniform_classes=int(uniform_class.max()) + 1,
    )


@dataclass(frozen=True, eq=False)
class IntensityPriors:
    """SynthSeg's T1 intensity priors, one column per :data:`T1_CLASSES` entry.

    Attributes:
        means: (2, 25) float64; a class mean is drawn from N(means[0, k], means[1, k]).
        stds: (2, 25) float64; a class std is drawn from N(stds[0, k], stds[1, k]).
        source: the folder they were read from, or None.
    """

    means: NDArray[np.float64]
    stds: NDArray[np.float64]
    source: Path | None = None

    def __post_init__(self) -> None:
        for name in ("means", "stds"):
            array = np.asarray(getattr(self, name), dtype=np.float64)
            if array.shape != (2, N_T1_CLASSES) or not np.isfinite(array).all():
                raise InputError(
                    self.source,
                    f"T1 priors {name} of shape (2, {N_T1_CLASSES}) with finite values",
                    f"shape {array.shape}",
                    "use the priors/ folder of SynthSeg's label maps",
                )
            object.__setattr__(self, name, array)


def load_t1_priors(folder: str | Path) -> IntensityPriors:
    """Read ``prior_means_t1.npy`` and ``prior_stds_t1.npy`` from ``folder``.

    Raises:
        InputError: a file is missing, unreadable or not a (2, 25) array.
    """
    folder = Path(folder)
    arrays = []
    for name in _PRIOR_FILES:
        path = folder / name
        if not path.is_file():
            raise InputError(
                path,
                "SynthSeg's T1 intensity priors (prior_means_t1.npy, prior_stds_t1.npy)",
                "no such file",
                "pass the priors/ folder of the SynthSeg label maps, or use uniform contrast",
            )
        try:
            arrays.append(np.load(path, allow_pickle=False))
        except (OSError, ValueError) as error:
            raise InputError(
                path, "a NumPy .npy array", f"an unreadable file ({error})", "copy it again"
            ) from None
    return IntensityPriors(means=arrays[0], stds=arrays[1], source=folder)


@dataclass(frozen=True, eq=False)
class LabelMapOnCanvas:
    """A generation label map put on the canvas.

    Attributes:
        labels: (X, Y, Z) int32 tensor (CPU) of generation ids on the canvas, RAS.
        canvas_affine: (4, 4) float64 canvas voxel -> world RAS mm.
        path: the file it came from.
    """

    labels: torch.Tensor
    canvas_affine: NDArray[np.float64]
    path: Path

    @property
    def canvas_volume(self) -> Volume:
        """An empty-data :class:`Volume` on the canvas grid, to save outputs against."""
        shape = tuple(self.labels.shape)
        return Volume(np.zeros(shape, np.uint8), self.canvas_affine)


def load_label_map(
    path: str | Path, conform_config: ConformConfig = _DEFAULT_CANVAS
) -> LabelMapOnCanvas:
    """Load a SynthSeg-style label map and put it on the canvas, as training inputs are.

    The canvas is placed by :func:`wholebrain.conform.conform` on a stand-in head image (1
    inside the labelled head, 0 outside), and the labels follow with
    :meth:`~wholebrain.conform.Conformed.labels_to_canvas`.

    Args:
        path: NIfTI/MGH label map of generation ids (any orientation and voxel size).
        conform_config: the canvas (shape, spacing, label interpolation).

    Returns:
        The labels on the canvas and the canvas affine.

    Raises:
        InputError: the file is not a usable label map, holds no label, or holds ids the
            generator does not know.
    """
    volume = load_labels(path)
    data = volume.data
    present = np.unique(data)
    known = np.array(known_label_ids())
    unknown = present[~np.isin(present, known)]
    if unknown.size:
        listed = ", ".join(str(v) for v in unknown[:10]) + (", ..." if unknown.size > 10 else "")
        raise InputError(
            path,
            "SynthSeg generation label ids (FreeSurfer aseg plus extra-cerebral 502-530)",
            f"{unknown.size} unknown id(s): {listed}",
            "give SynthSeg-style whole-head label maps (e.g. its training_seg_XX.nii.gz)",
        )
    if present.size == 1 and present[0] == 0:
        raise InputError(
            path, "a label map with labelled voxels", "only background (0)", "check the file"
        )
    head = Volume((data > 0).astype(np.float32), volume.affine)
    conformed = conform(head, conform_config)
    canvas = conformed.labels_to_canvas(data)
    log.debug("%s: on the canvas, %d labelled voxels", path, int((canvas > 0).sum()))
    return LabelMapOnCanvas(
        labels=torch.from_numpy(np.ascontiguousarray(canvas, dtype=np.int32)),
        canvas_affine=np.asarray(conformed.canvas_affine, dtype=np.float64),
        path=Path(path),
    )
