"""Decode processes (``--decoders``): the bytes of threads, source affinity, dead processes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future
from concurrent.futures.process import BrokenProcessPool
from dataclasses import replace
from pathlib import Path

import pytest
from click.testing import CliRunner

from samrs.build import BuildError, run_build, worker
from samrs.build.config import BuildConfig
from samrs.build.plan import make_plan
from samrs.build.run import resolve_config
from samrs.cli import main
from samrs.outputs.manifest import read_table
from tests.helpers.build import config, output_files


@pytest.fixture(scope="module")
def tiled(dota: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared DOTA images, one of them truncated (its header reads, its pixels do not):
    built with 512-pixel tiles, so every source has several tiles over several shards."""
    root = tmp_path_factory.mktemp("decoders") / "dota"
    shutil.copytree(dota, root)
    broken = sorted((root / "train" / "images").glob("*.png"))[1]
    broken.write_bytes(broken.read_bytes()[:200])
    return root


def tiled_config(root: Path, out: Path, **options: object) -> BuildConfig:
    return config(root, out, patch_size=512, gap=100, shard_size=3, **options)


class _DiesWhenWaitedFor(Future):
    """A read whose decode process dies while the worker waits for it."""

    def result(self, timeout: float | None = None):  # type: ignore[no-untyped-def]
        if not self.done():
            self.set_exception(BrokenProcessPool("a process was terminated abruptly"))
        return super().result(timeout)


def _open_sources() -> list[str]:
    """In a decode process: the source files it has open."""
    cache = worker._DECODE_CACHE
    return [] if cache is None else [p for p, (s, _) in cache.sources.items() if s is not None]


@pytest.mark.slow
def test_decode_processes_write_the_bytes_of_threads(tiled: Path, tmp_path: Path) -> None:
    """Tiles of several sources over several shards, and a source that cannot be decoded:
    decode processes give the bytes of threads, the same errors rows (naming the file), and
    stay up for the next build."""
    outs = []
    for decoders in (0, 2, 2):
        out = tmp_path / f"decoders-{decoders}-{len(outs)}"
        summary = run_build(tiled_config(tiled, out, decoders=decoders))
        assert summary.ok and summary.config["decoders"] == decoders
        assert read_table(out, "images").num_rows > 10
        outs.append(out)
        if decoders:
            assert len(worker._DECODERS) == 2
    first = output_files(outs[0])
    assert all(output_files(out) == first for out in outs[1:])
    errors = read_table(outs[0], "errors").to_pylist()
    broken = str(sorted((tiled / "train" / "images").glob("*.png"))[1])
    assert errors and all(e["source_file"] == broken and e["stage"] == "image" for e in errors)
    assert all(f"cannot read image {broken}" in e["message"] for e in errors)
    assert len({e["shard"] for e in errors}) > 1  # the broken source's tiles span shards
    pids = {pool.submit(os.getpid).result() for pool in worker._DECODERS}
    assert len(pids) == 2 and os.getpid() not in pids


@pytest.mark.slow
def test_every_image_of_a_source_is_decoded_in_one_process(tiled: Path, tmp_path: Path) -> None:
    """Source affinity: the tiles of a source file are decoded in the one decode process
    :func:`decoder_index` names, where the source is open, and in no other; closing the
    reader closes the processes' sources but not the processes."""
    cfg = resolve_config(tiled_config(tiled, tmp_path / "out", decoders=2))
    images = [image for shard in make_plan(cfg).shards for image in shard.images]
    broken = str(sorted((tiled / "train" / "images").glob("*.png"))[1])
    by_source: dict[str, list] = {}
    for image in images:
        by_source.setdefault(image.image_path, []).append(image)
    assert len(by_source) == 6 and max(len(tiles) for tiles in by_source.values()) > 1
    reader = worker.ImageReader(cfg)
    try:
        assert reader.decoders is not None
        for path, tiles in by_source.items():
            for image in tiles:
                reader.read_ahead(image)
            for image in tiles:
                if path == broken:
                    with pytest.raises(Exception, match=f"cannot read image {path}"):
                        reader.read(image).result()
                else:
                    assert reader.read(image).result()[0].shape[:2] == (image.height, image.width)
            opened = [pool.submit(_open_sources).result() for pool in reader.decoders]
            k = worker.decoder_index(path, 2)
            assert path in opened[k]  # (the broken one too: its header reads)
            assert path not in opened[1 - k]
    finally:
        reader.close()
    assert all(not pool.submit(_open_sources).result() for pool in worker._DECODERS)


def test_decoder_index_is_a_stable_hash_of_the_path() -> None:
    assert worker.decoder_index("/data/P0001.png", 1) == 0
    assert worker.decoder_index("/data/P0001.png", 4) == 3199825262 % 4 == 2  # zlib.crc32
    assert {worker.decoder_index(f"/data/P{i:04d}.png", 3) for i in range(30)} == {0, 1, 2}


@pytest.mark.slow
def test_a_dead_decode_process_fails_the_attempt_then_is_replaced(
    dota: Path, tmp_path: Path
) -> None:
    """A decode process that dies is not a bad image: the shard's attempt fails with a
    message saying so (no errors row), and the next attempt reads on a new process."""
    cfg = resolve_config(config(dota, tmp_path / "out", decoders=1, shard_size=6))
    plan = make_plan(cfg)
    shard = plan.shards[0]
    reader = worker.ImageReader(cfg)
    try:
        assert reader.decoders is not None
        old = reader.decoders[0]
        os.kill(old.submit(os.getpid).result(), signal.SIGKILL)
        deadline = time.monotonic() + 60
        while not getattr(old, "_broken", False) and time.monotonic() < deadline:
            time.sleep(0.05)
        reader.ahead[reader._key(shard.images[0])] = _DiesWhenWaitedFor()
        with pytest.raises(RuntimeError, match=r"decode process reading .* died"):
            worker.stage_shard(shard, cfg, plan.classes, reader)
        dead: Future = Future()  # a read ahead that failed before the retry asks for it
        dead.set_exception(BrokenProcessPool("a process was terminated abruptly"))
        reader.ahead[reader._key(shard.images[0])] = dead
        staged = worker.stage_shard(shard, cfg, plan.classes, reader)
        assert isinstance(staged, worker.StagedShard)
        assert reader.decoders[0] is not old
        assert not staged.rows["errors"] and len(staged.rows["images"]) == len(shard.images)
    finally:
        reader.close()


def test_decoders_default_to_a_few_with_a_model_on_a_gpu(dota: Path, tmp_path: Path) -> None:
    base = config(dota, tmp_path / "o", segmenter="sam", random_weights=True)
    assert resolve_config(replace(base, device="cpu")).decoders == 0
    assert resolve_config(replace(base, segmenter="grabcut")).decoders == 0
    assert resolve_config(replace(base, device="cuda:0", gpus=1)).decoders == 2
    assert resolve_config(replace(base, decoders=3)).decoders == 3
    with pytest.raises(BuildError, match="--decoders"):
        resolve_config(replace(base, decoders=-1))
    assert replace(base, decoders=4).fingerprint() == base.fingerprint()  # execution only


def test_decoders_option_on_build_and_bench() -> None:
    for command in ("build", "bench"):
        result = CliRunner().invoke(main, [command, "--help"])
        assert result.exit_code == 0
        assert "--decoders" in result.output


@pytest.mark.slow
def test_dask_workers_with_decode_processes(tiled: Path, tmp_path: Path) -> None:
    """``--workers 2`` (Dask, a decode process each): the bytes of a one-worker build with
    threads, and nothing of the build left holding its pipes once it exited."""
    reference = tmp_path / "reference"
    assert run_build(tiled_config(tiled, reference, decoders=0)).ok
    out = tmp_path / "dask"
    args = [sys.executable, "-m", "samrs.cli", "build", "--source", "dota", "--root", str(tiled),
            "--out", str(out), "--segmenter", "grabcut", "--patch-size", "512", "--gap", "100",
            "--shard-size", "3", "--gpus", "0", "--workers", "2", "--decoders", "1"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, err = proc.communicate(timeout=600)  # waits for EOF: every holder of the pipes gone
    assert proc.returncode == 0, err.decode()
    assert output_files(out) == output_files(reference)
