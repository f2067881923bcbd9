"""Instance masks stored as the crop of their bounding box.

A remote-sensing tile holds tens to thousands of objects, most of them a few dozen pixels
across: a full-image boolean array per object would cost ``N x H x W`` bytes (1 GB for 1,000
objects on a 1024 x 1024 tile) and every per-mask step (metrics, run-length encoding,
painting) would scan the whole image. A :class:`MaskCrop` keeps only the mask's bounding box,
so memory and work follow the objects' sizes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from samrs.core.geometry import rasterize_geometry, rasterize_polygons, to_shapely


@dataclass
class DeviceMasks:
    """An image's full-image masks still on the segmenter's device (the GPU path), kept so
    that stages which can work there (the RLE stage, :func:`samrs.core.rle.encode_masks`) do, and
    only their results are copied back. Holds device memory until dropped.

    Attributes:
        parts: ``(positions, masks, ready)`` triples: the masks' positions in their
            ``MaskSet`` (int64 array), an (n, H, W) bool tensor, and a CUDA event after which
            the tensor is complete (None off CUDA).
    """

    parts: list[tuple[np.ndarray, Any, Any]] = field(default_factory=list)


def mask_bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    """COCO ``(x, y, w, h)`` box of a boolean mask (zeros when empty), as pycocotools'
    ``toBbox`` gives for its RLE."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return (0, 0, 0, 0)
    cols = np.flatnonzero(mask[rows[0] : rows[-1] + 1].any(axis=0))
    return (int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1), int(rows[-1] - rows[0] + 1))


def polygon_window(
    polygon: Sequence[float] | np.ndarray, pixels: float, height: int, width: int
) -> tuple[slice, slice]:
    """``(rows, cols)`` slices of the image covering the polygon grown by ``pixels``
    (possibly empty when it lies outside the image)."""
    flat = np.asarray(polygon, dtype=np.float64).reshape(-1).tolist()
    xs, ys = flat[0::2], flat[1::2]
    grow = max(float(pixels), 0.0) * math.sqrt(2.0) + 1.0  # mitred corners reach further
    x0 = min(max(math.floor(min(xs) - grow), 0), width)
    x1 = min(max(math.ceil(max(xs) + grow), 0), width)
    y0 = min(max(math.floor(min(ys) - grow), 0), height)
    y1 = min(max(math.ceil(max(ys) + grow), 0), height)
    return slice(y0, max(y0, y1)), slice(x0, max(x0, x1))


def polygon_window_mask(
    polygon: Sequence[float] | np.ndarray, pixels: float, height: int, width: int
) -> tuple[tuple[slice, slice], np.ndarray]:
    """The polygon grown by ``pixels`` (0: the polygon itself) rasterized on its window only:
    ``((rows, cols), mask)`` with ``mask`` the size of the window."""
    return polygon_window_masks([polygon], pixels, height, width)[0]


def polygon_window_masks(
    polygons: Sequence[Sequence[float] | np.ndarray] | np.ndarray,
    pixels: float,
    height: int,
    width: int,
) -> list[tuple[tuple[slice, slice], np.ndarray]]:
    """:func:`polygon_window_mask` of each polygon of an image, rasterized together
    (:func:`~samrs.core.geometry.rasterize_polygons`)."""
    windows = [polygon_window(p, pixels, height, width) for p in polygons]
    outlines: list[np.ndarray] = []
    sizes, offsets = [], []
    direct: dict[int, np.ndarray] = {}  # grown outlines with holes or several parts
    for i, ((rows, cols), polygon) in enumerate(zip(windows, polygons, strict=True)):
        h, w = rows.stop - rows.start, cols.stop - cols.start
        offset = (float(cols.start), float(rows.start))
        flat = np.asarray(polygon, dtype=np.float64).reshape(-1)
        if pixels > 0:
            grown = to_shapely(flat).buffer(pixels, join_style="mitre")
            if grown.geom_type != "Polygon" or grown.interiors:
                direct[i] = rasterize_geometry(grown, h, w, offset)
                continue
            flat = np.asarray(grown.exterior.coords)[:-1] if not grown.is_empty else flat[:0]
        outlines.append(flat)
        sizes.append((h, w))
        offsets.append(offset)
    rasterized = iter(rasterize_polygons(outlines, sizes, offsets))
    return [
        (window, direct[i] if i in direct else next(rasterized)) for i, window in enumerate(windows)
    ]


@dataclass(frozen=True, eq=False)
class MaskCrop:
    """A boolean mask of an ``height x width`` image, kept as its bounding-box crop.

    Attributes:
        height, width: the image's size.
        x, y: top-left corner of the crop in the image (0, 0 for an empty mask).
        mask: (h, w) bool, tight: its first and last rows and columns each hold a set pixel;
            (0, 0) for an empty mask.
    """

    height: int
    width: int
    x: int
    y: int
    mask: np.ndarray

    @classmethod
    def empty(cls, height: int, width: int) -> MaskCrop:
        """An empty mask of an image of this size."""
        return cls(int(height), int(width), 0, 0, np.zeros((0, 0), dtype=bool))

    @classmethod
    def from_window(cls, window: np.ndarray, x: int, y: int, height: int, width: int) -> MaskCrop:
        """The mask whose pixels inside the image window at ``(x, y)`` are ``window`` (and
        zero elsewhere), tightened to its bounding box (a copy: ``window`` may be reused)."""
        window = np.asarray(window, dtype=bool)
        wh, ww = window.shape
        if x < 0 or y < 0 or x + ww > width or y + wh > height:
            raise ValueError(
                f"a {wh}x{ww} window at ({x}, {y}) is not inside the {height}x{width} image"
            )
        bx, by, bw, bh = mask_bbox(window)
        if bw == 0:
            return cls.empty(height, width)
        crop = np.array(window[by : by + bh, bx : bx + bw], dtype=bool, copy=True)
        return cls(int(height), int(width), int(x + bx), int(y + by), crop)

    @classmethod
    def of_polygon(
        cls, polygon: Sequence[float] | np.ndarray, pixels: float, height: int, width: int
    ) -> MaskCrop:
        """The polygon grown by ``pixels`` (0: the polygon itself), rasterized (the
        ``box`` segmenter's mask and the ``box`` reject policy's substitute)."""
        return polygon_crops([polygon], pixels, height, width)[0]

    @classmethod
    def from_full(cls, mask: np.ndarray) -> MaskCrop:
        """The crop of a full-image (H, W) boolean mask."""
        mask = np.asarray(mask, dtype=bool)
        if mask.ndim != 2:
            raise ValueError(f"expected an (H, W) mask, got shape {mask.shape}")
        return cls.from_window(mask, 0, 0, *mask.shape)

    @property
    def area(self) -> int:
        """Set pixels."""
        return int(np.count_nonzero(self.mask))

    @property
    def bbox(self) -> tuple[int, int, int, int]:
        """COCO ``(x, y, w, h)`` box (zeros when empty)."""
        h, w = self.mask.shape
        return (self.x, self.y, w, h) if h else (0, 0, 0, 0)

    def full(self) -> np.ndarray:
        """The (height, width) bool mask."""
        return stack([self], self.height, self.width)[0]

    def on_window(self, rows: slice, cols: slice) -> np.ndarray:
        """The mask on the image window ``[rows, cols]`` (slices with explicit bounds inside
        the image), zero where the crop does not reach."""
        out = np.zeros((rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
        h, w = self.mask.shape
        y0, y1 = max(rows.start, self.y), min(rows.stop, self.y + h)
        x0, x1 = max(cols.start, self.x), min(cols.stop, self.x + w)
        if y0 < y1 and x0 < x1:
            out[y0 - rows.start : y1 - rows.start, x0 - cols.start : x1 - cols.start] = self.mask[
                y0 - self.y : y1 - self.y, x0 - self.x : x1 - self.x
            ]
        return out

    def placed(self, dx: int, dy: int, height: int, width: int) -> MaskCrop:
        """This mask of a sub-image moved into the ``height x width`` image in which the
        sub-image's top-left corner is ``(dx, dy)`` (e.g. a zoom crop back into its tile)."""
        if not self.mask.size:
            return MaskCrop.empty(height, width)
        h, w = self.mask.shape
        x, y = self.x + dx, self.y + dy
        if x < 0 or y < 0 or x + w > width or y + h > height:
            raise ValueError(f"the mask does not fit a {height}x{width} image at ({dx}, {dy})")
        return MaskCrop(int(height), int(width), x, y, self.mask)

    def paint(self, label: np.ndarray, value: int) -> None:
        """``label[mask] = value`` on the crop's window of an (height, width) label map."""
        h, w = self.mask.shape
        if not h:
            return
        window = label[self.y : self.y + h, self.x : self.x + w]
        # OpenCV's masked copy writes into the view, an order of magnitude faster than numpy
        cv2.copyTo(np.full_like(window, value), self.mask.view(np.uint8), window)


def polygon_crops(
    polygons: Sequence[Sequence[float] | np.ndarray], pixels: float, height: int, width: int
) -> list[MaskCrop]:
    """:meth:`MaskCrop.of_polygon` of each polygon of an image, rasterized together."""
    return [
        MaskCrop.from_window(window, cols.start, rows.start, height, width)
        for (rows, cols), window in polygon_window_masks(polygons, pixels, height, width)
    ]


def crops_of(masks: np.ndarray) -> list[MaskCrop]:
    """The crops of an (N, H, W) stack of full-image boolean masks."""
    return [MaskCrop.from_full(m) for m in np.asarray(masks, dtype=bool)]


def stack(crops: list[MaskCrop], height: int, width: int) -> np.ndarray:
    """The (N, height, width) bool stack of full-image masks (N x H x W bytes: for tests,
    viewers and small images)."""
    out = np.zeros((len(crops), height, width), dtype=bool)
    for i, crop in enumerate(crops):
        h, w = crop.mask.shape
        out[i, crop.y : crop.y + h, crop.x : crop.x + w] = crop.mask
    return out
