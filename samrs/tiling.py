"""Cutting large images into patches the way the de-facto tools do (mmrotate, BboxToolkit).

Windows per axis (:func:`window_starts`): ``step = size - gap``; one window when the side is
at most ``size``, else ``ceil((L - size) / step + 1)`` windows at ``step * i``, the last one
pulled back to ``L - size``. Windows are square, ``size`` wide; where a side of the image is
shorter than the window the window extends past the image and its pixels are padded
(:data:`samrs.core.imageio.PAD_VALUE`). Windows whose image coverage is at most
``coverage_threshold`` (0.6) are dropped, unless no window of the image passes, when the best
covered ones are kept (so no image is ever lost).

Rates (multi-scale): for a rate ``r`` the window is ``int(size / r)`` source pixels with gap
``int(gap / r)`` -- mmrotate's rule -- and the patch is that window resized to ``size``. The
records :func:`tile_dataset` returns stay in **source pixels** (window, width, height and
object coordinates are those of the unresized window); resizing happens only where patch
files are written (:func:`write_dota_patches`, ``samrs split``), whose labels are scaled by
``size / window``. Tile ids follow mmrotate: ``<image_id>__<window size>__<x>___<y>`` with the
window size and offsets in source pixels, so a rate shows as the window size
(``P0001__2048__0___0`` is rate 0.5 of a 1024 patch) and ids stay unique across rates.

Objects are assigned by iof (area of the object inside the window over its area, shapely):
kept where ``iof >= iof_threshold`` (0.7), translated to window coordinates, marked
``truncated`` when ``iof < 1``, and with ``clip=True`` their corners are clamped to the window
(flag ``clipped``). An object can appear in several overlapping windows (expected: every
window is a training sample). An object kept by no window is not dropped silently: it becomes
an error record (stage ``tile``, ``n_objects=1``). Object provenance (file, line, element) is
kept unchanged; tiles carry ``source_image_id`` and their objects ``source_index`` (the index
in the source image), so an object's instances in overlapping tiles can be related. Objects that lie partly in a window but are not kept there (*remnants*), and
objects kept in an altered form (clipped, integer coordinates), are carried on the tile with
their source polygons as ``ImageRecord.ignore_polygons`` (tile coordinates): their pixels are
never labelled background (255 where no kept mask covers them).

Two conventions (``convention``): ``mmrotate`` (default, all of the above) and ``devkit``, the
official DOTA_devkit splitter (``ImgSplit_multi_process.py``, CAPTAIN-WHU/DOTA_devkit), whose
rules are reproduced here from its documented behaviour (see :func:`devkit_assign`):

- names ``<stem>__<rate>__<x>___<y>`` with the rate as the devkit's ``str(rate)`` of the
  rate it is called with (``1``, ``0.5``): ``P0706__1__87___0``;
- the same window starts as above, but every window is kept (no coverage threshold) and every
  patch is padded to the full size with zeros (black) at the bottom/right;
- source coordinates are truncated to integers first; an object's iof is taken against the
  window clipped to ``[x, min(x + size, W - 1)] x [y, min(y + size, H - 1)]``;
- an object wholly inside keeps its polygon (translated); a cut one (``0 < iof < 1``) is
  written as its intersection with the window (4 vertices, or 5 reduced to 4 by merging the
  shortest edge into its midpoint; a triangle or a cut with more than 5 vertices is not
  written), its corners rotated to best match the original order, translated with integer
  truncation and clamped to ``[1, size]``; it keeps its difficulty when ``iof > thresh`` and is
  written with difficulty 2 otherwise (flag ``low-iof`` here);
- only rate 1 (the devkit resizes whole images for other rates, which samrs does not
  reproduce).
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from samrs.core.geometry import clip_polygon, iof
from samrs.core.records import (
    Dataset,
    ErrorRecord,
    ImageRecord,
    ObjectAnnotation,
    Polygon,
    Window,
    as_polygon,
)
from samrs.errors import SamrsError
from samrs.sources.common import SPLIT_MARKER  # defined where it is read

__all__ = [
    "COVERAGE_THRESHOLD",
    "DEVKIT_PAD_VALUE",
    "IOF_THRESHOLD",
    "LOW_IOF_FLAG",
    "SPLIT_MARKER",
    "TILE_CONVENTIONS",
    "PatchSummary",
    "TilingError",
    "assign_objects",
    "devkit_assign",
    "dota_label_text",
    "image_windows",
    "object_iof",
    "patch_pad_value",
    "tile_dataset",
    "tile_id",
    "tile_image",
    "window_size",
    "window_starts",
    "write_dota_patches",
]

IOF_THRESHOLD = 0.7
COVERAGE_THRESHOLD = 0.6
_EPS = 1e-9

TILE_CONVENTIONS = ("mmrotate", "devkit")
"""Tiling conventions: mmrotate's splitter (default) and the official DOTA_devkit's."""
DEVKIT_PAD_VALUE: tuple[int, int, int] = (0, 0, 0)
"""The devkit pads patches with zeros (``np.zeros`` then the crop at the top-left)."""
LOW_IOF_FLAG = "low-iof"
"""Flag of a cut object the devkit convention keeps below the iof threshold (difficulty 2)."""


class TilingError(SamrsError, ValueError):
    """Invalid tiling parameters (size, gap, rates, thresholds)."""


def window_starts(length: int, size: int, gap: int) -> list[int]:
    """Start offsets of the sliding windows along one side of ``length`` pixels.

    >>> window_starts(4000, 1024, 200)
    [0, 824, 1648, 2472, 2976]
    >>> window_starts(800, 1024, 200)
    [0]

    Raises:
        TilingError: ``size < 1``, ``gap < 0`` or ``gap >= size``.
    """
    if size < 1 or gap < 0 or gap >= size:
        raise TilingError(f"need size >= 1 and 0 <= gap < size, got size {size}, gap {gap}")
    if length <= size:
        return [0]
    step = size - gap
    count = math.ceil((length - size) / step + 1)
    starts = [step * i for i in range(count)]
    if starts[-1] + size > length:
        starts[-1] = length - size
    return starts


def window_size(patch_size: int, gap: int, rate: float) -> tuple[int, int]:
    """``(window, gap)`` in source pixels for a rate (mmrotate: ``int(size / rate)``)."""
    if rate <= 0:
        raise TilingError(f"rates must be positive, got {rate}")
    return int(patch_size / rate), int(gap / rate)


def image_windows(
    width: int,
    height: int,
    size: int,
    gap: int,
    rate: float = 1.0,
    coverage_threshold: float = COVERAGE_THRESHOLD,
) -> list[Window]:
    """Windows ``(x, y, w, h)`` of an image, row by row (y, then x).

    Args:
        width, height: image size in pixels.
        size, gap: patch size and overlap in patch pixels.
        rate: scale of the patches; the window is ``int(size / rate)`` source pixels.
        coverage_threshold: windows whose fraction inside the image is at most this are
            dropped, unless none passes (then the best covered are kept).
    """
    if width < 1 or height < 1:
        raise TilingError(f"image size must be positive, got {width}x{height}")
    win, win_gap = window_size(size, gap, rate)
    windows = [
        (x, y, win, win)
        for y in window_starts(height, win, win_gap)
        for x in window_starts(width, win, win_gap)
    ]
    coverage = [
        (min(x + win, width) - x) * (min(y + win, height) - y) / float(win * win)
        for x, y, _, _ in windows
    ]
    kept = [w for w, c in zip(windows, coverage, strict=True) if c > coverage_threshold]
    if not kept:
        best = max(coverage)
        kept = [w for w, c in zip(windows, coverage, strict=True) if c >= best - _EPS]
    return kept


def patch_pad_value(convention: str = "mmrotate") -> tuple[int, int, int]:
    """RGB fill of window parts outside the image under a tile convention."""
    from samrs.core.imageio import PAD_VALUE

    _check_convention(convention)
    return DEVKIT_PAD_VALUE if convention == "devkit" else PAD_VALUE


def _check_convention(convention: str) -> None:
    if convention not in TILE_CONVENTIONS:
        raise TilingError(
            f"unknown tile convention {convention!r}; expected one of {', '.join(TILE_CONVENTIONS)}"
        )


def _rate_text(rate: float) -> str:
    """The devkit's ``str(rate)`` for the rate as its scripts pass it: ``1``, ``0.5``."""
    return str(int(rate)) if float(rate).is_integer() else str(float(rate))


def tile_id(image_id: str, window: Window, convention: str = "mmrotate", rate: float = 1.0) -> str:
    """A tile's name: ``<image_id>__<window size>__<x>___<y>`` (mmrotate) or
    ``<image_id>__<rate>__<x>___<y>`` (devkit: ``outbasename = name + '__' + str(rate) + '__'``
    then ``str(left) + '___' + str(up)`` in ``ImgSplit_multi_process.py``)."""
    x, y, w, _ = window
    scale = _rate_text(rate) if convention == "devkit" else str(w)
    return f"{image_id}__{scale}__{x}___{y}"


def _hboxes(objects: Sequence[ObjectAnnotation]) -> np.ndarray:
    return np.asarray([obj.hbox for obj in objects], dtype=np.float64).reshape(-1, 4)


def object_iof(obj: ObjectAnnotation, window: Window, hbox: Sequence[float] | None = None) -> float:
    """iof of an object in a window; exact 0 or 1 without shapely when its box says so."""
    x0, y0, x1, y1 = obj.hbox if hbox is None else hbox
    x, y, w, h = window
    if x1 <= x or y1 <= y or x0 >= x + w or y0 >= y + h:
        return 0.0
    if x0 >= x and y0 >= y and x1 <= x + w and y1 <= y + h:
        return 1.0
    return iof(obj.polygon, window)


def assign_objects(
    objects: Sequence[ObjectAnnotation],
    window: Window,
    iof_threshold: float = IOF_THRESHOLD,
    clip: bool = False,
    hboxes: np.ndarray | None = None,
) -> list[tuple[int, ObjectAnnotation]]:
    """Objects kept in a window, as ``(index in objects, object in window coordinates)``.

    Kept when ``iof >= iof_threshold``; truncated when ``iof < 1``; with ``clip`` the corners
    of cut objects are clamped into the window (flag ``clipped``).

    Args:
        objects: the image's objects, in image pixels.
        window: ``(x, y, w, h)`` in image pixels.
        iof_threshold: minimum fraction of an object's area inside the window.
        clip: clamp the corners of cut objects into the window.
        hboxes: the objects' horizontal boxes (N, 4), when already computed.
    """
    return _assign(objects, window, iof_threshold, clip, hboxes)[0]


def _translate(polygon: Sequence[float], x: float, y: float) -> Polygon:
    return as_polygon(float(v) - (x if i % 2 == 0 else y) for i, v in enumerate(polygon))


def _assign(
    objects: Sequence[ObjectAnnotation],
    window: Window,
    iof_threshold: float,
    clip: bool,
    hboxes: np.ndarray | None,
) -> tuple[list[tuple[int, ObjectAnnotation]], list[Polygon]]:
    """:func:`assign_objects` and the ignore polygons (window coordinates): source polygons
    of the remnants and of the objects ``clip`` moved."""
    x, y, w, h = window
    boxes = _hboxes(objects) if hboxes is None else hboxes
    touching = np.nonzero(
        (boxes[:, 2] > x) & (boxes[:, 3] > y) & (boxes[:, 0] < x + w) & (boxes[:, 1] < y + h)
    )[0]
    kept = []
    remnants: list[Polygon] = []
    for index in touching.tolist():
        obj = objects[index]
        overlap = object_iof(obj, window, boxes[index])
        if overlap < iof_threshold - _EPS:
            if overlap > 0.0:
                remnants.append(_translate(obj.polygon, x, y))
            continue
        polygon = _translate(obj.polygon, x, y)
        truncated = obj.truncated or overlap < 1.0 - _EPS
        flags = obj.flags
        if clip and overlap < 1.0 - _EPS:
            source_polygon = polygon
            polygon, moved = clip_polygon(polygon, (0.0, 0.0, float(w), float(h)))
            if moved:
                remnants.append(source_polygon)
            if moved and "clipped" not in flags:
                flags = (*flags, "clipped")
        kept.append((index, obj.with_changes(polygon=polygon, truncated=truncated, flags=flags)))
    return kept, remnants


def _poly4_from_poly5(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Five vertices to four: the shortest edge (``i`` to ``i + 1``, cyclic; the first
    shortest) is replaced by its midpoint, in place of its first vertex."""
    n = len(points)
    lengths = [math.dist(points[i], points[(i + 1) % n]) for i in range(n)]
    pos = lengths.index(min(lengths))
    a, b = points[pos], points[(pos + 1) % n]
    mid = ((a[0] + b[0]) / 2.0, (a[1] + b[1]) / 2.0)
    return [mid if i == pos else p for i, p in enumerate(points) if i != (pos + 1) % n]


def _best_rotation(points: list[tuple[float, float]], target: Sequence[float]) -> list[float]:
    """The cyclic rotation of ``points`` closest (sum of squared distances) to ``target``;
    the first on ties (no reflections)."""
    flat = [v for p in points for v in p]
    best: list[float] = flat
    best_d = math.inf
    for k in range(len(points)):
        cand = flat[2 * k :] + flat[: 2 * k]
        d = sum((a - b) ** 2 for a, b in zip(cand, target, strict=True))
        if d < best_d:
            best, best_d = cand, d
    return best


def devkit_assign(
    objects: Sequence[ObjectAnnotation],
    window: Window,
    image_width: int,
    image_height: int,
    iof_threshold: float = IOF_THRESHOLD,
) -> tuple[list[tuple[int, ObjectAnnotation]], list[Polygon]]:
    """Objects of a window under the DOTA_devkit rules (module docstring), and ignore polygons.

    Returns ``(kept, ignore)``: ``kept`` as in :func:`assign_objects` (cut objects get the
    flags ``clipped`` and, at ``iof <= iof_threshold``, ``low-iof``); ``ignore`` the source
    polygons (window coordinates) of the objects reaching into the window that are not kept
    unchanged: not written (a cut that is a triangle or has more than 5 vertices) or written
    altered (clipped, or moved by the integer truncation). Where a 5-vertex cut has two
    equally short edges, the first in the intersection ring (as shapely returns it) is merged,
    as in the devkit.
    """
    from shapely.geometry import Polygon as ShapelyPolygon

    x, y, size, _ = window
    right, down = min(x + size, image_width - 1), min(y + size, image_height - 1)
    # the frame's ring starts where the devkit's does: the intersection's first vertex (hence
    # which of two equally short edges a 5-vertex cut loses) follows the input rings
    frame = ShapelyPolygon([(x, y), (right, y), (right, down), (x, down)])
    kept: list[tuple[int, ObjectAnnotation]] = []
    ignore: list[Polygon] = []
    for index, obj in enumerate(objects):
        x0, y0, x1, y1 = obj.hbox
        if x1 <= x or y1 <= y or x0 >= x + size or y0 >= y + size:
            continue
        source_polygon = _translate(obj.polygon, x, y)
        written = _devkit_object(obj, x, y, right, down, size, frame, iof_threshold)
        if written is not None:
            kept.append((index, written))
        if written is None or written.polygon != source_polygon:
            ignore.append(source_polygon)
    return kept, ignore


def _devkit_object(
    obj: ObjectAnnotation,
    x: int,
    y: int,
    right: int,
    down: int,
    size: int,
    frame: object,
    iof_threshold: float,
) -> ObjectAnnotation | None:
    """One object as the devkit writes it in a window framed by ``frame``, or None."""
    from shapely.geometry import Polygon as ShapelyPolygon
    from shapely.geometry.polygon import orient

    poly = [float(math.trunc(v)) for v in obj.polygon]  # parse_dota_poly2: int()
    xs, ys = poly[0::2], poly[1::2]
    if max(xs) <= x or max(ys) <= y or min(xs) >= right or min(ys) >= down:
        return None
    gt = ShapelyPolygon(list(zip(xs, ys, strict=True)))
    if gt.area <= 0:
        return None  # the devkit skips it (an error record if no window keeps it)
    if min(xs) >= x and min(ys) >= y and max(xs) <= right and max(ys) <= down:
        return obj.with_changes(polygon=_translate(poly, x, y))
    try:
        inter = gt.intersection(frame)
    except Exception:  # shapely refuses an invalid (self-crossing) polygon: not written
        inter = None
    overlap = 0.0 if inter is None else inter.area / gt.area
    if inter is None or overlap <= 0.0 or inter.geom_type != "Polygon":
        return None
    points = list(orient(inter, sign=1.0).exterior.coords)[:-1]
    if len(points) == 5:
        points = _poly4_from_poly5(points)
    if len(points) != 4:
        return None  # a triangle, or more than 5 vertices: the devkit does not write it
    flat = _best_rotation(points, poly)
    clipped = []
    for i, v in enumerate(flat):
        local = math.trunc(v - (x if i % 2 == 0 else y))
        clipped.append(float(1 if local <= 1 else size if local >= size else local))
    flags = obj.flags if "clipped" in obj.flags else (*obj.flags, "clipped")
    if overlap <= iof_threshold:
        flags = (*flags, LOW_IOF_FLAG)
    return obj.with_changes(polygon=as_polygon(clipped), truncated=True, flags=flags)


def tile_image(
    image: ImageRecord,
    patch_size: int,
    gap: int,
    rates: Sequence[float] = (1.0,),
    iof_threshold: float = IOF_THRESHOLD,
    clip: bool = False,
    coverage_threshold: float = COVERAGE_THRESHOLD,
    convention: str = "mmrotate",
) -> tuple[list[ImageRecord], list[ErrorRecord]]:
    """The tiles of one image, and an error record for each object no tile kept.

    ``image.width`` and ``image.height`` must be known (see :func:`tile_dataset`). Under the
    ``devkit`` convention every window is kept (``coverage_threshold`` and ``clip`` do not
    apply: the devkit always clips cut objects).
    """
    if image.window is not None:
        raise TilingError(f"image {image.image_id} is already a tile (window {image.window})")
    image = _with_provenance(image)  # tiles inherit the source image id and object indices
    assert image.width is not None and image.height is not None
    tiles: list[ImageRecord] = []
    placed = [False] * len(image.objects)
    seen: set[Window] = set()
    boxes = _hboxes(image.objects)
    devkit = convention == "devkit"
    for rate in rates:
        for window in image_windows(
            image.width, image.height, patch_size, gap, rate, 0.0 if devkit else coverage_threshold
        ):
            if window in seen:  # two rates with the same window size
                continue
            seen.add(window)
            if devkit:
                kept, remnants = devkit_assign(
                    image.objects, window, image.width, image.height, iof_threshold
                )
            else:
                kept, remnants = _assign(image.objects, window, iof_threshold, clip, boxes)
            for index, _ in kept:
                placed[index] = True
            tiles.append(
                image.with_changes(
                    image_id=tile_id(image.image_id, window, convention, rate),
                    width=window[2],
                    height=window[3],
                    objects=tuple(obj for _, obj in kept),
                    window=window,
                    source_width=image.width,
                    source_height=image.height,
                    ignore_polygons=tuple(remnants),
                )
            )
    errors = []
    for obj, ok in zip(image.objects, placed, strict=True):
        if ok:
            continue
        best = max((object_iof(obj, t.window) for t in tiles if t.window), default=0.0)
        why = (
            f"fell below the iof threshold {iof_threshold:g} in every {patch_size} px window "
            f"(best iof {best:.3f})"
            if not devkit
            else f"is written to no patch under the devkit rules (best iof {best:.3f}; a zero "
            "area after integer truncation, or cut into a triangle or a polygon of more than "
            "5 vertices)"
        )
        errors.append(
            ErrorRecord(
                source_file=obj.source_file or (image.annotation_file or image.image_path),
                line=obj.source_line,
                stage="tile",
                message=f"{obj.class_name} object {why}; not in any tile",
                image_id=image.image_id,
                n_objects=1,
            )
        )
    return tiles, errors


def _with_provenance(image: ImageRecord) -> ImageRecord:
    """The image with ``source_image_id`` set and each object's ``source_index`` (its index
    in the image), which its tiles and their objects keep."""
    objects = tuple(obj.with_changes(source_index=k) for k, obj in enumerate(image.objects))
    return image.with_changes(source_image_id=image.image_id, objects=objects)


def _check_params(
    patch_size: int,
    gap: int,
    rates: Sequence[float],
    iof_threshold: float,
    convention: str = "mmrotate",
) -> None:
    _check_convention(convention)
    if convention == "devkit" and any(float(r) != 1.0 for r in rates):
        raise TilingError(
            f"the devkit tile convention supports rate 1 only, got rates {list(rates)} (the "
            "devkit resizes whole images for other rates; use --tile-convention mmrotate)"
        )
    if patch_size < 1 or gap < 0 or gap >= patch_size:
        raise TilingError(
            f"need patch size >= 1 and 0 <= gap < patch size, got {patch_size} and {gap}"
        )
    if not rates or any(r <= 0 for r in rates):
        raise TilingError(f"rates must be positive numbers, got {list(rates)}")
    for rate in rates:
        win, win_gap = window_size(patch_size, gap, rate)
        if win < 1 or win_gap >= win:
            raise TilingError(f"rate {rate} gives an empty window for patch size {patch_size}")
    if not 0.0 < iof_threshold <= 1.0:
        raise TilingError(f"iof threshold must be in (0, 1], got {iof_threshold}")


def tile_dataset(
    dataset: Dataset,
    patch_size: int,
    gap: int,
    rates: Sequence[float] = (1.0,),
    iof_threshold: float = IOF_THRESHOLD,
    clip: bool = False,
    coverage_threshold: float = COVERAGE_THRESHOLD,
    convention: str = "mmrotate",
) -> Dataset:
    """One :class:`ImageRecord` per window of every image (see the module docstring).

    Images without objects still give their windows. An image whose size is unknown and
    whose header cannot be read gives an error record (stage ``tile``) accounting for its
    objects. The dataset's own errors come first in the result, then the tiling errors.

    Raises:
        TilingError: invalid parameters.
    """
    from samrs.core.imageio import ImageReadError, image_size

    _check_params(patch_size, gap, rates, iof_threshold, convention)
    images: list[ImageRecord] = []
    errors: list[ErrorRecord] = list(dataset.errors)
    for image in dataset.images:
        if image.width is None or image.height is None:
            try:
                width, height = image_size(image.image_path)
            except ImageReadError as exc:
                errors.append(
                    ErrorRecord(
                        image.image_path,
                        None,
                        "tile",
                        f"image size unknown, cannot tile: {exc}",
                        image.image_id,
                        len(image.objects),
                    )
                )
                continue
            image = image.with_changes(width=width, height=height)
        tiles, tile_errors = tile_image(
            image, patch_size, gap, rates, iof_threshold, clip, coverage_threshold, convention
        )
        images.extend(tiles)
        errors.extend(tile_errors)
    return Dataset(dataset.source, dataset.version, images, errors)


# --- writing patches ------------------------------------------------------------------------
@dataclass
class PatchSummary:
    """What :func:`write_dota_patches` wrote."""

    out: Path
    patches: int = 0
    objects: int = 0
    source_images: int = 0
    errors: list[ErrorRecord] = field(default_factory=list)
    splits: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready summary (errors as ``{file, line, stage, message}``); ``patch_objects``
        counts object lines over all patches (an object in overlapping patches counts in
        each)."""
        return {
            "out": str(self.out),
            "source_images": self.source_images,
            "patches": self.patches,
            "patch_objects": self.objects,
            "splits": dict(self.splits),
            "errors": [e.to_dict() for e in self.errors],
        }


def _fmt(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def dota_label_text(
    objects: Iterable[ObjectAnnotation],
    scale: float = 1.0,
    gsd: float | None = None,
    imagesource: str | None = None,
    convention: str = "mmrotate",
) -> str:
    """A DOTA labelTxt document: ``imagesource:``/``gsd:`` header, one object per line.

    Coordinates are multiplied by ``scale`` and written with up to 3 decimals; spaces in class
    names become ``-`` (the DOTA line format is space separated). The last column is, under
    ``mmrotate``, 1 for a difficult object, else 2 for a truncated one (mmrotate's marker of an
    object cut by the patch, which the DOTA reader reads back as truncated), else 0; under
    ``devkit``, 2 for an object kept below the iof threshold (flag ``low-iof``), else the
    difficulty (1 or 0), as the devkit writes it.
    """
    lines = []
    if imagesource:
        lines.append(f"imagesource:{imagesource}")
    lines.append(f"gsd:{'null' if gsd is None else repr(float(gsd))}")
    for obj in objects:
        coords = " ".join(_fmt(v * scale) for v in obj.polygon)
        name = "-".join(obj.class_name.split())
        if convention == "devkit":
            flag = 2 if LOW_IOF_FLAG in obj.flags else 1 if obj.difficult else 0
        else:
            flag = 1 if obj.difficult else 2 if obj.truncated else 0
        lines.append(f"{coords} {name} {flag}")
    return "".join(line + "\n" for line in lines)


def write_dota_patches(
    tiles: Dataset,
    out: str | os.PathLike[str],
    patch_size: int,
    progress: Callable[[ImageRecord], None] | None = None,
    pad_value: Sequence[int] | None = None,
    max_pixels: int | None = None,
    convention: str = "mmrotate",
) -> PatchSummary:
    """Write tiles as DOTA patches: ``out/<split>/images/<id>.png`` and ``labelTxt/<id>.txt``.

    Each tile's window is read from its source image (padded with ``pad_value``, default
    the convention's :func:`patch_pad_value`, where the window extends past the image) and resized
    to ``patch_size`` when its window is another size (rates != 1); labels are scaled alike,
    and the gsd becomes ``gsd * w / patch_size``; the source's ``imagesource:`` header is
    repeated. ``convention`` chooses the difficulty column (:func:`dota_label_text`). Consecutive tiles of one source image share one opened image (decoded once
    for PNG/JPEG, windowed reads for TIFF). An unreadable image gives one error record (stage
    ``image``) per tile, accounting for that tile's objects -- also one that would decode more
    than ``max_pixels`` pixels (default :data:`samrs.core.imageio.DEFAULT_MAX_IMAGE_PIXELS`; 0: no
    limit; see :mod:`samrs.core.imageio`). A patch whose file name would exceed the file system's
    name limit is an error record (stage ``read``) accounting for its objects. The dataset's
    own errors are carried into the summary. Images are written as deterministic PNGs; split
    ``None`` is written as ``all``.
    """
    import cv2

    from samrs.core.imageio import (
        DEFAULT_MAX_IMAGE_PIXELS,
        ImageReadError,
        long_name,
        name_max,
        open_image,
        write_png,
    )
    from samrs.core.records import exception_message

    pad = tuple(patch_pad_value(convention) if pad_value is None else pad_value)
    if len(pad) != 3 or not all(0 <= int(v) <= 255 for v in pad):
        raise TilingError(f"pad value must be 3 integers in 0..255, got {pad_value}")
    out = Path(out)
    summary = PatchSummary(out, errors=list(tiles.errors))

    def failed(tile: ImageRecord, exc: Exception | str, stage: str = "image") -> None:
        message = exc if isinstance(exc, str) else exception_message(exc, "reading the image")
        summary.errors.append(
            ErrorRecord(tile.image_path, None, stage, message, tile.image_id, len(tile.objects))
        )

    limit = name_max(out)

    for path, group in itertools.groupby(tiles.images, key=lambda t: t.image_path):
        summary.source_images += 1
        group_tiles = list(group)
        error: Exception | None = None
        try:
            source = open_image(
                path, DEFAULT_MAX_IMAGE_PIXELS if max_pixels is None else max_pixels
            )
        except ImageReadError as exc:
            source, error = None, exc
        try:
            for tile in group_tiles:
                if progress is not None:
                    progress(tile)
                if tile.window is None:
                    raise TilingError(f"{tile.image_id} is not a tile (no window)")
                split = tile.split or "all"
                patch = out / split / "images" / f"{tile.image_id}.png"
                problem = long_name(patch, limit, f"{split}/images/{patch.name}")
                if problem is not None:
                    failed(tile, f"{problem}; patch skipped", stage="read")
                    continue
                if error is not None:
                    failed(tile, error)
                    continue
                assert source is not None  # None only with an open error, handled above
                try:
                    pixels = source.read(tile.window, pad)
                except ImageReadError as exc:
                    failed(tile, exc)
                    if not source.windowed:
                        error = exc  # a whole-image decode failed: do not retry per tile
                    continue
                scale = patch_size / float(tile.window[2])
                if pixels.shape[:2] != (patch_size, patch_size):
                    interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
                    pixels = cv2.resize(pixels, (patch_size, patch_size), interpolation=interp)
                write_png(patch, pixels)
                gsd = None if tile.gsd is None else tile.gsd / scale
                label_path = out / split / "labelTxt" / f"{tile.image_id}.txt"
                label_path.parent.mkdir(parents=True, exist_ok=True)
                text = dota_label_text(tile.objects, scale, gsd, tile.imagesource, convention)
                label_path.write_bytes(text.encode("utf-8"))
                summary.patches += 1
                summary.objects += len(tile.objects)
                summary.splits[split] = summary.splits.get(split, 0) + 1
        finally:
            if source is not None:
                source.close()
    return summary
