"""The segmenter interface: images plus prompts in, one mask and its scores per prompt out.

Segmenters know nothing about datasets or outputs. Images are ``(H, W, 3)`` uint8 RGB arrays;
prompts are in the pixel coordinates of their image.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from samrs.core.masks import DeviceMasks, MaskCrop, crops_of, stack


@dataclass(frozen=True)
class PromptSet:
    """The prompts for the objects of one image.

    Attributes:
        mode: the prompt mode that built them (``hbox``, ``rhbox``, ``rbox-mask``, ``point``,
            ``rhbox+point``).
        polygons: (N, 4, 2) float64, each object's polygon (always present: the ``box``
            segmenter, mask prompts, clipping and metrics use it). Float64 so the coordinates
            are exactly the annotated ones: a float32 rounding moves an edge across a pixel
            centre now and then, and the rasterized polygon must equal the one rasterized
            from the manifest's ``polygon`` column.
        boxes: (N, 4) float64 ``xyxy`` box prompts, or None.
        points: (N, 2) float64 positive point prompts ``(x, y)``, or None.
        use_mask_prompt: give SAM the rasterized polygon as a dense mask prompt.
    """

    mode: str
    polygons: np.ndarray
    boxes: np.ndarray | None = None
    points: np.ndarray | None = None
    use_mask_prompt: bool = False

    def __len__(self) -> int:
        return int(self.polygons.shape[0])

    def subset(self, index: Sequence[int] | np.ndarray) -> PromptSet:
        """The prompts at ``index`` (in that order), same mode."""
        idx = np.asarray(index, dtype=np.int64)
        return replace(
            self,
            polygons=self.polygons[idx],
            boxes=None if self.boxes is None else self.boxes[idx],
            points=None if self.points is None else self.points[idx],
        )

    def shifted(self, dx: float, dy: float) -> PromptSet:
        """The same prompts in a frame whose origin is ``(dx, dy)`` here (e.g. a crop)."""
        off = np.asarray([dx, dy], dtype=np.float64)
        return replace(
            self,
            polygons=self.polygons - off,
            boxes=None if self.boxes is None else self.boxes - np.tile(off, 2),
            points=None if self.points is None else self.points - off,
        )

    def enclosing_boxes(self) -> np.ndarray:
        """(N, 4) float64 ``xyxy``: the box prompts, else the polygons' enclosing boxes."""
        if self.boxes is not None:
            return np.asarray(self.boxes, dtype=np.float64)
        pts = np.asarray(self.polygons, dtype=np.float64).reshape(-1, 4, 2)
        return np.concatenate([pts.min(axis=1), pts.max(axis=1)], axis=1)


@dataclass
class MaskSet:
    """Per-prompt results for one image.

    Attributes:
        crops: one :class:`~samrs.core.masks.MaskCrop` per prompt: the mask at full image
            resolution, kept as its bounding-box crop (memory follows the objects' sizes).
        height, width: the image's size.
        scores: (N,) float32 predicted IoU; NaN for segmenters without one.
        stability: (N,) float32 stability score; NaN for segmenters without one.
        device_masks: optional: the same masks still on the segmenter's device (the GPU
            path, when asked for), so that later stages can work there (the RLE stage,
            :func:`samrs.core.rle.encode_masks`); None when absent. Whoever changes the crops
            afterwards must drop them (set None).
        fallback: optional (N,) bool, True where the segmenter could not segment the object
            (e.g. GrabCut on a box of a few pixels) and returned its prompt's mask instead;
            None means no fallback happened.
        fallback_reason: optional, one entry per mask: why the segmenter fell back (e.g.
            ``"empty foreground"``, ``"box smaller than 6 px"``), None where it did not.
            Whoever writes outputs records it next to the mask (the segmenter does not know
            where).
    """

    crops: list[MaskCrop]
    height: int
    width: int
    scores: np.ndarray
    stability: np.ndarray
    device_masks: DeviceMasks | None = None
    fallback: np.ndarray | None = None
    fallback_reason: list[str | None] | None = None

    @classmethod
    def from_masks(
        cls,
        masks: np.ndarray,
        scores: np.ndarray,
        stability: np.ndarray,
        fallback: np.ndarray | None = None,
    ) -> MaskSet:
        """A MaskSet of an (N, H, W) stack of full-image boolean masks."""
        arr = np.asarray(masks, dtype=bool)
        if arr.ndim != 3:
            raise ValueError(f"expected (N, H, W) masks, got shape {arr.shape}")
        height, width = int(arr.shape[1]), int(arr.shape[2])
        return cls(crops_of(arr), height, width, scores, stability, fallback=fallback)

    @property
    def masks(self) -> np.ndarray:
        """(N, H, W) bool full-image masks, built on each access and read-only (N x H x W
        bytes: for tests and small images; the pipeline works on :attr:`crops`, which is
        what a segmenter or wrapper changes)."""
        out = stack(self.crops, self.height, self.width)
        out.flags.writeable = False
        return out

    def __len__(self) -> int:
        return len(self.crops)

    def fell_back(self, i: int) -> str | None:
        """Why mask ``i`` is its prompt's mask instead of a segmentation (None: it is not)."""
        if self.fallback is None or not bool(self.fallback[i]):
            return None
        reason = self.fallback_reason[i] if self.fallback_reason is not None else None
        return reason or "segmenter fell back to the prompt"


def empty_maskset(height: int, width: int) -> MaskSet:
    """A :class:`MaskSet` without masks for an image of this size."""
    return MaskSet(
        crops=[],
        height=int(height),
        width=int(width),
        scores=np.zeros(0, dtype=np.float32),
        stability=np.zeros(0, dtype=np.float32),
    )


def as_rgb(image: np.ndarray) -> np.ndarray:
    """An (H, W, 3) uint8 view or copy of an (H, W), (H, W, 1), (H, W, 3) or (H, W, 4) uint8 image.

    Grey levels are repeated over the three channels and alpha is dropped. Other bit depths
    are the image reader's job (it scales them to 8 bits): they raise ``ValueError`` here.
    """
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        raise ValueError(f"segmenters take uint8 images, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got {arr.shape}")
    if arr.shape[2] == 1:
        return np.repeat(arr, 3, axis=2)
    if arr.shape[2] == 4:
        return np.ascontiguousarray(arr[:, :, :3])
    return arr


class Segmenter(ABC):
    """Turns prompts into masks. Implementations batch and chunk internally."""

    name: str = ""
    prefetches: bool = False
    """Whether :meth:`prefetch` uses its images (callers need not wait for them otherwise)."""

    @abstractmethod
    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        """One :class:`MaskSet` per image, masks in prompt order.

        Results do not depend on how many images are passed together or on chunk sizes.
        """

    def prefetch(self, images: Sequence[np.ndarray]) -> None:
        """A hint: ``images`` (the same arrays, in order) are those of the next
        :meth:`segment` call, which a segmenter may start on before the current call has
        waited for its last results (SAM encodes them then). Results do not change; the
        default ignores it."""
        del images

    def describe(self) -> dict[str, object]:
        """JSON-ready facts recorded in build metadata (model, checkpoint sha256, device...)."""
        return {"segmenter": self.name}
