"""iSAID reader (COCO instance JSON per split, on the DOTA v1.0 images).

Layout: ``{train,val}/images/P####.png`` (next to ``P####_instance_color_RGB.png`` and
``P####_instance_id_RGB.png``, which are not images of the dataset) and
``{train,val}/Annotations/iSAID_{train,val}.json``; ``test/images`` has no JSON. A JSON directly
in the split folder is accepted too. When a folder holds several JSONs, ``iSAID_<split>.json``
(else the first by name) is read and the others get an error row saying they were ignored.
``--root`` is the top folder or one split's folder.

Categories are matched by NAME through the iSAID class table (``Small_Vehicle`` ->
``small-vehicle``), never by id: the train and val files number them differently. Each object's
polygon is the minimum-area rotated rectangle (``cv2.minAreaRect``) of its COCO segmentation
(polygons, or an RLE mask), as 4 corners clockwise on screen starting nearest the top-left; an
annotation without a segmentation uses its ``bbox`` (flag ``bbox_only``). The COCO annotation id
is kept as the flag ``coco_id=<id>``; annotation ``k`` of the file (1-based) is line ``k`` and
element ``annotations[k]``. Image ids are the file stems (``P0001``). ``samrs evaluate`` reads
the masks themselves from the JSON.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from samrs.core.geometry import box_polygon
from samrs.core.records import ImageRecord, ObjectAnnotation, Polygon, as_polygon
from samrs.sources.common import (
    ImageIndex,
    ObjectFields,
    ReadContext,
    child,
    index_images,
    parse_float,
    parse_int,
)

MASK_SUFFIXES = ("_instance_color_RGB", "_instance_id_RGB")


def _is_mask_png(path: Path) -> bool:
    return path.stem.endswith(MASK_SUFFIXES)


def _jsons(folder: Path | None) -> list[Path]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() == ".json" and p.is_file())


def _is_leaf(folder: Path) -> bool:
    return child(folder, "images", "Annotations") is not None or bool(_jsons(folder))


def min_area_rect(points: np.ndarray) -> Polygon:
    """The minimum-area rotated rectangle of (N, 2) points as 4 corners.

    Clockwise on screen (y down), starting at the corner with the smallest ``x + y`` (then
    smallest ``y``); coordinates rounded to 1e-4 px (OpenCV computes in float32).
    """
    import cv2

    rect = cv2.minAreaRect(np.asarray(points, dtype=np.float32).reshape(-1, 1, 2))
    # float32 arithmetic: round away its noise so ties and outputs are stable
    corners = np.round(cv2.boxPoints(rect).astype(np.float64), 4) + 0.0
    x, y = corners[:, 0], corners[:, 1]
    if float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) < 0:
        corners = corners[::-1]
    start = int(np.lexsort((corners[:, 1], corners[:, 0] + corners[:, 1]))[0])
    corners = np.roll(corners, -start, axis=0)
    return as_polygon(corners.reshape(-1))


def segmentation_points(segmentation: Any, height: int | None, width: int | None) -> np.ndarray:
    """Boundary points of a COCO segmentation (polygon list or RLE), (N, 2) in pixels.

    For an RLE mask the points are the corners of its boundary pixels.

    Raises:
        ValueError: not a COCO segmentation.
    """
    if isinstance(segmentation, list):
        coords = [float(v) for part in segmentation for v in part]
        if len(coords) < 6 or len(coords) % 2:
            raise ValueError("polygon segmentation needs at least 3 x,y pairs")
        return np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    if isinstance(segmentation, dict) and "counts" in segmentation:
        import cv2

        from samrs.core import rle as rle_utils

        # JSON values, else the image's size (None if unknown): int() checks both, its
        # TypeError becomes the object's error row
        size: Sequence[Any] = segmentation.get("size") or (height, width)
        h, w = size
        counts = segmentation["counts"]
        rle = (
            rle_utils.from_run_lengths(counts, int(h), int(w))
            if isinstance(counts, list)
            else segmentation
        )
        mask = rle_utils.decode(rle).astype(np.uint8)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        if not contours:
            raise ValueError("empty RLE mask")
        pix = np.concatenate([c.reshape(-1, 2) for c in contours]).astype(np.float64)
        offsets = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=np.float64)
        return (pix[:, None, :] + offsets[None]).reshape(-1, 2)
    raise ValueError("expected a polygon list or an RLE {size, counts}")


def _pick_json(leaf: Path, split: str | None, ctx: ReadContext) -> Path | None:
    candidates = _jsons(child(leaf, "Annotations")) or _jsons(leaf)
    if not candidates:
        return None
    preferred = [p for p in candidates if split and p.stem.lower() == f"isaid_{split.lower()}"]
    chosen = (preferred or candidates)[0]
    for other in candidates:
        if other != chosen:
            ctx.error(other, None, f"ignored: another COCO file of this folder is read: {chosen}")
    return chosen


def annotation_fields(
    ann: dict[str, Any], names: dict[Any, str], width: int | None, height: int | None
) -> ObjectFields | str:
    """The fields of one COCO annotation, or what is wrong with it."""
    name = names.get(ann.get("category_id"))
    if name is None:
        return (
            f"category_id {ann.get('category_id')!r} is not among the file's categories: "
            "expected the id of one of its categories"
        )
    flags = (f"coco_id={ann['id']}",) if "id" in ann else ()
    segmentation = ann.get("segmentation")
    try:
        if segmentation:
            return ObjectFields(
                min_area_rect(segmentation_points(segmentation, height, width)), name, flags=flags
            )
        box = [parse_float(str(v)) for v in ann.get("bbox") or []]
        if len(box) != 4 or any(v is None for v in box):
            raise ValueError("no segmentation and no bbox [x, y, w, h]")
    except (ValueError, TypeError, KeyError) as exc:
        return f"bad segmentation: {exc}"
    x, y, w, h = (v for v in box if v is not None)  # all four (checked above)
    return ObjectFields(box_polygon((x, y, x + w, y + h)), name, flags=(*flags, "bbox_only"))


def _load_coco(path: Path, ctx: ReadContext) -> tuple[list[Any], list[Any], dict[Any, str]] | None:
    """``(images, annotations, category id -> name)`` of a COCO file, or None after an error
    row."""
    try:
        coco = json.loads(path.read_text(encoding="utf-8-sig"))
        images_json, anns = list(coco["images"]), list(coco.get("annotations", []))
        names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    except json.JSONDecodeError as exc:
        ctx.error(
            path,
            exc.lineno,
            f"unreadable COCO JSON ({exc}): expected a COCO instances document; split skipped",
        )
        return None
    except (OSError, KeyError, TypeError) as exc:
        ctx.error(
            path,
            None,
            f"not a COCO instances file ({exc!r}): expected images, annotations and "
            "categories; split skipped",
        )
        return None
    return images_json, anns, names


def _short(value: object, limit: int = 60) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _coco_image(
    ctx: ReadContext,
    split: str | None,
    entry: dict[str, Any],
    annotations: list[tuple[int, dict[str, Any]]],
    names: dict[Any, str],
    path: Path,
    index: ImageIndex,
    image_dir: Path,
) -> ImageRecord | None:
    """The record of one COCO image entry with its ``(k, annotation)`` pairs."""
    stem = Path(entry["file_name"]).stem

    def parse(width: int | None, height: int | None) -> list[ObjectAnnotation]:
        parsed = (
            (k, f"annotations[{k}]", annotation_fields(ann, names, width, height))
            for k, ann in annotations
        )
        return ctx.make_objects(path, parsed, image_id=stem, width=width, height=height)

    width, height = parse_int(str(entry.get("width"))), parse_int(str(entry.get("height")))
    return ctx.image_record(
        stem,
        split,
        index.by_stem.get(stem),
        label=path,
        parse=parse,
        stated_size=(width, height) if width and height else None,
        images_in=image_dir,
        stem=stem,
    )


def _read_leaf(split: str | None, leaf: Path, ctx: ReadContext) -> list[ImageRecord]:
    image_dir = child(leaf, "images") or leaf
    index = index_images(image_dir, exclude=_is_mask_png)
    ctx.note_duplicates(index, lambda stem: stem)
    path = _pick_json(leaf, split, ctx)  # None: a test split, images only
    records: list[ImageRecord | None] = []
    listed: set[str] = set()
    if path is not None:
        coco = _load_coco(path, ctx)
        if coco is None:
            return []
        images_json, anns, names = coco
        by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
        for k, ann in enumerate(anns, start=1):
            if isinstance(ann, dict) and isinstance(ann.get("image_id"), (int, str)):
                by_image.setdefault(ann["image_id"], []).append((k, ann))
            else:
                ctx.error(
                    path,
                    k,
                    f"annotations[{k}]: expected an object with an image_id, got {_short(ann)}",
                    n_objects=1,
                )
        for i, entry in enumerate(images_json, start=1):
            if not (
                isinstance(entry, dict)
                and isinstance(entry.get("id"), (int, str))
                and isinstance(entry.get("file_name"), str)
                and entry["file_name"]
            ):
                # its annotations stay in by_image: reported as of an image not in the file
                ctx.error(
                    path,
                    None,
                    f"images[{i}]: expected an object with an id and a file_name, got "
                    f"{_short(entry)}",
                )
                continue
            listed.add(Path(entry["file_name"]).stem)
            annotations = by_image.pop(entry["id"], [])
            records.append(
                _coco_image(ctx, split, entry, annotations, names, path, index, image_dir)
            )
        for image_key, entries in sorted(by_image.items(), key=lambda kv: str(kv[0])):
            ctx.error(
                path,
                entries[0][0],
                f"annotations[{entries[0][0]}]: image_id {image_key!r} of {len(entries)} "
                "annotation(s): expected the id of one of the file's images",
                n_objects=len(entries),
            )
    for stem, image_path in index.by_stem.items():
        if stem not in listed:
            expected = f"an entry for {image_path.name} in {path}" if path is not None else None
            records.append(ctx.image_record(stem, split, image_path, expected_label=expected))
    return [record for record in records if record is not None]


def read(root: Path, ctx: ReadContext) -> list[ImageRecord]:
    """Read every iSAID split under ``root`` (see the module docstring)."""
    images: list[ImageRecord] = []
    for split, leaf in ctx.data_folders(root, _is_leaf, "iSAID images/ or Annotations/"):
        images.extend(_read_leaf(split, leaf, ctx))
    return images
