"""Semantic labels: overlap policies, background shift, palettized PNG round trips."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from samrs.core import rle
from samrs.core.classes import UNLABELLED, class_table
from samrs.outputs.semantic import (
    BACKGROUND_COLOR,
    OVERLAP_POLICIES,
    UNLABELLED_COLOR,
    paint_instances,
    paint_order,
    paint_semantic,
    read_png_palette,
    read_semantic_png,
    semantic_palette,
    write_semantic_png,
)

N = UNLABELLED


def _rect(r0: int, r1: int, c0: int, c1: int, shape: tuple[int, int] = (4, 6)) -> np.ndarray:
    m = np.zeros(shape, dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


# objects in input order: B (small, class 2, best score), A (big, class 1), C (small, class 3)
B, A, C = _rect(1, 3, 2, 5), _rect(0, 4, 0, 4), _rect(2, 4, 3, 6)
MASKS = [B, A, C]
CLASSES = [2, 1, 3]
SCORES = [0.9, 0.5, 0.7]

EXPECTED = {
    # larger first (A), then B and C (equal areas: input order), so C covers B's corner
    "small-on-top": [
        [1, 1, 1, 1, N, N],
        [1, 1, 2, 2, 2, N],
        [1, 1, 2, 3, 3, 3],
        [1, 1, 1, 3, 3, 3],
    ],
    # lowest score first: A (0.5), C (0.7), B (0.9) on top
    "score": [
        [1, 1, 1, 1, N, N],
        [1, 1, 2, 2, 2, N],
        [1, 1, 2, 2, 2, 3],
        [1, 1, 1, 3, 3, 3],
    ],
    # SAMRS: later objects overwrite earlier ones: B, then A hides most of B, then C
    "annotation-order": [
        [1, 1, 1, 1, N, N],
        [1, 1, 1, 1, 2, N],
        [1, 1, 1, 3, 3, 3],
        [1, 1, 1, 3, 3, 3],
    ],
}


@pytest.mark.parametrize("policy", OVERLAP_POLICIES)
def test_overlap_policies_exact_pixels(policy: str) -> None:
    areas = [int(m.sum()) for m in MASKS]
    label = paint_semantic(4, 6, MASKS, CLASSES, areas, SCORES, policy=policy)
    assert label.dtype == np.uint8
    np.testing.assert_array_equal(label, np.array(EXPECTED[policy], dtype=np.uint8))


@pytest.mark.parametrize("policy", OVERLAP_POLICIES)
def test_rle_masks_paint_like_arrays_and_areas_default(policy: str) -> None:
    rles = [rle.encode(m) for m in MASKS]
    from_rle = paint_semantic(4, 6, rles, CLASSES, None, SCORES, policy=policy)
    np.testing.assert_array_equal(from_rle, np.array(EXPECTED[policy], dtype=np.uint8))


def test_background_shifts_ids_and_labels_rest_zero() -> None:
    label = paint_semantic(4, 6, MASKS, CLASSES, policy="annotation-order", background=True)
    expected = np.array(EXPECTED["annotation-order"], dtype=np.int32)
    expected = np.where(expected == N, 0, expected + 1).astype(np.uint8)
    np.testing.assert_array_equal(label, expected)
    assert 255 not in label


def test_no_masks_gives_all_unlabelled_or_background() -> None:
    assert (paint_semantic(3, 5, [], []) == 255).all()
    assert (paint_semantic(3, 5, [], [], background=True) == 0).all()


def test_paint_order_ties_and_missing_scores_are_deterministic() -> None:
    assert paint_order([5, 5, 9], policy="small-on-top") == [2, 0, 1]
    assert paint_order([1, 1, 1], [0.5, None, float("nan")], policy="score") == [1, 2, 0]
    assert paint_order([1, 2, 3], [0.2, 0.2, 0.1], policy="score") == [2, 0, 1]
    assert paint_order([3, 2, 1], policy="annotation-order") == [0, 1, 2]


def test_bad_inputs_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="overlap policy"):
        paint_semantic(4, 6, MASKS, CLASSES, policy="random")
    with pytest.raises(ValueError, match=r"mask \d: shape \(4, 6\) differs from the label 5x6"):
        paint_semantic(5, 6, MASKS, CLASSES)
    with pytest.raises(ValueError, match="RLE size"):
        paint_semantic(5, 6, [rle.encode(B)], [1])
    with pytest.raises(ValueError, match="class id 254"):
        paint_semantic(4, 6, [B], [254], background=True)
    with pytest.raises(ValueError, match="3 masks but 2"):
        paint_semantic(4, 6, MASKS, [1, 2])


def _label() -> np.ndarray:
    rng = np.random.default_rng(0)
    label = rng.integers(0, 15, (37, 53)).astype(np.uint8)
    label[rng.random(label.shape) < 0.3] = 255
    return label


def test_palette_png_round_trip_pil_and_cv2(tmp_path) -> None:
    table = class_table("dota", "1.0")
    label = _label()
    path = tmp_path / "x.png"
    write_semantic_png(path, label, table)
    with Image.open(path) as im:
        assert im.mode == "P"
        assert len(im.getpalette()) == 768
        np.testing.assert_array_equal(np.asarray(im), label)
    np.testing.assert_array_equal(read_semantic_png(path), label)
    palette = np.asarray(read_png_palette(path), dtype=np.uint8).reshape(256, 3)
    assert palette[0].tolist() == list(table.palette[0])
    assert palette[255].tolist() == list(UNLABELLED_COLOR)
    # OpenCV always expands PNG palettes (IMREAD_UNCHANGED gives BGR colours, never indices):
    # what it reads is exactly the palette looked up at the stored indices.
    bgr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(bgr, palette[label][:, :, ::-1])


@pytest.mark.parametrize("values", [[255], [0, 255], [3], [0, 1, 2, 254]])
def test_sparse_labels_keep_their_indices(tmp_path, values: list[int]) -> None:
    # Pillow must not shrink or remap the palette when few indices are used
    label = np.array(values * 12, dtype=np.uint8).reshape(-1, len(values))
    path = tmp_path / "s.png"
    write_semantic_png(path, label, semantic_palette(class_table("dior")))
    np.testing.assert_array_equal(read_semantic_png(path), label)
    assert len(read_png_palette(path)) == 768


def test_png_bytes_are_deterministic(tmp_path) -> None:
    label = _label()
    table = class_table("fair1m")
    write_semantic_png(tmp_path / "a.png", label, table)
    write_semantic_png(tmp_path / "b.png", label.copy(), semantic_palette(table))
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()
    data = (tmp_path / "a.png").read_bytes()
    assert b"tIME" not in data and b"tEXt" not in data


def test_semantic_palette_background_shift() -> None:
    table = class_table("dota", "1.0")
    flat = semantic_palette(table, background=True)
    assert len(flat) == 768
    assert tuple(flat[0:3]) == BACKGROUND_COLOR
    assert tuple(flat[3:6]) == table.palette[0]
    assert tuple(flat[3 * 15 : 3 * 16]) == table.palette[14]
    assert tuple(flat[765:768]) == UNLABELLED_COLOR


def test_write_rejects_bad_label_or_palette(tmp_path) -> None:
    with pytest.raises(ValueError, match="2-D uint8"):
        write_semantic_png(tmp_path / "x.png", np.zeros((3, 3), dtype=np.int32), [0] * 768)
    with pytest.raises(ValueError, match="768"):
        write_semantic_png(tmp_path / "x.png", np.zeros((3, 3), dtype=np.uint8), [0] * 30)


def test_paint_instances_paints_kept_rows_with_class_map() -> None:
    rows = [
        {"segmentation": rle.encode(m)["counts"], "class_id": c, "area": int(m.sum()),
         "score": s, "kept": k, "polygon": _outline(m)}
        for m, c, s, k in zip(MASKS, CLASSES, SCORES, [True, True, False], strict=True)
    ]  # fmt: skip
    label = paint_instances(4, 6, rows, policy="annotation-order")
    expected = paint_semantic(4, 6, MASKS[:2], CLASSES[:2], policy="annotation-order")
    np.testing.assert_array_equal(label, expected)
    # with background, the rejected C is ignored (255) where B does not cover it, never 0
    only_b = paint_instances(4, 6, rows, class_map={2: 0}, background=True)
    np.testing.assert_array_equal(only_b, np.where(B, 1, np.where(C, N, 0)))
    # a rejected instance left out of the rows counts the same through its polygon
    kept_rows = rows[:2]
    again = paint_instances(4, 6, kept_rows, class_map={2: 0}, background=True,
                            rejected_polygons=[rows[2]["polygon"]])  # fmt: skip
    np.testing.assert_array_equal(again, only_b)
    np.testing.assert_array_equal(
        paint_instances(4, 6, kept_rows, class_map={2: 0}, background=True), np.where(B, 1, 0)
    )


def _outline(mask: np.ndarray) -> list[float]:
    """The pixel-edge box of a rectangular mask, as a flat polygon."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    x0, x1, y0, y1 = cols[0], cols[-1] + 1, rows[0], rows[-1] + 1
    return [float(v) for v in (x0, y0, x1, y0, x1, y1, x0, y1)]
