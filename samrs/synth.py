"""Small synthetic datasets in the real layout and file format of each source, with GT masks.

``write_synthetic("dota", out)`` writes a DOTA-like dataset whose objects are rendered shapes
(ellipses, plane and ship silhouettes, rounded rectangles) filling 50-90% of their oriented
box, on a textured background (gradient, smooth noise, fields, roads, pixel noise), plus the
exact instance masks of every object in ``out/gt/instances.json`` (COCO, RLE). A box-shaped
mask therefore scores clearly below a real segmentation, which is what the evaluation of
segmenters needs; the label files exercise the quirks the readers must handle.

Layouts (``N`` images; about three quarters train, the rest val/validation/test):

- ``dota`` (v1.0): ``{train,val}/images/P####.png`` + ``{train,val}/labelTxt/P####.txt``;
  header ``imagesource:``/``gsd:`` (one ``gsd:null``, one file without header), integer
  corners, CRLF in even-numbered files, LF in odd ones, ``difficult`` 0/1.
- ``dior``: ``JPEGImages-trainval/#####.jpg``, ``JPEGImages-test/``, VOC XML in
  ``Annotations/Horizontal Bounding Boxes/`` (one file with the box inside ``<robndbox>``) and
  DIOR-R XML in ``Annotations/Oriented Bounding Boxes/`` (corner-named integer fields, same
  object order), ``ImageSets/Main/{train,val,test}.txt``; raw class spellings
  (``Expressway-Service-area``). 800 x 800 px.
- ``fair1m`` (2.0): ``train/part1/{images,labelXml}``, ``train/part2/...`` and
  ``validation/{images,labelXml}``; ``N.tif`` names restart at 0 in validation (the same
  names as train); XML with 5-point closed rings (6 decimals, arbitrary start corner) and
  class names with spaces. The images are GeoTIFFs in UTM zone 50N (``EPSG:32650``), north
  up, 0.8 m pixels, so the geo-referenced outputs can be tried without real data.
- ``hrsc``: ``FullDataSet/AllImages/1000000##.bmp``, ``FullDataSet/Annotations/*.xml``
  (``mbox_*`` with the angle in radians, ``seg_color``), ``FullDataSet/Segmentations/*.png``
  colour masks, ``ImageSets/{train,val,trainval,test}.txt``.

DOTA and FAIR1M have images larger than 1024 px (the first is 1300 x 1100), so tiling is
exercised. With two or more images, one image (the last train image) has no objects.

Ground truth ``out/gt/instances.json`` (COCO): ``images[].file_name`` relative to ``out``
(plus ``split`` and ``annotation_file``); ``categories`` = the source's class table in the
official order (``id`` = class id + 1, canonical names); every annotation carries, besides the
COCO keys, ``source_file`` (the label file the reader takes the object from, relative to
``out``; for DIOR the oriented DIOR-R file), ``source_files`` (every label file describing the
object; DIOR: OBB and HBB), ``object_index`` (0-based position among the objects of that
file), ``source_line`` (what the readers put in ``ObjectAnnotation.source_line``: the 1-based
text line for DOTA, ``object_index + 1`` for XML formats), ``polygon`` (the 8 corner
coordinates as stored in the file, i.e. as a reader returns them), ``class_name`` (as
written), ``shape``, ``difficult`` and ``occluded`` (the fraction of the shape hidden by
objects drawn later).

Occlusion rule: objects are painted in file order, later ones on top; the GT mask of an
object is its **visible** part (what the pixels show, and what colour-coded masks like HRSC's
can hold). Overlaps are limited so that every object keeps at least 60% of its shape visible.

Determinism: the same ``(format, n_images, seed)`` gives byte-identical files (seeded numpy
generators, one per image; Pillow writers without timestamps; JSON with stable order). Image
``i`` depends only on ``(format, seed, i)``, so more images extend a dataset without changing
the first ones (except which image is the empty one).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from samrs.core import rle
from samrs.core.classes import class_table, distinct_palette
from samrs.core.geometry import rasterize_polygon, rbox_polygon
from samrs.core.imageio import write_geotiff, write_image, write_png

__all__ = ["FORMATS", "SynthSummary", "SyntheticScene", "render_scene", "write_synthetic"]

FORMATS = ("dota", "dior", "fair1m", "hrsc")
GT_FILE = "gt/instances.json"
VERSION = {"dota": "1.0", "dior": "1.0", "fair1m": "2.0", "hrsc": "2016"}
MIN_VISIBLE = 0.6
"""Every object keeps at least this fraction of its shape visible."""


# --- shapes ---------------------------------------------------------------------------------
def _ellipse() -> np.ndarray:
    t = np.linspace(0.0, 2.0 * math.pi, 48, endpoint=False)
    return np.stack([0.5 * np.cos(t), 0.5 * np.sin(t)], axis=1)


def _mirrored(half: list[tuple[float, float]]) -> np.ndarray:
    """A polygon symmetric about the length axis from its half from nose (v=0) to tail (v=0)."""
    pts = half + [(u, -v) for u, v in reversed(half[1:-1])]
    return np.asarray(pts, dtype=np.float64)


# Unit shapes: u along the box length (-0.5..0.5, nose at +0.5), v across it.
_PLANE = _mirrored(
    [(0.5, 0.0), (0.42, 0.15), (0.25, 0.15), (0.04, 0.5), (-0.2, 0.5), (-0.16, 0.15),
     (-0.34, 0.15), (-0.44, 0.32), (-0.5, 0.32), (-0.5, 0.0)]
)  # fmt: skip
_SHIP = _mirrored([(0.5, 0.0), (0.2, 0.5), (-0.42, 0.5), (-0.5, 0.38), (-0.5, 0.0)])
_ELLIPSE = _ellipse()


def _rounded(aspect: float, inset: float = 0.92, radius: float = 0.35) -> np.ndarray:
    """Rounded rectangle of a box of length/width ``aspect`` (unit coordinates)."""
    hu, hv = inset / 2.0, inset / 2.0
    r_px = radius * inset * min(aspect, 1.0)  # radius in units of the box width
    ru, rv = r_px / aspect, r_px  # the same radius in (u, v) units
    pts = []
    for cu, cv, start in ((hu - ru, hv - rv, 0.0), (-hu + ru, hv - rv, 0.5),
                          (-hu + ru, -hv + rv, 1.0), (hu - ru, -hv + rv, 1.5)):  # fmt: skip
        for t in np.linspace(start * math.pi, (start + 0.5) * math.pi, 7):
            pts.append((cu + ru * math.cos(t), cv + rv * math.sin(t)))
    return np.asarray(pts, dtype=np.float64)


def _shape_points(
    shape: str, cx: float, cy: float, length: float, width: float, angle: float
) -> np.ndarray:
    """(N, 2) image coordinates of a shape in the rotated box (cx, cy, length, width, angle)."""
    unit = {"plane": _PLANE, "ship": _SHIP, "ellipse": _ELLIPSE}.get(shape)
    if unit is None:
        unit = _rounded(length / width)
    dx, dy = unit[:, 0] * length, unit[:, 1] * width
    c, s = math.cos(angle), math.sin(angle)
    return np.stack([cx + dx * c - dy * s, cy + dx * s + dy * c], axis=1)


# --- class specs per source -----------------------------------------------------------------
@dataclass(frozen=True)
class _ClassSpec:
    name: str  # as written in the label files
    shape: str  # plane | ship | ellipse | rounded
    length: tuple[float, float]  # px along the box length
    aspect: tuple[float, float]  # length / width
    weight: float = 1.0
    code: str = ""  # HRSC Class_ID

    @property
    def tiny(self) -> bool:
        return self.length[1] <= 22


_S = _ClassSpec
CLASS_SPECS: dict[str, tuple[_ClassSpec, ...]] = {
    "dota": (
        _S("plane", "plane", (40, 160), (0.9, 1.1), 2),
        _S("ship", "ship", (25, 180), (2.5, 5.0), 2),
        _S("small-vehicle", "rounded", (9, 20), (1.8, 2.4), 3),
        _S("large-vehicle", "rounded", (25, 60), (2.5, 4.0), 2),
        _S("storage-tank", "ellipse", (20, 110), (1.0, 1.0), 2),
        _S("roundabout", "ellipse", (80, 200), (1.0, 1.1), 1),
        _S("swimming-pool", "rounded", (20, 60), (1.3, 2.2), 1),
        _S("tennis-court", "rounded", (40, 80), (1.8, 2.2), 1),
        _S("helicopter", "plane", (20, 40), (1.0, 1.3), 0.5),
    ),
    "dior": (
        _S("airplane", "plane", (30, 120), (0.9, 1.1), 2),
        _S("ship", "ship", (20, 150), (2.5, 5.0), 2),
        _S("vehicle", "rounded", (9, 20), (1.8, 2.4), 3),
        _S("storagetank", "ellipse", (20, 90), (1.0, 1.0), 2),
        _S("tenniscourt", "rounded", (40, 80), (1.8, 2.2), 1),
        _S("chimney", "ellipse", (15, 40), (1.0, 1.2), 1),
        _S("Expressway-Service-area", "rounded", (150, 300), (1.2, 2.0), 0.5),
        _S("golffield", "ellipse", (200, 350), (1.2, 1.8), 0.5),
    ),
    "fair1m": (
        _S("Small Car", "rounded", (9, 18), (1.8, 2.4), 3),
        _S("Van", "rounded", (12, 22), (1.8, 2.4), 1),
        _S("Bus", "rounded", (30, 50), (3.0, 4.0), 1),
        _S("Dump Truck", "rounded", (15, 30), (2.0, 3.0), 1),
        _S("Boeing737", "plane", (40, 70), (0.95, 1.05), 1.5),
        _S("A220", "plane", (35, 60), (0.95, 1.05), 1),
        _S("Passenger Ship", "ship", (60, 200), (3.0, 5.0), 1),
        _S("Motorboat", "ship", (10, 20), (2.5, 3.5), 1.5),
        _S("Baseball Field", "ellipse", (80, 160), (1.0, 1.1), 0.5),
        _S("Tennis Court", "rounded", (40, 70), (1.8, 2.2), 1),
        _S("Roundabout", "ellipse", (80, 180), (1.0, 1.1), 0.5),
    ),
    "hrsc": (
        _S("ship", "ship", (60, 300), (3.5, 7.0), 3, "100000001"),
        _S("ship", "rounded", (200, 340), (4.0, 6.0), 0.5, "100000002"),
        _S("ship", "ship", (80, 250), (4.0, 7.0), 1, "100000003"),
        _S("ship", "ellipse", (10, 20), (2.5, 3.5), 2, "100000005"),
    ),
}


# --- the rendered scene ---------------------------------------------------------------------
@dataclass
class _Object:
    spec: _ClassSpec
    cx: float
    cy: float
    length: float
    width: float
    angle: float
    difficult: bool
    origin: tuple[int, int]  # (x0, y0) of the local mask crop
    shape_mask: np.ndarray  # bool crop of the full shape
    visible: np.ndarray | None = None  # bool crop of the visible part (set at the end)

    @property
    def visible_crop(self) -> np.ndarray:
        """:attr:`visible`, once the scene is complete (no object is used before)."""
        assert self.visible is not None, "the visible part is set when the scene is complete"
        return self.visible

    @property
    def rbox_polygon(self) -> tuple[float, ...]:
        return rbox_polygon(self.cx, self.cy, self.length, self.width, self.angle)

    def full_mask(self, height: int, width: int) -> np.ndarray:
        mask = np.zeros((height, width), dtype=bool)
        x0, y0 = self.origin
        visible = self.visible_crop
        h, w = visible.shape
        mask[y0 : y0 + h, x0 : x0 + w] = visible
        return mask


@dataclass
class _Scene:
    pixels: np.ndarray  # (H, W, 3) uint8
    objects: list[_Object]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def _upsample(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling of a (gh, gw, C) grid to (height, width, C), pure numpy."""
    gh, gw = grid.shape[:2]
    ys = np.linspace(0.0, gh - 1.0, height)
    xs = np.linspace(0.0, gw - 1.0, width)
    y0 = np.minimum(np.floor(ys).astype(int), gh - 2)
    x0 = np.minimum(np.floor(xs).astype(int), gw - 2)
    fy = (ys - y0)[:, None, None]
    fx = (xs - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bottom = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    return top * (1 - fy) + bottom * fy


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A textured (H, W, 3) float background: base colour, gradient, fields, roads, noise."""
    base = rng.uniform(85, 135) + rng.uniform(-18, 18, size=3)
    img = np.empty((height, width, 3), dtype=np.float64)
    img[...] = base
    # linear gradient
    gx, gy = rng.uniform(-25, 25, size=2)
    img += (np.linspace(-0.5, 0.5, width)[None, :, None] * gx) + (
        np.linspace(-0.5, 0.5, height)[:, None, None] * gy
    )
    # smooth large-scale noise
    cell = 96
    grid = rng.normal(0.0, 9.0, size=(height // cell + 2, width // cell + 2, 1))
    img += _upsample(grid, height, width)
    # fields: a few tinted convex quadrilaterals
    for _ in range(int(rng.integers(2, 6))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(80, 350)
        pts = rbox_polygon(cx, cy, size, size * rng.uniform(0.4, 1.0), rng.uniform(0, math.pi))
        mask = rasterize_polygon(pts, height, width)
        img[mask] += rng.uniform(-16, 16, size=3)
    # roads: long light or dark strips
    for _ in range(int(rng.integers(0, 3))):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        pts = rbox_polygon(cx, cy, 3.0 * max(width, height), rng.uniform(6, 18),
                           rng.uniform(0, math.pi))  # fmt: skip
        mask = rasterize_polygon(pts, height, width)
        img[mask] += rng.choice([-1.0, 1.0]) * rng.uniform(15, 25)
    # pixel noise
    img += rng.integers(-3, 4, size=(height, width, 1))
    return img


def _object_colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A colour at least ~70 grey levels brighter or darker than the local background."""
    lum = float(background.mean())
    if lum < 105 or (lum < 130 and rng.random() < 0.7):  # bright object
        grey = rng.uniform(max(lum + 80, 195), 250)
        return np.clip(grey + rng.uniform(-20, 5, size=3), 0, 255)
    grey = rng.uniform(15, min(lum - 70, 45))
    return np.clip(grey + rng.uniform(-10, 10, size=3), 0, 255)


def _n_objects(rng: np.random.Generator, width: int, height: int) -> int:
    scale = width * height / (800.0 * 800.0)
    return int(np.clip(round(rng.integers(7, 14) * scale), 4, 30))


def _choose(rng: np.random.Generator, specs: tuple[_ClassSpec, ...], pool: str) -> _ClassSpec:
    if pool == "tiny":
        candidates = [s for s in specs if s.tiny]
    elif pool == "large":
        candidates = [s for s in specs if s.length[1] >= 150]
    else:
        candidates = list(specs)
    weights = np.asarray([s.weight for s in candidates], dtype=np.float64)
    return candidates[int(rng.choice(len(candidates), p=weights / weights.sum()))]


def _try_place(
    rng: np.random.Generator,
    spec: _ClassSpec,
    placed: list[_Object],
    owner: np.ndarray,
    visible: list[int],
    want_overlap: bool,
    angle: float | None = None,
    centre: tuple[float, float] | None = None,
) -> _Object | None:
    """Find a position for one object; None when no position satisfies the overlap rules.

    ``angle`` fixes the orientation and ``centre`` the position (one attempt); by default
    both are drawn from ``rng``.
    """
    height, width = owner.shape
    length = float(rng.uniform(*spec.length))
    length = min(length, 0.8 * min(width, height))
    box_width = length / float(rng.uniform(*spec.aspect))
    if angle is None:
        angle = float(rng.uniform(-math.pi / 2, math.pi / 2))
    big = [o for o in placed if not o.spec.tiny]
    for _ in range(40 if centre is None else 1):
        if centre is not None:
            cx, cy = centre
        elif want_overlap and big and not spec.tiny:
            anchor = big[int(rng.integers(len(big)))]
            reach = 0.45 * (anchor.length + length)
            theta = rng.uniform(0, 2 * math.pi)
            cx, cy = anchor.cx + reach * math.cos(theta), anchor.cy + reach * math.sin(theta)
        else:
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        pts = _shape_points(spec.shape, cx, cy, length, box_width, angle)
        corners = np.asarray(rbox_polygon(cx, cy, length, box_width, angle)).reshape(4, 2)
        if (
            corners.min() < 2
            or (corners[:, 0] > width - 2).any()
            or (corners[:, 1] > height - 2).any()
        ):
            continue
        x0, y0 = (math.floor(v) for v in corners.min(axis=0))
        x1, y1 = (math.ceil(v) + 1 for v in corners.max(axis=0))
        mask = rasterize_polygon(pts, y1 - y0, x1 - x0, offset=(x0, y0))
        area = int(mask.sum())
        if area < 12:
            continue
        under = owner[y0:y1, x0:x1][mask]
        hidden: np.ndarray | list[int] = (
            np.bincount(under[under >= 0], minlength=len(placed)) if len(placed) else []
        )
        covered = int((under >= 0).sum())
        if not want_overlap and covered:
            continue
        if covered > 0.3 * area or (spec.tiny and covered):
            continue
        if any(
            hidden[j] and (visible[j] - hidden[j] < MIN_VISIBLE * placed[j].shape_mask.sum()
                           or placed[j].spec.tiny)
            for j in range(len(placed))
        ):  # fmt: skip
            continue
        difficult = bool(spec.tiny and rng.random() < 0.3)
        return _Object(spec, cx, cy, length, box_width, angle, difficult, (x0, y0), mask)
    return None


def _add(obj: _Object, placed: list[_Object], owner: np.ndarray, visible: list[int]) -> None:
    """Put a placed object on the ownership map (it hides what it covers)."""
    x0, y0 = obj.origin
    h, w = obj.shape_mask.shape
    region = owner[y0 : y0 + h, x0 : x0 + w]
    under = region[obj.shape_mask]
    for j, count in enumerate(np.bincount(under[under >= 0], minlength=len(placed))):
        visible[j] -= int(count)
    region[obj.shape_mask] = len(placed)
    placed.append(obj)
    visible.append(int(obj.shape_mask.sum()))


def _render_scene(
    rng: np.random.Generator,
    specs: tuple[_ClassSpec, ...],
    width: int,
    height: int,
    empty: bool,
    hard: bool = False,
) -> _Scene:
    background = _background(rng, height, width)
    owner = np.full((height, width), -1, dtype=np.int32)
    placed: list[_Object] = []
    visible: list[int] = []
    n = 0 if empty else _n_objects(rng, width, height)
    for k in range(n):
        pool = "large" if k == 0 else "tiny" if k in (1, 2) else "any"
        spec = _choose(rng, specs, pool if any(_pool_ok(s, pool) for s in specs) else "any")
        want_overlap = k >= 3 and rng.random() < 0.3
        obj = _try_place(rng, spec, placed, owner, visible, want_overlap)
        if obj is None:
            continue
        _add(obj, placed, owner, visible)
    if hard and not empty:
        _add_hard_objects(rng, specs, placed, owner, visible)
        _paint_clutter(rng, background, placed)
    # paint objects in order (later on top): base colour, shading along the length, noise
    pixels = background
    for i, obj in enumerate(placed):
        x0, y0 = obj.origin
        h, w = obj.shape_mask.shape
        crop = pixels[y0 : y0 + h, x0 : x0 + w]
        colour = _object_colour(rng, crop[~obj.shape_mask] if (~obj.shape_mask).any() else crop)
        ys, xs = np.nonzero(obj.shape_mask)
        along = (xs + x0 + 0.5 - obj.cx) * math.cos(obj.angle) + (ys + y0 + 0.5 - obj.cy) * (
            math.sin(obj.angle)
        )
        shade = 10.0 * along / max(obj.length, 1.0)
        if hard:
            colour, texture = _hard_texture(rng, crop, obj, along, ys, xs, colour)
            shade = shade + texture
        crop[ys, xs] = colour[None, :] + shade[:, None] + rng.integers(-4, 5, size=(len(ys), 1))
        obj.visible = owner[y0 : y0 + h, x0 : x0 + w] == i
    pixels = np.clip(np.floor(pixels + 0.5), 0, 255).astype(np.uint8)
    return _Scene(pixels, placed)


# --- hard scenes: elongated diagonal objects, dense rows, shadows, clutter, textures ---------
def _add_hard_objects(
    rng: np.random.Generator,
    specs: tuple[_ClassSpec, ...],
    placed: list[_Object],
    owner: np.ndarray,
    visible: list[int],
) -> None:
    """Elongated objects near a diagonal and rows of densely packed small objects."""
    height, width = owner.shape
    ships = [s for s in specs if s.shape == "ship" and not s.tiny]
    for _ in range(int(rng.integers(1, 3)) if ships else 0):
        base = ships[int(rng.integers(len(ships)))]
        long = min(float(rng.uniform(100, 280)), 0.7 * min(width, height))
        spec = _ClassSpec(base.name, base.shape, (long, long), (5.0, 9.0), code=base.code)
        angle = float(rng.choice([-1.0, 1.0]) * math.pi / 4 + rng.uniform(-0.25, 0.25))
        obj = _try_place(rng, spec, placed, owner, visible, False, angle=angle)
        if obj is not None:
            _add(obj, placed, owner, visible)
    tiny = [s for s in specs if s.tiny]
    for _ in range(int(rng.integers(1, 4)) if tiny else 0):
        spec = tiny[int(rng.integers(len(tiny)))]
        row = float(rng.uniform(-math.pi / 2, math.pi / 2))
        step = float(rng.uniform(0.55, 0.8)) * spec.length[1]
        x, y = float(rng.uniform(0, width)), float(rng.uniform(0, height))
        for _k in range(int(rng.integers(4, 10))):
            obj = _try_place(rng, spec, placed, owner, visible, False,
                             angle=row + math.pi / 2, centre=(x, y))  # fmt: skip
            if obj is not None:
                _add(obj, placed, owner, visible)
            x, y = x + step * math.cos(row), y + step * math.sin(row)


def _paint_clutter(rng: np.random.Generator, img: np.ndarray, placed: list[_Object]) -> None:
    """Unannotated things painted under the objects: their shadows and object-like blobs."""
    height, width = img.shape[:2]
    sun = float(rng.uniform(0, 2 * math.pi))
    for obj in placed:
        if rng.random() < 0.6:
            off = float(rng.uniform(0.15, 0.35)) * obj.width + 1.5
            pts = _shape_points(obj.spec.shape, obj.cx + off * math.cos(sun),
                                obj.cy + off * math.sin(sun), obj.length, obj.width, obj.angle)  # fmt: skip
            mask = rasterize_polygon(pts.reshape(-1), height, width)
            img[mask] *= rng.uniform(0.35, 0.6)
    for _ in range(int(rng.integers(4, 12) * width * height / 640000) + 2):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(10, 70)
        shape = ("rounded", "ellipse")[int(rng.integers(2))]
        pts = _shape_points(shape, cx, cy, size, size / rng.uniform(1.0, 3.0),
                            rng.uniform(-math.pi / 2, math.pi / 2))  # fmt: skip
        mask = rasterize_polygon(pts.reshape(-1), height, width)
        img[mask] = _object_colour(rng, img[mask] if mask.any() else img[:1, :1])


def _hard_texture(
    rng: np.random.Generator,
    crop: np.ndarray,
    obj: _Object,
    along: np.ndarray,
    ys: np.ndarray,
    xs: np.ndarray,
    colour: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """A lower-contrast colour and a texture (stripes, a two-tone part, strong noise)."""
    around = crop[~obj.shape_mask] if (~obj.shape_mask).any() else crop.reshape(-1, 3)
    colour = colour + float(rng.uniform(0.0, 0.45)) * (around.mean(axis=0) - colour)
    kind = int(rng.integers(3))
    if kind == 0:  # stripes across the length
        period = float(rng.uniform(4, 12))
        texture = float(rng.uniform(15, 40)) * (np.sin(2 * math.pi * along / period) > 0)
    elif kind == 1:  # a part of another tone (a cabin, a deck, a wing)
        cut = float(rng.uniform(-0.3, 0.3)) * obj.length
        texture = float(rng.choice([-1.0, 1.0]) * rng.uniform(25, 60)) * (along > cut)
    else:
        texture = np.zeros(len(ys))
    texture = texture + rng.normal(0.0, 6.0, size=len(ys))
    return colour, texture


def _pool_ok(spec: _ClassSpec, pool: str) -> bool:
    return pool == "any" or (spec.tiny if pool == "tiny" else spec.length[1] >= 150)


# --- dataset plans --------------------------------------------------------------------------
@dataclass
class _ImagePlan:
    index: int
    split: str
    stem: str
    width: int
    height: int
    empty: bool
    folder: str = ""  # split folder (FAIR1M train/part1...)


def _split_counts(n: int, fractions: tuple[float, ...]) -> list[int]:
    counts = [math.ceil(n * fractions[0])]
    for frac in fractions[1:-1]:
        counts.append(min(n - sum(counts), math.ceil(n * frac)))
    counts.append(n - sum(counts))
    return counts


def _plan(fmt: str, n_images: int, seed: int) -> list[_ImagePlan]:
    rng = np.random.default_rng([seed, FORMATS.index(fmt), 999])
    if fmt == "dior" or fmt == "hrsc":
        splits = ["train", "val", "test"]
        counts = _split_counts(n_images, (0.5, 0.25, 0.25))
    else:
        splits = ["train", "val"]
        counts = _split_counts(n_images, (0.75, 0.25))
    split_of = [s for s, c in zip(splits, counts, strict=True) for _ in range(c)]
    n_train = counts[0]
    plans = []
    for i in range(n_images):
        if fmt == "dior":
            size = (800, 800)
        elif fmt == "hrsc":
            size = [(640, 480), (600, 400), (700, 500), (512, 512)][int(rng.integers(4))]
        elif fmt == "dota":
            options = [(800, 800), (1024, 768), (900, 700), (700, 900), (640, 640)]
            size = (1300, 1100) if i == 0 else options[int(rng.integers(len(options)))]
            if i == 2:
                size = (1100, 1250)
        else:  # fair1m
            options = [(1000, 1000), (800, 800), (600, 600)]
            size = (1300, 1100) if i == 0 else options[int(rng.integers(len(options)))]
        split = split_of[i]
        empty = n_images >= 2 and i == max(n_train - 1, 1)
        if fmt == "dota":
            stem, folder = f"P{i:04d}", split
        elif fmt == "dior":
            stem, folder = f"{i + 1:05d}", split
        elif fmt == "hrsc":
            stem, folder = f"{100000001 + i}", split
        else:
            if split == "train":
                part = 1 if i < math.ceil(n_train / 2) or n_train < 4 else 2
                stem, folder = f"{i}", f"train/part{part}"
            else:
                stem, folder = f"{i - n_train}", "validation"
        plans.append(_ImagePlan(i, split, stem, size[0], size[1], empty, folder))
    return plans


# --- writers --------------------------------------------------------------------------------
@dataclass
class _Written:
    """What one image's writer produced: files and the objects as stored (file order)."""

    image_file: str
    annotation_files: list[str]  # primary first
    polygons: list[tuple[float, ...]]
    source_lines: list[int]
    extra: dict[str, object] = field(default_factory=dict)


def _round_int(v: float) -> int:
    return math.floor(v + 0.5)


def _int_polygon(poly: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(float(_round_int(v)) for v in poly)


def _write_text(path: Path, text: str, newline: str = "\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.replace("\n", newline).encode("utf-8"))


def _write_dota(out: Path, plan: _ImagePlan, scene: _Scene, rng: np.random.Generator) -> _Written:
    image_rel = f"{plan.folder}/images/{plan.stem}.png"
    label_rel = f"{plan.folder}/labelTxt/{plan.stem}.txt"
    write_png(out / image_rel, scene.pixels)
    lines: list[str] = []
    if plan.index % 8 != 3:  # one file in eight has no header (it is optional)
        source = "GoogleEarth" if plan.index % 3 else "GF"
        gsd = "null" if plan.index % 8 == 1 else f"{rng.uniform(0.1, 0.6):.12f}"
        lines += [f"imagesource:{source}", f"gsd:{gsd}"]
    polygons, source_lines = [], []
    for obj in scene.objects:
        poly = _int_polygon(obj.rbox_polygon)
        polygons.append(poly)
        coords = " ".join(str(int(v)) for v in poly)
        lines.append(f"{coords} {obj.spec.name} {int(obj.difficult)}")
        source_lines.append(len(lines))
    text = "".join(line + "\n" for line in lines)
    _write_text(out / label_rel, text, "\r\n" if plan.index % 2 == 0 else "\n")
    return _Written(image_rel, [label_rel], polygons, source_lines)


def _xml_doc(parts: list[str], declaration: bool) -> str:
    head = '<?xml version="1.0" encoding="utf-8"?>\n' if declaration else ""
    return head + "\n".join(parts) + "\n"


def _tag(indent: int, name: str, value: object) -> str:
    return "\t" * indent + f"<{name}>{escape(str(value))}</{name}>"


def _start_corner(poly: tuple[float, ...], k: int) -> tuple[float, ...]:
    """The same ring starting at corner ``k`` (order kept)."""
    pts = [poly[2 * i : 2 * i + 2] for i in range(4)]
    return tuple(v for p in pts[k:] + pts[:k] for v in p)


def _write_dior(out: Path, plan: _ImagePlan, scene: _Scene, rng: np.random.Generator) -> _Written:
    folder = "JPEGImages-test" if plan.split == "test" else "JPEGImages-trainval"
    image_rel = f"{folder}/{plan.stem}.jpg"
    obb_rel = f"Annotations/Oriented Bounding Boxes/{plan.stem}.xml"
    hbb_rel = f"Annotations/Horizontal Bounding Boxes/{plan.stem}.xml"
    write_image(out / image_rel, scene.pixels, quality=95)
    head = [
        "<annotation>",
        _tag(1, "filename", f"{plan.stem}.jpg"),
        "\t<source>",
        _tag(2, "database", "DIOR"),
        "\t</source>",
        "\t<size>",
        _tag(2, "width", scene.width),
        _tag(2, "height", scene.height),
        _tag(2, "depth", 3),
        "\t</size>",
        _tag(1, "segmented", 0),
    ]
    obb, hbb = list(head), list(head)
    polygons = []
    hbox_tag = "robndbox" if plan.index % 4 == 2 else "bndbox"  # the HBB-in-robndbox quirk
    for obj in scene.objects:
        poly = _int_polygon(obj.rbox_polygon)
        # DIOR-R starts at the left-top corner (smallest x + y), clockwise
        k = min(range(4), key=lambda i: (poly[2 * i] + poly[2 * i + 1], poly[2 * i]))
        poly = _start_corner(poly, k)
        polygons.append(poly)
        names = ("x_left_top", "y_left_top", "x_right_top", "y_right_top",
                 "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom")  # fmt: skip
        angle = round(math.degrees(obj.angle)) % 180
        obb += [
            "\t<object>",
            _tag(2, "name", obj.spec.name),
            _tag(2, "pose", "Unspecified"),
            _tag(2, "truncated", 0),
            _tag(2, "difficult", int(obj.difficult)),
            _tag(2, "type", "robndbox"),
            "\t\t<robndbox>",
            *(_tag(3, n, int(v)) for n, v in zip(names, poly, strict=True)),
            "\t\t</robndbox>",
            _tag(2, "angle", angle),
            "\t</object>",
        ]
        xs, ys = poly[0::2], poly[1::2]
        hbb += [
            "\t<object>",
            _tag(2, "name", obj.spec.name),
            _tag(2, "pose", "Unspecified"),
            _tag(2, "truncated", 0),
            _tag(2, "difficult", int(obj.difficult)),
            f"\t\t<{hbox_tag}>",
            _tag(3, "xmin", int(min(xs))),
            _tag(3, "ymin", int(min(ys))),
            _tag(3, "xmax", int(max(xs))),
            _tag(3, "ymax", int(max(ys))),
            f"\t\t</{hbox_tag}>",
            "\t</object>",
        ]
    obb.append("</annotation>")
    hbb.append("</annotation>")
    _write_text(out / obb_rel, _xml_doc(obb, False))
    _write_text(out / hbb_rel, _xml_doc(hbb, False))
    lines = list(range(1, len(polygons) + 1))
    return _Written(image_rel, [obb_rel, hbb_rel], polygons, lines)


FAIR1M_CRS = "EPSG:32650"
"""CRS of the synthetic FAIR1M GeoTIFFs: WGS 84 / UTM zone 50N (eastern China, where many
FAIR1M scenes are)."""

FAIR1M_GSD = 0.8
"""Pixel size in metres of the synthetic FAIR1M GeoTIFFs (Gaofen-2 pan-sharpened)."""


def _fair1m_transform(plan: _ImagePlan) -> tuple[float, ...]:
    """A north-up transform, each image 5 km east of the previous one, near Shanghai."""
    x0 = 350_000.0 + 5_000.0 * plan.index
    y0 = 3_460_000.0 - 5_000.0 * (plan.folder == "validation")
    return (FAIR1M_GSD, 0.0, x0, 0.0, -FAIR1M_GSD, y0)


def _write_fair1m(out: Path, plan: _ImagePlan, scene: _Scene, rng: np.random.Generator) -> _Written:
    image_rel = f"{plan.folder}/images/{plan.stem}.tif"
    label_rel = f"{plan.folder}/labelXml/{plan.stem}.xml"
    write_geotiff(out / image_rel, scene.pixels, FAIR1M_CRS, _fair1m_transform(plan))
    parts = [
        "<annotation>",
        "\t<source>",
        _tag(2, "filename", f"{plan.stem}.tif"),
        _tag(2, "origin", "GF2/GF3"),
        "\t</source>",
        "\t<research>",
        _tag(2, "version", "2.0"),
        _tag(2, "provider", "samrs synth"),
        _tag(2, "author", "samrs"),
        _tag(2, "pluginname", "FAIR1M"),
        _tag(2, "pluginclass", "object detection"),
        "\t</research>",
        "\t<size>",
        _tag(2, "width", scene.width),
        _tag(2, "height", scene.height),
        _tag(2, "depth", 3),
        "\t</size>",
        "\t<objects>",
    ]
    polygons = []
    for obj in scene.objects:
        poly = _start_corner(obj.rbox_polygon, int(rng.integers(4)))
        poly = tuple(float(f"{v:.6f}") for v in poly)
        polygons.append(poly)
        ring = [*poly, poly[0], poly[1]]
        parts += [
            "\t\t<object>",
            _tag(3, "coordinate", "pixel"),
            _tag(3, "type", "rectangle"),
            _tag(3, "description", "None"),
            "\t\t\t<possibleresult>",
            _tag(4, "name", obj.spec.name),
            "\t\t\t</possibleresult>",
            "\t\t\t<points>",
            *(_tag(4, "point", f"{ring[2 * i]:.6f},{ring[2 * i + 1]:.6f}") for i in range(5)),
            "\t\t\t</points>",
            "\t\t</object>",
        ]
    parts += ["\t</objects>", "</annotation>"]
    _write_text(out / label_rel, _xml_doc(parts, True))
    return _Written(image_rel, [label_rel], polygons, list(range(1, len(polygons) + 1)))


def _seg_colours(n: int) -> list[tuple[int, int, int]]:
    colours = list(dict.fromkeys(distinct_palette(max(n, 1), seed=0.05)))
    k = 1
    while len(colours) < n:  # distinct_palette repeats only for very many objects
        colours.append((k % 256, (k // 256) % 256, 1 + k // 65536))
        k += 1
    return [c for c in colours[:n]]


def _write_hrsc(out: Path, plan: _ImagePlan, scene: _Scene, rng: np.random.Generator) -> _Written:
    image_rel = f"FullDataSet/AllImages/{plan.stem}.bmp"
    label_rel = f"FullDataSet/Annotations/{plan.stem}.xml"
    seg_rel = f"FullDataSet/Segmentations/{plan.stem}.png"
    write_image(out / image_rel, scene.pixels)
    has_objects = bool(scene.objects)
    parts = [
        "<HRSC_Image>",
        _tag(1, "Img_CusType", "sealand"),
        _tag(1, "Img_Status", "train" if plan.split != "test" else "test"),
        _tag(1, "Img_ID", plan.stem),
        _tag(1, "Place_ID", "100000001"),
        _tag(1, "Source_ID", "100000001"),
        _tag(1, "Img_NO", plan.stem),
        _tag(1, "Img_FileName", plan.stem),
        _tag(1, "Img_FileFmt", "bmp"),
        _tag(1, "Img_Date", "1900-01-01"),
        _tag(1, "Img_Location", "69.040297,33.070036"),
        _tag(1, "Img_SizeWidth", scene.width),
        _tag(1, "Img_SizeHeight", scene.height),
        _tag(1, "Img_SizeDepth", 3),
        _tag(1, "Img_Resolution", f"{rng.uniform(0.4, 2.0):.2f}"),
        _tag(1, "Img_Resolution_Layer", 18),
        _tag(1, "Img_Scale", 100),
        _tag(1, "segmented", int(has_objects)),
        _tag(1, "Img_Rotation", "000d"),
        _tag(1, "Img_HaveObj", "True" if has_objects else "False"),
        "\t<HRSC_Objects>",
    ]
    colours = _seg_colours(len(scene.objects))
    seg = np.zeros((scene.height, scene.width, 3), dtype=np.uint8)
    polygons: list[tuple[float, ...]] = []
    for i, obj in enumerate(scene.objects):
        cx, cy, w, h, ang = (float(f"{v:.4f}") for v in (obj.cx, obj.cy, obj.length,
                                                          obj.width, obj.angle))  # fmt: skip
        poly = rbox_polygon(cx, cy, w, h, ang)
        polygons.append(poly)
        xs, ys = poly[0::2], poly[1::2]
        head_x = cx + 0.5 * w * math.cos(ang)
        head_y = cy + 0.5 * w * math.sin(ang)
        colour = colours[i]
        x0, y0 = obj.origin
        visible = obj.visible_crop
        vh, vw = visible.shape
        seg[y0 : y0 + vh, x0 : x0 + vw][visible] = colour
        parts += [
            "\t\t<HRSC_Object>",
            _tag(3, "Object_ID", 100000001 + plan.index * 100 + i),
            _tag(3, "Class_ID", obj.spec.code),
            _tag(3, "Object_NO", 100000001 + i),
            _tag(3, "truncated", 0),
            _tag(3, "difficult", int(obj.difficult)),
            _tag(3, "box_xmin", _round_int(min(xs))),
            _tag(3, "box_ymin", _round_int(min(ys))),
            _tag(3, "box_xmax", _round_int(max(xs))),
            _tag(3, "box_ymax", _round_int(max(ys))),
            _tag(3, "mbox_cx", f"{cx:.4f}"),
            _tag(3, "mbox_cy", f"{cy:.4f}"),
            _tag(3, "mbox_w", f"{w:.4f}"),
            _tag(3, "mbox_h", f"{h:.4f}"),
            _tag(3, "mbox_ang", f"{ang:.4f}"),
            _tag(3, "header_x", _round_int(head_x)),
            _tag(3, "header_y", _round_int(head_y)),
            _tag(3, "seg_color", ",".join(str(c) for c in colour)),
            "\t\t</HRSC_Object>",
        ]
    parts += ["\t</HRSC_Objects>", "</HRSC_Image>"]
    _write_text(out / label_rel, _xml_doc(parts, True), "\r\n")
    files = [label_rel]
    if has_objects:
        write_png(out / seg_rel, seg)
    return _Written(image_rel, files, polygons, list(range(1, len(polygons) + 1)),
                    {"segmentation_file": seg_rel if has_objects else None})  # fmt: skip


_WRITERS = {"dota": _write_dota, "dior": _write_dior, "fair1m": _write_fair1m, "hrsc": _write_hrsc}


def _write_split_lists(out: Path, fmt: str, plans: list[_ImagePlan]) -> None:
    by_split: dict[str, list[str]] = {}
    for plan in plans:
        by_split.setdefault(plan.split, []).append(plan.stem)
    if fmt == "dior":
        for split in ("train", "val", "test"):
            _write_text(out / f"ImageSets/Main/{split}.txt",
                        "".join(s + "\n" for s in by_split.get(split, [])))  # fmt: skip
    elif fmt == "hrsc":
        lists = dict(by_split)
        lists["trainval"] = by_split.get("train", []) + by_split.get("val", [])
        for split in ("train", "val", "trainval", "test"):
            _write_text(out / f"ImageSets/{split}.txt",
                        "".join(s + "\n" for s in lists.get(split, [])))  # fmt: skip


# --- public API -----------------------------------------------------------------------------
@dataclass(frozen=True)
class SyntheticScene:
    """One rendered scene in memory (what image ``index`` of a dataset would hold).

    Attributes:
        pixels: (H, W, 3) uint8 image.
        polygons: (N, 8) float oriented boxes of the objects (file order).
        masks: (N, H, W) bool visible ground-truth masks.
        class_names: the objects' class names.
    """

    pixels: np.ndarray
    polygons: np.ndarray
    masks: np.ndarray
    class_names: tuple[str, ...]


def render_scene(fmt: str, seed: int, index: int, hard: bool = False) -> SyntheticScene:
    """Image ``index`` of a ``fmt`` dataset with ``seed``, rendered in memory, never empty.

    ``hard`` scenes add what makes a box or a colour model fail: elongated objects near a
    diagonal, rows of densely packed small objects, unannotated shadows and object-like
    clutter, lower contrast and textured objects (stripes, two-tone parts, strong noise).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown synthetic format {fmt!r}; expected one of {', '.join(FORMATS)}")
    plan = _plan(fmt, index + 1, seed)[index]
    rng = np.random.default_rng([seed, FORMATS.index(fmt), index])
    scene = _render_scene(rng, CLASS_SPECS[fmt], plan.width, plan.height, False, hard)
    n = len(scene.objects)
    masks = np.zeros((n, scene.height, scene.width), dtype=bool)
    for k, obj in enumerate(scene.objects):
        masks[k] = obj.full_mask(scene.height, scene.width)
    polygons = np.asarray([o.rbox_polygon for o in scene.objects], dtype=np.float64)
    return SyntheticScene(scene.pixels, polygons.reshape(n, 8), masks,
                          tuple(o.spec.name for o in scene.objects))  # fmt: skip


@dataclass(frozen=True)
class SynthSummary:
    """What :func:`write_synthetic` wrote.

    Attributes:
        format: source format.
        version: dataset version whose class names were used.
        root: the dataset folder.
        seed: random seed.
        n_images: images written.
        n_objects: objects written (all with a GT mask).
        n_empty: images without objects.
        splits: images per split.
        classes: objects per class (as written).
        gt_file: the COCO ground truth.
        files: every file written, relative to ``root``, sorted.
        n_bytes: total size of those files.
    """

    format: str
    version: str
    root: Path
    seed: int
    n_images: int
    n_objects: int
    n_empty: int
    splits: dict[str, int]
    classes: dict[str, int]
    gt_file: Path
    files: tuple[str, ...]
    n_bytes: int

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary."""
        return {
            "format": self.format,
            "version": self.version,
            "root": str(self.root),
            "seed": self.seed,
            "images": self.n_images,
            "objects": self.n_objects,
            "empty_images": self.n_empty,
            "splits": self.splits,
            "classes": self.classes,
            "gt_file": str(self.gt_file),
            "files": len(self.files),
            "bytes": self.n_bytes,
        }


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise FileExistsError(f"{out} is not empty; choose a new folder or overwrite it")
        if not (out / GT_FILE).is_file():
            raise FileExistsError(
                f"refusing to overwrite {out}: it is not a samrs synthetic dataset (no {GT_FILE})"
            )
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def write_synthetic(
    fmt: str,
    out: str | Path,
    n_images: int = 8,
    seed: int = 0,
    overwrite: bool = False,
    hard: bool = False,
) -> SynthSummary:
    """Write a synthetic dataset of format ``fmt`` with GT masks (see the module docstring).

    Args:
        fmt: ``dota``, ``dior``, ``fair1m`` or ``hrsc``.
        out: folder to create (must be empty or absent).
        n_images: number of images (>= 1).
        seed: random seed; the same seed gives byte-identical files.
        overwrite: replace ``out`` when it holds a previous synthetic dataset.
        hard: harder scenes (see :func:`render_scene`); without it the files are unchanged.

    Raises:
        ValueError: unknown format or ``n_images < 1``.
        FileExistsError: ``out`` is not empty (and not a synthetic dataset to overwrite).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown synthetic format {fmt!r}; expected one of {', '.join(FORMATS)}")
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    out = Path(out)
    _prepare_out(out, overwrite)
    version = VERSION[fmt]
    table = class_table(fmt, version)
    specs = CLASS_SPECS[fmt]
    coco_images: list[dict[str, object]] = []
    annotations: list[dict[str, object]] = []
    plans = _plan(fmt, n_images, seed)
    for plan in plans:
        rng = np.random.default_rng([seed, FORMATS.index(fmt), plan.index])
        scene = _render_scene(rng, specs, plan.width, plan.height, plan.empty, hard)
        if fmt == "fair1m":  # FAIR1M has no difficult flag
            for obj in scene.objects:
                obj.difficult = False
        written = _WRITERS[fmt](out, plan, scene, rng)
        image_id = len(coco_images) + 1
        entry: dict[str, object] = {
            "id": image_id,
            "file_name": written.image_file,
            "width": scene.width,
            "height": scene.height,
            "split": plan.split,
            "annotation_file": written.annotation_files[0],
        }
        entry.update(written.extra)
        coco_images.append(entry)
        for k, obj in enumerate(scene.objects):
            mask = obj.full_mask(scene.height, scene.width)
            encoded = rle.encode(mask)
            class_id = table.lookup(obj.spec.name)
            assert class_id is not None, obj.spec.name
            shape_area = int(obj.shape_mask.sum())
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": class_id + 1,
                    "segmentation": encoded,
                    "area": rle.area(encoded),
                    "bbox": rle.bbox(encoded),
                    "iscrowd": 0,
                    "source_file": written.annotation_files[0],
                    "source_files": written.annotation_files,
                    "object_index": k,
                    "source_line": written.source_lines[k],
                    "polygon": [float(v) for v in written.polygons[k]],
                    "class_name": obj.spec.name,
                    "shape": obj.spec.shape,
                    "difficult": int(obj.difficult),
                    "occluded": round(1.0 - int(obj.visible_crop.sum()) / shape_area, 4),
                }
            )
    _write_split_lists(out, fmt, plans)
    categories = [
        {"id": i + 1, "name": name, "supercategory": table.supercategories[i] or fmt}
        for i, name in enumerate(table.names)
    ]
    gt = {
        "info": {
            "description": f"samrs synthetic {fmt} dataset (ground-truth masks: visible parts)",
            "format": fmt,
            "version": version,
            "seed": seed,
            "images": n_images,
            **({"hard": True} if hard else {}),
        },
        "images": coco_images,
        "annotations": annotations,
        "categories": categories,
    }
    _write_text(out / GT_FILE, json.dumps(gt, separators=(",", ":")) + "\n")
    files = tuple(sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()))
    classes: dict[str, int] = {}
    for ann in annotations:
        classes[str(ann["class_name"])] = classes.get(str(ann["class_name"]), 0) + 1
    splits: dict[str, int] = {}
    for plan in plans:
        splits[plan.split] = splits.get(plan.split, 0) + 1
    return SynthSummary(
        format=fmt,
        version=version,
        root=out,
        seed=seed,
        n_images=n_images,
        n_objects=len(annotations),
        n_empty=len(coco_images) - len({a["image_id"] for a in annotations}),
        splits=splits,
        classes=dict(sorted(classes.items())),
        gt_file=out / GT_FILE,
        files=files,
        n_bytes=sum((out / f).stat().st_size for f in files),
    )
