"""Semantic segmentation metrics: confusion matrix, per-class IoU, mIoU, pixel accuracy."""

from __future__ import annotations

import math
from typing import Any

import torch

from samrs.core.classes import UNLABELLED
from samrs.mesam.data import LabelSpace


class ConfusionMatrix:
    """Pixel counts ``matrix[target, prediction]`` over channels, ignoring target 255."""

    def __init__(self, num_channels: int, device: torch.device | str = "cpu") -> None:
        self.n = num_channels
        self.matrix = torch.zeros((num_channels, num_channels), dtype=torch.int64, device=device)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch: same-shape integer tensors of channel indices."""
        if prediction.shape != target.shape:
            raise ValueError(f"shapes differ: {tuple(prediction.shape)} {tuple(target.shape)}")
        target = target.to(self.matrix.device).long().flatten()
        prediction = prediction.to(self.matrix.device).long().flatten()
        valid = target != UNLABELLED
        idx = target[valid] * self.n + prediction[valid]
        self.matrix += torch.bincount(idx, minlength=self.n * self.n).view(self.n, self.n)

    def report(self, label_space: LabelSpace) -> dict[str, Any]:
        """JSON-ready metrics over ``label_space.scored_channels()`` (NaN -> None).

        IoU of a channel is ``TP / (TP + FP + FN)``; a channel absent from both targets and
        predictions has no IoU and is left out of the mIoU. Pixel accuracy counts every
        non-ignored pixel (a pixel predicted as an unscored channel is wrong).
        """
        m = self.matrix.double().cpu()
        tp = m.diag()
        gt = m.sum(1)
        pred = m.sum(0)
        union = gt + pred - tp
        classes = []
        ious = []
        accs = []
        for c in label_space.scored_channels():
            iou = (tp[c] / union[c]).item() if union[c] > 0 else math.nan
            acc = (tp[c] / gt[c]).item() if gt[c] > 0 else math.nan
            ious.append(iou)
            accs.append(acc)
            classes.append(
                {
                    "channel": c,
                    "id": label_space.dataset_ids[c],
                    "name": label_space.names[c],
                    "iou": _clean(iou),
                    "accuracy": _clean(acc),
                    "gt_pixels": int(gt[c].item()),
                    "pred_pixels": int(pred[c].item()),
                }
            )
        total = m.sum().item()
        return {
            "miou": _clean(_nanmean(ious)),
            "pixel_accuracy": _clean(tp.sum().item() / total if total > 0 else math.nan),
            "mean_accuracy": _clean(_nanmean(accs)),
            "pixels": int(total),
            "classes": classes,
            "confusion_matrix": {
                "rows": "ground truth",
                "columns": "prediction",
                "labels": list(label_space.names),
                "ids": list(label_space.dataset_ids),
                "matrix": [[int(v) for v in row] for row in self.matrix.cpu().tolist()],
            },
        }


def _nanmean(values: list[float]) -> float:
    kept = [v for v in values if not math.isnan(v)]
    return sum(kept) / len(kept) if kept else math.nan


def _clean(value: float) -> float | None:
    return None if math.isnan(value) else float(value)
