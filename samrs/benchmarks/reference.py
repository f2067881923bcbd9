"""A faithful re-implementation of the SAMRS reference labelling loop (the baseline).

What the SAMRS generation scripts do, step by step, kept deliberately naive: one process,
one image at a time, ``SamPredictor.set_image`` (batch 1, fp32), ``predict_torch`` on at most
20 boxes per call with ``multimask_output=False``, masks upsampled to full resolution and
copied to the CPU, each mask RLE-encoded on its own with pycocotools, a gray label PNG
(later boxes overwrite earlier ones), a colour PNG and a per-image pickle written.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

if TYPE_CHECKING:
    from segment_anything import SamPredictor
    from segment_anything.modeling import Sam

BOXES_PER_CALL = 20


def run_reference_loop(
    sam: Sam,
    image_paths: Sequence[str | Path],
    boxes: Sequence[np.ndarray],
    class_ids: Sequence[np.ndarray],
    out: str | Path,
    palette: Sequence[int],
    low_res: Callable[[int, int, int, torch.device], torch.Tensor] | None = None,
    replay: bool = False,
) -> int:
    """Label every image like SAMRS did; return the number of masks written.

    Args:
        sam: a segment-anything ``Sam`` model (already on its device, eval mode).
        image_paths: image files.
        boxes: per image, (N, 4) xyxy box prompts in pixels.
        class_ids: per image, (N,) class indices.
        out: folder for ``gray/``, ``color/`` and ``ins/``.
        palette: flat 768-entry palette for the colour PNGs.
        low_res: benchmark only: ``(image, start, stop, device) -> (n, 1, s, s)`` logits
            that replace the decoder's for those boxes (``samrs bench --masks objects``).
        replay: benchmark only: the encoder and decoder do not run (``low_res`` gives the
            logits), so the time is everything else (``host_ms_per_mask``).
    """
    from segment_anything import SamPredictor

    out = Path(out)
    for sub in ("gray", "color", "ins"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    if replay and low_res is None:
        raise ValueError("replay needs the logits to replay (low_res)")
    predictor = SamPredictor(sam)
    encoder = sam.image_encoder
    if replay:
        sam.image_encoder = _NoEncoder(encoder.img_size)
    try:
        return _loop(predictor, image_paths, boxes, class_ids, out, palette, low_res, replay)
    finally:
        sam.image_encoder = encoder


class _NoEncoder(torch.nn.Module):
    """An image encoder that does not run (replay): a 1 x 1 placeholder embedding."""

    def __init__(self, img_size: int) -> None:
        super().__init__()
        self.img_size = img_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.new_zeros((x.shape[0], 1, 1, 1))


def _loop(
    predictor: SamPredictor,
    image_paths: Sequence[str | Path],
    boxes: Sequence[np.ndarray],
    class_ids: Sequence[np.ndarray],
    out: Path,
    palette: Sequence[int],
    low_res: Callable[[int, int, int, torch.device], torch.Tensor] | None,
    replay: bool,
) -> int:
    from PIL import Image

    model = predictor.model
    n_masks = 0
    for index, (path, image_boxes, image_classes) in enumerate(
        zip(image_paths, boxes, class_ids, strict=True)
    ):
        bgr = cv2.imread(str(path))
        if bgr is None:
            raise ValueError(f"{path}: not a readable image")
        image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        height, width = image.shape[:2]
        predictor.set_image(image)
        gray = np.full((height, width), 255, dtype=np.uint8)
        records = []
        for start in range(0, len(image_boxes), BOXES_PER_CALL):
            chunk = torch.as_tensor(
                image_boxes[start : start + BOXES_PER_CALL],
                dtype=torch.float,
                device=predictor.device,
            )
            transformed = predictor.transform.apply_boxes_torch(chunk, (height, width))
            with torch.no_grad():  # SamPredictor.predict_torch, step by step
                if not replay:
                    sparse, dense = model.prompt_encoder(points=None, boxes=transformed, masks=None)
                    low, _scores = model.mask_decoder(
                        image_embeddings=predictor.features,
                        image_pe=model.prompt_encoder.get_dense_pe(),
                        sparse_prompt_embeddings=sparse,
                        dense_prompt_embeddings=dense,
                        multimask_output=False,
                    )
                if low_res is not None:
                    stop = start + len(transformed)
                    low = low_res(index, start, stop, predictor.device)
                masks = model.postprocess_masks(low, predictor.input_size, predictor.original_size)
                masks = masks > model.mask_threshold
            masks_np = masks[:, 0].cpu().numpy()
            for k, mask in enumerate(masks_np):
                rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
                rle["counts"] = rle["counts"].decode("ascii")
                label = int(image_classes[start + k])
                gray[mask] = label
                records.append({"segmentation": rle, "bbox": image_boxes[start + k].tolist(),
                                "category_id": label, "area": int(mask.sum())})  # fmt: skip
                n_masks += 1
        stem = Path(path).stem
        cv2.imwrite(str(out / "gray" / f"{stem}.png"), gray)
        color = Image.fromarray(gray, mode="P")
        color.putpalette(list(palette))
        color.save(out / "color" / f"{stem}.png")
        with open(out / "ins" / f"{stem}.pkl", "wb") as fh:
            pickle.dump(records, fh)
    return n_masks
