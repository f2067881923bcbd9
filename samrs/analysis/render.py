"""Drawing shared by ``samrs show`` and ``samrs audit``: image pixels of a build, overlays,
outlines and labels.

Coordinates are image pixels (see :mod:`samrs.core.records`). Drawing happens on a
:class:`Canvas`, which maps image coordinates to the canvas through a scale and an offset, so
the same calls draw a full image (``show``) or a zoomed crop (contact sheets).
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from samrs.core import rle
from samrs.core.classes import UNLABELLED, ClassTable, Color
from samrs.core.imageio import ImageReadError, open_image
from samrs.errors import SamrsError
from samrs.outputs.semantic import semantic_palette

MASK_ALPHA = 0.45
"""Opacity of label and mask overlays."""


class RenderError(SamrsError, ValueError):
    """An image of a build cannot be read or drawn (the message names the file)."""


def resolve_path(out: str | Path, path: str, root: str | Path | None = None) -> Path:
    """A path from a manifest: absolute as is; relative to OUT, else to the build's ``root``."""
    p = Path(path)
    if p.is_absolute():
        return p
    candidate = Path(out) / p
    if candidate.exists() or root is None:
        return candidate
    return Path(root) / p


def font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    """Pillow's built-in font at ``size`` pixels (no font files needed)."""
    return ImageFont.load_default(size=max(int(size), 6))


def read_region(
    out: str | Path,
    image: Mapping[str, Any],
    box: tuple[int, int, int, int] | None = None,
    root: str | Path | None = None,
) -> np.ndarray:
    """RGB uint8 pixels of one image of a build, or of a region of it.

    Pixels are decoded by :mod:`samrs.core.imageio` (the same 8-bit conversion as the build).

    Args:
        out: the build folder.
        image: a row of the images manifest (``file_name``, ``width``, ``height``, ``window``).
        box: ``(x0, y0, x1, y1)`` in the image's pixels (clipped to the image); None: all.
        root: the build's dataset root, for relative source paths.

    Raises:
        RenderError: the file is missing, unreadable, or has an unexpected size.
    """
    path = resolve_path(out, str(image["file_name"]), root)
    width, height = int(image["width"]), int(image["height"])
    x0, y0, x1, y1 = box if box is not None else (0, 0, width, height)
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), width), min(int(y1), height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((max(y1 - y0, 0), max(x1 - x0, 0), 3), dtype=np.uint8)
    try:
        with open_image(path) as src:
            offset = (0, 0)
            window = image.get("tile_window")
            if src.size != (width, height):
                # a tile whose file is the whole source image: read through its window
                if (
                    window is None
                    or src.width < window[0] + width
                    or src.height < window[1] + height
                ):
                    raise RenderError(
                        f"{path}: size {src.width}x{src.height}, expected {width}x{height} "
                        f"for image {image['image_id']}"
                    )
                offset = (int(window[0]), int(window[1]))
            pixels = src.read((x0 + offset[0], y0 + offset[1], x1 - x0, y1 - y0))
            return pixels if pixels.flags.writeable else pixels.copy()
    except ImageReadError as exc:
        raise RenderError(f"image {image['image_id']}: {exc}") from exc


def label_colors(classes: ClassTable, background: bool = False) -> np.ndarray:
    """(256, 3) uint8 colour of every label value (the semantic PNG palette of a build)."""
    return np.asarray(semantic_palette(classes, background), dtype=np.uint8).reshape(256, 3)


def label_class_mask(label: np.ndarray, n_classes: int, background: bool = False) -> np.ndarray:
    """Pixels of a label map that belong to some class (not unlabelled, not background)."""
    shift = 1 if background else 0
    return (label >= shift) & (label < n_classes + shift) & (label != UNLABELLED)


def blend(
    rgb: np.ndarray, mask: np.ndarray, color: Sequence[int] | np.ndarray, alpha: float = MASK_ALPHA
) -> None:
    """Paint ``color`` over ``rgb`` where ``mask`` is set, in place.

    ``color`` is one RGB triple, or an (H, W, 3) array of per-pixel colours.
    """
    if not mask.any():
        return
    col = np.asarray(color, dtype=np.float32)
    col = col[mask] if col.ndim == 3 else col
    rgb[mask] = np.clip(rgb[mask] * (1 - alpha) + col * alpha, 0, 255).astype(np.uint8)


def bright(color: Sequence[int]) -> Color:
    """A light, saturated variant of a colour, visible on dark imagery (for outlines, text)."""
    r, g, b = (int(v) / 255 for v in color)
    h, s, _ = colorsys.rgb_to_hsv(r, g, b)
    r, g, b = colorsys.hsv_to_rgb(h, min(max(s, 0.6), 0.75) if s > 0 else 0.0, 1.0)
    return (round(r * 255), round(g * 255), round(b * 255))


def text_color(background: Sequence[int]) -> Color:
    """Black or white, whichever reads better on ``background`` (Rec. 601 luma)."""
    r, g, b = (int(v) for v in background)
    return (0, 0, 0) if 0.299 * r + 0.587 * g + 0.114 * b > 140 else (255, 255, 255)


def mask_contours(mask: np.ndarray) -> list[np.ndarray]:
    """Outlines of a boolean mask as (N, 2) arrays of pixel-corner coordinates (x, y)."""
    m = np.ascontiguousarray(mask, dtype=np.uint8)
    if not m.any():
        return []
    contours, _ = cv2.findContours(m, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    # cv2 gives pixel indices; +0.5 puts the line on the pixel centres of the border pixels
    return [c.reshape(-1, 2).astype(np.float64) + 0.5 for c in contours]


def decode_mask(
    counts: str, height: int, width: int, box: tuple[int, int, int, int] | None = None
) -> np.ndarray:
    """Boolean mask of an instance's ``segmentation`` (COCO RLE counts) in an image.

    Args:
        counts: the RLE counts string.
        height, width: image size.
        box: ``(x0, y0, x1, y1)``: decode only this region (clipped to the image).
    """
    encoded = {"size": [int(height), int(width)], "counts": counts}
    if box is None:
        return rle.decode(encoded)
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(box[2]), int(width)), min(int(box[3]), int(height))
    return rle.decode_window(encoded, (x0, y0, max(x1 - x0, 0), max(y1 - y0, 0)))


class Canvas:
    """A PIL drawing surface that takes image coordinates.

    Args:
        rgb: (H, W, 3) uint8 pixels to draw on (copied).
        scale: canvas pixels per image pixel.
        origin: image coordinates ``(x, y)`` of the canvas' top-left corner.
    """

    def __init__(
        self, rgb: np.ndarray, scale: float = 1.0, origin: tuple[float, float] = (0.0, 0.0)
    ) -> None:
        self.image = Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8), mode="RGB")
        self.draw = ImageDraw.Draw(self.image)
        self.scale = float(scale)
        self.origin = (float(origin[0]), float(origin[1]))
        self._labels: list[tuple[float, float, float, float]] = []

    def xy(self, points: Sequence[float] | np.ndarray) -> list[tuple[float, float]]:
        """Canvas coordinates of flat or (N, 2) image coordinates."""
        pts = np.asarray(points, dtype=np.float64).reshape(-1, 2)
        pts = (pts - np.asarray(self.origin)) * self.scale
        return [(float(x), float(y)) for x, y in pts]

    def polygon(
        self,
        points: Sequence[float] | np.ndarray,
        color: Sequence[int],
        width: int = 2,
        halo: bool = False,
    ) -> None:
        """A closed outline; ``halo`` draws a dark line under it (visible on any imagery)."""
        xy = self.xy(points)
        if len(xy) < 2:
            return
        if halo:
            self.draw.line([*xy, xy[0]], fill=(0, 0, 0), width=width + 2, joint="curve")
        self.draw.line([*xy, xy[0]], fill=tuple(color), width=width, joint="curve")

    def box(
        self, xyxy: Sequence[float], color: Sequence[int], width: int = 1, dash: int = 0
    ) -> None:
        """A horizontal box; ``dash`` > 0 draws it dashed with dashes that long (pixels)."""
        x0, y0, x1, y1 = (float(v) for v in xyxy)
        corners = self.xy([x0, y0, x1, y0, x1, y1, x0, y1])
        if dash <= 0:
            self.draw.line([*corners, corners[0]], fill=tuple(color), width=width)
            return
        for a, b in zip(corners, [*corners[1:], corners[0]], strict=True):
            length = float(np.hypot(b[0] - a[0], b[1] - a[1]))
            n = max(int(length // dash), 1)
            for k in range(0, n, 2):
                t0, t1 = k / n, min((k + 1) / n, 1.0)
                self.draw.line(
                    [
                        (a[0] + (b[0] - a[0]) * t0, a[1] + (b[1] - a[1]) * t0),
                        (a[0] + (b[0] - a[0]) * t1, a[1] + (b[1] - a[1]) * t1),
                    ],
                    fill=tuple(color),
                    width=width,
                )

    def point(self, xy: Sequence[float], color: Sequence[int], radius: float = 3) -> None:
        """A filled dot."""
        (x, y) = self.xy(xy)[0]
        self.draw.ellipse(
            (x - radius, y - radius, x + radius, y + radius), fill=tuple(color), outline=(0, 0, 0)
        )

    def contours(
        self,
        mask_outlines: Sequence[np.ndarray],
        color: Sequence[int],
        width: int = 1,
        halo: bool = False,
    ) -> None:
        """Mask outlines from :func:`mask_contours`."""
        for c in mask_outlines:
            self.polygon(c, color, width, halo)

    def label(
        self,
        xy: Sequence[float],
        text: str,
        color: Sequence[int] = (255, 255, 255),
        size: int = 12,
        background: Sequence[int] | None = (0, 0, 0),
        avoid: bool = False,
    ) -> None:
        """Text whose top-left corner is at image point ``xy``, on a filled box, kept inside.

        ``avoid``: move the text up or down (nearest free place first) so that it covers no
        earlier label drawn with ``avoid``.
        """
        f = font(size)
        (x, y) = self.xy(xy)[0]
        left, top, right, bottom = self.draw.textbbox((0, 0), text, font=f)
        w, h = right - left + 4, bottom - top + 4
        x = min(max(x, 0.0), max(self.image.width - w, 0))
        y = min(max(y - h, 0.0), max(self.image.height - h, 0))  # above the point when possible
        if avoid:
            y = self._free_y(x, y, w, h)
            self._labels.append((x, y, x + w, y + h))
        if background is not None:
            self.draw.rectangle((x, y, x + w, y + h), fill=tuple(background))
        self.draw.text((x + 2 - left, y + 2 - top), text, fill=tuple(color), font=f)

    def _free_y(self, x: float, y: float, w: float, h: float) -> float:
        """The nearest row to ``y`` where a ``w`` x ``h`` box at ``x`` meets no earlier label."""
        limit = max(self.image.height - h, 0)
        for k in range(40):
            step = (k + 1) // 2 * (1 if k % 2 else -1)  # 0, +1, -1, +2, -2, ... label heights
            cy = y + step * h
            if not 0 <= cy <= limit:
                continue
            if not any(
                x < bx1 and bx0 < x + w and cy < by1 and by0 < cy + h
                for bx0, by0, bx1, by1 in self._labels
            ):
                return cy
        return y

    def array(self) -> np.ndarray:
        """The drawing as (H, W, 3) uint8."""
        return np.asarray(self.image, dtype=np.uint8)


def save_png(rgb: np.ndarray | Image.Image, path: str | Path) -> Path:
    """Write an RGB PNG (no metadata: same pixels -> same bytes), creating folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pil = (
        rgb
        if isinstance(rgb, Image.Image)
        else Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8))
    )
    tmp = path.with_name(f".{path.name}.tmp")
    pil.save(tmp, format="PNG", optimize=False, compress_level=6)
    tmp.replace(path)
    return path
