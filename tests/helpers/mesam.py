"""A small ``samrs build`` output with learnable labels, for the MeSAM tests.

``make_seg_build(out, ...)`` writes ``samrs.json`` (DOTA 1.0 class table, a resolved
``BuildConfig``), one images-manifest part, RGB images and palettized semantic PNGs through the
project's own writers. Every image shows red squares (``plane``) and blue discs (``ship``) on
a grey noisy background; a label marks them with their class ids (shifted by one with
``background=True``, where non-object pixels are 0), other pixels 255. The manifest also has
one ``status = error`` row without a label, which readers must skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from samrs import __version__
from samrs.build.config import BuildConfig
from samrs.core.classes import UNLABELLED, class_table
from samrs.outputs.manifest import part_path, write_part
from samrs.outputs.metadata import write_build_metadata
from samrs.outputs.schema import MANIFEST_VERSION
from samrs.outputs.semantic import semantic_palette, write_semantic_png

TABLE = class_table("dota", "1.0")
PLANE = TABLE.lookup("plane")
SHIP = TABLE.lookup("ship")


def synthetic_pair(size: int, seed: int, background: bool) -> tuple[np.ndarray, np.ndarray]:
    """One (H, W, 3) image and its (H, W) label."""
    rng = np.random.default_rng(seed)
    image = rng.integers(90, 140, (size, size, 3), dtype=np.uint8)
    label = np.full((size, size), 0 if background else UNLABELLED, dtype=np.uint8)
    shift = 1 if background else 0
    yy, xx = np.mgrid[:size, :size]
    for k in range(3):
        side = int(rng.integers(size // 6, size // 3))
        y, x = (int(v) for v in rng.integers(0, size - side, 2))
        if k % 2 == 0:
            image[y : y + side, x : x + side] = (220, 40, 40)
            label[y : y + side, x : x + side] = PLANE + shift
        else:
            r = side / 2
            disc = (yy - y - r) ** 2 + (xx - x - r) ** 2 <= r * r
            image[disc] = (40, 60, 220)
            label[disc] = SHIP + shift
    return image, label


def make_seg_build(
    out: Path,
    n_train: int = 4,
    n_val: int = 2,
    size: int = 64,
    background: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """Write the build; returns facts tests can assert (ids, splits, paths)."""
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "semantic").mkdir(parents=True, exist_ok=True)
    config = BuildConfig(source="dota", root=str(out), out=str(out), version="1.0",
                         segmenter="sam", model="vit_b", random_weights=True,
                         background=background)  # fmt: skip
    palette = semantic_palette(TABLE, background=background)
    rows = []
    ids = []
    for i in range(n_train + n_val):
        iid = f"S{i:04d}"
        split = "train" if i < n_train else "val"
        image, label = synthetic_pair(size, seed * 1000 + i, background)
        Image.fromarray(image).save(out / "images" / f"{iid}.png")
        write_semantic_png(out / "semantic" / f"{iid}.png", label, palette)
        ids.append(iid)
        rows.append(_row(iid, split, f"images/{iid}.png", size, f"semantic/{iid}.png", "ok"))
    rows.append(_row("Z_broken", "train", "images/missing.png", None, None, "error"))
    write_part(part_path(out, "images", 0), "images", rows)
    write_build_metadata(
        out,
        {
            "tool": "samrs",
            "tool_version": __version__,
            "manifest_version": MANIFEST_VERSION,
            "source": {"name": "dota", "version": "1.0", "root": str(out)},
            "config": config.to_dict(),
            "config_fingerprint": config.fingerprint(),
            "class_table": TABLE.to_dict(),
        },
    )
    return {
        "ids": ids,
        "train": ids[:n_train],
        "val": ids[n_train:],
        "palette": palette,
        "background": background,
    }


def _row(
    iid: str, split: str, file_name: str, size: int | None, semantic: str | None, status: str
) -> dict[str, Any]:
    return {
        "image_id": iid, "source": "dota", "version": "1.0", "split": split,
        "file_name": file_name, "source_file": file_name, "annotation_file": None,
        "tile_window": None, "width": size, "height": size, "gsd": None,
        "n_objects": 3 if status == "ok" else 0, "n_kept": 3 if status == "ok" else 0,
        "semantic_file": semantic, "status": status, "crs": None, "transform": None,
        "shard": 0,
    }  # fmt: skip
