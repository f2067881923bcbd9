"""Evaluation metrics and masks placed in a frame: box IoU, boundary IoU with a per-object
band, and the masks (:class:`samrs.core.masks.MaskCrop`) placed in a frame, and RLE helpers the other parts share."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from samrs.core import rle
from samrs.core.geometry import mask_iou
from samrs.core.masks import MaskCrop
from samrs.errors import SamrsError

DEFAULT_BAND_FRACTION = 0.02
"""Boundary band as a fraction of the object's box diagonal (at least 1 px)."""

DEFAULT_MATCH_IOU = 0.5
"""Minimum box IoU for matching an instance to a GT object by box overlap."""

IDENTITY_MIN_BOX_IOU = 0.1
"""An identity match is accepted only when the two boxes overlap at least this much."""

SIZE_BUCKETS = (("small", 32**2), ("medium", 96**2), ("large", math.inf))
"""Size buckets by GT area in pixels: ``area < limit`` of the first bucket that fits."""

GOOD_IOU = 0.5
"""A mask with IoU below this counts as bad in the filter report."""

HRSC_MASK_DIRS = ("Segmentations", "Segmentation", "SegmentationObject", "Masks", "LandMask")
"""Folders (siblings of an HRSC2016 ``Annotations`` folder) searched for ``<id>.png``."""


class EvaluationError(SamrsError, ValueError):
    """Unusable prediction folder or ground truth (the message names the file)."""


# --- pure metrics ---------------------------------------------------------------------------


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``xyxy`` boxes; 0 when the union is empty."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def object_band(box: Sequence[float], fraction: float = DEFAULT_BAND_FRACTION) -> float:
    """Boundary band in pixels of an object with ``xyxy`` box: fraction of its diagonal, >= 1."""
    return max(1.0, fraction * math.hypot(box[2] - box[0], box[3] - box[1]))


def boundary_region(mask: np.ndarray, band: float) -> np.ndarray:
    """Pixels of ``mask`` within ``band`` pixels of its contour (the inner boundary band).

    A pixel is in the band when its Euclidean distance (centre to centre) to the nearest pixel
    outside the mask is at most ``band``; pixels outside the array count as outside the mask.
    With ``band = 1`` the band is the mask pixels 4-adjacent to the outside.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    padded = np.pad(mask, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return mask & (dist <= band)


def _union_crop(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero((a | b).any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero((a | b).any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def boundary_iou(a: np.ndarray, b: np.ndarray, band: float) -> float:
    """Boundary IoU (Cheng et al. 2021) of two boolean masks with a band of ``band`` pixels.

    IoU of the two inner boundary bands (:func:`boundary_region`); 0 when both are empty.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    crop = _union_crop(a, b)
    if crop is None:
        return 0.0
    # cropping to the union box changes nothing: pixels next to it are outside both masks
    return mask_iou(boundary_region(a[crop], band), boundary_region(b[crop], band))


# --- masks placed in a frame ----------------------------------------------------------------


def _xyxy(mask: MaskCrop) -> tuple[int, int, int, int]:
    """The crop's corners ``(x0, y0, x1, y1)`` (zeros when empty)."""
    h, w = mask.mask.shape
    return (mask.x, mask.y, mask.x + w, mask.y + h)


def _into_window(mask: MaskCrop, window: Sequence[int], width: int, height: int) -> MaskCrop:
    """A mask in source pixels as seen by a tile of ``window`` with ``width x height``."""
    wx, wy, ww, wh = (int(v) for v in window)
    x0, y0, x1, y1 = _xyxy(mask)
    cx0, cy0, cx1, cy1 = max(x0, wx), max(y0, wy), min(x1, wx + ww), min(y1, wy + wh)
    if cx1 <= cx0 or cy1 <= cy0:
        return MaskCrop.empty(height, width)
    part = mask.mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    if (ww, wh) == (width, height):
        return MaskCrop.from_window(part, cx0 - wx, cy0 - wy, height, width)
    canvas = np.zeros((wh, ww), dtype=np.uint8)
    canvas[cy0 - wy : cy1 - wy, cx0 - wx : cx1 - wx] = part
    resized = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_NEAREST)
    return MaskCrop.from_full(resized.astype(bool))


def _clipped(mask: MaskCrop, width: int, height: int) -> MaskCrop:
    """The part of a mask inside a ``width x height`` frame."""
    return _into_window(mask, (0, 0, width, height), width, height)


def _pair(a: MaskCrop, b: MaskCrop) -> tuple[np.ndarray, np.ndarray]:
    """Both masks on their common bounding box."""
    boxes = [_xyxy(m) for m in (a, b) if m.mask.size]
    if not boxes:
        return np.zeros((0, 0), dtype=bool), np.zeros((0, 0), dtype=bool)
    x0, y0 = min(bx[0] for bx in boxes), min(bx[1] for bx in boxes)
    x1, y1 = max(bx[2] for bx in boxes), max(bx[3] for bx in boxes)
    out = []
    for m in (a, b):
        canvas = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        if m.mask.size:
            h, w = m.mask.shape
            canvas[m.y - y0 : m.y - y0 + h, m.x - x0 : m.x - x0 + w] = m.mask
        out.append(canvas)
    return out[0], out[1]


def _checked_rle(counts: object, height: int, width: int) -> dict[str, Any]:
    """A COCO RLE (bytes counts) checked to cover exactly ``height x width`` pixels.

    pycocotools decodes malformed counts into garbage without complaint, hence the check.

    Raises:
        ValueError: not a string, malformed counts, a negative run or the wrong total.
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    if not isinstance(counts, bytes):
        raise ValueError(f"counts must be a string, not {type(counts).__name__}")
    result = {"size": [int(height), int(width)], "counts": counts}
    try:
        runs = rle.run_lengths(result)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"malformed counts ({exc})") from exc
    if (runs < 0).any() or int(runs.sum()) != height * width:
        raise ValueError(f"runs cover {int(runs.sum())} pixels, not {height}x{width}")
    return result


def _placed_rle(coco_rle: dict[str, Any]) -> MaskCrop:
    """The mask of a COCO RLE cropped to its box, decoding only the box's columns."""
    height, width = (int(v) for v in coco_rle["size"])
    x, y, w, h = (int(v) for v in mask_utils.toBbox(coco_rle))
    if w <= 0 or h <= 0:
        return MaskCrop.empty(height, width)
    return MaskCrop(height, width, x, y, rle.decode_window(coco_rle, (x, y, w, h)))


def _encode_placed(mask: MaskCrop, width: int, height: int) -> dict[str, Any]:
    """COCO RLE (bytes counts) of a placed mask in a ``width x height`` frame, built from the
    strip of columns it spans (no full-frame array)."""
    if not mask.mask.size:
        return mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]},
                                      height, width)  # fmt: skip
    h, w = mask.mask.shape
    strip = np.zeros((w, height), dtype=np.int8)  # column-major: one row per frame column
    strip[:, mask.y : mask.y + h] = mask.mask.T
    flat = strip.ravel()
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    if flat[0]:
        runs = np.concatenate([[0], runs])
    runs[0] += mask.x * height
    tail = (width - mask.x - w) * height
    if flat[-1]:
        runs = np.concatenate([runs, [tail]])
    else:
        runs[-1] += tail
    return mask_utils.frPyObjects(
        {"size": [height, width], "counts": [int(r) for r in runs]}, height, width
    )
