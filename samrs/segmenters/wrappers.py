"""Segmenter wrappers that work with any segmenter: clipping to the rotated box and the
small-object zoom (ROS-SAM's object-centred crops)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from samrs.masks import MaskCrop, polygon_window_masks
from samrs.segmenters.base import MaskSet, PromptSet, Segmenter


class ClipToPolygon(Segmenter):
    """Intersect every mask with its object polygon dilated by ``pixels`` (``--clip-to-rbox``).

    The dilation has mitred corners, so a rotated box stays a rotated box. Precomputed RLEs of
    the inner segmenter are dropped (the masks changed).
    """

    def __init__(self, inner: Segmenter, pixels: float) -> None:
        if pixels < 0:
            raise ValueError(f"clip_to_rbox must be >= 0 pixels, got {pixels}")
        self.inner = inner
        self.pixels = float(pixels)
        self.name = inner.name

    def describe(self) -> dict[str, object]:
        """The inner segmenter's facts plus ``clip_to_rbox``."""
        return {**self.inner.describe(), "clip_to_rbox": self.pixels}

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """The inner segmenter's masks, clipped."""
        results = self.inner.segment(images, prompts)
        for ms, ps in zip(results, prompts, strict=True):
            if not len(ms):
                continue
            polys = np.asarray(ps.polygons, dtype=np.float64).reshape(-1, 8)
            windows = polygon_window_masks(polys, self.pixels, ms.height, ms.width)
            for i, (crop, ((rows, cols), allowed)) in enumerate(
                zip(ms.crops, windows, strict=True)
            ):
                clipped = crop.on_window(rows, cols) & allowed
                ms.crops[i] = MaskCrop.from_window(
                    clipped, cols.start, rows.start, ms.height, ms.width
                )
            ms.device_masks = None
        return results


@dataclass(frozen=True)
class Crop:
    """One object-centred crop of an image and the objects segmented on it.

    Attributes:
        x, y: top-left corner in the image.
        width, height: size (square unless the image is smaller than the crop).
        members: indices of the prompts segmented on this crop.
    """

    x: int
    y: int
    width: int
    height: int
    members: tuple[int, ...]


class SmallObjectZoom(Segmenter):
    """Segment small objects on object-centred crops (``--small-object-zoom PX``).

    An object is small when the longest side of its box (the union of its box prompt and its
    polygon's enclosing box) is below ``threshold`` pixels. Its crop is a square of side
    ``max(min_crop, context * side)`` centred on it and shifted inside the image at borders;
    the inner segmenter then sees the crop as an image, so SAM resizes it to its input size
    (a 256-pixel crop is magnified 4x for a 1024 input) and its masks come back at crop
    resolution, then are pasted into the full image. Small objects that lie well inside an
    existing crop (at least half their side from its edges, or touching the image border)
    share that crop, so the encoder runs once per group. When the crop would exceed
    ``max_crop_fraction`` of the image's longest side the object stays in the full-image pass
    (the zoom would gain little). All crops and full images go to the inner segmenter in one
    call, so its batching applies.
    """

    def __init__(
        self,
        inner: Segmenter,
        threshold: int,
        context: float = 4.0,
        min_crop: int = 256,
        max_crop_fraction: float = 0.5,
    ) -> None:
        if threshold <= 0:
            raise ValueError(
                f"small_object_zoom must be a positive size in pixels, got {threshold}"
            )
        self.inner = inner
        self.threshold = int(threshold)
        self.context = float(context)
        self.min_crop = int(min_crop)
        self.max_crop_fraction = float(max_crop_fraction)
        self.name = inner.name

    def describe(self) -> dict[str, object]:
        """The inner segmenter's facts plus the zoom settings."""
        return {
            **self.inner.describe(),
            "small_object_zoom": {
                "threshold": self.threshold,
                "context": self.context,
                "min_crop": self.min_crop,
                "max_crop_fraction": self.max_crop_fraction,
            },
        }

    def plan(self, prompts: PromptSet, height: int, width: int) -> tuple[list[int], list[Crop]]:
        """Which prompts stay on the full image, and the crops of the others."""
        n = len(prompts)
        if n == 0:
            return [], []
        pts = np.asarray(prompts.polygons, dtype=np.float64).reshape(n, 4, 2)
        ext = np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)
        if prompts.boxes is not None:
            boxes = np.asarray(prompts.boxes, dtype=np.float64)
            ext = np.concatenate(
                [np.minimum(ext[:, :2], boxes[:, :2]), np.maximum(ext[:, 2:], boxes[:, 2:])], axis=1
            )
        sides = np.maximum(ext[:, 2] - ext[:, 0], ext[:, 3] - ext[:, 1])
        limit = self.max_crop_fraction * max(height, width)
        sizes = np.ceil(np.maximum(self.min_crop, self.context * sides)).astype(np.int64)
        small = (sides < self.threshold) & (sizes <= limit)
        big = [int(i) for i in np.flatnonzero(~small)]
        crops: list[Crop] = []
        assigned = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(small):
            if assigned[i]:
                continue
            size = int(sizes[i])
            cw, ch = min(size, width), min(size, height)
            cx, cy = (ext[i, 0] + ext[i, 2]) / 2, (ext[i, 1] + ext[i, 3]) / 2
            x0 = int(np.clip(math.floor(cx - cw / 2), 0, width - cw))
            y0 = int(np.clip(math.floor(cy - ch / 2), 0, height - ch))
            members = []
            for j in np.flatnonzero(small & ~assigned):
                if j == i or self._fits(ext[j], sides[j], x0, y0, cw, ch, width, height):
                    members.append(int(j))
                    assigned[j] = True
            crops.append(Crop(x0, y0, cw, ch, tuple(members)))
        return big, crops

    @staticmethod
    def _fits(
        box: np.ndarray, side: float, x0: int, y0: int, cw: int, ch: int, width: int, height: int
    ) -> bool:
        margin = side / 2
        ok_left = box[0] - margin >= x0 or x0 == 0
        ok_top = box[1] - margin >= y0 or y0 == 0
        ok_right = box[2] + margin <= x0 + cw or x0 + cw == width
        ok_bottom = box[3] + margin <= y0 + ch or y0 + ch == height
        inside = box[0] >= x0 and box[1] >= y0 and box[2] <= x0 + cw and box[3] <= y0 + ch
        return bool(inside and ok_left and ok_top and ok_right and ok_bottom)

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """Full images (large objects) and crops (small ones) in one inner call, merged back."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompt sets for {len(images)} images")
        jobs_images: list[np.ndarray] = []
        jobs_prompts: list[PromptSet] = []
        jobs: list[tuple[int, Crop | None, list[int]]] = []
        for k, (image, ps) in enumerate(zip(images, prompts, strict=True)):
            height, width = int(image.shape[0]), int(image.shape[1])
            big, crops = self.plan(ps, height, width)
            if big:
                jobs_images.append(image)
                jobs_prompts.append(ps.subset(big))
                jobs.append((k, None, big))
            for crop in crops:
                jobs_images.append(
                    image[crop.y : crop.y + crop.height, crop.x : crop.x + crop.width]
                )
                jobs_prompts.append(ps.subset(list(crop.members)).shifted(crop.x, crop.y))
                jobs.append((k, crop, list(crop.members)))
        results = self.inner.segment(jobs_images, jobs_prompts) if jobs else []
        out = []
        for image, ps in zip(images, prompts, strict=True):
            n, height, width = len(ps), int(image.shape[0]), int(image.shape[1])
            out.append(
                MaskSet(
                    crops=[MaskCrop.empty(height, width)] * n,
                    height=height,
                    width=width,
                    scores=np.full(n, np.nan, dtype=np.float32),
                    stability=np.full(n, np.nan, dtype=np.float32),
                )
            )
        for (k, crop, members), res in zip(jobs, results, strict=True):
            target = out[k]
            dx, dy = (0, 0) if crop is None else (crop.x, crop.y)
            for member, mask in zip(members, res.crops, strict=True):
                target.crops[member] = mask.placed(dx, dy, target.height, target.width)
            idx = np.asarray(members, dtype=np.int64)
            target.scores[idx] = res.scores
            target.stability[idx] = res.stability
            if res.fallback is not None:
                if target.fallback is None:
                    target.fallback = np.zeros(len(target), dtype=bool)
                target.fallback[idx] = res.fallback
        return out
