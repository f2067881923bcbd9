"""Quality metrics on hand-made masks with known answers, judge reasons, reject policy."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from samrs.benchmarks.run import make_bench_dataset
from samrs.build import worker
from samrs.build.config import BuildConfig
from samrs.cli import main
from samrs.core import rle
from samrs.core.geometry import (
    box_polygon,
    dilated_polygon_mask,
    mask_iou,
    rasterize_polygon,
    rbox_polygon,
)
from samrs.core.masks import MaskCrop, polygon_window_mask
from samrs.outputs.manifest import read_table
from samrs.quality import (
    INSIDE_DILATION_PX,
    QualityThresholds,
    apply_filters,
    apply_reject_policy,
    instance_metrics,
    judge,
)
from samrs.segmenters.base import MaskSet
from samrs.segmenters.classic import BoxSegmenter

H, W = 40, 50
BOX = box_polygon((2, 3, 7, 9))  # 5 x 6 = 30 pixels


def _box_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    m = np.zeros((H, W), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def _metrics(*masks: np.ndarray, polygon=BOX, **kw) -> dict[str, np.ndarray]:
    polys = np.array([polygon] * len(masks), dtype=np.float64)
    return instance_metrics(np.stack(masks), polys, **kw)


def test_exact_mask() -> None:
    m = _metrics(_box_mask(2, 3, 7, 9))
    assert m["area"][0] == 30
    assert m["rbox_iou"][0] == 1.0
    assert m["inside_fraction"][0] == 1.0
    assert m["n_components"][0] == 1
    assert np.isnan(m["score"][0]) and np.isnan(m["stability"][0])


def test_half_mask_and_blob_outside() -> None:
    half = _box_mask(2, 3, 7, 6)  # 15 pixels, all inside
    blob = _box_mask(2, 3, 7, 9) | _box_mask(30, 30, 35, 32)  # 30 inside + 10 far outside
    near = _box_mask(2, 3, 7, 9) | _box_mask(7, 3, 9, 9)  # 12 pixels within 2 px of the box
    m = _metrics(half, blob, near)
    np.testing.assert_allclose(m["rbox_iou"], [0.5, 30 / 40, 30 / 42])
    np.testing.assert_allclose(m["inside_fraction"], [1.0, 30 / 40, 1.0])
    np.testing.assert_array_equal(m["n_components"], [1, 2, 1])
    np.testing.assert_array_equal(m["area"], [15, 40, 42])
    assert INSIDE_DILATION_PX >= 2


def test_empty_mask_and_polygon_outside_image() -> None:
    far = (100.0, 100.0, 110.0, 100.0, 110.0, 110.0, 100.0, 110.0)
    m = instance_metrics(
        np.stack([np.zeros((H, W), bool), _box_mask(0, 0, 3, 3)]),
        np.array([BOX, far]),
        scores=np.array([0.9, 0.8]),
        stability=np.array([0.95, np.nan]),
    )
    np.testing.assert_array_equal(m["area"], [0, 9])
    np.testing.assert_array_equal(m["rbox_iou"], [0, 0])
    np.testing.assert_array_equal(m["inside_fraction"], [0, 0])
    np.testing.assert_array_equal(m["n_components"], [0, 1])
    np.testing.assert_allclose(m["score"], [0.9, 0.8])
    assert judge(m, QualityThresholds()) == ["empty", None]


def test_metrics_match_full_image_computation() -> None:
    """Windowed metrics equal the straightforward full-image formulas on random shapes."""
    rng = np.random.default_rng(7)
    n, h, w = 12, 60, 70
    polys = np.array(
        [
            rbox_polygon(*rng.uniform(-5, 75, 2), *rng.uniform(1, 40, 2), rng.uniform(0, 3))
            for _ in range(n)
        ]
    )
    masks = rng.random((n, h, w)) < rng.uniform(0.001, 0.05, (n, 1, 1))
    for i in range(n):
        masks[i] |= rasterize_polygon(rbox_polygon(*rng.uniform(0, 70, 2), 10, 6, 0.3), h, w)
    masks[0] = False  # empty: zero box, no components
    masks[1, -1, 5] = masks[1, 0, 6] = True  # a run crossing columns (pycocotools' special case)
    m = instance_metrics(masks, polys)
    for i in range(n):
        assert list(m["bbox"][i]) == rle.bbox(rle.encode(masks[i]))
        _, labels = cv2.connectedComponents(masks[i].view(np.uint8), connectivity=8)
        assert m["n_components"][i] == labels.max()
        if i == 0:
            continue
        poly = rasterize_polygon(polys[i], h, w)
        grown = dilated_polygon_mask(polys[i], INSIDE_DILATION_PX, h, w)
        assert m["rbox_iou"][i] == pytest.approx(mask_iou(masks[i], poly))
        assert m["inside_fraction"][i] == pytest.approx((masks[i] & grown).sum() / masks[i].sum())
        (rows, cols), window = polygon_window_mask(polys[i], INSIDE_DILATION_PX, h, w)
        full = np.zeros((h, w), bool)
        full[rows, cols] = window
        np.testing.assert_array_equal(full, grown)


def test_judge_reasons_in_order_and_nan_never_fails() -> None:
    metrics = {
        "score": np.array([np.nan, 0.2, 0.9, 0.9, 0.9, 0.9, 0.9, 0.1]),
        "stability": np.array([np.nan, 0.9, 0.5, 0.9, 0.9, 0.9, 0.9, 0.1]),
        "rbox_iou": np.array([0.9, 0.9, 0.9, 0.1, 0.9, 0.9, 0.9, 0.9]),
        "inside_fraction": np.array([1.0, 1, 1, 1, 0.3, 1, 1, 1]),
        "area": np.array([100, 100, 100, 100, 100, 5, 100, 0]),
        "n_components": np.ones(8, dtype=np.int64),
    }
    limits = QualityThresholds(
        min_score=0.5, min_stability=0.8, min_rbox_iou=0.5, min_inside_fraction=0.8, min_area=10
    )
    assert judge(metrics, limits) == [
        None, "low-score", "low-stability", "low-rbox-iou", "low-inside-fraction", "small-area",
        None, "empty",
    ]  # fmt: skip
    # the defaults keep everything but empty masks
    assert judge(metrics, QualityThresholds()) == [None] * 7 + ["empty"]


def test_reject_policy_box_substitutes_the_polygon() -> None:
    masks = np.stack([_box_mask(2, 3, 4, 4), _box_mask(2, 3, 7, 9)])
    polys = np.array([BOX, BOX])
    out, sub = apply_reject_policy(masks, polys, ["low-rbox-iou", None], "box")
    np.testing.assert_array_equal(sub, [True, False])
    np.testing.assert_array_equal(out[0].full(), rasterize_polygon(BOX, H, W))
    np.testing.assert_array_equal(out[1].full(), masks[1])
    assert masks[0].sum() == 2  # input untouched
    same, sub2 = apply_reject_policy(masks, polys, ["low-rbox-iou", None], "keep-rejected")
    assert not sub2.any()
    np.testing.assert_array_equal([c.full() for c in same], masks)
    with pytest.raises(ValueError, match="on_reject"):
        apply_reject_policy(masks, polys, [None, None], "drop")


def test_substituted_instances_get_the_area_and_box_of_the_box_mask() -> None:
    masks = np.stack([_box_mask(2, 3, 4, 4), _box_mask(2, 3, 7, 9)])
    result = apply_filters(masks, np.array([BOX, BOX]), QualityThresholds(min_area=5), "box")
    np.testing.assert_array_equal(result.substituted, [True, False])
    box = rasterize_polygon(BOX, H, W)
    assert result.metrics["area"][0] == box.sum()
    assert list(result.metrics["bbox"][0]) == rle.bbox(rle.encode(box))
    assert list(result.metrics["bbox"][1]) == rle.bbox(rle.encode(masks[1]))


def test_apply_filters_with_a_build_config() -> None:
    masks = np.stack([_box_mask(2, 3, 4, 4), _box_mask(2, 3, 7, 9), np.zeros((H, W), bool)])
    ms = MaskSet.from_masks(
        masks, np.array([0.9, 0.9, 0.9], np.float32), np.full(3, np.nan, np.float32)
    )
    config = BuildConfig(source="dota", root="r", out="o", min_rbox_iou=0.5, on_reject="box")
    result = apply_filters(ms, np.array([BOX, BOX, BOX]), config)
    assert result.reasons == ["low-rbox-iou", None, "empty"]
    np.testing.assert_array_equal(result.substituted, [True, False, True])
    np.testing.assert_array_equal(result.kept, [False, True, False])
    # metrics describe the segmenter's masks, except the area of the written mask
    assert result.metrics["rbox_iou"][0] == pytest.approx(2 / 30)
    np.testing.assert_array_equal(result.metrics["area"], [30, 30, 30])
    kept = apply_filters(ms, np.array([BOX, BOX, BOX]))
    assert kept.reasons == [None, None, "empty"] and not kept.substituted.any()
    np.testing.assert_array_equal(kept.metrics["area"], [2, 30, 0])


def test_zero_thresholds_are_off_even_for_negative_scores() -> None:
    # random-weight SAM predicts slightly negative IoUs: the default filter must keep them
    metrics = {
        "score": np.array([-0.02, 0.3]),
        "stability": np.array([-0.5, 0.9]),
        "rbox_iou": np.array([0.4, 0.9]),
        "inside_fraction": np.array([0.5, 1.0]),
        "area": np.array([12, 40]),
        "n_components": np.ones(2, dtype=np.int64),
    }
    assert judge(metrics, QualityThresholds()) == [None, None]
    assert judge(metrics, QualityThresholds(min_score=0.1)) == ["low-score", None]


# ----------------------------------------------------------------------------- samrs build


class _Flawed(BoxSegmenter):
    """Box masks, but the first object of each image gets an empty mask and the second a
    predicted IoU of 0.3 (the others 0.9)."""

    def segment(self, images, prompts):  # type: ignore[no-untyped-def]
        out = super().segment(images, prompts)
        for ms in out:
            ms.crops[0] = MaskCrop.empty(ms.height, ms.width)
            ms.scores = np.full(len(ms), 0.9, dtype=np.float32)
            ms.scores[1:2] = 0.3
        return out


@pytest.mark.parametrize("on_reject", ["keep-rejected", "box"])
def test_empty_masks_and_thresholds_through_samrs_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, on_reject: str
) -> None:
    root, out = tmp_path / "dota", tmp_path / "out"
    make_bench_dataset(root, n_images=2, objects_per_image=4, image_size=128, seed=2)
    monkeypatch.setattr(worker, "get_segmenter", lambda config: _Flawed())
    argv = ["-q", "build", "--source", "dota", "--root", str(root), "--out", str(out)]
    argv += ["--segmenter", "box", "--gpus", "0", "--min-score", "0.5", "--on-reject", on_reject]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    rows = read_table(out, "instances").to_pylist()
    images = {r["image_id"]: r for r in read_table(out, "images").to_pylist()}
    assert len(rows) == 8 and read_table(out, "errors").num_rows == 0
    for row in rows:
        image = images[row["image_id"]]
        size = [image["height"], image["width"]]
        mask = rle.decode({"size": size, "counts": row["segmentation"]})
        assert mask.sum() == row["area"]
        polygon = rasterize_polygon(row["polygon"], *size)
        expected = {0: "empty", 1: "low-score"}.get(row["object_index"])
        if expected is None:  # the segmenter's masks (the enclosing box), untouched
            assert row["kept"] and row["reject_reason"] is None and not row["substituted"]
            assert np.array_equal(mask, rasterize_polygon(box_polygon(row["prompt_box"]), *size))
        elif on_reject == "keep-rejected":  # kept as rejected instances with their reason
            assert not row["kept"] and row["reject_reason"] == expected
            assert not row["substituted"]
            if expected == "empty":
                assert row["area"] == 0 and row["bbox"] == [0, 0, 0, 0]
                assert row["n_components"] == 0 and row["rbox_iou"] == 0
        else:  # the rotated box's mask substitutes the rejected one
            assert row["kept"] and row["substituted"] and row["reject_reason"] is None
            assert f"substituted:{expected}" in row["flags"]
            assert np.array_equal(mask, polygon)
    # the semantic labels hold exactly the kept instances
    for image_id, image in images.items():
        size = [image["height"], image["width"]]
        kept = np.zeros(size, dtype=bool)
        for row in rows:
            if row["image_id"] == image_id and row["kept"]:
                kept |= rle.decode({"size": size, "counts": row["segmentation"]})
        label = np.asarray(Image.open(out / image["semantic_file"]))
        assert np.array_equal(label != 255, kept)
        assert image["n_kept"] == (4 if on_reject == "box" else 2)


def test_rejected_objects_are_never_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With --background, a rejected instance's polygon is 255 (ignored) where no kept mask
    covers it, in the build's labels and in labels repainted by the export."""
    root, out = tmp_path / "dota", tmp_path / "out"
    make_bench_dataset(root, n_images=2, objects_per_image=4, image_size=128, seed=2)
    monkeypatch.setattr(worker, "get_segmenter", lambda config: _Flawed())
    argv = ["-q", "build", "--source", "dota", "--root", str(root), "--out", str(out)]
    argv += ["--segmenter", "box", "--gpus", "0", "--min-score", "0.5", "--background"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    rows = read_table(out, "instances").to_pylist()
    images = {r["image_id"]: r for r in read_table(out, "images").to_pylist()}
    assert sum(not r["kept"] for r in rows) == 4
    for image_id, image in images.items():
        size = (image["height"], image["width"])
        kept, rejected = np.zeros(size, bool), np.zeros(size, bool)
        for row in rows:
            if row["image_id"] == image_id:
                if row["kept"]:
                    kept |= rle.decode({"size": list(size), "counts": row["segmentation"]})
                else:
                    rejected |= rasterize_polygon(row["polygon"], *size)
        label = np.asarray(Image.open(out / image["semantic_file"]))
        assert rejected.any() and (rejected & ~kept).any()
        np.testing.assert_array_equal(label == 255, rejected & ~kept)
        np.testing.assert_array_equal(label == 0, ~rejected & ~kept)
    # the export repaints (a stricter threshold) with the same ignore regions
    to = tmp_path / "mmseg"
    argv = ["-q", "export", str(out), "--format", "mmseg", "--to", str(to), "--min-score", "0.4"]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    repainted = sorted((to / "ann_dir").rglob("*.png"))
    assert len(repainted) == 2
    for path in repainted:
        image = images[path.stem]
        np.testing.assert_array_equal(
            np.asarray(Image.open(path)), np.asarray(Image.open(out / image["semantic_file"]))
        )


def test_one_threshold_off_rule_and_box_substitute() -> None:
    from samrs.quality import box_substitutes, fails, threshold_off

    assert threshold_off(None) and threshold_off(0) and threshold_off(-1.0)
    assert not threshold_off(0.1)
    values = [0.2, -0.1, float("nan"), None]
    assert fails(values, 0.0).tolist() == [False] * 4
    assert fails(values, None).tolist() == [False] * 4
    assert fails(values, 0.5).tolist() == [True, True, False, False]
    polygon = [2.0, 3.0, 12.0, 3.0, 12.0, 9.0, 2.0, 9.0]
    (box,) = box_substitutes([polygon], 16, 16)
    np.testing.assert_array_equal(box.full(), MaskCrop.of_polygon(polygon, 0.0, 16, 16).full())
    np.testing.assert_array_equal(box.full(), rasterize_polygon(polygon, 16, 16))
