"""Prompt modes: geometry of each mode, and the PromptSet helpers."""

from __future__ import annotations

import numpy as np
import pytest

from samrs.core.geometry import polygon_centroid, rbox_polygon
from samrs.prompts import PROMPT_MODES, build_prompts, polygon_centroids
from samrs.segmenters.base import PromptSet

# A diamond (a square rotated by 45 degrees) centred on (50, 40) and an axis-aligned box.
DIAMOND = [50.0, 30.0, 60.0, 40.0, 50.0, 50.0, 40.0, 40.0]
RECT = [10.0, 20.0, 30.0, 20.0, 30.0, 25.0, 10.0, 25.0]
POLYS = np.array([DIAMOND, RECT])


def test_modes_are_the_documented_ones() -> None:
    assert PROMPT_MODES == ("hbox", "rhbox", "rbox-mask", "point", "rhbox+point")


@pytest.mark.parametrize("mode", ["hbox", "rhbox"])
def test_box_modes_use_the_enclosing_box(mode: str) -> None:
    ps = build_prompts(POLYS, mode)
    assert ps.mode == mode
    np.testing.assert_array_equal(ps.boxes, [[40, 30, 60, 50], [10, 20, 30, 25]])
    assert ps.points is None and not ps.use_mask_prompt
    np.testing.assert_array_equal(ps.polygons, POLYS.reshape(2, 4, 2))
    assert ps.polygons.dtype == np.float64 and ps.boxes.dtype == np.float64


def test_coordinates_are_kept_exactly_as_annotated() -> None:
    # float32 would turn 59.2 into 59.20000076...: manifests would show it, and the rasterized
    # polygon could differ by a pixel from the one rasterized from the manifest's polygon
    poly = np.array([[59.2, 31.0, 68.3, 31.7, 67.1, 47.9, 58.3, 47.3]])
    for mode in PROMPT_MODES:
        ps = build_prompts(poly, mode)
        assert ps.polygons.reshape(-1).tolist() == poly[0].tolist()
        if ps.boxes is not None:
            assert ps.boxes[0].tolist() == [58.3, 31.0, 68.3, 47.9]
        if ps.points is not None:
            assert ps.points.dtype == np.float64
    shifted = build_prompts(poly, "rhbox").shifted(0.1, 0.2)
    assert shifted.boxes[0].tolist() == [58.3 - 0.1, 31.0 - 0.2, 68.3 - 0.1, 47.9 - 0.2]


def test_hbox_uses_the_source_boxes_when_given() -> None:
    hboxes = np.array([[41.0, 31.0, 59.0, 49.0], [10.0, 20.0, 30.0, 25.0]])
    np.testing.assert_array_equal(build_prompts(POLYS, "hbox", hboxes).boxes, hboxes)
    # rhbox ignores them: it is always the polygon's enclosing box
    np.testing.assert_array_equal(build_prompts(POLYS, "rhbox", hboxes).boxes[0], [40, 30, 60, 50])
    with pytest.raises(ValueError, match="hboxes"):
        build_prompts(POLYS, "hbox", hboxes[:1])


def test_rbox_mask_mode_carries_the_polygon_and_its_box() -> None:
    ps = build_prompts(POLYS, "rbox-mask")
    assert ps.use_mask_prompt
    np.testing.assert_array_equal(ps.boxes[0], [40, 30, 60, 50])
    assert ps.points is None


def test_point_modes_use_the_area_centroid() -> None:
    ps = build_prompts(POLYS, "point")
    assert ps.boxes is None and not ps.use_mask_prompt
    np.testing.assert_allclose(ps.points, [[50, 40], [20, 22.5]])
    both = build_prompts(POLYS, "rhbox+point")
    np.testing.assert_allclose(both.points, ps.points)
    np.testing.assert_array_equal(both.boxes[1], [10, 20, 30, 25])


def test_vectorised_centroids_match_geometry() -> None:
    rng = np.random.default_rng(3)
    polys = [
        rbox_polygon(*rng.uniform(10, 500, 2), *rng.uniform(2, 80, 2), rng.uniform(0, 3))
        for _ in range(20)
    ]
    polys.append((5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0, 5.0))  # degenerate: vertex mean
    polys.append((0.0, 0.0, 10.0, 10.0, 10.0, 0.0, 0.0, 10.0))  # bow tie: repaired
    got = polygon_centroids(np.array(polys))
    want = np.array([polygon_centroid(p) for p in polys])
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_empty_and_bad_inputs() -> None:
    for mode in PROMPT_MODES:
        ps = build_prompts(np.zeros((0, 8)), mode)
        assert len(ps) == 0 and ps.polygons.shape == (0, 4, 2)
    with pytest.raises(ValueError, match="unknown prompt mode"):
        build_prompts(POLYS, "obb")
    with pytest.raises(ValueError, match=r"\(N, 8\)"):
        build_prompts(np.zeros((2, 6)), "hbox")


def test_promptset_subset_shift_and_boxes() -> None:
    ps = build_prompts(POLYS, "rhbox+point")
    sub = ps.subset([1])
    assert len(sub) == 1 and sub.mode == ps.mode
    np.testing.assert_array_equal(sub.boxes, ps.boxes[1:])
    moved = sub.shifted(10, 20)
    np.testing.assert_array_equal(moved.boxes, [[0, 0, 20, 5]])
    np.testing.assert_allclose(moved.points, [[10, 2.5]])
    np.testing.assert_array_equal(moved.polygons[0, 0], [0, 0])
    pts_only = PromptSet("point", ps.polygons, points=ps.points)
    np.testing.assert_array_equal(pts_only.enclosing_boxes(), ps.boxes)
