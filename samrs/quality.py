"""Per-instance mask quality metrics, thresholds and the reject policy.

Metrics (one value per mask, see :func:`instance_metrics`):

- ``score``: the segmenter's predicted IoU (NaN for segmenters without one).
- ``stability``: SAM's stability score (NaN for segmenters without one).
- ``rbox_iou``: IoU of the mask with the rasterized object polygon (the rotated box).
- ``inside_fraction``: share of the mask's pixels inside the polygon dilated by
  ``INSIDE_DILATION_PX`` (3) pixels; 0 for an empty mask.
- ``area``: mask pixels.
- ``n_components``: 8-connected components of the mask (0 when empty).

Masks are :class:`~samrs.core.masks.MaskCrop` (the mask's bounding box) and the polygon work
happens on the polygon's bounding window, so the cost follows the objects' sizes.

:func:`judge` gives each instance the first failing reason of ``empty``, ``score``,
``stability``, ``rbox_iou``, ``inside_fraction``, ``area`` (None when kept). NaN metrics never
fail a threshold. The default :class:`QualityThresholds` keep every non-empty mask; a build's
defaults depend on its segmenter (:func:`default_thresholds`): the weight-free ``box`` and
``grabcut`` reject masks with ``rbox_iou < 0.3`` (a blob in a corner of its box) or fewer than
4 pixels (:data:`WEIGHT_FREE_THRESHOLDS`); SAM keeps every non-empty mask (its own scores are
the signal, and the SAMRS recipes filter nothing by default).

:func:`apply_reject_policy`: ``keep-rejected`` keeps the segmenter's mask of a rejected
instance (it stays rejected); ``box`` substitutes the rasterized polygon (the box mask).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypedDict

import cv2
import numpy as np

from samrs.core.masks import MaskCrop, crops_of, polygon_crops, polygon_window_masks

INSIDE_DILATION_PX = 3.0
"""Dilation (pixels) of the polygon within which mask pixels count as inside."""

THRESHOLD_REASONS = {
    "min_score": "low-score",
    "min_stability": "low-stability",
    "min_rbox_iou": "low-rbox-iou",
    "min_inside_fraction": "low-inside-fraction",
    "min_area": "small-area",
}
"""``reject_reason`` written for each threshold (the one place these names are defined)."""


class ThresholdValues(TypedDict, total=False):
    """Some fields of :class:`QualityThresholds`, by name."""

    min_score: float
    min_stability: float
    min_rbox_iou: float
    min_inside_fraction: float
    min_area: int


WEIGHT_FREE_SEGMENTERS = ("box", "grabcut")
WEIGHT_FREE_THRESHOLDS: ThresholdValues = {"min_rbox_iou": 0.3, "min_area": 4}
"""Default gates of the weight-free segmenters (see the module docstring)."""

REJECT_REASONS = ("empty", *THRESHOLD_REASONS.values())
ON_REJECT = ("keep-rejected", "box")
UNIT_METRICS = ("score", "stability", "rbox_iou", "inside_fraction")
"""The per-instance metrics in [0, 1] (score may stray slightly outside for random weights),
in the order reports show them (stats, audit)."""
METRICS = (*UNIT_METRICS, "area", "n_components")


@dataclass(frozen=True)
class QualityThresholds:
    """Minimum values an instance must reach to be kept (conservative: keep all non-empty).

    Attributes:
        min_score: SAM predicted IoU (0 = off).
        min_stability: SAM stability score (0 = off).
        min_rbox_iou: IoU with the rasterized polygon (0 = off).
        min_inside_fraction: share of the mask inside the dilated polygon (0 = off).
        min_area: mask pixels (1 = reject only empty masks, which ``empty`` already does).
    """

    min_score: float = 0.0
    min_stability: float = 0.0
    min_rbox_iou: float = 0.0
    min_inside_fraction: float = 0.0
    min_area: int = 1

    @classmethod
    def from_config(cls, config: Any) -> QualityThresholds:
        """The thresholds of any object with these attribute names (e.g. a BuildConfig);
        missing or None values take the defaults of its ``segmenter`` attribute, if any
        (:func:`default_thresholds`)."""
        defaults = default_thresholds(getattr(config, "segmenter", None))
        values = {
            name: getattr(config, name, None)
            for name in (
                "min_score",
                "min_stability",
                "min_rbox_iou",
                "min_inside_fraction",
                "min_area",
            )
        }
        return replace(defaults, **{k: v for k, v in values.items() if v is not None})


def default_thresholds(segmenter: str | None) -> QualityThresholds:
    """The default thresholds of a build with this segmenter: :data:`WEIGHT_FREE_THRESHOLDS`
    for ``box`` and ``grabcut``, else keep every non-empty mask."""
    if segmenter in WEIGHT_FREE_SEGMENTERS:
        return QualityThresholds(**WEIGHT_FREE_THRESHOLDS)
    return QualityThresholds()


def _components(crop: MaskCrop) -> int:
    """8-connected components of a mask, labelled on its crop (a bool array is read as 0/1
    bytes in place)."""
    if not crop.mask.size:
        return 0
    n, _ = cv2.connectedComponents(crop.mask.view(np.uint8), connectivity=8)
    return int(n) - 1


def as_crops(masks: Sequence[MaskCrop] | np.ndarray) -> list[MaskCrop]:
    """Masks given as crops, or as an (N, H, W) stack of full-image masks, as crops."""
    if isinstance(masks, np.ndarray):
        return crops_of(masks)
    return list(masks)


def instance_metrics(
    masks: Sequence[MaskCrop] | np.ndarray,
    polygons: np.ndarray,
    scores: np.ndarray | None = None,
    stability: np.ndarray | None = None,
    dilation: float = INSIDE_DILATION_PX,
) -> dict[str, np.ndarray]:
    """Metrics of every mask of one image (see the module docstring).

    Args:
        masks: the masks as :class:`~samrs.core.masks.MaskCrop` (or an (N, H, W) bool stack).
        polygons: (N, 8) or (N, 4, 2) polygons in image pixels.
        scores, stability: (N,) from the segmenter (NaN when absent).
        dilation: pixels by which the polygon grows for ``inside_fraction``.

    Returns:
        ``{name: (N,) array}`` for every name of :data:`METRICS` (``area`` and
        ``n_components`` int64, the rest float64), and ``bbox``: (N, 4) float64 COCO boxes
        ``[x, y, w, h]`` of the masks.
    """
    crops = as_crops(masks)
    n = len(crops)
    polys = np.asarray(polygons, dtype=np.float64).reshape(n, 8)
    nan = np.full(n, np.nan)
    area = np.array([c.area for c in crops], dtype=np.int64).reshape(n)
    rbox_iou = np.zeros(n)
    inside = np.zeros(n)
    components = np.zeros(n, dtype=np.int64)
    boxes = np.zeros((n, 4))
    todo = np.flatnonzero(area > 0)
    if todo.size:
        height, width = crops[0].height, crops[0].width
        exact = polygon_window_masks(polys[todo], 0.0, height, width)
        grown = polygon_window_masks(polys[todo], dilation, height, width)
        for i, ((rows, cols), poly), ((drows, dcols), near) in zip(todo, exact, grown, strict=True):
            crop = crops[i]
            boxes[i] = crop.bbox
            inter = np.count_nonzero(crop.on_window(rows, cols) & poly)
            union = area[i] + np.count_nonzero(poly) - inter
            rbox_iou[i] = inter / union if union else 0.0
            inside[i] = np.count_nonzero(crop.on_window(drows, dcols) & near) / area[i]
            components[i] = _components(crop)
    return {
        "score": nan.copy() if scores is None else np.asarray(scores, dtype=np.float64).copy(),
        "stability": nan.copy()
        if stability is None
        else np.asarray(stability, dtype=np.float64).copy(),
        "rbox_iou": rbox_iou,
        "inside_fraction": inside,
        "area": area,
        "n_components": components,
        "bbox": boxes,
    }


def threshold_off(minimum: float | None) -> bool:
    """The one "threshold off" rule: None (not given) or ``<= 0`` (random-weight SAM can
    predict slightly negative IoUs, which must not reject by default)."""
    return minimum is None or minimum <= 0


def fails(values: Any, minimum: float | None) -> np.ndarray:
    """``values < minimum`` elementwise, never for a missing value (None, NaN) and never when
    the threshold is off (:func:`threshold_off`)."""
    v = np.asarray(values, dtype=np.float64)  # None becomes NaN
    if threshold_off(minimum):
        return np.zeros(v.shape, dtype=bool)
    assert minimum is not None  # threshold_off(None) is True
    with np.errstate(invalid="ignore"):
        return ~np.isnan(v) & (v < minimum)


def box_substitutes(polygons: Any, height: int, width: int) -> list[MaskCrop]:
    """The masks the ``box`` reject policy writes for these polygons: each rasterized."""
    return polygon_crops(polygons, 0.0, height, width)


def judge(metrics: dict[str, np.ndarray], thresholds: QualityThresholds) -> list[str | None]:
    """The reject reason of each instance (None: kept), checked in :data:`REJECT_REASONS`
    order; an empty mask is ``empty`` whatever the thresholds."""
    area = np.asarray(metrics["area"])
    checks = [
        ("empty", area <= 0),
        *(
            (
                reason,
                fails(area if name == "min_area" else metrics[name[4:]], getattr(thresholds, name)),
            )
            for name, reason in THRESHOLD_REASONS.items()
        ),
    ]
    reasons: list[str | None] = [None] * len(area)
    for reason, failed in reversed(checks):  # earlier checks overwrite later ones
        for i in np.flatnonzero(failed):
            reasons[i] = reason
    return reasons


def apply_reject_policy(
    masks: Sequence[MaskCrop] | np.ndarray,
    polygons: np.ndarray,
    reasons: Sequence[str | None],
    policy: str,
) -> tuple[list[MaskCrop], np.ndarray]:
    """Masks after the ``on_reject`` policy, and which instances were substituted.

    ``keep-rejected``: masks unchanged. ``box``: each rejected instance's mask is replaced by
    its rasterized polygon.

    Returns:
        ``(crops, substituted)`` with ``substituted`` an (N,) bool array.
    """
    if policy not in ON_REJECT:
        raise ValueError(
            f"unknown on_reject policy {policy!r}; expected one of {', '.join(ON_REJECT)}"
        )
    crops = as_crops(masks)
    n = len(reasons)
    if policy == "keep-rejected":
        return crops, np.zeros(n, dtype=bool)
    substituted = np.array([r is not None for r in reasons], dtype=bool).reshape(n)
    idx = np.flatnonzero(substituted)
    if idx.size:
        polys = np.asarray(polygons, dtype=np.float64).reshape(n, 8)[idx]
        height, width = crops[idx[0]].height, crops[idx[0]].width
        for i, box in zip(idx, box_substitutes(polys, height, width), strict=True):
            crops[i] = box
    return crops, substituted


@dataclass
class FilterResult:
    """The outcome of :func:`apply_filters` for one image.

    Attributes:
        masks: the masks to write (after the reject policy), as crops.
        metrics: :func:`instance_metrics` of the segmenter's masks, except ``area`` and
            ``bbox``, which are those of the mask to write (they differ for substituted
            instances).
        reasons: reject reason per instance, None when kept.
        substituted: (N,) bool, True where the reject policy replaced the mask.
    """

    masks: list[MaskCrop]
    metrics: dict[str, np.ndarray]
    reasons: list[str | None]
    substituted: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))

    @property
    def kept(self) -> np.ndarray:
        """(N,) bool: instances without a reject reason."""
        return np.array([r is None for r in self.reasons], dtype=bool)


def apply_filters(
    masks: Any,
    polygons: np.ndarray,
    thresholds: Any = None,
    on_reject: str | None = None,
    dilation: float = INSIDE_DILATION_PX,
) -> FilterResult:
    """Metrics, verdicts and reject policy for one image's masks.

    Args:
        masks: a :class:`~samrs.segmenters.base.MaskSet` (scores and stability are taken from
            it), a list of :class:`~samrs.core.masks.MaskCrop` or an (N, H, W) bool array.
        polygons: (N, 8) polygons.
        thresholds: :class:`QualityThresholds`, or any object with the same attribute names
            and optionally ``on_reject`` (e.g. a BuildConfig); None: defaults.
        on_reject: the policy; None: ``thresholds.on_reject`` if present, else
            ``keep-rejected``.
        dilation: see :func:`instance_metrics`.
    """
    if hasattr(masks, "crops"):
        crops, scores, stability = list(masks.crops), masks.scores, masks.stability
    else:
        crops, scores, stability = as_crops(masks), None, None
    limits = (
        thresholds
        if isinstance(thresholds, QualityThresholds)
        else QualityThresholds.from_config(thresholds)
    )
    policy = on_reject or getattr(thresholds, "on_reject", None) or "keep-rejected"
    metrics = instance_metrics(crops, polygons, scores, stability, dilation)
    reasons = judge(metrics, limits)
    out, substituted = apply_reject_policy(crops, polygons, reasons, policy)
    for i in np.flatnonzero(substituted):
        metrics["area"][i] = out[i].area
        metrics["bbox"][i] = out[i].bbox
    return FilterResult(out, metrics, reasons, substituted)
