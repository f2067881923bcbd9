"""Ground truth for ``samrs evaluate``: a COCO instances JSON or an HRSC2016 root, its masks
decoded lazily per object."""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from samrs.analysis.evaluate.metrics import (
    HRSC_MASK_DIRS,
    EvaluationError,
    _checked_rle,
    _placed_rle,
)
from samrs.core.classes import normalize_class_name
from samrs.core.masks import MaskCrop

log = logging.getLogger(__name__)

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
    _cache: dict[int, MaskCrop] = field(default_factory=dict, repr=False)
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

    def placed(self, image: _GtImage, obj: _GtObject) -> MaskCrop:
        """The object's mask in source-image pixels (decoded once per image visit)."""
        if self._cache_image != image.index:
            self._cache, self._cache_image = {}, image.index
        if obj.index not in self._cache:
            self._cache[obj.index] = self._decode(image, obj)
        return self._cache[obj.index]

    def _decode(self, image: _GtImage, obj: _GtObject) -> MaskCrop:
        if obj.mask_rgb is not None and image.mask_file is not None:
            colour = self._colour_mask(image.mask_file)
            return MaskCrop.from_full(np.all(colour == np.asarray(obj.mask_rgb), axis=2))
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
            return MaskCrop.empty(h, w)
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
        owner = by_id.get(ann.get("image_id"))
        if owner is None:
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
            bbox = _segm_bbox(segm, owner)
        x, y, w, h = (float(v) for v in bbox)
        name = categories[ann["category_id"]]
        owner.objects.append(
            _GtObject(
                index=len(owner.objects),
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
    """A JSON number or numeric string as an int; None for anything else."""
    if not isinstance(value, (int, float, str)):
        return None
    try:
        return int(value)
    except ValueError:
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


def _load_hrsc(root: Path) -> GroundTruth:
    """HRSC2016 as :mod:`samrs.sources.hrsc` reads it (every label file, with or without its
    image), each object with a ``seg_color`` matched to the pixels of that colour in its
    image's colour PNG mask.

    A GT object is the reader's object: label file relative to ``root``, ``source_line``,
    ``object_index`` (``source_line - 1``), its element path as annotation id and its
    polygon's box (the box the build prompted with). Objects without a colour or a mask file,
    and objects the reader rejected (each an error row, logged), are not evaluated
    (``n_without_mask``).
    """
    from samrs.core.classes import DEFAULT_VERSION, class_table
    from samrs.sources import hrsc
    from samrs.sources.common import ReadContext, SourceError

    ctx = ReadContext("hrsc", DEFAULT_VERSION["hrsc"], class_table("hrsc"))
    try:
        records = hrsc.read(root, ctx, labels_only=True)
        why = ""
    except SourceError as exc:  # the reader's own words say what it looked for
        records, why = [], f" (read as HRSC2016: {exc})"
    if not records:
        raise EvaluationError(
            f"{root}: no ground truth found: expected a COCO instances JSON, a folder with "
            f"gt/instances.json, or an HRSC2016 root with HRSC_Image XML files{why}"
        )
    n_without = 0
    for error in ctx.errors:
        if error.stage != "image":  # a missing image: the label and mask are what counts
            log.warning("HRSC ground truth: %s:%s: %s", error.source_file, error.line or "",
                        error.message)  # fmt: skip
            n_without += error.n_objects
    images: list[_GtImage] = []
    for record in records:
        if record.width is None or record.height is None:
            raise EvaluationError(
                f"{record.annotation_file}: no image size: expected Img_SizeWidth and "
                "Img_SizeHeight (or the image)"
            )
        label = Path(str(record.annotation_file))
        image_path = Path(record.image_path)
        mask_file = _hrsc_mask_file(label, (image_path.stem, label.stem))
        image = _GtImage(
            len(images),
            record.image_id,
            image_path.relative_to(root).as_posix(),
            record.width,
            record.height,
            mask_file=mask_file,
        )
        label_name = label.relative_to(root).as_posix()
        for obj in record.objects:
            colour = hrsc.mask_colour(obj)
            if colour is None or mask_file is None or obj.source_line is None:
                invalid = [f for f in obj.flags if f.startswith(hrsc.SEG_COLOR_INVALID_FLAG)]
                if invalid:
                    log.warning("HRSC ground truth: %s:%s: %s: not an R,G,B colour, object not "
                                "evaluated", label, obj.source_line or "", invalid[0])  # fmt: skip
                n_without += 1
                continue
            image.objects.append(
                _GtObject(
                    index=len(image.objects),
                    ann_id=obj.source_element,
                    class_key=normalize_class_name(obj.class_name),
                    class_name=obj.class_name,
                    bbox=obj.hbox,
                    segmentation=None,
                    source_files=(label_name,),
                    object_index=obj.source_line - 1,
                    source_line=obj.source_line,
                    mask_rgb=colour,
                )
            )
        images.append(image)
    return GroundTruth(root, images, n_without_mask=n_without)


def _hrsc_mask_file(label: Path, stems: Iterable[str]) -> Path | None:
    """The colour mask PNG of an HRSC label file: ``<stem>.png`` in a mask folder beside its
    ``Annotations`` folder (see :data:`HRSC_MASK_DIRS`)."""
    folder = label.parent.parent
    for name in HRSC_MASK_DIRS:
        for stem in dict.fromkeys(stems):
            path = folder / name / f"{stem}.png"
            if path.is_file():
                return path
    return None
