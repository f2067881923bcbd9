"""Benchmark only: decoder outputs replaced after the real decoder has run.

``samrs bench --masks objects``: with random weights every SAM mask covers most of the
image, unlike real SAM. :class:`DecoderBank` holds one low-resolution logit map per object
of the benchmark dataset, on the model's device: for ``objects``, the ellipse inscribed in
the object's rotated box (the benchmark images draw exactly that ellipse), drawn on the
decoder's grid (256 x 256 for a 1024 px model input) as logits of +/-10. Both loops get
them: the pipeline through :meth:`DecoderBank.install` (the real encoder and decoder run,
then each prompt's logits are replaced by its object's, found on the device by its box, so
nothing waits on the device), the reference loop through :meth:`DecoderBank.reference`, so
everything after the decoder sees object-sized masks.

The same bank also replays recorded decoder outputs (:meth:`DecoderBank.install` with
``record`` then ``replay``): ``host_ms_per_mask`` times both loops with the encoder and
decoder replaced by this replay, on the same masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np
import torch

from samrs.segmenters.base import PromptSet
from samrs.segmenters.postprocess import resize_longest_side
from samrs.segmenters.sam import SamSegmenter

MASKS = ("model", "objects")
OBJECT_LOGIT = 10.0


def inscribed_ellipse(
    polygon: np.ndarray,
) -> tuple[tuple[float, float], tuple[float, float], float]:
    """OpenCV ``((cx, cy), (w, h), angle)`` of the ellipse inscribed in a rotated box given
    by its 4 corners (in order), as ``cv2.ellipse`` draws it."""
    p = np.asarray(polygon, dtype=np.float64).reshape(4, 2)
    centre = p.mean(axis=0)
    side_w, side_h = p[1] - p[0], p[2] - p[1]
    angle = math.degrees(math.atan2(side_w[1], side_w[0]))
    return (
        (float(centre[0]), float(centre[1])),
        (float(np.hypot(*side_w)), float(np.hypot(*side_h))),
        angle,
    )


class DecoderBank:
    """Per-object low-resolution logits (and scores) on the model's device.

    Args:
        sam: the pipeline's SAM segmenter (its device, input size and prompt transform).
        prompts: per image, the pipeline's prompts (the keys: their model-input boxes).
        sizes: per image, ``(height, width)``.
    """

    def __init__(
        self, sam: SamSegmenter, prompts: Sequence[PromptSet], sizes: Sequence[tuple[int, int]]
    ) -> None:
        self.sam = sam
        self.sizes = list(sizes)
        self.prompts = list(prompts)
        self.offsets = np.cumsum([0] + [len(p) for p in prompts])
        keys = []
        for ps, size in zip(prompts, sizes, strict=True):
            input_size = resize_longest_side(*size, sam.config.image_size)
            boxes = sam._prompt_tensors(ps, input_size, size)["boxes"]
            if boxes is None:
                raise ValueError("--masks objects needs box prompts")
            keys.append(boxes)
        self.keys = torch.cat(keys).to(sam.device)
        low = sam.config.low_res_size
        n = int(self.offsets[-1])
        self.logits = torch.zeros((n, low, low), dtype=torch.bfloat16, device=sam.device)
        self.scores = torch.zeros(n, dtype=torch.float32, device=sam.device)
        self._saved: dict[str, Any] = {}

    def fill_objects(self) -> None:
        """Every object's inscribed ellipse on the decoder's grid, as +/-10 logits."""
        low = self.sam.config.low_res_size
        factor = self.sam.config.image_size / low
        grids = []
        for ps, size in zip(self.prompts, self.sizes, strict=True):
            scale = resize_longest_side(*size, self.sam.config.image_size)[0] / size[0]
            for polygon in np.asarray(ps.polygons, dtype=np.float64).reshape(-1, 8):
                (cx, cy), (w, h), angle = inscribed_ellipse(polygon)
                grid = np.zeros((low, low), dtype=np.uint8)
                # pixel centres: (c + 0.5) * scale / factor - 0.5 on the decoder's grid
                centre = ((cx + 0.5) * scale / factor - 0.5, (cy + 0.5) * scale / factor - 0.5)
                axes = (w * scale / factor, h * scale / factor)
                cv2.ellipse(grid, (centre, axes, angle), (1,), -1)
                grids.append(grid)
        stacked = np.stack(grids) if grids else np.zeros((0, low, low), np.uint8)
        logits = np.where(stacked > 0, OBJECT_LOGIT, -OBJECT_LOGIT).astype(np.float32)
        self.logits.copy_(torch.from_numpy(logits))

    def _lookup(self, boxes: torch.Tensor) -> torch.Tensor:
        """Bank rows of prompts given by their model-input boxes (on the device, no sync)."""
        distance = (boxes[:, None, :].float() - self.keys[None]).abs().sum(dim=2)
        return distance.argmin(dim=1)

    def install(self, mode: str) -> None:
        """Patch the pipeline's SAM instance (benchmark only; :meth:`uninstall` undoes it).

        ``objects``: the real decoder runs, its logits are replaced by the bank's (its
        scores are stored in the bank).
        ``record``: the real decoder runs and its logits and scores are stored in the bank.
        ``replay``: encoder and decoder do not run; the bank's logits and scores are returned.
        """
        sam = self.sam
        decode = SamSegmenter._decode_chunk.__get__(sam)
        encode = SamSegmenter._run_encoder.__get__(sam)

        def decode_chunk(embeddings, hq, image_index, boxes, points, masks):
            rows = self._lookup(boxes)
            if mode == "replay":
                return self.logits[rows].float(), self.scores[rows]
            low, scores = decode(embeddings, hq, image_index, boxes, points, masks)
            self.scores[rows] = scores.float()
            if mode == "record":
                self.logits[rows] = low.to(self.logits.dtype)
                return low, scores
            return self.logits[rows].to(low.dtype), scores

        def run_encoder(pixels):
            return pixels.new_zeros((pixels.shape[0], 1, 1, 1)), None

        self.uninstall()
        self._saved = {"_decode_chunk": decode_chunk}
        sam._decode_chunk = decode_chunk  # type: ignore[method-assign]  # benchmark double; uninstall() pops it
        if mode == "replay":
            sam._run_encoder = run_encoder  # type: ignore[method-assign]  # benchmark double
            self._saved["_run_encoder"] = encode

    def uninstall(self) -> None:
        """Undo :meth:`install`."""
        for name in self._saved:
            self.sam.__dict__.pop(name, None)
        self._saved = {}

    def reference(self, image: int, start: int, stop: int, device: Any) -> torch.Tensor:
        """(n, 1, s, s) float32 logits of objects ``start:stop`` of ``image`` for the
        reference loop (its own device)."""
        a = int(self.offsets[image])
        return self.logits[a + start : a + stop, None].float().to(device)
