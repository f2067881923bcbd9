"""Masks kept as bounding-box crops: round trips, RLE, painting and placement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from pycocotools import mask as mask_utils

from samrs.core import rle
from samrs.core.geometry import rasterize_polygon
from samrs.core.masks import MaskCrop, crops_of, mask_bbox, stack
from samrs.outputs.semantic import paint_semantic
from samrs.segmenters.base import MaskSet
from samrs.segmenters.postprocess import crops_from_boxes, mask_boxes


@st.composite
def full_masks(draw: st.DrawFn) -> np.ndarray:
    """Small masks: random pixels, blocks (touching the borders or not), full and empty."""
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["noise", "block", "full", "empty", "columns"]))
    mask = np.zeros((h, w), dtype=bool)
    if kind == "noise":
        mask = rng.random((h, w)) < rng.random()
    elif kind == "block":
        y0, x0 = int(rng.integers(0, h)), int(rng.integers(0, w))
        mask[y0 : y0 + int(rng.integers(1, h + 1)), x0 : x0 + int(rng.integers(1, w + 1))] = True
    elif kind == "full":
        mask[:] = True
    elif kind == "columns":  # whole columns: runs go on across column ends
        mask[:, int(rng.integers(0, w)) :] = True
        mask[int(rng.integers(0, h)) :, 0] = True
    return mask


@given(full_masks())
@settings(max_examples=400, deadline=None)
def test_crop_round_trip_box_and_rle_equal_the_full_mask(mask: np.ndarray) -> None:
    crop = MaskCrop.from_full(mask)
    np.testing.assert_array_equal(crop.full(), mask)
    assert crop.area == mask.sum()
    full_rle = rle.encode(mask)
    assert list(crop.bbox) == rle.bbox(full_rle)  # pycocotools' toBbox
    assert crop.bbox == mask_bbox(mask)
    if crop.area:  # tight: every border row and column of the crop holds a pixel
        assert crop.mask[0].any() and crop.mask[-1].any()
        assert crop.mask[:, 0].any() and crop.mask[:, -1].any()
    # the run-by-run encoder (forced for every size) writes pycocotools' exact string
    assert rle.encode_crop(crop, full_share=2.0) == full_rle
    assert rle.encode_crop(crop) == full_rle


@given(st.lists(full_masks(), min_size=1, max_size=4))
@settings(max_examples=150, deadline=None)
def test_crops_gathered_where_the_masks_are_equal_the_host_crops(masks: list) -> None:
    h, w = masks[0].shape
    stack_ = np.stack([m for m in masks if m.shape == (h, w)])
    tensor = torch.from_numpy(stack_)
    crops = crops_from_boxes(tensor, mask_boxes(tensor).numpy())
    for mask, crop in zip(stack_, crops, strict=True):
        want = MaskCrop.from_full(mask)
        assert (crop.x, crop.y, crop.height, crop.width) == (want.x, want.y, h, w)
        np.testing.assert_array_equal(crop.mask, want.mask)
        assert crop.mask.dtype == bool


def test_encode_crop_of_a_small_object_in_a_large_image() -> None:
    height, width = 600, 800
    polygon = [610.5, 380.2, 640.0, 395.0, 628.0, 420.7, 599.0, 406.0]
    crop = MaskCrop.of_polygon(polygon, 0.0, height, width)
    full = rasterize_polygon(polygon, height, width)
    np.testing.assert_array_equal(crop.full(), full)
    assert crop.mask.shape == (full.any(axis=1).sum(), full.any(axis=0).sum())
    encoded = rle.encode_crop(crop)
    assert encoded == rle.encode(full)
    assert mask_utils.area({"size": [height, width], "counts": encoded["counts"].encode()}) == (
        full.sum()
    )


def test_on_window_and_placement() -> None:
    mask = np.zeros((10, 12), dtype=bool)
    mask[2:5, 3:9] = True
    mask[4, 10] = True
    crop = MaskCrop.from_full(mask)
    for rows, cols in [
        (slice(0, 10), slice(0, 12)),
        (slice(3, 7), slice(8, 12)),
        (slice(6, 9), slice(0, 2)),
    ]:
        np.testing.assert_array_equal(crop.on_window(rows, cols), mask[rows, cols])
    moved = crop.placed(5, 7, 20, 30)
    big = np.zeros((20, 30), dtype=bool)
    big[7:17, 5:17] = mask
    np.testing.assert_array_equal(moved.full(), big)
    with pytest.raises(ValueError, match="does not fit"):
        crop.placed(25, 0, 20, 30)
    with pytest.raises(ValueError, match="not inside"):
        MaskCrop.from_window(mask, 5, 0, 10, 12)
    assert MaskCrop.empty(4, 5).placed(1, 1, 8, 8).full().shape == (8, 8)


def test_painting_crops_equals_painting_full_masks() -> None:
    rng = np.random.default_rng(3)
    masks = np.zeros((6, 40, 50), dtype=bool)
    for m in masks:
        y, x = rng.integers(0, 30, 2)
        m[y : y + rng.integers(1, 15), x : x + rng.integers(1, 25)] = rng.random() < 0.9
    classes = [0, 3, 1, 2, 5, 4]
    for policy in ("small-on-top", "annotation-order"):
        want = paint_semantic(40, 50, list(masks), classes, policy=policy)
        got = paint_semantic(40, 50, crops_of(masks), classes, policy=policy)
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="crop of a 40x50 image"):
        paint_semantic(40, 49, crops_of(masks), classes)


def test_maskset_full_masks_are_a_read_only_view_of_the_crops() -> None:
    masks = np.zeros((2, 8, 9), dtype=bool)
    masks[0, 1:3, 2:4] = True
    ms = MaskSet.from_masks(masks, np.zeros(2, np.float32), np.zeros(2, np.float32))
    np.testing.assert_array_equal(ms.masks, masks)
    np.testing.assert_array_equal(stack(ms.crops, 8, 9), masks)
    assert len(ms) == 2 and ms.crops[1].area == 0
    with pytest.raises(ValueError, match="read-only"):
        ms.masks[0] = False  # a change must go through ms.crops
