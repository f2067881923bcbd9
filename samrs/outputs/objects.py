"""Object-level view of a tiled build: one mask per source object, on the full source image.

With overlapping tiles one source object becomes several instances (one per tile that keeps
it). Every instance row carries ``source_image_id`` and ``source_object_index``; this module
relates them.

**Which tile's mask represents an object** (:func:`edge_distance`, :func:`pick`): the tile
where the object lies farthest from a tile edge. A tile's *cutting edges* are the sides of its
window that lie strictly inside the source image (a side on the image border cuts nothing).
The object's distance to the tile edge is the smallest signed distance, in source pixels, from
any corner of its polygon to any cutting edge (positive inside the window, negative for a
corner outside it: a cut object); ``inf`` when the window has no cutting edge (the tile is
the whole image). The instance with the largest distance wins; ties (distances equal to
1e-6 px) go to the smallest ``instance_id`` (the first tile in plan order). Only the selected
instances take part (kept ones, and rejected ones with ``include_rejected``).

The chosen mask is pasted into source-image coordinates at its window's offset (pixels of a
padded window that fall outside the image are dropped); the polygon is moved the same way.

**Cross-tile agreement** (:func:`cross_tile_agreement`): for every source object kept in two
or more tiles, the IoU of each pair of its masks computed in source coordinates *within the
intersection of the two windows* (the pixels both tiles see, so a cut copy is not penalised
for the part its tile cannot see); pairs where neither mask has a pixel there are skipped.

Tiles of one source image are consecutive in a build (the plan keeps them together), so both
functions stream the build one source image at a time.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from samrs.core import rle
from samrs.core.masks import MaskCrop
from samrs.outputs.select import ImageItem, Selection, iter_build

TIE_TOLERANCE = 1e-6
"""Distances closer than this (pixels) are a tie (broken by the smaller ``instance_id``)."""


def edge_distance(
    polygon: Sequence[float],
    window: Sequence[int] | None,
    source_width: int,
    source_height: int,
) -> float:
    """Smallest signed distance (source pixels) from the polygon's corners to the window's
    cutting edges (see the module docstring); ``polygon`` in source coordinates."""
    if window is None:
        return math.inf
    x, y, w, h = (int(v) for v in window)
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    dists = []
    if x > 0:
        dists.append(pts[:, 0] - x)
    if y > 0:
        dists.append(pts[:, 1] - y)
    if x + w < source_width:
        dists.append((x + w) - pts[:, 0])
    if y + h < source_height:
        dists.append((y + h) - pts[:, 1])
    if not dists:
        return math.inf
    return float(np.min(np.concatenate(dists)))


@dataclass
class Copy:
    """One instance of a source object: its tile (item), row, and mask in source pixels."""

    item: ImageItem
    row: dict[str, Any]
    distance: float
    mask: MaskCrop

    @property
    def window(self) -> tuple[int, int, int, int]:
        """The tile's window in the source image (the whole image for untiled rows)."""
        window = self.item.image["tile_window"]
        if window is None:
            return (0, 0, self.mask.width, self.mask.height)
        x, y, w, h = (int(v) for v in window)
        return (x, y, w, h)


@dataclass
class SourceObject:
    """A source object and its instances (copies), in ``instance_id`` order."""

    source_image_id: str
    index: int
    copies: list[Copy] = field(default_factory=list)

    @property
    def chosen(self) -> Copy:
        """The copy farthest from a tile edge (ties: the smallest ``instance_id``)."""
        return pick(self.copies)

    def source_polygon(self) -> list[float]:
        """The chosen copy's polygon in source coordinates."""
        copy = self.chosen
        x, y = copy.window[:2]
        pts = np.asarray(copy.row["polygon"], dtype=np.float64).reshape(-1, 2) + np.array([x, y])
        return [float(v) for v in pts.reshape(-1)]


def pick(copies: Sequence[Copy]) -> Copy:
    """The copy with the largest edge distance; ties go to the smallest ``instance_id``."""
    if not copies:
        raise ValueError("an object without instances has no mask to pick")
    best = copies[0]
    for c in copies[1:]:
        gain = c.distance - best.distance
        if gain > TIE_TOLERANCE or (
            abs(gain) <= TIE_TOLERANCE and int(c.row["instance_id"]) < int(best.row["instance_id"])
        ):
            best = c
    return best


@dataclass
class SourceImage:
    """A source image: its size and file, the tiles seen, and its objects in index order."""

    source_image_id: str
    width: int
    height: int
    file: str
    split: str | None
    tiles: list[ImageItem] = field(default_factory=list)
    objects: list[SourceObject] = field(default_factory=list)


def source_size(image: dict[str, Any]) -> tuple[int, int]:
    """``(width, height)`` of an images row's source image.

    Raises:
        ValueError: a tile of a build made before the ``source_width``/``source_height``
            columns (its source size is unknown: rebuild).
    """
    if image.get("source_width") and image.get("source_height"):
        return int(image["source_width"]), int(image["source_height"])
    if image["tile_window"] is None:
        return int(image["width"]), int(image["height"])
    raise ValueError(
        f"tile {image['image_id']!r} has no source_width/source_height (a build made before "
        "samrs recorded them); rebuild it for object-level outputs"
    )


def source_mask(item: ImageItem, row: dict[str, Any], width: int, height: int) -> MaskCrop:
    """An instance's mask moved from its tile into the ``width x height`` source image."""
    crop = MaskCrop.from_full(rle.decode(item.rle(row)))
    window = item.image["tile_window"]
    if window is None or not crop.mask.size:
        return crop if window is None else MaskCrop.empty(height, width)
    x0, y0 = crop.x + int(window[0]), crop.y + int(window[1])
    h, w = crop.mask.shape
    cx0, cy0 = max(x0, 0), max(y0, 0)
    cx1, cy1 = min(x0 + w, width), min(y0 + h, height)
    if cx0 >= cx1 or cy0 >= cy1:
        return MaskCrop.empty(height, width)
    part = crop.mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return MaskCrop.from_window(part, cx0, cy0, height, width)


def _source_key(image: dict[str, Any]) -> str:
    return str(image.get("source_image_id") or image["image_id"])


def iter_source_images(
    out: str | Path,
    sel: Selection | None = None,
    *,
    class_table: Any = None,
    on_reject: str | None = None,
) -> Iterator[SourceImage]:
    """The build's source images with their objects' copies, one source image at a time.

    Objects are those with at least one selected instance, ordered by ``source_object_index``.
    """
    current: SourceImage | None = None
    objects: dict[int, SourceObject] = {}

    def finish(img: SourceImage) -> SourceImage:
        img.objects = [objects[k] for k in sorted(objects)]
        return img

    for item in iter_build(out, sel, class_table=class_table, on_reject=on_reject):
        key = _source_key(item.image)
        if current is None or current.source_image_id != key:
            if current is not None:
                yield finish(current)
            width, height = source_size(item.image)
            current = SourceImage(
                key, width, height, str(item.image["source_file"]), item.image["split"]
            )
            objects = {}
        current.tiles.append(item)
        window = item.image["tile_window"]
        dx, dy = (0, 0) if window is None else (int(window[0]), int(window[1]))
        for row in item.instances:
            index = row.get("source_object_index")
            index = int(row["object_index"]) if index is None else int(index)
            poly = np.asarray(row["polygon"], dtype=np.float64).reshape(-1, 2) + np.array([dx, dy])
            dist = edge_distance(poly.reshape(-1), window, current.width, current.height)
            mask = source_mask(item, row, current.width, current.height)
            obj = objects.setdefault(index, SourceObject(key, index))
            obj.copies.append(Copy(item, row, dist, mask))
    if current is not None:
        yield finish(current)


def _window_iou(a: Copy, b: Copy, width: int, height: int) -> float | None:
    """IoU of two copies' masks within the intersection of their windows (None: both
    empty there)."""
    ax, ay, aw, ah = a.window
    bx, by, bw, bh = b.window
    x0, y0 = max(ax, bx, 0), max(ay, by, 0)
    x1, y1 = min(ax + aw, bx + bw, width), min(ay + ah, by + bh, height)
    if x0 >= x1 or y0 >= y1:
        return None
    rows, cols = slice(y0, y1), slice(x0, x1)
    ma, mb = a.mask.on_window(rows, cols), b.mask.on_window(rows, cols)
    union = int(np.count_nonzero(ma | mb))
    if not union:
        return None
    return float(np.count_nonzero(ma & mb) / union)


def object_agreement(obj: SourceObject, width: int, height: int) -> list[float]:
    """IoUs of every pair of an object's copies (see the module docstring)."""
    out = []
    for i, a in enumerate(obj.copies):
        for b in obj.copies[i + 1 :]:
            iou = _window_iou(a, b, width, height)
            if iou is not None:
                out.append(iou)
    return out


def cross_tile_agreement(out: str | Path, worst: int = 10) -> dict[str, Any]:
    """Agreement of the kept masks of each source object across the tiles that keep it.

    Returns ``{"objects": objects in 2+ tiles, "pairs": compared pairs, "median_iou",
    "min_iou", "p05_iou"`` (None without pairs) ``, "worst": [{source_image_id,
    source_object_index, class_name, min_iou, tiles}]}`` (lowest first, at most ``worst``).
    """
    ious: list[float] = []
    per_object: list[tuple[float, str, int, str, int]] = []
    n_objects = 0
    for img in iter_source_images(out, Selection()):
        for obj in img.objects:
            if len(obj.copies) < 2:
                continue
            n_objects += 1
            pair_ious = object_agreement(obj, img.width, img.height)
            if pair_ious:
                ious.extend(pair_ious)
                name = str(obj.copies[0].row.get("class_name", ""))
                per_object.append((min(pair_ious), img.source_image_id, obj.index, name,
                                   len(obj.copies)))  # fmt: skip
    arr = np.asarray(ious, dtype=np.float64)
    per_object.sort()
    return {
        "objects": n_objects,
        "pairs": int(arr.size),
        "median_iou": float(np.median(arr)) if arr.size else None,
        "min_iou": float(arr.min()) if arr.size else None,
        "p05_iou": float(np.quantile(arr, 0.05)) if arr.size else None,
        "worst": [
            {
                "source_image_id": sid,
                "source_object_index": idx,
                "class_name": name,
                "min_iou": round(v, 6),
                "tiles": n,
            }
            for v, sid, idx, name, n in per_object[:worst]
        ],
    }
