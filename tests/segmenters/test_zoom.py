"""The zoom wrapper's ROS-SAM rules (fixed centred crops, zero padding, 2x bicubic, paste back),
SAM's PIL-exact input resize, and the build presets (``--preset samrs``, ``--preset ros-sam``)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from click.testing import CliRunner

from samrs.benchmarks.run import make_bench_dataset
from samrs.build.config import PRESETS, preset_options
from samrs.cli import main
from samrs.core.geometry import box_polygon
from samrs.prompts import build_prompts
from samrs.segmenters import create_segmenter
from samrs.segmenters.base import MaskSet, PromptSet, Segmenter
from samrs.segmenters.classic import BoxSegmenter
from samrs.segmenters.wrappers import SmallObjectZoom

ROS = {"crop": 64, "factor": 2.0, "zoom_all": True, "border": "pad"}


class Recording(Segmenter):
    """The box segmenter, remembering the images and prompts it was given."""

    name = "box"

    def __init__(self, inner: Segmenter | None = None) -> None:
        self.inner = inner or BoxSegmenter()
        self.images: list[np.ndarray] = []
        self.prompts: list[PromptSet] = []
        self.results: list[MaskSet] = []

    def segment(self, images: Sequence[np.ndarray], prompts: Sequence[PromptSet]) -> list[MaskSet]:
        self.images += [np.array(i) for i in images]
        self.prompts += list(prompts)
        out = self.inner.segment(images, prompts)
        self.results += out
        return out


def scene() -> tuple[np.ndarray, PromptSet]:
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    boxes = [
        (50.0, 40.0, 70.0, 52.0),  # inside
        (2.0, 3.0, 14.0, 11.0),  # at the top-left corner: its crop leaves the image
        (90.0, 70.0, 119.0, 99.0),  # large, at the bottom-right corner
    ]
    return image, build_prompts(np.array([box_polygon(b) for b in boxes]), "hbox")


def ros_crop(image: np.ndarray, box: np.ndarray, p: int) -> tuple[np.ndarray, int, int]:
    """ROS-SAM's crop_images for one box: the window [max(int(c - p//2), 0),
    min(int(c + p//2), size)) per axis, zero-padded at the bottom / right to p x p."""
    h, w = image.shape[:2]
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    sx, sy = max(int(cx - p // 2), 0), max(int(cy - p // 2), 0)
    ex, ey = min(int(cx + p // 2), w), min(int(cy + p // 2), h)
    cut = image[sy:ey, sx:ex]
    return np.pad(cut, ((0, p - cut.shape[0]), (0, p - cut.shape[1]), (0, 0))), sx, sy


def bicubic2x(image: np.ndarray) -> np.ndarray:
    """torch bicubic 2x as ROS-SAM (float), clamped, truncated to uint8."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(image).permute(2, 0, 1)[None].float()
    t = F.interpolate(t, scale_factor=2, mode="bicubic", align_corners=False)
    return np.trunc(t[0].permute(1, 2, 0).clamp(0, 255).numpy()).astype(np.uint8)


def pasted(small: np.ndarray, sx: int, sy: int, shape: tuple[int, int]) -> np.ndarray:
    """ROS-SAM's reconstruct_image for one mask: [start, min(start + p, size)) per axis."""
    h, w = shape
    p = small.shape[0]
    out = np.zeros(shape, dtype=bool)
    ex, ey = min(sx + p, w), min(sy + p, h)
    out[sy:ey, sx:ex] = small[: ey - sy, : ex - sx]
    return out


def test_ros_sam_plan_is_one_centred_crop_per_object():
    image, prompts = scene()
    zoom = SmallObjectZoom(BoxSegmenter(), None, **ROS)
    big, crops = zoom.plan(prompts, *image.shape[:2])
    assert big == []  # every object, even the large one
    # centre (60, 46): window 28..92 x 14..78; (8, 7): truncated to 0..40 x 0..39;
    # (104.5, 84.5): 72..120 x 52..100 (the image ends)
    assert [(c.x, c.y, c.width, c.height, c.members, c.content) for c in crops] == [
        (28, 14, 64, 64, (0,), (64, 64)),
        (0, 0, 64, 64, (1,), (40, 39)),
        (72, 52, 64, 64, (2,), (48, 48)),
    ]
    # samrs's default rules shift crops inside the image and leave large objects alone
    shifted = SmallObjectZoom(BoxSegmenter(), 25, crop=48)
    big, crops = shifted.plan(prompts, *image.shape[:2])
    assert big == [2] and all(c.x >= 0 and c.y >= 0 for c in crops)


def test_ros_sam_geometry_crop_resize_paste():
    image, prompts = scene()
    rec = Recording()
    zoom = SmallObjectZoom(rec, None, **ROS)
    out = zoom.segment([image], [prompts])[0]
    _, crops = zoom.plan(prompts, *image.shape[:2])
    assert len(rec.images) == 3
    for crop, seen, ps, res in zip(crops, rec.images, rec.prompts, rec.results, strict=True):
        (i,) = crop.members
        box = prompts.boxes[i]
        canvas, sx, sy = ros_crop(image, box, 64)
        # the segmenter sees ROS-SAM's crop upsampled 2x bicubic
        assert seen.shape == (128, 128, 3) and seen.dtype == np.uint8
        np.testing.assert_array_equal(seen, bicubic2x(canvas))
        # boxes shifted, clipped to the crop, doubled
        want_box = np.clip(box - [sx, sy, sx, sy], 0, 64) * 2
        np.testing.assert_allclose(ps.boxes[0], want_box)
        np.testing.assert_allclose(ps.polygons[0], (prompts.polygons[i] - [sx, sy]) * 2)
        # pasted back: 2x2 block means >= 0.5, over [start, min(start + 64, size))
        big = res.crops[0].full()
        small = big.reshape(64, 2, 64, 2).mean(axis=(1, 3)) >= 0.5
        np.testing.assert_array_equal(out.crops[i].full(), pasted(small, sx, sy, (100, 120)))
        assert out.crops[i].area > 0
    # the box segmenter's mask survives the round trip (the geometry lines up)
    direct = BoxSegmenter().segment([image], [prompts])[0]
    for i in range(3):
        np.testing.assert_array_equal(out.crops[i].full(), direct.crops[i].full())


@pytest.mark.slow
def test_ros_sam_rules_with_the_tiny_random_sam():
    image, prompts = scene()
    sam = create_segmenter("sam", model="tiny", random_weights=True, device="cpu", seed=1)
    wrapped = create_segmenter(
        "sam", model="tiny", random_weights=True, device="cpu", seed=1, zoom=ROS
    )
    assert (
        isinstance(wrapped, SmallObjectZoom)
        and wrapped.describe()["small_object_zoom"]["border"] == "pad"
    )
    out = wrapped.segment([image], [prompts])[0]
    assert any(out.crops[i].area for i in range(3))  # the comparison below is not vacuous
    _, crops = wrapped.plan(prompts, *image.shape[:2])
    for crop in crops:
        (i,) = crop.members
        canvas, sx, sy = ros_crop(image, prompts.boxes[i], 64)
        ps = PromptSet(
            mode="hbox",
            polygons=((prompts.polygons[i] - [sx, sy]) * 2)[None],
            boxes=(np.clip(prompts.boxes[i] - [sx, sy, sx, sy], 0, 64) * 2)[None],
        )
        mask = sam.segment([bicubic2x(canvas)], [ps])[0].crops[0].full()
        small = mask.reshape(64, 2, 64, 2).mean(axis=(1, 3)) >= 0.5
        np.testing.assert_array_equal(out.crops[i].full(), pasted(small, sx, sy, (100, 120)))


def test_zoom_option_errors():
    with pytest.raises(ValueError, match="positive size"):
        SmallObjectZoom(BoxSegmenter(), None)
    with pytest.raises(ValueError, match="zoom_border"):
        SmallObjectZoom(BoxSegmenter(), 10, border="wrap")
    with pytest.raises(ValueError, match="zoom_factor"):
        SmallObjectZoom(BoxSegmenter(), 10, factor=0.5)


def test_presets_by_source():
    assert preset_options(None, "dota") == {}
    assert preset_options("samrs", "fair1m") == {
        "overlap": "annotation-order",
        "class_order": "samrs",
        "prompt": "rhbox",
        "resize": "pil",
    }
    assert preset_options("samrs", "dota")["prompt"] == "hbox"
    assert "prompt" not in preset_options("samrs", "hrsc")  # not a SAMRS subset
    assert preset_options("ros-sam", "dota") == {
        "zoom_all": True,
        "zoom_crop": 512,
        "zoom_factor": 2.0,
        "zoom_border": "pad",
    }
    assert set(PRESETS) == {"samrs", "ros-sam"}
    with pytest.raises(ValueError, match="unknown preset"):
        preset_options("sam2", "dota")


@pytest.fixture(scope="module")
def dota_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data") / "dota"
    make_bench_dataset(root, n_images=1, objects_per_image=3, image_size=256, seed=3)
    return root


def _plan(root, out, *args: str) -> dict:
    argv = ["-q", "build", "--source", "dota", "--root", str(root), "--out", str(out)]
    res = CliRunner().invoke(main, [*argv, "--segmenter", "box", "--dry-run", "--json", *args])
    assert res.exit_code == 0, res.output
    return json.loads(res.output)["config"]


def test_build_presets_apply_before_config_and_explicit_options(dota_root, tmp_path):
    out = tmp_path / "out"
    plain = _plan(dota_root, out)
    assert (plain["overlap"], plain["class_order"], plain["prompt"]) == (
        "small-on-top",
        "official",
        "rhbox",
    )
    samrs = _plan(dota_root, out, "--preset", "samrs")
    assert (samrs["overlap"], samrs["class_order"], samrs["prompt"], samrs["preset"]) == (
        "annotation-order",
        "samrs",
        "hbox",
        "samrs",
    )
    explicit = _plan(dota_root, out, "--preset", "samrs", "--overlap", "score")
    assert explicit["overlap"] == "score" and explicit["class_order"] == "samrs"
    res = CliRunner().invoke(
        main,
        ["build", "--source", "dota", "--root", str(dota_root), "--out", str(out),
         "--segmenter", "box", "--dry-run", "--zoom-crop", "512"],
    )  # fmt: skip
    assert res.exit_code != 0 and "--small-object-zoom or --zoom-all" in res.output
    recipe = tmp_path / "r.toml"
    recipe.write_text('[build]\npreset = "ros-sam"\nzoom-crop = 256\n')
    ros = _plan(dota_root, out, "--config", str(recipe))
    assert (ros["zoom_all"], ros["zoom_crop"], ros["zoom_factor"], ros["zoom_border"]) == (
        True,
        256,
        2.0,
        "pad",
    )


def test_pil_resize_is_segment_anythings_predictor_input():
    import torch
    from segment_anything.utils.transforms import ResizeLongestSide

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (600, 800, 3), dtype=np.uint8)
    pil = create_segmenter("sam", model="tiny", random_weights=True, device="cpu", resize="pil")
    assert pil.describe()["resize"] == "pil"
    size = pil.config.image_size  # 512 for tiny
    resized = ResizeLongestSide(size).apply_image(image)  # what SamPredictor.set_image does
    t = torch.as_tensor(resized).permute(2, 0, 1)[None].float()
    expected = pil.model.preprocess(t)[0]
    got, sizes = pil.preprocess([image])
    assert sizes == [(size * 3 // 4, size)]
    torch.testing.assert_close(got[0], expected, atol=1e-5, rtol=0)
    default = create_segmenter("sam", model="tiny", random_weights=True, device="cpu")
    other = default.preprocess([image])[0][0]
    assert (other - expected).abs().max() > 0.01  # the torch resize is not the same
    with pytest.raises(ValueError, match="resize must be one of"):
        create_segmenter("sam", model="tiny", random_weights=True, device="cpu", resize="cv2")
