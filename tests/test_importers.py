"""Tests of wholebrain.protocols.importers on small synthetic maps and on ../shared/data."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from wholebrain.errors import InputError
from wholebrain.protocols import FULL_PROTOCOL, available_protocols, get_protocol, map_labels
from wholebrain.protocols.importers import IMPORT_FORMATS, _nearest_seed, import_labels


def _shared_subfolder(shared_data: Path, name: str) -> Path:
    folder = shared_data / name
    if not folder.is_dir():
        pytest.skip(f"needs {folder} (absent)")
    return folder


def _two_hemispheres(
    left: int, right: int, shape: tuple[int, int, int] = (17, 19, 15)
) -> np.ndarray:
    """Left label in X < 7, right label in X > 9, nothing in between (X = 7..9)."""
    m = np.zeros(shape, dtype=np.int32)
    m[:7] = left
    m[10:] = right
    return m


def test_import_formats_targets() -> None:
    assert dict(IMPORT_FORMATS) == {
        "mindboggle": FULL_PROTOCOL,
        "freesurfer-dkt": FULL_PROTOCOL,
        "freesurfer-aseg": "aseg",
        "synthseg": "aseg",
        "fsl-fast": "tissue",
        "fsl-first": "first",
        **{name: name for name in available_protocols()},
    }


def test_unknown_format() -> None:
    with pytest.raises(InputError, match=r"^a\.nii: expected an import format \(mindboggle, "):
        import_labels(np.zeros((2, 2, 2)), "freesurfer", source="a.nii")


def test_not_3d() -> None:
    with pytest.raises(InputError, match=r"expected a 3D label map, found shape \(4, 4\)"):
        import_labels(np.zeros((4, 4)), "fsl-fast")


@pytest.mark.parametrize("spacing", [(1.0, 1.0), (1.0, 0.0, 1.0), (1.0, float("nan"), 1.0)])
def test_bad_spacing(spacing: tuple[float, float, float]) -> None:
    with pytest.raises(InputError, match="expected 3 positive voxel sizes in mm"):
        import_labels(np.zeros((2, 2, 2)), "fsl-fast", spacing_mm=spacing)


# --- mindboggle ------------------------------------------------------------------------------


def test_mindboggle_white_matter_by_hemisphere() -> None:
    m = _two_hemispheres(1002, 2002)
    m[2:5, 5:14, 4:11] = 0  # unlabelled holes inside each hemisphere
    m[12:15, 5:14, 4:11] = 0
    mask = np.zeros(m.shape, dtype=bool)
    mask[:, 1:18, 1:14] = True
    out, protocol = import_labels(m, "mindboggle", brain_mask=mask, source="mb.nii")
    assert protocol == FULL_PROTOCOL and out.dtype == np.int32
    assert np.all(out[:7][mask[:7] & (m[:7] == 0)] == 2)
    assert np.all(out[10:][mask[10:] & (m[10:] == 0)] == 41)
    assert np.all(out[~mask & (m == 0)] == 0)  # outside the brain stays background
    assert set(np.unique(out[7:10][mask[7:10]]).tolist()) == {2, 41}  # the gap is split
    np.testing.assert_array_equal(out[m != 0], m[m != 0])


def test_mindboggle_cerebellum_and_vermis() -> None:
    m = _two_hemispheres(6, 45)
    m[:3], m[14:] = 7, 46
    m[8, :, :5] = 630
    m[7, :, 5:10] = 631
    m[9, :, 10:] = 632
    out, _ = import_labels(m, "mindboggle", brain_mask=m != 0)
    assert np.all(out[3:7] == 8) and np.all(out[10:14] == 47)
    assert np.all(out[:3] == 7) and np.all(out[14:] == 46)
    assert np.all(out[7, :, 5:10] == 8)  # vermis nearer the left hemisphere
    assert np.all(out[9, :, 10:] == 47)
    assert set(np.unique(out[8, :, :5]).tolist()) <= {8, 47}
    assert not np.isin(out, [6, 45, 630, 631, 632]).any()


def test_mindboggle_midline_labels_do_not_vote() -> None:
    m = np.zeros((9, 3, 3), dtype=np.int32)
    m[0], m[8] = 8, 47
    m[3] = 630  # vermis two voxels from the left cerebellum, four from the right ...
    m[4] = 16  # ... and next to the brain-stem, which has no side
    m[5:8] = 15
    out, _ = import_labels(m, "mindboggle", brain_mask=m != 0)
    assert np.all(out[3] == 8)
    np.testing.assert_array_equal(out[4:8], m[4:8])


def test_mindboggle_stray_cortex_takes_same_hemisphere_region() -> None:
    m = np.zeros((12, 5, 5), dtype=np.int32)
    m[2] = 1005
    m[7:] = 2011
    m[5, 2, 2] = 1033  # nearer the right cortex (2 voxels) than the left (3 voxels)
    m[8, 2, 2] = 2033
    out, _ = import_labels(m, "mindboggle", brain_mask=np.zeros(m.shape, dtype=bool))
    assert out[5, 2, 2] == 1005
    assert out[8, 2, 2] == 2011
    assert np.all(out[3:5] == 0)  # no brain mask there: background stays


def test_mindboggle_artefact_74_dropped() -> None:
    m = _two_hemispheres(1002, 2002)
    m[0, 0, 0] = m[3, 3, 3] = 74
    mask = np.zeros(m.shape, dtype=bool)
    mask[3, 3, 3] = True
    out, _ = import_labels(m, "mindboggle", brain_mask=mask)
    assert out[0, 0, 0] == 0  # outside the brain: background
    assert out[3, 3, 3] == 2  # inside: unlabelled, so white matter of its hemisphere


def test_mindboggle_anisotropic_spacing_decides() -> None:
    m = np.zeros((7, 7, 1), dtype=np.int32)
    m[0, 3, 0] = 8  # 3 voxels along X from the target
    m[3, 0, 0] = 47  # 3 voxels along Y from the target
    m[3, 3, 0] = 630
    m[3, 6, 0] = 16  # a midline label so that the maps differ
    x_far, _ = import_labels(m, "mindboggle", brain_mask=m != 0, spacing_mm=(2.0, 1.0, 1.0))
    y_far, _ = import_labels(m, "mindboggle", brain_mask=m != 0, spacing_mm=(1.0, 2.0, 1.0))
    assert x_far[3, 3, 0] == 47
    assert y_far[3, 3, 0] == 8


def test_mindboggle_float_storage() -> None:
    m = _two_hemispheres(1002, 2002).astype(np.float32)
    out, _ = import_labels(m, "mindboggle", brain_mask=np.ones(m.shape, dtype=bool))
    assert out.dtype == np.int32 and set(np.unique(out).tolist()) == {2, 41, 1002, 2002}


def test_mindboggle_needs_brain_mask() -> None:
    with pytest.raises(InputError, match=r"^lab\.nii: expected a brain mask with a Mindboggle"):
        import_labels(_two_hemispheres(1002, 2002), "mindboggle", source="lab.nii")


def test_mindboggle_brain_mask_shape() -> None:
    with pytest.raises(InputError, match=r"expected a brain mask of the label map's shape"):
        import_labels(_two_hemispheres(1002, 2002), "mindboggle", brain_mask=np.ones((17, 19, 14)))


@pytest.mark.parametrize(
    ("bad_id", "match"), [(999, r"999 \(1 voxel\)"), (-1, r"-1 \(1 voxel\)"), (3000, "3000")]
)
def test_mindboggle_impossible_ids(bad_id: int, match: str) -> None:
    m = _two_hemispheres(1002, 2002)
    m[0, 0, 0] = bad_id
    with pytest.raises(InputError, match=f"^mb.nii: expected mindboggle label ids, .*{match}"):
        import_labels(m, "mindboggle", brain_mask=m != 0, source="mb.nii")


def test_mindboggle_non_integer() -> None:
    m = _two_hemispheres(1002, 2002).astype(np.float32)
    m[0, 0, 0] = 0.5
    with pytest.raises(InputError, match="non-integer values"):
        import_labels(m, "mindboggle", brain_mask=m != 0)


def test_no_hemisphere_specific_label() -> None:
    m = np.zeros((5, 5, 5), dtype=np.int32)
    m[2] = 16
    m[3] = 630
    with pytest.raises(InputError, match=r"hemisphere-specific labels .* side of 25 voxels"):
        import_labels(m, "mindboggle", brain_mask=m != 0)


# --- freesurfer ------------------------------------------------------------------------------


def test_freesurfer_dkt_rules() -> None:
    m = _two_hemispheres(2, 41)
    m[:2], m[15:] = 1003, 2003  # a cortical region on the outer faces
    m[2, 2, 2], m[14, 2, 2] = 1001, 2000  # no DKT region: nearest same-side region
    m[2, 3, 2], m[14, 3, 2] = 3, 42
    m[5, 5, 5], m[11, 5, 5] = 77, 77  # WM-hypointensities: side from neighbours
    m[8, 5:15, 5] = 251  # corpus callosum on the midline gap
    m[5, 6, 5], m[11, 6, 5] = 79, 78  # sided ids keep their side
    m[5, 7, 5], m[11, 7, 5] = 31, 63
    m[5, 8, 5], m[11, 8, 5] = 172, 177
    m[5, 9, 5], m[11, 9, 5] = 184, 183
    out, protocol = import_labels(m, "freesurfer-dkt")
    assert protocol == FULL_PROTOCOL
    assert out[2, 2, 2] == 1003 and out[14, 2, 2] == 2003
    assert out[2, 3, 2] == 1003 and out[14, 3, 2] == 2003
    assert out[5, 5, 5] == 2 and out[11, 5, 5] == 41
    assert set(np.unique(out[8, 5:15, 5]).tolist()) <= {2, 41}
    assert out[5, 6, 5] == 41 and out[11, 6, 5] == 2
    assert out[5, 7, 5] == 4 and out[11, 7, 5] == 43
    assert out[5, 8, 5] == 8 and out[11, 8, 5] == 46
    assert out[5, 9, 5] == 47 and out[11, 9, 5] == 8
    assert set(np.unique(out).tolist()) <= set(get_protocol(FULL_PROTOCOL).ids.tolist())


@pytest.mark.parametrize("bad_id", [6, 630, 1036, 136, 24000])
def test_freesurfer_dkt_impossible_ids(bad_id: int) -> None:
    m = _two_hemispheres(2, 41)
    m[0, 0, 0] = bad_id
    with pytest.raises(InputError, match=f"expected freesurfer-dkt label ids.*{bad_id}"):
        import_labels(m, "freesurfer-dkt")


def test_freesurfer_dkt_without_parcellation() -> None:
    with pytest.raises(
        InputError, match=r"cortical labels in the left hemisphere.*freesurfer-aseg"
    ):
        import_labels(_two_hemispheres(3, 2035), "freesurfer-dkt")


def test_freesurfer_aseg_rules() -> None:
    m = _two_hemispheres(1035, 2002)
    m[2:5], m[12:15] = 2, 41
    m[3, 3, 3], m[13, 3, 3] = 3, 42
    m[3, 4, 3], m[13, 4, 3] = 1000, 2033
    m[3, 5, 3], m[13, 5, 3] = 80, 80
    m[3, 6, 3], m[13, 6, 3] = 10, 49
    out, protocol = import_labels(m, "freesurfer-aseg")
    assert protocol == "aseg"
    assert np.all(out[m == 1035] == 3) and np.all(out[m == 2002] == 42)
    assert (out[3, 3, 3], out[13, 3, 3], out[3, 4, 3], out[13, 4, 3]) == (3, 42, 3, 42)
    assert (out[3, 5, 3], out[13, 5, 3]) == (2, 41)
    assert (out[3, 6, 3], out[13, 6, 3]) == (10, 49)


# --- synthseg, fsl, protocols ----------------------------------------------------------------


def test_synthseg_rules() -> None:
    m = _two_hemispheres(2, 41)
    extra = [24, 165, 257, 258, 259, 502, 506, 507, 508, 509, 511, 512, 514, 515, 516, 530]
    m[0, : len(extra), 0] = extra
    m[3, 3, :8] = [25, 136, 137, 3, 1002, 17, 30, 85]
    m[13, 3, :6] = [57, 163, 164, 42, 2035, 53]
    out, protocol = import_labels(m, "synthseg")
    assert protocol == "aseg"
    assert np.all(out[0, : len(extra), 0] == 0)
    assert out[3, 3, :8].tolist() == [2, 4, 5, 3, 3, 17, 30, 85]
    assert out[13, 3, :6].tolist() == [41, 43, 44, 42, 42, 53]


@pytest.mark.parametrize("bad_id", [6, 31, 77, 630, 1000000])
def test_synthseg_impossible_ids(bad_id: int) -> None:
    m = _two_hemispheres(2, 41)
    m[0, 0, 0] = bad_id
    with pytest.raises(InputError, match=f"^s.nii: expected synthseg label ids.*{bad_id}"):
        import_labels(m, "synthseg", source="s.nii")


def test_fsl_fast() -> None:
    m = np.arange(4, dtype=np.uint8).reshape(1, 2, 2)
    out, protocol = import_labels(m, "fsl-fast")
    assert protocol == "tissue"
    np.testing.assert_array_equal(out, m)
    with pytest.raises(InputError, match=r"fast_seg\.nii\.gz: expected fsl-fast .*4 \(1 voxel\)"):
        import_labels(m + 1, "fsl-fast", source="fast_seg.nii.gz")


def test_fsl_first() -> None:
    m = np.array([0, 10, 17, 58], dtype=np.int16).reshape(1, 2, 2)
    out, protocol = import_labels(m, "fsl-first")
    assert protocol == "first"
    np.testing.assert_array_equal(out, m)
    m[0, 0, 0] = 2
    with pytest.raises(InputError, match=r"expected fsl-first label ids.*2 \(1 voxel\)"):
        import_labels(m, "fsl-first")


@pytest.mark.parametrize("name", available_protocols())
def test_protocol_formats_validate(name: str) -> None:
    ids = get_protocol(name).ids
    out, protocol = import_labels(ids.reshape(-1, 1, 1), name)
    assert protocol == name
    np.testing.assert_array_equal(out.ravel(), ids)
    with pytest.raises(InputError, match=f"expected {name} label ids.*9999"):
        import_labels(np.full((1, 1, 1), 9999), name)


# --- nearest seed ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("density", "spacing"),
    [
        (0.002, (1.0, 1.0, 1.0)),  # the first crop is exact
        (0.002, (0.7, 1.0, 3.0)),  # a seed outside the first crop is nearer: margin doubles
        (0.0, (1.0, 1.0, 1.0)),  # no seed in the first crop
    ],
)
def test_nearest_seed_matches_full_transform(
    density: float, spacing: tuple[float, float, float]
) -> None:
    rng = np.random.default_rng(3)
    seeds = rng.random((31, 29, 23)) < density
    seeds[0, 0, 0] = seeds[30, 28, 22] = True
    targets = np.zeros(seeds.shape, dtype=bool)
    targets[14:17, 13:16, 10:13] = True
    targets &= ~seeds
    t_pos = np.nonzero(targets)
    near = _nearest_seed(seeds, t_pos, spacing)
    assert near is not None
    assert np.all(seeds[near])
    distances = ndimage.distance_transform_edt(~seeds, sampling=spacing)
    found = np.sqrt(sum(((n - t) * s) ** 2 for n, t, s in zip(near, t_pos, spacing, strict=True)))
    np.testing.assert_allclose(found, distances[t_pos])


def test_nearest_seed_without_seed() -> None:
    empty = np.zeros((3, 3, 3), dtype=bool)
    assert _nearest_seed(empty, np.nonzero(~empty), (1.0, 1.0, 1.0)) is None


# --- real data (../shared/data) --------------------------------------------------------------


def _centre_vox(mask: np.ndarray) -> np.ndarray:
    """Mean voxel coordinates of a 3D mask (from its three axis profiles: fast)."""
    centre = []
    for axis in range(3):
        profile = mask.sum(axis=tuple(a for a in range(3) if a != axis))
        centre.append(float(profile @ np.arange(profile.size)) / float(profile.sum()))
    return np.array(centre)


@pytest.mark.shared_data
def test_mindboggle_sub01_real(shared_data: Path) -> None:
    subject = _shared_subfolder(shared_data, "mindboggle-oasis-trt-20-dev") / "sub-01"
    labels_img = nib.load(subject / "labels_dkt31_aseg.nii.gz")
    brain = np.asarray(nib.load(subject / "t1w_brain.nii.gz").dataobj) > 0
    out, protocol = import_labels(
        np.asarray(labels_img.dataobj),
        "mindboggle",
        brain_mask=brain,
        spacing_mm=tuple(float(z) for z in labels_img.header.get_zooms()[:3]),
        source="sub-01",
    )
    assert protocol == FULL_PROTOCOL
    present = set(np.flatnonzero(np.bincount(out.ravel())).tolist()) | {0}
    assert present <= set(get_protocol(FULL_PROTOCOL).ids.tolist())
    assert {2, 41, 8, 47, 72}.issubset(present)
    assert not np.any((out == 0) & brain)
    # The data are ASL: left/right is the third voxel axis, so go through the affine.
    for label, sign in ((2, -1), (41, 1), (8, -1), (47, 1)):  # sign of RAS x: left is -
        x_mm = labels_img.affine[0, :3] @ _centre_vox(out == label) + labels_img.affine[0, 3]
        assert sign * x_mm > 10, (label, x_mm)
    volume_ml = {lab: float((out == lab).sum()) / 1000 for lab in (2, 41, 8, 47)}
    # sub-01: 274 / 274 ml white matter, 72 / 73 ml cerebellum cortex (vermis included)
    assert 200 < volume_ml[2] < 330 and 200 < volume_ml[41] < 330
    assert 40 < volume_ml[8] < 100 and 40 < volume_ml[47] < 100
    assert 0.9 < volume_ml[2] / volume_ml[41] < 1.1
    # The result is a valid FreeSurfer map: importing it again changes nothing.
    np.testing.assert_array_equal(import_labels(out, "freesurfer-dkt")[0], out)
    np.testing.assert_array_equal(
        import_labels(map_labels(out, "aseg"), "freesurfer-aseg")[0], map_labels(out, "aseg")
    )


@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["training_seg_01", "training_seg_02"])  # float32 / int32
def test_synthseg_training_maps_real(shared_data: Path, name: str) -> None:
    folder = _shared_subfolder(shared_data, "synthseg-label-maps")
    data = np.asarray(nib.load(folder / f"{name}.nii.gz").dataobj)
    out, protocol = import_labels(data, "synthseg", source=name)
    assert protocol == "aseg"
    present = np.flatnonzero(np.bincount(out.ravel()))
    assert set(present.tolist()) <= set(get_protocol("aseg").ids.tolist())
    assert 24 not in present
    brain_ml = float((out > 0).sum()) / 1000
    assert 800 < brain_ml < 1600  # 1095 / 1169 ml
    kept = np.isin(data, [2, 3, 17, 41, 42, 53])
    np.testing.assert_array_equal(out[kept], data[kept])
