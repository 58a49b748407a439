"""Device-side augmentation (wholebrain.data.augment) and the left-right label mirror."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from wholebrain.conform import ConformConfig
from wholebrain.data.augment import AugmentConfig, Augmenter, context_vox
from wholebrain.errors import InputError
from wholebrain.losses import IGNORE_INDEX
from wholebrain.protocols import available_protocols, flip_permutation, get_protocol

CANVAS = ConformConfig(canvas_shape_vox=(32, 32, 32))
OFF = AugmentConfig(
    spatial_prob=0,
    flip_prob=0,
    background_prob=0,
    bias_prob=0,
    gamma_prob=0,
    contrast_prob=0,
    resolution_prob=0,
    noise_prob=0,
)
PROTOCOLS = ("dkt-aseg", "tissue")


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _blocks(size: int = 24, batch: int = 2) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Blocky labels (4-voxel cubes of random dkt-aseg classes), image = intensity per class,
    and the intensity table: image and labels agree exactly before augmentation."""
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 99, (batch, size // 4, size // 4, size // 4))
    full = torch.from_numpy(classes).repeat_interleave(4, 1).repeat_interleave(4, 2)
    full = full.repeat_interleave(4, 3).to(torch.uint8)
    table = torch.linspace(0.05, 1.0, 99)
    image = table[full.long()][:, None]
    tissue = torch.full_like(full, IGNORE_INDEX)
    return image, torch.stack([full, tissue], 1), table


# ---------------------------------------------------------------- flip_permutation


def test_flip_permutation_swaps_left_and_right_by_name() -> None:
    protocol = get_protocol("dkt-aseg")
    perm = flip_permutation("dkt-aseg")
    for left, right in ((12, 51), (2, 41), (1035, 2035), (30, 62), (91, 92)):
        i, j = protocol.index_of(left), protocol.index_of(right)
        assert perm[i] == j and perm[j] == i
    for midline in (0, 14, 15, 16, 24, 72, 85):
        assert perm[protocol.index_of(midline)] == protocol.index_of(midline)


@pytest.mark.parametrize("name", available_protocols())
def test_flip_permutation_is_an_involution_of_every_protocol(name: str) -> None:
    perm = flip_permutation(name)
    protocol = get_protocol(name)
    assert sorted(perm.tolist()) == list(range(protocol.num_classes))
    np.testing.assert_array_equal(perm[perm], np.arange(protocol.num_classes))
    for i, j in enumerate(perm.tolist()):
        name, twin = protocol.names[i], protocol.names[j]
        if name.startswith(("Left-", "ctx-lh-")):
            assert twin == name.replace("Left-", "Right-", 1).replace("ctx-lh-", "ctx-rh-", 1)
        elif not name.startswith(("Right-", "ctx-rh-")):
            assert i == j


def test_flip_permutation_of_hemisphere_free_protocols_is_identity() -> None:
    np.testing.assert_array_equal(flip_permutation("tissue"), np.arange(4))
    aseg = get_protocol("aseg")
    assert flip_permutation("aseg")[aseg.index_of(3)] == aseg.index_of(42)


def test_flip_permutation_unknown_protocol() -> None:
    with pytest.raises(InputError, match="check the protocol name"):
        flip_permutation("nope")


# ---------------------------------------------------------------- the augmenter


def test_flip_mirrors_image_and_swaps_labels() -> None:
    image, labels, _ = _blocks()
    augment = Augmenter(replace(OFF, flip_prob=1.0), PROTOCOLS, torch.device("cpu"), CANVAS)
    out_image, out_labels = augment(image, labels, (24, 24, 24), _gen())
    torch.testing.assert_close(out_image, image.flip(2))
    perm = torch.from_numpy(flip_permutation("dkt-aseg"))
    torch.testing.assert_close(out_labels[:, 0], perm[labels[:, 0].flip(1).long()].to(torch.uint8))
    assert (out_labels[:, 1] == IGNORE_INDEX).all()  # ignore stays ignore


def test_no_augmentation_is_an_exact_centre_crop() -> None:
    image, labels, _ = _blocks(size=24)
    for config in (OFF, replace(OFF, enabled=False)):
        augment = Augmenter(config, PROTOCOLS, torch.device("cpu"), CANVAS)
        out_image, out_labels = augment(image, labels, (16, 16, 16), _gen())
        torch.testing.assert_close(out_image, image[:, :, 4:20, 4:20, 4:20])
        torch.testing.assert_close(out_labels, labels[:, :, 4:20, 4:20, 4:20])


def test_spatial_transform_keeps_image_and_labels_aligned() -> None:
    # Coordinate ramps: trilinear interpolation of a linear image is exact, so after the
    # transform the image holds the exact source coordinate of each voxel, and the nearest
    # label the rounded one: they must agree within half a voxel, everywhere.
    size, batch = 32, 2
    ramps = torch.meshgrid(*[torch.arange(size, dtype=torch.float32)] * 3, indexing="ij")
    config = replace(OFF, spatial_prob=1.0, rotation_deg=20, scaling=0.15, elastic_std_vox=1.5)
    augment = Augmenter(config, PROTOCOLS, torch.device("cpu"), CANVAS)
    for axis in range(3):
        image = ramps[axis].expand(batch, 1, size, size, size).contiguous()
        labels = torch.stack([ramps[axis], ramps[(axis + 1) % 3]]).to(torch.uint8)
        labels = labels.expand(batch, 2, size, size, size).contiguous()
        out_image, out_labels = augment(image, labels, (16, 16, 16), _gen(3))
        assert out_image.shape == (batch, 1, 16, 16, 16)
        assert out_labels.shape == (batch, 2, 16, 16, 16)
        known = out_labels[:, 0] != IGNORE_INDEX
        assert known.float().mean() > 0.9
        error = (out_image[:, 0] - out_labels[:, 0].float())[known].abs()
        assert float(error.max()) <= 0.5 + 1e-3
        moved = out_image[:, 0] - ramps[axis][8:24, 8:24, 8:24]
        assert float(moved.abs().max()) > 1  # it did move


def test_spatial_transform_ignores_what_was_not_read() -> None:
    image, labels, _ = _blocks(size=16)
    config = replace(OFF, spatial_prob=1.0, rotation_deg=45, elastic_std_vox=0)
    augment = Augmenter(config, PROTOCOLS, torch.device("cpu"), CANVAS)
    _, out_labels = augment(image, labels, (16, 16, 16), _gen(1))
    corners = out_labels[:, 0, [0, 0, -1, -1], [0, -1, 0, -1], :]
    assert (corners == IGNORE_INDEX).any()


def test_augmentation_depends_only_on_the_generator() -> None:
    image, labels, _ = _blocks(size=24)
    augment = Augmenter(AugmentConfig(), PROTOCOLS, torch.device("cpu"), CANVAS)
    a = augment(image, labels, (16, 16, 16), _gen(5))
    b = augment(image, labels, (16, 16, 16), _gen(5))
    c = augment(image, labels, (16, 16, 16), _gen(6))
    torch.testing.assert_close(a, b)
    assert not torch.equal(a[0], c[0])


def test_background_variation_paints_only_outside_the_mask() -> None:
    image = torch.zeros((1, 1, 24, 24, 24))
    image[:, :, 8:16, 8:16, 8:16] = 0.8
    labels = torch.zeros((1, 2, 24, 24, 24), dtype=torch.uint8)
    config = replace(OFF, background_prob=1.0, background_band_vox=3, background_level=(0.3, 0.3))
    augment = Augmenter(config, PROTOCOLS, torch.device("cpu"), CANVAS)
    out_image, out_labels = augment(image, labels, (24, 24, 24), _gen())
    torch.testing.assert_close(out_image[:, :, 8:16, 8:16, 8:16], image[:, :, 8:16, 8:16, 8:16])
    assert out_image[0, 0, 7, 12, 12] > 0.1  # the band just outside the mask
    assert out_image[0, 0, 0, 0, 0] < 0.1  # the floor far away stays dark
    assert torch.equal(out_labels, labels)  # labels there stay background


def test_intensity_steps_change_real_samples_only() -> None:
    image, labels, _ = _blocks(size=16)
    config = replace(
        OFF,
        bias_prob=1.0,
        gamma_prob=1.0,
        contrast_prob=1.0,
        resolution_prob=1.0,
        noise_prob=1.0,
    )
    augment = Augmenter(config, PROTOCOLS, torch.device("cpu"), CANVAS)
    out_image, out_labels = augment(image, labels, (16, 16, 16), _gen(), synthetic=[1])
    assert torch.isfinite(out_image).all()
    assert not torch.allclose(out_image[0], image[0])
    torch.testing.assert_close(out_image[1], image[1])  # synthetic: flip only (off here)
    assert torch.equal(out_labels, labels)


def test_context_covers_the_spatial_transform() -> None:
    assert context_vox(replace(OFF, spatial_prob=0), (64, 64, 64)) == (0, 0, 0)
    assert context_vox(AugmentConfig(enabled=False), (64, 64, 64)) == (0, 0, 0)
    margin = context_vox(AugmentConfig(), (64, 64, 64))[0]
    assert 10 < margin < 32


def test_augment_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="flip_prob must be in"):
        AugmentConfig(flip_prob=2)
    with pytest.raises(ValueError, match="contrast_range must be"):
        AugmentConfig(contrast_range=(1.5, 1.0))
    with pytest.raises(ValueError, match="scaling must be in"):
        AugmentConfig(scaling=1.0)
    with pytest.raises(ValueError, match="elastic_nodes must be"):
        AugmentConfig(elastic_nodes=1)
    with pytest.raises(ValueError, match="max_resolution_mm must be"):
        AugmentConfig(max_resolution_mm=0.5)
