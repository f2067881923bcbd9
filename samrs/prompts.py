"""Prompt modes: how each object's annotation becomes a SAM prompt.

Every mode keeps the object's polygon in the :class:`~samrs.segmenters.base.PromptSet` (the
``box`` segmenter, clipping and the quality metrics use it). Coordinates stay in image pixels
exactly as annotated; segmenters map them to their own input frame.

- ``hbox``: the object's horizontal box. For horizontal-box sources (DIOR, HRSC hbb) pass
  their boxes as ``hboxes``; otherwise, and for HBB polygons, it is the polygon's enclosing
  box, so both give the same prompt.
- ``rhbox``: the horizontal box enclosing the (rotated) polygon: SAMRS's prompt for DOTA and
  FAIR1M. Without ``hboxes`` this is the same box as ``hbox``.
- ``rbox-mask``: the ``rhbox`` box plus the rotated polygon rasterized as SAM's dense mask
  prompt (``use_mask_prompt``): the box says where, the mask says which part of the box.
- ``point``: one positive point at the polygon's area centroid.
- ``rhbox+point``: the ``rhbox`` box and the centroid point together.
"""

from __future__ import annotations

import numpy as np
import shapely

from samrs.segmenters.base import PromptSet

PROMPT_MODES = ("hbox", "rhbox", "rbox-mask", "point", "rhbox+point")


def polygon_boxes(polygons: np.ndarray) -> np.ndarray:
    """(N, 4) ``xyxy`` enclosing boxes of (N, 8) flat polygons."""
    pts = np.asarray(polygons, dtype=np.float64).reshape(-1, 4, 2)
    return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)


def polygon_centroids(polygons: np.ndarray) -> np.ndarray:
    """(N, 2) area centroids of (N, 8) flat polygons (vertex mean where the area is zero).

    Same rule as :func:`samrs.core.geometry.polygon_centroid`, vectorised with shapely.
    """
    pts = np.asarray(polygons, dtype=np.float64).reshape(-1, 4, 2)
    if len(pts) == 0:
        return np.zeros((0, 2), dtype=np.float64)
    geoms = shapely.polygons(pts)
    invalid = ~shapely.is_valid(geoms)
    if invalid.any():
        geoms[invalid] = shapely.make_valid(geoms[invalid])
    centres = shapely.get_coordinates(shapely.centroid(geoms))
    out = pts.mean(axis=1)
    has_area = shapely.area(geoms) > 0
    out[has_area] = centres[has_area]
    return out


def build_prompts(polygons: np.ndarray, mode: str, hboxes: np.ndarray | None = None) -> PromptSet:
    """The prompts of one image's objects in a given mode (see the module docstring).

    Args:
        polygons: (N, 8) float polygons ``(x1, y1, ..., x4, y4)`` in image pixels.
        mode: one of :data:`PROMPT_MODES`.
        hboxes: optional (N, 4) ``xyxy`` horizontal boxes given by the source (used by
            ``hbox``); default: the polygons' enclosing boxes.

    Raises:
        ValueError: unknown mode or arrays of the wrong shape.
    """
    if mode not in PROMPT_MODES:
        raise ValueError(f"unknown prompt mode {mode!r}; expected one of {', '.join(PROMPT_MODES)}")
    poly = np.asarray(polygons, dtype=np.float64)
    if poly.size == 0:
        poly = poly.reshape(0, 8)
    if poly.ndim != 2 or poly.shape[1] != 8:
        raise ValueError(f"polygons must be an (N, 8) array, got shape {poly.shape}")
    rhbox = polygon_boxes(poly)
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    if mode == "hbox":
        if hboxes is None:
            boxes = rhbox
        else:
            boxes = np.asarray(hboxes, dtype=np.float64).reshape(-1, 4)
            if len(boxes) != len(poly):
                raise ValueError(f"{len(boxes)} hboxes for {len(poly)} polygons")
    if mode in ("rhbox", "rbox-mask", "rhbox+point"):
        boxes = rhbox
    if mode in ("point", "rhbox+point"):
        points = polygon_centroids(poly)
    return PromptSet(
        mode=mode,
        polygons=poly.reshape(-1, 4, 2).copy(),
        boxes=None if boxes is None else np.array(boxes, dtype=np.float64),
        points=None if points is None else np.array(points, dtype=np.float64),
        use_mask_prompt=mode == "rbox-mask",
    )
