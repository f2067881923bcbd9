"""CE + Dice loss with an ignore index (SAMed's 0.2 / 0.8 mix, made to respect 255)."""

from __future__ import annotations

import torch
from torch.nn import functional as F

from samrs.core.classes import UNLABELLED


def ce_dice_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    ce_weight: float = 0.2,
    dice_weight: float = 0.8,
    ignore_index: int = UNLABELLED,
    smooth: float = 1.0,
) -> dict[str, torch.Tensor]:
    """``ce_weight * CE + dice_weight * Dice`` over the pixels whose target is not ignored.

    Ignored pixels contribute nothing, not even through their logits' gradients: their logits
    are replaced by zeros before anything is computed. CE is the mean over valid pixels (0
    when there are none); Dice is ``1 - (2 |P.T| + s) / (|P| + |T| + s)`` per channel over
    the whole batch (softmax probabilities, one-hot targets), averaged over channels.

    Args:
        logits: (B, C, H, W) class logits (any float dtype; computed in float32).
        target: (B, H, W) integer channel indices, ``ignore_index`` where unlabelled.

    Returns:
        ``loss``, ``ce`` and ``dice`` scalars.
    """
    logits = logits.float()
    target = target.long()
    n_classes = logits.shape[1]
    valid = target != ignore_index
    safe_target = torch.where(valid, target, torch.zeros_like(target))
    valid_c = valid.unsqueeze(1)
    logits = torch.where(valid_c, logits, torch.zeros_like(logits))
    ce_map = F.cross_entropy(logits, safe_target, reduction="none")
    n_valid = valid.sum().clamp_min(1)
    ce = torch.where(valid, ce_map, torch.zeros_like(ce_map)).sum() / n_valid
    probs = logits.softmax(dim=1) * valid_c
    onehot = F.one_hot(safe_target, n_classes).permute(0, 3, 1, 2).to(probs.dtype) * valid_c
    dims = (0, 2, 3)
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    dice = (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()
    return {"loss": ce_weight * ce + dice_weight * dice, "ce": ce, "dice": dice}
