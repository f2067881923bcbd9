"""Segmenters on CPU: tiny SAM / HQ-SAM with random weights, box, GrabCut and the wrappers."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from samrs.benchmarks.run import make_bench_dataset
from samrs.cli import main
from samrs.core import rle
from samrs.core.geometry import (
    box_polygon,
    dilated_polygon_mask,
    mask_iou,
    polygon_centroid,
    rasterize_polygon,
)
from samrs.core.imageio import read_image
from samrs.core.masks import MaskCrop
from samrs.core.records import polygon_hbox
from samrs.outputs.manifest import read_table
from samrs.prompts import PROMPT_MODES, build_prompts
from samrs.segmenters import SEGMENTERS, create_segmenter
from samrs.segmenters.base import MaskSet, PromptSet
from samrs.segmenters.classic import BoxSegmenter, GrabCutSegmenter
from samrs.segmenters.postprocess import (
    crops_from_boxes,
    mask_boxes,
    resize_longest_side,
    stability_score,
    upscale_logits,
    upscale_logits_host,
)
from samrs.segmenters.sam import SamSegmenter
from samrs.segmenters.sam_hq import SamHQSegmenter
from samrs.segmenters.wrappers import ClipToPolygon, SmallObjectZoom
from samrs.sources import read_dataset

SIZES = [(600, 600), (500, 900), (800, 800)]


def _scene(seed: int = 0, sizes=SIZES, n: tuple[int, int] = (3, 9)):
    """Noise images of several sizes/aspects with random rotated-box objects."""
    rng = np.random.default_rng(seed)
    images, polygons = [], []
    for h, w in sizes:
        images.append(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        k = int(rng.integers(*n))
        cx, cy = rng.uniform(20, w - 20, k), rng.uniform(20, h - 20, k)
        bw, bh, a = rng.uniform(3, 120, k), rng.uniform(3, 80, k), rng.uniform(0, np.pi, k)
        c, s = np.cos(a), np.sin(a)
        corners = []
        for dx, dy in ((-1, -1), (1, -1), (1, 1), (-1, 1)):
            corners += [
                cx + dx * bw / 2 * c - dy * bh / 2 * s,
                cy + dx * bw / 2 * s + dy * bh / 2 * c,
            ]
        polygons.append(np.stack(corners, axis=1))
    return images, polygons


@pytest.fixture(scope="module")
def scene():
    return _scene()


def _prompts(polygons, mode: str = "rhbox") -> list[PromptSet]:
    return [build_prompts(p, mode) for p in polygons]


def _same(a: list[MaskSet], b: list[MaskSet]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x.masks, y.masks)
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_array_equal(x.stability, y.stability)


# ----------------------------------------------------------------------------- SAM


@pytest.fixture(scope="module")
def sam_reference(scene):
    images, polygons = scene
    seg = create_segmenter("sam", random_weights=True, device="cpu", batch_size=4, chunk_size=64)
    return seg.segment(images, _prompts(polygons))


@pytest.mark.slow
def test_sam_shapes_and_ranges(scene, sam_reference) -> None:
    images, polygons = scene
    for image, poly, ms in zip(images, polygons, sam_reference, strict=True):
        n = len(poly)
        assert ms.masks.shape == (n, *image.shape[:2]) and ms.masks.dtype == bool
        assert ms.scores.shape == (n,) and ms.scores.dtype == np.float32
        assert ms.stability.shape == (n,)
        assert np.all((ms.stability >= 0) & (ms.stability <= 1))
        assert ms.device_masks is None  # nothing is kept on the device unless asked
    assert any(0 < ms.masks.mean() < 1 for ms in sam_reference)


@pytest.mark.slow
def test_sam_is_deterministic_and_batch_chunk_invariant(scene, sam_reference) -> None:
    images, polygons = scene
    prompts = _prompts(polygons)
    for batch_size, chunk_size in [(1, 1), (2, 5)]:
        seg = create_segmenter(
            "sam", random_weights=True, device="cpu", batch_size=batch_size, chunk_size=chunk_size
        )
        _same(seg.segment(images, prompts), sam_reference)
    other = create_segmenter("sam", random_weights=True, seed=1, device="cpu")
    assert not np.array_equal(
        other.segment(images[:1], prompts[:1])[0].scores, sam_reference[0].scores
    )


@pytest.mark.slow
def test_sam_prefetch_encodes_the_next_call_once_and_changes_nothing(scene) -> None:
    """Prefetched images are encoded while the current call waits for its last chunk, and the
    next call reuses those embeddings (same arrays); other arrays are encoded afresh."""
    images, polygons = scene
    prompts = _prompts(polygons)
    seg = SamSegmenter(random_weights=True, device="cpu", batch_size=2, chunk_size=5)
    seg._host_postprocess = False  # the device path, forced on the CPU
    reference = seg.segment(images, prompts)
    encoded: list[int] = []
    encode = seg.encode

    def spy(batch):  # type: ignore[no-untyped-def]
        encoded.append(len(batch))
        return encode(batch)

    seg.encode = spy  # type: ignore[method-assign]
    seg.prefetch(images[2:3])
    first = seg.segment(images[:2], prompts[:2])
    assert encoded == [2, 1]  # this call's batch, then the next call's
    second = seg.segment(images[2:3], prompts[2:3])
    assert encoded == [2, 1]  # reused
    seg.prefetch([images[2].copy()])  # another array: not reused
    third = seg.segment(images[:2], prompts[:2])
    fourth = seg.segment(images[2:3], prompts[2:3])
    assert encoded == [2, 1, 2, 1, 1]
    _same(first + second, reference)
    _same(third + fourth, reference)


def _assert_masks_of(masks: np.ndarray, logits: torch.Tensor) -> None:
    """``masks == logits > 0`` except where the host resize (OpenCV) rounds a logit within
    1e-3 of 0 to the other side."""
    flipped = masks != (logits > 0).numpy()
    assert flipped.mean() < 1e-5
    assert np.abs(logits.numpy()[flipped]).max(initial=0.0) < 1e-3


@pytest.mark.slow
def test_sam_matches_segment_anything_modules(scene) -> None:
    """The batched pipeline equals SAM's own decoder + postprocess_masks on the same input
    (scores exactly, masks up to pixels whose logits are within float rounding of 0)."""
    images, polygons = scene
    image, ps = images[1], build_prompts(polygons[1], "rhbox")
    for multimask in (False, True):
        seg = SamSegmenter(
            random_weights=True, device="cpu", attention="eager", multimask=multimask
        )
        ours = seg.segment([image], [ps])[0]
        m = seg.model
        with torch.inference_mode():
            pixels, (input_size,) = seg.preprocess([image])
            emb = m.image_encoder(pixels)
            h, w = image.shape[:2]
            scale = np.array([input_size[1] / w, input_size[0] / h] * 2)  # ResizeLongestSide
            boxes = torch.as_tensor((ps.boxes * scale).astype(np.float32))
            lows, ious = [], []
            for k in range(len(boxes)):  # one prompt per call, as the pipeline does on the CPU
                sparse, dense = m.prompt_encoder(None, boxes[k : k + 1], None)
                pe = m.prompt_encoder.get_dense_pe()
                low, iou = m.mask_decoder(emb, pe, sparse, dense, multimask)
                lows.append(low)
                ious.append(iou)
            low, iou = torch.cat(lows), torch.cat(ious)
            if multimask:
                best = iou.argmax(1)
                low, iou = low[torch.arange(len(best)), best][:, None], iou.max(1).values[:, None]
            full = m.postprocess_masks(low, input_size, (h, w))[:, 0]
        np.testing.assert_array_equal(ours.scores, iou[:, 0].numpy())
        _assert_masks_of(ours.masks, full)
    # SDPA attention agrees with segment-anything's attention within float tolerance
    sdpa = SamSegmenter(random_weights=True, device="cpu").segment([image], [ps])[0]
    eager = SamSegmenter(random_weights=True, device="cpu", attention="eager").segment(
        [image], [ps]
    )[0]
    np.testing.assert_allclose(sdpa.scores, eager.scores, atol=1e-5)
    assert (sdpa.masks == eager.masks).mean() > 0.9999


@pytest.mark.slow
def test_sam_hq_matches_its_decoder(scene) -> None:
    images, polygons = scene
    image, ps = images[0], build_prompts(polygons[0], "rhbox")
    for hq_token_only in (False, True):
        seg = create_segmenter(
            "sam-hq",
            random_weights=True,
            device="cpu",
            attention="eager",
            hq_token_only=hq_token_only,
        )
        assert isinstance(seg, SamHQSegmenter) and seg.describe()["hq_token_only"] is hq_token_only
        ours = seg.segment([image], [ps])[0]
        m = seg.model
        with torch.inference_mode():
            pixels, (input_size,) = seg.preprocess([image])
            emb, interm = m.image_encoder(pixels)
            h, w = image.shape[:2]
            scale = np.array([input_size[1] / w, input_size[0] / h] * 2)
            boxes = torch.as_tensor((ps.boxes * scale).astype(np.float32))
            lows, ious = [], []
            for k in range(len(boxes)):
                sparse, dense = m.prompt_encoder(None, boxes[k : k + 1], None)
                pe = m.prompt_encoder.get_dense_pe()
                low, iou = m.mask_decoder(emb, pe, sparse, dense, False, hq_token_only, interm)
                lows.append(low)
                ious.append(iou)
            low, iou = torch.cat(lows), torch.cat(ious)
            full = m.postprocess_masks(low, input_size, (h, w))[:, 0]
        np.testing.assert_array_equal(ours.scores, iou[:, 0].numpy())
        _assert_masks_of(ours.masks, full)
    # batch / chunk invariance holds for HQ-SAM too
    images2, polygons2 = _scene(4, sizes=[(300, 400), (256, 256)], n=(2, 5))
    prompts2 = _prompts(polygons2)
    a = create_segmenter("sam-hq", random_weights=True, device="cpu", batch_size=1, chunk_size=1)
    b = create_segmenter("sam-hq", random_weights=True, device="cpu", batch_size=2, chunk_size=3)
    _same(a.segment(images2, prompts2), b.segment(images2, prompts2))


@pytest.mark.slow
@pytest.mark.parametrize("mode", PROMPT_MODES)
def test_sam_runs_every_prompt_mode(scene, mode: str) -> None:
    images, polygons = scene
    seg = create_segmenter("sam", random_weights=True, device="cpu", multimask=mode == "point")
    out = seg.segment(images[:1], [build_prompts(polygons[0], mode)])[0]
    assert out.masks.shape == (len(polygons[0]), *images[0].shape[:2])
    assert np.isfinite(out.scores).all()


def test_sam_prompt_coordinates_and_mask_prompt() -> None:
    seg = SamSegmenter(random_weights=True, device="cpu")
    poly = np.array([[100.0, 50.0, 300.0, 50.0, 300.0, 150.0, 100.0, 150.0]])
    ps = build_prompts(poly, "rbox-mask")
    assert seg.config.image_size == 512  # tiny's input
    t = seg._prompt_tensors(ps, (256, 512), (400, 800))  # scale 0.64 on both axes
    np.testing.assert_allclose(t["boxes"].numpy(), [[64, 32, 192, 96]])
    mask = t["masks"].numpy()[0, 0]  # 128 x 128 grid of the 512 input: 4 input px per cell
    assert mask.shape == (128, 128)
    inside = mask > 0
    np.testing.assert_array_equal(np.flatnonzero(inside.any(axis=0))[[0, -1]], [16, 47])
    np.testing.assert_array_equal(np.flatnonzero(inside.any(axis=1))[[0, -1]], [8, 23])
    pts = seg._prompt_tensors(build_prompts(poly, "point"), (256, 512), (400, 800))["points"]
    np.testing.assert_allclose(pts.numpy(), [[[128, 64]]])


@pytest.mark.slow
def test_sam_grey_rgba_and_empty_inputs() -> None:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (200, 300, 3), dtype=np.uint8)
    poly = np.array([[20.0, 30.0, 120.0, 30.0, 120.0, 90.0, 20.0, 90.0]])
    seg = create_segmenter("sam", random_weights=True, device="cpu")
    grey = seg.segment([rgb[:, :, 0]], [build_prompts(poly, "hbox")])[0]
    grey3 = seg.segment([np.repeat(rgb[:, :, :1], 3, axis=2)], [build_prompts(poly, "hbox")])[0]
    _same([grey], [grey3])
    rgba = np.concatenate([rgb, np.full((200, 300, 1), 7, np.uint8)], axis=2)
    _same(
        seg.segment([rgba], [build_prompts(poly, "hbox")]),
        seg.segment([rgb], [build_prompts(poly, "hbox")]),
    )
    with pytest.raises(ValueError, match="uint8"):
        seg.segment([rgb.astype(np.uint16)], [build_prompts(poly, "hbox")])
    with pytest.raises(ValueError, match="prompt sets"):
        seg.segment([rgb, rgb], [build_prompts(poly, "hbox")])
    # an image without objects is not encoded and gets an empty MaskSet
    calls = []
    original = seg._encode_batch
    seg._encode_batch = lambda pixels: calls.append(pixels.shape[0]) or original(pixels)
    out = seg.segment(
        [rgb, rgb], [build_prompts(np.zeros((0, 8)), "hbox"), build_prompts(poly, "hbox")]
    )
    assert calls == [1]
    assert out[0].masks.shape == (0, 200, 300) and len(out[1]) == 1


@pytest.mark.slow
def test_sam_device_masks_feed_the_rle_stage_and_describe(scene) -> None:
    images, polygons = scene
    seg = create_segmenter(
        "sam", random_weights=True, device="cpu", keep_device_masks=True, chunk_size=4
    )
    assert seg.segment(images[:1], _prompts(polygons[:1]))[0].device_masks is None  # host path
    seg._host_postprocess = False  # the device path, on the CPU
    for ms in seg.segment(images[:2], _prompts(polygons[:2])):
        assert ms.device_masks is not None
        positions = np.concatenate([p for p, _, _ in ms.device_masks.parts])
        np.testing.assert_array_equal(np.sort(positions), np.arange(len(ms)))
        for pos, tensor, ready in ms.device_masks.parts:  # chunks of 4 split an image
            assert ready is None and tensor.shape == (len(pos), ms.height, ms.width)
            np.testing.assert_array_equal(tensor.numpy(), ms.masks[pos])
        assert rle.encode_masks(ms.crops, ms.device_masks) == [rle.encode(m) for m in ms.masks]
    facts = seg.describe()
    assert facts["model"] == "tiny" and facts["random_weights"] is True and facts["seed"] == 0
    assert facts["device"] == "cpu" and facts["dtype"] == "float32"
    json.dumps(facts)


@pytest.mark.slow
def test_sam_host_and_device_postprocessing_agree(scene) -> None:
    """The CPU's per-mask postprocessing gives the values of the device path (run on the
    CPU here), masks, scores, stability and run lengths alike."""
    images, polygons = scene
    host = create_segmenter("sam", random_weights=True, device="cpu", keep_device_masks=True)
    # small chunks: masks of one image span several chunks, each finished one chunk later
    device = create_segmenter(
        "sam", random_weights=True, device="cpu", keep_device_masks=True, chunk_size=3
    )
    device._host_postprocess = False
    a = host.segment(images, _prompts(polygons))
    b = device.segment(images, _prompts(polygons))
    for x, y in zip(a, b, strict=True):  # the resizes round differently (OpenCV / torch)
        assert (x.masks != y.masks).mean() < 1e-5
        np.testing.assert_array_equal(x.scores, y.scores)
        np.testing.assert_allclose(x.stability, y.stability, atol=1e-4)
        assert x.device_masks is None and y.device_masks is not None
        assert rle.encode_masks(x.crops) == [rle.encode(m) for m in x.masks]
        assert rle.encode_masks(y.crops, y.device_masks) == [rle.encode(m) for m in y.masks]


@pytest.mark.slow
def test_sam_model_forward_for_benchmarks() -> None:
    seg = SamSegmenter(random_weights=True, device="cpu", chunk_size=3)
    pixels, _ = seg.preprocess([np.zeros((100, 100, 3), np.uint8)] * 2)
    boxes = torch.tensor([[10.0, 10.0, 200.0, 300.0]] * 4).expand(2, 4, 4)
    low, iou = seg.model_forward(pixels, boxes)
    side = seg.config.low_res_size  # 128 for tiny (512 input)
    assert low.shape == (2, 4, side, side) and iou.shape == (2, 4)
    assert seg.warmup(batch_size=1, n_boxes=2) > 0
    assert seg.compile_seconds is None
    # the CUDA path: one batched encoder call, padded to batch_size for a compiled encoder
    padded = SamSegmenter(random_weights=True, device="cpu", batch_size=3)
    padded._per_sample, padded.compile = False, True
    seen = []
    original = padded._encode_batch
    padded._encode_batch = lambda pixels: seen.append(pixels.shape[0]) or original(pixels)
    emb, _ = padded._run_encoder(pixels)
    assert seen == [3] and emb.shape[0] == 2 and padded.compile_seconds is not None
    ref, _ = seg._run_encoder(pixels)
    torch.testing.assert_close(emb, ref, rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- device helpers


def test_resize_rule_matches_segment_anything() -> None:
    from segment_anything.utils.transforms import ResizeLongestSide

    for h, w in [(600, 800), (500, 900), (1024, 1024), (1100, 1300), (7, 3000)]:
        assert resize_longest_side(h, w, 1024) == ResizeLongestSide.get_preprocess_shape(h, w, 1024)
    assert resize_longest_side(600, 800, 1024) == (768, 1024)


def test_upscale_and_stability_match_segment_anything() -> None:
    from segment_anything.utils.amg import calculate_stability_score

    seg = SamSegmenter(random_weights=True, device="cpu")
    size = seg.config.image_size  # SAM's postprocess_masks upsamples to the encoder's input
    inp = resize_longest_side(500, 900, size)
    low = torch.randn(3, 256, 256) * 4
    ours = upscale_logits(low, size, inp, (500, 900))
    theirs = seg.model.postprocess_masks(low[:, None], inp, (500, 900))[:, 0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for k in range(3):  # the host path (OpenCV) agrees to float rounding
        host = upscale_logits_host(low[k].numpy(), size, inp, (500, 900))
        np.testing.assert_allclose(host, theirs[k].numpy(), rtol=0, atol=1e-3)
    same = upscale_logits_host(low[0].numpy(), 256, (256, 256), (256, 256))
    np.testing.assert_array_equal(same, low[0].numpy())
    torch.testing.assert_close(stability_score(ours), calculate_stability_score(theirs, 0.0, 1.0))
    logits = torch.tensor([[[2.0, 0.5], [-0.5, -3.0]]])  # > 1: 1 pixel, > -1: 3 pixels
    assert stability_score(logits).item() == pytest.approx(1 / 3)
    assert stability_score(torch.full((1, 2, 2), -5.0)).item() == 0.0


def test_crops_from_boxes_equal_host_crops() -> None:
    rng = np.random.default_rng(2)
    masks = rng.random((5, 13, 17)) < 0.1
    masks[0] = False
    masks[1] = True
    masks[3] = rasterize_polygon(box_polygon((2, 3, 9, 11)), 13, 17)
    t = torch.from_numpy(masks)
    crops = crops_from_boxes(t, mask_boxes(t).numpy())
    for crop, m in zip(crops, masks, strict=True):
        expected = MaskCrop.from_full(m)
        assert (crop.x, crop.y, crop.mask.shape) == (expected.x, expected.y, expected.mask.shape)
        np.testing.assert_array_equal(crop.full(), m)
    assert crops_from_boxes(torch.zeros((0, 4, 4), dtype=torch.bool), np.zeros((0, 4))) == []


def test_box_segmenter_rasterizes_the_prompt(scene) -> None:
    images, polygons = scene
    h, w = images[0].shape[:2]
    seg = create_segmenter("box")
    for mode in PROMPT_MODES:
        ps = build_prompts(polygons[0], mode)
        ms = seg.segment(images[:1], [ps])[0]
        assert np.isnan(ms.scores).all() and np.isnan(ms.stability).all()
        for i, poly in enumerate(polygons[0]):
            if mode in ("rbox-mask", "point"):
                want = rasterize_polygon(poly, h, w)
            else:
                want = rasterize_polygon(box_polygon(ps.boxes[i]), h, w)
            np.testing.assert_array_equal(ms.masks[i], want)


def _ellipse_scene(seed: int = 0):
    """Bright ellipses on darker noise, their GT masks and their boxes (one touches a border)."""
    rng = np.random.default_rng(seed)
    h, w = 300, 400
    image = rng.normal(90, 25, (h, w, 3)).clip(0, 255).astype(np.uint8)
    gts, polys = [], []
    for cx, cy, ax, ay, angle in [
        (100, 80, 50, 22, 20),
        (260, 190, 30, 60, 0),
        (380, 250, 30, 20, 0),
    ]:
        m = np.zeros((h, w), np.uint8)
        cv2.ellipse(m, (cx, cy), (ax, ay), angle, 0, 360, 1, -1)
        gt = m.astype(bool)
        image[gt] = rng.normal(180, 20, (gt.sum(), 3)).clip(0, 255).astype(np.uint8)
        ys, xs = np.nonzero(gt)
        gts.append(gt)
        x0, y0, x1, y1 = xs.min(), ys.min(), xs.max() + 1, ys.max() + 1
        polys.append(box_polygon((x0, y0, x1, y1)))
    return image, np.array(gts), np.array(polys, dtype=np.float64)


def test_grabcut_beats_box_on_rendered_ellipses() -> None:
    image, gts, polys = _ellipse_scene()
    ps = build_prompts(polys, "hbox")
    box = BoxSegmenter().segment([image], [ps])[0]
    gc = GrabCutSegmenter().segment([image], [ps])[0]
    box_iou = np.mean([mask_iou(m, g) for m, g in zip(box.masks, gts, strict=True)])
    gc_iou = np.mean([mask_iou(m, g) for m, g in zip(gc.masks, gts, strict=True)])
    assert gc_iou > 0.9 and gc_iou > box_iou + 0.1
    assert not gc.fallback.any()  # the third box touches the right border
    assert (gc.masks & ~box.masks).sum() == 0  # GrabCut never leaves its box
    again = GrabCutSegmenter().segment([image], [ps])[0]
    np.testing.assert_array_equal(again.masks, gc.masks)
    alone = GrabCutSegmenter().segment([image], [ps.subset([2])])[0]
    np.testing.assert_array_equal(alone.masks[0], gc.masks[2])


def test_grabcut_falls_back_on_tiny_and_whole_image_boxes() -> None:
    image, _, _ = _ellipse_scene()
    polys = np.array([box_polygon((10, 10, 13, 30)), box_polygon((0, 0, 400, 300))])
    ps = build_prompts(polys, "hbox")
    gc = GrabCutSegmenter().segment([image], [ps])[0]
    np.testing.assert_array_equal(gc.fallback, [True, True])
    assert gc.fallback_reason == [
        "box smaller than 4 px",
        "too little background around the box to model",
    ]
    assert [gc.fell_back(i) for i in range(2)] == gc.fallback_reason
    np.testing.assert_array_equal(gc.masks, BoxSegmenter().segment([image], [ps])[0].masks)


@pytest.mark.slow
def test_grabcut_beats_box_on_synthetic_data(tmp_path: Path) -> None:
    from samrs.core.imageio import read_image
    from samrs.synth import write_synthetic

    write_synthetic("dior", tmp_path / "dior", n_images=2, seed=0)
    gt = json.loads((tmp_path / "dior" / "gt" / "instances.json").read_text())
    scores: dict[str, list[float]] = {"box": [], "grabcut": []}
    for entry in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == entry["id"]]
        if not anns:
            continue
        pixels = read_image(tmp_path / "dior" / entry["file_name"])
        ps = build_prompts(np.array([a["polygon"] for a in anns]), "hbox")
        for name in scores:
            ms = create_segmenter(name).segment([pixels], [ps])[0]
            truth = [rle.decode(a["segmentation"]) for a in anns]
            scores[name] += [mask_iou(m, t) for m, t in zip(ms.masks, truth, strict=True)]
    assert len(scores["box"]) >= 5
    assert np.mean(scores["grabcut"]) > np.mean(scores["box"]) + 0.2


# ----------------------------------------------------------------------------- wrappers


def test_clip_to_rbox(scene) -> None:
    images, polygons = scene
    h, w = images[0].shape[:2]
    ps = build_prompts(polygons[0], "hbox")
    clipped = ClipToPolygon(BoxSegmenter(), 0).segment(images[:1], [ps])[0]
    grown = create_segmenter("box", clip_to_rbox=2.5).segment(images[:1], [ps])[0]
    boxes = BoxSegmenter().segment(images[:1], [ps])[0]
    for i, poly in enumerate(polygons[0]):
        # the enclosing box contains the polygon: clipping gives the polygon back
        np.testing.assert_array_equal(clipped.masks[i], rasterize_polygon(poly, h, w))
        want = boxes.masks[i] & dilated_polygon_mask(poly, 2.5, h, w)
        np.testing.assert_array_equal(grown.masks[i], want)
    assert create_segmenter("box", clip_to_rbox=1).describe()["clip_to_rbox"] == 1.0


def test_small_object_zoom_plan() -> None:
    zoom = SmallObjectZoom(BoxSegmenter(), threshold=32, context=4, min_crop=100)
    polys = np.array(
        [
            box_polygon((500, 500, 520, 510)),  # small, centre of the image
            box_polygon((540, 520, 550, 530)),  # small, near the first: shares its crop
            box_polygon((2, 3, 22, 13)),  # small, at the corner: crop shifted inside
            box_polygon((100, 600, 400, 700)),  # large
            box_polygon((700, 700, 760, 760)),  # 60 px: not small
        ]
    )
    big, crops = zoom.plan(build_prompts(polys, "hbox"), 1000, 1200)
    assert big == [3, 4]
    assert [c.members for c in crops] == [(0, 1), (2,)]
    assert (crops[0].x, crops[0].y, crops[0].width, crops[0].height) == (460, 455, 100, 100)
    assert (crops[1].x, crops[1].y) == (0, 0)
    # in a small image the crop would cover most of it: no zoom
    assert zoom.plan(build_prompts(polys[:1] / 4, "hbox"), 150, 180)[1] == []


@pytest.mark.slow
def test_small_object_zoom_pastes_back(scene) -> None:
    images, polygons = scene
    prompts = _prompts(polygons, "rbox-mask")
    # with the box segmenter the zoom must not change anything
    _same(
        create_segmenter("box", small_object_zoom=48).segment(images, prompts),
        BoxSegmenter().segment(images, prompts),
    )
    seg = create_segmenter("sam", random_weights=True, device="cpu", small_object_zoom=48)
    assert isinstance(seg, SmallObjectZoom)
    out = seg.segment(images[:2], _prompts(polygons[:2]))
    zoom = SmallObjectZoom(BoxSegmenter(), threshold=48)
    n_crops = 0
    for image, ps, ms in zip(images[:2], _prompts(polygons[:2]), out, strict=True):
        assert ms.masks.shape == (len(ps), *image.shape[:2])
        assert np.isfinite(ms.scores).all()
        _, crops = zoom.plan(ps, *image.shape[:2])
        for crop in crops:
            outside = ms.masks[list(crop.members)].copy()
            outside[:, crop.y : crop.y + crop.height, crop.x : crop.x + crop.width] = False
            assert not outside.any()
        n_crops += len(crops)
    assert n_crops == 2


@pytest.mark.slow
def test_small_object_zoom_keeps_the_encoder_prefetch(scene) -> None:
    """--small-object-zoom forwards the worker's prefetch: the next call's full images are
    encoded at the end of this call (after its crops) and not again; the same masks."""
    images, polygons = scene
    prompts = _prompts(polygons)
    sam = SamSegmenter(random_weights=True, device="cpu", batch_size=2, chunk_size=5)
    zoom = SmallObjectZoom(sam, threshold=48)
    plans = [zoom.plan(ps, *im.shape[:2]) for im, ps in zip(images, prompts, strict=True)]
    assert all(big and crops for big, crops in plans)  # every image: the full image and crops
    assert zoom.prefetches and ClipToPolygon(zoom, 0).prefetches
    assert not SmallObjectZoom(sam, None, zoom_all=True).prefetches  # no full image to encode
    assert not SmallObjectZoom(BoxSegmenter(), 48).prefetches
    reference = zoom.segment(images[:2], prompts[:2]) + zoom.segment(images[2:], prompts[2:])
    encoded: list[list[np.ndarray]] = []
    encode = sam.encode

    def spy(batch):  # type: ignore[no-untyped-def]
        encoded.append(list(batch))
        return encode(batch)

    sam.encode = spy  # type: ignore[method-assign]
    ClipToPolygon(zoom, 1e6).prefetch(images[2:])  # as the worker does, through a wrapper
    first = zoom.segment(images[:2], prompts[:2])
    assert len(encoded[-1]) == 1 and encoded[-1][0] is images[2]  # last: the next call's
    assert len(encoded) > 2  # the full images, then the crops
    n = len(encoded)
    second = zoom.segment(images[2:], prompts[2:])
    assert all(a is not images[2] for batch in encoded[n:] for a in batch)  # reused
    assert len(encoded) > n  # its crops were encoded
    _same(first + second, reference)


def test_create_segmenter_names() -> None:
    assert SEGMENTERS == ("sam", "sam-hq", "box", "grabcut")
    assert create_segmenter("box").name == "box"
    gc = create_segmenter("grabcut", seed=3, iterations=2)
    assert gc.describe() == {**gc.describe(), "segmenter": "grabcut", "seed": 3, "iterations": 2}
    wrapped = create_segmenter("grabcut", small_object_zoom=20, clip_to_rbox=0)
    assert isinstance(wrapped, ClipToPolygon) and isinstance(wrapped.inner, SmallObjectZoom)
    with pytest.raises(ValueError, match="unknown segmenter"):
        create_segmenter("watershed")


# ----------------------------------------------------------------------------- through samrs build


@pytest.fixture(scope="module")
def bench_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two 512-pixel DOTA images with 5 rotated objects each (12 to 85 pixels long)."""
    root = tmp_path_factory.mktemp("data") / "dota"
    make_bench_dataset(root, n_images=2, objects_per_image=5, image_size=512, seed=4)
    return root


def _sam_build(root: Path, out: Path, *args: str) -> list[dict]:
    """``samrs build`` with tiny random-weight SAM on the CPU; its instance rows, in order."""
    argv = ["-q", "build", "--source", "dota", "--root", str(root), "--out", str(out)]
    argv += ["--gpus", "0", "--device", "cpu", "--random-weights", "--model", "tiny"]
    result = CliRunner().invoke(main, [*argv, *args])
    assert result.exit_code == 0, result.output
    assert read_table(out, "errors").num_rows == 0
    return sorted(
        read_table(out, "instances").to_pylist(), key=lambda r: (r["image_id"], r["object_index"])
    )


def _library_inputs(root: Path, mode: str = "rhbox") -> tuple[list[np.ndarray], list[PromptSet]]:
    """The dataset's images (as samrs reads them) and prompts, in image-id order."""
    dataset = read_dataset("dota", root)
    records = sorted(dataset.images, key=lambda im: im.image_id)
    images = [read_image(im.image_path) for im in records]
    polys = [np.array([o.polygon for o in im.objects]).reshape(-1, 8) for im in records]
    return images, [build_prompts(p, mode) for p in polys]


def _same_as_build(rows: list[dict], results: list[MaskSet]) -> None:
    """The build wrote exactly the library's masks and scores."""
    masks = [m for ms in results for m in ms.masks]
    scores = [s for ms in results for s in ms.scores]
    assert len(rows) == len(masks) > 0
    for row, mask, score in zip(rows, masks, scores, strict=True):
        assert row["segmentation"] == rle.encode(mask)["counts"]
        assert row["area"] == int(mask.sum())
        assert row["score"] == pytest.approx(float(score))


@pytest.mark.slow
def test_every_prompt_mode_through_samrs_build(bench_root: Path, tmp_path: Path) -> None:
    seg = create_segmenter("sam", random_weights=True, device="cpu")
    images, _ = _library_inputs(bench_root)
    encoded = seg.encode(images)
    seen = {}
    for mode in PROMPT_MODES:
        rows = _sam_build(bench_root, tmp_path / mode, "--prompt", mode)
        _, prompts = _library_inputs(bench_root, mode)
        _same_as_build(rows, seg.decode(encoded, prompts))
        for row in rows:
            assert row["prompt"] == mode
            box = None if mode == "point" else list(polygon_hbox(row["polygon"]))
            assert row["prompt_box"] == pytest.approx(box)
            if mode in ("point", "rhbox+point"):
                want = polygon_centroid(row["polygon"])
                assert row["prompt_point"] == pytest.approx(list(want), abs=1e-3)
            else:
                assert row["prompt_point"] is None
        seen[mode] = [r["segmentation"] for r in rows]
    assert seen["hbox"] == seen["rhbox"]  # DOTA has no separate horizontal boxes
    assert len({tuple(v) for v in seen.values()}) == 4  # the other modes all differ


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "args", "options"),
    [
        ("sam-hq", [], {}),
        ("sam-hq", ["--hq-token-only"], {"hq_token_only": True}),
        ("sam", ["--multimask"], {"multimask": True}),
        ("sam", ["--clip-to-rbox", "2"], {"clip_to_rbox": 2.0}),
        ("sam", ["--small-object-zoom", "40"], {"small_object_zoom": 40}),
    ],
)
def test_segmenter_options_through_samrs_build(
    bench_root: Path, tmp_path: Path, name: str, args: list[str], options: dict
) -> None:
    rows = _sam_build(bench_root, tmp_path / "out", "--segmenter", name, *args)
    images, prompts = _library_inputs(bench_root)
    seg = create_segmenter(name, random_weights=True, device="cpu", **options)
    results = seg.segment(images, prompts)
    _same_as_build(rows, results)
    meta = json.loads((tmp_path / "out" / "samrs.json").read_text())
    assert meta["segmenter"]["name"] == name and meta["segmenter"]["random_weights"] is True
    assert all(meta["config"][k] == v for k, v in options.items())
    # the option changed the masks (HQ-SAM's own decoder: compared with SAM's)
    other = "sam" if name == "sam-hq" and not options else name
    plain = create_segmenter(other, random_weights=True, device="cpu").segment(images, prompts)
    assert not all(np.array_equal(a.masks, b.masks) for a, b in zip(results, plain, strict=True))
    if "clip_to_rbox" in options:  # every mask lies within its polygon grown by 2 pixels
        assert all(r["inside_fraction"] == 1.0 for r in rows if r["area"])
    if "small_object_zoom" in options:
        zoom = SmallObjectZoom(BoxSegmenter(), threshold=40)
        assert sum(len(zoom.plan(ps, 512, 512)[1]) for ps in prompts) >= 2


@pytest.mark.slow
def test_grey_16bit_and_rgba_images_through_samrs_build(tmp_path: Path) -> None:
    root = tmp_path / "dota"
    make_bench_dataset(root, n_images=3, objects_per_image=3, image_size=256, seed=6)
    files = sorted((root / "train" / "images").glob("*.png"))
    rgb = [cv2.imread(str(f)) for f in files]
    cv2.imwrite(str(files[0]), cv2.cvtColor(rgb[0], cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(files[1]), cv2.cvtColor(rgb[1], cv2.COLOR_BGR2GRAY).astype(np.uint16) * 250)
    cv2.imwrite(str(files[2]), np.dstack([rgb[2], np.full(rgb[2].shape[:2], 9, np.uint8)]))
    modes = [Image.open(f).mode for f in files]
    assert modes in (
        ["L", "I;16", "RGBA"],
        ["L", "I", "RGBA"],
    )  # 16-bit grey: "I" before Pillow 10.3
    rows = _sam_build(root, tmp_path / "out")
    assert read_table(tmp_path / "out", "images").column("status").to_pylist() == ["ok"] * 3
    images, prompts = _library_inputs(root)
    assert all(im.shape == (256, 256, 3) and im.dtype == np.uint8 for im in images)
    assert np.array_equal(images[2], rgb[2][:, :, ::-1])  # alpha dropped, colours kept
    seg = create_segmenter("sam", random_weights=True, device="cpu")
    _same_as_build(rows, seg.segment(images, prompts))
