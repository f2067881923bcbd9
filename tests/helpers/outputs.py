"""A small, valid, hand-built ``samrs build`` output folder for tests of any stage.

``make_fake_build(out)`` writes, without SAM:

- ``OUT/samrs.json`` with a DOTA 1.0 class table and a resolved ``BuildConfig``;
- two shards of manifests (``images``, ``instances``, ``errors``; shard 1 has no errors, so
  its errors part is an empty file);
- semantic PNGs for every image, pixel images (source images under ``<out>_src/`` which is
  the config ``root``; the tile under ``OUT/images/``).

Images (see :data:`FAKE` for the exact facts tests can assert):

- ``P0001``  32x24, train, whole image, geo-referenced (EPSG:32633, 0.5 m), shard 0:
  instance 0 plane (kept, big), 1 small-vehicle inside it (kept), 2 ship (rejected
  ``low-score``); plus one malformed label line in the errors table (1 object).
- ``P0002__20__10``  20x20, train, tile of ``P0002`` at window (20, 10, 20, 20), shard 0:
  3 large-vehicle (kept, rotated), 4 storage-tank (kept, box substituted for a rejected
  mask), 5 small-vehicle (rejected ``low-rbox-iou``).
- ``P0003``  16x16, val, no objects (``status = empty``, all-255 label), shard 1.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samrs import __version__
from samrs.build.config import BuildConfig
from samrs.core import rle
from samrs.core.classes import class_table
from samrs.core.geometry import box_polygon, rasterize_polygon
from samrs.core.records import polygon_hbox
from samrs.outputs.manifest import part_path, write_part
from samrs.outputs.metadata import write_build_metadata
from samrs.outputs.schema import MANIFEST_VERSION
from samrs.outputs.semantic import paint_semantic, semantic_palette, write_semantic_png

TABLE = class_table("dota", "1.0")

# (image_id, width, height, split, shard, window, crs, transform)
_IMAGES: list[dict[str, Any]] = [
    {
        "image_id": "P0001", "width": 32, "height": 24, "split": "train", "shard": 0,
        "tile_window": None, "crs": "EPSG:32633",
        "transform": [0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0],
    },
    {
        "image_id": "P0002__20__10", "width": 20, "height": 20, "split": "train", "shard": 0,
        "tile_window": [20, 10, 20, 20], "crs": None, "transform": None,
    },
    {
        "image_id": "P0003", "width": 16, "height": 16, "split": "val", "shard": 1,
        "tile_window": None, "crs": None, "transform": None,
    },
]  # fmt: skip

# One entry per instance: image, class, polygon, mask polygon (what the "segmenter" gave),
# scores, kept / reject_reason / substituted.
_INSTANCES: list[dict[str, Any]] = [
    {"image_id": "P0001", "class_name": "plane", "polygon": box_polygon((2, 2, 22, 18)),
     "mask": box_polygon((2, 3, 22, 18)), "score": 0.95, "stability": 0.97, "rbox_iou": 0.94,
     "kept": True, "reject_reason": None, "substituted": False, "difficult": False},
    {"image_id": "P0001", "class_name": "small-vehicle", "polygon": box_polygon((10, 6, 16, 12)),
     "mask": box_polygon((10, 6, 16, 12)), "score": 0.90, "stability": 0.93, "rbox_iou": 1.0,
     "kept": True, "reject_reason": None, "substituted": False, "difficult": True},
    {"image_id": "P0001", "class_name": "ship", "polygon": box_polygon((24, 14, 30, 22)),
     "mask": box_polygon((25, 16, 28, 20)), "score": 0.30, "stability": 0.80, "rbox_iou": 0.25,
     "kept": False, "reject_reason": "low-score", "substituted": False, "difficult": False},
    {"image_id": "P0002__20__10", "class_name": "large-vehicle",
     "polygon": (10.0, 2.0, 18.0, 10.0, 10.0, 18.0, 2.0, 10.0),
     "mask": (10.0, 2.0, 18.0, 10.0, 10.0, 18.0, 2.0, 10.0), "score": 0.85, "stability": 0.91,
     "rbox_iou": 0.88, "kept": True, "reject_reason": None, "substituted": False,
     "difficult": False},
    {"image_id": "P0002__20__10", "class_name": "storage-tank", "polygon": box_polygon((0, 0, 5, 5)),
     "mask": box_polygon((0, 0, 5, 5)), "score": 0.20, "stability": 0.50, "rbox_iou": 1.0,
     "kept": True, "reject_reason": None, "substituted": True, "difficult": False},
    {"image_id": "P0002__20__10", "class_name": "small-vehicle",
     "polygon": box_polygon((12, 12, 19, 19)), "mask": box_polygon((13, 13, 15, 15)),
     "score": 0.88, "stability": 0.90, "rbox_iou": 0.08, "kept": False,
     "reject_reason": "low-rbox-iou", "substituted": False, "difficult": False},
]  # fmt: skip

FAKE: dict[str, Any] = {
    "image_ids": ["P0001", "P0002__20__10", "P0003"],
    "n_images": 3,
    "n_instances": 6,
    "n_kept": 4,  # instance ids 0, 1, 3, 4 (4 is substituted)
    "kept_ids": [0, 1, 3, 4],
    "rejected_ids": [2, 5],
    "substituted_ids": [4],
    "n_error_objects": 1,
    "n_objects_read": 7,  # 6 instances + 1 object inside an errors row
    "splits": {"P0001": "train", "P0002__20__10": "train", "P0003": "val"},
    "geo_image": "P0001",
    "tile_image": "P0002__20__10",
    "empty_image": "P0003",
    "class_table": TABLE,
}


def _pixels(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def instance_rows() -> list[dict[str, Any]]:
    """The instance rows of the fake build (also handy for hand-checking expectations)."""
    sizes = {im["image_id"]: (im["height"], im["width"]) for im in _IMAGES}
    rows = []
    per_image: dict[str, int] = {}
    for iid, spec in enumerate(_INSTANCES):
        h, w = sizes[spec["image_id"]]
        mask = rasterize_polygon(spec["mask"], h, w)
        enc = rle.encode(mask)
        k = per_image.get(spec["image_id"], 0)
        per_image[spec["image_id"]] = k + 1
        hbox = list(polygon_hbox(spec["polygon"]))
        rows.append(
            {
                "instance_id": iid,
                "image_id": spec["image_id"],
                "object_index": k,
                "class_id": TABLE.lookup(spec["class_name"]),
                "class_name": spec["class_name"],
                "difficult": spec["difficult"],
                "truncated": False,
                "polygon": [float(v) for v in spec["polygon"]],
                "hbox": hbox,
                "prompt": "rhbox",
                "prompt_box": hbox,
                "prompt_point": None,
                "segmentation": enc["counts"],
                "area": int(mask.sum()),
                "bbox": rle.bbox(enc),
                "score": spec["score"],
                "stability": spec["stability"],
                "rbox_iou": spec["rbox_iou"],
                "inside_fraction": 1.0,
                "n_components": 1,
                "kept": spec["kept"],
                "reject_reason": spec["reject_reason"],
                "substituted": spec["substituted"],
                "source_file": f"labelTxt/{spec['image_id'].split('__')[0]}.txt",
                "source_line": k + 3,
                "flags": ["substituted:low-score"] if spec["substituted"] else [],
            }
        )
    return rows


def make_fake_build(out: Path) -> None:
    """Write a small valid build output folder at ``out`` (and its source images beside it)."""
    out = Path(out)
    root = out.parent / f"{out.name}_src"
    (root / "images").mkdir(parents=True, exist_ok=True)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "semantic").mkdir(parents=True, exist_ok=True)

    config = BuildConfig(source="dota", root=str(root), out=str(out), version="1.0",
                         segmenter="sam", model="vit_b", random_weights=True,
                         min_score=0.5, min_rbox_iou=0.1, on_reject="keep-rejected")  # fmt: skip
    inst = instance_rows()
    palette = semantic_palette(TABLE, background=config.background)

    images_by_shard: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    inst_by_shard: dict[int, list[dict[str, Any]]] = {0: [], 1: []}
    for n, im in enumerate(_IMAGES):
        iid, w, h = im["image_id"], im["width"], im["height"]
        rows = [r for r in inst if r["image_id"] == iid]
        kept = [r for r in rows if r["kept"]]
        if im["tile_window"] is None:
            file_name = f"images/{iid}.png"
            Image.fromarray(_pixels(w, h, n)).save(root / file_name)
            source_file = file_name
        else:
            file_name = f"images/{iid}.png"
            Image.fromarray(_pixels(w, h, n)).save(out / file_name)
            source_file = f"images/{iid.split('__')[0]}.png"
        label = paint_semantic(
            h, w,
            [{"size": [h, w], "counts": r["segmentation"]} for r in kept],
            [r["class_id"] for r in kept],
            [r["area"] for r in kept],
            [r["score"] for r in kept],
            policy=config.overlap,
            background=config.background,
        )  # fmt: skip
        write_semantic_png(out / "semantic" / f"{iid}.png", label, palette)
        images_by_shard[im["shard"]].append(
            {
                "image_id": iid, "source": "dota", "version": "1.0", "split": im["split"],
                "file_name": file_name, "source_file": source_file,
                "annotation_file": f"labelTxt/{iid.split('__')[0]}.txt",
                "tile_window": im["tile_window"], "width": w, "height": h, "gsd": 0.5,
                "n_objects": len(rows), "n_kept": len(kept),
                "semantic_file": f"semantic/{iid}.png",
                "status": "ok" if rows else "empty",
                "crs": im["crs"], "transform": im["transform"], "shard": im["shard"],
            }
        )  # fmt: skip
        inst_by_shard[im["shard"]].extend(rows)

    errors = {
        0: [
            {
                "source_file": "labelTxt/P0001.txt", "line": 6, "stage": "read",
                "message": "labelTxt/P0001.txt line 6: expected 8 coordinates, a class name "
                "and a difficult flag, got 'plane 1 2 3'",
                "image_id": "P0001", "n_objects": 1, "shard": 0,
            }
        ],
        1: [],
    }  # fmt: skip
    for shard in (0, 1):
        write_part(part_path(out, "images", shard), "images", images_by_shard[shard])
        write_part(part_path(out, "instances", shard), "instances", inst_by_shard[shard])
        write_part(part_path(out, "errors", shard), "errors", errors[shard])

    write_build_metadata(
        out,
        {
            "tool": "samrs",
            "samrs_version": __version__,
            "manifest_version": MANIFEST_VERSION,
            "source": {"format": "dota", "version": "1.0", "root": str(root), "split": None},
            "config": config.to_dict(),
            "fingerprint": config.fingerprint(),
            "class_table": TABLE.to_dict(),
            "segmenter": {"name": "sam", "model": "vit_b", "checkpoint": None,
                          "checkpoint_sha256": None, "random_weights": True},
            "shards": 2,
            "counts": {"images": 3, "instances": 6, "kept": 4, "rejected": 2,
                       "substituted": 1, "errors": 1, "error_objects": 1,
                       "objects_read": 7},
        },
    )  # fmt: skip
