"""The segmenter interface: images plus prompts in, one mask and its scores per prompt out.

Segmenters know nothing about datasets or outputs. Images are ``(H, W, 3)`` uint8 RGB arrays;
prompts are in the pixel coordinates of their image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PromptSet:
    """The prompts for the objects of one image.

    Attributes:
        mode: the prompt mode that built them (``hbox``, ``rhbox``, ``rbox-mask``, ``point``,
            ``rhbox+point``).
        polygons: (N, 4, 2) float32, each object's polygon (always present: the ``box``
            segmenter, mask prompts, clipping and metrics use it).
        boxes: (N, 4) float32 ``xyxy`` box prompts, or None.
        points: (N, 2) float32 positive point prompts ``(x, y)``, or None.
        use_mask_prompt: give SAM the rasterized polygon as a dense mask prompt.
    """

    mode: str
    polygons: np.ndarray
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    use_mask_prompt: bool = False

    def __len__(self) -> int:
        return int(self.polygons.shape[0])


@dataclass
class MaskSet:
    """Per-prompt results for one image.

    Attributes:
        masks: (N, H, W) bool, full image resolution.
        scores: (N,) float32 predicted IoU; NaN for segmenters without one.
        stability: (N,) float32 stability score; NaN for segmenters without one.
    """

    masks: np.ndarray
    scores: np.ndarray
    stability: np.ndarray

    def __len__(self) -> int:
        return int(self.masks.shape[0])


class Segmenter(ABC):
    """Turns prompts into masks. Implementations batch and chunk internally."""

    name: str = ""

    @abstractmethod
    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """One :class:`MaskSet` per image, masks in prompt order.

        Results do not depend on how many images are passed together or on chunk sizes.
        """

    def describe(self) -> dict[str, object]:
        """JSON-ready facts recorded in build metadata (model, checkpoint sha256, device...)."""
        return {"segmenter": self.name}
