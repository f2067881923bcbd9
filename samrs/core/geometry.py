"""Polygon and box conversions, overlap measures and rasterization.

All coordinates are image pixels with the pixel-area convention of :mod:`samrs.core.records`:
pixel (r, c) is inside a shape when its centre ``(c + 0.5, r + 0.5)`` is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import shapely
from shapely.geometry import Polygon as ShapelyPolygon
from shapely.geometry import box as shapely_box

from samrs.core.records import Box, Polygon, Window, as_polygon, polygon_hbox

__all__ = [
    "box_polygon",
    "clip_polygon",
    "dilated_polygon_mask",
    "iof",
    "mask_iou",
    "polygon_area",
    "polygon_centroid",
    "polygon_hbox",
    "rasterize_geometry",
    "rasterize_polygon",
    "rasterize_polygons",
    "rbox_polygon",
    "to_shapely",
]


def box_polygon(box: Sequence[float]) -> Polygon:
    """Corners of a horizontal box ``(xmin, ymin, xmax, ymax)``, clockwise from top-left."""
    x0, y0, x1, y1 = (float(v) for v in box)
    return (x0, y0, x1, y0, x1, y1, x0, y1)


def rbox_polygon(cx: float, cy: float, w: float, h: float, angle: float) -> Polygon:
    """Corners of a rotated box given by centre, size and angle in radians (clockwise on screen)."""
    c, s = math.cos(angle), math.sin(angle)
    corners = []
    for dx, dy in ((-w / 2, -h / 2), (w / 2, -h / 2), (w / 2, h / 2), (-w / 2, h / 2)):
        corners += [cx + dx * c - dy * s, cy + dx * s + dy * c]
    return as_polygon(corners)


def polygon_area(polygon: Sequence[float]) -> float:
    """Absolute area of a simple flat polygon (shoelace formula)."""
    xs = np.asarray(polygon[0::2], dtype=np.float64)
    ys = np.asarray(polygon[1::2], dtype=np.float64)
    return float(abs(np.dot(xs, np.roll(ys, -1)) - np.dot(ys, np.roll(xs, -1))) / 2.0)


def polygon_centroid(polygon: Sequence[float]) -> tuple[float, float]:
    """Centre of a flat polygon (area centroid; vertex mean for degenerate polygons)."""
    geom = to_shapely(polygon)
    if geom.area > 0:
        c = geom.centroid
        return (float(c.x), float(c.y))
    return (float(np.mean(polygon[0::2])), float(np.mean(polygon[1::2])))


def to_shapely(polygon: Sequence[float] | np.ndarray) -> ShapelyPolygon:
    """A shapely polygon from a flat coordinate list, repaired if self-intersecting."""
    geom = ShapelyPolygon(np.asarray(polygon, dtype=np.float64).reshape(-1, 2))
    if not geom.is_valid:
        geom = shapely.make_valid(geom)
    return geom


def iof(polygon: Sequence[float], window: Window) -> float:
    """Intersection of the polygon with a window ``(x, y, w, h)``, over the polygon's area."""
    geom = to_shapely(polygon)
    if geom.area <= 0:
        return 0.0
    x, y, w, h = window
    return float(geom.intersection(shapely_box(x, y, x + w, y + h)).area / geom.area)


def clip_polygon(polygon: Sequence[float], box: Box) -> tuple[Polygon, bool]:
    """Clamp each vertex into ``box`` (xmin, ymin, xmax, ymax); return it and whether it moved."""
    x0, y0, x1, y1 = box
    out = []
    for i, v in enumerate(polygon):
        lo, hi = (x0, x1) if i % 2 == 0 else (y0, y1)
        out.append(float(min(max(v, lo), hi)))
    clipped = as_polygon(out)
    return clipped, clipped != tuple(float(v) for v in polygon)


def rasterize_polygon(
    polygon: Sequence[float] | np.ndarray,
    height: int,
    width: int,
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Boolean mask (height, width) of a polygon with any number of vertices.

    A pixel is inside when its centre is (even-odd rule, left/top edges inclusive, right/bottom
    exclusive), so the box ``(2, 3, 7, 9)`` covers exactly 5 x 6 pixels.

    Args:
        polygon: flat ``(x1, y1, ...)`` or an (N, 2) array, in pixels.
        height, width: mask size.
        offset: ``(x, y)`` subtracted from the coordinates first (e.g. a crop origin).
    """
    return rasterize_polygons([polygon], [(height, width)], [offset])[0]


def rasterize_polygons(
    polygons: Sequence[Sequence[float] | np.ndarray],
    sizes: Sequence[tuple[int, int]],
    offsets: Sequence[tuple[float, float]] | None = None,
) -> list[np.ndarray]:
    """:func:`rasterize_polygon` of many polygons (each with its mask size and offset), with
    the edge crossings of all their rows computed together: the masks of an image's objects
    in a few numpy operations instead of a few dozen per object. Same masks, bit for bit."""
    n = len(polygons)
    masks = [np.zeros((int(h), int(w)), dtype=bool) for h, w in sizes]
    if n == 0:
        return masks
    shifts = np.zeros((n, 2)) if offsets is None else np.asarray(offsets, dtype=np.float64)
    vertices = [np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in polygons]
    n_vertices = max(len(v) for v in vertices)
    # pad with copies of the last vertex: the extra edges have no length, and the edge back
    # to the first vertex still closes the polygon
    pts = np.empty((n, n_vertices, 2))
    usable = np.zeros(n, dtype=bool)
    for i, v in enumerate(vertices):
        if len(v) >= 3 and masks[i].size:
            pts[i, : len(v)] = v - shifts[i]
            pts[i, len(v) :] = pts[i, len(v) - 1]
            usable[i] = True
        else:
            pts[i] = 0.0
    if not usable.any():
        return masks
    heights = np.array([m.shape[0] for m in masks], dtype=np.int64)
    r0 = np.maximum(np.floor(pts[:, :, 1].min(axis=1) - 0.5), 0).astype(np.int64)
    r1 = np.minimum(np.ceil(pts[:, :, 1].max(axis=1) + 0.5), heights).astype(np.int64)
    n_rows = np.where(usable, np.maximum(r1 - r0, 0), 0)
    if not n_rows.any():
        return masks
    owner = np.repeat(np.arange(n), n_rows)  # the polygon of each row band
    first = np.cumsum(n_rows) - n_rows
    yc = (np.arange(owner.size) - first[owner] + r0[owner]).astype(np.float64)[:, None] + 0.5
    x0, y0 = pts[owner, :, 0], pts[owner, :, 1]
    x1, y1 = np.roll(x0, -1, axis=1), np.roll(y0, -1, axis=1)
    crosses = (np.minimum(y0, y1) <= yc) & (yc < np.maximum(y0, y1))
    dy = np.where(y1 == y0, 1.0, y1 - y0)
    xs = np.where(crosses, x0 + (yc - y0) * (x1 - x0) / dy, np.inf)
    xs.sort(axis=1)
    n_pairs = int(np.count_nonzero(crosses, axis=1).max()) // 2
    # even-odd: the sorted crossings pair up into disjoint spans [xa, xb) of covered centres
    xa, xb = xs[:, 0 : 2 * n_pairs : 2], xs[:, 1 : 2 * n_pairs : 2]
    starts = np.where(np.isfinite(xb), np.ceil(xa - 0.5), np.inf)
    stops = np.ceil(xb - 0.5)
    for j in np.flatnonzero(n_rows):
        rows = slice(first[j], first[j] + n_rows[j])
        band = masks[j][r0[j] : r1[j]]
        cols = np.arange(band.shape[1], dtype=np.float64)
        for k in range(n_pairs):
            band |= (cols >= starts[rows, k, None]) & (cols < stops[rows, k, None])
    return masks


def rasterize_geometry(
    geom: object, height: int, width: int, offset: tuple[float, float] = (0.0, 0.0)
) -> np.ndarray:
    """Boolean mask of a shapely (multi)polygon, holes included (``offset`` as in
    :func:`rasterize_polygon`)."""
    mask = np.zeros((height, width), dtype=bool)
    for part in getattr(geom, "geoms", [geom]):
        if getattr(part, "geom_type", "") != "Polygon" or part.is_empty:
            continue
        mask |= rasterize_polygon(np.asarray(part.exterior.coords)[:-1], height, width, offset)
        for hole in part.interiors:
            mask &= ~rasterize_polygon(np.asarray(hole.coords)[:-1], height, width, offset)
    return mask


def dilated_polygon_mask(
    polygon: Sequence[float] | np.ndarray,
    pixels: float,
    height: int,
    width: int,
    offset: tuple[float, float] = (0.0, 0.0),
) -> np.ndarray:
    """Mask of the polygon grown by ``pixels`` (mitred corners, so a box stays a box).

    ``offset`` ``(x, y)`` is subtracted from the coordinates first (a window's origin).
    """
    geom = to_shapely(polygon)
    if pixels > 0:
        geom = geom.buffer(pixels, join_style="mitre")
    return rasterize_geometry(geom, height, width, offset)


def mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of two boolean masks; 0 when both are empty."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0
