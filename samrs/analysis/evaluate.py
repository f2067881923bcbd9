"""Score the masks of a build against ground-truth masks (``samrs evaluate``).

Ground truth is a COCO instances JSON (the ``gt/instances.json`` of ``samrs synth``, iSAID's
JSONs, any COCO file) or an HRSC2016 root (colour-coded masks matched by ``seg_color``).

Matching pairs each generated instance with the ground-truth object it was prompted from,
never by mask overlap alone:

1. GT image: the build image's ``source_file`` (else ``annotation_file`` / ``file_name``) is
   matched to a GT ``file_name`` by relative path, else by the longest common path suffix of
   the same basename, else by the unique file stem. Tiles see the GT mapped into their
   window (``images.window``, scaled when the tile was resized).
2. Object identity: when GT annotations carry ``source_file`` (or ``source_files``) and
   ``source_line`` (any image), or ``source_file`` and ``object_index`` (whole images only:
   tiles number their objects anew), the instance with the same key is taken, provided the
   class agrees and the boxes overlap at all (box IoU >= :data:`IDENTITY_MIN_BOX_IOU`, a
   guard against keys that mean something else).
3. Box overlap: the rest is matched greedily by descending IoU of the instance's ``hbox``
   (clipped to the image) with the GT ``bbox`` (mapped and clipped likewise), within one
   image and one class, at IoU >= ``match_iou`` (default 0.5). Greedy differs from an
   optimal (Hungarian) assignment only where several boxes of a class compete for one object.

Ground truth left unmatched (iSAID labels far more objects than DOTA has boxes) and
instances left unmatched are reported apart: they are not counted as generator misses. GT
images that no build image maps to (another split, say) are not evaluated at all.

Metrics over matched *kept* instances, overall, per class and per size bucket (by GT mask
area in the evaluated frame: small < 32², medium < 96², large): mean IoU, area-weighted IoU
(sum of intersections / sum of unions), boundary IoU with a per-object band
(``band_fraction`` x the GT box diagonal, at least 1 px) and COCO mask AP (pycocotools
COCOeval over the matched pairs, confidence = the SAM score, 1.0 when null; per size with
COCOeval's own area ranges, whose bounds are inclusive). Rejected
instances get their own IoU summary, per reject reason, so filter thresholds can be tuned.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from samrs.core import rle
from samrs.core.classes import ClassTable, class_table, normalize_class_name
from samrs.core.geometry import mask_iou
from samrs.errors import SamrsError

__all__ = [
    "DEFAULT_BAND_FRACTION",
    "DEFAULT_MATCH_IOU",
    "SIZE_BUCKETS",
    "EvaluationError",
    "EvaluationResult",
    "GroundTruth",
    "InstanceScore",
    "boundary_iou",
    "boundary_region",
    "box_iou",
    "evaluate",
    "format_result",
    "load_ground_truth",
    "mask_iou",
    "object_band",
    "summarize",
]

DEFAULT_BAND_FRACTION = 0.02
"""Boundary band as a fraction of the object's box diagonal (at least 1 px)."""

DEFAULT_MATCH_IOU = 0.5
"""Minimum box IoU for matching an instance to a GT object by box overlap."""

IDENTITY_MIN_BOX_IOU = 0.1
"""An identity match is accepted only when the two boxes overlap at least this much."""

SIZE_BUCKETS = (("small", 32**2), ("medium", 96**2), ("large", math.inf))
"""Size buckets by GT area in pixels: ``area < limit`` of the first bucket that fits."""

GOOD_IOU = 0.5
"""A mask with IoU below this counts as bad in the filter report."""

HRSC_MASK_DIRS = ("Segmentations", "Segmentation", "SegmentationObject", "Masks", "LandMask")
"""Folders (siblings of an HRSC2016 ``Annotations`` folder) searched for ``<id>.png``."""


class EvaluationError(SamrsError, ValueError):
    """Unusable prediction folder or ground truth (the message names the file)."""


# --- pure metrics ---------------------------------------------------------------------------


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """IoU of two ``xyxy`` boxes; 0 when the union is empty."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def object_band(box: Sequence[float], fraction: float = DEFAULT_BAND_FRACTION) -> float:
    """Boundary band in pixels of an object with ``xyxy`` box: fraction of its diagonal, >= 1."""
    return max(1.0, fraction * math.hypot(box[2] - box[0], box[3] - box[1]))


def boundary_region(mask: np.ndarray, band: float) -> np.ndarray:
    """Pixels of ``mask`` within ``band`` pixels of its contour (the inner boundary band).

    A pixel is in the band when its Euclidean distance (centre to centre) to the nearest pixel
    outside the mask is at most ``band``; pixels outside the array count as outside the mask.
    With ``band = 1`` the band is the mask pixels 4-adjacent to the outside.
    """
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros_like(mask)
    padded = np.pad(mask, 1).astype(np.uint8)
    dist = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    return mask & (dist <= band)


def _union_crop(a: np.ndarray, b: np.ndarray) -> tuple[slice, slice] | None:
    rows = np.flatnonzero((a | b).any(axis=1))
    if not len(rows):
        return None
    cols = np.flatnonzero((a | b).any(axis=0))
    return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def boundary_iou(a: np.ndarray, b: np.ndarray, band: float) -> float:
    """Boundary IoU (Cheng et al. 2021) of two boolean masks with a band of ``band`` pixels.

    IoU of the two inner boundary bands (:func:`boundary_region`); 0 when both are empty.
    """
    a, b = np.asarray(a, dtype=bool), np.asarray(b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"mask shapes differ: {a.shape} vs {b.shape}")
    crop = _union_crop(a, b)
    if crop is None:
        return 0.0
    # cropping to the union box changes nothing: pixels next to it are outside both masks
    return mask_iou(boundary_region(a[crop], band), boundary_region(b[crop], band))


# --- masks placed in a frame ----------------------------------------------------------------


@dataclass(frozen=True)
class _Placed:
    """A mask cropped to its bounding box, placed at ``(x0, y0)`` in a frame."""

    x0: int
    y0: int
    mask: np.ndarray

    @classmethod
    def from_full(cls, full: np.ndarray) -> _Placed:
        rows = np.flatnonzero(full.any(axis=1))
        if not len(rows):
            return cls(0, 0, np.zeros((0, 0), dtype=bool))
        cols = np.flatnonzero(full.any(axis=0))
        r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        return cls(int(c0), int(r0), np.ascontiguousarray(full[r0:r1, c0:c1], dtype=bool))

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def box(self) -> tuple[int, int, int, int]:
        h, w = self.mask.shape
        return (self.x0, self.y0, self.x0 + w, self.y0 + h)

    def into_window(self, window: Sequence[int], width: int, height: int) -> _Placed:
        """This mask (in source pixels) seen by a tile of ``window`` with ``width x height``."""
        wx, wy, ww, wh = (int(v) for v in window)
        x0, y0, x1, y1 = self.box
        cx0, cy0, cx1, cy1 = max(x0, wx), max(y0, wy), min(x1, wx + ww), min(y1, wy + wh)
        if cx1 <= cx0 or cy1 <= cy0:
            return _Placed(0, 0, np.zeros((0, 0), dtype=bool))
        part = self.mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
        if (ww, wh) == (width, height):
            return _Placed.from_full(part).shifted(cx0 - wx, cy0 - wy)
        canvas = np.zeros((wh, ww), dtype=np.uint8)
        canvas[cy0 - wy : cy1 - wy, cx0 - wx : cx1 - wx] = part
        resized = cv2.resize(canvas, (width, height), interpolation=cv2.INTER_NEAREST)
        return _Placed.from_full(resized.astype(bool))

    def shifted(self, dx: int, dy: int) -> _Placed:
        return _Placed(self.x0 + dx, self.y0 + dy, self.mask) if self.mask.size else self

    def clipped(self, width: int, height: int) -> _Placed:
        """The part inside a ``width x height`` frame."""
        return self.into_window((0, 0, width, height), width, height)


def _pair(a: _Placed, b: _Placed) -> tuple[np.ndarray, np.ndarray]:
    """Both masks on their common bounding box."""
    boxes = [m.box for m in (a, b) if m.mask.size]
    if not boxes:
        return np.zeros((0, 0), dtype=bool), np.zeros((0, 0), dtype=bool)
    x0, y0 = min(bx[0] for bx in boxes), min(bx[1] for bx in boxes)
    x1, y1 = max(bx[2] for bx in boxes), max(bx[3] for bx in boxes)
    out = []
    for m in (a, b):
        canvas = np.zeros((y1 - y0, x1 - x0), dtype=bool)
        if m.mask.size:
            h, w = m.mask.shape
            canvas[m.y0 - y0 : m.y0 - y0 + h, m.x0 - x0 : m.x0 - x0 + w] = m.mask
        out.append(canvas)
    return out[0], out[1]


def _checked_rle(counts: object, height: int, width: int) -> dict[str, Any]:
    """A COCO RLE (bytes counts) checked to cover exactly ``height x width`` pixels.

    pycocotools decodes malformed counts into garbage without complaint, hence the check.

    Raises:
        ValueError: not a string, malformed counts, a negative run or the wrong total.
    """
    if isinstance(counts, str):
        counts = counts.encode("ascii", errors="replace")
    if not isinstance(counts, bytes):
        raise ValueError(f"counts must be a string, not {type(counts).__name__}")
    result = {"size": [int(height), int(width)], "counts": counts}
    try:
        runs = rle.run_lengths(result)
    except (ValueError, IndexError) as exc:
        raise ValueError(f"malformed counts ({exc})") from exc
    if (runs < 0).any() or int(runs.sum()) != height * width:
        raise ValueError(f"runs cover {int(runs.sum())} pixels, not {height}x{width}")
    return result


def _placed_rle(coco_rle: dict[str, Any]) -> _Placed:
    """The mask of a COCO RLE cropped to its box, decoding only the box's columns."""
    x, y, w, h = (int(v) for v in mask_utils.toBbox(coco_rle))
    if w <= 0 or h <= 0:
        return _Placed(0, 0, np.zeros((0, 0), dtype=bool))
    return _Placed(x, y, rle.decode_window(coco_rle, (x, y, w, h)))


def _encode_placed(mask: _Placed, width: int, height: int) -> dict[str, Any]:
    """COCO RLE (bytes counts) of a placed mask in a ``width x height`` frame, built from the
    strip of columns it spans (no full-frame array)."""
    if not mask.mask.size:
        return mask_utils.frPyObjects({"size": [height, width], "counts": [height * width]},
                                      height, width)  # fmt: skip
    h, w = mask.mask.shape
    strip = np.zeros((w, height), dtype=np.int8)  # column-major: one row per frame column
    strip[:, mask.y0 : mask.y0 + h] = mask.mask.T
    flat = strip.ravel()
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    if flat[0]:
        runs = np.concatenate([[0], runs])
    runs[0] += mask.x0 * height
    tail = (width - mask.x0 - w) * height
    if flat[-1]:
        runs = np.concatenate([runs, [tail]])
    else:
        runs[-1] += tail
    return mask_utils.frPyObjects(
        {"size": [height, width], "counts": [int(r) for r in runs]}, height, width
    )


# --- ground truth ---------------------------------------------------------------------------


@dataclass
class _GtObject:
    """One ground-truth object of a GT image (coordinates of the whole source image)."""

    index: int
    ann_id: object
    class_key: str
    class_name: str
    bbox: tuple[float, float, float, float]  # xyxy
    segmentation: object
    source_files: tuple[str, ...] = ()  # label files describing it (normalized)
    object_index: int | None = None
    source_line: int | None = None
    mask_rgb: tuple[int, int, int] | None = None  # HRSC: colour in the image's mask PNG


@dataclass
class _GtImage:
    index: int
    image_id: object
    file_name: str
    width: int
    height: int
    objects: list[_GtObject] = field(default_factory=list)
    mask_file: Path | None = None  # HRSC colour mask


@dataclass
class GroundTruth:
    """Ground-truth images and objects, whatever the file format.

    Attributes:
        path: the file or folder read.
        images: GT images in file order.
        n_crowd: crowd annotations (ignored).
        n_without_mask: objects without a mask (HRSC objects without ``seg_color``, COCO
            annotations without ``segmentation``): not evaluated.
    """

    path: Path
    images: list[_GtImage]
    n_crowd: int = 0
    n_without_mask: int = 0
    _by_name: dict[str, list[_GtImage]] = field(default_factory=dict, repr=False)
    _by_stem: dict[str, list[_GtImage]] = field(default_factory=dict, repr=False)
    _by_label: dict[str, _GtImage] = field(default_factory=dict, repr=False)
    _cache: dict[int, _Placed] = field(default_factory=dict, repr=False)
    _cache_image: int | None = field(default=None, repr=False)
    _colour: tuple[Path, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        labels: dict[str, set[int]] = {}
        for image in self.images:
            path = PurePosixPath(_norm(image.file_name))
            self._by_name.setdefault(path.name.lower(), []).append(image)
            self._by_stem.setdefault(path.stem.lower(), []).append(image)
            for obj in image.objects:
                for label in obj.source_files:
                    labels.setdefault(label, set()).add(image.index)
        for label, indices in labels.items():
            if len(indices) == 1:
                self._by_label[label] = self.images[next(iter(indices))]

    @property
    def n_objects(self) -> int:
        """Objects with a mask over all images."""
        return sum(len(image.objects) for image in self.images)

    def find_image(
        self, candidates: Iterable[str | None], labels: Iterable[str]
    ) -> _GtImage | None:
        """The GT image of a build image, from its file paths and its objects' label files."""
        for path in candidates:
            if path:
                found = self._find_path(_norm(path))
                if found is not None:
                    return found
        for label in labels:
            found = self._by_label.get(_norm(label))
            if found is not None:
                return found
        for path in candidates:
            if path:
                stem = PurePosixPath(_norm(path)).stem.lower()
                same = self._by_stem.get(stem, [])
                if len(same) == 1:
                    return same[0]
        return None

    def _find_path(self, path: str) -> _GtImage | None:
        parts = PurePosixPath(path).parts
        same = self._by_name.get(parts[-1].lower() if parts else "", [])
        best, best_len, tie = None, -1, False
        for image in same:
            gparts = PurePosixPath(_norm(image.file_name)).parts
            n = 0
            while n < min(len(parts), len(gparts)) and parts[-1 - n] == gparts[-1 - n]:
                n += 1
            if n > best_len:
                best, best_len, tie = image, n, False
            elif n == best_len:
                tie = True
        return None if tie else best

    def placed(self, image: _GtImage, obj: _GtObject) -> _Placed:
        """The object's mask in source-image pixels (decoded once per image visit)."""
        if self._cache_image != image.index:
            self._cache, self._cache_image = {}, image.index
        if obj.index not in self._cache:
            self._cache[obj.index] = self._decode(image, obj)
        return self._cache[obj.index]

    def _decode(self, image: _GtImage, obj: _GtObject) -> _Placed:
        if obj.mask_rgb is not None and image.mask_file is not None:
            colour = self._colour_mask(image.mask_file)
            return _Placed.from_full(np.all(colour == np.asarray(obj.mask_rgb), axis=2))
        h, w = image.height, image.width
        segm = obj.segmentation
        try:
            coco_rle = _segm_rle(segm, h, w)
        except (TypeError, ValueError, KeyError) as exc:
            raise EvaluationError(
                f"{_where(image)}: annotation {obj.ann_id}: unreadable segmentation "
                f"({exc}); expected COCO polygons or RLE of {h}x{w}"
            ) from exc
        if coco_rle is None:
            return _Placed(0, 0, np.zeros((0, 0), dtype=bool))
        if [int(v) for v in coco_rle["size"]] != [h, w]:
            raise EvaluationError(
                f"{_where(image)}: annotation {obj.ann_id}: mask is "
                f"{coco_rle['size'][0]}x{coco_rle['size'][1]}, image is {h}x{w}"
            )
        return _placed_rle(coco_rle)

    def _colour_mask(self, path: Path) -> np.ndarray:
        """An HRSC colour mask as (H, W, 3) RGB (the last one read is kept)."""
        if self._colour is None or self._colour[0] != path:
            from PIL import Image

            try:
                with Image.open(path) as im:
                    self._colour = (path, np.asarray(im.convert("RGB")))
            except OSError as exc:
                raise EvaluationError(f"{path}: unreadable mask image ({exc})") from exc
        return self._colour[1]


def _where(image: _GtImage) -> str:
    return f"GT image {image.file_name!r}"


def _norm(path: str) -> str:
    """A path as posix text without ``./`` prefixes or trailing slashes."""
    text = str(path).replace("\\", "/")
    while text.startswith("./"):
        text = text[2:]
    return str(PurePosixPath(text)) if text else text


@functools.lru_cache(maxsize=65536)
def _relative(path: str | None, root: str | None) -> str | None:
    """``path`` relative to ``root`` when it lies under it, else ``path`` (normalized)."""
    if not path:
        return None
    p = PurePosixPath(_norm(path))
    if root:
        for base in {str(Path(root)), str(Path(root).resolve())}:
            try:
                return str(p.relative_to(PurePosixPath(_norm(base))))
            except ValueError:
                continue
    return str(p)


def load_ground_truth(gt: str | Path) -> GroundTruth:
    """Read ground truth: a COCO instances JSON, a folder with ``gt/instances.json`` (a
    ``samrs synth`` dataset) or an HRSC2016 root.

    Raises:
        EvaluationError: no such file, or not a usable ground truth (the message says why).
    """
    path = Path(gt)
    if path.is_dir():
        synth = path / "gt" / "instances.json"
        if synth.is_file():
            return _load_coco(synth)
        return _load_hrsc(path)
    if not path.is_file():
        raise EvaluationError(f"{path}: no such ground-truth file or folder")
    return _load_coco(path)


def _load_coco(path: Path) -> GroundTruth:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise EvaluationError(f"{path}: unreadable ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict) or not all(
        isinstance(data.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise EvaluationError(
            f"{path}: not a COCO instances file (expected an object with 'images', "
            "'annotations' and 'categories' lists)"
        )
    categories: dict[object, str] = {}
    for cat in data["categories"]:
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat:
            raise EvaluationError(f"{path}: category {cat!r:.80} needs 'id' and 'name'")
        categories[cat["id"]] = str(cat["name"])
    images: list[_GtImage] = []
    by_id: dict[object, _GtImage] = {}
    for i, img in enumerate(data["images"]):
        try:
            image = _GtImage(
                i, img["id"], str(img["file_name"]), int(img["width"]), int(img["height"])
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise EvaluationError(
                f"{path}: images[{i}] needs 'id', 'file_name', 'width' and 'height' ({exc})"
            ) from exc
        images.append(image)
        by_id[image.image_id] = image
    n_crowd = n_without = 0
    for j, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise EvaluationError(f"{path}: annotations[{j}] is not an object")
        image = by_id.get(ann.get("image_id"))
        if image is None:
            raise EvaluationError(
                f"{path}: annotations[{j}] refers to image_id {ann.get('image_id')!r}, "
                "which is not in 'images'"
            )
        if ann.get("category_id") not in categories:
            raise EvaluationError(
                f"{path}: annotations[{j}] has category_id {ann.get('category_id')!r}, "
                "which is not in 'categories'"
            )
        if ann.get("iscrowd"):
            n_crowd += 1
            continue
        segm = ann.get("segmentation")
        if not segm:
            n_without += 1
            continue
        bbox = ann.get("bbox")
        if bbox is None or len(bbox) != 4:
            bbox = _segm_bbox(segm, image)
        x, y, w, h = (float(v) for v in bbox)
        name = categories[ann["category_id"]]
        image.objects.append(
            _GtObject(
                index=len(image.objects),
                ann_id=ann.get("id", j),
                class_key=normalize_class_name(name),
                class_name=name,
                bbox=(x, y, x + w, y + h),
                segmentation=segm,
                source_files=_label_files(ann),
                object_index=_opt_int(ann.get("object_index")),
                source_line=_opt_int(ann.get("source_line")),
            )
        )
    return GroundTruth(path, images, n_crowd=n_crowd, n_without_mask=n_without)


def _label_files(ann: dict[str, Any]) -> tuple[str, ...]:
    """``source_file`` and ``source_files`` of a GT annotation, normalized, in order."""
    files = [ann.get("source_file"), *(ann.get("source_files") or [])]
    return tuple(dict.fromkeys(_norm(str(f)) for f in files if f))


def _opt_int(value: object) -> int | None:
    try:
        return None if value is None else int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return None


def _segm_rle(segm: object, height: int, width: int) -> dict[str, Any] | None:
    """COCO RLE of a COCO segmentation (polygons, uncompressed or compressed RLE); None for
    a polygon list without any usable polygon."""
    if isinstance(segm, list):
        polys = [p for p in segm if len(p) >= 6]
        return mask_utils.merge(mask_utils.frPyObjects(polys, height, width)) if polys else None
    if isinstance(segm, dict) and isinstance(segm.get("counts"), list):
        return mask_utils.frPyObjects(segm, *segm["size"])
    if isinstance(segm, dict):
        size = [int(v) for v in segm["size"]]
        return _checked_rle(segm["counts"], size[0], size[1])
    raise TypeError(f"unsupported segmentation {type(segm).__name__}")


def _segm_bbox(segm: object, image: _GtImage) -> list[float]:
    coco_rle = _segm_rle(segm, image.height, image.width)
    return [0.0] * 4 if coco_rle is None else [float(v) for v in mask_utils.toBbox(coco_rle)]


def _xml_text(node: ET.Element, tag: str) -> str | None:
    child = node.find(tag)
    return None if child is None or child.text is None else child.text.strip()


def _load_hrsc(root: Path) -> GroundTruth:
    """HRSC2016: per-image XML + colour PNG masks matched by each object's ``seg_color``.

    Mirrors :mod:`samrs.sources.hrsc` where it matters for matching: ``FullDataSet`` only when
    present, label files relative to ``root``, ``source_line`` = 1-based object position.
    """
    # like the HRSC2016 reader: only FullDataSet when there is one (Train/Test repeat it)
    full = sorted(p for p in root.rglob("*") if p.is_dir() and p.name.lower() == "fulldataset")
    if root.name.lower() == "fulldataset":
        full = [root]
    xmls = sorted(p for base in (full or [root]) for p in base.rglob("*.xml") if p.is_file())
    images: list[_GtImage] = []
    n_without = 0
    for xml in xmls:
        try:
            tree = ET.parse(xml).getroot()
        except ET.ParseError as exc:
            raise EvaluationError(f"{xml}: invalid XML ({exc})") from exc
        if tree.tag != "HRSC_Image":
            continue
        stem = _xml_text(tree, "Img_FileName") or xml.stem
        fmt = _xml_text(tree, "Img_FileFmt") or "bmp"
        try:
            width = int(_xml_text(tree, "Img_SizeWidth") or "")
            height = int(_xml_text(tree, "Img_SizeHeight") or "")
        except ValueError as exc:
            raise EvaluationError(f"{xml}: Img_SizeWidth/Img_SizeHeight must be integers") from exc
        image_file = next(
            (p for p in xml.parent.parent.glob(f"*/{stem}.{fmt}") if p.is_file()),
            xml.parent.parent / "AllImages" / f"{stem}.{fmt}",
        )
        mask_file = next(
            (
                xml.parent.parent / d / f"{name}.png"
                for d in HRSC_MASK_DIRS
                for name in (stem, xml.stem)
                if (xml.parent.parent / d / f"{name}.png").is_file()
            ),
            None,
        )
        image = _GtImage(
            len(images), stem, str(image_file.relative_to(root)), width, height,
            mask_file=mask_file,
        )  # fmt: skip
        label = str(xml.relative_to(root).as_posix())
        for k, obj in enumerate(tree.iter("HRSC_Object")):
            colour = _xml_text(obj, "seg_color")
            if not colour or mask_file is None:
                n_without += 1
                continue
            try:
                rgb = tuple(int(v) for v in re.split(r"[,\s]+", colour) if v)
                box = tuple(float(_xml_text(obj, t) or "") for t in
                            ("box_xmin", "box_ymin", "box_xmax", "box_ymax"))  # fmt: skip
            except ValueError as exc:
                raise EvaluationError(
                    f"{xml}: HRSC_Object {k + 1}: seg_color must be 'R,G,B' and box_* numbers"
                ) from exc
            if len(rgb) != 3:
                raise EvaluationError(f"{xml}: HRSC_Object {k + 1}: seg_color must be 'R,G,B'")
            image.objects.append(
                _GtObject(
                    index=len(image.objects),
                    ann_id=_xml_text(obj, "Object_ID") or k,
                    class_key=normalize_class_name("ship"),
                    class_name="ship",
                    bbox=(box[0], box[1], box[2] + 1, box[3] + 1),  # inclusive pixel corners
                    segmentation=None,
                    source_files=(label,),
                    object_index=k,
                    source_line=k + 1,  # the reader's source_line: 1-based object position
                    mask_rgb=rgb,  # type: ignore[arg-type]
                )
            )
        images.append(image)
    if not images:
        raise EvaluationError(
            f"{root}: no ground truth found: expected a COCO instances JSON, a folder with "
            "gt/instances.json, or an HRSC2016 root with HRSC_Image XML files"
        )
    return GroundTruth(root, images, n_without_mask=n_without)


# --- predictions ----------------------------------------------------------------------------


@dataclass
class _PredImage:
    image_id: str
    file_name: str
    source_file: str | None
    annotation_file: str | None
    window: tuple[int, int, int, int] | None
    width: int
    height: int
    instances: list[dict[str, Any]] = field(default_factory=list)


def _read_predictions(out: Path) -> tuple[dict[str, Any], list[_PredImage]]:
    from samrs.outputs.manifest import read_table
    from samrs.outputs.metadata import BuildMetadataError, read_build_metadata

    try:
        meta = read_build_metadata(out)
    except BuildMetadataError as exc:
        raise EvaluationError(str(exc)) from exc
    img_cols = ["image_id", "file_name", "source_file", "annotation_file", "tile_window", "width",
                "height"]  # fmt: skip
    inst_cols = ["instance_id", "image_id", "object_index", "class_name", "hbox",
                 "segmentation", "score", "kept", "reject_reason", "source_file",
                 "source_line"]  # fmt: skip
    images: dict[str, _PredImage] = {}
    for row in read_table(out, "images", columns=img_cols).to_pylist():
        if row["width"] is None or row["height"] is None:
            continue  # an unreadable image (status error): it has no instances
        images[row["image_id"]] = _PredImage(
            row["image_id"], row["file_name"], row["source_file"], row["annotation_file"],
            tuple(row["tile_window"]) if row["tile_window"] is not None else None,  # type: ignore[arg-type]
            int(row["width"]), int(row["height"]),
        )  # fmt: skip
    for row in read_table(out, "instances", columns=inst_cols).to_pylist():
        image = images.get(row["image_id"])
        if image is None:
            raise EvaluationError(
                f"{out}: instance {row['instance_id']} refers to image {row['image_id']!r}, "
                "which has no size in the images manifest"
            )
        image.instances.append(row)
    return meta, list(images.values())


def _pred_table(meta: dict[str, Any]) -> ClassTable | None:
    info = meta.get("class_table") or {}
    try:
        return class_table(str(info["source"]), str(info["version"]), str(info["order"]))
    except (KeyError, ValueError):
        pass
    try:
        from samrs.outputs.metadata import build_class_table

        return build_class_table(meta)
    except (KeyError, ValueError):
        return None


class _ClassKeys:
    """Canonical class keys, so that ``Small_Vehicle`` (iSAID) meets ``small-vehicle`` (DOTA)."""

    def __init__(self, table: ClassTable | None) -> None:
        self.tables = [t for t in (table, class_table("isaid")) if t is not None]
        self._memo: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._memo:
            key = normalize_class_name(name)
            for table in self.tables:
                idx = table.lookup(name)
                if idx is not None:
                    key = normalize_class_name(table.names[idx])
                    break
            self._memo[name] = key
        return self._memo[name]


# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceScore:
    """The score of one matched instance.

    Attributes:
        instance_id, image_id: the build instance.
        class_name: its class (build spelling).
        kept, reject_reason, score: from the build (score None for non-SAM segmenters).
        gt_image, gt_annotation: the matched GT image file name and annotation id.
        method: ``identity`` or ``box``.
        intersection, union: pixel counts; iou = intersection / union.
        boundary_iou: boundary IoU with band ``band`` pixels.
        gt_area: GT mask pixels in the evaluated frame; size: its bucket.
    """

    instance_id: int
    image_id: str
    class_name: str
    kept: bool
    reject_reason: str | None
    score: float | None
    gt_image: str
    gt_annotation: str
    method: str
    intersection: int
    union: int
    iou: float
    boundary_iou: float
    band: float
    gt_area: int
    size: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def summarize(scores: Sequence[InstanceScore]) -> dict[str, Any]:
    """Count, mean IoU, area-weighted IoU and mean boundary IoU of some instances."""
    n = len(scores)
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    return {
        "count": n,
        "miou": float(np.mean([s.iou for s in scores])) if n else None,
        "area_iou": inter / union if union else (0.0 if n else None),
        "boundary_iou": float(np.mean([s.boundary_iou for s in scores])) if n else None,
    }


def _size_of(area: int) -> str:
    return next(name for name, limit in SIZE_BUCKETS if area < limit)


@dataclass
class EvaluationResult:
    """Everything ``samrs evaluate`` reports; :meth:`to_dict` is its ``--json`` document."""

    pred: str
    gt: str
    band_fraction: float
    match_iou: float
    scores: list[InstanceScore]
    mask_ap: dict[str, Any]
    unmatched_gt: list[dict[str, Any]]
    unmatched_pred: list[dict[str, Any]]
    gt_images: int
    gt_images_evaluated: int
    gt_crowd: int
    gt_without_mask: int

    @property
    def kept(self) -> list[InstanceScore]:
        """Matched instances the build kept (the ones the main metrics are over)."""
        return [s for s in self.scores if s.kept]

    def to_dict(self, instances: bool = False) -> dict[str, Any]:
        """JSON-ready dict of the result (per-instance scores only when ``instances``)."""
        kept = self.kept
        overall = summarize(kept)
        classes = sorted({s.class_name for s in kept})
        per_class = {}
        for name in classes:
            entry = summarize([s for s in kept if s.class_name == name])
            entry["mask_ap"] = self.mask_ap.get("per_class", {}).get(name)
            per_class[name] = entry
        per_size = {}
        for name, _ in SIZE_BUCKETS:
            entry = summarize([s for s in kept if s.size == name])
            # COCOeval's own area ranges (GT area, bounds inclusive): the same buckets
            entry["mask_ap"] = self.mask_ap.get(f"ap_{name}")
            per_size[name] = entry
        doc: dict[str, Any] = {
            "pred": self.pred,
            "gt": self.gt,
            "settings": {"band_fraction": self.band_fraction, "match_iou": self.match_iou},
            "n_kept": overall["count"],
            "miou": overall["miou"],
            "area_iou": overall["area_iou"],
            "boundary_iou": overall["boundary_iou"],
            "mask_ap": self.mask_ap.get("ap"),
            "mask_ap50": self.mask_ap.get("ap50"),
            "mask_ap75": self.mask_ap.get("ap75"),
            "per_class": per_class,
            "per_size": per_size,
            "matched": len(self.scores),
            "unmatched_gt": len(self.unmatched_gt),
            "unmatched_pred": len(self.unmatched_pred),
            "matching": {
                "by_identity": sum(s.method == "identity" for s in self.scores),
                "by_box": sum(s.method == "box" for s in self.scores),
                "kept": len(kept),
                "rejected": len(self.scores) - len(kept),
                "unmatched_gt_per_class": _count(self.unmatched_gt, "class_name"),
                "unmatched_pred_per_reason": _count(self.unmatched_pred, "reason"),
                "gt_images": self.gt_images,
                "gt_images_evaluated": self.gt_images_evaluated,
                "gt_crowd_ignored": self.gt_crowd,
                "gt_without_mask": self.gt_without_mask,
            },
            "rejected": self._rejected(),
        }
        if instances:
            doc["instances"] = [s.to_dict() for s in self.scores]
            doc["unmatched_gt_objects"] = self.unmatched_gt
            doc["unmatched_pred_instances"] = self.unmatched_pred
        return doc

    def _rejected(self) -> dict[str, Any]:
        kept = self.kept
        rejected = [s for s in self.scores if not s.kept]
        reasons = sorted({s.reject_reason or "unknown" for s in rejected})
        return {
            "count": len(rejected),
            "miou": summarize(rejected)["miou"],
            "kept_miou": summarize(kept)["miou"],
            "per_reason": {
                r: summarize([s for s in rejected if (s.reject_reason or "unknown") == r])
                for r in reasons
            },
            # a filter keeps good masks and rejects bad ones (bad: IoU < GOOD_IOU)
            "good_iou": GOOD_IOU,
            "kept_bad": sum(s.iou < GOOD_IOU for s in kept),
            "rejected_good": sum(s.iou >= GOOD_IOU for s in rejected),
            "rejected_bad": sum(s.iou < GOOD_IOU for s in rejected),
        }


def _count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[str(row[key])] = out.get(str(row[key]), 0) + 1
    return dict(sorted(out.items()))


# --- evaluation -----------------------------------------------------------------------------


def evaluate(
    pred_out: str | Path,
    gt: str | Path,
    *,
    band_fraction: float = DEFAULT_BAND_FRACTION,
    match_iou: float = DEFAULT_MATCH_IOU,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Score the masks of the build in ``pred_out`` against the ground truth ``gt``.

    Args:
        pred_out: output folder of ``samrs build`` (``samrs.json`` + manifests).
        gt: COCO instances JSON, a ``samrs synth`` folder, or an HRSC2016 root.
        band_fraction: boundary band as a fraction of each GT box diagonal (>= 1 px).
        match_iou: minimum box IoU for matching by box overlap.
        progress: called as ``progress(done, total)`` after each build image.

    Raises:
        EvaluationError: unreadable build folder or ground truth.
    """
    pred_out = Path(pred_out)
    meta, pred_images = _read_predictions(pred_out)
    truth = load_ground_truth(gt)
    root = (meta.get("config") or {}).get("root")
    keys = _ClassKeys(_pred_table(meta))
    for image in truth.images:
        for obj in image.objects:
            obj.class_key = keys(obj.class_name)

    # group build images by GT image (first-appearance order) so GT masks decode once
    groups: dict[int, list[_PredImage]] = {}
    unmatched_pred: list[dict[str, Any]] = []
    for image in pred_images:
        found = truth.find_image(
            [_relative(image.source_file, root), _relative(image.annotation_file, root)]
            + ([] if image.window is not None else [_relative(image.file_name, root)]),
            sorted({_relative(i["source_file"], root) or "" for i in image.instances} - {""}),
        )
        if found is None:
            unmatched_pred += [_unmatched(i, "no GT image") for i in image.instances]
            continue
        groups.setdefault(found.index, []).append(image)

    scores: list[InstanceScore] = []
    ap_frames: list[tuple[_PredImage, list[tuple[InstanceScore, bytes, _Placed]]]] = []
    unmatched_gt: list[dict[str, Any]] = []
    total, done = len(pred_images), 0
    for gt_index, images in groups.items():
        gt_image = truth.images[gt_index]
        seen: set[int] = set()
        for image in images:
            pairs, leftover = _match_image(truth, gt_image, image, keys, root, match_iou)
            unmatched_pred += leftover
            frame_pairs = []
            for inst, obj, gt_mask, method in pairs:
                seen.add(obj.index)
                score, counts = _score(inst, obj, gt_image, image, gt_mask, method,
                                       band_fraction)  # fmt: skip
                scores.append(score)
                if score.kept:
                    frame_pairs.append((score, counts, gt_mask))
            ap_frames.append((image, frame_pairs))
            done += 1
            if progress is not None:
                progress(done, total)
        unmatched_gt += [
            {
                "gt_image": gt_image.file_name,
                "gt_annotation": str(obj.ann_id),
                "class_name": obj.class_name,
                "bbox": list(obj.bbox),
            }
            for obj in gt_image.objects
            if obj.index not in seen
        ]
    scores.sort(key=lambda s: s.instance_id)
    unmatched_pred.sort(key=lambda u: u["instance_id"])
    return EvaluationResult(
        pred=str(pred_out),
        gt=str(gt),
        band_fraction=band_fraction,
        match_iou=match_iou,
        scores=scores,
        mask_ap=_mask_ap(ap_frames),
        unmatched_gt=unmatched_gt,
        unmatched_pred=unmatched_pred,
        gt_images=len(truth.images),
        gt_images_evaluated=len(groups),
        gt_crowd=truth.n_crowd,
        gt_without_mask=truth.n_without_mask,
    )


def _unmatched(inst: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "instance_id": int(inst["instance_id"]),
        "image_id": inst["image_id"],
        "class_name": inst["class_name"],
        "kept": bool(inst["kept"]),
        "reason": reason,
    }


def _gt_box_in(obj: _GtObject, image: _PredImage) -> tuple[float, float, float, float]:
    """The GT box in the build image's pixels, clipped to it."""
    x0, y0, x1, y1 = obj.bbox
    if image.window is not None:
        wx, wy, ww, wh = image.window
        sx, sy = image.width / ww, image.height / wh
        x0, x1 = (x0 - wx) * sx, (x1 - wx) * sx
        y0, y1 = (y0 - wy) * sy, (y1 - wy) * sy
    return _clip_box((x0, y0, x1, y1), image.width, image.height)


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
            min(max(x1, 0.0), width), min(max(y1, 0.0), height))  # fmt: skip


def _match_image(
    truth: GroundTruth,
    gt_image: _GtImage,
    image: _PredImage,
    keys: _ClassKeys,
    root: str | None,
    match_iou: float,
) -> tuple[list[tuple[dict[str, Any], _GtObject, _Placed, str]], list[dict[str, Any]]]:
    """Pairs (instance, GT object, GT mask in the image frame, method) and unmatched rows."""
    gt_boxes = {obj.index: _gt_box_in(obj, image) for obj in gt_image.objects}
    candidates = [
        obj for obj in gt_image.objects
        if (b := gt_boxes[obj.index])[2] > b[0] and b[3] > b[1]
    ]  # fmt: skip
    by_line = {(f, o.source_line): o for o in candidates if o.source_line is not None
               for f in o.source_files}  # fmt: skip
    by_index = {(f, o.object_index): o for o in candidates if o.object_index is not None
                for f in o.source_files}  # fmt: skip
    taken: set[int] = set()
    chosen: dict[int, tuple[_GtObject, str]] = {}
    pending: list[int] = []
    for k, inst in enumerate(image.instances):
        label = _relative(inst["source_file"], root) or ""
        obj = by_line.get((label, inst["source_line"])) if inst["source_line"] is not None else None
        if obj is None and image.window is None:
            obj = by_index.get((label, inst["object_index"]))
        pbox = _clip_box(inst["hbox"], image.width, image.height)
        if (
            obj is not None
            and obj.index not in taken
            and obj.class_key == keys(inst["class_name"])
            and box_iou(pbox, gt_boxes[obj.index]) >= IDENTITY_MIN_BOX_IOU
        ):
            taken.add(obj.index)
            chosen[k] = (obj, "identity")
        else:
            pending.append(k)
    # greedy box matching of the rest, by descending box IoU, within a class
    edges = []
    for k in pending:
        inst = image.instances[k]
        pbox = _clip_box(inst["hbox"], image.width, image.height)
        ckey = keys(inst["class_name"])
        for obj in candidates:
            if obj.index in taken or obj.class_key != ckey:
                continue
            iou = box_iou(pbox, gt_boxes[obj.index])
            if iou >= match_iou:
                edges.append((-iou, k, obj.index, obj))
    edges.sort(key=lambda e: e[:3])
    for _, k, oi, obj in edges:
        if k in chosen or oi in taken:
            continue
        taken.add(oi)
        chosen[k] = (obj, "box")
    pairs, leftover = [], []
    for k, inst in enumerate(image.instances):
        if k not in chosen:
            leftover.append(_unmatched(inst, "no GT object"))
            continue
        obj, method = chosen[k]
        mask = truth.placed(gt_image, obj)
        if image.window is not None:
            mask = mask.into_window(image.window, image.width, image.height)
        else:
            mask = mask.clipped(image.width, image.height)
        pairs.append((inst, obj, mask, method))
    return pairs, leftover


def _score(
    inst: dict[str, Any],
    obj: _GtObject,
    gt_image: _GtImage,
    image: _PredImage,
    gt_mask: _Placed,
    method: str,
    band_fraction: float,
) -> tuple[InstanceScore, bytes]:
    try:
        coco_rle = _checked_rle(inst["segmentation"], image.height, image.width)
        pred = _placed_rle(coco_rle)
    except ValueError as exc:
        raise EvaluationError(
            f"instance {inst['instance_id']} (image {image.image_id}): unreadable "
            f"segmentation ({exc}); expected COCO RLE counts of {image.height}x{image.width}"
        ) from exc
    a, b = _pair(pred, gt_mask)
    inter = int(np.count_nonzero(a & b))
    union = int(np.count_nonzero(a | b))
    band = object_band(gt_mask.box if gt_mask.mask.size else _gt_box_in(obj, image),
                       band_fraction)  # fmt: skip
    score = inst["score"]
    result = InstanceScore(
        instance_id=int(inst["instance_id"]),
        image_id=image.image_id,
        class_name=inst["class_name"],
        kept=bool(inst["kept"]),
        reject_reason=inst["reject_reason"],
        score=None if score is None or math.isnan(score) else float(score),
        gt_image=gt_image.file_name,
        gt_annotation=str(obj.ann_id),
        method=method,
        intersection=inter,
        union=union,
        iou=inter / union if union else 0.0,
        boundary_iou=boundary_iou(a, b, band) if a.size else 0.0,
        band=band,
        gt_area=gt_mask.area,
        size=_size_of(gt_mask.area),
    )
    return result, coco_rle["counts"]


def _mask_ap(
    frames: list[tuple[_PredImage, list[tuple[InstanceScore, bytes, _Placed]]]],
) -> dict[str, Any]:
    """COCO mask AP over matched kept pairs (GT = their objects, detections = their masks)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    classes = sorted({s.class_name for _, pairs in frames for s, _, _ in pairs})
    if not classes:
        return {"ap": None, "ap50": None, "ap75": None, "ap_small": None, "ap_medium": None,
                "ap_large": None, "per_class": {}}  # fmt: skip
    cat_ids = {name: i + 1 for i, name in enumerate(classes)}
    gt_images, gt_anns, dets = [], [], []
    for i, (image, pairs) in enumerate(frames):
        if not pairs:
            continue
        gt_images.append({"id": i + 1, "width": image.width, "height": image.height})
        for s, pred, gt_mask in pairs:
            grle = _encode_placed(gt_mask, image.width, image.height)
            gt_anns.append({
                "id": len(gt_anns) + 1, "image_id": i + 1, "category_id": cat_ids[s.class_name],
                "segmentation": grle, "area": float(gt_mask.area), "iscrowd": 0,
                "bbox": [float(v) for v in mask_utils.toBbox(grle)],
            })  # fmt: skip
            drle = {"size": [image.height, image.width], "counts": pred}
            dets.append({
                "image_id": i + 1, "category_id": cat_ids[s.class_name], "segmentation": drle,
                "score": 1.0 if s.score is None else s.score,
            })  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": gt_images,
            "annotations": gt_anns,
            "categories": [{"id": cat_ids[n], "name": n} for n in classes],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, name in enumerate(classes):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[name] = float(p.mean()) if p.size else None
    stats = [None if v < 0 else float(v) for v in ev.stats]
    return {"ap": stats[0], "ap50": stats[1], "ap75": stats[2], "ap_small": stats[3],
            "ap_medium": stats[4], "ap_large": stats[5], "per_class": per_class}  # fmt: skip


# --- report ---------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.3f}"


def format_result(doc: dict[str, Any]) -> str:
    """A readable table of an :meth:`EvaluationResult.to_dict` document."""
    m = doc["matching"]
    lines = [
        f"matched {doc['matched']} instances ({m['by_identity']} by identity, {m['by_box']} by "
        f"box; {m['kept']} kept, {m['rejected']} rejected) on {m['gt_images_evaluated']} of "
        f"{m['gt_images']} GT images",
        f"unmatched: {doc['unmatched_gt']} GT objects (not counted as misses), "
        f"{doc['unmatched_pred']} generated instances",
        "",
        f"{'':24} {'n':>6}  {'mIoU':>5}  {'aIoU':>5}  {'bIoU':>5}  {'AP':>5}",
    ]

    def row(label: str, s: dict[str, Any], ap: float | None) -> str:
        return (f"{label[:24]:24} {s['count']:6d}  {_fmt(s['miou'])}  {_fmt(s['area_iou'])}  "
                f"{_fmt(s['boundary_iou'])}  {_fmt(ap)}")  # fmt: skip

    overall = {k: doc[k] for k in ("miou", "area_iou", "boundary_iou")} | {"count": doc["n_kept"]}
    lines.append(row("all (kept)", overall, doc["mask_ap"]))
    for name, s in doc["per_class"].items():
        lines.append(row(f"  {name}", s, s.get("mask_ap")))
    for name, s in doc["per_size"].items():
        lines.append(row(f"  size {name}", s, s.get("mask_ap")))
    rej = doc["rejected"]
    lines.append(row("rejected", {"count": rej["count"], "miou": rej["miou"],
                                  "area_iou": None, "boundary_iou": None}, None))  # fmt: skip
    for reason, s in rej["per_reason"].items():
        lines.append(row(f"  {reason}", s, None))
    lines += [
        "",
        f"mask AP50 {_fmt(doc['mask_ap50'])}  AP75 {_fmt(doc['mask_ap75'])}; boundary band "
        f"{doc['settings']['band_fraction']:g} x box diagonal (>= 1 px)",
        f"filter: {rej['kept_bad']} kept masks with IoU < {rej['good_iou']}, "
        f"{rej['rejected_good']} rejected masks with IoU >= {rej['good_iou']}",
    ]
    unmatched = m["unmatched_gt_per_class"]
    if unmatched:
        lines.append(
            "unmatched GT per class: " + ", ".join(f"{k} {v}" for k, v in unmatched.items())
        )
    reasons = m["unmatched_pred_per_reason"]
    if reasons:
        lines.append("unmatched instances: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    return "\n".join(lines)
