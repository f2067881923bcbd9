"""Results of ``samrs evaluate``: per-instance scores, their summaries and the text report."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from samrs.analysis.evaluate.metrics import GOOD_IOU, SIZE_BUCKETS

# --- results --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstanceScore:
    """The score of one matched instance.

    Attributes:
        instance_id, image_id: the build instance.
        class_name: its class (build spelling).
        kept, reject_reason, score: from the build (score None for non-SAM segmenters).
        gt_image, gt_annotation: the matched GT image file name and annotation id (COCO: the
            annotation's ``id``; HRSC2016: its element, ``HRSC_Objects/HRSC_Object[k]``).
        method: ``identity`` or ``box``.
        intersection, union: pixel counts; iou = intersection / union.
        boundary_iou: boundary IoU with band ``band`` pixels.
        gt_area: GT mask pixels in the evaluated frame; size: its bucket.
    """

    instance_id: int
    image_id: str
    class_name: str
    kept: bool
    reject_reason: str | None
    score: float | None
    gt_image: str
    gt_annotation: str
    method: str
    intersection: int
    union: int
    iou: float
    boundary_iou: float
    band: float
    gt_area: int
    size: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return dict(self.__dict__)


def summarize(scores: Sequence[InstanceScore]) -> dict[str, Any]:
    """Count, mean IoU, area-weighted IoU and mean boundary IoU of some instances."""
    n = len(scores)
    inter = sum(s.intersection for s in scores)
    union = sum(s.union for s in scores)
    return {
        "count": n,
        "miou": float(np.mean([s.iou for s in scores])) if n else None,
        "area_iou": inter / union if union else (0.0 if n else None),
        "boundary_iou": float(np.mean([s.boundary_iou for s in scores])) if n else None,
    }


def _size_of(area: int) -> str:
    return next(name for name, limit in SIZE_BUCKETS if area < limit)


@dataclass
class EvaluationResult:
    """Everything ``samrs evaluate`` reports; :meth:`to_dict` is its ``--json`` document."""

    pred: str
    gt: str
    band_fraction: float
    match_iou: float
    scores: list[InstanceScore]
    mask_ap: dict[str, Any]
    unmatched_gt: list[dict[str, Any]]
    unmatched_pred: list[dict[str, Any]]
    gt_images: int
    gt_images_evaluated: int
    gt_crowd: int
    gt_without_mask: int

    @property
    def kept(self) -> list[InstanceScore]:
        """Matched instances the build kept (the ones the main metrics are over)."""
        return [s for s in self.scores if s.kept]

    def to_dict(self, instances: bool = False) -> dict[str, Any]:
        """JSON-ready dict of the result (per-instance scores only when ``instances``)."""
        kept = self.kept
        overall = summarize(kept)
        classes = sorted({s.class_name for s in kept})
        per_class = {}
        for name in classes:
            entry = summarize([s for s in kept if s.class_name == name])
            entry["mask_ap"] = self.mask_ap.get("per_class", {}).get(name)
            per_class[name] = entry
        per_size = {}
        for name, _ in SIZE_BUCKETS:
            entry = summarize([s for s in kept if s.size == name])
            # COCOeval's own area ranges (GT area, bounds inclusive): the same buckets
            entry["mask_ap"] = self.mask_ap.get(f"ap_{name}")
            per_size[name] = entry
        doc: dict[str, Any] = {
            "pred": self.pred,
            "gt": self.gt,
            "settings": {"band_fraction": self.band_fraction, "match_iou": self.match_iou},
            "n_kept": overall["count"],
            "miou": overall["miou"],
            "area_iou": overall["area_iou"],
            "boundary_iou": overall["boundary_iou"],
            "mask_ap": self.mask_ap.get("ap"),
            "mask_ap50": self.mask_ap.get("ap50"),
            "mask_ap75": self.mask_ap.get("ap75"),
            "per_class": per_class,
            "per_size": per_size,
            "matched": len(self.scores),
            "unmatched_gt": len(self.unmatched_gt),
            "unmatched_pred": len(self.unmatched_pred),
            "matching": {
                "by_identity": sum(s.method == "identity" for s in self.scores),
                "by_box": sum(s.method == "box" for s in self.scores),
                "kept": len(kept),
                "rejected": len(self.scores) - len(kept),
                "unmatched_gt_per_class": _count(self.unmatched_gt, "class_name"),
                "unmatched_pred_per_reason": _count(self.unmatched_pred, "reason"),
                "gt_images": self.gt_images,
                "gt_images_evaluated": self.gt_images_evaluated,
                "gt_crowd_ignored": self.gt_crowd,
                "gt_without_mask": self.gt_without_mask,
            },
            "rejected": self._rejected(),
        }
        if instances:
            doc["instances"] = [s.to_dict() for s in self.scores]
            doc["unmatched_gt_objects"] = self.unmatched_gt
            doc["unmatched_pred_instances"] = self.unmatched_pred
        return doc

    def _rejected(self) -> dict[str, Any]:
        kept = self.kept
        rejected = [s for s in self.scores if not s.kept]
        reasons = sorted({s.reject_reason or "unknown" for s in rejected})
        return {
            "count": len(rejected),
            "miou": summarize(rejected)["miou"],
            "kept_miou": summarize(kept)["miou"],
            "per_reason": {
                r: summarize([s for s in rejected if (s.reject_reason or "unknown") == r])
                for r in reasons
            },
            # a filter keeps good masks and rejects bad ones (bad: IoU < GOOD_IOU)
            "good_iou": GOOD_IOU,
            "kept_bad": sum(s.iou < GOOD_IOU for s in kept),
            "rejected_good": sum(s.iou >= GOOD_IOU for s in rejected),
            "rejected_bad": sum(s.iou < GOOD_IOU for s in rejected),
        }


def _count(rows: list[dict[str, Any]], key: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for row in rows:
        out[str(row[key])] = out.get(str(row[key]), 0) + 1
    return dict(sorted(out.items()))


# --- report ---------------------------------------------------------------------------------


def _fmt(value: float | None) -> str:
    return "    -" if value is None else f"{value:5.3f}"


def format_result(doc: dict[str, Any]) -> str:
    """A readable table of an :meth:`EvaluationResult.to_dict` document."""
    m = doc["matching"]
    lines = [
        f"matched {doc['matched']} instances ({m['by_identity']} by identity, {m['by_box']} by "
        f"box; {m['kept']} kept, {m['rejected']} rejected) on {m['gt_images_evaluated']} of "
        f"{m['gt_images']} GT images",
        f"unmatched: {doc['unmatched_gt']} GT objects (not counted as misses), "
        f"{doc['unmatched_pred']} generated instances",
        "",
        f"{'':24} {'n':>6}  {'mIoU':>5}  {'aIoU':>5}  {'bIoU':>5}  {'AP':>5}",
    ]

    def row(label: str, s: dict[str, Any], ap: float | None) -> str:
        return (f"{label[:24]:24} {s['count']:6d}  {_fmt(s['miou'])}  {_fmt(s['area_iou'])}  "
                f"{_fmt(s['boundary_iou'])}  {_fmt(ap)}")  # fmt: skip

    overall = {k: doc[k] for k in ("miou", "area_iou", "boundary_iou")} | {"count": doc["n_kept"]}
    lines.append(row("all (kept)", overall, doc["mask_ap"]))
    for name, s in doc["per_class"].items():
        lines.append(row(f"  {name}", s, s.get("mask_ap")))
    for name, s in doc["per_size"].items():
        lines.append(row(f"  size {name}", s, s.get("mask_ap")))
    rej = doc["rejected"]
    lines.append(row("rejected", {"count": rej["count"], "miou": rej["miou"],
                                  "area_iou": None, "boundary_iou": None}, None))  # fmt: skip
    for reason, s in rej["per_reason"].items():
        lines.append(row(f"  {reason}", s, None))
    lines += [
        "",
        f"mask AP50 {_fmt(doc['mask_ap50'])}  AP75 {_fmt(doc['mask_ap75'])}; boundary band "
        f"{doc['settings']['band_fraction']:g} x box diagonal (>= 1 px)",
        f"filter: {rej['kept_bad']} kept masks with IoU < {rej['good_iou']}, "
        f"{rej['rejected_good']} rejected masks with IoU >= {rej['good_iou']}",
    ]
    unmatched = m["unmatched_gt_per_class"]
    if unmatched:
        lines.append(
            "unmatched GT per class: " + ", ".join(f"{k} {v}" for k, v in unmatched.items())
        )
    reasons = m["unmatched_pred_per_reason"]
    if reasons:
        lines.append("unmatched instances: " + ", ".join(f"{k} {v}" for k, v in reasons.items()))
    return "\n".join(lines)
