"""GrabCut on a realistic-looking scene (tests/helpers/grabcut.py): textured background,
roads, a dense harbour row, low-contrast hulls with superstructure, small vehicles, a pier."""

from __future__ import annotations

import numpy as np
import pytest

from samrs.core.geometry import mask_iou
from samrs.prompts import build_prompts
from samrs.quality import apply_filters, default_thresholds
from samrs.segmenters.classic import BoxSegmenter, GrabCutSegmenter
from tests.helpers.grabcut import realistic_scene


@pytest.fixture(scope="module")
def scene():  # type: ignore[no-untyped-def]
    image, objects = realistic_scene()
    polygons = np.array([o.polygon for o in objects], dtype=np.float64).reshape(-1, 8)
    return image, objects, polygons


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["rhbox", "rbox-mask"])
def test_grabcut_segments_most_objects_better_than_the_box(scene, mode: str) -> None:  # type: ignore[no-untyped-def]
    image, objects, polygons = scene
    ps = build_prompts(polygons, mode)
    gc = GrabCutSegmenter().segment([image], [ps])[0]
    box = BoxSegmenter().segment([image], [build_prompts(polygons, "rbox-mask")])[0]
    kinds = [o.kind for o in objects]
    gc_iou = np.array([mask_iou(m, o.mask) for m, o in zip(gc.masks, objects, strict=True)])
    box_iou = np.array([mask_iou(m, o.mask) for m, o in zip(box.masks, objects, strict=True)])
    real = np.array([k not in ("ghost", "speck") for k in kinds])
    better = gc_iou > box_iou + 0.05
    assert better[real].mean() >= 0.8, list(
        zip(kinds, gc_iou.round(3), box_iou.round(3), strict=True)
    )
    assert gc_iou[real].mean() > box_iou[real].mean() + 0.1
    # the dense harbour row (neighbours of the same colour in the context) and the pier
    harbour = [i for i, k in enumerate(kinds) if k == "ship"][4:]
    assert len(harbour) == 5 and (gc_iou[harbour] > 0.9).all()
    assert gc_iou[kinds.index("pier")] > 0.75 > box_iou[kinds.index("pier")]
    # it gives up honestly on the speck (below min_side), and only there
    reasons = dict(zip(kinds, gc.fallback_reason, strict=True))
    assert reasons["speck"] == "box smaller than 4 px"
    assert gc.fallback.sum() == sum(r is not None for r in gc.fallback_reason) == 1
    assert gc.masks[kinds.index("speck")].sum() == box.masks[kinds.index("speck")].sum()


@pytest.mark.slow
def test_default_gates_reject_what_grabcut_gets_wrong(scene) -> None:  # type: ignore[no-untyped-def]
    """The ghost (an annotated object with no contrast) gives a blob; the weight-free
    defaults reject it as low-rbox-iou, and keep every real object."""
    image, objects, polygons = scene
    kinds = [o.kind for o in objects]
    ms = GrabCutSegmenter().segment([image], [build_prompts(polygons, "rhbox")])[0]
    verdict = apply_filters(ms, polygons, default_thresholds("grabcut"))
    reasons = dict(zip(kinds, verdict.reasons, strict=True))
    assert reasons["ghost"] == "low-rbox-iou"
    assert all(r is None for k, r in reasons.items() if k not in ("ghost", "speck"))
    # the SAM defaults keep everything non-empty (unchanged)
    assert all(r is None for r in apply_filters(ms, polygons, default_thresholds("sam")).reasons)
