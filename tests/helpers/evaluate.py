"""Hand-made build outputs and ground-truth files for the evaluation tests.

``write_build`` writes what ``samrs build`` writes for evaluation (``samrs.json`` and the
images / instances manifests, in the manifest schema) from masks given as arrays;
``write_coco`` writes a COCO instances file from masks.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from samrs.core import rle
from samrs.core.classes import class_table
from samrs.core.geometry import box_polygon
from samrs.outputs.schema import IMAGES, INSTANCES


def box_mask(height: int, width: int, box: tuple[int, int, int, int]) -> np.ndarray:
    """Boolean mask with the pixels of ``box`` = (x0, y0, x1, y1) set (x1, y1 exclusive)."""
    mask = np.zeros((height, width), dtype=bool)
    x0, y0, x1, y1 = box
    mask[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)] = True
    return mask


def write_build(
    out: Path,
    images: list[dict[str, Any]],
    instances: list[dict[str, Any]],
    *,
    source: str = "dota",
    root: str = "/data/dota",
    config: dict[str, Any] | None = None,
) -> Path:
    """A fake build folder.

    Args:
        images: rows with ``image_id``, ``width``, ``height`` and optionally ``file_name``,
            ``source_file``, ``annotation_file``, ``tile_window``.
        instances: rows with ``image_id``, ``class_name``, ``hbox``, ``mask`` (bool array of
            the image's size) and optionally ``object_index``, ``score``, ``kept``,
            ``reject_reason``, ``source_file``, ``source_line``.
    """
    table = class_table(source)
    sizes = {im["image_id"]: (im["height"], im["width"]) for im in images}
    image_rows = []
    for im in images:
        n = sum(1 for inst in instances if inst["image_id"] == im["image_id"])
        image_rows.append(
            {
                "image_id": im["image_id"],
                "source": source,
                "version": table.version,
                "split": "train",
                "file_name": im.get("file_name", f"{root}/train/images/{im['image_id']}.png"),
                "source_file": im.get("source_file", f"{root}/train/images/{im['image_id']}.png"),
                "annotation_file": im.get("annotation_file"),
                "tile_window": im.get("tile_window"),
                "width": im["width"],
                "height": im["height"],
                "n_objects": n,
                "n_kept": n,
                "status": "ok" if n else "empty",
                "shard": 0,
            }
        )
    inst_rows = []
    for i, inst in enumerate(instances):
        h, w = sizes[inst["image_id"]]
        mask = inst["mask"]
        assert mask.shape == (h, w)
        enc = rle.encode(mask)
        class_id = table.lookup(inst["class_name"])
        inst_rows.append(
            {
                "instance_id": i,
                "image_id": inst["image_id"],
                "object_index": inst.get("object_index", i),
                "class_id": 0 if class_id is None else class_id,
                "class_name": inst["class_name"],
                "difficult": False,
                "truncated": False,
                "polygon": list(box_polygon(inst["hbox"])),
                "hbox": [float(v) for v in inst["hbox"]],
                "prompt": "rhbox",
                "segmentation": enc["counts"],
                "area": int(mask.sum()),
                "bbox": rle.bbox(enc),
                "score": inst.get("score"),
                "rbox_iou": 1.0,
                "inside_fraction": 1.0,
                "n_components": 1,
                "kept": inst.get("kept", True),
                "reject_reason": inst.get("reject_reason"),
                "substituted": False,
                "source_file": inst.get(
                    "source_file", f"{root}/train/labelTxt/{inst['image_id']}.txt"
                ),
                "source_line": inst.get("source_line"),
                "flags": [],
            }
        )
    for name, schema, rows in (("images", IMAGES, image_rows), ("instances", INSTANCES, inst_rows)):
        folder = out / "manifest" / name
        folder.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-00000.parquet")
    cfg = {"source": source, "root": root, "out": str(out), "segmenter": "box", "prompt": "rhbox"}
    cfg.update(config or {})
    meta = {"config": cfg, "class_table": table.to_dict()}
    (out / "samrs.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def write_coco(
    path: Path,
    images: list[dict[str, Any]],
    annotations: list[dict[str, Any]],
    categories: list[dict[str, Any]],
) -> Path:
    """A COCO instances file; annotations given with a ``mask`` get RLE segmentation, area, bbox."""
    sizes = {im["id"]: (im["height"], im["width"]) for im in images}
    anns = []
    for j, ann in enumerate(annotations):
        ann = dict(ann)
        mask = ann.pop("mask", None)
        if mask is not None:
            assert mask.shape == sizes[ann["image_id"]]
            enc = rle.encode(mask)
            ann.setdefault("segmentation", enc)
            ann.setdefault("area", int(mask.sum()))
            ann.setdefault("bbox", rle.bbox(enc))
        ann.setdefault("id", j + 1)
        ann.setdefault("iscrowd", 0)
        anns.append(ann)
    doc = {"images": images, "annotations": anns, "categories": categories}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc))
    return path
