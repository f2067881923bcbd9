"""``samrs evaluate``: read the build's predictions, match each instance to the ground-truth
object it was prompted from, score the matched pairs and compute COCO mask AP."""

from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from samrs.analysis.evaluate.groundtruth import (
    GroundTruth,
    _GtImage,
    _GtObject,
    _relative,
    load_ground_truth,
)
from samrs.analysis.evaluate.metrics import (
    DEFAULT_BAND_FRACTION,
    DEFAULT_MATCH_IOU,
    IDENTITY_MIN_BOX_IOU,
    EvaluationError,
    _checked_rle,
    _clipped,
    _encode_placed,
    _into_window,
    _pair,
    _placed_rle,
    _xyxy,
    boundary_iou,
    box_iou,
    object_band,
)
from samrs.analysis.evaluate.report import EvaluationResult, InstanceScore, _size_of
from samrs.core.classes import ClassTable, class_table, normalize_class_name
from samrs.core.masks import MaskCrop

# --- predictions ----------------------------------------------------------------------------


@dataclass
class _PredImage:
    image_id: str
    file_name: str
    source_file: str | None
    annotation_file: str | None
    window: tuple[int, int, int, int] | None
    width: int
    height: int
    instances: list[dict[str, Any]] = field(default_factory=list)


def _read_predictions(out: Path) -> tuple[dict[str, Any], list[_PredImage]]:
    from samrs.outputs.manifest import read_table
    from samrs.outputs.metadata import BuildMetadataError, read_build_metadata

    try:
        meta = read_build_metadata(out)
    except BuildMetadataError as exc:
        raise EvaluationError(str(exc)) from exc
    img_cols = ["image_id", "file_name", "source_file", "annotation_file", "tile_window", "width",
                "height"]  # fmt: skip
    inst_cols = ["instance_id", "image_id", "object_index", "class_name", "hbox",
                 "segmentation", "score", "kept", "reject_reason", "source_file",
                 "source_line"]  # fmt: skip
    images: dict[str, _PredImage] = {}
    for row in read_table(out, "images", columns=img_cols).to_pylist():
        if row["width"] is None or row["height"] is None:
            continue  # an unreadable image (status error): it has no instances
        images[row["image_id"]] = _PredImage(
            row["image_id"], row["file_name"], row["source_file"], row["annotation_file"],
            tuple(row["tile_window"]) if row["tile_window"] is not None else None,
            int(row["width"]), int(row["height"]),
        )  # fmt: skip
    for row in read_table(out, "instances", columns=inst_cols).to_pylist():
        image = images.get(row["image_id"])
        if image is None:
            raise EvaluationError(
                f"{out}: instance {row['instance_id']} refers to image {row['image_id']!r}, "
                "which has no size in the images manifest"
            )
        image.instances.append(row)
    return meta, list(images.values())


def _pred_table(meta: dict[str, Any]) -> ClassTable | None:
    info = meta.get("class_table") or {}
    try:
        return class_table(str(info["source"]), str(info["version"]), str(info["order"]))
    except (KeyError, ValueError):
        pass
    try:
        from samrs.outputs.metadata import build_class_table

        return build_class_table(meta)
    except (KeyError, ValueError):
        return None


class _ClassKeys:
    """Canonical class keys, so that ``Small_Vehicle`` (iSAID) meets ``small-vehicle`` (DOTA)."""

    def __init__(self, table: ClassTable | None) -> None:
        self.tables = [t for t in (table, class_table("isaid")) if t is not None]
        self._memo: dict[str, str] = {}

    def __call__(self, name: str) -> str:
        if name not in self._memo:
            key = normalize_class_name(name)
            for table in self.tables:
                idx = table.lookup(name)
                if idx is not None:
                    key = normalize_class_name(table.names[idx])
                    break
            self._memo[name] = key
        return self._memo[name]


# --- evaluation -----------------------------------------------------------------------------


def evaluate(
    pred_out: str | Path,
    gt: str | Path,
    *,
    band_fraction: float = DEFAULT_BAND_FRACTION,
    match_iou: float = DEFAULT_MATCH_IOU,
    progress: Callable[[int, int], None] | None = None,
) -> EvaluationResult:
    """Score the masks of the build in ``pred_out`` against the ground truth ``gt``.

    Args:
        pred_out: output folder of ``samrs build`` (``samrs.json`` + manifests).
        gt: COCO instances JSON, a ``samrs synth`` folder, or an HRSC2016 root.
        band_fraction: boundary band as a fraction of each GT box diagonal (>= 1 px).
        match_iou: minimum box IoU for matching by box overlap.
        progress: called as ``progress(done, total)`` after each build image.

    Raises:
        EvaluationError: unreadable build folder or ground truth.
    """
    pred_out = Path(pred_out)
    meta, pred_images = _read_predictions(pred_out)
    truth = load_ground_truth(gt)
    root = (meta.get("config") or {}).get("root")
    keys = _ClassKeys(_pred_table(meta))
    for gt_img in truth.images:
        for obj in gt_img.objects:
            obj.class_key = keys(obj.class_name)

    # group build images by GT image (first-appearance order) so GT masks decode once
    groups: dict[int, list[_PredImage]] = {}
    unmatched_pred: list[dict[str, Any]] = []
    for image in pred_images:
        found = truth.find_image(
            [_relative(image.source_file, root), _relative(image.annotation_file, root)]
            + ([] if image.window is not None else [_relative(image.file_name, root)]),
            sorted({_relative(i["source_file"], root) or "" for i in image.instances} - {""}),
        )
        if found is None:
            unmatched_pred += [_unmatched(i, "no GT image") for i in image.instances]
            continue
        groups.setdefault(found.index, []).append(image)

    scores: list[InstanceScore] = []
    ap_frames: list[tuple[_PredImage, list[tuple[InstanceScore, bytes, MaskCrop]]]] = []
    unmatched_gt: list[dict[str, Any]] = []
    total, done = len(pred_images), 0
    for gt_index, images in groups.items():
        gt_image = truth.images[gt_index]
        seen: set[int] = set()
        for image in images:
            pairs, leftover = _match_image(truth, gt_image, image, keys, root, match_iou)
            unmatched_pred += leftover
            frame_pairs = []
            for inst, obj, gt_mask, method in pairs:
                seen.add(obj.index)
                score, counts = _score(inst, obj, gt_image, image, gt_mask, method,
                                       band_fraction)  # fmt: skip
                scores.append(score)
                if score.kept:
                    frame_pairs.append((score, counts, gt_mask))
            ap_frames.append((image, frame_pairs))
            done += 1
            if progress is not None:
                progress(done, total)
        unmatched_gt += [
            {
                "gt_image": gt_image.file_name,
                "gt_annotation": str(obj.ann_id),
                "class_name": obj.class_name,
                "bbox": list(obj.bbox),
            }
            for obj in gt_image.objects
            if obj.index not in seen
        ]
    scores.sort(key=lambda s: s.instance_id)
    unmatched_pred.sort(key=lambda u: u["instance_id"])
    return EvaluationResult(
        pred=str(pred_out),
        gt=str(gt),
        band_fraction=band_fraction,
        match_iou=match_iou,
        scores=scores,
        mask_ap=_mask_ap(ap_frames),
        unmatched_gt=unmatched_gt,
        unmatched_pred=unmatched_pred,
        gt_images=len(truth.images),
        gt_images_evaluated=len(groups),
        gt_crowd=truth.n_crowd,
        gt_without_mask=truth.n_without_mask,
    )


def _unmatched(inst: dict[str, Any], reason: str) -> dict[str, Any]:
    return {
        "instance_id": int(inst["instance_id"]),
        "image_id": inst["image_id"],
        "class_name": inst["class_name"],
        "kept": bool(inst["kept"]),
        "reason": reason,
    }


def _gt_box_in(obj: _GtObject, image: _PredImage) -> tuple[float, float, float, float]:
    """The GT box in the build image's pixels, clipped to it."""
    x0, y0, x1, y1 = obj.bbox
    if image.window is not None:
        wx, wy, ww, wh = image.window
        sx, sy = image.width / ww, image.height / wh
        x0, x1 = (x0 - wx) * sx, (x1 - wx) * sx
        y0, y1 = (y0 - wy) * sy, (y1 - wy) * sy
    return _clip_box((x0, y0, x1, y1), image.width, image.height)


def _clip_box(box: Sequence[float], width: int, height: int) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    return (min(max(x0, 0.0), width), min(max(y0, 0.0), height),
            min(max(x1, 0.0), width), min(max(y1, 0.0), height))  # fmt: skip


def _match_image(
    truth: GroundTruth,
    gt_image: _GtImage,
    image: _PredImage,
    keys: _ClassKeys,
    root: str | None,
    match_iou: float,
) -> tuple[list[tuple[dict[str, Any], _GtObject, MaskCrop, str]], list[dict[str, Any]]]:
    """Pairs (instance, GT object, GT mask in the image frame, method) and unmatched rows."""
    gt_boxes = {obj.index: _gt_box_in(obj, image) for obj in gt_image.objects}
    candidates = [
        obj for obj in gt_image.objects
        if (b := gt_boxes[obj.index])[2] > b[0] and b[3] > b[1]
    ]  # fmt: skip
    by_line = {(f, o.source_line): o for o in candidates if o.source_line is not None
               for f in o.source_files}  # fmt: skip
    by_index = {(f, o.object_index): o for o in candidates if o.object_index is not None
                for f in o.source_files}  # fmt: skip
    taken: set[int] = set()
    chosen: dict[int, tuple[_GtObject, str]] = {}
    pending: list[int] = []
    for k, inst in enumerate(image.instances):
        label = _relative(inst["source_file"], root) or ""
        obj = by_line.get((label, inst["source_line"])) if inst["source_line"] is not None else None
        if obj is None and image.window is None:
            obj = by_index.get((label, inst["object_index"]))
        pbox = _clip_box(inst["hbox"], image.width, image.height)
        if (
            obj is not None
            and obj.index not in taken
            and obj.class_key == keys(inst["class_name"])
            and box_iou(pbox, gt_boxes[obj.index]) >= IDENTITY_MIN_BOX_IOU
        ):
            taken.add(obj.index)
            chosen[k] = (obj, "identity")
        else:
            pending.append(k)
    # greedy box matching of the rest, by descending box IoU, within a class
    edges = []
    for k in pending:
        inst = image.instances[k]
        pbox = _clip_box(inst["hbox"], image.width, image.height)
        ckey = keys(inst["class_name"])
        for obj in candidates:
            if obj.index in taken or obj.class_key != ckey:
                continue
            iou = box_iou(pbox, gt_boxes[obj.index])
            if iou >= match_iou:
                edges.append((-iou, k, obj.index, obj))
    edges.sort(key=lambda e: e[:3])
    for _, k, oi, obj in edges:
        if k in chosen or oi in taken:
            continue
        taken.add(oi)
        chosen[k] = (obj, "box")
    pairs, leftover = [], []
    for k, inst in enumerate(image.instances):
        if k not in chosen:
            leftover.append(_unmatched(inst, "no GT object"))
            continue
        obj, method = chosen[k]
        mask = truth.placed(gt_image, obj)
        if image.window is not None:
            mask = _into_window(mask, image.window, image.width, image.height)
        else:
            mask = _clipped(mask, image.width, image.height)
        pairs.append((inst, obj, mask, method))
    return pairs, leftover


def _score(
    inst: dict[str, Any],
    obj: _GtObject,
    gt_image: _GtImage,
    image: _PredImage,
    gt_mask: MaskCrop,
    method: str,
    band_fraction: float,
) -> tuple[InstanceScore, bytes]:
    try:
        coco_rle = _checked_rle(inst["segmentation"], image.height, image.width)
        pred = _placed_rle(coco_rle)
    except ValueError as exc:
        raise EvaluationError(
            f"instance {inst['instance_id']} (image {image.image_id}): unreadable "
            f"segmentation ({exc}); expected COCO RLE counts of {image.height}x{image.width}"
        ) from exc
    a, b = _pair(pred, gt_mask)
    inter = int(np.count_nonzero(a & b))
    union = int(np.count_nonzero(a | b))
    band = object_band(_xyxy(gt_mask) if gt_mask.mask.size else _gt_box_in(obj, image),
                       band_fraction)  # fmt: skip
    score = inst["score"]
    result = InstanceScore(
        instance_id=int(inst["instance_id"]),
        image_id=image.image_id,
        class_name=inst["class_name"],
        kept=bool(inst["kept"]),
        reject_reason=inst["reject_reason"],
        score=None if score is None or math.isnan(score) else float(score),
        gt_image=gt_image.file_name,
        gt_annotation=str(obj.ann_id),
        method=method,
        intersection=inter,
        union=union,
        iou=inter / union if union else 0.0,
        boundary_iou=boundary_iou(a, b, band) if a.size else 0.0,
        band=band,
        gt_area=gt_mask.area,
        size=_size_of(gt_mask.area),
    )
    return result, coco_rle["counts"]


def _mask_ap(
    frames: list[tuple[_PredImage, list[tuple[InstanceScore, bytes, MaskCrop]]]],
) -> dict[str, Any]:
    """COCO mask AP over matched kept pairs (GT = their objects, detections = their masks)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    classes = sorted({s.class_name for _, pairs in frames for s, _, _ in pairs})
    if not classes:
        return {"ap": None, "ap50": None, "ap75": None, "ap_small": None, "ap_medium": None,
                "ap_large": None, "per_class": {}}  # fmt: skip
    cat_ids = {name: i + 1 for i, name in enumerate(classes)}
    gt_images: list[dict[str, Any]] = []
    gt_anns: list[dict[str, Any]] = []
    dets: list[dict[str, Any]] = []
    for i, (image, pairs) in enumerate(frames):
        if not pairs:
            continue
        gt_images.append({"id": i + 1, "width": image.width, "height": image.height})
        for s, pred, gt_mask in pairs:
            grle = _encode_placed(gt_mask, image.width, image.height)
            gt_anns.append({
                "id": len(gt_anns) + 1, "image_id": i + 1, "category_id": cat_ids[s.class_name],
                "segmentation": grle, "area": float(gt_mask.area), "iscrowd": 0,
                "bbox": [float(v) for v in mask_utils.toBbox(grle)],
            })  # fmt: skip
            drle = {"size": [image.height, image.width], "counts": pred}
            dets.append({
                "image_id": i + 1, "category_id": cat_ids[s.class_name], "segmentation": drle,
                "score": 1.0 if s.score is None else s.score,
            })  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = {
            "images": gt_images,
            "annotations": gt_anns,
            "categories": [{"id": cat_ids[n], "name": n} for n in classes],
        }
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(dets)
        ev = COCOeval(coco_gt, coco_dt, iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    precision = ev.eval["precision"]  # [T, R, K, A, M]
    per_class = {}
    for k, name in enumerate(classes):
        p = precision[:, :, k, 0, -1]
        p = p[p > -1]
        per_class[name] = float(p.mean()) if p.size else None
    stats = [None if v < 0 else float(v) for v in ev.stats]
    return {"ap": stats[0], "ap50": stats[1], "ap75": stats[2], "ap_small": stats[3],
            "ap_medium": stats[4], "ap_large": stats[5], "per_class": per_class}  # fmt: skip
