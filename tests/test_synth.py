"""wholebrain.synth (SynthSeg-style synthetic scans) and ``wholebrain synth``.

Generator tests run on small tensors (40³-ish) on the CPU; file tests write tiny label maps to
``tmp_path`` and use a 40³ canvas. One test reads a real SynthSeg map from ../shared/data.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

from wholebrain.cli import main
from wholebrain.conform import ConformConfig
from wholebrain.data.manifest import Entry, read_manifest, write_manifest
from wholebrain.errors import InputError
from wholebrain.protocols import get_protocol
from wholebrain.protocols.importers import import_labels
from wholebrain.synth import (
    IntensityPriors,
    SynthConfig,
    SynthGenerator,
    known_label_ids,
    load_label_map,
    load_t1_priors,
    resolve_device,
)

SHAPE = (40, 44, 36)
CANVAS = ConformConfig(canvas_shape_vox=(40, 40, 40))
# Every step off: tests switch on the one they look at.
OFF = SynthConfig(
    rotation_deg=0,
    scaling=0,
    shearing=0,
    translation_mm=0,
    nonlin_std_mm=0,
    contrast="uniform",
    uniform_std_range=(0.0, 0.0),
    bias_std=0,
    gamma_std=0,
    randomise_resolution=False,
    noise_std=0,
)
STRONG_DEFORMATION = {"rotation_deg": 15.0, "scaling": 0.15, "nonlin_std_mm": 4.0}
LIA = np.array([[-1.0, 0, 0, 20], [0, 0, 1, -18], [0, -1, 0, 22], [0, 0, 0, 1]])


def head_labels(shape: tuple[int, int, int] = SHAPE, *, lesion: bool = False) -> np.ndarray:
    """A whole-head generation label map (int32): scalp, skull, CSF, two hemispheres with
    cortex, white matter, a ventricle and a thalamus each, two eyes (and a WM lesion)."""
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.array(shape, dtype=np.float32) - 1) / 2
    offset = grid - centre[:, None, None, None]

    def ellipsoid(radii: tuple[float, float, float], at: tuple[float, float, float] = (0, 0, 0)):
        return (
            ((offset - np.array(at)[:, None, None, None]) / np.array(radii)[:, None, None, None])
            ** 2
        ).sum(0) <= 1

    right = offset[0] > 0
    labels = np.zeros(shape, np.int32)
    labels[ellipsoid((19, 21, 17))] = 511  # scalp
    labels[ellipsoid((17, 19, 15))] = 515  # skull
    labels[ellipsoid((15, 17, 13))] = 24  # CSF
    labels[ellipsoid((14, 16, 12))] = np.where(right, 42, 3)[ellipsoid((14, 16, 12))]
    labels[ellipsoid((11, 13, 9))] = np.where(right, 41, 2)[ellipsoid((11, 13, 9))]
    for side, ids in ((-1, (4, 10)), (1, (43, 49))):
        labels[ellipsoid((2.5, 5, 2.5), (side * 3.5, 0, 2))] = ids[0]  # lateral ventricle
        labels[ellipsoid((2.5, 3, 2.5), (side * 3.5, -3, -3))] = ids[1]  # thalamus
        labels[ellipsoid((2.5, 2.5, 2.5), (side * 6, 18.5, -4))] = 506  # eye
    if lesion:
        labels[ellipsoid((1.5, 1.5, 1.5), (-7, 5, 3))] = 25
    return labels


def fake_priors() -> IntensityPriors:
    """T1-like priors for tests (the real ones are third-party data, not in the repo)."""
    means = np.stack([np.linspace(10, 200, 25), np.full(25, 5.0)])
    stds = np.stack([np.full(25, 6.0), np.full(25, 1.0)])
    return IntensityPriors(means=means, stds=stds)


def within_label_std(image: torch.Tensor, labels: torch.Tensor, ids: list[int]) -> list[float]:
    return [float(image[labels == i].std()) for i in ids if int((labels == i).sum()) > 1]


# --- config ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("rotation_deg", -1.0, "rotation_deg must be a finite number >= 0"),
        ("noise_std", float("nan"), "noise_std must be a finite number >= 0"),
        ("scaling", 1.0, "scaling must be < 1"),
        ("nonlin_shape_factor", 0.0, r"nonlin_shape_factor must be in \(0, 1\]"),
        ("contrast", "t2", "contrast must be one of"),
        ("uniform_fraction", 1.5, r"uniform_fraction must be in \[0, 1\]"),
        ("uniform_std_range", (5.0, 1.0), "uniform_std_range must be"),
        ("clip_max", 0.0, "clip_max must be > 0"),
        ("max_res_aniso_mm", 0.5, "max_res_iso_mm and max_res_aniso_mm must be >= 1"),
        ("prob_iso", 2.0, r"prob_iso must be in \[0, 1\]"),
        ("blur_range", 0.9, "blur_range must be >= 1"),
    ],
)
def test_config_rejects_bad_values(field: str, value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        SynthConfig(**{field: value})  # type: ignore[arg-type]


def test_config_takes_lists_from_toml() -> None:
    assert SynthConfig(uniform_mean_range=[0, 255]).uniform_mean_range == (0.0, 255.0)  # type: ignore[arg-type]


# --- the generator -----------------------------------------------------------------------------


def test_same_seed_same_output_different_seed_different() -> None:
    labels = torch.from_numpy(head_labels())[None]
    config = SynthConfig(contrast="uniform")
    first = SynthGenerator(config, seed=3)(labels)
    again = SynthGenerator(config, seed=3)(labels)
    other = SynthGenerator(config, seed=4)(labels)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    assert not torch.equal(first[0], other[0])
    generator = SynthGenerator(config, seed=0)
    explicit = [generator(labels, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(explicit[0][0], explicit[1][0])


def test_shapes_dtypes_and_range_batched() -> None:
    maps = np.stack([head_labels(), np.flip(head_labels(), 1)]).astype(np.int16)
    generator = SynthGenerator(SynthConfig(), fake_priors(), seed=1)
    images, labels = generator(torch.from_numpy(maps.copy()))
    assert images.shape == (2, 1, *SHAPE) and images.dtype == torch.float32
    assert labels.shape == (2, *SHAPE) and labels.dtype == torch.int64
    assert float(images.min()) >= 0 and float(images.max()) <= 1
    assert not torch.equal(images[0], images[1])  # each sample its own draw
    single_image, single_labels = generator(torch.from_numpy(head_labels()))  # (X, Y, Z) input
    assert single_image.shape == (1, 1, *SHAPE) and single_labels.shape == (1, *SHAPE)


def test_labels_are_aseg_ids_as_the_synthseg_importer_makes_them() -> None:
    source = head_labels(lesion=True)
    _, labels = SynthGenerator(OFF)(torch.from_numpy(source))
    expected, protocol = import_labels(source, "synthseg")
    assert protocol == "aseg"
    assert np.array_equal(labels[0].numpy(), expected)  # no deformation: exactly the importer
    aseg_ids = {label.id for label in get_protocol("aseg").labels}
    _, deformed = SynthGenerator(SynthConfig(contrast="uniform"), seed=2)(torch.from_numpy(source))
    present = set(torch.unique(deformed).tolist())
    assert present <= aseg_ids
    assert {511, 515, 24, 506, 25}.isdisjoint(present)  # head and CSF -> 0, lesion -> WM


def test_intensity_randomisation_alone_is_homogeneous_per_label() -> None:
    labels = torch.from_numpy(head_labels())
    image, out = SynthGenerator(OFF, seed=5)(labels)
    assert torch.equal(out[0], torch.from_numpy(import_labels(head_labels(), "synthseg")[0]).long())
    stds = within_label_std(image[0, 0], out[0], [2, 3, 4, 10, 41, 42, 43, 49])
    assert max(stds) < 1e-5
    assert len({round(float(image[0, 0][out[0] == i].mean()), 4) for i in (2, 3, 41, 42)}) > 1


def test_deformed_labels_stay_aligned_with_the_image() -> None:
    source = torch.from_numpy(head_labels())
    config = dataclasses.replace(OFF, **STRONG_DEFORMATION)
    image, labels = SynthGenerator(config, seed=6)(source)
    undeformed = torch.from_numpy(import_labels(head_labels(), "synthseg")[0]).long()
    assert float((labels[0] != undeformed).float().mean()) > 0.05  # it did move
    ids = [2, 3, 4, 10, 41, 42, 43, 49]
    assert max(within_label_std(image[0, 0], labels[0], ids)) < 1e-5  # one resampling for both
    # With the resolution step (blur) on, but before noise and bias: still small inside labels.
    blurred = dataclasses.replace(config, randomise_resolution=True)
    image, labels = SynthGenerator(blurred, seed=6)(source)
    means = [float(image[0, 0][labels[0] == i].mean()) for i in ids]
    within = np.mean(within_label_std(image[0, 0], labels[0], ids))
    assert within < 0.35 * np.std(means)


def test_bias_field_is_smooth_positive_and_bounded() -> None:
    config = SynthConfig(bias_std=0.5)
    generator = SynthGenerator(config, fake_priors())
    field = generator.bias_field(3, list(SHAPE), torch.Generator().manual_seed(0))
    assert field.shape == (3, 1, *SHAPE)
    assert float(field.min()) >= np.exp(-3 * 0.5) - 1e-6
    assert float(field.max()) <= np.exp(3 * 0.5) + 1e-6
    assert float(field.std()) > 0.01  # not flat
    log_field = field.log()
    steps = [log_field.diff(dim=d).abs().max() for d in (2, 3, 4)]
    assert max(float(s) for s in steps) < 0.1  # smooth: a few % per voxel at most
    # Switched off, the image is the same with and without the bias step in the config.
    labels = torch.from_numpy(head_labels())
    no_bias = SynthGenerator(dataclasses.replace(OFF, bias_std=0), seed=1)(labels)[0]
    assert torch.equal(no_bias, SynthGenerator(OFF, seed=1)(labels)[0])


def test_resolution_step_lowers_high_frequency_energy() -> None:
    def high_frequency(x: torch.Tensor) -> float:
        return sum(float(x.diff(dim=d).pow(2).mean()) for d in (2, 3, 4)) / float(x.var())

    noise = torch.rand((2, 1, *SHAPE), generator=torch.Generator().manual_seed(0))
    off = SynthGenerator(OFF)
    assert torch.equal(off.acquire(noise, torch.Generator()), noise)  # no resolution, no noise
    thick = dataclasses.replace(
        OFF, randomise_resolution=True, prob_min=0.0, prob_iso=0.0, max_res_aniso_mm=6.0
    )
    blurred = SynthGenerator(thick).acquire(noise, torch.Generator().manual_seed(1))
    assert blurred.shape == noise.shape
    assert high_frequency(blurred) < 0.5 * high_frequency(noise)


def test_resolution_draws_follow_synthseg() -> None:
    generator = SynthGenerator(SynthConfig(contrast="uniform"))
    resolution, thickness = generator.sample_resolution(2000, torch.Generator().manual_seed(0))
    assert float(resolution.min()) >= 1 and float(resolution.max()) <= 8
    assert bool((thickness >= 1).all() and (thickness <= resolution + 1e-6).all())
    coarse_axes = (resolution > 1).sum(1)
    isotropic = coarse_axes == 3
    assert 0.05 < float(isotropic.float().mean()) < 0.15  # prob_iso 0.1 (minus prob_min)
    assert bool((coarse_axes[~isotropic] <= 1).all())  # else one thick axis at most
    assert float(resolution[~isotropic].max()) > 6  # up to 8 mm slices


def test_unknown_ids_and_bad_tensors_are_refused() -> None:
    generator = SynthGenerator(OFF)
    bad = torch.from_numpy(head_labels())
    bad[0, 0, 0] = 999
    with pytest.raises(ValueError, match=r"does not know: \[999\]"):
        generator(bad)
    with pytest.raises(ValueError, match="integer tensor"):
        generator(bad.float())


def test_t1_contrast_needs_priors() -> None:
    with pytest.raises(InputError, match="T1 intensity priors"):
        SynthGenerator(SynthConfig(contrast="t1"))
    all_random = SynthGenerator(SynthConfig(contrast="t1", uniform_fraction=1.0))  # no priors
    image, _ = all_random(torch.from_numpy(head_labels()))
    assert image.shape == (1, 1, *SHAPE)


def test_t1_priors_order_the_classes() -> None:
    # Fake priors rise with the class index: WM (class 2) below cortex (3), ventricles (12) top.
    generator = SynthGenerator(dataclasses.replace(OFF, contrast="t1"), fake_priors(), seed=0)
    image, labels = generator(torch.from_numpy(head_labels()))
    mean = {i: float(image[0, 0][labels[0] == i].mean()) for i in (2, 3, 4)}
    assert mean[2] < mean[3] < mean[4]


# --- priors and label maps from files ----------------------------------------------------------


def test_load_t1_priors(tmp_path: Path) -> None:
    priors = fake_priors()
    np.save(tmp_path / "prior_means_t1.npy", priors.means)
    np.save(tmp_path / "prior_stds_t1.npy", priors.stds)
    loaded = load_t1_priors(tmp_path)
    assert np.array_equal(loaded.means, priors.means) and loaded.source == tmp_path


def test_load_t1_priors_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"prior_means_t1\.npy: expected .* no such file"):
        load_t1_priors(tmp_path)
    np.save(tmp_path / "prior_means_t1.npy", np.zeros((2, 24)))
    np.save(tmp_path / "prior_stds_t1.npy", np.zeros((2, 25)))
    with pytest.raises(InputError, match=r"means of shape \(2, 25\).*found shape \(2, 24\)"):
        load_t1_priors(tmp_path)
    (tmp_path / "prior_means_t1.npy").write_text("not numpy")
    with pytest.raises(InputError, match="unreadable file"):
        load_t1_priors(tmp_path)


def _write_map(path: Path, data: np.ndarray, affine: np.ndarray = LIA) -> Path:
    nib.save(nib.Nifti1Image(data, affine), path)
    return path


def test_load_label_map_puts_it_on_the_canvas(tmp_path: Path) -> None:
    source = head_labels()
    path = _write_map(tmp_path / "head.nii.gz", source)
    on_canvas = load_label_map(path, CANVAS)
    assert on_canvas.labels.shape == (40, 40, 40) and on_canvas.labels.dtype == torch.int32
    assert set(torch.unique(on_canvas.labels).tolist()) <= set(np.unique(source).tolist())
    assert nib.aff2axcodes(on_canvas.canvas_affine) == ("R", "A", "S")
    assert on_canvas.canvas_volume.shape == (40, 40, 40)
    # The head (scalp out to 19-21 voxels) fits the 40³ canvas nearly whole.
    assert int((on_canvas.labels > 0).sum()) > 0.9 * int((source > 0).sum())


def test_load_label_map_errors(tmp_path: Path) -> None:
    unknown = head_labels()
    unknown[:2] = 77
    with pytest.raises(InputError, match=r"found 1 unknown id.*: 77"):
        load_label_map(_write_map(tmp_path / "a.nii.gz", unknown), CANVAS)
    with pytest.raises(InputError, match="only background"):
        load_label_map(_write_map(tmp_path / "b.nii.gz", np.zeros(SHAPE, np.int16)), CANVAS)
    with pytest.raises(InputError, match=r"c\.nii\.gz"):
        load_label_map(_write_map(tmp_path / "c.nii.gz", np.full(SHAPE, 0.5, np.float32)), CANVAS)


def test_known_ids_all_import_to_aseg() -> None:
    ids = np.array(known_label_ids())
    out, protocol = import_labels(ids.reshape(1, 1, -1), "synthseg")
    assert protocol == "aseg" and ids[0] == 0 and len(set(ids.tolist())) == ids.size
    assert set(out.ravel().tolist()) <= {label.id for label in get_protocol("aseg").labels}


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda")
    with pytest.raises(InputError, match="a device cpu, cuda"):
        resolve_device("tpu:banana")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA GPU"):
            resolve_device("cuda")


# --- the command -------------------------------------------------------------------------------


def _maps(tmp_path: Path) -> list[Path]:
    folder = tmp_path / "maps"
    folder.mkdir()
    return [
        _write_map(folder / "a.nii.gz", head_labels()),
        _write_map(folder / "b.nii.gz", np.flip(head_labels(), 0).copy()),
    ]


def _synth(*args: str) -> int:
    return main(["--quiet", "synth", "--canvas", "40", "40", "40", "--device", "cpu", *args])


def test_cli_writes_skips_forces_and_fills_the_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maps = [str(p) for p in _maps(tmp_path)]
    out, manifest = tmp_path / "out", tmp_path / "out" / "manifest.csv"
    other = Entry("scan-x", tmp_path / "x.nii.gz", tmp_path / "x_seg.nii.gz", "aseg", "aseg")
    write_manifest([other], manifest)
    args = [*maps, "-o", str(out), "-n", "2", "--contrast", "uniform", "--manifest", str(manifest)]
    assert _synth(*args) == 0
    assert "4 written, 0 already there" in capsys.readouterr().out
    image_path = out / "a_synth-001_T1w.nii.gz"
    label_path = out / "b_synth-000_desc-aseg_dseg.nii.gz"
    image, labels = nib.load(image_path), nib.load(label_path)
    assert image.shape == (40, 40, 40) and image.get_data_dtype() == np.float32
    assert labels.get_data_dtype().kind in "iu"
    assert np.allclose(image.affine, load_label_map(maps[0], CANVAS).canvas_affine)
    assert set(np.unique(np.asarray(labels.dataobj)).tolist()) <= {
        label.id for label in get_protocol("aseg").labels
    }
    rows = {e.subject: e for e in read_manifest(manifest)}
    assert set(rows) == {"scan-x", "a_synth-000", "a_synth-001", "b_synth-000", "b_synth-001"}
    assert rows["a_synth-001"].image == image_path and rows["a_synth-001"].protocol == "aseg"
    assert rows["a_synth-001"].format == "aseg" and rows["a_synth-001"].split == "train"

    before = image_path.stat().st_mtime_ns
    assert _synth(*args) == 0  # everything there: skipped, manifest not duplicated
    assert "0 written, 4 already there" in capsys.readouterr().out
    assert image_path.stat().st_mtime_ns == before
    assert len(read_manifest(manifest)) == 5

    os.utime(image_path, ns=(0, 0))
    assert _synth(*args, "--force") == 0
    assert "4 written" in capsys.readouterr().out
    assert image_path.stat().st_mtime_ns != 0
    # Same seed, same sample: --force rewrote identical data.
    assert np.array_equal(np.asarray(nib.load(image_path).dataobj), np.asarray(image.dataobj))


def test_cli_t1_contrast_reads_the_priors_beside_the_maps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    maps = _maps(tmp_path)
    assert _synth(str(maps[0]), "-o", str(tmp_path / "out")) == 1
    assert "prior_means_t1.npy: expected SynthSeg's T1 intensity priors" in capsys.readouterr().err
    priors = maps[0].parent / "priors"
    priors.mkdir()
    np.save(priors / "prior_means_t1.npy", fake_priors().means)
    np.save(priors / "prior_stds_t1.npy", fake_priors().stds)
    assert _synth(str(maps[0]), "-o", str(tmp_path / "out")) == 0
    assert (tmp_path / "out" / "a_synth-000_T1w.nii.gz").is_file()


def test_cli_bad_inputs_exit_1_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.nii.gz"
    broken.write_text("not an image")
    out = str(tmp_path / "out")
    assert _synth(str(broken), "-o", out, "--contrast", "uniform") == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("wholebrain synth: error: ") and "broken.nii.gz" in err
    assert "\n" not in err and not list((tmp_path / "out").glob("*.nii.gz"))
    maps = _maps(tmp_path)
    twin = tmp_path / "a.nii.gz"
    twin.write_bytes(maps[0].read_bytes())
    assert _synth(str(maps[0]), str(twin), "-o", out, "--contrast", "uniform") == 1
    assert "distinct file names" in capsys.readouterr().err
    assert _synth(str(maps[0]), "-o", out, "-n", "0", "--contrast", "uniform") == 1
    assert "--samples of at least 1" in capsys.readouterr().err


# --- real data ---------------------------------------------------------------------------------


@pytest.mark.shared_data
def test_real_synthseg_map_gives_t1_contrast(shared_data: Path) -> None:
    folder = shared_data / "synthseg-label-maps"
    generation_labels = np.load(folder / "priors" / "generation_labels.npy")
    assert set(generation_labels.tolist()) <= set(known_label_ids())
    priors = load_t1_priors(folder / "priors")
    canvas = ConformConfig(canvas_shape_vox=(96, 112, 112), spacing_mm=2.0)  # 2 mm: fast
    label_map = load_label_map(folder / "training_seg_01.nii.gz", canvas)
    config = SynthConfig(randomise_resolution=False)
    generator = SynthGenerator(config, priors, seed=0, conform_config=canvas)
    image, labels = generator(label_map.labels)
    assert image.shape == (1, 1, 96, 112, 112)
    mean = {i: float(image[0, 0][labels[0] == i].mean()) for i in (2, 3, 4, 41, 42, 43)}
    for wm, cortex, ventricle in ((2, 3, 4), (41, 42, 43)):
        assert mean[wm] > mean[cortex] > mean[ventricle]  # T1: white > grey > CSF
    assert len(torch.unique(labels)) >= 30
    head = float((image[0, 0] > 0.1).float().mean())
    assert head > 0.2  # skull, scalp and neck are drawn, not only the brain
