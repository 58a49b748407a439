"""Multi-atlas segmentation by ANTs SyN registration and joint label fusion: the paper's baseline.

The classic way to label a scan with a few labelled ones (Wang et al., *Multi-atlas
segmentation with joint label fusion*, IEEE TPAMI 2013), against which Dai et al. (2019)
compare the network: register every atlas scan to the target, carry each atlas's labels over,
and let joint label fusion weight the atlases voxel by voxel by how well (and how
independently) their intensity patches match the target's.

Three steps, each a function so that a benchmark can cache the costly middle one per
(atlas, target) pair and reuse it for every fold in which that atlas labels that target:

1. :func:`fusion_grid`: the target conformed (:func:`wholebrain.conform.conform`) to a canvas of
   ``spacing_mm`` voxels, intensities normalised to [0, 1], cropped to its foreground box
   plus a margin: the grid where registration and fusion happen. The network sees its scans
   the same way, and both go back to the scan's grid the same way.
2. :func:`warp_atlas`: one atlas, put on such a grid too, registered to the target's
   (``ants.registration``, default ``"SyN"``); its intensities (linear) and its labels
   (``genericLabel``, from its own grid: the label whose indicator interpolates highest, so
   no id is invented) resampled onto the target's grid.
3. :func:`fuse`: ``ants.joint_label_fusion`` of the warped atlases, inside the union of their
   labels; one atlas is simply its warped labels. :func:`to_native` brings the result back
   onto the target's own grid (``Conformed.to_native``).

The grid's spacing is the speed/accuracy dial: at 2 mm a SyN registration of a skull-stripped
Mindboggle brain costs about 10 s of CPU against 1-2 min at 1 mm, and the fusion ~50x less;
the patch and search radii are in voxels of that grid, so their defaults (1 and 1: a 6 mm
patch searched over +-2 mm at 2 mm) approximate ANTs' 1 mm defaults (2 and 3: a 5 mm patch
over +-3 mm) in millimetres.

Needs antspyx (``pip install 'wholebrain[ants]'``), imported on first use through
:func:`wholebrain.partial.registration.load_ants`.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from wholebrain.conform import ConformConfig, Conformed, conform
from wholebrain.io import Volume
from wholebrain.partial.registration import load_ants, volume_to_ants
from wholebrain.resample import bounding_box

__all__ = [
    "FusionConfig",
    "FusionGrid",
    "WarpedAtlas",
    "fuse",
    "fusion_grid",
    "segment_by_fusion",
    "to_native",
    "warp_atlas",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FusionConfig:
    """How atlases are registered to a target and fused."""

    spacing_mm: float = 2.0  # isotropic voxel size of the registration/fusion grid
    # Extent of that grid (X, Y, Z), placed on the head as conform places its canvas; the
    # default holds an adult head as the 1 mm canvas of 192 x 224 x 224 voxels does.
    field_of_view_mm: tuple[float, float, float] = (192.0, 224.0, 224.0)
    margin_vox: int = 4  # voxels of that grid kept around the target's foreground box
    type_of_transform: str = "SyN"  # ants.registration preset (affine + SyN 40x20x0)
    patch_radius_vox: int = 1  # JLF patch radius (antspy's rad; ANTs' 1 mm default is 2)
    search_radius_vox: int = 1  # JLF search radius (r_search; ANTs' 1 mm default is 3)
    beta: float = 4.0  # JLF weight sharpness (antspy's default)
    rho: float = 0.01  # JLF ridge penalty (antspy's default)

    def __post_init__(self) -> None:
        object.__setattr__(self, "field_of_view_mm", tuple(float(v) for v in self.field_of_view_mm))
        if not self.spacing_mm > 0 or len(self.field_of_view_mm) != 3:
            raise ValueError(
                f"spacing_mm must be > 0 and field_of_view_mm 3 lengths, not {self.spacing_mm}, "
                f"{self.field_of_view_mm}"
            )
        if min(self.field_of_view_mm) < 4 * self.spacing_mm or self.margin_vox < 0:
            raise ValueError("field_of_view_mm must hold 4 voxels a side; margin_vox >= 0")
        if self.patch_radius_vox < 0 or self.search_radius_vox < 0:
            raise ValueError("patch_radius_vox and search_radius_vox must be >= 0")
        if not self.beta > 0 or not self.rho > 0:
            raise ValueError(f"beta and rho must be > 0, not {self.beta}, {self.rho}")

    @property
    def conform(self) -> ConformConfig:
        """The grid as a conform canvas."""
        shape = tuple(max(1, round(f / self.spacing_mm)) for f in self.field_of_view_mm)
        return ConformConfig(
            canvas_shape_vox=(shape[0], shape[1], shape[2]), spacing_mm=self.spacing_mm
        )

    def key(self) -> str:
        """A short name of the settings that change a registration, for cache folders."""
        transform = "".join(c for c in self.type_of_transform if c.isalnum())
        fov = "x".join(f"{v:g}" for v in self.field_of_view_mm)
        return f"{transform}-{self.spacing_mm:g}mm-{fov}-m{self.margin_vox}"


@dataclass(frozen=True, eq=False)
class FusionGrid:
    """The target on the registration/fusion grid.

    Attributes:
        conformed: the target conformed to the grid's canvas (``FusionConfig.conform``):
            normalised intensities and the exact way back to the target's grid.
        box: the part of the canvas registration and fusion see (foreground box + margin).
        image: ``conformed.image[box]`` as an ``ants.ANTsImage`` (float32, world geometry).
        seconds: wall time spent making it.
    """

    conformed: Conformed
    box: tuple[slice, slice, slice]
    image: Any
    seconds: float

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.image.shape)


@dataclass(frozen=True, eq=False)
class WarpedAtlas:
    """One atlas carried onto a target's fusion grid.

    Attributes:
        image: (X, Y, Z) float32 normalised atlas intensities on the grid.
        labels: (X, Y, Z) int32 atlas label ids on the grid.
        seconds: wall time of putting the atlas on its own grid, the registration and the
            two resamplings.
    """

    image: NDArray[np.float32]
    labels: NDArray[np.int32]
    seconds: float


def _cropped(conformed: Conformed, box: tuple[slice, slice, slice]) -> Any:
    """The canvas image inside ``box`` as an ANTs image with its world geometry."""
    shift = np.eye(4)
    shift[:3, 3] = [b.start for b in box]
    image = np.ascontiguousarray(conformed.image[box], dtype=np.float32)
    return volume_to_ants(Volume(image, conformed.canvas_affine @ shift))


def fusion_grid(target: Volume, config: FusionConfig = FusionConfig()) -> FusionGrid:
    """The target conformed to ``config.conform`` (a canvas of ``spacing_mm`` voxels placed on
    the head, intensities in [0, 1]), cropped to its foreground box plus ``margin_vox``.
    Deterministic, so an atlas warped onto it earlier still fits.

    Args:
        target: the scan to segment.
        config: the grid's spacing, extent and margin.
    """
    started = time.perf_counter()
    conformed = conform(target, config.conform)
    x, y, z = conformed.image.shape
    # The whole canvas when the scan is empty.
    box = bounding_box(conformed.image > 0, config.margin_vox) or (
        slice(0, x),
        slice(0, y),
        slice(0, z),
    )
    image = _cropped(conformed, box)
    return FusionGrid(conformed, box, image, time.perf_counter() - started)


def warp_atlas(
    atlas: Volume,
    atlas_labels: NDArray[np.integer[Any]],
    grid: FusionGrid,
    config: FusionConfig = FusionConfig(),
) -> WarpedAtlas:
    """Register ``atlas`` to the target grid and resample its intensities and labels there.

    Args:
        atlas: the atlas scan.
        atlas_labels: (X, Y, Z) label ids on ``atlas``'s grid (any protocol; they are carried
            over as they are).
        grid: the target's fusion grid (:func:`fusion_grid`).
        config: the registration preset and the grid's spacing.

    Raises:
        ValueError: ``atlas_labels`` does not have ``atlas``'s shape.
    """
    ants = load_ants()
    labels = np.asarray(atlas_labels)
    if labels.shape != atlas.shape:
        raise ValueError(f"atlas labels of shape {labels.shape} do not fit the atlas {atlas.shape}")
    started = time.perf_counter()
    atlas_grid = fusion_grid(atlas, config)  # the same normalisation and spacing as the target
    moving = atlas_grid.image
    moving_labels = volume_to_ants(atlas, labels)
    with tempfile.TemporaryDirectory(prefix="wholebrain-jlf-") as folder:
        result = ants.registration(
            fixed=grid.image,
            moving=moving,
            type_of_transform=config.type_of_transform,
            outprefix=f"{folder}/atlas_",
        )
        transforms = result["fwdtransforms"]
        warped_image = ants.apply_transforms(
            fixed=grid.image, moving=moving, transformlist=transforms, interpolator="linear"
        )
        warped_labels = ants.apply_transforms(
            fixed=grid.image,
            moving=moving_labels,
            transformlist=transforms,
            interpolator="genericLabel",
        )
    return WarpedAtlas(
        image=warped_image.numpy().astype(np.float32),
        labels=np.rint(warped_labels.numpy()).astype(np.int32),
        seconds=time.perf_counter() - started,
    )


def fuse(
    grid: FusionGrid, atlases: Sequence[WarpedAtlas], config: FusionConfig = FusionConfig()
) -> NDArray[np.int32]:
    """Joint label fusion of warped atlases on the target grid.

    Voxels where no atlas has a label stay 0 (the fusion mask is the union of the atlases'
    labels); one atlas is returned as it is (fusion has nothing to weigh).

    Args:
        grid: the target's fusion grid.
        atlases: the atlases warped onto it (:func:`warp_atlas`).
        config: patch and search radii, beta and rho of the fusion.

    Returns:
        (X, Y, Z) int32 label ids on the grid.

    Raises:
        ValueError: no atlas, or an atlas warped onto another grid.
    """
    if not atlases:
        raise ValueError("joint label fusion needs at least one atlas")
    for atlas in atlases:
        if atlas.labels.shape != grid.shape or atlas.image.shape != grid.shape:
            raise ValueError(
                f"an atlas warped onto a grid of shape {atlas.labels.shape}, not the "
                f"target's {grid.shape}"
            )
    if len(atlases) == 1:
        return atlases[0].labels.copy()
    ants = load_ants()
    union = np.zeros(grid.shape, bool)
    for atlas in atlases:
        union |= atlas.labels > 0
    mask = grid.image.new_image_like(union.astype(np.float32))
    images = [grid.image.new_image_like(a.image) for a in atlases]
    label_images = [grid.image.new_image_like(a.labels.astype(np.float32)) for a in atlases]
    # antspy writes one probability image per label; without a prefix it leaves them in /tmp.
    with tempfile.TemporaryDirectory(prefix="wholebrain-jlf-") as folder:
        result = ants.joint_label_fusion(
            grid.image,
            mask,
            images,
            label_list=label_images,
            rad=config.patch_radius_vox,
            r_search=config.search_radius_vox,
            beta=config.beta,
            rho=config.rho,
            output_prefix=f"{folder}/fused_",
        )
        fused: NDArray[np.int32] = np.rint(result["segmentation"].numpy()).astype(np.int32)
    fused[~union] = 0
    return fused


def to_native(labels: NDArray[np.integer[Any]], grid: FusionGrid) -> NDArray[np.int32]:
    """Labels on the fusion grid carried back onto the target's own grid, as the network's are
    (:meth:`~wholebrain.conform.Conformed.to_native`, ``vote`` interpolation).

    Args:
        labels: (X, Y, Z) label ids on ``grid``.
        grid: the target's fusion grid.

    Returns:
        int32 label ids of the target's shape (its affine applies).

    Raises:
        ValueError: ``labels`` does not have the grid's shape.
    """
    values = np.asarray(labels)
    if values.shape != grid.shape:
        raise ValueError(f"labels of shape {values.shape} do not fit the grid {grid.shape}")
    canvas = np.zeros(grid.conformed.config.canvas_shape_vox, np.int32)
    canvas[grid.box] = values
    out: NDArray[np.int32] = grid.conformed.to_native(canvas)
    return out


def segment_by_fusion(
    target: Volume,
    atlases: Sequence[tuple[Volume, NDArray[np.integer[Any]]]],
    config: FusionConfig = FusionConfig(),
) -> NDArray[np.int32]:
    """Multi-atlas segmentation of ``target``: every atlas registered, then fused, then back.

    Args:
        target: the scan to segment.
        atlases: (atlas scan, its (X, Y, Z) label ids) pairs.
        config: grid, registration and fusion settings.

    Returns:
        (X, Y, Z) int32 label ids (those of the atlases) on ``target``'s grid.

    Raises:
        ValueError: no atlas, or atlas labels that do not fit their scan.
    """
    if not atlases:
        raise ValueError("joint label fusion needs at least one atlas")
    grid = fusion_grid(target, config)
    warped = [warp_atlas(image, labels, grid, config) for image, labels in atlases]
    return to_native(fuse(grid, warped, config), grid)
