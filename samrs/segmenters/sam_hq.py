"""The ``sam-hq`` segmenter: HQ-SAM (``segment-anything-hq``) in the same pipeline as ``sam``.

HQ-SAM adds an HQ output token to SAM's decoder and fuses the output of the encoder's first
global-attention block with the final embedding ("HQ features", computed once per image at
encoding). ``hq_token_only=True`` uses the HQ token's mask alone; False (HQ-SAM's default)
adds the SAM and HQ logits. The predicted IoU is SAM's IoU head (HQ-SAM has no HQ score).
Checkpoints are HQ-SAM state dicts (``sam_hq_vit_{b,l,h}.pth``); the TinyViT ``vit_tiny``
variant is not supported. ``tiny`` builds the same small configuration as ``sam``'s.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from samrs.segmenters.sam import SamSegmenter


class SamHQSegmenter(SamSegmenter):
    """HQ-SAM; the arguments of :class:`~samrs.segmenters.sam.SamSegmenter` plus
    ``hq_token_only``."""

    name = "sam-hq"
    hq = True

    def __init__(
        self,
        model: str | None = None,
        checkpoint: str | os.PathLike[str] | None = None,
        random_weights: bool = False,
        hq_token_only: bool = False,
        **kwargs: Any,
    ) -> None:
        self.hq_token_only = bool(hq_token_only)
        super().__init__(
            model=model, checkpoint=checkpoint, random_weights=random_weights, **kwargs
        )

    def describe(self) -> dict[str, object]:
        """:meth:`SamSegmenter.describe` plus ``hq_token_only``."""
        return {**super().describe(), "hq_token_only": self.hq_token_only}

    def _encode_batch(self, pixels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        emb, interm = self._encoder(pixels)
        dec = self.model.mask_decoder
        vit_features = interm[0].permute(0, 3, 1, 2)
        hq_features = dec.embedding_encoder(emb) + dec.compress_vit_feat(vit_features)
        return emb, hq_features
