"""End-to-end builds on synthetic data with the weight-free grabcut segmenter."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from samrs.build import BuildError, run_build
from samrs.build.executors import _local_cluster
from samrs.build.layout import Layout
from samrs.cli import main
from samrs.outputs.manifest import read_table
from samrs.outputs.schema import MANIFEST_VERSION
from samrs.segmenters.memory import ALLOCATOR_ENV
from samrs.synth import write_synthetic
from tests.helpers.build import config, output_files


def build_cli(root: Path, out: Path, *options: str, source: str | None = "dota"):  # type: ignore[no-untyped-def]
    """``samrs build`` through Click, with --root/--out and the given options."""
    args = [
        "build",
        *(["--source", source] if source else []),
        "--root",
        str(root),
        "--out",
        str(out),
    ]
    return CliRunner().invoke(main, [*args, *options])


def source_object_count(root: Path) -> int:
    from samrs.sources import read_dataset

    dataset = read_dataset("dota", root)
    return dataset.n_objects + sum(e.n_objects for e in dataset.errors)


@pytest.fixture(scope="module")
def reference(dota: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    summary = run_build(config(dota, out))
    assert summary.state == "complete" and summary.ok
    return out


@pytest.mark.slow
def test_every_object_appears_exactly_once(reference: Path, dota: Path) -> None:
    instances = read_table(reference, "instances")
    errors = read_table(reference, "errors")
    images = read_table(reference, "images")
    ids = instances.column("instance_id").to_pylist()
    assert len(ids) == len(set(ids)) and ids == sorted(ids)
    assert len(set(images.column("image_id").to_pylist())) == images.num_rows
    # each (image, object) pair once
    pairs = list(
        zip(
            instances.column("image_id").to_pylist(),
            instances.column("object_index").to_pylist(),
            strict=True,
        )
    )
    assert len(pairs) == len(set(pairs))
    # planned objects = instance rows + objects inside error rows
    n_planned = sum(images.column("n_objects").to_pylist())
    in_image_errors = sum(
        n
        for n, s in zip(
            errors.column("n_objects").to_pylist(), errors.column("stage").to_pylist(), strict=True
        )
        if s not in ("read", "skip", "tile")
    )
    assert instances.num_rows + in_image_errors == n_planned
    statuses = set(images.column("status").to_pylist())
    assert "empty" in statuses and "ok" in statuses
    meta = json.loads((reference / "samrs.json").read_text())
    assert meta["counts"]["instances"] == instances.num_rows
    assert meta["segmenter"]["name"] == "grabcut"
    assert len(meta["fingerprint"]) == 64 and meta["config"]["segmenter"] == "grabcut"
    assert sum(meta["counts"]["images"].values()) == images.num_rows


@pytest.mark.slow
def test_whole_images_keep_all_source_objects(dota: Path, tmp_path: Path) -> None:
    out = tmp_path / "whole"
    run_build(config(dota, out))
    instances = read_table(out, "instances")
    errors = read_table(out, "errors")
    assert instances.num_rows + sum(errors.column("n_objects").to_pylist()) == source_object_count(
        dota
    )


def test_outputs_readable(reference: Path) -> None:
    from pycocotools.coco import COCO

    coco = COCO(str(reference / "coco" / "instances.json"))
    assert coco.getAnnIds()
    meta = json.loads((reference / "samrs.json").read_text())
    n_classes = len(meta["class_table"]["classes"])
    images = read_table(reference, "images")
    for row in images.to_pylist():
        label = np.asarray(Image.open(reference / row["semantic_file"]))
        assert label.shape == (row["height"], row["width"])
        assert set(np.unique(label)) <= set(range(n_classes)) | {255}
        if row["status"] == "empty":
            assert (label == 255).all()
        if row["tile_window"] is not None:
            assert (reference / row["file_name"]).is_file()
    # kept instances are painted: their pixels carry a class id
    assert any(
        (np.asarray(Image.open(reference / r["semantic_file"])) != 255).any()
        for r in images.to_pylist()
    )


@pytest.mark.slow
def test_same_inputs_same_bytes(reference: Path, dota: Path, tmp_path: Path) -> None:
    out = tmp_path / "again"
    run_build(config(dota, out))
    assert output_files(out) == output_files(reference)


@pytest.mark.slow
def test_two_workers_same_bytes(reference: Path, dota: Path, tmp_path: Path) -> None:
    out = tmp_path / "two"
    summary = run_build(config(dota, out, workers=2, threads=1))
    assert summary.ok
    assert output_files(out) == output_files(reference)


def test_cpu_workers_share_the_cores_by_default(dota: Path, tmp_path: Path) -> None:
    from samrs.build.run import resolve_config

    cores = os.cpu_count() or 1
    assert resolve_config(config(dota, tmp_path, workers=2)).threads == max(1, cores // 2)
    assert resolve_config(config(dota, tmp_path, workers=2, threads=3)).threads == 3
    assert resolve_config(config(dota, tmp_path)).threads is None  # one worker: torch's default


def _start_environment() -> dict[str, str | None]:
    """The allocator variables a process was started with (what glibc reads), not later
    changes to ``os.environ``."""
    raw = Path("/proc/self/environ").read_bytes().split(b"\0")
    env = dict(item.decode().partition("=")[::2] for item in raw if b"=" in item)
    return {name: env.get(name) for name in ALLOCATOR_ENV}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="Linux /proc")
def test_local_cluster_workers_get_the_allocator_settings(dota: Path, tmp_path: Path) -> None:
    """Every worker process starts with our malloc settings (over Dask's own
    MALLOC_TRIM_THRESHOLD_), set before it is spawned."""
    from distributed import Client

    cluster = _local_cluster(config(dota, tmp_path / "out", workers=2))
    try:
        with Client(cluster) as client:
            seen = client.run(_start_environment)
    finally:
        cluster.close()
    assert len(seen) == 2
    assert all(env == ALLOCATOR_ENV for env in seen.values())


@pytest.mark.slow
def test_killed_worker_is_retried(
    reference: Path, dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAMRS_FAULT_INJECT", "kill:1")
    out = tmp_path / "killed-worker"
    summary = run_build(config(dota, out, workers=2, threads=1))
    assert summary.ok
    assert (Layout(out).state / "fault-00001").is_file()  # the worker really died once
    assert output_files(out) == output_files(reference)


def _cli_build(
    dota: Path,
    out: Path,
    env: dict[str, str] | None = None,
    shard_size: int = 1,
    *options: str,
) -> subprocess.Popen:
    """``samrs build`` (grabcut, CPU) in a separate process."""
    args = [sys.executable, "-m", "samrs.cli", "build", "--source", "dota", "--root", str(dota),
            "--out", str(out), "--segmenter", "grabcut", "--shard-size", str(shard_size),
            "--gpus", "0", *options]  # fmt: skip
    return subprocess.Popen(
        args, env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


@pytest.mark.slow
def test_sigkill_then_resume_gives_identical_outputs(dota: Path, tmp_path: Path) -> None:
    ref = tmp_path / "ref1"
    assert _cli_build(dota, ref).wait(timeout=300) == 0
    out = tmp_path / "killed"
    proc = _cli_build(dota, out)
    layout = Layout(out)
    deadline = time.time() + 120
    while time.time() < deadline and not layout.committed_shards():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not layout.complete_marker.exists()
    resumed = _cli_build(dota, out)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err.decode()
    assert output_files(out) == output_files(ref)
    again = _cli_build(dota, out)
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0 and b"nothing to do" in err


@pytest.mark.slow
def test_process_death_mid_build_then_resume(reference: Path, dota: Path, tmp_path: Path) -> None:
    out = tmp_path / "died"
    proc = _cli_build(dota, out, {"SAMRS_FAULT_INJECT": "kill:1"}, shard_size=2)
    proc.communicate(timeout=300)
    assert proc.returncode == 77  # died inside shard 1
    # shard 0 is committed on a thread while shard 1 starts: it may or may not have made it
    assert Layout(out).committed_shards() <= {0}
    summary = run_build(config(dota, out))
    assert summary.state == "complete"
    assert output_files(out) == output_files(reference)


@pytest.mark.slow
def test_write_failure_fails_the_shard_only(
    reference: Path, dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samrs.outputs.manifest as manifest

    original = manifest.write_part

    def full_disk(path, table, rows):  # type: ignore[no-untyped-def]
        if rows and table == "images" and rows[0]["shard"] == 1:
            raise OSError(28, "No space left on device", str(path))
        return original(path, table, rows)

    monkeypatch.setattr(manifest, "write_part", full_disk)
    out = tmp_path / "full"
    summary = run_build(config(dota, out))
    assert summary.state == "failed"
    assert [f["shard"] for f in summary.failed_shards] == [1]
    assert "No space left on device" in summary.failed_shards[0]["cause"]
    layout = Layout(out)
    assert 1 not in layout.committed_shards() and 0 in layout.committed_shards()
    assert not layout.part("instances", 1).exists()
    assert layout.failure(1).is_file()
    monkeypatch.setattr(manifest, "write_part", original)
    assert run_build(config(dota, out)).state == "complete"
    assert output_files(out) == output_files(reference)


@pytest.mark.slow
def test_bad_input_is_recorded_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "bad"
    write_synthetic("dota", root, 4, 3)
    images = sorted((root / "train" / "images").glob("*.png"))
    labels = sorted((root / "train" / "labelTxt").glob("*.txt"))
    images[0].write_bytes(images[0].read_bytes()[:200])  # truncated image
    with labels[1].open("a") as fh:
        fh.write("1 2 3 not-a-number\n")
    result = build_cli(root, tmp_path / "out", "--segmenter", "grabcut", "--gpus", "0")
    assert result.exit_code == 0, result.output
    errors = read_table(tmp_path / "out", "errors").to_pylist()
    files = {Path(e["source_file"]).name: e for e in errors}
    assert images[0].name in files and files[images[0].name]["stage"] == "image"
    assert labels[1].name in files and files[labels[1].name]["line"] is not None
    assert "error rows" in result.output
    images_table = read_table(tmp_path / "out", "images").to_pylist()
    instances = read_table(tmp_path / "out", "instances")
    assert sum(r["n_objects"] for r in images_table) == instances.num_rows
    assert {r["status"] for r in images_table if Path(r["source_file"]).name == images[0].name} == {
        "error"
    }


@pytest.mark.slow
def test_incompatible_out_refused(reference: Path, dota: Path, tmp_path: Path) -> None:
    out = tmp_path / "cfg"
    run_build(config(dota, out))
    with pytest.raises(BuildError, match="prompt"):
        run_build(config(dota, out, prompt="hbox"))
    summary = run_build(config(dota, out, prompt="hbox", overwrite=True, resume=False))
    assert summary.state == "complete"
    assert json.loads((out / "samrs.json").read_text())["config"]["prompt"] == "hbox"


def test_dry_run_writes_nothing(dota: Path, tmp_path: Path) -> None:
    out = tmp_path / "dry"
    result = build_cli(dota, out, "--segmenter", "grabcut", "--dry-run", "--gpus", "0")
    assert result.exit_code == 0, result.output
    assert "shards" in result.output and "objects" in result.output and "plane" in result.output
    assert not out.exists()
    as_json = build_cli(dota, out, "--segmenter", "grabcut", "--dry-run", "--json", "--gpus", "0")
    plan = json.loads(as_json.stdout)["plan"]
    assert plan["objects"] > 0 and plan["images"] == 6


def test_sam_without_weights_stops_at_once(dota: Path, tmp_path: Path) -> None:
    result = build_cli(dota, tmp_path / "x")
    assert result.exit_code != 0
    assert "--checkpoint" in result.output and "grabcut" in result.output
    assert not (tmp_path / "x").exists()
    result = build_cli(tmp_path / "nope", tmp_path / "x", "--segmenter", "grabcut")
    assert result.exit_code != 0 and "nope" in result.output


def test_recipe_file_with_overrides(dota: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "r.toml"
    recipe.write_text(
        '[build]\nsource = "dota"\nprompt = "hbox"\nsegmenter = "box"\nshard-size = 3\n'
    )
    out = tmp_path / "recipe"
    result = build_cli(
        dota, out, "--config", str(recipe), "--segmenter", "grabcut", "--gpus", "0",
        "--dry-run", "--json", source=None,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    cfg = json.loads(result.stdout)["config"]
    assert cfg["prompt"] == "hbox" and cfg["segmenter"] == "grabcut" and cfg["shard_size"] == 3


def test_parts_have_schema_metadata(reference: Path) -> None:
    part = next((reference / "manifest" / "instances").glob("part-*.parquet"))
    schema = pq.read_schema(part)
    assert schema.metadata[b"samrs_manifest_version"] == MANIFEST_VERSION.encode()


@pytest.mark.slow
def test_geotiff_sources_keep_their_georeferencing(tmp_path: Path) -> None:
    import rasterio
    from rasterio.transform import from_origin

    root = tmp_path / "geo"
    write_synthetic("dota", root, 3, 5)
    png = sorted((root / "train" / "images").glob("*.png"))[0]
    pixels = np.asarray(Image.open(png).convert("RGB"))
    transform = from_origin(500000.0, 4000000.0, 0.5, 0.5)
    with rasterio.open(png.with_suffix(".tif"), "w", driver="GTiff", width=pixels.shape[1],
                       height=pixels.shape[0], count=3, dtype="uint8", crs="EPSG:32633",
                       transform=transform) as dst:  # fmt: skip
        dst.write(pixels.transpose(2, 0, 1))
    png.unlink()
    out = tmp_path / "out"
    assert run_build(config(root, out, patch_size=512, gap=100)).ok
    rows = [r for r in read_table(out, "images").to_pylist() if r["source_file"].endswith(".tif")]
    assert rows and all(r["crs"] == "EPSG:32633" for r in rows)
    plain = [
        r for r in read_table(out, "images").to_pylist() if not r["source_file"].endswith(".tif")
    ]
    assert all(r["crs"] is None and r["transform"] is None for r in plain)
    for row in rows:
        x, y = row["tile_window"][:2]
        assert row["transform"][2] == pytest.approx(500000.0 + 0.5 * x)
        assert row["transform"][5] == pytest.approx(4000000.0 - 0.5 * y)
        with rasterio.open(out / "semantic" / f"{row['image_id']}.tif") as label:
            assert label.crs.to_string() == "EPSG:32633"
            assert label.transform.c == pytest.approx(row["transform"][2])
            np.testing.assert_array_equal(
                label.read(1), np.asarray(Image.open(out / row["semantic_file"]))
            )


@pytest.mark.slow
def test_gpu_executor_plumbing_on_cpu(reference: Path, dota: Path, tmp_path: Path) -> None:
    # --gpus N starts one pinned worker per GPU with a GPU resource; with --device cpu the
    # same path runs here and must give the same bytes
    out = tmp_path / "gpus"
    summary = run_build(config(dota, out, gpus=2, device="cpu", threads=1))
    assert summary.ok
    assert output_files(out) == output_files(reference)


@pytest.mark.slow
def test_existing_dask_scheduler(reference: Path, dota: Path, tmp_path: Path) -> None:
    from distributed import LocalCluster

    with LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        out = tmp_path / "scheduler"
        summary = run_build(config(dota, out, scheduler=cluster.scheduler_address, threads=1))
    assert summary.ok
    assert output_files(out) == output_files(reference)


def test_segmenter_failure_is_isolated_to_its_image(
    dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samrs.build.worker as worker
    from samrs.segmenters import create_segmenter
    from samrs.sources import read_dataset

    counts = [len(im.objects) for im in read_dataset("dota", dota).images]
    bad_count = max(counts)
    assert counts.count(bad_count) == 1
    box = create_segmenter("box")

    class Failing(type(box)):  # type: ignore[misc]
        def segment(self, images, prompts):  # type: ignore[no-untyped-def]
            if any(len(p) == bad_count for p in prompts):
                raise RuntimeError("out of memory (simulated)")
            return super().segment(images, prompts)

    monkeypatch.setattr(worker, "get_segmenter", lambda config: Failing())
    out = tmp_path / "segfail"
    summary = run_build(config(dota, out, segmenter="box", batch_size=4))
    assert summary.ok
    errors = read_table(out, "errors").to_pylist()
    assert [(e["stage"], e["n_objects"]) for e in errors] == [("segment", bad_count)]
    assert "out of memory" in errors[0]["message"]
    images = read_table(out, "images").to_pylist()
    assert sorted(r["status"] for r in images).count("error") == 1
    assert read_table(out, "instances").num_rows == sum(counts) - bad_count


@pytest.mark.slow
def test_sam_device_path_rle_stage_gives_the_host_bytes(
    dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SAM's device path (forced on the CPU, chunks of 3 so an image spans several chunks):
    a build whose masks stay on the device for the RLE stage writes the bytes of one whose
    masks are encoded from host crops, including masks the reject policy replaced."""
    from samrs.build import worker
    from samrs.segmenters.sam import SamSegmenter

    outs = []
    for keep in (False, True):
        sam = SamSegmenter(random_weights=True, device="cpu", chunk_size=3, keep_device_masks=keep)
        sam._host_postprocess = False
        kept_on_device = []
        segment = sam.segment

        def spy(images, prompts, segment=segment, seen=kept_on_device):  # type: ignore[no-untyped-def]
            results = segment(images, prompts)
            seen.extend(ms.device_masks is not None for ms in results)
            return results

        sam.segment = spy  # type: ignore[method-assign]
        monkeypatch.setattr(worker, "get_segmenter", lambda config, sam=sam: sam)
        out = tmp_path / f"keep-{keep}"
        options = {"segmenter": "sam", "random_weights": True, "device": "cpu"}
        summary = run_build(config(dota, out, on_reject="box", min_rbox_iou=0.004, **options))
        assert summary.ok
        assert kept_on_device and all(k == keep for k in kept_on_device)
        outs.append(out)
    instances = read_table(outs[1], "instances")
    assert any(instances.column("substituted").to_pylist())
    assert not all(instances.column("substituted").to_pylist())
    assert output_files(outs[0]) == output_files(outs[1])


@pytest.mark.slow
def test_writer_processes_write_the_bytes_of_threads(
    dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Images finished in writer processes (masks RLE-encoded on the device, forced on the
    CPU, then sent to the writers) give the bytes of a build that finishes them in threads,
    including masks the reject policy replaced; the pool is reused by the next build."""
    from samrs.build import worker
    from samrs.segmenters.sam import SamSegmenter

    sam = SamSegmenter(random_weights=True, device="cpu", chunk_size=3, keep_device_masks=True)
    sam._host_postprocess = False
    monkeypatch.setattr(worker, "get_segmenter", lambda config: sam)
    # shards of 6 images in batches of 2: the worker prefetches each next batch
    options = {"segmenter": "sam", "random_weights": True, "device": "cpu", "batch_size": 2}
    prefetched: list[int] = []
    prefetch = sam.prefetch
    monkeypatch.setattr(
        sam, "prefetch", lambda images: prefetched.append(len(images)) or prefetch(images)
    )
    outs = {}
    for writers in (0, 2, 2):
        out = tmp_path / f"writers-{writers}-{len(outs)}"
        summary = run_build(
            config(
                dota,
                out,
                on_reject="box",
                min_rbox_iou=0.004,
                writers=writers,
                shard_size=6,
                **options,
            )
        )
        assert summary.ok
        outs[out] = output_files(out)
        if writers:
            assert list(worker._WRITERS) == [2]
    first, *others = outs.values()
    assert all(other == first for other in others)
    # the shards' COCO fragments, made in a writer process or not, are the same bytes
    fragments = [[p.read_bytes() for p in sorted((o / ".samrs" / "coco").glob("*.jsonl"))]
                 for o in outs]  # fmt: skip
    assert len(fragments[0]) == 1 and all(f == fragments[0] for f in fragments)
    assert max(prefetched) >= 1  # the next batch was decoded in time and handed over
    instances = read_table(next(iter(outs)), "instances")
    assert any(instances.column("substituted").to_pylist())
    assert len(worker._WRITERS[2]._processes) == 2  # type: ignore[union-attr]


def test_writers_default_to_the_cores_a_gpu_leaves(dota: Path, tmp_path: Path) -> None:
    from samrs.build.run import resolve_config

    base = config(dota, tmp_path / "o", segmenter="sam", random_weights=True)
    assert resolve_config(replace(base, device="cpu")).writers == 0
    assert resolve_config(replace(base, segmenter="grabcut")).writers == 0
    gpu = resolve_config(replace(base, device="cuda:0", gpus=1)).writers
    assert gpu == max(1, min(8, (os.cpu_count() or 1) - 2))
    assert resolve_config(replace(base, writers=3)).writers == 3
    with pytest.raises(BuildError, match="--writers"):
        resolve_config(replace(base, writers=-1))


@pytest.mark.slow
def test_dask_workers_with_writers_leave_no_process_behind(
    reference: Path, dota: Path, tmp_path: Path
) -> None:
    """CPU Dask workers, each with a writer process: same bytes, and once the build has
    exited nothing of it is left holding its output pipes (writers exit with their worker,
    which Dask kills without shutting its pool down)."""
    out = tmp_path / "dask-writers"
    proc = _cli_build(dota, out, None, 2, "--workers", "2", "--writers", "1")
    _, err = proc.communicate(timeout=600)  # waits for EOF: every holder of the pipes gone
    assert proc.returncode == 0, err.decode()
    assert output_files(out) == output_files(reference)


@pytest.mark.slow
def test_shards_follow_each_other_without_a_pause_for_the_model(
    dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--workers 1: each shard's last batch tells the model of the next shard's first batch
    (read ahead, encoded once), and shards are committed on a thread while the next runs; a
    failed commit runs its shard again. Same bytes as a build without the prefetch."""
    from samrs.build import worker
    from samrs.segmenters.sam import SamSegmenter

    sam = SamSegmenter(random_weights=True, device="cpu", chunk_size=3, keep_device_masks=True)
    sam._host_postprocess = False
    monkeypatch.setattr(worker, "get_segmenter", lambda config: sam)
    encoded: list[int] = []
    encode = sam.encode
    monkeypatch.setattr(sam, "encode", lambda images: encoded.append(len(images)) or encode(images))
    reused: list[int] = []
    take_ahead = sam._take_ahead

    def spy_take_ahead(images):  # type: ignore[no-untyped-def]
        found = take_ahead(images)
        reused.append(found is not None)
        return found

    monkeypatch.setattr(sam, "_take_ahead", spy_take_ahead)
    options = {"segmenter": "sam", "random_weights": True, "device": "cpu", "batch_size": 2}
    local = tmp_path / "local"
    commit = worker._commit
    failed: list[int] = []

    def commit_once_failing(layout, shard, *args):  # type: ignore[no-untyped-def]
        if shard == 1 and not failed:
            failed.append(shard)
            raise OSError("disk full (simulated)")
        commit(layout, shard, *args)

    monkeypatch.setattr(worker, "_commit", commit_once_failing)
    summary = run_build(config(dota, local, shard_size=3, **options))
    assert summary.ok and failed == [1]
    images = read_table(local, "images").to_pylist()
    segmented = [im["shard"] for im in images if im["n_objects"]]
    assert len(set(segmented)) == 2
    # every image encoded once (the next shard's first batch included), shard 1 twice
    assert sum(encoded) == len(segmented) + segmented.count(1)
    assert max(encoded) == 2
    # batches (shard 0: 2, shard 1: 2, shard 1 again: 2): all but the build's first and the
    # re-run's first were encoded ahead, among them shard 1's first, during shard 0
    assert reused == [False, True, True, True, False, True]
    monkeypatch.setattr(worker, "_commit", commit)
    monkeypatch.setattr(sam, "prefetch", lambda images: None)
    unprefetched = tmp_path / "unprefetched"
    assert run_build(config(dota, unprefetched, shard_size=3, **options)).ok
    assert output_files(local) == output_files(unprefetched)
