"""Score the masks of a build against ground-truth masks (``samrs evaluate``).

Ground truth is a COCO instances JSON (the ``gt/instances.json`` of ``samrs synth``, iSAID's
JSONs, any COCO file) or an HRSC2016 root, read by :mod:`samrs.sources.hrsc` (colour-coded
masks matched by each object's ``seg_color``).

Matching pairs each generated instance with the ground-truth object it was prompted from,
never by mask overlap alone:

1. GT image: the build image's ``source_file`` (else ``annotation_file`` / ``file_name``) is
   matched to a GT ``file_name`` by relative path, else by the longest common path suffix of
   the same basename, else by the unique file stem. Tiles see the GT mapped into their
   window (``images.window``, scaled when the tile was resized).
2. Object identity: when GT annotations carry ``source_file`` (or ``source_files``) and
   ``source_line`` (any image), or ``source_file`` and ``object_index`` (whole images only:
   tiles number their objects anew), the instance with the same key is taken, provided the
   class agrees and the boxes overlap at all (box IoU >= :data:`IDENTITY_MIN_BOX_IOU`, a
   guard against keys that mean something else).
3. Box overlap: the rest is matched greedily by descending IoU of the instance's ``hbox``
   (clipped to the image) with the GT ``bbox`` (mapped and clipped likewise), within one
   image and one class, at IoU >= ``match_iou`` (default 0.5). Greedy differs from an
   optimal (Hungarian) assignment only where several boxes of a class compete for one object.

Ground truth left unmatched (iSAID labels far more objects than DOTA has boxes) and
instances left unmatched are reported apart: they are not counted as generator misses. GT
images that no build image maps to (another split, say) are not evaluated at all.

Metrics over matched *kept* instances, overall, per class and per size bucket (by GT mask
area in the evaluated frame: small < 32², medium < 96², large): mean IoU, area-weighted IoU
(sum of intersections / sum of unions), boundary IoU with a per-object band
(``band_fraction`` x the GT box diagonal, at least 1 px) and COCO mask AP (pycocotools
COCOeval over the matched pairs, confidence = the SAM score, 1.0 when null; per size with
COCOeval's own area ranges, whose bounds are inclusive). Rejected
instances get their own IoU summary, per reject reason, so filter thresholds can be tuned.
"""

from __future__ import annotations

from samrs.analysis.evaluate.groundtruth import GroundTruth, load_ground_truth
from samrs.analysis.evaluate.matching import evaluate
from samrs.analysis.evaluate.metrics import (
    DEFAULT_BAND_FRACTION,
    DEFAULT_MATCH_IOU,
    SIZE_BUCKETS,
    EvaluationError,
    boundary_iou,
    boundary_region,
    box_iou,
    object_band,
)
from samrs.analysis.evaluate.report import EvaluationResult, InstanceScore, format_result, summarize
from samrs.core.geometry import mask_iou

__all__ = [
    "DEFAULT_BAND_FRACTION",
    "DEFAULT_MATCH_IOU",
    "SIZE_BUCKETS",
    "EvaluationError",
    "EvaluationResult",
    "GroundTruth",
    "InstanceScore",
    "boundary_iou",
    "boundary_region",
    "box_iou",
    "evaluate",
    "format_result",
    "load_ground_truth",
    "mask_iou",
    "object_band",
    "summarize",
]
