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

import pytest
import torch
from click.testing import CliRunner

from samrs.benchmarks.run import make_bench_dataset, run_benchmark
from samrs.cli import main
from samrs.outputs.manifest import read_table
from samrs.segmenters.models import SAM_MODELS, build_random_model
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


def test_bench_with_a_checkpoint(tmp_path: Path) -> None:
    checkpoint = tmp_path / "sam_tiny.pth"
    torch.save(build_random_model(SAM_MODELS["tiny"], seed=2).state_dict(), checkpoint)
    report = run_benchmark(
        device="cpu", checkpoint=str(checkpoint), images=1, objects_per_image=2,
        image_size=256, skip_reference=True,
    )  # fmt: skip
    assert report["model"] == "tiny" and report["random_weights"] is False
    assert "reference" not in report and report["pipeline_over_model_only"] > 0
    both = ["bench", "--checkpoint", str(checkpoint), "--random-weights"]
    result = CliRunner().invoke(main, both)
    assert result.exit_code == 2 and "not both" in result.output
