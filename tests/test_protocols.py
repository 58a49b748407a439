"""Tests of wholebrain.protocols: the tables, the partial maps, index conversion."""

from __future__ import annotations

import pickle
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from wholebrain.errors import InputError
from wholebrain.protocols import (
    FULL_PROTOCOL,
    Label,
    Protocol,
    available_protocols,
    class_matrix,
    get_protocol,
    map_labels,
    partial_map,
)
from wholebrain.protocols.importers import import_labels

PARTIALS = ("aseg", "brain", "first", "tissue")
DKT31 = [i for i in range(2, 36) if i not in (4, 32, 33)]
NON_CORTICAL = [
    *(0, 2, 4, 5, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 24, 26, 28, 30),
    *(41, 43, 44, 46, 47, 49, 50, 51, 52, 53, 54, 58, 60, 62, 72, 85, 91, 92),
]
FIRST_IDS = [10, 11, 12, 13, 16, 17, 18, 26, 49, 50, 51, 52, 53, 54, 58]


def _table_text(filename: str) -> str:
    tables = resources.files("wholebrain.protocols").joinpath("tables")
    return tables.joinpath(filename).read_text("utf-8")


def _rows(filename: str) -> list[list[str]]:
    lines = [ln for ln in _table_text(filename).splitlines() if ln and not ln.startswith("#")]
    return [ln.split("\t") for ln in lines]


# --- the tables ----------------------------------------------------------------------------


def test_available_protocols_full_first() -> None:
    assert available_protocols() == (FULL_PROTOCOL, *PARTIALS)


@pytest.mark.parametrize("name", [FULL_PROTOCOL, *PARTIALS])
def test_tsv_table_well_formed(name: str) -> None:
    rows = _rows(f"{name}.tsv")
    assert rows[0] == ["id", "name", "R", "G", "B"]
    ids = [int(r[0]) for r in rows[1:]]
    names = [r[1] for r in rows[1:]]
    assert all(len(r) == 5 for r in rows[1:])
    assert ids == sorted(set(ids)) and ids[0] == 0
    assert len(set(names)) == len(names)
    assert all(n and " " not in n for n in names)
    assert all(0 <= int(c) <= 255 for r in rows[1:] for c in r[2:])


def test_class_counts() -> None:
    counts = {n: get_protocol(n).num_classes for n in available_protocols()}
    assert counts == {"dkt-aseg": 99, "aseg": 39, "brain": 2, "first": 16, "tissue": 4}


def test_full_protocol_ids() -> None:
    full = get_protocol(FULL_PROTOCOL)
    cortical = [i for i in full.ids.tolist() if i >= 1000]
    assert len(cortical) == 62
    assert cortical == [1000 + i for i in DKT31] + [2000 + i for i in DKT31]
    assert [i for i in full.ids.tolist() if i < 1000] == NON_CORTICAL
    assert full.ids.dtype == np.int32


@pytest.mark.parametrize(
    ("label_id", "name", "rgb"),
    [
        (0, "Unknown", (0, 0, 0)),
        (2, "Left-Cerebral-White-Matter", (245, 245, 245)),
        (8, "Left-Cerebellum-Cortex", (230, 148, 34)),
        (10, "Left-Thalamus", (0, 118, 14)),
        (17, "Left-Hippocampus", (220, 216, 20)),
        (52, "Right-Pallidum", (13, 48, 255)),
        (85, "Optic-Chiasm", (234, 169, 30)),
        (1035, "ctx-lh-insula", (255, 192, 32)),
        (2002, "ctx-rh-caudalanteriorcingulate", (125, 100, 160)),
    ],
)
def test_freesurfer_names_and_colours(label_id: int, name: str, rgb: tuple[int, ...]) -> None:
    assert get_protocol(FULL_PROTOCOL).label(label_id) == Label(label_id, name, rgb)


def test_left_right_twins() -> None:
    full = get_protocol(FULL_PROTOCOL)
    by_name = {lab.name: lab for lab in full.labels}
    for lab in full.labels:
        for left, right in (("Left-", "Right-"), ("ctx-lh-", "ctx-rh-")):
            if lab.name.startswith(left):
                twin = by_name[right + lab.name.removeprefix(left)]
                assert twin.rgb[1:] == lab.rgb[1:]  # FreeSurfer's Right-Pallidum differs in R


def test_aseg_rows_match_full() -> None:
    full = get_protocol(FULL_PROTOCOL)
    aseg = get_protocol("aseg")
    for lab in aseg.labels:
        if lab.id in (3, 42):
            assert lab.name.endswith("-Cerebral-Cortex")
        else:
            assert full.label(lab.id) == lab


def test_first_and_brain_tables() -> None:
    assert get_protocol("first").ids.tolist() == [0, *FIRST_IDS]
    assert get_protocol("first").label(0).name == "Other"
    assert get_protocol("tissue").names == ("background", "CSF", "GM", "WM")
    assert get_protocol("brain").names == ("background", "brain")


def test_get_protocol_unknown() -> None:
    with pytest.raises(InputError, match=r"expected one of dkt-aseg, aseg.*found 'asegg'"):
        get_protocol("asegg")


def test_get_protocol_cached() -> None:
    assert get_protocol("aseg") is get_protocol("aseg")


def test_label_unknown_id() -> None:
    with pytest.raises(KeyError, match="no label id 1033"):
        get_protocol(FULL_PROTOCOL).label(1033)
    with pytest.raises(KeyError, match="no label id -1"):
        get_protocol(FULL_PROTOCOL).index_of(-1)


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        ((Label(1, "a", (0, 0, 0)),), "first label must have id 0"),
        ((Label(0, "a", (0, 0, 0)), Label(0, "b", (0, 0, 0))), "unique and sorted"),
        ((Label(0, "a", (0, 0, 0)), Label(1, "a", (0, 0, 0))), "names must be unique"),
        ((Label(0, "a", (0, 0, 256)),), "not in 0..255"),
    ],
)
def test_protocol_validates(labels: tuple[Label, ...], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Protocol("bad", labels)


def test_protocol_too_many_labels() -> None:
    labels = tuple(Label(i, f"l{i}", (0, 0, 0)) for i in range(40000))
    with pytest.raises(ValueError, match="too many labels"):
        Protocol("huge", labels)


# --- partial maps ----------------------------------------------------------------------------


@pytest.mark.parametrize("partial", PARTIALS)
def test_every_full_label_in_one_partial_class(partial: str) -> None:
    mapping = partial_map(partial)
    full_ids = get_protocol(FULL_PROTOCOL).ids.tolist()
    assert sorted(mapping) == full_ids
    assert set(mapping.values()) == set(get_protocol(partial).ids.tolist())  # covers every class


@pytest.mark.parametrize("partial", PARTIALS)
def test_class_matrix(partial: str) -> None:
    full, part = get_protocol(FULL_PROTOCOL), get_protocol(partial)
    matrix = class_matrix(partial)
    assert matrix.shape == (part.num_classes, full.num_classes)
    assert matrix.dtype == np.float32
    np.testing.assert_array_equal(matrix.sum(axis=0), 1.0)
    assert set(np.unique(matrix).tolist()) == {0.0, 1.0}
    for full_id, part_id in partial_map(partial).items():
        assert matrix[part.index_of(part_id), full.index_of(full_id)] == 1.0
    matrix[0, 0] = 5.0  # a copy: the cached matrix is untouched
    assert class_matrix(partial)[0, 0] == 1.0


def test_partial_map_rules() -> None:
    aseg, first, brain, tissue = (partial_map(p) for p in ("aseg", "first", "brain", "tissue"))
    assert aseg[1035] == 3 and aseg[2002] == 42 and aseg[17] == 17 and aseg[0] == 0
    assert first[17] == 17 and first[2] == 0 and first[1035] == 0 and first[16] == 16
    assert brain[0] == 0 and all(v == 1 for k, v in brain.items() if k)
    assert tissue[2] == 3 and tissue[1035] == 2 and tissue[4] == 1 and tissue[0] == 0
    assert tissue[30] == tissue[62] == 2  # vessels: grey on T1w (see the TSV)
    assert [k for k, v in tissue.items() if v == 1] == [4, 5, 14, 15, 24, 43, 44, 72]
    assert partial_map(FULL_PROTOCOL) == {i: i for i in get_protocol(FULL_PROTOCOL).ids.tolist()}


def test_partial_map_is_a_copy() -> None:
    partial_map("aseg")[17] = 0
    assert partial_map("aseg")[17] == 17


def test_tissue_map_table_lists_each_full_id_once() -> None:
    rows = _rows(f"{FULL_PROTOCOL}_to_tissue.tsv")
    assert rows[0] == ["full_id", "partial_id"]
    full_ids = [int(r[0]) for r in rows[1:]]
    assert sorted(full_ids) == get_protocol(FULL_PROTOCOL).ids.tolist()


# --- index conversion and label mapping -----------------------------------------------------


@pytest.mark.parametrize("name", [FULL_PROTOCOL, *PARTIALS])
def test_to_index_from_index_round_trip(name: str) -> None:
    protocol = get_protocol(name)
    rng = np.random.default_rng(0)
    ids = rng.choice(protocol.ids, size=(17, 19, 15))
    index = protocol.to_index(ids)
    assert index.dtype == np.uint8 and index.shape == ids.shape
    assert index.max() < protocol.num_classes
    back = protocol.from_index(index)
    assert back.dtype == np.int32
    np.testing.assert_array_equal(back, ids)
    np.testing.assert_array_equal(protocol.to_index(protocol.ids), np.arange(protocol.num_classes))


def test_to_index_accepts_whole_floats() -> None:
    full = get_protocol(FULL_PROTOCOL)
    np.testing.assert_array_equal(full.to_index(np.array([0.0, 2.0, 2035.0])), [0, 1, 98])


def test_to_index_int16_for_many_classes() -> None:
    big = Protocol("big", tuple(Label(i, f"l{i}", (0, 0, 0)) for i in range(300)))
    index = big.to_index(np.array([0, 299]))
    assert index.dtype == np.int16
    np.testing.assert_array_equal(big.from_index(index), [0, 299])


def test_to_index_unknown_ids_named() -> None:
    labels = np.zeros((4, 4, 4), dtype=np.int32)
    labels[0, 0, :2] = 1033
    labels[1, 1, 1] = 630
    labels[2, 2, 2] = 5000
    labels[3, 3, 3] = -3
    with pytest.raises(
        InputError,
        match=r"^sub\.nii: expected label ids of protocol 'dkt-aseg', found ids outside it: "
        r"1033 \(2 voxels\), -3 \(1 voxel\), 630 \(1 voxel\), 5000 \(1 voxel\)",
    ):
        get_protocol(FULL_PROTOCOL).to_index(labels, source="sub.nii")


def test_to_index_names_at_most_ten_ids() -> None:
    with pytest.raises(InputError, match=r"1009 \(1 voxel\) and 2 more; convert"):
        get_protocol("aseg").to_index(np.arange(1000, 1012))


@pytest.mark.parametrize(
    ("values", "match"),
    [
        (np.array([0.0, 2.5]), r"1 voxels with non-integer values \(e\.g\. 2\.5\)"),
        (np.array([np.nan, 2.0]), "non-integer values"),
        (np.array([np.inf]), "non-integer values"),
        (np.array(["a"]), "dtype <U1"),
    ],
)
def test_to_index_rejects_non_integer(values: np.ndarray, match: str) -> None:
    with pytest.raises(InputError, match=match):
        get_protocol("brain").to_index(values, source="x.nii")


def test_to_index_bool_and_empty() -> None:
    brain = get_protocol("brain")
    np.testing.assert_array_equal(brain.to_index(np.array([True, False])), [1, 0])
    assert brain.to_index(np.zeros((0, 3), dtype=np.int32)).shape == (0, 3)


@pytest.mark.parametrize("index", [np.array([0, 4]), np.array([-1]), np.array([0.0])])
def test_from_index_out_of_range(index: np.ndarray) -> None:
    with pytest.raises(InputError, match=r"class indices 0\.\.3 of protocol 'tissue'"):
        get_protocol("tissue").from_index(index)


@pytest.mark.parametrize("partial", PARTIALS)
def test_map_labels_full_to_partial(partial: str) -> None:
    full_ids = get_protocol(FULL_PROTOCOL).ids
    mapped = map_labels(full_ids.reshape(9, 11, 1), partial)
    assert mapped.dtype == np.int32 and mapped.shape == (9, 11, 1)
    mapping = partial_map(partial)
    assert mapped.ravel().tolist() == [mapping[i] for i in full_ids.tolist()]


def test_map_labels_identity_validates() -> None:
    ids = np.array([[0, 3], [42, 17]], dtype=np.uint8)
    out = map_labels(ids, "aseg", source="aseg")
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, ids)
    with pytest.raises(InputError, match=r"protocol 'aseg', found ids outside it: 1035"):
        map_labels(np.array([1035]), "aseg", source="aseg")


@pytest.mark.parametrize(
    ("source", "target"),
    [("aseg", "tissue"), ("aseg", "first"), ("aseg", "brain"), ("tissue", "brain")],
)
def test_map_labels_between_partials_composes(source: str, target: str) -> None:
    full_ids = get_protocol(FULL_PROTOCOL).ids
    direct = map_labels(full_ids, target)
    via = map_labels(map_labels(full_ids, source), target, source=source)
    np.testing.assert_array_equal(direct, via)


@pytest.mark.parametrize(
    ("source", "target"), [("first", "brain"), ("aseg", FULL_PROTOCOL), ("tissue", "aseg")]
)
def test_map_labels_needs_coarser_target(source: str, target: str) -> None:
    with pytest.raises(InputError, match=f"coarser than '{source}'"):
        map_labels(np.zeros(3, dtype=np.int32), target, source=source)


def test_map_labels_unknown_protocol() -> None:
    with pytest.raises(InputError, match="found 'nope'"):
        map_labels(np.zeros(3, dtype=np.int32), "nope")


# --- exports ---------------------------------------------------------------------------------


def test_colour_lut_parses_like_freesurfer() -> None:
    full = get_protocol(FULL_PROTOCOL)
    entries = [ln.split() for ln in full.colour_lut().splitlines() if not ln.startswith("#")]
    assert len(entries) == full.num_classes
    for entry, lab in zip(entries, full.labels, strict=True):
        assert entry == [str(lab.id), lab.name, *map(str, lab.rgb), "0"]


def test_write_tsv_bids_dseg(tmp_path: Path) -> None:
    path = tmp_path / "sub-01_dseg.tsv"
    get_protocol("aseg").write_tsv(path)
    lines = path.read_text().splitlines()
    assert lines[0] == "index\tname\tcolor"
    assert lines[1] == "0\tUnknown\t#000000"
    assert "2\tLeft-Cerebral-White-Matter\t#f5f5f5" in lines
    assert len(lines) == 40
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


def test_write_tsv_failure_leaves_nothing(tmp_path: Path) -> None:
    target = tmp_path / "is_a_dir"
    target.mkdir()
    with pytest.raises(OSError):
        get_protocol("brain").write_tsv(target)
    assert [p.name for p in tmp_path.iterdir()] == ["is_a_dir"]


# --- importing then mapping is consistent ---------------------------------------------------


def _freesurfer_like_map() -> np.ndarray:
    """A 17x19x15 aparc.DKTatlas+aseg-like map: left hemisphere at low X, midline X = 8."""
    m = np.zeros((17, 19, 15), dtype=np.int32)
    m[1:8, 2:17, 2:13] = 1002
    m[1:8, 10:17, 2:13] = 1035
    m[9:16, 2:17, 2:13] = 2002
    m[9:16, 10:17, 2:13] = 2035
    m[2:7, 3:16, 3:12] = 2
    m[10:15, 3:16, 3:12] = 41
    m[4, 5, 5], m[12, 5, 5] = 10, 49
    m[5, 12, 6], m[11, 12, 6] = 17, 53
    m[8, 6:12, 3:8] = 16
    m[8, 12, 9] = 14
    m[1, 4, 6], m[15, 14, 6], m[1, 14, 10], m[15, 4, 4] = 1001, 2000, 3, 42  # no DKT region
    m[6, 8, 8], m[8, 14, 10:12] = 77, 251
    m[3, 10, 8], m[13, 10, 8] = 78, 79
    m[4, 9, 6], m[12, 9, 6] = 31, 63
    m[8, 3, 3], m[8, 3, 4] = 172, 177
    return m


def test_freesurfer_dkt_then_aseg_equals_freesurfer_aseg() -> None:
    fs_map = _freesurfer_like_map()
    dkt, dkt_protocol = import_labels(fs_map, "freesurfer-dkt")
    aseg, aseg_protocol = import_labels(fs_map, "freesurfer-aseg")
    assert (dkt_protocol, aseg_protocol) == (FULL_PROTOCOL, "aseg")
    np.testing.assert_array_equal(map_labels(dkt, "aseg"), aseg)
    for partial in ("tissue", "first", "brain"):
        np.testing.assert_array_equal(
            map_labels(dkt, partial), map_labels(aseg, partial, source="aseg")
        )


def test_synthseg_agrees_with_freesurfer_aseg_on_brain_labels() -> None:
    aseg_map = map_labels(_full_map(), "aseg")
    aseg_map[aseg_map == 24] = 0  # SynthSeg's 24 is all CSF: it goes to 0 (importers docstring)
    synthseg, _ = import_labels(aseg_map, "synthseg")
    freesurfer, _ = import_labels(aseg_map, "freesurfer-aseg")
    np.testing.assert_array_equal(synthseg, freesurfer)
    np.testing.assert_array_equal(synthseg, aseg_map)


def _full_map() -> np.ndarray:
    """Every dkt-aseg id, in a 9x11x1 volume."""
    return get_protocol(FULL_PROTOCOL).ids.reshape(9, 11, 1).copy()


@pytest.mark.parametrize(("fmt", "partial"), [("fsl-fast", "tissue"), ("fsl-first", "first")])
def test_fsl_import_of_mapped_full_map_is_exact(fmt: str, partial: str) -> None:
    mapped = map_labels(_full_map(), partial)
    imported, protocol = import_labels(mapped, fmt)
    assert protocol == partial
    np.testing.assert_array_equal(imported, mapped)


def test_mindboggle_then_brain_and_tissue_match_the_mask() -> None:
    m = _freesurfer_like_map()
    m[m == 2] = 0  # Mindboggle leaves cerebral white matter unlabelled
    m[m == 41] = 0
    m[m == 172], m[m == 177] = 630, 632
    mask = np.zeros(m.shape, dtype=bool)
    mask[1:16, 2:17, 2:13] = True
    dkt, _ = import_labels(m, "mindboggle", brain_mask=mask)
    np.testing.assert_array_equal(map_labels(dkt, "brain"), (mask | (m != 0)).astype(np.int32))
    tissue = map_labels(dkt, "tissue")
    assert np.all(tissue[(m == 0) & mask] == 3)  # the unlabelled brain is white matter
    np.testing.assert_array_equal(map_labels(dkt, "aseg"), import_labels(dkt, "freesurfer-aseg")[0])


def test_protocol_pickles_and_compares() -> None:
    full = get_protocol(FULL_PROTOCOL)
    copy = pickle.loads(pickle.dumps(full))
    assert copy == full and hash(copy) == hash(full)
    np.testing.assert_array_equal(copy.to_index(full.ids), np.arange(full.num_classes))
    rebuilt = Protocol(full.name, tuple(Label(lab.id, lab.name, lab.rgb) for lab in full.labels))
    assert rebuilt == full
