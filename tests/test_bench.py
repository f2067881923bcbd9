"""``samrs bench`` smoke tests: the three measurements, their ratios and the JSON document.

Never timed: the numbers only have to exist and be positive. What is checked for real is
that the pipeline's masks are the reference loop's (same weights, fp32 on the CPU).
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from samrs.benchmarks.masks import DecoderBank, inscribed_ellipse
from samrs.benchmarks.run import make_bench_dataset, run_benchmark
from samrs.cli import main
from samrs.core.geometry import mask_iou
from samrs.core.imageio import read_image
from samrs.outputs.manifest import read_table
from samrs.prompts import build_prompts
from samrs.segmenters.models import SAM_MODELS, build_random_model
from samrs.segmenters.sam import SamSegmenter
from samrs.sources import read_dataset


@pytest.fixture(autouse=True)
def _keep_this_process_allocator(monkeypatch: pytest.MonkeyPatch) -> None:
    """The benchmark tunes malloc process-wide: not in the test process (tested apart)."""
    monkeypatch.setattr("samrs.segmenters.memory.retain_freed_memory", lambda: False)


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc settings")
def test_retain_freed_memory_in_a_fresh_process() -> None:
    code = (
        "import os; from samrs.segmenters.memory import retain_freed_memory as r; "
        "print(r(), r(), os.environ['MALLOC_MMAP_MAX_'], os.environ['MALLOC_TRIM_THRESHOLD_'], "
        "os.environ['MALLOC_ARENA_MAX'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "True", "0", str(1 << 30), "1"]


def test_bench_dataset_is_a_dota_dataset(tmp_path: Path) -> None:
    make_bench_dataset(tmp_path, n_images=2, objects_per_image=3, image_size=256, seed=1)
    dataset = read_dataset("dota", tmp_path)
    assert [im.image_id for im in dataset.images] == ["P00000", "P00001"]
    assert all(
        len(im.objects) == 3 and (im.width, im.height) == (256, 256) for im in dataset.images
    )
    assert not dataset.errors


@pytest.mark.slow
def test_bench_json_has_every_measurement(tmp_path: Path) -> None:
    argv = ["bench", "--device", "cpu", "--random-weights", "--images", "2"]
    argv += [
        "--objects-per-image",
        "3",
        "--image-size",
        "256",
        "--workdir",
        str(tmp_path),
        "--json",
    ]
    result = CliRunner().invoke(main, argv)
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    assert (report["device"], report["model"], report["dtype"]) == ("cpu", "tiny", "fp32")
    assert report["random_weights"] is True and report["images"] == 2
    assert report["retain_freed_memory"] is False  # patched above
    for name in ("model_only", "pipeline", "reference"):
        assert report[name]["images_per_s"] > 0 and report[name]["seconds"] > 0
    for key in ("pipeline_over_model_only", "pipeline_over_reference", "masks_per_s"):
        assert report[key] > 0
    assert report["pipeline"]["masks_per_s"] == pytest.approx(
        3 * report["pipeline"]["images_per_s"]
    )
    assert report["peak_host_mb"] > 0 and "peak_device_mb" not in report
    # the same weights, the same boxes: the samrs pipeline reproduces the SAMRS loop's masks
    agreement = report["mask_agreement"]
    assert agreement["n"] == 6 and agreement["min"] > 0.98
    instances = read_table(tmp_path / "pipeline", "instances")
    assert instances.num_rows == 6 and all(instances.column("kept").to_pylist())
    assert len(list((tmp_path / "reference" / "ins").glob("*.pkl"))) == 2


@pytest.mark.slow
def test_bench_with_a_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save(build_random_model(SAM_MODELS["tiny"], seed=2).state_dict(), checkpoint)
    report = run_benchmark(
        device="cpu", checkpoint=str(checkpoint), images=1, objects_per_image=2,
        image_size=256, skip_reference=True,
    )  # fmt: skip
    assert report["model"] == "tiny" and report["random_weights"] is False
    assert "pipeline_over_reference" not in report and report["pipeline_over_model_only"] > 0
    # the reference loop is not timed, but its replay is (host_ms_per_mask, same masks)
    assert set(report["reference"]) == {"host_ms_per_mask"}
    assert report["pipeline"]["host_ms_per_mask"] > 0
    both = ["bench", "--checkpoint", str(checkpoint), "--random-weights"]
    result = CliRunner().invoke(main, both)
    assert result.exit_code == 2 and "not both" in result.output


def test_inscribed_ellipse_of_the_bench_boxes() -> None:
    rect = ((40.0, 30.0), (20.0, 8.0), 30.0)
    corners = cv2.boxPoints(rect)
    (cx, cy), (w, h), angle = inscribed_ellipse(corners)
    assert (cx, cy) == pytest.approx((40.0, 30.0), abs=1e-4)
    assert sorted([w, h]) == pytest.approx([8.0, 20.0], abs=1e-4)
    drawn = [np.zeros((64, 64), np.uint8) for _ in range(2)]
    cv2.ellipse(drawn[0], rect, 1, -1)
    cv2.ellipse(drawn[1], ((cx, cy), (w, h), angle), 1, -1)
    np.testing.assert_array_equal(drawn[0], drawn[1])


@pytest.mark.slow
def test_decoder_bank_objects_and_replay(tmp_path: Path) -> None:
    """--masks objects: the real decoder runs, then every mask is its object's ellipse
    (matched by box on the device, whatever the chunking); the replay gives the same masks
    with neither encoder nor decoder running."""
    make_bench_dataset(tmp_path, n_images=2, objects_per_image=4, image_size=256, seed=3)
    dataset = read_dataset("dota", tmp_path)
    images = [read_image(im.image_path) for im in dataset.images]
    prompts = [
        build_prompts(np.array([o.polygon for o in im.objects]).reshape(-1, 8), "rhbox")
        for im in dataset.images
    ]
    sam = SamSegmenter(random_weights=True, device="cpu", chunk_size=3)
    sam._host_postprocess = False  # the device path, on the CPU
    bank = DecoderBank(sam, prompts, [(256, 256)] * 2)
    bank.fill_objects()
    bank.install("objects")
    calls = []
    real_encoder = sam._run_encoder
    sam._run_encoder = lambda pixels: calls.append(1) or real_encoder(pixels)
    try:
        objects = sam.segment(images, prompts)
        assert calls  # the real encoder ran
        del sam._run_encoder
        bank.install("replay")
        sam._predict_masks = None  # the decoder must not run in a replay
        replayed = sam.segment(images, prompts)
    finally:
        bank.uninstall()
        vars(sam).pop("_predict_masks", None)
    assert "_decode_chunk" not in vars(sam)
    for ms, again, ps in zip(objects, replayed, prompts, strict=True):
        np.testing.assert_array_equal(ms.masks, again.masks)
        np.testing.assert_array_equal(ms.scores, again.scores)
        for mask, polygon in zip(ms.masks, ps.polygons, strict=True):
            drawn = np.zeros((256, 256), np.uint8)
            cv2.ellipse(drawn, inscribed_ellipse(polygon), 1, -1)
            # the object's ellipse, object-sized (drawn on tiny's 128-cell grid of its 512 input:
            # 2 image pixels per cell for these 256-pixel images)
            assert mask_iou(mask, drawn > 0) > 0.7
            assert mask.mean() < 0.1


@pytest.mark.slow
def test_bench_objects_and_host_cost(tmp_path: Path) -> None:
    report = run_benchmark(
        device="cpu", images=1, objects_per_image=3, image_size=256, masks="objects",
        workdir=str(tmp_path),
    )  # fmt: skip
    assert report["masks"] == "objects"
    assert report["pipeline"]["host_ms_per_mask"] > 0
    assert report["reference"]["host_ms_per_mask"] > 0
    assert report["host_ms_per_mask_over_reference"] > 0
    # both loops saw the same ellipses: the same masks up to the resize's rounding
    assert report["mask_agreement"]["n"] == 3 and report["mask_agreement"]["min"] > 0.97
    areas = read_table(tmp_path / "pipeline", "instances").column("area").to_pylist()
    assert 0 < max(areas) < 0.1 * 256 * 256
    with pytest.raises(ValueError, match="workers 1"):
        run_benchmark(device="cpu", images=1, masks="objects", workers=2)
