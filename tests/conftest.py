"""Shared fixtures: tiny volumes written to ``tmp_path``, the test geometries, ../shared/data.

Every geometry here passes ``wholebrain.io``'s input rules (voxels 0.2–6 mm, at least 32 mm of
field of view along each axis), so a volume written with it loads with ``load_image``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _affine(
    spacing_mm: tuple[float, float, float],
    axes: str = "RAS",
    angles_deg: tuple[float, float, float] = (0.0, 0.0, 0.0),
    origin_mm: tuple[float, float, float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """Voxel -> RAS affine with voxel axes along ``axes`` (e.g. "LIA"), then rotated."""
    world = {"R": (0, 1), "L": (0, -1), "A": (1, 1), "P": (1, -1), "S": (2, 1), "I": (2, -1)}
    linear = np.zeros((3, 3))
    for column, (code, size) in enumerate(zip(axes, spacing_mm, strict=True)):
        row, sign = world[code]
        linear[row, column] = sign * size
    ax, ay, az = np.deg2rad(angles_deg)
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ ry @ rx @ linear
    affine[:3, 3] = origin_mm
    return affine


@dataclass(frozen=True)
class Geometry:
    """A voxel grid for tests."""

    name: str  # pytest id
    shape: tuple[int, int, int]  # voxels (X, Y, Z)
    affine: np.ndarray  # (4, 4) voxel -> RAS mm


GEOMETRIES = (
    Geometry("iso16-RAS", (16, 16, 16), _affine((2.0, 2.0, 2.0), "RAS", origin_mm=(-16, -16, -16))),
    Geometry("odd-LIA", (17, 19, 15), _affine((2.2, 2.2, 2.2), "LIA", origin_mm=(18, 20, -16))),
    Geometry("aniso-ASL", (24, 20, 12), _affine((1.4, 1.7, 3.0), "ASL", origin_mm=(-17, -17, 18))),
    Geometry(
        "oblique", (16, 18, 14), _affine((2.5, 2.5, 2.5), "RAS", (12, -20, 7), (-20, -22, -17))
    ),
)


@pytest.fixture(params=GEOMETRIES, ids=[g.name for g in GEOMETRIES])
def geometry(request: pytest.FixtureRequest) -> Geometry:
    """Each test geometry in turn: isotropic RAS, odd LIA, anisotropic ASL, oblique."""
    value: Geometry = request.param
    return value


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator, so every test sees the same 'random' data."""
    return np.random.default_rng(0)


@pytest.fixture
def write_image(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``write_image(data, affine=None, name="t1.nii.gz", sform_code=1, qform_code=1)``.

    Writes with nibabel directly (not with ``wholebrain.io``), as a user's file would be; the
    suffix picks NIfTI or MGH; ``affine`` defaults to 2 mm RAS. Returns the path.
    """

    def write(
        data: np.ndarray,
        affine: np.ndarray | None = None,
        name: str = "t1.nii.gz",
        *,
        sform_code: int = 1,
        qform_code: int = 1,
    ) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        affine = np.diag([2.0, 2.0, 2.0, 1.0]) if affine is None else affine
        if name.endswith((".mgz", ".mgh")):
            nib.save(nib.MGHImage(data, affine), path)
        else:
            # No affine to the constructor: nibabel would rewrite the forms' codes on save.
            img = nib.Nifti1Image(data, None, dtype=data.dtype)
            img.header.set_sform(affine, code=sform_code)
            img.header.set_qform(affine, code=qform_code)
            nib.save(img, path)
        return path

    return write


@pytest.fixture
def phantom() -> Callable[[str], tuple[np.ndarray, np.ndarray]]:
    """Factory: ``phantom(kind) -> (data, affine)``, float32 on an 80x96x80 grid of 2.5 mm (RAS).

    Kinds: ``"brain"`` a skull-stripped brain (ellipsoid, 1.36 L, with a white-matter core)
    on an exactly-zero background; ``"brain-smooth"`` the same blurred, as after resampling;
    ``"head-noise"`` a whole head (brain, CSF, skull, scalp: 2.9 L) in noisy air;
    ``"head-clipped"`` the same with the air set to exactly 0 (as in conformed uint8 scans).
    """

    def make(kind: str) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(1)
        shape, spacing = (80, 96, 80), 2.5
        centre = (np.array(shape) - 1) / 2
        grid = (np.indices(shape, dtype=np.float32) - centre[:, None, None, None]) * spacing

        def inside(semi_axes_mm: tuple[float, float, float]) -> np.ndarray:
            axes = np.array(semi_axes_mm, dtype=np.float32)[:, None, None, None]
            result: np.ndarray = ((grid / axes) ** 2).sum(0) <= 1
            return result

        brain = (68.0, 82.0, 58.0)
        data = np.zeros(shape, np.float32)
        if kind.startswith("head"):
            grow = [(20.0, 120.0), (13.0, 30.0), (6.0, 25.0)]  # scalp, skull, CSF: mm, intensity
            for margin, value in grow:
                data[inside((brain[0] + margin, brain[1] + margin, brain[2] + margin))] = value
        data[inside(brain)] = 70.0  # grey matter
        data[inside((48.0, 60.0, 40.0))] = 110.0  # white matter
        tissue = data > 0
        data[tissue] += rng.normal(0, 4, int(tissue.sum())).astype(np.float32)
        if kind == "brain-smooth":
            data = ndimage.gaussian_filter(data, 1.2)
        elif kind == "head-noise":
            # Rician-like air: the magnitude of complex Gaussian noise, never exactly constant.
            data = ndimage.gaussian_filter(data, 0.8)
            noise = rng.normal(0, 3, (2, *shape)).astype(np.float32)
            data = np.hypot(data + noise[0], noise[1])
        elif kind == "head-clipped":
            data = ndimage.gaussian_filter(data, 0.8)
            data[data < 2] = 0
        elif kind != "brain":
            raise ValueError(f"unknown phantom kind {kind!r}")
        affine = _affine((spacing, spacing, spacing), "RAS", origin_mm=tuple(-centre * spacing))
        return data.astype(np.float32), affine

    return make


def blob_phantom(
    shift_vox: tuple[int, int, int],
    blobs: dict[int, tuple[tuple[float, float, float], float, float]],
) -> tuple[np.ndarray, np.ndarray]:
    """(image, labels) on a 40x40x32 grid: an ellipsoid 'brain' (intensity 100) holding
    spheres ``label id -> (centre voxel, radius voxels, intensity)``, all moved by
    ``shift_vox``: atlas/target pairs for registration tests."""
    shape = (40, 40, 32)
    grid = np.indices(shape, dtype=np.float32)
    shift = np.array(shift_vox, dtype=np.float32)[:, None, None, None]
    centre = np.array([20.0, 20.0, 16.0])[:, None, None, None] + shift
    radii = np.array([16.0, 17.0, 13.0])[:, None, None, None]
    image = np.where((((grid - centre) / radii) ** 2).sum(0) <= 1, 100.0, 0.0).astype(np.float32)
    labels = np.zeros(shape, np.int32)
    for label_id, (blob_centre, radius, intensity) in blobs.items():
        offset = grid - (np.array(blob_centre)[:, None, None, None] + shift)
        where = (offset**2).sum(0) <= radius**2
        image[where] = intensity
        labels[where] = label_id
    return image, labels


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 3-level network with the shipped heads on a 48x56x48 canvas of 4 mm: it stands
    in for a trained model wherever a test is about plumbing."""
    import torch

    from wholebrain.conform import ConformConfig
    from wholebrain.model import ModelConfig, MultiHeadUNet
    from wholebrain.train.checkpoint import checkpoint_payload, save_checkpoint

    torch.manual_seed(0)
    model = MultiHeadUNet(
        ModelConfig(filters=(4, 8, 16)), {"dkt-aseg": 99, "tissue": 4, "aseg": 39}
    )
    payload = checkpoint_payload(
        model,
        kind="last",
        step=7,
        val_dice=None,
        conform=ConformConfig(canvas_shape_vox=(48, 56, 48), spacing_mm=4.0),
        train_config={},
    )
    return save_checkpoint(tmp_path_factory.mktemp("model") / "tiny.pt", payload)


@pytest.fixture
def shared_data() -> Path:
    """../shared/data beside the repository; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"needs the shared data folder {SHARED_DATA} (absent)")
    return SHARED_DATA


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Undo what ``wholebrain.cli.main`` does to logging, so caplog works in later tests.

    ``main`` gives the "wholebrain" logger its own handler and stops propagation (and routes
    warnings to logging); left in place, records would no longer reach pytest's caplog.
    """
    saved = {}
    for name in ("wholebrain", "py.warnings"):
        logger = logging.getLogger(name)
        saved[name] = (logger.handlers[:], logger.level, logger.propagate)
    yield
    for name, (handlers, level, propagate) in saved.items():
        logger = logging.getLogger(name)
        logger.handlers[:] = handlers
        logger.setLevel(level)
        logger.propagate = propagate
    logging.captureWarnings(False)
