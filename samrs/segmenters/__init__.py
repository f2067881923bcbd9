"""Segmenters: images plus prompts in, one mask and its scores per prompt out.

- ``sam``: segment-anything (:mod:`.sam`), models ``vit_b``, ``vit_l``, ``vit_h``, ``tiny``.
- ``sam-hq``: HQ-SAM (:mod:`.sam_hq`), same options plus ``hq_token_only``.
- ``box``: the rasterized prompt (:mod:`.classic`), the baseline.
- ``grabcut``: OpenCV GrabCut from the box (:mod:`.classic`), needs no weights.

Any of them can be wrapped by :class:`~.wrappers.SmallObjectZoom` and
:class:`~.wrappers.ClipToPolygon` (``create_segmenter`` does it from its options).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, TypedDict

from samrs.segmenters.base import MaskSet, PromptSet, Segmenter
from samrs.segmenters.checkpoints import (
    CheckpointError,
    CheckpointInfo,
    checkpoint_sha256,
    inspect_checkpoint,
)
from samrs.segmenters.models import MODEL_NAMES, SAM_MODELS

if TYPE_CHECKING:
    from samrs.segmenters.wrappers import ZoomOptions

__all__ = [
    "MODEL_NAMES",
    "SAM_MODELS",
    "SEGMENTERS",
    "CheckpointError",
    "CheckpointInfo",
    "MaskSet",
    "PromptSet",
    "Segmenter",
    "WeightsError",
    "check_weights",
    "checkpoint_sha256",
    "create_segmenter",
    "needs_weights",
    "validate_checkpoint",
]

SEGMENTERS = ("sam", "sam-hq", "box", "grabcut")
_WEIGHTED = ("sam", "sam-hq")


def needs_weights(name: str) -> bool:
    """Whether a segmenter needs a checkpoint (or ``random_weights``)."""
    return name in _WEIGHTED


class WeightsError(CheckpointError, ValueError):
    """Weight options that contradict each other (a checkpoint and random weights) or are
    missing (neither, for a segmenter that needs weights)."""


def check_weights(
    name: str, checkpoint: str | os.PathLike[str] | None, random_weights: bool
) -> None:
    """The one rule for weight options: a segmenter that needs weights (:func:`needs_weights`)
    gets a checkpoint or random weights, not both; the others ignore both.

    Raises:
        WeightsError: both, or neither for ``sam``/``sam-hq`` (the message names the options).
    """
    if not needs_weights(name):
        return
    if checkpoint and random_weights:
        raise WeightsError("give --checkpoint or --random-weights, not both")
    if not checkpoint and not random_weights:
        raise WeightsError(
            f"the {name} segmenter needs weights: pass --checkpoint PATH (e.g. "
            "sam_vit_h_4b8939.pth), or --random-weights for tests; --segmenter grabcut needs "
            "no weights"
        )


def validate_checkpoint(
    name: str,
    *,
    model: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
) -> CheckpointInfo | None:
    """Check the weight options of a segmenter before any work starts.

    Loads the checkpoint's tensors (memory-mapped: fast even for ViT-H) and checks that they
    are a SAM (``sam``) or HQ-SAM (``sam-hq``) state dict of the requested model.

    Returns:
        The checkpoint's facts, or None when no checkpoint is involved.

    Raises:
        ValueError: unknown segmenter or model.
        WeightsError: contradictory or missing weight options (:func:`check_weights`).
        CheckpointError: a missing, unreadable, truncated, foreign or mismatching checkpoint
            (one line naming the path).
    """
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; expected one of {', '.join(SEGMENTERS)}")
    if model is not None and model not in SAM_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(SAM_MODELS)}")
    check_weights(name, checkpoint, random_weights)
    if not needs_weights(name) or checkpoint is None:
        return None
    info, _ = inspect_checkpoint(checkpoint, model, hq=name == "sam-hq")
    return info


class _SamArgs(TypedDict):
    """The :class:`~.sam.SamSegmenter` arguments that :func:`create_segmenter` names."""

    model: str | None
    checkpoint: str | os.PathLike[str] | None
    random_weights: bool
    device: str | None
    seed: int
    batch_size: int
    chunk_size: int
    multimask: bool
    compile: bool
    resize: str


def create_segmenter(
    name: str,
    *,
    model: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = False,
    device: str | None = None,
    seed: int = 0,
    batch_size: int = 4,
    chunk_size: int = 64,
    hq_token_only: bool = False,
    multimask: bool = False,
    compile: bool = False,
    clip_to_rbox: float | None = None,
    small_object_zoom: int | None = None,
    zoom: ZoomOptions | None = None,
    resize: str = "torch",
    **options: Any,
) -> Segmenter:
    """Build a segmenter by name, with its wrappers.

    Args:
        name: one of :data:`SEGMENTERS`.
        model, checkpoint, random_weights, device, batch_size, chunk_size, multimask,
        compile: SAM options (see :class:`~.sam.SamSegmenter`); ignored by ``box``/``grabcut``.
        seed: random-weights seed (SAM) or OpenCV RNG seed (GrabCut).
        hq_token_only: ``sam-hq`` only.
        clip_to_rbox: intersect masks with the polygon dilated by this many pixels.
        small_object_zoom: segment objects smaller than this many pixels on zoomed crops.
        zoom: further :class:`~.wrappers.SmallObjectZoom` settings
            (:class:`~.wrappers.ZoomOptions`: ``crop``, ``factor``, ``zoom_all``, ``border``...);
            ``zoom_all`` zooms every object.
        resize: SAM's input resize, ``torch`` or ``pil`` (see :class:`~.sam.SamSegmenter`).
        **options: extra keyword arguments of the segmenter class (e.g. ``precision``,
            ``attention``, ``keep_device_masks`` for SAM; ``iterations`` for GrabCut).

    Raises:
        ValueError: unknown name or bad option values.
        CheckpointError: weight problems, before any image work.
    """
    if name not in SEGMENTERS:
        raise ValueError(f"unknown segmenter {name!r}; expected one of {', '.join(SEGMENTERS)}")
    if model is not None and model not in SAM_MODELS:
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(SAM_MODELS)}")
    segmenter: Segmenter
    if needs_weights(name):
        sam_args: _SamArgs = {
            "model": model,
            "checkpoint": checkpoint,
            "random_weights": random_weights,
            "device": device,
            "seed": seed,
            "batch_size": batch_size,
            "chunk_size": chunk_size,
            "multimask": multimask,
            "compile": compile,
            "resize": resize,
        }
        if name == "sam":
            from samrs.segmenters.sam import SamSegmenter

            segmenter = SamSegmenter(**sam_args, **options)
        else:
            from samrs.segmenters.sam_hq import SamHQSegmenter

            segmenter = SamHQSegmenter(hq_token_only=hq_token_only, **sam_args, **options)
    elif name == "box":
        from samrs.segmenters.classic import BoxSegmenter

        segmenter = BoxSegmenter()
    elif name == "grabcut":
        from samrs.segmenters.classic import GrabCutSegmenter

        segmenter = GrabCutSegmenter(seed=seed, **options)
    else:  # pragma: no cover - names checked above
        raise AssertionError(name)
    zoom = zoom or {}
    if small_object_zoom or zoom.get("zoom_all"):
        from samrs.segmenters.wrappers import SmallObjectZoom

        segmenter = SmallObjectZoom(
            segmenter,
            int(small_object_zoom) if small_object_zoom else None,
            **zoom,
        )
    if clip_to_rbox is not None:
        from samrs.segmenters.wrappers import ClipToPolygon

        segmenter = ClipToPolygon(segmenter, float(clip_to_rbox))
    return segmenter
