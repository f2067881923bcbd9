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
from pathlib import Path
from typing import Any

import numpy as np

from samrs.geometry import box_polygon
from samrs.records import ImageRecord, ObjectAnnotation, Polygon
from samrs.sources.common import (
    ReadContext,
    SourceError,
    child,
    find_leaves,
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
    return tuple(float(v) for v in corners.reshape(-1))  # type: ignore[return-value]


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

        from samrs import rle as rle_utils

        h, w = segmentation.get("size") or (height, width)
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


def parse_object(
    ann: dict[str, Any],
    k: int,
    names: dict[Any, str],
    path: Path,
    ctx: ReadContext,
    *,
    image_id: str,
    width: int | None,
    height: int | None,
) -> ObjectAnnotation | None:
    """One COCO annotation as an object (None after recording why not)."""
    element = f"annotations[{k}]"
    name = names.get(ann.get("category_id"))
    if name is None:
        ctx.error(
            path,
            k,
            f"{element}: category_id {ann.get('category_id')!r} is not among the file's "
            "categories: expected the id of one of its categories",
            image_id=image_id,
            n_objects=1,
        )
        return None
    flags = [f"coco_id={ann['id']}"] if "id" in ann else []
    segmentation = ann.get("segmentation")
    try:
        if segmentation:
            polygon = min_area_rect(segmentation_points(segmentation, height, width))
        else:
            box = [parse_float(str(v)) for v in ann.get("bbox") or []]
            if len(box) != 4 or any(v is None for v in box):
                raise ValueError("no segmentation and no bbox [x, y, w, h]")
            x, y, w, h = box  # type: ignore[misc]
            polygon, flags = box_polygon((x, y, x + w, y + h)), [*flags, "bbox_only"]
    except (ValueError, TypeError, KeyError) as exc:
        ctx.error(path, k, f"{element}: bad segmentation: {exc}", image_id=image_id, n_objects=1)
        return None
    return ctx.make_object(
        polygon,
        name,
        width=width,
        height=height,
        source_file=path,
        line=k,
        element=element,
        image_id=image_id,
        flags=flags,
    )


def _read_leaf(split: str | None, leaf: Path, ctx: ReadContext) -> list[ImageRecord]:
    image_dir = child(leaf, "images") or leaf
    index = index_images(image_dir, exclude=_is_mask_png)
    ctx.note_duplicates(index, lambda stem: stem)
    path = _pick_json(leaf, split, ctx)
    if path is None:  # test split: images only
        return [
            _record(ctx, split, stem, p, None, [], *ctx.size_of(p, stem))
            for stem, p in index.by_stem.items()
        ]
    try:
        coco = json.loads(path.read_text(encoding="utf-8-sig"))
        images_json, anns = coco["images"], coco.get("annotations", [])
        names = {c["id"]: str(c["name"]) for c in coco["categories"]}
    except json.JSONDecodeError as exc:
        ctx.error(path, exc.lineno, f"unreadable COCO JSON ({exc}); split skipped")
        return []
    except (OSError, KeyError, TypeError) as exc:
        ctx.error(
            path,
            None,
            f"not a COCO instances file ({exc!r}): expected images, annotations and "
            "categories; split skipped",
        )
        return []
    by_image: dict[Any, list[tuple[int, dict[str, Any]]]] = {}
    for k, ann in enumerate(anns, start=1):
        by_image.setdefault(ann.get("image_id"), []).append((k, ann))
    records, listed = [], set()
    for entry in images_json:
        file_name = str(entry.get("file_name", ""))
        stem = Path(file_name).stem
        listed.add(stem)
        image_path = index.by_stem.get(stem)
        entries = by_image.pop(entry.get("id"), [])
        if image_path is None:
            count = 0
            for k, ann in entries:
                obj = parse_object(ann, k, names, path, ctx, image_id=stem, width=None, height=None)
                count += obj is not None
            ctx.error(
                path,
                None,
                f"no image for the COCO image {file_name!r} (looked in {image_dir})",
                image_id=stem,
                n_objects=count,
            )
            continue
        stated = (parse_int(str(entry.get("width"))), parse_int(str(entry.get("height"))))
        width, height = ctx.size_of(
            image_path,
            stem,
            stated if stated[0] and stated[1] else None,  # type: ignore[arg-type]
        )
        objects = []
        for k, ann in entries:
            obj = parse_object(ann, k, names, path, ctx, image_id=stem, width=width, height=height)
            if obj is not None:
                objects.append(obj)
        records.append(_record(ctx, split, stem, image_path, path, objects, width, height))
    for image_key, entries in sorted(by_image.items(), key=lambda kv: str(kv[0])):
        ctx.error(
            path,
            entries[0][0],
            f"{len(entries)} annotation(s) of image_id {image_key!r}, which is not among the "
            "file's images",
            n_objects=len(entries),
        )
    for stem, image_path in index.by_stem.items():
        if stem not in listed:
            ctx.error(image_path, None, f"missing label: image not listed in {path}", image_id=stem)
            size = ctx.size_of(image_path, stem)
            records.append(_record(ctx, split, stem, image_path, None, [], *size))
    return records


def _record(
    ctx: ReadContext,
    split: str | None,
    stem: str,
    image_path: Path,
    annotation: Path | None,
    objects: list[ObjectAnnotation],
    width: int | None,
    height: int | None,
) -> ImageRecord:
    return ImageRecord(
        image_id=stem,
        image_path=str(image_path),
        width=width,
        height=height,
        source=ctx.source,
        version=ctx.version,
        split=split,
        objects=tuple(objects),
        annotation_file=str(annotation) if annotation is not None else None,
        source_width=width,
        source_height=height,
    )


def read(root: Path, ctx: ReadContext) -> list[ImageRecord]:
    """Read every iSAID split under ``root`` (see the module docstring)."""
    leaves = find_leaves(root, _is_leaf)
    if not leaves:
        raise SourceError(f"no iSAID images/ or Annotations/ folder found under {root}")
    images: list[ImageRecord] = []
    for split, leaf in leaves:
        if ctx.wants(split):
            images.extend(_read_leaf(split, leaf, ctx))
    return images
