"""Add hand-made images (with chosen masks and metrics) to a fake build as an extra shard.

Used by the audit and show tests to inject a deliberately bad instance, and to get an image
large enough to draw labels on. The rows go through the real manifest writer, so they match
``samrs.outputs.schema`` exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samrs.core import rle
from samrs.core.classes import class_table
from samrs.core.geometry import mask_iou, rasterize_polygon
from samrs.core.records import polygon_hbox
from samrs.outputs.manifest import part_path, write_part
from samrs.outputs.semantic import paint_semantic, semantic_palette, write_semantic_png

TABLE = class_table("dota", "1.0")


@dataclass
class Inst:
    """One instance: its class, rotated box, mask (boolean array) and metrics."""

    class_name: str
    polygon: tuple[float, ...]
    mask: np.ndarray
    score: float | None
    stability: float | None
    kept: bool = True
    reject_reason: str | None = None
    n_components: int = 1
    inside_fraction: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict)


def add_image(
    out: Path,
    image_id: str,
    width: int,
    height: int,
    instances: list[Inst],
    shard: int,
    first_instance_id: int,
    seed: int = 7,
) -> np.ndarray:
    """Write one image (pixels under OUT/images, semantic label, manifest parts of ``shard``).

    Returns:
        The image's pixels (H, W, 3) uint8.
    """
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    (out / "images").mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(out / "images" / f"{image_id}.png")
    rows = []
    for k, inst in enumerate(instances):
        enc = rle.encode(inst.mask)
        hbox = list(polygon_hbox(inst.polygon))
        rows.append(
            {
                "instance_id": first_instance_id + k,
                "image_id": image_id,
                "object_index": k,
                "class_id": TABLE.lookup(inst.class_name),
                "class_name": inst.class_name,
                "difficult": False,
                "truncated": False,
                "polygon": [float(v) for v in inst.polygon],
                "hbox": hbox,
                "prompt": "rhbox",
                "prompt_box": hbox,
                "prompt_point": None,
                "segmentation": enc["counts"],
                "area": int(inst.mask.sum()),
                "bbox": rle.bbox(enc),
                "score": inst.score,
                "stability": inst.stability,
                "rbox_iou": mask_iou(inst.mask, rasterize_polygon(inst.polygon, height, width)),
                "inside_fraction": inst.inside_fraction,
                "n_components": inst.n_components,
                "kept": inst.kept,
                "reject_reason": inst.reject_reason,
                "substituted": False,
                "source_file": f"labelTxt/{image_id}.txt",
                "source_line": k + 1,
                "flags": [],
                **inst.extra,
            }
        )
    kept = [(i, r) for i, r in zip(instances, rows, strict=True) if r["kept"]]
    label = paint_semantic(
        height,
        width,
        [i.mask for i, _ in kept],
        [r["class_id"] for _, r in kept],
        [r["area"] for _, r in kept],
    )
    (out / "semantic").mkdir(parents=True, exist_ok=True)
    write_semantic_png(out / "semantic" / f"{image_id}.png", label, semantic_palette(TABLE))
    image_row = {
        "image_id": image_id, "source": "dota", "version": "1.0", "split": "train",
        "file_name": f"images/{image_id}.png", "source_file": f"images/{image_id}.png",
        "annotation_file": f"labelTxt/{image_id}.txt", "tile_window": None, "width": width,
        "height": height, "gsd": None, "n_objects": len(rows), "n_kept": len(kept),
        "semantic_file": f"semantic/{image_id}.png", "status": "ok" if rows else "empty",
        "crs": None, "transform": None, "shard": shard,
    }  # fmt: skip
    write_part(part_path(out, "instances", shard), "instances", rows)
    write_part(part_path(out, "errors", shard), "errors", [])
    write_part(part_path(out, "images", shard), "images", [image_row])
    return pixels


def box(x0: int, y0: int, x1: int, y1: int) -> tuple[float, ...]:
    """Polygon of a horizontal box."""
    return (x0, y0, x1, y0, x1, y1, x0, y1)


def box_mask(width: int, height: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    """Boolean mask of a horizontal box."""
    m = np.zeros((height, width), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


BAD_ID = 100
"""Instance id of the deliberately bad instance of :func:`add_bad_image`."""


def add_bad_image(out: Path) -> np.ndarray:
    """Image ``Q0009`` (64x64, shard 2): a kept plane whose mask is two specks in its box
    (rbox_iou ~0.005, score 0.05: the worst on every metric), a good plane, and two
    rejected ships (so it is the image with the most rejections)."""
    w = h = 64
    fragment = np.zeros((h, w), dtype=bool)
    fragment[20:22, 20:22] = True
    fragment[30, 30] = True
    return add_image(
        out,
        "Q0009",
        w,
        h,
        [
            Inst("plane", box(8, 8, 40, 40), fragment, 0.05, 0.10, n_components=2,
                 inside_fraction=0.5),
            Inst("plane", box(42, 4, 60, 22), box_mask(w, h, 42, 4, 60, 22), 0.97, 0.98),
            Inst("ship", box(44, 40, 60, 60), box_mask(w, h, 45, 41, 59, 59), 0.40, 0.90,
                 kept=False, reject_reason="low-score"),
            Inst("ship", box(10, 48, 30, 60), box_mask(w, h, 10, 48, 30, 60), 0.45, 0.92,
                 kept=False, reject_reason="low-score"),
        ],
        shard=2,
        first_instance_id=BAD_ID,
    )  # fmt: skip
