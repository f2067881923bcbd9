"""Device-side helpers of the SAM pipeline: input geometry, mask postprocessing, stability
score, boxes and crops. Everything here runs on whatever device its tensors are on (COCO
run-length encoding is the RLE stage's, :mod:`samrs.core.rle`)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from samrs.core.masks import MaskCrop
from samrs.devices import copy_to_host, side_stream


def resize_longest_side(height: int, width: int, long_side: int) -> tuple[int, int]:
    """``(new_h, new_w)`` of an image resized so its longest side is ``long_side``.

    The rule of segment-anything's ``ResizeLongestSide.get_preprocess_shape`` (round half up).
    """
    scale = long_side * 1.0 / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def upscale_logits(
    low_res: torch.Tensor,
    image_size: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> torch.Tensor:
    """SAM's ``postprocess_masks``: low-res logits (N, s, s) -> (N, H, W) float32 logits.

    Upsample (bilinear) to the padded model input, crop the padding, resize (bilinear) to the
    original image size. A resize to the size a tensor already has is skipped (it is exact).
    """
    x = low_res.float()[:, None]
    if x.shape[-1] != image_size or x.shape[-2] != image_size:
        x = F.interpolate(x, (image_size, image_size), mode="bilinear", align_corners=False)
    x = x[..., : input_size[0], : input_size[1]]
    if tuple(x.shape[-2:]) != tuple(original_size):
        x = F.interpolate(x, original_size, mode="bilinear", align_corners=False)
    return x[:, 0]


def upscale_logits_host(
    low_res: np.ndarray,
    image_size: int,
    input_size: tuple[int, int],
    original_size: tuple[int, int],
) -> np.ndarray:
    """:func:`upscale_logits` of one (s, s) float32 map on the host, with OpenCV's bilinear
    resize (the same half-pixel sampling and edge clamping as ``F.interpolate``, several
    times faster on the CPU; values agree to float rounding). Returns (H, W) float32."""
    x: np.ndarray = np.ascontiguousarray(low_res, dtype=np.float32)  # then OpenCV's resizes
    if x.shape != (image_size, image_size):
        x = cv2.resize(x, (image_size, image_size), interpolation=cv2.INTER_LINEAR)
    x = x[: input_size[0], : input_size[1]]
    if x.shape != tuple(original_size):
        x = cv2.resize(
            np.ascontiguousarray(x),
            (int(original_size[1]), int(original_size[0])),
            interpolation=cv2.INTER_LINEAR,
        )
    return x


def stability_score(
    logits: torch.Tensor, threshold: float = 0.0, offset: float = 1.0
) -> torch.Tensor:
    """SAM's stability score of (N, H, W) logits: IoU of the masks thresholded at
    ``threshold + offset`` and ``threshold - offset``; 0 where both are empty. Returns (N,)."""
    if logits.device.type == "cpu":  # numpy's comparisons and counts are several times faster
        x = logits.numpy()
        inter = torch.from_numpy(np.count_nonzero(x > threshold + offset, axis=(1, 2)))
        union = torch.from_numpy(np.count_nonzero(x > threshold - offset, axis=(1, 2)))
    else:
        inter = torch.count_nonzero(logits > threshold + offset, dim=(1, 2))
        union = torch.count_nonzero(logits > threshold - offset, dim=(1, 2))
    score = inter.double() / union.clamp(min=1).double()
    return score.float()


def stability_into(
    logits: np.ndarray, out: np.ndarray, threshold: float = 0.0, offset: float = 1.0
) -> float:
    """One mask on the host: ``out[...] = logits > threshold`` and its stability score.

    The same values as :func:`threshold_logits` and :func:`stability_score`, computed with one
    reused scratch array so a mask's logits are read from the cache, not from memory.

    Args:
        logits: (H, W) float32 logits.
        out: (H, W) bool array receiving the mask (e.g. a slice of a MaskSet's masks).
        threshold, offset: see :func:`stability_score`.
    """
    np.greater(logits, threshold, out=out)
    scratch = np.empty(logits.shape, dtype=bool)
    inter = int(np.count_nonzero(np.greater(logits, threshold + offset, out=scratch)))
    union = int(np.count_nonzero(np.greater(logits, threshold - offset, out=scratch)))
    return float(np.float32(inter / max(union, 1)))


def threshold_logits(logits: torch.Tensor, threshold: float = 0.0) -> torch.Tensor:
    """Boolean masks ``logits > threshold`` (numpy's faster comparison on the CPU)."""
    if logits.device.type == "cpu":
        return torch.from_numpy(logits.numpy() > threshold)
    return logits > threshold


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """``(N, 4)`` int64 ``x0, y0, x1, y1`` (exclusive ends) of (N, H, W) boolean masks,
    computed where the masks are (two reductions); an empty mask gets ``x1 <= x0``."""
    n, h, w = masks.shape
    rows, cols = masks.any(dim=2), masks.any(dim=1)
    ys = torch.arange(h, device=masks.device).expand(n, h)
    xs = torch.arange(w, device=masks.device).expand(n, w)
    return torch.stack(
        [
            torch.where(cols, xs, w).amin(dim=1) if w else torch.zeros(n, dtype=torch.long),
            torch.where(rows, ys, h).amin(dim=1) if h else torch.zeros(n, dtype=torch.long),
            torch.where(cols, xs, -1).amax(dim=1) + 1 if w else torch.zeros(n, dtype=torch.long),
            torch.where(rows, ys, -1).amax(dim=1) + 1 if h else torch.zeros(n, dtype=torch.long),
        ],
        dim=1,
    )


def crops_from_boxes(masks: torch.Tensor, boxes: np.ndarray, ready: Any = None) -> list[MaskCrop]:
    """:class:`~samrs.core.masks.MaskCrop` of (N, H, W) boolean masks on any device, given their
    :func:`mask_boxes` on the host: the crops' pixels are gathered into one buffer on the
    masks' device and copied once, so the host receives the objects' pixels, not N x H x W.

    On CUDA the gather and the copy (into pinned memory) run on a side stream that waits on
    ``ready`` (an event after which the masks are complete; None: the work queued so far),
    so work queued after the masks is not waited for. Equal to ``MaskCrop.from_full(mask)``
    for every mask.
    """
    n, h, w = masks.shape
    shapes = []
    for i in range(n):
        x0, y0, x1, y1 = (int(v) for v in boxes[i])
        if x1 > x0 and y1 > y0:
            shapes.append((i, x0, y0, y1 - y0, x1 - x0))
    crops = [MaskCrop.empty(h, w) for _ in range(n)]
    if not shapes:
        return crops
    with side_stream(masks, ready) as stream:
        flat_dev = torch.cat(
            [masks[i, y0 : y0 + ch, x0 : x0 + cw].reshape(-1) for i, x0, y0, ch, cw in shapes]
        )
        flat = copy_to_host(flat_dev, stream)
    start = 0
    for i, x0, y0, ch, cw in shapes:
        crops[i] = MaskCrop(h, w, x0, y0, flat[start : start + ch * cw].reshape(ch, cw))
        start += ch * cw
    return crops
