"""Segmenter wrappers that work with any segmenter: clipping to the rotated box and the
small-object zoom (ROS-SAM's object-centred crops, and its inference rules as a preset)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TypedDict

import cv2
import numpy as np

from samrs.core.masks import MaskCrop, polygon_window_masks
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

    @property
    def prefetches(self) -> bool:  # type: ignore[override]  # the inner segmenter's answer
        """Whether the inner segmenter uses :meth:`prefetch`."""
        return self.inner.prefetches

    def prefetch(self, images: Sequence[np.ndarray]) -> None:
        """The inner segmenter sees the same images."""
        self.inner.prefetch(images)

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
        width, height: size (square unless the image is smaller than a shifted crop).
        members: indices of the prompts segmented on this crop.
        content: ``(width, height)`` of the image pixels copied to the crop's top-left
            corner, the rest being zero (``border="pad"``); None: the whole crop.
    """

    x: int
    y: int
    width: int
    height: int
    members: tuple[int, ...]
    content: tuple[int, int] | None = None


ZOOM_BORDERS = ("shift", "pad")


class ZoomOptions(TypedDict, total=False):
    """:class:`SmallObjectZoom`'s keyword settings (``create_segmenter(zoom=...)``)."""

    context: float
    min_crop: int
    max_crop_fraction: float
    crop: int | None
    factor: float | None
    zoom_all: bool
    border: str


class SmallObjectZoom(Segmenter):
    """Segment small objects on object-centred crops (``--small-object-zoom PX``, ROS-SAM).

    An object is small when the longest side of its box (the union of its box prompt and its
    polygon's enclosing box) is below ``threshold`` pixels; with ``zoom_all`` every object is
    zoomed (ROS-SAM). Its crop is a square of side ``crop`` when given (ROS-SAM: 512), else
    ``max(min_crop, context * side)``, centred on the object.

    * ``border="shift"`` (default): the crop is shifted inside the image at borders, and
      small objects that lie well inside an existing crop (at least half their side from its
      edges, or touching the image border) share it, so the encoder runs once per group; an
      object whose crop would exceed ``max_crop_fraction`` of the image's longest side stays
      in the full-image pass (unless ``zoom_all``).
    * ``border="pad"`` (ROS-SAM's ``crop_images`` / ``reconstruct_image``): one crop per
      object; its window runs from ``max(int(c - crop // 2), 0)`` to
      ``min(int(c + crop // 2), size)`` on each axis (``c`` = the box centre), i.e. it is
      truncated at the image border, not shifted; those pixels go to the top-left of a
      ``crop x crop`` canvas, zero elsewhere; box prompts are clipped to the canvas; the mask
      is pasted back over ``[start, min(start + crop, size))``.

    ``factor``: the crop is upsampled by this factor with bicubic interpolation (torch's, as
    ROS-SAM; clamped to 0..255 and truncated to integers as its ``astype(uint8)``) and the
    prompts scaled with it before the inner segmenter sees it; its masks are brought back to
    crop resolution by area averaging (a pixel is set when at least half of it is covered).
    Without ``factor`` the inner segmenter resizes the crop to its own input size (SAM: a
    256-pixel crop is magnified 4x). Masks are then pasted into an empty mask of the full
    image. The full images (of the images that keep a large object) go to the inner
    segmenter in one call, all crops in a second one, so its batching applies; the images
    of the next call named to :meth:`prefetch` are the full images of its first inner call:
    the inner segmenter is told of them before this call's last inner call (SAM encodes them
    while its last chunk is waited for) and reuses them if every one of them keeps a large
    object (else SAM encodes them again, and the encoding ahead was lost work). With
    ``zoom_all`` no full image is segmented, and nothing is prefetched.
    """

    def __init__(
        self,
        inner: Segmenter,
        threshold: int | None,
        context: float = 4.0,
        min_crop: int = 256,
        max_crop_fraction: float = 0.5,
        crop: int | None = None,
        factor: float | None = None,
        zoom_all: bool = False,
        border: str = "shift",
    ) -> None:
        if not zoom_all and (threshold is None or threshold <= 0):
            raise ValueError(
                f"small_object_zoom must be a positive size in pixels, got {threshold}"
            )
        if crop is not None and crop < 16:
            raise ValueError(f"zoom_crop must be at least 16 pixels, got {crop}")
        if factor is not None and not 1.0 <= factor <= 8.0:
            raise ValueError(f"zoom_factor must lie in [1, 8], got {factor}")
        if border not in ZOOM_BORDERS:
            raise ValueError(
                f"zoom_border must be one of {', '.join(ZOOM_BORDERS)}, got {border!r}"
            )
        self.inner = inner
        self.threshold = None if threshold is None else int(threshold)
        self.context = float(context)
        self.min_crop = int(min_crop)
        self.max_crop_fraction = float(max_crop_fraction)
        self.crop = None if crop is None else int(crop)
        self.factor = None if factor is None else float(factor)
        self.zoom_all = bool(zoom_all)
        self.border = border
        self.name = inner.name
        self._upcoming: list[np.ndarray] = []  # the next call's images (prefetch)

    def describe(self) -> dict[str, object]:
        """The inner segmenter's facts plus the zoom settings."""
        return {
            **self.inner.describe(),
            "small_object_zoom": {
                "threshold": self.threshold,
                "context": self.context,
                "min_crop": self.min_crop,
                "max_crop_fraction": self.max_crop_fraction,
                "crop": self.crop,
                "factor": self.factor,
                "zoom_all": self.zoom_all,
                "border": self.border,
            },
        }

    @property
    def prefetches(self) -> bool:  # type: ignore[override]  # the inner segmenter's answer
        """Whether the inner segmenter uses :meth:`prefetch` (never with ``zoom_all``)."""
        return self.inner.prefetches and not self.zoom_all

    def prefetch(self, images: Sequence[np.ndarray]) -> None:
        """Named to the inner segmenter before the last inner call of the next :meth:`segment`
        (the full images of the call after that are these)."""
        self._upcoming = list(images) if self.prefetches else []

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
        if self.crop is not None:
            sizes = np.full(n, self.crop, dtype=np.int64)
        else:
            sizes = np.ceil(np.maximum(self.min_crop, self.context * sides)).astype(np.int64)
        if self.zoom_all:
            small = np.ones(n, dtype=bool)
        else:
            limit = self.max_crop_fraction * max(height, width)
            small = (sides < self.threshold) & (sizes <= limit)
        big = [int(i) for i in np.flatnonzero(~small)]
        centres = (ext[:, :2] + ext[:, 2:]) / 2
        if self.border == "pad":
            crops = []
            for i in np.flatnonzero(small):
                size, half = int(sizes[i]), int(sizes[i]) // 2
                x0, y0 = max(int(centres[i, 0] - half), 0), max(int(centres[i, 1] - half), 0)
                x1 = min(int(centres[i, 0] + half), width)
                y1 = min(int(centres[i, 1] + half), height)
                content = (max(x1 - x0, 0), max(y1 - y0, 0))
                crops.append(Crop(x0, y0, size, size, (int(i),), content))
            return big, crops
        crops = []
        assigned = np.zeros(n, dtype=bool)
        for i in np.flatnonzero(small):
            if assigned[i]:
                continue
            size = int(sizes[i])
            cw, ch = min(size, width), min(size, height)
            cx, cy = centres[i]
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

    def crop_image(self, image: np.ndarray, crop: Crop) -> np.ndarray:
        """The crop's pixels (zero outside the image), upsampled by ``factor`` if set."""
        height, width = image.shape[:2]
        cw, ch = crop.content or (crop.width, crop.height)
        cw, ch = min(cw, width - crop.x), min(ch, height - crop.y)
        if crop.content is None and (cw, ch) == (crop.width, crop.height):
            out = image[crop.y : crop.y + ch, crop.x : crop.x + cw]
        else:
            out = np.zeros((crop.height, crop.width, *image.shape[2:]), dtype=image.dtype)
            out[:ch, :cw] = image[crop.y : crop.y + ch, crop.x : crop.x + cw]
        if self.factor is None:
            return out
        import torch
        from torch.nn import functional as F

        size = (round(crop.height * self.factor), round(crop.width * self.factor))
        t = torch.from_numpy(np.ascontiguousarray(out)).float()
        t = t.permute(2, 0, 1)[None] if t.ndim == 3 else t[None, None]
        t = F.interpolate(t, size=size, mode="bicubic", align_corners=False)
        t = t.clamp_(0, 255).to(torch.uint8)  # float -> uint8 truncates, as numpy's astype
        t = t[0].permute(1, 2, 0) if out.ndim == 3 else t[0, 0]
        return t.numpy().astype(image.dtype, copy=False)

    def crop_prompts(self, prompts: PromptSet, crop: Crop) -> PromptSet:
        """Prompts in the coordinates of :meth:`crop_image`'s output."""
        shifted = prompts.subset(list(crop.members)).shifted(crop.x, crop.y)
        if crop.content is not None and shifted.boxes is not None:  # ROS-SAM clips the boxes
            limit = [crop.width, crop.height, crop.width, crop.height]
            shifted = replace(shifted, boxes=np.clip(shifted.boxes, 0, limit))
        if self.factor is None:
            return shifted
        f = self.factor
        return replace(
            shifted,
            polygons=shifted.polygons * f,
            boxes=None if shifted.boxes is None else shifted.boxes * f,
            points=None if shifted.points is None else shifted.points * f,
        )

    def paste(self, mask: MaskCrop, crop: Crop, height: int, width: int) -> MaskCrop:
        """A mask of :meth:`crop_image`'s output back into the ``height x width`` image."""
        inside = 0 <= crop.x <= width - crop.width and 0 <= crop.y <= height - crop.height
        if self.factor is None and inside:  # a plain sub-image: move the crop
            return mask.placed(crop.x, crop.y, height, width)
        full = mask.full()
        if self.factor is not None:
            small = cv2.resize(
                full.astype(np.float32), (crop.width, crop.height), interpolation=cv2.INTER_AREA
            )
            full = small >= 0.5
        x0, y0 = max(crop.x, 0), max(crop.y, 0)
        x1, y1 = min(crop.x + crop.width, width), min(crop.y + crop.height, height)
        if x0 >= x1 or y0 >= y1:
            return MaskCrop.empty(height, width)
        window = full[y0 - crop.y : y1 - crop.y, x0 - crop.x : x1 - crop.x]
        return MaskCrop.from_window(window, x0, y0, height, width)

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """Full images (large objects), then crops (small ones), in two inner calls; merged."""
        if len(images) != len(prompts):
            raise ValueError(f"{len(prompts)} prompt sets for {len(images)} images")
        plans = [
            self.plan(ps, int(image.shape[0]), int(image.shape[1]))
            for image, ps in zip(images, prompts, strict=True)
        ]
        full: list[tuple[np.ndarray, PromptSet, tuple[int, Crop | None, list[int]]]] = [
            (images[k], prompts[k].subset(big), (k, None, big))
            for k, (big, _) in enumerate(plans)
            if big
        ]
        zoomed = [
            (
                self.crop_image(images[k], crop),
                self.crop_prompts(prompts[k], crop),
                (k, crop, list(crop.members)),
            )
            for k, (_, crops) in enumerate(plans)
            for crop in crops
        ]
        upcoming, self._upcoming = self._upcoming, []
        jobs: list[tuple[int, Crop | None, list[int]]] = []
        results: list[MaskSet] = []
        calls = [call for call in (full, zoomed) if call]
        for n, call in enumerate(calls):
            if n == len(calls) - 1 and upcoming:
                self.inner.prefetch(upcoming)
            results += self.inner.segment([c[0] for c in call], [c[1] for c in call])
            jobs += [c[2] for c in call]
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
        for (k, job_crop, members), res in zip(jobs, results, strict=True):
            target = out[k]
            for member, mask in zip(members, res.crops, strict=True):
                target.crops[member] = (
                    mask
                    if job_crop is None
                    else self.paste(mask, job_crop, target.height, target.width)
                )
            idx = np.asarray(members, dtype=np.int64)
            target.scores[idx] = res.scores
            target.stability[idx] = res.stability
            if res.fallback is not None:
                if target.fallback is None:
                    target.fallback = np.zeros(len(target), dtype=bool)
                target.fallback[idx] = res.fallback
            if res.fallback_reason is not None:
                if target.fallback_reason is None:
                    target.fallback_reason = [None] * len(target)
                for member, why in zip(members, res.fallback_reason, strict=True):
                    target.fallback_reason[member] = why
        return out
