"""Builds over hostile inputs: decompression bombs, symlink loops and duplicates, file names
that are not UTF-8 or too long for an output file. Each becomes error rows for its images
only; the rest of the build completes and every object is accounted for."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from samrs.build import BuildConfig, run_build
from samrs.cli import main
from samrs.core.imageio import image_size, name_max
from samrs.outputs.export import BuildView
from samrs.outputs.manifest import read_table
from samrs.sources import read_dataset
from samrs.synth import write_synthetic
from samrs.tiling import tile_dataset
from tests.helpers.hostile import bomb_jpeg, bomb_png


def _config(root: Path, out: Path, **options: object) -> BuildConfig:
    values: dict[str, object] = {
        "source": "dota",
        "root": str(root),
        "out": str(out),
        "segmenter": "box",
        "shard_size": 2,
        "progress": False,
    }
    values.update(options)
    return BuildConfig(**values)  # type: ignore[arg-type]


def _label_objects(path: Path | bytes) -> int:
    with open(path, encoding="utf-8") as handle:
        return sum(1 for line in handle if len(line.split()) in (9, 10))


@pytest.mark.slow
def test_bombs_loops_duplicates_and_bad_names_fail_only_their_images(tmp_path: Path) -> None:
    root = tmp_path / "dota"
    write_synthetic("dota", root, 5, 11)
    train = root / "train"
    labels = {p.stem: p for p in train.glob("labelTxt/*.txt")}
    busy = sorted(labels, key=lambda s: -_label_objects(labels[s]))[:2]
    # two decompression bombs (JPEG and PNG) with the labels of real images
    bomb_jpeg(train / "images" / "B1.jpg", 60000, 50000)
    shutil.copy(labels[busy[0]], train / "labelTxt" / "B1.txt")
    bomb_png(train / "images" / "B2.png", 45000, 45000)
    shutil.copy(labels[busy[1]], train / "labelTxt" / "B2.txt")
    # a directory cycle, and an image reached twice through a symlink
    (root / "loop").symlink_to(".")
    (train / "images" / "up").symlink_to("..")
    (train / "images" / "D1.png").symlink_to(f"{busy[0]}.png")
    shutil.copy(labels[busy[0]], train / "labelTxt" / "D1.txt")
    # a file name that is not UTF-8
    raw = os.fsencode(train)
    shutil.copy(raw + f"/images/{busy[1]}.png".encode(), raw + b"/images/N\xe9.png")
    shutil.copy(raw + f"/labelTxt/{busy[1]}.txt".encode(), raw + b"/labelTxt/N\xe9.txt")

    out = tmp_path / "out"
    summary = run_build(_config(root, out, max_image_pixels=2_000_000_000))
    assert summary.state == "complete" and summary.ok
    assert BuildView.open(out).max_pixels == 2_000_000_000  # export reads with the same limit

    errors = read_table(out, "errors").to_pylist()
    by_id = {e["image_id"]: e for e in errors}
    assert by_id["B1"]["stage"] == by_id["B2"]["stage"] == "image"
    for image_id, size in (("B1", "60000x50000"), ("B2", "45000x45000")):
        message = by_id[image_id]["message"]
        assert size in message and image_id in message and "--max-image-pixels" in message
        assert "limit of 2,000,000,000 pixels" in message
    assert by_id["D1"]["message"].startswith("duplicate via symlink: ")
    assert by_id["N\\xe9"]["stage"] == "read" and "not valid UTF-8" in by_id["N\\xe9"]["message"]
    loops = [e for e in errors if e["source_file"] == str(root / "loop")]
    assert len(loops) == 1 and loops[0]["message"].startswith("duplicate via symlink")
    assert all(e["message"] for e in errors)

    images = read_table(out, "images").to_pylist()
    status = {r["image_id"]: r["status"] for r in images}
    assert status.pop("B1") == status.pop("B2") == "error"
    assert sorted(status) == sorted(f"P{i:04d}" for i in range(5))  # nothing read twice
    assert set(status.values()) <= {"ok", "empty"}
    assert (out / "semantic" / f"{busy[0]}.png").is_file()
    # every object on disk: an instance row or inside an errors row
    instances = read_table(out, "instances")
    on_disk = sum(_label_objects(p) for p in root.rglob("*.txt"))  # links not followed
    assert instances.num_rows + sum(e["n_objects"] for e in errors) == on_disk
    assert by_id["B1"]["n_objects"] == by_id["D1"]["n_objects"] == _label_objects(labels[busy[0]])
    assert by_id["B2"]["n_objects"] == by_id["N\\xe9"]["n_objects"] > 0


@pytest.mark.slow
def test_tiles_whose_names_are_too_long_are_error_rows(tmp_path: Path) -> None:
    root = tmp_path / "dota"
    write_synthetic("dota", root, 3, 5)
    train = root / "train"
    source = next(p for p in sorted(train.glob("labelTxt/*.txt")) if _label_objects(p) > 0).stem
    out = tmp_path / "out"
    limit = name_max(tmp_path)

    def suffixes(stem: str) -> list[str]:
        tiles = tile_dataset(read_dataset("dota", root), 512, 100)
        return [t.image_id[len(stem) :] for t in tiles.images if t.image_id.startswith(stem)]

    lengths = [len(s) for s in suffixes(source)]
    # "fits": its longest tile name is exactly the limit; "long": its shortest is one over
    fits = "F" * (limit - len(".png") - max(lengths))
    long = "L" * (limit - len(".png") - min(lengths) + 1)
    for stem in (fits, long):
        shutil.copy(train / "images" / f"{source}.png", train / "images" / f"{stem}.png")
        shutil.copy(train / "labelTxt" / f"{source}.txt", train / "labelTxt" / f"{stem}.txt")
    tiles = tile_dataset(read_dataset("dota", root), 512, 100)
    long_tiles = [t for t in tiles.images if t.image_id.startswith(long)]
    assert long_tiles and all(len(f"{t.image_id}.png") > limit for t in long_tiles)

    summary = run_build(_config(root, out, patch_size=512, gap=100))
    assert summary.state == "complete" and summary.ok
    errors = read_table(out, "errors").to_pylist()
    assert {e["image_id"] for e in errors} == {t.image_id for t in long_tiles}
    for e in errors:
        assert e["stage"] == "read" and e["source_file"] == str(train / "images" / f"{long}.png")
        assert f"over the file system's limit of {limit} bytes" in e["message"]
    assert sum(e["n_objects"] for e in errors) == sum(len(t.objects) for t in long_tiles) > 0
    images = read_table(out, "images").to_pylist()
    assert len(images) == len(tiles.images) - len(long_tiles)
    fitting = [r for r in images if r["image_id"].startswith(fits)]
    assert max(len(f"{r['image_id']}.png") for r in fitting) == limit
    for r in fitting:  # written under their full names (temporary names were shortened)
        assert (out / r["semantic_file"]).is_file() and (out / r["file_name"]).is_file()
    instances = read_table(out, "instances")
    assert instances.num_rows == sum(len(t.objects) for t in tiles.images) - sum(
        e["n_objects"] for e in errors
    )
    assert run_build(_config(root, out, patch_size=512, gap=100)).state == "already-complete"


def test_split_applies_the_pixel_limit_to_the_images_it_cuts(tmp_path: Path) -> None:
    root = tmp_path / "dota"
    write_synthetic("dota", root, 2, 3)
    sizes = [image_size(p) for p in sorted(root.rglob("*.png"))]
    limit = min(w * h for w, h in sizes) - 1  # every image is over it
    out = tmp_path / "patches"
    args = ["split", "--source", "dota", "--root", str(root), "--out", str(out)]
    result = CliRunner().invoke(
        main, [*args, "--patch-size", "512", "--gap", "100", "--max-image-pixels", str(limit)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads((out / "split.json").read_text())
    assert report["patches"] == 0 and report["errors"]
    assert {e["stage"] for e in report["errors"]} == {"image"}
    assert all(f"limit of {limit:,} pixels" in e["message"] for e in report["errors"])
    assert sum(e["n_objects"] for e in report["errors"]) == sum(
        len(t.objects) for t in tile_dataset(read_dataset("dota", root), 512, 100).images
    )


def test_split_skips_patches_whose_names_are_too_long(tmp_path: Path) -> None:
    root = tmp_path / "dota"
    write_synthetic("dota", root, 2, 3)
    train = root / "train"
    source = sorted(train.glob("images/*.png"))[0].stem
    long = "L" * (name_max(tmp_path) - len(".png") - len("__512__0___0") + 1)
    shutil.copy(train / "images" / f"{source}.png", train / "images" / f"{long}.png")
    shutil.copy(train / "labelTxt" / f"{source}.txt", train / "labelTxt" / f"{long}.txt")
    tiles = tile_dataset(read_dataset("dota", root), 512, 100).images
    long_tiles = [t for t in tiles if t.image_id.startswith(long)]
    assert long_tiles and all(len(f"{t.image_id}.png") > name_max(tmp_path) for t in long_tiles)
    out = tmp_path / "patches"
    args = ["split", "--source", "dota", "--root", str(root), "--out", str(out)]
    result = CliRunner().invoke(main, [*args, "--patch-size", "512", "--gap", "100"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "split.json").read_text())
    assert {e["image_id"] for e in report["errors"]} == {t.image_id for t in long_tiles}
    assert all("output file name too long" in e["message"] for e in report["errors"])
    assert report["patches"] == len(tiles) - len(long_tiles) == len(list(out.rglob("*.png")))
    assert sum(e["n_objects"] for e in report["errors"]) == sum(len(t.objects) for t in long_tiles)
