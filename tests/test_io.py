"""wholebrain.io: every input rule, saving round trips, atomic outputs, inspect()."""

from __future__ import annotations

import gzip
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import nibabel as nib
import numpy as np
import pytest

from wholebrain import io
from wholebrain.errors import InputError, OutputExistsError

if TYPE_CHECKING:
    from conftest import Geometry

WriteImage = Callable[..., Path]
MakePhantom = Callable[[str], tuple[np.ndarray, np.ndarray]]

SHAPE = (16, 16, 16)  # with the default 2 mm voxels: 32 mm, the smallest field of view allowed


def t1(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    """Non-constant float32 intensities."""
    return np.random.default_rng(seed).uniform(10, 100, shape).astype(np.float32)


def labels(shape: tuple[int, ...] = SHAPE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5, shape).astype(np.int16)


@pytest.fixture
def good(write_image: WriteImage) -> Path:
    return write_image(t1())


# --------------------------------------------------------------------------- the file itself


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.nii\.gz: expected an image file, found no such"):
        io.load_image(tmp_path / "nope.nii.gz")


def test_missing_file_suggests_the_other_suffix(good: Path) -> None:
    with pytest.raises(InputError, match=r"no such file \(but there is t1\.nii\.gz\)"):
        io.load_image(good.with_name("t1.nii"))


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"the folder .* does not exist either"):
        io.load_image(tmp_path / "nowhere" / "t1.nii.gz")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="found a folder; give the image file inside it"):
        io.load_image(tmp_path)


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "t1.img"
    path.write_bytes(b"\0" * 400)
    with pytest.raises(InputError, match=r"\.nii, \.nii\.gz, \.mgz or \.mgh.*suffix '\.img'"):
        io.load_image(path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "t1.nii.gz"
    path.touch()
    with pytest.raises(InputError, match=r"t1\.nii\.gz: .*found an empty file \(0 bytes\)"):
        io.load_image(path)


@pytest.mark.parametrize("name", ["notes.nii", "notes.nii.gz", "notes.mgz"])
def test_text_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text("<!DOCTYPE html>\n<html>404 Not Found</html>\n")
    with pytest.raises(InputError, match="found a text file \\(starting '<!DOCTYPE html>"):
        io.load_image(path)


@pytest.mark.parametrize("name", ["t1.nii.gz", "t1.nii", "t1.mgz"])
def test_truncated_file(write_image: WriteImage, name: str) -> None:
    path = write_image(t1((40, 40, 40)), name=name)
    content = path.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(InputError, match="found a truncated file"):
        io.load_image(path)


@pytest.mark.parametrize("name", ["junk.nii", "junk.mgh", "junk.nii.gz"])
def test_random_bytes(tmp_path: Path, name: str) -> None:
    junk = np.random.default_rng(0).bytes(5000)
    path = tmp_path / name
    path.write_bytes(gzip.compress(junk) if name.endswith(".gz") else b"\0\1" + junk)
    with pytest.raises(InputError, match=r"found content nibabel cannot read .*export or download"):
        io.load_image(path)


def test_gzip_data_named_nii(good: Path) -> None:
    path = good.with_name("t1.nii")
    path.write_bytes(good.read_bytes())
    with pytest.raises(
        InputError, match=r"found gzip-compressed data; rename it to end in \.nii\.gz"
    ):
        io.load_image(path)


def test_plain_data_named_nii_gz(good: Path) -> None:
    path = good.with_name("plain.nii.gz")
    path.write_bytes(gzip.decompress(good.read_bytes()))
    with pytest.raises(InputError, match=r"found uncompressed data; rename it to end in \.nii$"):
        io.load_image(path)


def test_upper_case_suffix_is_fine(good: Path) -> None:
    path = good.with_name("T1.NII.GZ")
    path.write_bytes(good.read_bytes())
    assert io.load_image(path).shape == SHAPE


# --------------------------------------------------------------------------- shape


@pytest.mark.parametrize("shape", [(16, 16), (16, 16, 1)], ids=["2D", "one-slice"])
def test_2d_image(write_image: WriteImage, shape: tuple[int, ...]) -> None:
    path = write_image(t1(shape))
    with pytest.raises(InputError, match=r"expected a 3D image, found a 2D image \(shape 16x16"):
        io.load_image(path)


def test_4d_image_with_3_volumes(write_image: WriteImage) -> None:
    path = write_image(t1((*SHAPE, 3)))
    with pytest.raises(InputError, match=r"4D image with 3 volumes .*0 to 2.*fslroi IN OUT N 1"):
        io.load_image(path)


@pytest.mark.parametrize("shape", [(*SHAPE, 1), (*SHAPE, 1, 1)], ids=["4D", "5D"])
def test_one_volume_is_squeezed(write_image: WriteImage, shape: tuple[int, ...]) -> None:
    data = t1(shape)
    volume = io.load_image(write_image(data))
    assert volume.shape == SHAPE
    np.testing.assert_array_equal(volume.data, data.reshape(SHAPE))


def test_5d_image(write_image: WriteImage) -> None:
    path = write_image(t1((*SHAPE, 1, 2)))
    with pytest.raises(InputError, match=r"found a 5D image \(shape 16x16x16x1x2\)"):
        io.load_image(path)


# --------------------------------------------------------------------------- values


def test_nan_values(write_image: WriteImage) -> None:
    data = t1()
    data[1, 2, 3] = data[4, 5, 6] = np.nan
    data[0, 0, 0] = np.inf
    with pytest.raises(InputError, match="found 2 NaN and 1 infinite voxel values"):
        io.load_image(write_image(data))


def test_constant_image(write_image: WriteImage) -> None:
    path = write_image(np.full(SHAPE, 7, np.int16))
    with pytest.raises(InputError, match="found every voxel equal to 7; the image is blank"):
        io.load_image(path)


def test_image_data_is_float32_with_scaling_applied(tmp_path: Path) -> None:
    img = nib.Nifti1Image(labels(), np.diag([2.0, 2.0, 2.0, 1.0]), dtype=np.int16)
    img.header.set_slope_inter(0.5, 10)
    path = tmp_path / "scaled.nii.gz"
    nib.save(img, path)
    volume = io.load_image(path)
    assert volume.data.dtype == np.float32
    np.testing.assert_array_equal(volume.data, labels() * 0.5 + 10)


# --------------------------------------------------------------------------- geometry


@pytest.mark.parametrize(
    ("affine", "message"),
    [
        (np.zeros((4, 4)), "found a singular one"),
        (np.diag([2.0, 2.0, 0.0, 1.0]), r"found a singular one \(voxel size 2 x 2 x 0 mm"),
        (np.full((4, 4), np.nan), "expected a finite voxel-to-world affine, found NaN"),
    ],
    ids=["zero", "flat", "nan"],
)
def test_broken_affine(tmp_path: Path, affine: np.ndarray, message: str) -> None:
    # nibabel refuses to build an image from such an affine: write the sform rows directly.
    header = nib.Nifti1Header()
    header.set_data_shape(SHAPE)
    header.set_data_dtype(np.float32)
    header["srow_x"], header["srow_y"], header["srow_z"] = affine[:3]
    header["sform_code"] = 1
    path = tmp_path / "broken.nii.gz"
    nib.save(nib.Nifti1Image(t1(), None, header), path)
    with pytest.raises(InputError, match=message + ".*dcm2niix"):
        io.load_image(path)


@pytest.mark.parametrize(
    ("spacing", "shape", "message"),
    [
        (
            (0.1, 1.0, 1.0),
            (400, 40, 40),
            r"found 0\.1 mm along axis 0 \(R; voxel size 0\.1 x 1",
        ),
        ((2.0, 2.0, 7.0), SHAPE, r"found 7 mm along axis 2 \(S; voxel size 2 x 2 x 7 mm\)"),
    ],
    ids=["0.1mm", "7mm"],
)
def test_voxel_size_out_of_range(
    write_image: WriteImage,
    spacing: tuple[float, ...],
    shape: tuple[int, ...],
    message: str,
) -> None:
    path = write_image(t1(shape), np.diag([*spacing, 1.0]), name="t1.nii")
    with pytest.raises(InputError, match="expected voxel sizes between 0.2 and 6 mm, " + message):
        io.load_image(path)


def test_field_of_view_too_small(write_image: WriteImage) -> None:
    path = write_image(t1((16, 16, 10)), np.diag([-2.0, 2.0, 2.0, 1.0]))
    with pytest.raises(InputError, match=r"found 20 mm along axis 2 \(S; 10 voxels of 2 mm\)"):
        io.load_image(path)


def test_volume_properties(geometry: Geometry) -> None:
    volume = io.Volume(np.zeros(geometry.shape, np.float32), geometry.affine)
    assert volume.shape == geometry.shape
    assert volume.spacing_mm == pytest.approx(np.linalg.norm(geometry.affine[:3, :3], axis=0))
    assert volume.orientation == "".join(nib.aff2axcodes(geometry.affine))
    assert volume.affine.dtype == np.float64
    assert volume.name == "<in-memory volume>"


def test_volume_needs_3d_data() -> None:
    with pytest.raises(ValueError, match="must be 3D"):
        io.Volume(np.zeros((4, 4, 4, 2)), np.eye(4))
    with pytest.raises(ValueError, match=r"must be \(4, 4\)"):
        io.Volume(np.zeros((4, 4, 4)), np.eye(3))


# --------------------------------------------------------------------------- sform / qform


def test_sform_qform_disagreement_is_a_warning(
    write_image: WriteImage, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_image(t1())
    _set_qform(path, np.diag([-2.0, 2.0, 2.0, 1.0]))  # flipped left-right
    with caplog.at_level(logging.WARNING, logger="wholebrain.io"):
        volume = io.load_image(path)
    assert np.allclose(volume.affine, np.diag([2.0, 2.0, 2.0, 1.0]))  # the sform, as nibabel
    (record,) = caplog.records
    assert record.levelno == logging.WARNING
    assert str(path) in record.getMessage()
    assert "sform (code 1) and qform (code 1) disagree (orientation RAS vs LAS" in record.message
    assert "use the sform" in record.message


def test_agreeing_forms_do_not_warn(good: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="wholebrain.io"):
        io.load_image(good)
    assert not caplog.records


def test_no_forms_at_all_warns(write_image: WriteImage, caplog: pytest.LogCaptureFixture) -> None:
    path = write_image(t1(), sform_code=0, qform_code=0)
    with caplog.at_level(logging.WARNING, logger="wholebrain.io"):
        io.load_image(path)
    assert "neither sform nor qform is set" in caplog.text


# --------------------------------------------------------------------------- label maps


def test_labels_stored_as_integral_floats_become_int32(write_image: WriteImage) -> None:
    data = labels().astype(np.float32) * 1000
    volume = io.load_labels(write_image(data, name="seg.nii.gz"))
    assert volume.data.dtype == np.int32
    np.testing.assert_array_equal(volume.data, data)


def test_labels_non_integer(write_image: WriteImage) -> None:
    data = labels().astype(np.float32)
    data[3, 3, 3] = 0.5
    with pytest.raises(InputError, match=r"non-integer values such as 0\.5 \(1 voxels\)"):
        io.load_labels(write_image(data, name="seg.nii.gz"))


def test_labels_nan(write_image: WriteImage) -> None:
    data = labels().astype(np.float32)
    data[3, 3, 3] = np.nan
    with pytest.raises(InputError, match="expected integer label values, found 1 NaN"):
        io.load_labels(write_image(data, name="seg.nii.gz"))


def test_labels_beyond_int32(write_image: WriteImage) -> None:
    data = labels().astype(np.uint32)
    data[0, 0, 0] = 3_000_000_000
    with pytest.raises(InputError, match="within the 32-bit integer range"):
        io.load_labels(write_image(data, name="seg.nii.gz"))


def test_labels_follow_the_geometry_rules(write_image: WriteImage) -> None:
    with pytest.raises(InputError, match="4D image with 2 volumes"):
        io.load_labels(write_image(labels((*SHAPE, 2)), name="seg.nii.gz"))


def test_all_zero_label_map_is_accepted(write_image: WriteImage) -> None:
    volume = io.load_labels(write_image(np.zeros(SHAPE, np.uint8), name="seg.nii.gz"))
    assert volume.data.max() == 0


def test_labels_on_the_image_grid(write_image: WriteImage, geometry: Geometry) -> None:
    image = io.load_image(write_image(t1(geometry.shape), geometry.affine))
    seg = write_image(labels(geometry.shape), geometry.affine, name="seg.mgz")
    assert io.load_labels(seg, like=image).shape == image.shape


def test_labels_on_another_grid(write_image: WriteImage) -> None:
    image = io.load_image(write_image(t1()))
    seg = write_image(labels((20, 20, 20)), np.diag([1.8, 1.8, 1.8, 1]), name="seg.nii.gz")
    with pytest.raises(
        InputError,
        match=r"seg\.nii\.gz: expected the voxel grid of .*t1\.nii\.gz \(16x16x16 voxels of "
        r"2 x 2 x 2 mm, RAS\), found 20x20x20 voxels of 1\.8 x 1\.8 x 1\.8 mm, RAS; resample",
    ):
        io.load_labels(seg, like=image)


def test_labels_shifted_by_a_millimetre(write_image: WriteImage) -> None:
    image = io.load_image(write_image(t1()))
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[0, 3] = 1.0
    seg = io.Volume(labels().astype(np.int32), shifted)
    with pytest.raises(InputError, match=r"<in-memory volume>: .*but its affine differs by 1 mm"):
        io.check_same_grid(image, seg)
    shifted[0, 3] = 0.5 * io.GRID_TOL_MM  # within tolerance: the same grid
    io.check_same_grid(image, io.Volume(labels().astype(np.int32), shifted))


# --------------------------------------------------------------------------- saving


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mgz"])
def test_label_round_trip(
    write_image: WriteImage, tmp_path: Path, geometry: Geometry, suffix: str
) -> None:
    like = io.load_image(write_image(t1(geometry.shape), geometry.affine))
    data = labels(geometry.shape).astype(np.int64) * 1000 + 1002  # needs int16
    path = io.save_volume(data, like, tmp_path / f"out{suffix}")
    back = io.load_labels(path, like=like)
    np.testing.assert_array_equal(back.data, data)
    np.testing.assert_allclose(back.affine, like.affine, atol=1e-4)
    assert nib.load(path).get_data_dtype().newbyteorder("=") == np.int16


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".mgz"])
def test_image_round_trip(write_image: WriteImage, tmp_path: Path, suffix: str) -> None:
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    like = io.load_image(write_image(t1(), affine, name=f"in{suffix}"))
    data = t1(seed=3).astype(np.float64)
    back = io.load_image(io.save_volume(data, like, tmp_path / f"out{suffix}"))
    np.testing.assert_array_equal(back.data, data.astype(np.float32))
    np.testing.assert_allclose(back.affine, affine)


@pytest.mark.parametrize(
    ("low", "high", "dtype"),
    [(0, 255, np.uint8), (-1, 255, np.int16), (0, 32768, np.int32), (0, 1, np.uint8)],
)
def test_smallest_integer_type(
    good: Path, tmp_path: Path, low: int, high: int, dtype: type
) -> None:
    data = np.full(SHAPE, low, np.int64)
    data[0, 0, 0] = high
    path = io.save_volume(data, io.load_image(good), tmp_path / "seg.nii.gz")
    assert nib.load(path).get_data_dtype() == dtype
    np.testing.assert_array_equal(io.load_labels(path).data, data)


def test_bool_mask_is_saved_as_uint8(good: Path, tmp_path: Path) -> None:
    path = io.save_volume(t1() > 50, io.load_image(good), tmp_path / "mask.nii.gz")
    assert nib.load(path).get_data_dtype() == np.uint8


def test_save_keeps_the_header_and_its_codes(tmp_path: Path) -> None:
    affine = np.diag([-2.0, 2.0, 2.0, 1.0])
    img = nib.Nifti1Image(labels(seed=1), affine, dtype=np.int16)
    img.header.set_sform(affine, code=2)
    img.header.set_qform(affine, code=1)
    img.header["descrip"] = b"from the scanner"
    img.header.set_slope_inter(3.0, 1.0)  # must not apply to the labels written
    nib.save(img, tmp_path / "t1.nii.gz")
    like = io.load_image(tmp_path / "t1.nii.gz")
    np.testing.assert_array_equal(like.data, labels(seed=1) * 3.0 + 1.0)
    out = nib.load(io.save_volume(labels(), like, tmp_path / "seg.nii.gz"))
    assert (int(out.header["sform_code"]), int(out.header["qform_code"])) == (2, 1)
    assert out.header["descrip"].item() == b"from the scanner"
    assert out.header.get_intent()[0] == "label"
    np.testing.assert_array_equal(np.asarray(out.dataobj), labels())
    np.testing.assert_allclose(out.header.get_qform(), out.header.get_sform())


def test_save_mgz_from_nifti_and_nifti_from_mgz(write_image: WriteImage, tmp_path: Path) -> None:
    affine = np.diag([-2.0, -2.0, 2.0, 1.0])
    from_nifti = io.load_image(write_image(t1(), affine))
    from_mgz = io.load_image(write_image(t1(), affine, name="in.mgz"))
    for like, name in ((from_nifti, "a.mgz"), (from_mgz, "b.nii.gz")):
        back = io.load_labels(io.save_volume(labels(), like, tmp_path / name), like=like)
        np.testing.assert_array_equal(back.data, labels())
    assert int(nib.load(tmp_path / "b.nii.gz").header["sform_code"]) == 1


def test_save_in_memory_volume(tmp_path: Path, geometry: Geometry) -> None:
    like = io.Volume(np.zeros(geometry.shape, np.float32), geometry.affine)
    back = io.load_labels(io.save_volume(labels(geometry.shape), like, tmp_path / "s.nii.gz"))
    np.testing.assert_allclose(back.affine, geometry.affine, atol=1e-5)
    header = back.header
    assert (int(header["sform_code"]), int(header["qform_code"])) == (1, 1)
    assert header.get_xyzt_units() == ("mm", "sec")


def test_save_4d_probabilities(good: Path, tmp_path: Path) -> None:
    data = np.random.default_rng(0).random((*SHAPE, 3)).astype(np.float32)
    path = io.save_volume(data, io.load_image(good), tmp_path / "prob.nii.gz")
    np.testing.assert_array_equal(np.asarray(nib.load(path).dataobj), data)


def test_save_explicit_dtype(good: Path, tmp_path: Path) -> None:
    like = io.load_image(good)
    path = io.save_volume(labels(), like, tmp_path / "a.nii.gz", dtype=np.int32)
    assert nib.load(path).get_data_dtype() == np.int32
    with pytest.raises(ValueError, match="non-integer values cannot be stored exactly as uint8"):
        io.save_volume(t1(), like, tmp_path / "b.nii.gz", dtype=np.uint8)
    with pytest.raises(ValueError, match="do not fit uint8"):
        io.save_volume(labels() - 1, like, tmp_path / "c.nii.gz", dtype=np.uint8)


def test_save_rejects_a_wrong_grid_and_suffix(good: Path, tmp_path: Path) -> None:
    like = io.load_image(good)
    with pytest.raises(ValueError, match=r"does not fit the grid \(16, 16, 16\)"):
        io.save_volume(np.zeros((8, 8, 8)), like, tmp_path / "a.nii.gz")
    with pytest.raises(InputError, match=r"ending in \.nii, .*found the suffix '\.nrrd'"):
        io.save_volume(labels(), like, tmp_path / "a.nrrd")
    with pytest.raises(ValueError, match="MGH files cannot hold float64"):
        io.save_volume(t1(), like, tmp_path / "a.mgz", dtype=np.float64)
    assert list(tmp_path.iterdir()) == [good]


def test_save_refuses_to_overwrite_without_force(good: Path, tmp_path: Path) -> None:
    like = io.load_image(good)
    path = io.save_volume(labels(), like, tmp_path / "seg.nii.gz")
    with pytest.raises(OutputExistsError, match="pass --force"):
        io.save_volume(labels() + 1, like, path)
    np.testing.assert_array_equal(io.load_labels(path).data, labels())
    io.save_volume(labels() + 1, like, path, force=True)
    np.testing.assert_array_equal(io.load_labels(path).data, labels() + 1)


def test_save_over_its_own_input(good: Path) -> None:
    like = io.load_image(good)
    io.save_volume(like.data * 2, like, good, force=True)
    np.testing.assert_allclose(io.load_image(good).data, like.data * 2)


# --------------------------------------------------------------------------- atomic_output


def test_atomic_output_moves_the_file_into_place(tmp_path: Path) -> None:
    target = tmp_path / "new" / "deeper" / "sub-01_T1w.nii.gz"
    with io.atomic_output(target) as tmp:
        assert tmp.parent == target.parent
        assert tmp.name.startswith(".sub-01_T1w.tmp-")
        assert tmp.name.endswith(".nii.gz")
        assert not target.exists()
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert os.listdir(target.parent) == [target.name]


def test_atomic_output_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.tsv"
    with pytest.raises(KeyError), io.atomic_output(target) as tmp:
        tmp.write_text("half")
        raise KeyError("boom")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_keeps_the_old_file_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "table.tsv"
    target.write_text("old")
    with pytest.raises(RuntimeError), io.atomic_output(target, force=True) as tmp:
        tmp.write_text("half")
        raise RuntimeError
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_atomic_output_refuses_to_overwrite_before_running(tmp_path: Path) -> None:
    target = tmp_path / "table.tsv"
    target.write_text("old")
    ran = False
    with (
        pytest.raises(OutputExistsError, match=r"table\.tsv: .*pass --force"),
        io.atomic_output(target),
    ):
        ran = True
    assert not ran
    assert target.read_text() == "old"


def test_atomic_output_with_force_replaces(tmp_path: Path) -> None:
    target = tmp_path / "table.tsv"
    target.write_text("old")
    with io.atomic_output(target, force=True) as tmp:
        tmp.write_text("new")
    assert target.read_text() == "new"


def test_atomic_output_to_a_folder(tmp_path: Path) -> None:
    expected = "expected an output file name, found a folder"
    with pytest.raises(InputError, match=expected), io.atomic_output(tmp_path, force=True):
        pass


def test_atomic_output_block_that_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="did not write"), io.atomic_output(tmp_path / "x.txt"):
        pass
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- inspect


@pytest.mark.parametrize(
    ("kind", "expected", "reason"),
    [
        ("brain", True, "directly against a constant background"),
        ("brain-smooth", None, "surface meets the constant background directly"),
        ("head-noise", False, "no constant background"),
        ("head-clipped", False, "larger than a brain"),
    ],
)
def test_skull_stripped_guess(
    write_image: WriteImage, phantom: MakePhantom, kind: str, expected: bool | None, reason: str
) -> None:
    data, affine = phantom(kind)
    report = io.inspect(write_image(data, affine))
    assert report.ok
    assert report.looks_skull_stripped is expected
    assert reason in report.skull_strip_reason


def test_inspect_good_image(good: Path) -> None:
    report = io.inspect(good)
    assert report.verdict == "ok"
    assert report.file_format == "NIfTI-1, gzip-compressed"
    assert (report.shape, report.voxel_size_mm, report.orientation) == (SHAPE, (2, 2, 2), "RAS")
    assert (report.sform_code, report.qform_code, report.forms_agree) == (1, 1, True)
    assert report.dtype == "float32"
    assert report.robust_range is not None
    assert report.intensity_min is not None and report.intensity_max is not None
    assert report.intensity_min <= report.robust_range[0] < report.robust_range[1]
    assert report.robust_range[1] <= report.intensity_max
    text = report.to_text()
    assert text.splitlines()[0] == str(good)
    for row in ("NIfTI-1", "16 x 16 x 16", "2 x 2 x 2 mm", "1 (scanner) / 1 (scanner)", "ok"):
        assert row in text


def test_inspect_mgz_has_no_sform(write_image: WriteImage) -> None:
    report = io.inspect(write_image(t1(), name="t1.mgz"))
    assert report.ok
    assert (report.sform_code, report.qform_code) == (None, None)
    assert "none (MGH format" in report.to_text()


@pytest.mark.parametrize("bad", ["missing", "empty", "4D"])
def test_inspect_never_raises(write_image: WriteImage, tmp_path: Path, bad: str) -> None:
    if bad == "missing":
        path = tmp_path / "missing.nii.gz"
    elif bad == "empty":
        path = tmp_path / "empty.nii.gz"
        path.touch()
    else:
        path = write_image(t1((*SHAPE, 3)))
    report = io.inspect(path)
    assert not report.ok
    with pytest.raises(InputError) as error:
        io.load_image(path)
    assert report.verdict == str(error.value)
    assert "InputError" in report.debug_traceback
    assert report.to_text().splitlines()[-1].endswith(report.verdict)
    if bad == "4D":
        assert report.shape == (*SHAPE, 3)


def test_inspect_records_disagreeing_forms(write_image: WriteImage) -> None:
    path = write_image(t1())
    shifted = np.diag([2.0, 2.0, 2.0, 1.0])
    shifted[0, 3] = 5.0
    _set_qform(path, shifted)
    report = io.inspect(path)
    assert report.ok
    assert report.forms_agree is False
    (warning,) = report.warnings
    assert "disagree (up to 5 mm apart)" in warning
    assert "DISAGREE" in report.to_text()


def test_inspect_labels(write_image: WriteImage) -> None:
    report = io.inspect(write_image(labels() * 10, name="seg.nii.gz"), as_labels=True)
    assert report.ok
    assert report.n_labels == 5
    assert report.looks_skull_stripped is None
    assert "5 distinct labels" in report.to_text()
    assert "skull-stripped" not in report.to_text()


def _set_qform(path: Path, qform: np.ndarray) -> None:
    """Give a file another qform (code 1), keeping its sform."""
    img = nib.load(path)
    data = np.asarray(img.dataobj)  # read before the file is rewritten
    img.header.set_qform(qform, code=1)
    nib.save(nib.Nifti1Image(data, None, img.header), path)


# --------------------------------------------------------------------------- real data


@pytest.mark.shared_data
@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mindboggle-oasis-trt-20-dev/sub-01/t1w_brain.nii.gz", True),
        ("unlabelled-t1w/ixi002_t1w.mgz", False),
        ("unlabelled-t1w/brainchop_t1w.nii.gz", False),
        ("unlabelled-t1w/chris_t1w.nii.gz", False),
    ],
)
def test_skull_stripped_guess_on_real_scans(shared_data: Path, name: str, expected: bool) -> None:
    report = io.inspect(shared_data / name)
    assert report.ok, report.verdict
    assert report.looks_skull_stripped is expected, report.skull_strip_reason


@pytest.mark.shared_data
def test_real_labels_on_their_image(shared_data: Path) -> None:
    subject = shared_data / "mindboggle-oasis-trt-20-dev" / "sub-01"
    image = io.load_image(subject / "t1w_brain.nii.gz")
    seg = io.load_labels(subject / "labels_dkt31_aseg.nii.gz", like=image)
    assert (image.shape, image.orientation, seg.data.dtype) == ((256, 256, 160), "ASL", np.int32)
