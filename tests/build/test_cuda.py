"""The device path on a real GPU (skipped without CUDA; run by bench/gpu.sh on GPU machines)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from samrs.build import run_build
from samrs.outputs.manifest import read_table
from tests.helpers.build import config, output_files

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")


def test_cuda_rle_stage_gives_the_host_crop_bytes(
    dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On CUDA, a build whose masks are RLE-encoded on the device writes the bytes of one
    whose masks are encoded from host crops (same model, same logits)."""
    from samrs.build import worker
    from samrs.segmenters.sam import SamSegmenter

    outs = []
    for keep in (False, True):
        sam = SamSegmenter(random_weights=True, device="cuda", chunk_size=5, keep_device_masks=keep)
        monkeypatch.setattr(worker, "get_segmenter", lambda config, sam=sam: sam)
        out = tmp_path / f"keep-{keep}"
        options = {"segmenter": "sam", "random_weights": True, "device": "cuda"}
        summary = run_build(config(dota, out, on_reject="box", min_rbox_iou=0.004, **options))
        assert summary.ok
        outs.append(out)
    assert read_table(outs[1], "instances").num_rows > 0
    assert output_files(outs[0]) == output_files(outs[1])


def test_cuda_build_matches_cpu_masks_closely(dota: Path, tmp_path: Path) -> None:
    """A CUDA build (bf16) and a CPU build (fp32) of the same weights agree mask by mask."""
    from pycocotools import mask as mask_utils

    tables = []
    for device in ("cpu", "cuda"):
        out = tmp_path / device
        options = {"segmenter": "sam", "random_weights": True, "device": device}
        assert run_build(config(dota, out, **options)).ok
        tables.append(read_table(out, "instances").to_pylist())
    ious = []
    images = {r["image_id"]: r for r in read_table(tmp_path / "cpu", "images").to_pylist()}
    for a, b in zip(*tables, strict=True):
        size = [images[a["image_id"]]["height"], images[a["image_id"]]["width"]]
        ra = {"size": size, "counts": a["segmentation"].encode()}
        rb = {"size": size, "counts": b["segmentation"].encode()}
        ious.append(float(mask_utils.iou([ra], [rb], [False])[0, 0]))
    assert sorted(ious)[len(ious) // 2] > 0.98
