"""coco/instances.json assembled from the shards' COCO fragments: the bytes write_coco writes,
whatever happened to the fragments (missing, stale, damaged) or to the build (killed, resumed)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from samrs.build import run_build
from samrs.build.fragments import coco_options, fragment_origin, write_instances
from samrs.build.layout import Layout
from samrs.outputs.coco import read_fragment_header, write_coco, write_fragment
from samrs.outputs.manifest import read_table
from samrs.synth import write_synthetic
from tests.helpers.build import config, output_files

OPTIONS = {"shard_size": 3, "patch_size": 512, "gap": 100, "min_rbox_iou": 0.7}
"""Tiles, several shards, and rejected instances (grabcut masks under a strict gate)."""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 synthetic DOTA images, one of them truncated (an error image)."""
    root = tmp_path_factory.mktemp("frag") / "dota"
    write_synthetic("dota", root, 4, 3)
    images = sorted((root / "train" / "images").glob("*.png"))
    images[0].write_bytes(images[0].read_bytes()[:200])
    return root


def _build(root: Path, out: Path, **options: object) -> Path:
    summary = run_build(config(root, out, **{**OPTIONS, **options}))
    assert summary.state == "complete", summary.failed_shards
    return out


def _write_coco(out: Path, tmp: Path, **options: bool) -> bytes:
    write_coco(out, tmp / "expected.json", **options)
    return (tmp / "expected.json").read_bytes()


@pytest.fixture(scope="module")
def rich(source: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("rich") / "out"
    return _build(source, out, include_rejected=True, polygons=True)


def test_assembled_document_is_write_coco_s(rich: Path, tmp_path: Path) -> None:
    layout = Layout(rich)
    shards = layout.committed_shards()
    assert len(shards) >= 3
    assert {int(p.stem.split("-")[1]) for p in (layout.state / "coco").iterdir()} == shards
    images = read_table(rich, "images").to_pylist()
    instances = read_table(rich, "instances").to_pylist()
    # the truncated image's tiles: error rows, no tile image (their shard commits)
    assert any(r["status"] == "error" and r["tile_window"] for r in images)
    assert any(r["status"] == "ok" and r["tile_window"] for r in images)
    assert any(not r["kept"] for r in instances) and any(r["kept"] for r in instances)
    expected = _write_coco(rich, tmp_path, include_rejected=True, polygons=True)
    assert (rich / "coco" / "instances.json").read_bytes() == expected
    doc = json.loads(expected)
    assert any(isinstance(a["segmentation"], list) for a in doc["annotations"])
    assert any(not a["kept"] for a in doc["annotations"])
    assert max(a["image_id"] for a in doc["annotations"]) > 3  # shifted past the first shard


def test_default_options_and_box_substitution(source: Path, tmp_path: Path) -> None:
    out = _build(source, tmp_path / "box", on_reject="box", shard_size=5)
    instances = read_table(out, "instances").to_pylist()
    assert any(r["substituted"] for r in instances)
    assert (out / "coco" / "instances.json").read_bytes() == _write_coco(out, tmp_path)


def test_missing_stale_and_damaged_fragments_are_made_again(rich: Path, tmp_path: Path) -> None:
    layout = Layout(rich)
    cfg = config(Path("unused"), rich, include_rejected=True, polygons=True)
    options = coco_options(cfg)
    shards = sorted(layout.committed_shards())
    originals = {s: layout.coco_fragment(s).read_bytes() for s in shards}
    expected = (rich / "coco" / "instances.json").read_bytes()
    a, b, c, d = shards[:4] if len(shards) >= 4 else [*shards, shards[0]][:4]
    layout.coco_fragment(a).unlink()  # missing (a shard of an older samrs)
    stale = layout.coco_fragment(b)
    stale.write_bytes(originals[c])  # another shard's fragment: made from other parts
    damaged = layout.coco_fragment(c)
    damaged.write_bytes(originals[c][:-40])  # cut short
    record = json.loads(layout.shard_record(d).read_text())
    write_fragment(  # made with other options (polygons off) from the right parts
        layout.coco_fragment(d),
        layout.part("images", d),
        layout.part("instances", d),
        fragment_origin(record["parts"]),
        coco_options(config(Path("unused"), rich, include_rejected=True)),
    )
    (rich / "coco" / "instances.json").unlink()
    write_instances(layout, cfg)
    assert (rich / "coco" / "instances.json").read_bytes() == expected
    for s in shards:
        assert layout.coco_fragment(s).read_bytes() == originals[s]
        origin = fragment_origin(json.loads(layout.shard_record(s).read_text())["parts"])
        assert read_fragment_header(layout.coco_fragment(s), origin, options) is not None
    assert not (layout.state / "tmp").exists() or not any((layout.state / "tmp").iterdir())


def test_unreadable_shard_record_falls_back_to_the_parts(rich: Path, tmp_path: Path) -> None:
    layout = Layout(rich)
    cfg = config(Path("unused"), rich, include_rejected=True, polygons=True)
    record = layout.shard_record(0)
    saved = record.read_bytes()
    fragment = layout.coco_fragment(0).read_bytes()
    try:
        record.unlink()
        layout.coco_fragment(0).unlink()
        write_instances(layout, cfg)
        assert layout.coco_fragment(0).read_bytes() == fragment  # digests of the parts
        assert (rich / "coco" / "instances.json").read_bytes() == _write_coco(
            rich, tmp_path, include_rejected=True, polygons=True
        )
    finally:
        record.write_bytes(saved)


def test_uncommit_removes_the_fragment(rich: Path) -> None:
    layout = Layout(rich)
    shard = max(layout.committed_shards())
    saved = {
        p: p.read_bytes()
        for p in (
            *(layout.part(t, shard) for t in ("errors", "instances", "images")),
            layout.coco_fragment(shard),
            layout.shard_record(shard),
            layout.complete_marker,
        )
    }
    try:
        layout.uncommit(shard)
        assert not layout.coco_fragment(shard).exists()
    finally:
        for path, data in saved.items():
            path.write_bytes(data)


@pytest.mark.slow
def test_killed_build_resumed_gives_the_same_document(
    source: Path, rich: Path, tmp_path: Path
) -> None:
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "samrs.cli", "-q", "build", "--source", "dota", "--root",
            str(source), "--out", str(out), "--segmenter", "grabcut", "--gpus", "0",
            "--shard-size", "3", "--patch-size", "512", "--gap", "100", "--min-rbox-iou", "0.7",
            "--include-rejected", "--polygons"]  # fmt: skip
    env = {**os.environ, "SAMRS_FAULT_INJECT": "kill:2"}
    proc = subprocess.run(args, env=env, capture_output=True, timeout=300)
    assert proc.returncode == 77, proc.stderr.decode()  # died inside shard 2
    layout = Layout(out)
    assert not (out / "coco" / "instances.json").exists()
    assert {int(p.stem.split("-")[1]) for p in (layout.state / "coco").iterdir()} == (
        layout.committed_shards()
    )
    _build(source, out, include_rejected=True, polygons=True)
    assert output_files(out) == output_files(rich)
    for shard in layout.committed_shards():
        assert layout.coco_fragment(shard).read_bytes() == (
            Layout(rich).coco_fragment(shard).read_bytes()
        )
