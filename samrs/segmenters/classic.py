"""Segmenters without weights: ``box`` (the baseline) and ``grabcut`` (OpenCV GrabCut).

``box`` returns the rasterized prompt: the polygon for ``rbox-mask`` prompts, else the box
prompt, else (points only) the polygon. ``grabcut`` refines that region with GrabCut:

- it works on a crop around the box with a margin of ``max(margin_px, margin_ratio * side)``,
  shrunk so its longest side is at most ``max_side`` pixels (the result is scaled back);
- initial labels: outside the prompt region = sure background, inside = probable
  foreground; for ``rbox-mask`` prompts, the part of the enclosing box outside the polygon is
  probable background;
- ``iterations`` rounds, OpenCV's RNG seeded with ``seed`` before every object, so results do
  not depend on the order or grouping of objects;
- it falls back to the prompt mask (``MaskSet.fallback`` True) when the box is smaller than
  ``min_side`` pixels, when the crop holds too few background pixels to model (an object
  covering the image), or when GrabCut leaves nothing in the foreground.

A box touching the image border is handled: the crop is clipped to the image and the
background is modelled from the sides that remain. Scores and stability are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from samrs.geometry import box_polygon, rasterize_polygon
from samrs.masks import MaskCrop, polygon_crops
from samrs.segmenters.base import MaskSet, PromptSet, Segmenter, as_rgb


def prompt_regions(prompts: PromptSet, height: int, width: int) -> list[MaskCrop]:
    """The region each prompt outlines (see the module docstring), rasterized."""
    regions = [_region_polygon(prompts, i) for i in range(len(prompts))]
    return polygon_crops(regions, 0.0, height, width)


def _region_polygon(prompts: PromptSet, i: int) -> np.ndarray:
    if prompts.use_mask_prompt or prompts.boxes is None:
        return np.asarray(prompts.polygons[i], dtype=np.float64).reshape(-1)
    return np.asarray(box_polygon(prompts.boxes[i]), dtype=np.float64)


class BoxSegmenter(Segmenter):
    """The rasterized prompt itself: the baseline every segmenter is compared with."""

    name = "box"

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """One :class:`MaskSet` per image; scores and stability NaN."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompt sets for {len(images)} images")
        out = []
        for image, ps in zip(images, prompts, strict=True):
            height, width = int(image.shape[0]), int(image.shape[1])
            nan = np.full(len(ps), np.nan, dtype=np.float32)
            out.append(MaskSet(prompt_regions(ps, height, width), height, width, nan, nan.copy()))
        return out


class GrabCutSegmenter(Segmenter):
    """OpenCV GrabCut initialised from each prompt (see the module docstring).

    Args:
        iterations: GrabCut rounds.
        seed: OpenCV RNG seed (set before every object).
        min_side: boxes with a side below this many pixels fall back to the prompt mask.
        margin_px, margin_ratio: crop margin around the box.
        max_side: longest side of the crop GrabCut works on.
    """

    name = "grabcut"

    def __init__(
        self,
        iterations: int = 5,
        seed: int = 0,
        min_side: float = 6.0,
        margin_px: int = 10,
        margin_ratio: float = 0.3,
        max_side: int = 320,
    ) -> None:
        self.iterations = int(iterations)
        self.seed = int(seed)
        self.min_side = float(min_side)
        self.margin_px = int(margin_px)
        self.margin_ratio = float(margin_ratio)
        self.max_side = int(max_side)

    def describe(self) -> dict[str, object]:
        """Name and GrabCut settings."""
        return {
            "segmenter": self.name,
            "iterations": self.iterations,
            "seed": self.seed,
            "min_side": self.min_side,
            "max_side": self.max_side,
        }

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """One :class:`MaskSet` per image; ``fallback`` marks objects left as their prompt."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompt sets for {len(images)} images")
        out = []
        for image, ps in zip(images, prompts, strict=True):
            rgb = as_rgb(image)
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            height, width = rgb.shape[:2]
            n = len(ps)
            crops, fallback = [], np.zeros(n, dtype=bool)
            boxes = ps.enclosing_boxes()
            for i in range(n):
                crop, fallback[i] = self._one(bgr, ps, i, boxes[i])
                crops.append(crop)
            nan = np.full(n, np.nan, dtype=np.float32)
            out.append(MaskSet(crops, height, width, nan, nan.copy(), fallback=fallback))
        return out

    def _one(
        self, bgr: np.ndarray, ps: PromptSet, i: int, box: np.ndarray
    ) -> tuple[MaskCrop, bool]:
        """Object ``i``'s mask, and True when it fell back to the prompt region."""
        height, width = bgr.shape[:2]
        region_poly = _region_polygon(ps, i)
        x0, y0, x1, y1 = (float(v) for v in box)
        side = max(x1 - x0, y1 - y0)
        margin = max(self.margin_px, self.margin_ratio * side)
        cx0 = int(np.clip(math.floor(x0 - margin), 0, width))
        cy0 = int(np.clip(math.floor(y0 - margin), 0, height))
        cx1 = int(np.clip(math.ceil(x1 + margin), 0, width))
        cy1 = int(np.clip(math.ceil(y1 + margin), 0, height))
        ch, cw = cy1 - cy0, cx1 - cx0

        def fall_back() -> tuple[MaskCrop, bool]:
            if ch <= 0 or cw <= 0:
                return MaskCrop.empty(height, width), True
            region = rasterize_polygon(region_poly, ch, cw, (cx0, cy0))
            return MaskCrop.from_window(region, cx0, cy0, height, width), True

        if min(x1 - x0, y1 - y0) < self.min_side or ch <= 0 or cw <= 0:
            return fall_back()
        offset = (float(cx0), float(cy0))
        region = rasterize_polygon(region_poly, ch, cw, offset)
        labels = np.full((ch, cw), cv2.GC_BGD, dtype=np.uint8)
        allowed = region
        if ps.use_mask_prompt:
            allowed = rasterize_polygon(box_polygon(box), ch, cw, offset) | region
            labels[allowed] = cv2.GC_PR_BGD
        labels[region] = cv2.GC_PR_FGD
        n_fg = int(np.count_nonzero(region))
        n_bg = int(np.count_nonzero(labels != cv2.GC_PR_FGD))
        if n_fg < 16 or n_bg < 64:
            return fall_back()
        crop = bgr[cy0:cy1, cx0:cx1]
        scale = min(1.0, self.max_side / max(ch, cw))
        if scale < 1.0:
            size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        crop = np.ascontiguousarray(crop)
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        try:
            cv2.grabCut(crop, labels, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK)
        except cv2.error:
            return fall_back()
        fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale < 1.0:
            fg = cv2.resize(fg * 255, (cw, ch), interpolation=cv2.INTER_LINEAR) > 127
        fg = fg.astype(bool) & allowed
        if not fg.any():
            return fall_back()
        return MaskCrop.from_window(fg, cx0, cy0, height, width), False
