"""Tests of the QC picture: a real PNG, label colours where they belong, orientation, overwriting.

Panels are found through the figure :func:`~wholebrain.segment.qc._build_figure` draws (the
axes' window extents after drawing), then looked up in the PNG :func:`write_qc_png` wrote from
the same arrays, so the checks read the file's pixels rather than trust the drawing code.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path

import numpy as np
import pytest
from matplotlib.transforms import Bbox
from PIL import Image

from wholebrain.errors import OutputExistsError
from wholebrain.protocols import Protocol, get_protocol
from wholebrain.segment import qc
from wholebrain.segment.qc import _build_figure, _overlay_rgba, write_qc_png

SHAPE = (48, 56, 40)  # odd-sized (X, Y, Z) canvas: an axis mix-up changes the panel shapes
LEFT_HIPPOCAMPUS = 17
CTX_RH_INSULA = 2035
VIEWS = ("sagittal", "coronal", "axial")


@pytest.fixture(scope="module")
def protocol() -> Protocol:
    return get_protocol("dkt-aseg")


def _ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    grid = np.indices(SHAPE, dtype=np.float64)
    squared = np.zeros(SHAPE)
    for g, c in zip(grid, centre, strict=True):
        squared += (g - c) ** 2
    return squared <= radius**2


def _head() -> np.ndarray:
    """(X, Y, Z) float32 ellipsoid 'head' with a smooth gradient, zero outside."""
    grid = np.indices(SHAPE, dtype=np.float64)
    half = np.array(SHAPE, dtype=np.float64)[:, None, None, None] / 2
    r = np.sqrt((((grid - half) / (half - 3)) ** 2).sum(axis=0))
    return np.where(r < 1, 0.3 + 0.2 * (1 - r), 0.0).astype(np.float32)


@pytest.fixture
def volumes() -> tuple[np.ndarray, np.ndarray]:
    """Image and labels: Left-Hippocampus blob at small x, ctx-rh-insula blob at large x."""
    image = _head()
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[_ball((15, 28, 20), 5)] = LEFT_HIPPOCAMPUS
    labels[_ball((33, 28, 20), 5)] = CTX_RH_INSULA
    return image, labels


def _read_png(path: Path) -> np.ndarray:
    with Image.open(path) as png:
        assert png.format == "PNG"
        return np.asarray(png.convert("RGB"))


Box = tuple[int, int, int, int]  # PNG pixel rows row0:row1, columns col0:col1


def _layout(
    image: np.ndarray, labels: np.ndarray, protocol: Protocol
) -> dict[str, tuple[Box, dict[str, Box]]]:
    """Per panel ("<row> <view>"): its pixel box in the PNG and the box of each of its letters."""
    figure = _build_figure(image, labels, protocol)
    figure.canvas.draw()
    height = round(figure.get_figheight() * figure.dpi)

    def box(extent: Bbox, inset: int) -> Box:
        # Display coordinates grow upwards, PNG rows downwards.
        return (
            height - int(extent.y1) + inset,
            height - int(extent.y0) - inset,
            int(extent.x0) + inset,
            int(extent.x1) - inset,
        )

    # Panels one pixel in from each edge (no antialiased border), letters two pixels out.
    return {
        str(ax.get_label()): (
            box(ax.get_window_extent(), 1),
            {t.get_text(): box(t.get_window_extent(), -2) for t in ax.texts},
        )
        for ax in figure.axes
    }


def _panel_boxes(image: np.ndarray, labels: np.ndarray, protocol: Protocol) -> dict[str, Box]:
    return {key: panel for key, (panel, _) in _layout(image, labels, protocol).items()}


def _crop(pixels: np.ndarray, box: Box) -> np.ndarray:
    row0, row1, col0, col1 = box
    return pixels[row0:row1, col0:col1]


def _count_colour(pixels: np.ndarray, rgb: tuple[int, int, int], tol: int = 3) -> int:
    diff = np.abs(pixels.astype(np.int16) - np.array(rgb, dtype=np.int16)).max(axis=-1)
    return int(np.count_nonzero(diff <= tol))


# --- the file --------------------------------------------------------------------------------


def test_writes_a_png_of_the_expected_size(
    tmp_path: Path, volumes: tuple[np.ndarray, np.ndarray], protocol: Protocol
) -> None:
    image, labels = volumes
    out = tmp_path / "qc" / "sub-01_qc.png"
    written = write_qc_png(out, image, labels, protocol, title="sub-01 — wholebrain dkt-aseg")
    assert written == out
    pixels = _read_png(out)
    assert pixels.shape == (1000, 1500, 3)
    assert out.stat().st_size < 1_000_000
    assert [p.name for p in out.parent.iterdir()] == ["sub-01_qc.png"]  # no temporary left
    # Black background: the corners are black.
    assert pixels[:5, :5].max() == 0 and pixels[-5:, -5:].max() == 0


def test_label_colours_in_the_bottom_row_only(
    tmp_path: Path, volumes: tuple[np.ndarray, np.ndarray], protocol: Protocol
) -> None:
    image, labels = volumes
    out = write_qc_png(tmp_path / "qc.png", image, labels, protocol)
    pixels = _read_png(out)
    boxes = _panel_boxes(image, labels, protocol)
    assert sorted(boxes) == sorted(f"{row} {view}" for row in ("t1", "labels") for view in VIEWS)
    hippocampus = protocol.label(LEFT_HIPPOCAMPUS).rgb
    insula = protocol.label(CTX_RH_INSULA).rgb
    # Both blobs lie in the coronal and axial slices through the centre of the labels.
    for view in ("coronal", "axial"):
        bottom = _crop(pixels, boxes[f"labels {view}"])
        assert _count_colour(bottom, hippocampus) > 50, view
        assert _count_colour(bottom, insula) > 50, view
    for view in VIEWS:
        top = _crop(pixels, boxes[f"t1 {view}"]).astype(np.int16)
        # Grey only (white letters included): no channel differs from another.
        assert (top.max(axis=-1) - top.min(axis=-1)).max() <= 2, view
        assert _count_colour(top, hippocampus, tol=20) == 0, view


def _centre(box: Box) -> np.ndarray:
    return np.array([(box[0] + box[1]) / 2, (box[2] + box[3]) / 2])


def test_orientation_follows_the_letters(tmp_path: Path, protocol: Protocol) -> None:
    # A bright blob only at the subject's left (small x), anterior (large y), superior (large z).
    image = _head()
    blob = _ball((12, 40, 28), 4)
    image[blob] = 1.0
    labels = np.zeros(SHAPE, dtype=np.int16)
    labels[blob] = LEFT_HIPPOCAMPUS  # the slices go through the centre of the labels
    out = write_qc_png(tmp_path / "qc.png", image, labels, protocol)
    pixels = _read_png(out)
    layout = _layout(image, labels, protocol)
    # (letter the blob is near, letter across from it) horizontally, then vertically.
    expected = {
        "sagittal": ("A", "P", "S", "I"),  # seen from the left: anterior on the left
        "coronal": ("L", "R", "S", "I"),  # neurological: left on the left
        "axial": ("L", "R", "A", "P"),  # seen from above, anterior up
    }
    hippocampus = np.array(protocol.label(LEFT_HIPPOCAMPUS).rgb)
    for row in ("t1", "labels"):
        for view, (near_h, far_h, near_v, far_v) in expected.items():
            panel_box, letters = layout[f"{row} {view}"]
            assert set(letters) == {near_h, far_h, near_v, far_v}
            found = _crop(pixels, panel_box).astype(np.int16)
            if row == "t1":
                blob_mask = found.min(axis=-1) > 240  # white: the top of the grey window
                for r0, r1, c0, c1 in letters.values():  # the letters are white too
                    blob_mask[
                        max(r0 - panel_box[0], 0) : max(r1 - panel_box[0], 0),
                        max(c0 - panel_box[2], 0) : max(c1 - panel_box[2], 0),
                    ] = False
            else:
                blob_mask = np.abs(found - hippocampus).max(axis=-1) <= 3  # its outline
            rows, cols = np.nonzero(blob_mask)
            assert rows.size > 20, f"{row} {view}: blob not found"
            blob_rc = np.array([rows.mean() + panel_box[0], cols.mean() + panel_box[2]])
            where = {k: _centre(b) for k, b in letters.items()}
            for near, far, axis in ((near_h, far_h, 1), (near_v, far_v, 0)):
                to_near = abs(where[near][axis] - blob_rc[axis])
                to_far = abs(where[far][axis] - blob_rc[axis])
                assert to_near < to_far, f"{row} {view}: blob not on the {near} side"


def test_coronal_and_axial_put_the_left_on_the_left(protocol: Protocol) -> None:
    figure = _build_figure(_head(), np.zeros(SHAPE, dtype=np.int16), protocol)
    for key in ("t1 coronal", "labels axial"):
        (ax,) = [a for a in figure.axes if a.get_label() == key]
        position = {t.get_text(): t.get_position() for t in ax.texts}
        assert position["L"][0] < 0.5 < position["R"][0], key


def test_existing_file_needs_force(
    tmp_path: Path, volumes: tuple[np.ndarray, np.ndarray], protocol: Protocol
) -> None:
    image, labels = volumes
    out = write_qc_png(tmp_path / "qc.png", image, labels, protocol, title="first")
    before = out.read_bytes()
    with pytest.raises(OutputExistsError, match="pass --force"):
        write_qc_png(out, image, labels, protocol, title="second")
    assert out.read_bytes() == before
    write_qc_png(out, image, labels, protocol, title="second", force=True)
    assert out.read_bytes() != before
    assert _read_png(out).shape == (1000, 1500, 3)


def test_no_labels_still_writes(tmp_path: Path, protocol: Protocol) -> None:
    image = _head()
    out = write_qc_png(tmp_path / "qc.png", image, np.zeros(SHAPE, np.uint8), protocol)
    pixels = _read_png(out).astype(np.int16)
    assert (pixels.max(axis=-1) - pixels.min(axis=-1)).max() <= 2  # grey only, no overlay


def test_blank_image_still_writes(tmp_path: Path, protocol: Protocol) -> None:
    out = write_qc_png(
        tmp_path / "qc.png", np.zeros(SHAPE, np.float32), np.zeros(SHAPE, np.int32), protocol
    )
    assert _read_png(out).shape == (1000, 1500, 3)


def test_unknown_ids_are_white_with_one_warning(
    tmp_path: Path,
    volumes: tuple[np.ndarray, np.ndarray],
    protocol: Protocol,
    caplog: pytest.LogCaptureFixture,
) -> None:
    image, labels = volumes
    labels = labels.astype(np.int32)
    labels[_ball((24, 28, 20), 3)] = 9999
    labels[0, 0, 0] = -4  # negative: the np.unique path
    with caplog.at_level(logging.WARNING, logger="wholebrain.segment.qc"):
        write_qc_png(tmp_path / "qc.png", image, labels, protocol)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "-4, 9999" in warnings[0].getMessage()
    assert "dkt-aseg" in warnings[0].getMessage()


def test_overlay_colours_from_the_protocol(protocol: Protocol) -> None:
    ids = np.zeros((7, 7), dtype=np.int32)
    ids[1:6, 1:6] = CTX_RH_INSULA
    ids[3, 3] = 9999
    lut_ids = protocol.ids.astype(np.int64)
    lut_rgb = np.array([lab.rgb for lab in protocol.labels], dtype=np.uint8)
    rgba = _overlay_rgba(ids, lut_ids, lut_rgb)
    assert rgba.shape == (7, 7, 4) and rgba.dtype == np.uint8
    assert tuple(rgba[2, 2, :3]) == protocol.label(CTX_RH_INSULA).rgb
    assert tuple(rgba[3, 3, :3]) == (255, 255, 255)
    assert rgba[0, 0, 3] == 0  # background transparent
    assert rgba[1, 3, 3] == 255  # outline opaque
    assert rgba[2, 2, 3] == 128  # interior at half opacity


@pytest.mark.parametrize(
    ("image_shape", "labels_shape", "match"),
    [
        (SHAPE, (48, 56, 41), "must share one grid"),
        ((48, 56), (48, 56), "must be 3-D"),
        ((*SHAPE, 2), (*SHAPE, 2), "must be 3-D"),
        ((0, 56, 40), (0, 56, 40), "empty"),
    ],
)
def test_bad_shapes_raise(
    tmp_path: Path,
    protocol: Protocol,
    image_shape: tuple[int, ...],
    labels_shape: tuple[int, ...],
    match: str,
) -> None:
    out = tmp_path / "qc.png"
    with pytest.raises(ValueError, match=match):
        write_qc_png(out, np.zeros(image_shape), np.zeros(labels_shape, np.int16), protocol)
    assert not out.exists()


def test_float_labels_raise(tmp_path: Path, protocol: Protocol) -> None:
    with pytest.raises(ValueError, match="integer ids, found dtype float64"):
        write_qc_png(tmp_path / "qc.png", _head(), np.zeros(SHAPE), protocol)


def test_matplotlib_is_imported_inside_functions_only() -> None:
    # Importing the module stays light: no module-level matplotlib import (TYPE_CHECKING aside).
    tree = ast.parse(Path(qc.__file__).read_text(encoding="utf-8"))
    top_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    names = [a.name for n in top_level if isinstance(n, ast.Import) for a in n.names]
    names += [n.module or "" for n in top_level if isinstance(n, ast.ImportFrom)]
    assert names and not [n for n in names if n.startswith("matplotlib")]
