"""Registration-based annotations: ANTs geometry, a tiny synthetic pair, the real baseline."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pytest

from conftest import blob_phantom
from wholebrain.errors import InputError
from wholebrain.io import Volume, load_image, load_labels
from wholebrain.partial.registration import (
    RegistrationConfig,
    load_ants,
    register_atlas,
    volume_to_ants,
)
from wholebrain.protocols import get_protocol, map_labels

if TYPE_CHECKING:
    from conftest import Geometry

ants = pytest.importorskip("ants", reason="needs antspyx (pip install 'wholebrain[ants]')")

# Blobs of the synthetic atlas: FIRST id -> (centre in voxels, radius in voxels, intensity).
_BLOBS = {
    10: ((14, 20, 18), 5, 180.0),  # Left-Thalamus
    49: ((26, 20, 18), 5, 140.0),  # Right-Thalamus
    17: ((14, 12, 14), 3.5, 60.0),  # Left-Hippocampus
    53: ((26, 12, 14), 3.5, 220.0),  # Right-Hippocampus
    16: ((20, 14, 10), 3.5, 250.0),  # Brain-Stem
}


def _phantom(shift_vox: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    return blob_phantom(shift_vox, _BLOBS)


def _dice(a: np.ndarray, b: np.ndarray, label_id: int) -> float:
    x, y = a == label_id, b == label_id
    return float(2 * (x & y).sum() / (x.sum() + y.sum()))


def test_volume_to_ants_keeps_the_grid(geometry: Geometry, tmp_path: Path) -> None:
    data = np.arange(np.prod(geometry.shape), dtype=np.float32).reshape(geometry.shape)
    image = volume_to_ants(Volume(data, geometry.affine))
    ants.image_write(image, str(tmp_path / "x.nii.gz"))
    written = nib.load(tmp_path / "x.nii.gz")
    np.testing.assert_allclose(written.affine, geometry.affine, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(written.dataobj), data)


def test_register_recovers_shifted_blobs_on_a_flipped_grid() -> None:
    spacing_mm = 2.0
    atlas_image, atlas_labels = _phantom((0, 0, 0))
    target_image, truth = _phantom((3, -2, 2))
    atlas = Volume(atlas_image, np.diag([spacing_mm, spacing_mm, spacing_mm, 1.0]))
    # The target is stored LAS (first axis flipped): the same world, another voxel order.
    flip = np.diag([-spacing_mm, spacing_mm, spacing_mm, 1.0])
    flip[0, 3] = spacing_mm * (target_image.shape[0] - 1)
    target = Volume(target_image[::-1].copy(), flip)

    start = time.perf_counter()
    result = register_atlas(atlas, atlas_labels, target, atlas_protocol="first")
    seconds = time.perf_counter() - start

    assert result.shape == target.shape and result.dtype == np.int32
    assert set(np.unique(result)) <= {int(i) for i in get_protocol("first").ids}
    dices = {k: _dice(result[::-1], truth, k) for k in _BLOBS}
    print(f"synthetic pair: {seconds:.1f} s, Dice {dices}")
    assert min(dices.values()) > 0.8, dices


def test_register_maps_full_protocol_labels_to_first() -> None:
    image, first = _phantom((0, 0, 0))
    full = first.copy()
    full[(image == 100.0) & (np.indices(image.shape)[0] < 20)] = 2  # Left WM: not in first
    full[(image == 100.0) & (np.indices(image.shape)[0] >= 20)] = 1028  # a cortical region
    volume = Volume(image, np.diag([2.0, 2.0, 2.0, 1.0]))
    result = register_atlas(
        volume, full, volume, config=RegistrationConfig(type_of_transform="Rigid")
    )
    assert set(np.unique(result)) == {0, *_BLOBS}


def test_register_rejects_bad_atlas_labels() -> None:
    image, labels = _phantom((0, 0, 0))
    volume = Volume(image, np.eye(4))
    with pytest.raises(ValueError, match="do not fit the atlas grid"):
        register_atlas(volume, labels[:-1], volume)
    with pytest.raises(InputError, match="expected an atlas with first structures"):
        register_atlas(volume, np.zeros_like(labels), volume)
    with pytest.raises(InputError, match="ids outside it: 7 "):
        register_atlas(volume, np.full_like(labels, 7), volume, atlas_protocol="first")


def test_missing_antspyx_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ants", None)  # makes `import ants` fail
    with pytest.raises(InputError, match=r"antspyx .* pip install 'wholebrain\[ants\]'"):
        load_ants()


@pytest.mark.shared_data
@pytest.mark.slow
def test_mindboggle_sub01_to_sub02_baseline(shared_data: Path) -> None:
    """The classic baseline: one atlas registered to a subject; FIRST-structure Dice."""
    from wholebrain.partial.run import load_atlas

    root = shared_data / "mindboggle-oasis-trt-20-dev"
    if not (root / "sub-02").is_dir():
        pytest.skip(f"needs {root}/sub-01 and sub-02")
    atlas, atlas_labels, protocol = load_atlas(
        root / "sub-01" / "t1w_brain.nii.gz",
        root / "sub-01" / "labels_dkt31_aseg.nii.gz",
        "mindboggle",
    )
    target = load_image(root / "sub-02" / "t1w_brain.nii.gz")
    truth, _ = load_atlas(
        root / "sub-02" / "t1w_brain.nii.gz",
        root / "sub-02" / "labels_dkt31_aseg.nii.gz",
        "mindboggle",
    )[1:]
    truth_first = map_labels(truth, "first", source=protocol)
    start = time.perf_counter()
    result = register_atlas(atlas, atlas_labels, target, atlas_protocol=protocol)
    seconds = time.perf_counter() - start
    first = get_protocol("first")
    dices = {lab.name: _dice(result, truth_first, lab.id) for lab in first.labels[1:]}
    mean = float(np.mean(list(dices.values())))
    print(f"\nsub-01 -> sub-02 ({RegistrationConfig().type_of_transform}): {seconds:.0f} s")
    for name, value in dices.items():
        print(f"  {name:24s} {value:.3f}")
    print(f"  {'mean':24s} {mean:.3f}")
    assert result.shape == target.shape
    assert load_labels(root / "sub-02" / "labels_dkt31_aseg.nii.gz", like=target)  # same grid
    assert mean > 0.7, dices
