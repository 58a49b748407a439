"""Training subjects, the full/partial sampler and patch reading (wholebrain.data.dataset)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from training_fixtures import SPACING_MM, make_cohort
from wholebrain.conform import ConformConfig
from wholebrain.data.dataset import (
    DataConfig,
    TrainingData,
    derivation_lut,
    place_patch,
    read_region,
    step_seed,
)
from wholebrain.errors import InputError
from wholebrain.losses import IGNORE_INDEX
from wholebrain.protocols import get_protocol, map_labels

SHAPE = (16, 16, 16)
CANVAS = ConformConfig(canvas_shape_vox=SHAPE, spacing_mm=SPACING_MM)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, DataConfig]:
    """2 full training subjects, 1 val, 2 tissue subjects, cached once for the module."""
    root = tmp_path_factory.mktemp("cohort")
    manifest = make_cohort(root, shape=SHAPE)
    config = DataConfig(
        manifest=str(manifest), cache_dir=str(root / "cache"), patch_size_vox=(8, 8, 8)
    )
    TrainingData(config, CANVAS)  # builds the cache through prepare_subjects
    return root, config


def test_subjects_are_pooled_by_annotation_and_split(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    data = TrainingData(config, CANVAS, build_cache=False)
    assert [s.name for s in data.full] == ["sub-00", "sub-01"]
    assert [s.name for s in data.val] == ["sub-02"]
    assert [s.name for s in data.partial] == ["sub-03", "sub-04"]
    assert data.protocols == ("dkt-aseg", "tissue")
    assert data.pool_sizes() == {"full": 2, "partial": 2, "synth": 0}


def test_cache_is_built_when_missing(tmp_path: Path) -> None:
    manifest = make_cohort(tmp_path, full=1, partial=0, val=0, shape=SHAPE)
    config = DataConfig(manifest=str(manifest), cache_dir=str(tmp_path / "new-cache"))
    data = TrainingData(config, CANVAS)
    assert (tmp_path / "new-cache" / "sub-00" / "labels-dkt-aseg.npy").is_file()
    assert data.full[0].cached.image().shape == SHAPE


def test_simulated_partial_reduces_full_labels_with_map_labels(
    cohort: tuple[Path, DataConfig],
) -> None:
    _, config = cohort
    data = TrainingData(
        replace(config, simulate_partial="tissue", max_full_subjects=1), CANVAS, build_cache=False
    )
    assert [s.name for s in data.full] == ["sub-00"]
    reduced = next(s for s in data.partial if s.name == "sub-01")
    assert reduced.protocols == ("tissue",)
    assert not reduced.is_full
    full_index = np.asarray(reduced.cached.labels("dkt-aseg"))
    full_ids = get_protocol("dkt-aseg").from_index(full_index)
    expected = get_protocol("tissue").to_index(map_labels(full_ids, "tissue"))
    np.testing.assert_array_equal(reduced.labels("tissue", derive=False), expected)
    assert reduced.labels("dkt-aseg", derive=True) is None  # the full labels are hidden


def test_simulate_partial_needs_a_coarser_protocol(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    with pytest.raises(InputError, match="expected a partial protocol coarser than"):
        TrainingData(replace(config, simulate_partial="dkt-aseg"), CANVAS, build_cache=False)


def test_unknown_subject_filter_is_an_input_error(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    with pytest.raises(InputError, match="no subject sub-99"):
        TrainingData(replace(config, subjects=("sub-00", "sub-99")), CANVAS, build_cache=False)


def test_no_training_subject_is_an_input_error(tmp_path: Path) -> None:
    manifest = make_cohort(tmp_path, full=0, partial=0, val=1, shape=SHAPE)
    config = DataConfig(manifest=str(manifest), cache_dir=str(tmp_path / "cache"))
    with pytest.raises(InputError, match="annotated subjects in the train split"):
        TrainingData(config, CANVAS)


def test_data_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="either manifest or layout"):
        DataConfig(manifest="m.csv", layout="mindboggle", root="x")
    with pytest.raises(ValueError, match="either manifest or layout"):
        DataConfig()
    with pytest.raises(ValueError, match="needs root"):
        DataConfig(layout="mindboggle")
    with pytest.raises(ValueError, match="patch_size_vox must be 3 positive"):
        DataConfig(manifest="m.csv", patch_size_vox=(8, 8))
    with pytest.raises(ValueError, match="full_fraction must be in"):
        DataConfig(manifest="m.csv", full_fraction=1.5)
    with pytest.raises(ValueError, match="num_workers must be >= 0"):
        DataConfig(manifest="m.csv", num_workers=-1)


def test_derivation_lut_follows_map_labels() -> None:
    lut = derivation_lut("dkt-aseg", "tissue")
    assert lut is not None
    full = get_protocol("dkt-aseg")
    tissue_ids = map_labels(full.ids, "tissue")
    np.testing.assert_array_equal(
        lut[: full.num_classes], get_protocol("tissue").to_index(tissue_ids)
    )
    assert lut[IGNORE_INDEX] == IGNORE_INDEX
    assert derivation_lut("tissue", "dkt-aseg") is None  # not coarser: no derivation


# ---------------------------------------------------------------- the sampler


def test_sampler_mixes_pools_at_the_configured_ratio(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    data = TrainingData(config, CANVAS, build_cache=False, seed=3)
    shares = {"full": 0.25, "partial": 0.75}
    pools = [s.pool for step in range(500) for s in data.plan(step, shares, batch_size=2)]
    assert abs(pools.count("full") / len(pools) - 0.25) < 0.04
    indices = {
        (s.pool, s.index) for step in range(50) for s in data.plan(step, shares, batch_size=2)
    }
    assert indices == {("full", 0), ("full", 1), ("partial", 0), ("partial", 1)}


def test_sampler_depends_only_on_seed_and_step(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    shares = {"full": 0.5, "partial": 0.5}
    a = TrainingData(config, CANVAS, build_cache=False, seed=1)
    b = TrainingData(config, CANVAS, build_cache=False, seed=1)
    assert [a.plan(s, shares, batch_size=2) for s in (7, 3, 7)] == [
        b.plan(s, shares, batch_size=2) for s in (7, 3, 7)
    ]
    assert a.plan(7, shares, batch_size=2) != a.plan(8, shares, batch_size=2)
    other = TrainingData(config, CANVAS, build_cache=False, seed=2)
    assert other.plan(7, shares, batch_size=2) != a.plan(7, shares, batch_size=2)
    assert step_seed(1, 7, 0) != step_seed(1, 7, 1)


def test_sampler_shares_one_global_batch_among_ranks(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    data = TrainingData(config, CANVAS, build_cache=False)
    shares = {"full": 0.5, "partial": 0.5}
    whole = data.plan(5, shares, batch_size=4, world_size=1)
    ranks = [data.plan(5, shares, batch_size=2, rank=r, world_size=2) for r in (0, 1)]
    assert ranks[0] == whole[0::2] and ranks[1] == whole[1::2]


def test_sampler_without_a_pool_to_draw_from_fails(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    data = TrainingData(config, CANVAS, build_cache=False)
    with pytest.raises(ValueError, match="pool 'synth' is empty"):
        data.plan(0, {"synth": 1.0}, batch_size=1)
    with pytest.raises(ValueError, match="no pool to draw from"):
        data.plan(0, {"full": 0.0}, batch_size=1)


# ---------------------------------------------------------------- reading patches


def test_load_gives_targets_per_protocol_with_ignore(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    data = TrainingData(replace(config, patch_size_vox=()), CANVAS, build_cache=False)
    shares = {"full": 0.5, "partial": 0.5}
    plans = (data.plan(step, shares, batch_size=2) for step in range(100))
    slots = next(p for p in plans if {x.pool for x in p} == {"full", "partial"})
    batch = data.load(slots, ("dkt-aseg", "tissue"), derive=True)
    assert batch.image.shape == (2, 1, *SHAPE) and batch.labels.shape == (2, 2, *SHAPE)
    for i, slot in enumerate(slots):
        subject = (data.full if slot.pool == "full" else data.partial)[slot.index]
        full_target, tissue_target = batch.labels[i].numpy()
        np.testing.assert_array_equal(tissue_target, subject.labels("tissue", derive=True))
        if slot.pool == "full":
            np.testing.assert_array_equal(full_target, subject.cached.labels("dkt-aseg"))
        else:
            assert (full_target == IGNORE_INDEX).all()
    underived = data.load(slots, ("dkt-aseg", "tissue"), derive=False)
    full_slot = next(i for i, s in enumerate(slots) if s.pool == "full")
    assert (underived.labels[full_slot, 1] == IGNORE_INDEX).all()


def test_foreground_biased_patches_hold_labelled_voxels(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    patch = replace(config, patch_size_vox=(4, 4, 4), foreground_fraction=1.0)
    data = TrainingData(patch, CANVAS, build_cache=False)
    for step in range(40):
        batch = data.load(data.plan(step, {"full": 1.0}, batch_size=2), ("dkt-aseg",))
        assert batch.labels.shape == (2, 1, 4, 4, 4)
        assert all(bool((batch.labels[i] > 0).any()) for i in range(2))
    index = data.foreground_index(data.full[0])
    assert sorted(index) == sorted(
        int(c) for c in np.unique(data.full[0].cached.labels("dkt-aseg")) if c != 0
    )


def test_context_is_read_around_the_patch(cohort: tuple[Path, DataConfig]) -> None:
    _, config = cohort
    data = TrainingData(config, CANVAS, build_cache=False)
    slots = data.plan(0, {"full": 1.0}, batch_size=1)
    plain = data.load(slots, ("dkt-aseg",))
    wide = data.load(slots, ("dkt-aseg",), context_vox=(2, 3, 1))
    assert wide.image.shape == (1, 1, 12, 14, 10)
    np.testing.assert_array_equal(wide.image[0, 0, 2:-2, 3:-3, 1:-1], plain.image[0, 0])


def test_read_region_pads_outside_the_array() -> None:
    array = np.arange(27).reshape(3, 3, 3)
    out = read_region(array, (-1, 0, 2), (3, 2, 2), fill=-7)
    assert out.shape == (3, 2, 2)
    assert (out[0] == -7).all() and (out[:, :, 1] == -7).all()
    np.testing.assert_array_equal(out[1:, :, 0], array[:2, :2, 2])
    assert (read_region(array, (5, 5, 5), (2, 2, 2), fill=1) == 1).all()


def test_place_patch_stays_inside_or_centres_when_larger() -> None:
    assert place_patch((0, 15, 8), (8, 8, 8), (16, 16, 16)) == [0, 8, 4]
    assert place_patch((3, 3, 3), (20, 16, 8), (16, 16, 16)) == [-2, 0, 0]


# ---------------------------------------------------------------- synthetic scans


def test_synthetic_source_needs_label_maps(tmp_path: Path) -> None:
    from wholebrain.data.synthetic import SynthDataConfig, SynthSource

    config = SynthDataConfig(enabled=True, label_maps=str(tmp_path / "none"))
    with pytest.raises(InputError, match="found no such folder"):
        SynthSource(config, CANVAS, tmp_path / "cache", torch.device("cpu"))
    with pytest.raises(ValueError, match="need label_maps"):
        SynthDataConfig(enabled=True)


@pytest.mark.shared_data
def test_synthetic_slots_are_drawn_with_aseg_targets(
    shared_data: Path, cohort: tuple[Path, DataConfig], tmp_path: Path
) -> None:
    from wholebrain.data.synthetic import SynthDataConfig, SynthSource

    canvas = ConformConfig(canvas_shape_vox=(40, 48, 40), spacing_mm=4.0)
    config = SynthDataConfig(
        enabled=True, label_maps=str(shared_data / "synthseg-label-maps"), max_maps=1
    )
    source = SynthSource(config, canvas, tmp_path, torch.device("cpu"))
    assert len(source) == 1 and len(list((tmp_path / "synth").glob("*.npy"))) == 1
    _, data_config = cohort
    data = TrainingData(replace(data_config, patch_size_vox=(16, 16, 16)), canvas)
    data.synth_maps = len(source)
    slots = data.plan(0, {"synth": 1.0}, batch_size=2)
    protocols = ("dkt-aseg", "aseg", "tissue")
    batch = data.load(slots, protocols, context_vox=(2, 2, 2))
    assert (batch.labels == IGNORE_INDEX).all()  # filled on the device, not here
    image, labels = batch.image.clone(), batch.labels.clone()
    source.fill(
        batch,
        image,
        labels,
        patch_size_vox=(16, 16, 16),
        context_vox=(2, 2, 2),
        foreground_fraction=1.0,
        gen=torch.Generator().manual_seed(0),
        derive=True,
    )
    assert image.shape == (2, 1, 20, 20, 20) and 0 <= float(image.min()) <= float(image.max()) <= 1
    assert (labels[:, 0] == IGNORE_INDEX).all()  # no full labels in a synthetic scan
    aseg = labels[:, 1]
    assert bool((aseg > 0).any()) and int(aseg.max()) < get_protocol("aseg").num_classes
    lut = torch.from_numpy(derivation_lut("aseg", "tissue").astype(np.int64))  # type: ignore[union-attr]
    torch.testing.assert_close(labels[:, 2], lut[aseg.long()].to(torch.uint8))
    again = SynthSource(config, canvas, tmp_path, torch.device("cpu"), build_cache=False)
    assert torch.equal(again.maps, source.maps)  # read back from the cache
