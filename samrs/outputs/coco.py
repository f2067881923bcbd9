"""COCO instances JSON from the manifests of a build (no SAM involved).

Conventions (also in ``manifests/README.md``):

- ``categories``: one per class of the build's class table (or of the selected classes),
  ``id = class_id + 1`` (COCO ids start at 1), ``name``, ``supercategory`` (the source's
  where it has one, as FAIR1M; else the source name, e.g. ``dota``), and ``samrs_class_id``
  (the semantic-label pixel value).
- ``images``: ``id`` = 1-based position of the image in the build's manifest (stable across
  subsets), ``file_name``, ``width``, ``height``, ``samrs_image_id``, ``split``.
- ``annotations``: ``id = instance_id + 1``, RLE ``segmentation`` ``{"size": [h, w],
  "counts": ASCII}`` (or polygons with ``polygons=True``), ``bbox`` = COCO ``[x, y, w, h]``
  of the mask, ``area`` = mask pixels, ``iscrowd`` 0, and extra keys ``samrs_instance_id``,
  ``polygon`` (the source's 8 coordinates), ``score`` (only where the segmenter gave one),
  ``stability``, ``rbox_iou``, ``kept``, ``reject_reason``, ``substituted``, ``difficult``;
  the same extras, without nulls, under ``attributes`` (what Datumaro and CVAT keep).
- Order: images in manifest order, annotations by image then instance id. No timestamps.

A build's own document is assembled from per-part fragments (:func:`write_fragment`,
:func:`assemble_coco`): the same bytes, without reading the manifests at the end.

Polygon mode: each mask is vectorized along pixel edges (exact, 4-connected components,
collinear vertices removed); holes are filled (COCO polygons cannot express them); a mask
without any pixel keeps its RLE.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from affine import Affine
from rasterio import features
from shapely.geometry import shape

from samrs.core import rle
from samrs.core.classes import ClassTable
from samrs.core.masks import mask_bbox
from samrs.outputs.metadata import build_class_table, build_config, read_build_metadata
from samrs.outputs.schema import MANIFEST_VERSION
from samrs.outputs.select import ImageItem, Selection, iter_build, iter_part

JSON_SEPARATORS = (",", ":")


def category_id(class_id: int) -> int:
    """COCO category id of a samrs class id (``class_id + 1``)."""
    return int(class_id) + 1


def coco_categories(table: ClassTable, class_ids: list[int] | None = None) -> list[dict]:
    """COCO ``categories`` of a class table (all classes, or the given ids)."""
    cats = []
    for cid in class_ids if class_ids is not None else range(len(table)):
        name = table.names[cid]
        cat: dict[str, Any] = {
            "id": category_id(cid),
            "name": name,
            "supercategory": table.supercategories[cid] or table.source or name,
            "samrs_class_id": cid,
        }
        cats.append(cat)
    return cats


def mask_polygons(mask: np.ndarray) -> list[list[float]]:
    """COCO polygons (flat ``x, y`` lists, pixel-corner coordinates) of a boolean mask.

    Exterior rings of the pixel-edge outline of each 4-connected component (holes filled),
    collinear vertices removed; pycocotools rasterizes them back to the mask exactly when it
    has no holes.
    """
    x, y, w, h = mask_bbox(np.asarray(mask, dtype=bool))
    if w == 0:
        return []
    crop = np.ascontiguousarray(mask[y : y + h, x : x + w], dtype=np.uint8)  # traced alone
    polys = []
    shifted = Affine.translation(x, y)  # back to image coordinates
    for geom, _ in features.shapes(crop, mask=crop.astype(bool), connectivity=4, transform=shifted):
        ring = shapely.simplify(shapely.Polygon(shape(geom).exterior), 0)
        coords = np.asarray(ring.exterior.coords)[:-1]
        if len(coords) >= 3:
            polys.append([float(v) for v in coords.reshape(-1)])
    return polys


def _num(value: Any, digits: int = 6) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else round(value, digits)


def coco_image(item: ImageItem, file_name: str | None = None) -> dict[str, Any]:
    """The COCO ``images`` entry of an image."""
    return {
        "id": item.index,
        "file_name": file_name if file_name is not None else item.image["file_name"],
        "width": item.width,
        "height": item.height,
        "samrs_image_id": item.image["image_id"],
        "split": item.image["split"],
    }


def coco_annotation(item: ImageItem, row: dict[str, Any], polygons: bool = False) -> dict:
    """The COCO ``annotations`` entry of an instance row of ``item``."""
    enc = item.rle(row)
    segmentation: Any = {"size": enc["size"], "counts": enc["counts"]}
    if polygons:
        polys = mask_polygons(rle.decode(enc))
        if polys:
            segmentation = polys
    extras: dict[str, Any] = {
        "samrs_instance_id": int(row["instance_id"]),
        "score": _num(row["score"]),
        "stability": _num(row["stability"]),
        "rbox_iou": _num(row["rbox_iou"]),
        "kept": bool(row["kept"]),
        "reject_reason": row["reject_reason"],
        "substituted": bool(row["substituted"]),
        "difficult": bool(row.get("difficult", False)),
    }
    ann: dict[str, Any] = {
        "id": int(row["instance_id"]) + 1,
        "image_id": item.index,
        "category_id": category_id(row["class_id"]),
        "segmentation": segmentation,
        "area": int(row["area"]),
        "bbox": [float(v) for v in row["bbox"]],
        "iscrowd": 0,
        "polygon": [float(v) for v in row["polygon"]],
    }
    ann.update((k, v) for k, v in extras.items() if v is not None or k in _NULLABLE_EXTRAS)
    # Datumaro (and CVAT) keep only what is under "attributes"; no nulls there either
    ann["attributes"] = {k: v for k, v in extras.items() if v is not None}
    return ann


_NULLABLE_EXTRAS = ("stability", "reject_reason")
"""Extras written as null at the top level; ``score`` is left out when there is none: COCO
tools read a present ``score`` as a number (pycocotools ``COCOeval``, Datumaro)."""


def coco_results(doc: dict[str, Any], default_score: float = 1.0) -> list[dict[str, Any]]:
    """The annotations of a COCO document as a pycocotools results list (``COCO.loadRes``).

    ``COCOeval`` ranks results by ``score``; masks from a segmenter without one (``box``,
    ``grabcut``) get ``default_score`` (all equal: ranked in annotation order).
    """
    return [
        {
            "image_id": a["image_id"],
            "category_id": a["category_id"],
            "segmentation": a["segmentation"],
            "bbox": a["bbox"],
            "score": float(a["score"]) if a.get("score") is not None else default_score,
        }
        for a in doc["annotations"]
    ]


def _prepare(
    out: str | Path, sel: Selection
) -> tuple[dict[str, Any], Iterator[ImageItem], dict[str, Any]]:
    meta = read_build_metadata(out)
    table = build_class_table(meta)
    config = build_config(meta)
    items = iter_build(out, sel, class_table=table, on_reject=config.get("on_reject"))
    return _head(meta, table, sel), items, meta


def _head(meta: dict[str, Any], table: ClassTable, sel: Selection) -> dict[str, Any]:
    """Everything of the document before ``images``."""
    source = meta.get("source") or {}
    name = (source.get("format") or source.get("name")) if isinstance(source, dict) else source
    return {
        "info": {
            "description": f"samrs segmentation dataset ({name or table.source} {table.version})",
            "samrs_manifest_version": meta.get("manifest_version", MANIFEST_VERSION),
            "samrs_version": meta.get("samrs_version", meta.get("tool_version")),
        },
        "licenses": [],
        "categories": coco_categories(table, sel.class_ids(table)),
    }


def _selection(
    include_rejected: bool, splits: Any, classes: Any, image_ids: Any, **thresholds: Any
) -> Selection:
    return Selection(
        splits=tuple(splits) if splits is not None else None,
        classes=tuple(classes) if classes is not None else None,
        image_ids=tuple(image_ids) if image_ids is not None else None,
        include_rejected=include_rejected,
        **thresholds,
    )


def coco_from_manifest(
    out: str | Path,
    *,
    include_rejected: bool = False,
    polygons: bool = False,
    splits: Sequence[str | None] | None = None,
    classes: list[str | int] | tuple[str | int, ...] | None = None,
    min_score: float | None = None,
    min_stability: float | None = None,
    min_rbox_iou: float | None = None,
    min_area: int | None = None,
    image_ids: list[str] | tuple[str, ...] | None = None,
    file_name: Callable[[ImageItem], str] | None = None,
) -> dict[str, Any]:
    """The COCO instances document of a build (or a subset of it), in memory.

    Args:
        out: the build folder.
        include_rejected: also rejected instances (``kept: false`` with ``reject_reason``).
        polygons: polygon segmentations instead of RLE (see the module docstring).
        splits, classes, image_ids: subset; classes by name (any spelling) or id.
        min_score, min_stability, min_rbox_iou, min_area: stricter quality thresholds.
        file_name: ``file_name`` of an image (default: the manifest's ``file_name``).

    For big builds prefer :func:`write_coco`, which streams annotations to disk.
    """
    sel = _selection(include_rejected, splits, classes, image_ids, min_score=min_score,
                     min_stability=min_stability, min_rbox_iou=min_rbox_iou, min_area=min_area)  # fmt: skip
    head, items, _ = _prepare(out, sel)
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for item in items:
        images.append(coco_image(item, file_name(item) if file_name else None))
        annotations.extend(coco_annotation(item, row, polygons) for row in item.instances)
    return {**head, "images": images, "annotations": annotations}


def dumps(doc: Any) -> str:
    """Compact, deterministic JSON text (UTF-8 names kept)."""
    return json.dumps(doc, separators=JSON_SEPARATORS, ensure_ascii=False)


def write_json(path: str | Path, doc: dict[str, Any]) -> None:
    """Write a COCO document (compact JSON, key order as built, trailing newline)."""
    Path(path).write_text(dumps(doc) + "\n", encoding="utf-8")


def coco_texts(
    item: ImageItem,
    polygons: bool = False,
    file_name: Callable[[ImageItem], str] | None = None,
) -> tuple[str, list[str]]:
    """The ``images`` entry and the ``annotations`` entries of an image, as JSON text."""
    image = dumps(coco_image(item, file_name(item) if file_name else None))
    return image, [dumps(coco_annotation(item, row, polygons)) for row in item.instances]


def write_coco(
    out: str | Path,
    path: str | Path,
    *,
    include_rejected: bool = False,
    polygons: bool = False,
    splits: Sequence[str | None] | None = None,
    classes: list[str | int] | tuple[str | int, ...] | None = None,
    min_score: float | None = None,
    min_stability: float | None = None,
    min_rbox_iou: float | None = None,
    min_area: int | None = None,
    image_ids: list[str] | tuple[str, ...] | None = None,
    file_name: Callable[[ImageItem], str] | None = None,
    progress: Callable[[ImageItem], None] | None = None,
) -> dict[str, int]:
    """Stream the COCO document of build ``out`` to ``path``.

    Same bytes as ``write_json(path, coco_from_manifest(out, ...))``, holding one shard of
    the manifest in memory at a time.

    Annotations go to a temporary file beside ``path`` first; the result is moved into
    place at the end. Returns counts (``images``, ``annotations``, ``kept``).
    """
    sel = _selection(include_rejected, splits, classes, image_ids, min_score=min_score,
                     min_stability=min_stability, min_rbox_iou=min_rbox_iou, min_area=min_area)  # fmt: skip
    head, items, _ = _prepare(out, sel)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images: list[str] = []
    counts = {"images": 0, "annotations": 0, "kept": 0}
    fd, ann_tmp = tempfile.mkstemp(prefix=".ann-", dir=path.parent)
    doc_tmp = str(path.with_name(f".{path.name}.{os.getpid()}.tmp"))  # default permissions
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as ann:
            for item in items:
                image, annotations = coco_texts(item, polygons, file_name)
                images.append(image)
                for text in annotations:
                    ann.write(("," if counts["annotations"] else "") + text)
                    counts["annotations"] += 1
                counts["kept"] += item.n_kept
                if progress is not None:
                    progress(item)
        counts["images"] = len(images)
        with open(doc_tmp, "w", encoding="utf-8") as f, open(ann_tmp, encoding="utf-8") as ann:
            f.write(dumps(head)[:-1])
            f.write(',"images":[' + ",".join(images) + '],"annotations":[')
            shutil.copyfileobj(ann, f)
            f.write("]}\n")
        os.replace(doc_tmp, path)
    finally:
        for tmp in (ann_tmp, doc_tmp):
            if os.path.exists(tmp):
                os.unlink(tmp)
    return counts


# --- Fragments: the document of a build assembled from per-part pieces ----------------------

FRAGMENT_VERSION = 1
"""Version of the fragment format (:func:`write_fragment`); another version is not read."""


def fragment_options(include_rejected: bool, polygons: bool, on_reject: str | None) -> dict:
    """The options a build's COCO document (and so its fragments) depends on."""
    return {
        "include_rejected": bool(include_rejected),
        "polygons": bool(polygons),
        "on_reject": on_reject,
    }


def write_fragment(
    path: str | Path,
    images_part: str | Path,
    instances_part: str | Path,
    origin: dict[str, Any],
    options: dict[str, Any],
) -> dict[str, Any]:
    """Write the COCO fragment of one manifest part: its ``images`` and ``annotations``
    entries as the build's document has them (:func:`write_coco` with ``options``, see
    :func:`fragment_options`), but with image ids local to the part (1-based).

    Format (UTF-8 text): a header line (JSON: format version, ``origin`` (what the caller
    says the fragment was made from, e.g. the parts' checksums), ``options``, how many
    ``images`` and ``annotations`` lines follow, and the ``sha256`` of those lines), then
    one entry per line, images first. The file is written at ``path`` directly (the caller
    renames it into place). Returns the header.
    """
    sel = Selection(include_rejected=options["include_rejected"])
    images: list[str] = []
    annotations: list[str] = []
    for item in iter_part(images_part, instances_part, sel, on_reject=options["on_reject"]):
        image, texts = coco_texts(item, options["polygons"])
        images.append(image)
        annotations.extend(texts)
    body = "".join(text + "\n" for text in (*images, *annotations)).encode("utf-8")
    header = {
        "samrs_coco_fragment": FRAGMENT_VERSION,
        "origin": origin,
        "options": options,
        "images": len(images),
        "annotations": len(annotations),
        "sha256": hashlib.sha256(body).hexdigest(),
    }
    with open(path, "wb") as f:
        f.write((json.dumps(header, sort_keys=True) + "\n").encode("utf-8"))
        f.write(body)
    return header


def read_fragment_header(
    path: str | Path, origin: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any] | None:
    """The header of a sound fragment made from ``origin`` with ``options``; None for a
    missing, unreadable, foreign, stale or damaged one (its lines are checked against the
    header's checksum and counts)."""
    try:
        with open(path, "rb") as f:
            header = json.loads(f.readline())
            if (
                not isinstance(header, dict)
                or header.get("samrs_coco_fragment") != FRAGMENT_VERSION
                or header.get("origin") != origin
                or header.get("options") != options
            ):
                return None
            digest = hashlib.sha256()
            lines = 0
            for line in f:
                digest.update(line)
                lines += 1
    except (OSError, ValueError):
        return None
    expected = (header.get("images"), header.get("annotations"), header.get("sha256"))
    n_images, n_annotations, sha = expected
    if not isinstance(n_images, int) or not isinstance(n_annotations, int):
        return None
    if lines != n_images + n_annotations or digest.hexdigest() != sha:
        return None
    return header


def _shift_id(text: str, key: str, offset: int) -> str:
    """``text`` (one entry, newline included) with the integer after its first ``key``
    increased by ``offset`` and the newline dropped."""
    start = text.index(key) + len(key)
    end = text.index(",", start)
    return text[:start] + str(int(text[start:end]) + offset) + text[end:].rstrip("\n")


def assemble_coco(
    out: str | Path, path: str | Path, fragments: Sequence[tuple[str | Path, int]]
) -> dict[str, int]:
    """Write the COCO document of build ``out`` to ``path`` from the fragments of its parts
    (:func:`write_fragment`, checked with :func:`read_fragment_header`), given in part order
    with the number of images rows of the parts before each (the image id shift).

    The same bytes as :func:`write_coco` with the fragments' options, without reading the
    manifests: entries are copied as text, only image ids change. Written to a temporary
    file beside ``path``, then moved into place. Returns counts (``images``,
    ``annotations``).
    """
    meta = read_build_metadata(out)
    head = _head(meta, build_class_table(meta), Selection())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = {"images": 0, "annotations": 0}
    doc_tmp = str(path.with_name(f".{path.name}.{os.getpid()}.tmp"))  # default permissions
    try:
        with open(doc_tmp, "w", encoding="utf-8") as f:
            f.write(dumps(head)[:-1] + ',"images":[')
            for fragment, offset in fragments:
                with open(fragment, encoding="utf-8", newline="\n") as frag:
                    n = json.loads(frag.readline())["images"]
                    for _ in range(n):
                        f.write(("," if counts["images"] else "") + _shift_id(
                            frag.readline(), '{"id":', offset))  # fmt: skip
                        counts["images"] += 1
            f.write('],"annotations":[')
            for fragment, offset in fragments:
                with open(fragment, encoding="utf-8", newline="\n") as frag:
                    header = json.loads(frag.readline())
                    for _ in range(header["images"]):
                        frag.readline()
                    for line in frag:
                        f.write(("," if counts["annotations"] else "") + _shift_id(
                            line, '"image_id":', offset))  # fmt: skip
                        counts["annotations"] += 1
            f.write("]}\n")
        os.replace(doc_tmp, path)
    finally:
        if os.path.exists(doc_tmp):
            os.unlink(doc_tmp)
    return counts
