"""Manifest, folder layouts and the conformed cache (wholebrain.data)."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from wholebrain.conform import ConformConfig
from wholebrain.data.cache import InvalidSubjectsError, open_cached, prepare_subjects
from wholebrain.data.layouts import find_subjects, split_image_name
from wholebrain.data.manifest import (
    Entry,
    assign_validation,
    read_manifest,
    subjects,
    write_manifest,
)
from wholebrain.errors import InputError, OutputExistsError

SMALL = ConformConfig(canvas_shape_vox=(48, 48, 48))
SHAPE = (40, 44, 36)


def _write(path: Path, data: np.ndarray, affine: np.ndarray | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    affine = np.diag([1.0, 1.0, 1.0, 1.0]) if affine is None else affine
    if path.suffix == ".mgz":
        nib.save(nib.MGHImage(data, affine), path)
    else:
        nib.save(nib.Nifti1Image(data, affine), path)
    return path


def _brain(shape: tuple[int, int, int] = SHAPE) -> tuple[np.ndarray, np.ndarray]:
    """A skull-stripped 'brain' ellipsoid and Mindboggle-numbered labels inside it."""
    grid = np.indices(shape).astype(np.float32)
    centre = (np.array(shape) - 1) / 2
    radius = np.array(shape) * 0.4
    inside = (((grid - centre[:, None, None, None]) / radius[:, None, None, None]) ** 2).sum(0) < 1
    rng = np.random.default_rng(0)
    image = np.where(inside, 100 + 10 * rng.standard_normal(shape), 0).astype(np.float32)
    labels = np.zeros(shape, np.float32)  # Mindboggle stores labels as float32
    left = grid[0] < centre[0]  # RAS affine: x grows to the right
    shell = inside & (
        (((grid - centre[:, None, None, None]) / (radius[:, None, None, None] - 3)) ** 2).sum(0)
        >= 1
    )
    labels[shell & left] = 1002
    labels[shell & ~left] = 2002
    core = (np.abs(grid - centre[:, None, None, None]) < 3).all(0)
    labels[core & left] = 4
    labels[core & ~left] = 43
    return image, labels


def _mindboggle_tree(root: Path, n: int = 3) -> Path:
    image, labels = _brain()
    for i in range(1, n + 1):
        _write(root / f"sub-{i:02d}" / "t1w_brain.nii.gz", image)
        _write(root / f"sub-{i:02d}" / "labels_dkt31_aseg.nii.gz", labels)
    return root


# ---------------------------------------------------------------- manifest


def test_manifest_round_trip_with_relative_paths(tmp_path: Path) -> None:
    image = _write(tmp_path / "scans" / "a.nii.gz", np.ones((4, 4, 4), np.float32))
    entries = [
        Entry("a", image, tmp_path / "scans" / "a_seg.nii.gz", "fsl-fast", "tissue", "train"),
        Entry("b", Path("/elsewhere/b.nii.gz")),
    ]
    path = write_manifest(entries, tmp_path / "manifest.csv")
    text = path.read_text().splitlines()
    assert text[0] == "subject,image,annotation,format,protocol,split"
    assert text[1].startswith("a,scans/a.nii.gz,scans/a_seg.nii.gz,fsl-fast,tissue,train")
    assert "/elsewhere/b.nii.gz" in text[2]
    back = read_manifest(path)
    assert [e.subject for e in back] == ["a", "b"]
    assert back[0].image == (tmp_path / "scans" / "a.nii.gz")
    assert back[1].annotation is None and back[1].protocol == ""


def test_manifest_refuses_overwrite_without_force(tmp_path: Path) -> None:
    path = write_manifest([Entry("a", tmp_path / "a.nii")], tmp_path / "m.csv")
    with pytest.raises(OutputExistsError, match="--force"):
        write_manifest([Entry("a", tmp_path / "a.nii")], path)
    write_manifest([Entry("b", tmp_path / "b.nii")], path, force=True)
    assert read_manifest(path)[0].subject == "b"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("subject,image\n", "no column annotation"),
        ("subject,image,annotation,format,protocol,split\n,a.nii,,,,\n", "line 2.*empty field"),
        ("subject,image,annotation,format,protocol,split\ns,a.nii,,,,later\n", "split train"),
        (
            "subject,image,annotation,format,protocol,split\ns,a.nii,l.nii,,,\n",
            "format and a protocol",
        ),
        (
            "subject,image,annotation,format,protocol,split\ns,a.nii,,,,\ns,b.nii,,,,\n",
            "one image per subject",
        ),
        (
            "subject,image,annotation,format,protocol,split\n"
            "s,a.nii,x.nii,fsl-fast,tissue,\ns,a.nii,y.nii,fsl-fast,tissue,\n",
            "at most one 'tissue' annotation",
        ),
    ],
)
def test_manifest_rejects_bad_rows(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "m.csv"
    path.write_text(content)
    with pytest.raises(InputError, match=message):
        read_manifest(path)


def test_missing_manifest(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read_manifest(tmp_path / "nope.csv")


def test_validation_split_is_seeded_and_prefers_full_annotations(tmp_path: Path) -> None:
    entries = [
        Entry(f"f{i}", tmp_path / f"f{i}.nii", tmp_path / "l.nii", "mindboggle", "dkt-aseg")
        for i in range(4)
    ]
    entries += [
        Entry(f"p{i}", tmp_path / f"p{i}.nii", tmp_path / "t.nii", "fsl-fast", "tissue")
        for i in range(6)
    ]
    a = assign_validation(entries, 2, seed=3)
    b = assign_validation(entries, 2, seed=3)
    assert a == b
    val = {e.subject for e in a if e.split == "val"}
    assert len(val) == 2 and all(s.startswith("f") for s in val)
    assert all(e.split == "train" for e in a if e.subject not in val)
    with pytest.raises(InputError, match="validation count"):
        assign_validation(entries, 4, seed=0)


# ---------------------------------------------------------------- layouts


def test_split_image_name() -> None:
    assert split_image_name(Path("sub-01_T1w.nii.gz")) == ("sub-01_T1w", ".nii.gz")
    assert split_image_name(Path("orig.mgz")) == ("orig", ".mgz")
    assert split_image_name(Path("notes.txt")) == ("", "")


def test_find_mindboggle(tmp_path: Path) -> None:
    root = _mindboggle_tree(tmp_path / "mb", n=2)
    (root / "sub-03").mkdir()
    _write(root / "sub-03" / "t1w_brain.nii.gz", np.ones((4, 4, 4), np.float32))
    entries = find_subjects("mindboggle", root)
    assert [(e.subject, e.format, e.protocol) for e in entries] == [
        ("sub-01", "mindboggle", "dkt-aseg"),
        ("sub-02", "mindboggle", "dkt-aseg"),
        ("sub-03", "", ""),
    ]


def test_find_freesurfer(tmp_path: Path) -> None:
    vol = np.ones((4, 4, 4), np.float32)
    for name in ("orig.mgz", "aparc.DKTatlas+aseg.mgz", "aseg.mgz"):
        _write(tmp_path / "bert" / "mri" / name, vol)
    for name in ("orig.mgz", "aseg.mgz"):
        _write(tmp_path / "ernie" / "mri" / name, vol)
    _write(tmp_path / "fsaverage" / "mri" / "brain.mgz", vol)  # no orig.mgz: skipped
    entries = find_subjects("freesurfer", tmp_path)
    assert [
        (e.subject, e.annotation.name if e.annotation else None, e.protocol) for e in entries
    ] == [
        ("bert", "aparc.DKTatlas+aseg.mgz", "dkt-aseg"),
        ("ernie", "aseg.mgz", "aseg"),
    ]


def test_find_fsl(tmp_path: Path) -> None:
    vol = np.ones((4, 4, 4), np.float32)
    for name in (
        "s1.nii.gz", "s1_seg.nii.gz", "s1_pveseg.nii.gz", "s1_pve_0.nii.gz",
        "s1_all_fast_firstseg.nii.gz",
        "s2.nii.gz", "s2_brain.nii.gz", "s2_brain_pveseg.nii.gz",
        "s3.nii",
    ):  # fmt: skip
        _write(tmp_path / name, vol)
    entries = find_subjects("fsl", tmp_path)
    got = {(e.subject, e.annotation.name if e.annotation else None, e.format) for e in entries}
    assert got == {
        ("s1", "s1_seg.nii.gz", "fsl-fast"),
        ("s1", "s1_all_fast_firstseg.nii.gz", "fsl-first"),
        ("s2", None, ""),
        ("s2_brain", "s2_brain_pveseg.nii.gz", "fsl-fast"),
        ("s3", None, ""),
    }


def test_find_bids(tmp_path: Path) -> None:
    vol = np.ones((4, 4, 4), np.float32)
    (tmp_path / "dataset_description.json").write_text('{"Name": "t", "BIDSVersion": "1.9.0"}')
    _write(tmp_path / "sub-01" / "anat" / "sub-01_T1w.nii.gz", vol)
    _write(tmp_path / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T1w.nii.gz", vol)
    _write(tmp_path / "sub-02" / "ses-a" / "anat" / "sub-02_ses-a_T2w.nii.gz", vol)
    deriv = tmp_path / "derivatives" / "wholebrain" / "sub-01" / "anat"
    _write(deriv / "sub-01_desc-tissue_dseg.nii.gz", vol)
    _write(deriv / "sub-01_desc-mystery_dseg.nii.gz", vol)
    entries = find_subjects("bids", tmp_path)
    assert [(e.subject, e.protocol) for e in entries] == [
        ("sub-01", "tissue"),
        ("sub-02_ses-a", ""),
    ]


def test_unknown_layout_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="layout among"):
        find_subjects("spm", tmp_path)
    with pytest.raises(InputError, match="scans in the fsl layout"):
        find_subjects("fsl", tmp_path)
    with pytest.raises(InputError, match="no such folder"):
        find_subjects("bids", tmp_path / "absent")


# ---------------------------------------------------------------- validation and cache


def test_cache_stores_conformed_subjects(tmp_path: Path) -> None:
    root = _mindboggle_tree(tmp_path / "mb", n=2)
    entries = find_subjects("mindboggle", root)
    report = prepare_subjects(entries, tmp_path / "cache", config=SMALL, progress=False)
    assert (report.checked, report.cached, report.up_to_date) == (2, 2, 0)
    cached = open_cached(tmp_path / "cache", "sub-01")
    assert cached.protocols == ("dkt-aseg",)
    image, labels = cached.image(), cached.labels("dkt-aseg")
    assert isinstance(image, np.memmap) and isinstance(labels, np.memmap)
    assert image.shape == labels.shape == SMALL.canvas_shape_vox
    assert image.dtype == np.float16
    from wholebrain.protocols import get_protocol

    ids = get_protocol("dkt-aseg").from_index(np.asarray(labels))
    # Mindboggle's unlabelled brain voxels became cerebral white matter 2/41.
    assert {0, 2, 41, 4, 43, 1002, 2002} <= set(np.unique(ids).tolist())
    assert cached.native_shape == SHAPE
    with pytest.raises(KeyError, match="no 'tissue' annotation"):
        cached.labels("tissue")
    assert not list((tmp_path / "cache").glob(".tmp-*"))


def test_cache_skips_unchanged_and_rebuilds_changed(tmp_path: Path) -> None:
    root = _mindboggle_tree(tmp_path / "mb", n=2)
    entries = find_subjects("mindboggle", root)
    prepare_subjects(entries, tmp_path / "cache", config=SMALL, progress=False)
    again = prepare_subjects(entries, tmp_path / "cache", config=SMALL, progress=False)
    assert (again.checked, again.cached, again.up_to_date) == (0, 0, 2)
    image, _ = _brain()
    _write(root / "sub-02" / "t1w_brain.nii.gz", image * 2)  # source changed
    changed = prepare_subjects(entries, tmp_path / "cache", config=SMALL, progress=False)
    assert (changed.cached, changed.up_to_date) == (1, 1)
    other = ConformConfig(canvas_shape_vox=(32, 48, 48))  # settings changed: all rebuilt
    rebuilt = prepare_subjects(entries, tmp_path / "cache", config=other, progress=False)
    assert rebuilt.cached == 2
    meta = json.loads((tmp_path / "cache" / "sub-01" / "subject.json").read_text())
    assert meta["conform"]["canvas_shape_vox"] == [32, 48, 48]


def test_all_bad_subjects_reported_at_once(tmp_path: Path) -> None:
    root = _mindboggle_tree(tmp_path / "mb", n=4)
    (root / "sub-01" / "t1w_brain.nii.gz").write_text("not an image")
    _, labels = _brain()
    _write(root / "sub-02" / "labels_dkt31_aseg.nii.gz", labels + 0.5)  # not integers
    _write(root / "sub-03" / "labels_dkt31_aseg.nii.gz", labels[:-1])  # another grid
    entries = find_subjects("mindboggle", root)
    with pytest.raises(InvalidSubjectsError) as caught:
        prepare_subjects(entries, tmp_path / "cache", config=SMALL, progress=False)
    error = caught.value
    assert error.subjects == ["sub-01", "sub-02", "sub-03"]
    text = str(error)
    assert "3 problem(s) in 4 subject(s)" in text
    assert "sub-01" in text and "sub-02" in text and "sub-03" in text
    # The good subject was still cached; the bad ones left nothing behind.
    assert open_cached(tmp_path / "cache", "sub-04").protocols == ("dkt-aseg",)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == ["sub-04"]


def test_manifest_protocol_must_match_format(tmp_path: Path) -> None:
    root = _mindboggle_tree(tmp_path / "mb", n=1)
    (entry,) = find_subjects("mindboggle", root)
    wrong = Entry(entry.subject, entry.image, entry.annotation, "mindboggle", "aseg")
    with pytest.raises(InvalidSubjectsError, match="expected protocol 'aseg'"):
        prepare_subjects([wrong], None, config=SMALL, progress=False)


def test_subjects_groups_rows() -> None:
    rows = [Entry("a", Path("a.nii")), Entry("b", Path("b.nii")), Entry("a", Path("a.nii"))]
    assert {k: len(v) for k, v in subjects(rows).items()} == {"a": 2, "b": 1}
