"""A faithful re-implementation of the SAMRS reference labelling loop (the baseline).

What the SAMRS generation scripts do, step by step, kept deliberately naive: one process,
one image at a time, ``SamPredictor.set_image`` (batch 1, fp32), ``predict_torch`` on at most
20 boxes per call with ``multimask_output=False``, masks upsampled to full resolution and
copied to the CPU, each mask RLE-encoded on its own with pycocotools, a gray label PNG
(later boxes overwrite earlier ones), a colour PNG and a per-image pickle written.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from pycocotools import mask as mask_utils

BOXES_PER_CALL = 20


def run_reference_loop(
    sam: torch.nn.Module,
    image_paths: Sequence[str | Path],
    boxes: Sequence[np.ndarray],
    class_ids: Sequence[np.ndarray],
    out: str | Path,
    palette: Sequence[int],
) -> int:
    """Label every image like SAMRS did; return the number of masks written.

    Args:
        sam: a segment-anything ``Sam`` model (already on its device, eval mode).
        image_paths: image files.
        boxes: per image, (N, 4) xyxy box prompts in pixels.
        class_ids: per image, (N,) class indices.
        out: folder for ``gray/``, ``color/`` and ``ins/``.
        palette: flat 768-entry palette for the colour PNGs.
    """
    from PIL import Image
    from segment_anything import SamPredictor

    out = Path(out)
    for sub in ("gray", "color", "ins"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    predictor = SamPredictor(sam)
    n_masks = 0
    for path, image_boxes, image_classes in zip(image_paths, boxes, class_ids, strict=True):
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
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
            with torch.no_grad():
                masks, _scores, _ = predictor.predict_torch(
                    point_coords=None, point_labels=None, boxes=transformed, multimask_output=False
                )
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
