"""Render one image of a build: semantic label overlay, instance outlines, boxes, class names.

Kept (and box-substituted) instances are outlined in a light version of their class colour,
with their rotated box and class name; rejected instances get a red box and their reason.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from samrs.analysis.render import (
    MASK_ALPHA,
    Canvas,
    RenderError,
    blend,
    bright,
    decode_mask,
    label_class_mask,
    label_colors,
    mask_contours,
    read_region,
    resolve_path,
    save_png,
    text_color,
)
from samrs.errors import SamrsError
from samrs.outputs.manifest import iter_batches, read_table
from samrs.outputs.metadata import build_class_table, build_config, read_build_metadata
from samrs.outputs.semantic import read_semantic_png

SHOW_DIR = "show"
REJECTED_COLOR = (255, 60, 60)


class ImageNotFoundError(SamrsError, LookupError):
    """The build has no image with that id (the message lists some that exist)."""


def find_image(out: str | Path, image_id: str) -> dict[str, Any]:
    """The images-manifest row of ``image_id``.

    Raises:
        ImageNotFoundError: no such image; the message suggests similar or existing ids.
    """
    out = Path(out)
    rows = read_table(out, "images", filter=pc.field("image_id") == image_id).to_pylist()
    if rows:
        return rows[0]
    ids: list[str] = []
    for batch in iter_batches(out, "images", columns=["image_id"], batch_size=65536):
        ids.extend(batch.column("image_id").to_pylist())
    if not ids:
        raise ImageNotFoundError(f"{out} has no images (is it the output folder of `samrs build`?)")
    close = [i for i in ids if image_id.lower() in i.lower()][:5]
    if not close and len(ids) <= 200_000:
        close = difflib.get_close_matches(image_id, ids, n=5, cutoff=0.5)
    listed = close or sorted(ids)[:5]
    kind = "similar ids" if close else "existing ids"
    raise ImageNotFoundError(
        f"no image {image_id!r} in {out} ({len(ids):,} images); {kind}: {', '.join(listed)}"
    )


def render_image(
    out: str | Path,
    image_id: str,
    alpha: float = MASK_ALPHA,
    rejected: bool = True,
) -> np.ndarray:
    """One image of a build with its labels drawn on it, as (H, W, 3) uint8 RGB.

    Args:
        out: the build folder.
        image_id: the image (see the images manifest).
        alpha: opacity of the semantic label overlay.
        rejected: also draw rejected instances (red box, reason).

    Raises:
        ImageNotFoundError: unknown ``image_id``.
        RenderError: the image's pixels or label cannot be read.
    """
    out = Path(out)
    meta = read_build_metadata(out)
    table = build_class_table(meta)
    config = build_config(meta)
    background = bool(config.get("background", False))
    image = find_image(out, image_id)
    if image["status"] == "error":
        errors = read_table(
            out, "errors", columns=["stage", "message"], filter=pc.field("image_id") == image_id
        ).to_pylist()
        why = "; ".join(f"{e['stage']}: {e['message']}" for e in errors) or "see the errors table"
        raise RenderError(f"image {image_id} failed in the build, nothing to show ({why})")
    if image["width"] is None or image["height"] is None:
        raise RenderError(
            f"image {image_id} has no size in the manifest (status {image['status']})"
        )
    height, width = int(image["height"]), int(image["width"])
    rgb = read_region(out, image, None, config.get("root"))

    if image.get("semantic_file"):
        path = resolve_path(out, image["semantic_file"])
        if not path.is_file():
            raise RenderError(f"{path}: semantic label of {image_id} not found")
        label = read_semantic_png(path)
        if label.shape != (height, width):
            raise RenderError(
                f"{path}: label is {label.shape[1]}x{label.shape[0]}, image {width}x{height}"
            )
        colors = label_colors(table, background)
        blend(rgb, label_class_mask(label, len(table), background), colors[label], alpha)

    instances = read_table(out, "instances", filter=pc.field("image_id") == image_id).to_pylist()
    instances.sort(key=lambda r: (r["object_index"], r["instance_id"]))
    side = min(height, width)
    line = max(1, round(side / 400))
    text = int(min(max(side / 60, 10), 28))
    canvas = Canvas(rgb)
    usable = [r for r in instances if r["kept"] or r["substituted"]]
    for row in usable:
        x0, y0, x1, y1 = _instance_box(row)
        mask = decode_mask(row["segmentation"], height, width, (x0, y0, x1, y1))
        color = bright(_class_color(table, row))
        canvas.contours(
            [c + np.array([max(x0, 0), max(y0, 0)]) for c in mask_contours(mask)], color, line
        )
        canvas.polygon(row["polygon"], color, line, halo=True)
    if rejected:
        for row in instances:
            if not (row["kept"] or row["substituted"]):
                canvas.polygon(row["polygon"], REJECTED_COLOR, line, halo=True)
    # names last, so no outline covers them
    for row in instances:
        ok = row["kept"] or row["substituted"]
        if not ok and not rejected:
            continue
        pts = np.asarray(row["polygon"], dtype=np.float64).reshape(-1, 2)
        top = pts[np.lexsort((pts[:, 0], pts[:, 1]))[0]]
        name = (
            row["class_name"] if ok else f"{row['class_name']} (rejected: {row['reject_reason']})"
        )
        fill = bright(_class_color(table, row)) if ok else REJECTED_COLOR
        canvas.label(top, name, color=text_color(fill), size=text, background=fill, avoid=True)
    return canvas.array()


def _class_color(table: Any, row: dict[str, Any]) -> tuple[int, int, int]:
    cid = int(row["class_id"])
    return table.palette[cid] if 0 <= cid < len(table) else (255, 255, 255)


def _instance_box(row: dict[str, Any]) -> tuple[int, int, int, int]:
    """A region holding the instance's mask and box (x0, y0, x1, y1), one pixel wider."""
    xs = [row["hbox"][0], row["hbox"][2]]
    ys = [row["hbox"][1], row["hbox"][3]]
    if row.get("bbox") and row["area"] > 0:
        bx, by, bw, bh = row["bbox"]
        xs += [bx, bx + bw]
        ys += [by, by + bh]
    return (
        math.floor(min(xs)) - 1,
        math.floor(min(ys)) - 1,
        math.ceil(max(xs)) + 1,
        math.ceil(max(ys)) + 1,
    )


def show(out: str | Path, image_id: str, to: str | Path | None = None, **options: Any) -> Path:
    """Render ``image_id`` (see :func:`render_image`) to a PNG; default ``OUT/show/<id>.png``."""
    path = Path(to) if to is not None else Path(out) / SHOW_DIR / f"{image_id}.png"
    return save_png(render_image(out, image_id, **options), path)
