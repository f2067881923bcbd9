"""Segmenters without weights: ``box`` (the baseline) and ``grabcut`` (OpenCV GrabCut).

``box`` returns the rasterized prompt: the polygon for ``rbox-mask`` prompts, else the box
prompt, else (points only) the polygon. ``grabcut`` refines the object's rotated polygon with
GrabCut initialised from a mask (``cv2.GC_INIT_WITH_MASK``):

- context: a crop around the prompt's box with a margin of
  ``max(margin_px, margin_ratio * sqrt(polygon area))`` (a long thin object gets a margin
  that follows its width, not its length), scaled so its longest side is at most
  ``max_side`` pixels, and magnified (up to 4x) so the polygon's short side is at least
  ``min_work_side`` pixels (GrabCut needs a few pixels of object to model it); the result is
  scaled back;
- initial labels: **sure background** outside the polygon grown by a band of
  ``max(2, band_ratio * short side)`` pixels (and outside the box prompt); **probable
  background** in that band and in the part of the box prompt outside the polygon;
  **probable foreground** inside the polygon; **sure foreground** in the core, a box about the polygon's
  centre ``core_ratio`` of its short side across and, along its long side, ``core_ratio`` of
  it or all but one short side, whichever is longer (a pier is sure along most of its length);
- ``iterations`` rounds, OpenCV's RNG seeded with ``seed`` before every object, so results do
  not depend on the order or grouping of objects; the mask is the foreground connected to the
  core, within the grown polygon.

It falls back to the prompt mask (``MaskSet.fallback`` True, the reason in
``MaskSet.fallback_reason``) when the polygon's short side is below ``min_side`` pixels
(``box smaller than N px``), when the crop holds too few background pixels to model (``too
little background``: an object covering the image), when OpenCV fails (``grabcut error``), or
when GrabCut keeps no more than the sure core (``foreground collapsed to the core``: it found
no object edge). A box touching the image border is handled: the crop is clipped to the image
and the background is modelled from the sides that remain. Scores and stability are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from samrs.core.geometry import box_polygon, dilated_polygon_mask, rasterize_polygon
from samrs.core.masks import MaskCrop, polygon_crops
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
    """OpenCV GrabCut initialised from each object's rotated polygon (see the module
    docstring).

    Args:
        iterations: GrabCut rounds.
        seed: OpenCV RNG seed (set before every object).
        min_side: polygons with a side below this many pixels fall back to the prompt mask.
        margin_px, margin_ratio: context margin of the crop around the box (pixels, and a
            share of the square root of the polygon's area).
        max_side: longest side of the crop GrabCut works on.
        band_ratio: width of the probable-background band, as a share of the short side.
        core_ratio: size of the sure-foreground core, as a share of the polygon's short side
            (0: none).
        min_work_side: small objects are magnified until their short side has this many
            pixels (at most 4x).
    """

    name = "grabcut"

    def __init__(
        self,
        iterations: int = 8,
        seed: int = 0,
        min_side: float = 4.0,
        margin_px: int = 16,
        margin_ratio: float = 0.5,
        max_side: int = 320,
        band_ratio: float = 0.25,
        core_ratio: float = 0.35,
        min_work_side: float = 24.0,
    ) -> None:
        self.iterations = int(iterations)
        self.seed = int(seed)
        self.min_side = float(min_side)
        self.margin_px = int(margin_px)
        self.margin_ratio = float(margin_ratio)
        self.max_side = int(max_side)
        self.band_ratio = float(band_ratio)
        self.core_ratio = float(core_ratio)
        self.min_work_side = float(min_work_side)

    def describe(self) -> dict[str, object]:
        """Name and GrabCut settings."""
        return {
            "segmenter": self.name,
            "iterations": self.iterations,
            "seed": self.seed,
            "min_side": self.min_side,
            "margin_px": self.margin_px,
            "margin_ratio": self.margin_ratio,
            "max_side": self.max_side,
            "band_ratio": self.band_ratio,
            "core_ratio": self.core_ratio,
            "min_work_side": self.min_work_side,
        }

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """One :class:`MaskSet` per image; ``fallback`` and ``fallback_reason`` mark objects
        left as their prompt, and why."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompt sets for {len(images)} images")
        out = []
        for image, ps in zip(images, prompts, strict=True):
            rgb = as_rgb(image)
            bgr = np.ascontiguousarray(rgb[:, :, ::-1])
            height, width = rgb.shape[:2]
            n = len(ps)
            crops: list[MaskCrop] = []
            reasons: list[str | None] = []
            boxes = ps.enclosing_boxes()
            for i in range(n):
                crop, reason = self._one(bgr, ps, i, boxes[i])
                crops.append(crop)
                reasons.append(reason)
            fallback = np.array([r is not None for r in reasons], dtype=bool).reshape(n)
            nan = np.full(n, np.nan, dtype=np.float32)
            out.append(
                MaskSet(
                    crops,
                    height,
                    width,
                    nan,
                    nan.copy(),
                    fallback=fallback,
                    fallback_reason=reasons,
                )
            )
        return out

    def _one(
        self, bgr: np.ndarray, ps: PromptSet, i: int, box: np.ndarray
    ) -> tuple[MaskCrop, str | None]:
        """Object ``i``'s mask, and why it fell back to the prompt region (None: it did not)."""
        height, width = bgr.shape[:2]
        region_poly = _region_polygon(ps, i)
        poly = np.asarray(ps.polygons[i], dtype=np.float64).reshape(4, 2)
        x0, y0, x1, y1 = (float(v) for v in box)
        x0, y0 = min(x0, poly[:, 0].min()), min(y0, poly[:, 1].min())
        x1, y1 = max(x1, poly[:, 0].max()), max(y1, poly[:, 1].max())
        edges = np.linalg.norm(poly - np.roll(poly, -1, axis=0), axis=1)
        short = float(min(edges.min(), x1 - x0, y1 - y0) if edges.max() > 0 else 0.0)
        margin = max(self.margin_px, self.margin_ratio * math.sqrt(float(edges[0] * edges[1])))
        cx0 = int(np.clip(math.floor(x0 - margin), 0, width))
        cy0 = int(np.clip(math.floor(y0 - margin), 0, height))
        cx1 = int(np.clip(math.ceil(x1 + margin), 0, width))
        cy1 = int(np.clip(math.ceil(y1 + margin), 0, height))
        ch, cw = cy1 - cy0, cx1 - cx0

        def fall_back(reason: str) -> tuple[MaskCrop, str | None]:
            if ch <= 0 or cw <= 0:
                return MaskCrop.empty(height, width), reason
            region = rasterize_polygon(region_poly, ch, cw, (cx0, cy0))
            return MaskCrop.from_window(region, cx0, cy0, height, width), reason

        if ch <= 0 or cw <= 0:
            return fall_back("box outside the image")
        if short < self.min_side:
            return fall_back(f"box smaller than {self.min_side:g} px")
        offset = (float(cx0), float(cy0))
        flat = poly.reshape(-1)
        inside = rasterize_polygon(flat, ch, cw, offset)
        band = max(2.0, self.band_ratio * short)
        allowed = dilated_polygon_mask(flat, band, ch, cw, offset)
        if not ps.use_mask_prompt and ps.boxes is not None:
            allowed |= rasterize_polygon(region_poly, ch, cw, offset)
        labels: np.ndarray = np.full((ch, cw), cv2.GC_BGD, dtype=np.uint8)  # and resized
        labels[allowed] = cv2.GC_PR_BGD
        labels[inside] = cv2.GC_PR_FGD
        core = np.zeros_like(inside)
        if self.core_ratio > 0:
            core = rasterize_polygon(_core(poly, self.core_ratio), ch, cw, offset) & inside
            labels[core] = cv2.GC_FGD
        if int(np.count_nonzero(inside)) < 4:
            return fall_back(f"box smaller than {self.min_side:g} px")
        if int(np.count_nonzero(labels == cv2.GC_BGD)) < 64:
            return fall_back("too little background around the box to model")
        crop = bgr[cy0:cy1, cx0:cx1]
        scale = min(self.max_side / max(ch, cw), max(1.0, min(4.0, self.min_work_side / short)))
        if scale != 1.0:
            size = (max(1, round(cw * scale)), max(1, round(ch * scale)))
            interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
            crop = cv2.resize(crop, size, interpolation=interp)
            labels = cv2.resize(labels, size, interpolation=cv2.INTER_NEAREST)
        crop = np.ascontiguousarray(crop)
        bgd = np.zeros((1, 65), np.float64)
        fgd = np.zeros((1, 65), np.float64)
        cv2.setRNGSeed(self.seed)
        try:
            cv2.grabCut(  # type: ignore[call-overload]  # stubs: rect not None; unused with a mask
                crop, labels, None, bgd, fgd, self.iterations, cv2.GC_INIT_WITH_MASK
            )
        except cv2.error as exc:
            return fall_back(f"grabcut error: {str(exc).strip().splitlines()[-1]}")
        fg = ((labels == cv2.GC_FGD) | (labels == cv2.GC_PR_FGD)).astype(np.uint8)
        if scale != 1.0:
            fg = cv2.resize(fg * 255, (cw, ch), interpolation=cv2.INTER_LINEAR) > 127
        fg = _connected_to(fg.astype(bool) & allowed, core)
        if not fg.any():
            return fall_back("empty foreground")
        if core.any() and np.count_nonzero(fg) <= 1.1 * np.count_nonzero(core):
            return fall_back("foreground collapsed to the core")
        return MaskCrop.from_window(fg, cx0, cy0, height, width), None


def _core(poly: np.ndarray, ratio: float) -> np.ndarray:
    """The sure-foreground core of a (4, 2) box polygon: ``ratio`` of its short side across,
    and along its long side ``ratio`` of it or all but one short side, whichever is longer
    (a long thin object such as a pier is sure along most of its length)."""
    centre = poly.mean(axis=0)
    half_a = (poly[1] - poly[0]) / 2
    half_b = (poly[3] - poly[0]) / 2
    la, lb = float(np.linalg.norm(half_a)), float(np.linalg.norm(half_b))
    long_, short = max(la, lb), min(la, lb)
    along = max(ratio, 1.0 - short / long_) if long_ > 0 else ratio
    fa, fb = (along, ratio) if la >= lb else (ratio, along)
    corners = [centre + sa * fa * half_a + sb * fb * half_b for sa, sb in
               ((-1, -1), (1, -1), (1, 1), (-1, 1))]  # fmt: skip
    return np.asarray(corners, dtype=np.float64).reshape(-1)


def _connected_to(mask: np.ndarray, seed: np.ndarray) -> np.ndarray:
    """The 8-connected components of ``mask`` that touch ``seed`` (all of ``mask`` when
    ``seed`` does not touch it): drops stray blobs GrabCut finds in the context."""
    if not mask.any():
        return mask
    _, comp = cv2.connectedComponents(mask.view(np.uint8), connectivity=8)
    ids = np.unique(comp[seed & mask])
    ids = ids[ids > 0]
    if not ids.size:
        return mask
    return np.isin(comp, ids)
