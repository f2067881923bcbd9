"""COCO run-length encoding of binary masks (column-major, ASCII counts)."""

from __future__ import annotations

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from samrs.masks import MaskCrop

FULL_ENCODE_SHARE = 0.25
"""Crops covering at least this share of their image are encoded by pycocotools on the full
mask (its C loop beats collecting many runs in numpy); smaller ones run length by run length."""


def column_major(mask: np.ndarray) -> np.ndarray:
    """A boolean (h, w) mask as the column-major (Fortran-ordered) uint8 array pycocotools
    encodes, transposed by OpenCV (several times faster than numpy's copy for 1 MB masks)."""
    arr = np.ascontiguousarray(mask, dtype=bool)
    if arr.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {arr.shape}")
    if arr.size == 0:
        return np.asfortranarray(arr, dtype=np.uint8)
    return cv2.transpose(arr.view(np.uint8)).T


def encode(mask: np.ndarray) -> dict[str, object]:
    """COCO RLE ``{"size": [h, w], "counts": str}`` of a boolean (h, w) mask."""
    rle = mask_utils.encode(column_major(mask))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


def encode_crop(crop: MaskCrop, full_share: float = FULL_ENCODE_SHARE) -> dict[str, object]:
    """:func:`encode` of a :class:`~samrs.masks.MaskCrop`'s full mask (the same string), with
    work proportional to the crop for crops under ``full_share`` of the image."""
    height, width = crop.height, crop.width
    h, w = crop.mask.shape
    if h * w >= full_share * height * width:
        return encode(crop.full())
    if h == 0:
        return from_run_lengths([height * width], height, width)
    # the crop's columns with a blank row above and below, so no run crosses a column
    padded = np.zeros((w, h + 2), dtype=np.int8)
    padded[:, 1:-1] = crop.mask.T
    step = np.diff(padded.reshape(-1))
    begins = np.flatnonzero(step == 1) + 1
    ends = np.flatnonzero(step == -1) + 1
    column, row = np.divmod(begins, h + 2)
    begins = (crop.x + column) * height + crop.y + row - 1
    column, row = np.divmod(ends, h + 2)
    ends = (crop.x + column) * height + crop.y + row - 1
    joined = ends[:-1] == begins[1:]  # a column's run going on at the top of the next one
    if joined.any():
        begins = np.concatenate([begins[:1], begins[1:][~joined]])
        ends = np.concatenate([ends[:-1][~joined], ends[-1:]])
    runs = np.empty(2 * begins.size + 1, dtype=np.int64)
    runs[0] = begins[0]
    runs[1::2] = ends - begins
    runs[2:-1:2] = begins[1:] - ends[:-1]
    runs[-1] = height * width - ends[-1]
    return from_run_lengths(runs if runs[-1] else runs[:-1], height, width)


def from_run_lengths(runs: list[int] | np.ndarray, height: int, width: int) -> dict[str, object]:
    """COCO RLE from uncompressed column-major run lengths (starting with a run of zeros)."""
    rle = mask_utils.frPyObjects(
        {"size": [height, width], "counts": [int(r) for r in runs]}, height, width
    )
    return {"size": [height, width], "counts": rle["counts"].decode("ascii")}


def decode(rle: dict[str, object]) -> np.ndarray:
    """Boolean (h, w) mask of a COCO RLE with ASCII or bytes counts."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return mask_utils.decode({"size": list(rle["size"]), "counts": counts}).astype(bool)


def area(rle: dict[str, object]) -> int:
    """Foreground pixel count of a COCO RLE."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return int(mask_utils.area({"size": list(rle["size"]), "counts": counts}))


def bbox(rle: dict[str, object]) -> list[float]:
    """COCO ``[x, y, w, h]`` box of a COCO RLE (zeros for an empty mask)."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return [float(v) for v in mask_utils.toBbox({"size": list(rle["size"]), "counts": counts})]


def run_lengths(rle: dict[str, object]) -> np.ndarray:
    """Uncompressed column-major run lengths (int64, starting with a run of zeros) of a COCO
    RLE with compressed ASCII/bytes counts or a list of counts (inverse of
    :func:`from_run_lengths`)."""
    counts = rle["counts"]
    if isinstance(counts, list | tuple | np.ndarray):
        return np.asarray(counts, dtype=np.int64)
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    b = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if b.size == 0:
        return np.zeros(0, dtype=np.int64)
    # COCO's LEB128-like code: 5 bits per char, 0x20 = more chars follow, 0x10 in the last
    # char = negative; from the 4th value on, each is a delta to the value two before it.
    ends = np.flatnonzero((b & 0x20) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    shift = 5 * (np.arange(b.size) - np.repeat(starts, ends - starts + 1))
    x = np.add.reduceat((b & 0x1F) << shift, starts)
    negative = (b[ends] & 0x10) != 0
    x[negative] -= np.left_shift(1, 5 * (ends - starts + 1))[negative]
    x[1::2] = np.cumsum(x[1::2])
    x[2::2] = np.cumsum(x[2::2])
    return x


def decode_window(rle: dict[str, object], window: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask of a window ``(x, y, w, h)`` of a COCO RLE, without decoding the rest.

    Equal to ``decode(rle)[y:y+h, x:x+w]`` for a window inside the mask; memory is
    proportional to the image height times ``w``.
    """
    height, width = (int(v) for v in rle["size"])  # type: ignore[union-attr]
    x, y, w, h = (int(v) for v in window)
    if min(x, y, w, h) < 0 or x + w > width or y + h > height:
        raise ValueError(f"window {window} is not inside the {height}x{width} mask")
    runs = run_lengths(rle)
    ends = np.cumsum(runs)
    begins = ends - runs
    lo, hi = x * height, (x + w) * height
    fg_begin = np.clip(begins[1::2], lo, hi) - lo
    fg_end = np.clip(ends[1::2], lo, hi) - lo
    diff = np.zeros(hi - lo + 1, dtype=np.int32)
    np.add.at(diff, fg_begin, 1)
    np.add.at(diff, fg_end, -1)
    flat = np.cumsum(diff[:-1]) > 0
    return flat.reshape(w, height).T[y : y + h].copy()
