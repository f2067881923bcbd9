"""Mask quality of a tiny SAM checkpoint on held-out hard synthetic scenes (issue 18).

Scenes: ``samrs.synth.render_scene(format, 1, i, hard=True)`` for DOTA, DIOR and FAIR1M,
``--scenes`` of each (pretraining renders seeds from 10000 on, so these are never seen).
Each row is the mean IoU of every object's mask with its ground-truth mask
(:func:`samrs.pretrain.score_scenes`), over all objects and split at 16 px (the longer side
of the object's box):

- the checkpoint prompted with ``rhbox``, ``rbox-mask`` and ``point``;
- the same with every object zoomed (:class:`~samrs.segmenters.wrappers.SmallObjectZoom`
  with ``zoom_all``): its default crops (4x the object's side, at least 256 px) and crops of
  2x the side, at least 32 px;
- the baselines: the horizontal box and the rotated box themselves (``box`` segmenter) and
  GrabCut;
- the grid ceiling: the ground-truth masks area-averaged onto the model's low-resolution
  mask grid and upsampled back as SAM's postprocessing does, for a 512-px input (``tiny``)
  and a 1024-px one (the big SAMs).

Usage: ``python bench/tiny_quality.py [--checkpoint builtin:tiny] [--scenes 2] > out.json``
(about 5 minutes on 2 CPU cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from samrs.core.geometry import mask_iou
from samrs.core.masks import mask_bbox
from samrs.pretrain import score_scenes
from samrs.segmenters import create_segmenter
from samrs.segmenters.wrappers import SmallObjectZoom
from samrs.synth import render_scene

SMALL = 16  # px: the longer side of an object's box below which it counts as small


def _sides(scenes: list[Any]) -> np.ndarray:
    return np.array([max(mask_bbox(m)[2:]) for s in scenes for m in s.masks])


def _summary(ious: list[float], sides: np.ndarray, seconds: float) -> dict[str, Any]:
    values = np.asarray(ious, dtype=np.float64)
    small = sides < SMALL
    return {
        "objects": int(values.size),
        "mean_iou": round(float(values.mean()), 4),
        "mean_iou_small": round(float(values[small].mean()), 4) if small.any() else None,
        "mean_iou_large": round(float(values[~small].mean()), 4) if (~small).any() else None,
        "seconds": round(seconds, 1),
    }


def grid_ceiling(scenes: list[Any], input_size: int) -> list[float]:
    """IoU of each GT mask after a round trip through the mask grid of a model whose input
    is ``input_size`` px (longest side resized, padded; grid of ``input_size // 4``)."""
    ious = []
    for scene in scenes:
        h, w = scene.masks.shape[1:]
        scale = input_size / max(h, w)
        new_h, new_w = int(h * scale + 0.5), int(w * scale + 0.5)
        low = input_size // 4
        for mask in scene.masks:
            t = torch.from_numpy(mask.astype(np.float32))[None, None]
            t = F.interpolate(t, (new_h, new_w), mode="area")
            t = F.pad(t, (0, input_size - new_w, 0, input_size - new_h))
            logits = F.interpolate(t, (low, low), mode="area") - 0.5
            up = F.interpolate(logits, (input_size, input_size), mode="bilinear")
            up = F.interpolate(up[..., :new_h, :new_w], (h, w), mode="bilinear")
            ious.append(mask_iou(up[0, 0].numpy() > 0, mask))
    return ious


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", default="builtin:tiny")
    parser.add_argument("--scenes", type=int, default=2, help="held-out scenes per format")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scenes = [
        render_scene(fmt, 1, i, hard=True)
        for fmt in ("dota", "dior", "fair1m")
        for i in range(args.scenes)
    ]
    sides = _sides(scenes)
    sam = create_segmenter("sam", model="tiny", checkpoint=args.checkpoint, device="cpu")
    rows: dict[str, Any] = {}

    def measure(name: str, segmenter: Any, mode: str) -> None:
        start = time.perf_counter()
        ious = score_scenes(segmenter, scenes, mode)
        rows[name] = _summary(ious, sides, time.perf_counter() - start)
        print(f"{name}: {rows[name]}", file=sys.stderr, flush=True)

    for mode in ("rhbox", "rbox-mask", "point"):
        measure(f"sam {mode}", sam, mode)
    zooms = {
        "zoom default crops": SmallObjectZoom(sam, None, zoom_all=True),
        "zoom 2x crops": SmallObjectZoom(sam, None, context=2, min_crop=32, zoom_all=True),
    }
    for label, zoom in zooms.items():
        for mode in ("rhbox", "rbox-mask"):
            measure(f"sam {mode} {label}", zoom, mode)
    box = create_segmenter("box")
    measure("box rhbox", box, "rhbox")
    measure("rotated box", box, "rbox-mask")
    measure("grabcut", create_segmenter("grabcut"), "rbox-mask")
    for size in (512, 1024):
        start = time.perf_counter()
        rows[f"grid ceiling {size} px"] = _summary(
            grid_ceiling(scenes, size), sides, time.perf_counter() - start
        )
    doc = {
        "checkpoint": args.checkpoint,
        "scenes": {"formats": ["dota", "dior", "fair1m"], "seed": 1, "per_format": args.scenes},
        "small_px": SMALL,
        "rows": rows,
    }
    print(json.dumps(doc, indent=1))


if __name__ == "__main__":
    main()
