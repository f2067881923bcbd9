"""COCO run-length encoding of binary masks (column-major, ASCII counts)."""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils


def encode(mask: np.ndarray) -> dict[str, object]:
    """COCO RLE ``{"size": [h, w], "counts": str}`` of a boolean (h, w) mask."""
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    return {
        "size": [int(rle["size"][0]), int(rle["size"][1])],
        "counts": rle["counts"].decode("ascii"),
    }


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
