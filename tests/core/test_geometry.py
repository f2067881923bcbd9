"""Property tests of samrs.core.geometry: polygon <-> box, rotated boxes, iof, clipping, rasters."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from samrs.core.geometry import (
    box_polygon,
    clip_polygon,
    iof,
    polygon_area,
    polygon_centroid,
    polygon_hbox,
    rasterize_polygon,
    rasterize_polygons,
    rbox_polygon,
)

coord = st.floats(-500, 1500, allow_nan=False, allow_infinity=False)
side = st.floats(0.5, 400, allow_nan=False, allow_infinity=False)
angle = st.floats(-2 * math.pi, 2 * math.pi, allow_nan=False, allow_infinity=False)


@st.composite
def boxes(draw: st.DrawFn) -> tuple[float, float, float, float]:
    x0, y0, w, h = draw(coord), draw(coord), draw(side), draw(side)
    return (x0, y0, x0 + w, y0 + h)


@st.composite
def windows(draw: st.DrawFn) -> tuple[int, int, int, int]:
    return (
        draw(st.integers(-200, 1200)),
        draw(st.integers(-200, 1200)),
        draw(st.integers(1, 600)),
        draw(st.integers(1, 600)),
    )


def _box_overlap(box: tuple[float, ...], window: tuple[int, int, int, int]) -> float:
    x, y, w, h = window
    dx = max(0.0, min(box[2], x + w) - max(box[0], x))
    dy = max(0.0, min(box[3], y + h) - max(box[1], y))
    return dx * dy


# --- polygon <-> box ------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True)
@given(boxes())
def test_box_polygon_round_trip(box: tuple[float, float, float, float]) -> None:
    polygon = box_polygon(box)
    assert polygon_hbox(polygon) == box
    assert polygon[:2] == box[:2]  # clockwise on screen from the top-left corner
    assert polygon[2] == box[2] and polygon[5] == box[3]
    assert polygon_area(polygon) == pytest.approx((box[2] - box[0]) * (box[3] - box[1]))


@settings(max_examples=200, deadline=None, derandomize=True)
@given(coord, coord, side, side, angle)
def test_rbox_polygon_is_the_rotated_rectangle(
    cx: float, cy: float, w: float, h: float, a: float
) -> None:
    polygon = rbox_polygon(cx, cy, w, h, a)
    assert polygon_area(polygon) == pytest.approx(w * h, rel=1e-6, abs=1e-6)
    assert polygon_centroid(polygon) == pytest.approx((cx, cy), abs=1e-6)
    xs, ys = np.array(polygon[0::2]), np.array(polygon[1::2])
    # side lengths: w, h, w, h
    sides = np.hypot(np.diff(xs, append=xs[0]), np.diff(ys, append=ys[0]))
    assert sides == pytest.approx([w, h, w, h], rel=1e-9, abs=1e-9 * (abs(cx) + abs(cy) + 1))
    # enclosing box: the analytic extent of a rotated rectangle
    c, s = abs(math.cos(a)), abs(math.sin(a))
    half_w, half_h = (w * c + h * s) / 2, (w * s + h * c) / 2
    expected = (cx - half_w, cy - half_h, cx + half_w, cy + half_h)
    assert polygon_hbox(polygon) == pytest.approx(expected, abs=1e-6)
    # half a turn gives the same corners, in another order
    turned = rbox_polygon(cx, cy, w, h, a + math.pi)
    assert sorted(np.round(turned, 6)) == sorted(np.round(polygon, 6))
    # screen-clockwise (y down): positive shoelace sum
    assert float(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) > 0


@settings(max_examples=100, deadline=None, derandomize=True)
@given(coord, coord, side, side)
def test_rbox_at_angle_zero_is_the_box(cx: float, cy: float, w: float, h: float) -> None:
    polygon = rbox_polygon(cx, cy, w, h, 0.0)
    box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
    assert polygon == pytest.approx(box_polygon(box))


@settings(max_examples=100, deadline=None, derandomize=True)
@given(coord, coord, side, side, angle, st.integers(0, 3))
def test_area_ignores_vertex_order(
    cx: float, cy: float, w: float, h: float, a: float, shift: int
) -> None:
    polygon = np.array(rbox_polygon(cx, cy, w, h, a)).reshape(4, 2)
    rolled = np.roll(polygon, shift, axis=0)
    assert polygon_area(rolled.ravel()) == pytest.approx(w * h, rel=1e-6, abs=1e-6)
    assert polygon_area(rolled[::-1].ravel()) == pytest.approx(w * h, rel=1e-6, abs=1e-6)


# --- iof --------------------------------------------------------------------------------------


@settings(max_examples=300, deadline=None, derandomize=True)
@given(boxes(), windows())
def test_iof_of_a_box_is_its_overlap_over_its_area(box: tuple[float, ...], window) -> None:
    area = (box[2] - box[0]) * (box[3] - box[1])
    value = iof(box_polygon(box), window)
    assert 0.0 <= value <= 1.0
    assert value == pytest.approx(_box_overlap(box, window) / area, abs=1e-9)


@settings(max_examples=200, deadline=None, derandomize=True)
@given(coord, coord, side, side, angle, st.floats(-600, 1600))
def test_iof_of_two_halves_of_the_plane_sum_to_one(
    cx: float, cy: float, w: float, h: float, a: float, cut: float
) -> None:
    polygon = rbox_polygon(cx, cy, w, h, a)
    big = 10_000
    edge = math.floor(cut)
    left, right = (-big, -big, edge + big, 2 * big), (edge, -big, 2 * big, 2 * big)
    assert iof(polygon, left) + iof(polygon, right) == pytest.approx(1.0, abs=1e-9)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(coord, coord, side, side, angle)
def test_iof_inside_and_disjoint(cx: float, cy: float, w: float, h: float, a: float) -> None:
    polygon = rbox_polygon(cx, cy, w, h, a)
    x0, y0, x1, y1 = polygon_hbox(polygon)
    around = (
        math.floor(x0) - 1,
        math.floor(y0) - 1,
        math.ceil(x1 - x0) + 2,
        math.ceil(y1 - y0) + 2,
    )
    assert iof(polygon, around) == pytest.approx(1.0)
    beside = (math.ceil(x1) + 1, math.floor(y0), 50, math.ceil(y1 - y0) + 1)
    assert iof(polygon, beside) == 0.0


def test_iof_of_a_degenerate_polygon_is_zero() -> None:
    assert iof((0, 0, 10, 0, 20, 0, 5, 0), (0, 0, 100, 100)) == 0.0


# --- clipping ---------------------------------------------------------------------------------


@settings(max_examples=200, deadline=None, derandomize=True)
@given(coord, coord, side, side, angle, windows())
def test_clip_polygon_clamps_into_the_box(
    cx: float, cy: float, w: float, h: float, a: float, window
) -> None:
    polygon = rbox_polygon(cx, cy, w, h, a)
    x, y, ww, wh = window
    box = (float(x), float(y), float(x + ww), float(y + wh))
    clipped, moved = clip_polygon(polygon, box)
    assert all(box[0] <= v <= box[2] for v in clipped[0::2])
    assert all(box[1] <= v <= box[3] for v in clipped[1::2])
    x0, y0, x1, y1 = polygon_hbox(polygon)
    inside = x0 >= box[0] and y0 >= box[1] and x1 <= box[2] and y1 <= box[3]
    assert moved == (not inside)
    assert (clipped == polygon) == (not moved)
    assert clip_polygon(clipped, box) == (clipped, False)  # idempotent


# --- rasterization ----------------------------------------------------------------------------


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.integers(0, 40), st.integers(0, 40), st.integers(1, 30), st.integers(1, 30),
    st.floats(-0.49, 0.49), st.floats(-0.49, 0.49),
)  # fmt: skip
def test_rasterized_box_covers_exactly_its_pixels(
    x: int, y: int, w: int, h: int, dx: float, dy: float
) -> None:
    # pixel-centre rule: shifting a box by less than half a pixel keeps the same pixels
    mask = rasterize_polygon(box_polygon((x + dx, y + dy, x + w + dx, y + h + dy)), 80, 80)
    expected = np.zeros((80, 80), dtype=bool)
    expected[y : y + h, x : x + w] = True
    assert np.array_equal(mask, expected)


@settings(max_examples=100, deadline=None, derandomize=True)
@given(
    st.floats(20, 60), st.floats(20, 60), st.floats(4, 30), st.floats(4, 30), angle
)  # fmt: skip
def test_rasterized_area_is_close_to_the_polygon_area(
    cx: float, cy: float, w: float, h: float, a: float
) -> None:
    polygon = rbox_polygon(cx, cy, w, h, a)
    assume(min(polygon) >= 0 and max(polygon) <= 80)
    pixels = int(rasterize_polygon(polygon, 80, 80).sum())
    # only pixels the boundary passes through can differ: at most about the perimeter
    assert abs(pixels - w * h) <= 2 * (w + h) + 4


def _centre_inside(polygon: np.ndarray, cx: float, cy: float) -> bool:
    """Even-odd rule on one pixel centre, edge by edge: the oracle of the rasterizers."""
    inside = False
    n = len(polygon)
    for k in range(n):
        (x0, y0), (x1, y1) = polygon[k], polygon[(k + 1) % n]
        if min(y0, y1) <= cy < max(y0, y1):
            dy = y1 - y0 if y1 != y0 else 1.0
            if x0 + (cy - y0) * (x1 - x0) / dy <= cx:
                inside = not inside
    return inside


@st.composite
def polygon_jobs(draw: st.DrawFn) -> tuple[list[np.ndarray], list[tuple[int, int]], list]:
    """A few polygons (0-7 vertices, on a half-pixel grid or not, often concave or
    self-intersecting), each with its mask size and offset."""
    polygons, sizes, offsets = [], [], []
    for _ in range(draw(st.integers(1, 4))):
        n = draw(st.integers(0, 7))
        pts = np.array(
            [[draw(st.floats(-6, 26)), draw(st.floats(-6, 26))] for _ in range(n)]
        ).reshape(-1, 2)
        if draw(st.booleans()):
            pts = np.round(pts * 2) / 2
        polygons.append(pts)
        sizes.append((draw(st.integers(0, 20)), draw(st.integers(0, 20))))
        offsets.append((draw(st.integers(-4, 4)) / 2, draw(st.integers(-4, 4)) / 2))
    return polygons, sizes, offsets


@pytest.mark.slow
@settings(max_examples=300, deadline=None, derandomize=True)
@given(polygon_jobs())
def test_rasterizing_polygons_together_follows_the_pixel_centre_rule(job) -> None:  # type: ignore[no-untyped-def]
    polygons, sizes, offsets = job
    masks = rasterize_polygons(polygons, sizes, offsets)
    for polygon, (h, w), (ox, oy), mask in zip(polygons, sizes, offsets, masks, strict=True):
        assert mask.shape == (h, w) and mask.dtype == bool
        shifted = polygon - np.array([ox, oy])
        want = np.array(
            [[len(polygon) >= 3 and _centre_inside(shifted, c + 0.5, r + 0.5) for c in range(w)]
             for r in range(h)],
            dtype=bool,
        ).reshape(h, w)  # fmt: skip
        np.testing.assert_array_equal(mask, want)
        np.testing.assert_array_equal(rasterize_polygon(polygon, h, w, (ox, oy)), want)
