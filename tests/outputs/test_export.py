"""Exporters (mmseg, coco, ros-sam, geojson) and the `samrs export` command."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image
from pycocotools.coco import COCO

from samrs.cli import main
from samrs.core.geometry import box_polygon, rasterize_polygon
from samrs.outputs.export import ExportError, export, place_file
from samrs.outputs.manifest import part_path, read_table, write_part
from samrs.outputs.select import Selection
from samrs.outputs.semantic import read_png_palette, read_semantic_png
from tests.helpers.outputs import FAKE, make_fake_build


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake") / "out"
    make_fake_build(out)
    return out


def _src(build, name: str):
    return build.parent / f"{build.name}_src" / "images" / name


def test_mmseg_layout_copies_labels_and_links_images(build, tmp_path) -> None:
    to = tmp_path / "mm"
    counts = export(build, "mmseg", to)
    assert counts == {"images": 3, "kept": 4, "repainted": 0, "splits": 2}
    assert (to / "splits" / "train.txt").read_text() == "P0001\nP0002__20__10\n"
    assert (to / "splits" / "val.txt").read_text() == "P0003\n"
    for split, name in (("train", "P0001"), ("train", "P0002__20__10"), ("val", "P0003")):
        ann = to / "ann_dir" / split / f"{name}.png"
        assert ann.read_bytes() == (build / "semantic" / f"{name}.png").read_bytes()
        assert (to / "img_dir" / split / f"{name}.png").is_file()
    img = to / "img_dir" / "train" / "P0001.png"
    assert os.stat(img).st_ino == os.stat(_src(build, "P0001.png")).st_ino  # hard link
    assert (
        os.stat(to / "img_dir" / "train" / "P0002__20__10.png").st_ino
        == os.stat(build / "images" / "P0002__20__10.png").st_ino
    )
    info = json.loads((to / "samrs_mmseg.json").read_text())
    table = FAKE["class_table"]
    assert info["classes"] == list(table.names) and info["ignore_index"] == 255
    assert info["palette"][6] == list(table.palette[6])
    assert info["splits"] == {"train": 2, "val": 1}
    config: dict = {}
    exec((to / "samrs_dataset.py").read_text(), config)
    assert config["metainfo"]["classes"] == tuple(table.names)
    assert config["train_dataset"]["data_prefix"] == {
        "img_path": "img_dir/train",
        "seg_map_path": "ann_dir/train",
    }
    assert config["val_dataset"]["ann_file"] == "splits/val.txt"
    # relative to the config file: mmengine substitutes {{ fileDirname }} on load
    assert config["data_root"] == "{{ fileDirname }}"
    assert str(to) not in (to / "samrs_dataset.py").read_text()
    assert config["metainfo"]["palette"] == [list(c) for c in table.palette]
    text = (to / "samrs_dataset.py").read_text().replace("{{ fileDirname }}", str(to))
    moved: dict = {}
    exec(text, moved)
    root = Path(moved["data_root"])
    for split in ("train", "val"):
        ds = moved[f"{split}_dataset"]
        names = (root / ds["ann_file"]).read_text().split()
        for name in names:
            assert (root / ds["data_prefix"]["img_path"] / f"{name}{ds['img_suffix']}").is_file()
            assert (root / ds["data_prefix"]["seg_map_path"] / f"{name}.png").is_file()


def test_mmseg_rethreshold_repaints_from_manifest_masks(build, tmp_path) -> None:
    to = tmp_path / "mm"
    counts = export(build, "mmseg", to, Selection(min_score=0.92), images="copy")
    assert counts["kept"] == 2 and counts["repainted"] == 3
    plane = rasterize_polygon(box_polygon((2, 3, 22, 18)), 24, 32)
    np.testing.assert_array_equal(
        read_semantic_png(to / "ann_dir/train/P0001.png"), np.where(plane, 0, 255)
    )
    tile = read_semantic_png(to / "ann_dir/train/P0002__20__10.png")
    assert set(np.unique(tile).tolist()) == {9, 255}  # large-vehicle gone, substituted box stays
    assert (tile[:5, :5] == 9).all() and (tile == 9).sum() == 25
    assert not os.path.samefile(to / "img_dir/train/P0001.png", _src(build, "P0001.png"))
    # the build's own labels are untouched and more permissive
    assert (read_semantic_png(build / "semantic" / "P0001.png") == 4).sum() == 36


def test_mmseg_class_subset_renumbers(build, tmp_path) -> None:
    to = tmp_path / "mm"
    export(build, "mmseg", to, Selection(classes=("storage tank", "Small-Vehicle")))
    info = json.loads((to / "samrs_mmseg.json").read_text())
    assert info["classes"] == ["small-vehicle", "storage-tank"]
    assert info["samrs_class_ids"] == [4, 9]
    a = read_semantic_png(to / "ann_dir/train/P0001.png")
    assert set(np.unique(a).tolist()) == {0, 255} and (a == 0).sum() == 36
    b = read_semantic_png(to / "ann_dir/train/P0002__20__10.png")
    assert set(np.unique(b).tolist()) == {1, 255} and (b == 1).sum() == 25
    palette = read_png_palette(to / "ann_dir/train/P0001.png")
    assert tuple(palette[3:6]) == FAKE["class_table"].palette[9]


def test_mmseg_is_deterministic(build, tmp_path) -> None:
    sel = Selection(min_rbox_iou=0.9)
    export(build, "mmseg", tmp_path / "a", sel)
    export(build, "mmseg", tmp_path / "b", sel)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.png"))
    assert len(files) == 6
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_ros_sam_layout_and_dtypes(build, tmp_path) -> None:
    to = tmp_path / "ros"
    counts = export(build, "ros-sam", to)
    assert counts == {"images": 2, "instances": 4, "skipped_without_kept": 1}
    boxes = np.load(to / "boxes" / "P0001.npy")
    assert boxes.dtype == np.float32 and boxes.shape == (2, 4)
    np.testing.assert_array_equal(boxes, [[2, 2, 22, 18], [10, 6, 16, 12]])
    masks = np.load(to / "onehotmask" / "P0001.npy")
    assert masks.dtype == np.uint8 and masks.shape == (2, 24, 32)
    assert set(np.unique(masks).tolist()) == {0, 255}
    assert (masks[0] == 255).sum() == 300 and (masks[1] == 255).sum() == 36
    img = np.asarray(Image.open(to / "img" / "P0001.png"))
    np.testing.assert_array_equal(img, np.asarray(Image.open(_src(build, "P0001.png"))))
    assert np.load(to / "onehotmask" / "P0002__20__10.npy").shape == (2, 20, 20)
    assert not (to / "img" / "P0003.png").exists()
    strict = export(build, "ros-sam", tmp_path / "ros2", Selection(min_score=0.92))
    assert strict["instances"] == 2
    assert np.load(tmp_path / "ros2" / "boxes" / "P0001.npy").shape == (1, 4)


def test_windows_of_whole_source_images_are_cut(tmp_path) -> None:
    out = tmp_path / "out"
    make_fake_build(out)
    big = np.random.default_rng(7).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    Image.fromarray(big).save(tmp_path / "out_src" / "images" / "P0002.jpg", quality=100)
    Image.fromarray(big).save(tmp_path / "out_src" / "images" / "P0002.png")
    rows = read_table(out, "images").to_pylist()[:2]
    rows[1]["file_name"] = "images/P0002.png"  # relative to the source root, whole image
    write_part(part_path(out, "images", 0), "images", rows)
    export(out, "ros-sam", tmp_path / "ros")
    img = np.asarray(Image.open(tmp_path / "ros" / "img" / "P0002__20__10.png"))
    np.testing.assert_array_equal(img, big[10:30, 20:40])
    export(out, "mmseg", tmp_path / "mm")
    assert Image.open(tmp_path / "mm/img_dir/train/P0002__20__10.png").size == (20, 20)


def test_missing_image_is_a_clear_error(tmp_path) -> None:
    out = tmp_path / "out"
    make_fake_build(out)
    (tmp_path / "out_src" / "images" / "P0001.png").unlink()
    with pytest.raises(ExportError, match=r"image 'P0001': file not found \(tried .*P0001.png"):
        export(out, "mmseg", tmp_path / "mm")


def test_coco_export_per_split_with_images(build, tmp_path) -> None:
    to = tmp_path / "coco"
    counts = export(build, "coco", to, Selection(include_rejected=True), polygons=True)
    assert counts["files"] == ["annotations/instances_train.json", "annotations/instances_val.json"]
    assert (counts["images"], counts["annotations"], counts["kept"]) == (3, 6, 4)
    with contextlib.redirect_stdout(io.StringIO()):
        train = COCO(str(to / "annotations" / "instances_train.json"))
    assert sorted(i["file_name"] for i in train.dataset["images"]) == [
        "P0001.png",
        "P0002__20__10.png",
    ]
    for image in train.dataset["images"]:
        assert (to / "images" / "train" / image["file_name"]).is_file()
    assert isinstance(train.dataset["annotations"][0]["segmentation"], list)
    assert (to / "images" / "val" / "P0003.png").is_file()
    plain = export(build, "coco", tmp_path / "c2", images="none")
    doc = json.loads((tmp_path / "c2" / "annotations" / "instances_train.json").read_text())
    assert doc["images"][0]["file_name"] == "images/P0001.png"
    assert plain["annotations"] == 4 and not (tmp_path / "c2" / "images").exists()


def test_geojson_export_writes_geotiff_labels(build, tmp_path) -> None:
    to = tmp_path / "geo"
    counts = export(build, "geojson", to)
    assert counts["geotiffs"] == 1 and counts["features"] == 2
    assert pq.read_table(to / "instances.parquet").num_rows == 2  # GeoParquet twin
    with rasterio.open(to / "semantic" / "P0001.tif") as ds:
        np.testing.assert_array_equal(
            ds.read(1), read_semantic_png(build / "semantic" / "P0001.png")
        )
        assert ds.crs.to_epsg() == 32633


def test_existing_output_needs_overwrite(build, tmp_path) -> None:
    to = tmp_path / "mm"
    export(build, "mmseg", to)
    (to / "mine.txt").write_text("keep me")
    with pytest.raises(ExportError, match="not empty; use --overwrite"):
        export(build, "mmseg", to)
    export(build, "mmseg", to, Selection(splits=("val",)), overwrite=True)
    assert not (to / "img_dir" / "train").exists()  # stale files of the earlier export removed
    assert (to / "mine.txt").read_text() == "keep me"


def test_cli_json_and_errors(build, tmp_path) -> None:
    runner = CliRunner()
    to = tmp_path / "ros"
    args = ["export", str(build), "--format", "ros-sam", "--to", str(to)]
    result = runner.invoke(main, [*args, "--json", "--min-score", "0.92"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    # kept at 0.92: the plane (P0001) and the substituted box (tile); P0003 has none
    assert summary == {"format": "ros-sam", "to": str(to), "images": 2, "instances": 2,
                       "skipped_without_kept": 1}  # fmt: skip
    again = runner.invoke(main, args)
    assert again.exit_code == 1 and "not empty; use --overwrite" in again.output
    bad = runner.invoke(main, [*args, "--overwrite", "--classes", "boat"])
    assert bad.exit_code == 1 and "unknown class 'boat'" in bad.output
    usage = runner.invoke(main, ["export", str(build), "--format", "mmseg", "--to",
                                 str(tmp_path / "x"), "--polygons"])  # fmt: skip
    assert usage.exit_code == 2 and "--polygons applies to --format coco" in usage.output
    ok = runner.invoke(main, ["export", str(build), "--format", "mmseg", "--to",
                              str(tmp_path / "mm"), "--classes", "plane,ship", "--split", "train"])  # fmt: skip
    assert ok.exit_code == 0, ok.output
    assert "exported mmseg" in ok.stdout and "images 2" in ok.stdout


def test_place_file_modes(tmp_path) -> None:
    src = tmp_path / "a.png"
    src.write_bytes(b"pixels")
    place_file(src, tmp_path / "h" / "a.png", "hard")
    assert os.path.samefile(tmp_path / "h" / "a.png", src)
    place_file(src, tmp_path / "s" / "a.png", "symlink")
    assert (tmp_path / "s" / "a.png").is_symlink()
    assert os.readlink(tmp_path / "s" / "a.png") == str(src.resolve())
    place_file(src, tmp_path / "c" / "a.png", "copy")
    assert not os.path.samefile(tmp_path / "c" / "a.png", src)
    assert (tmp_path / "c" / "a.png").read_bytes() == b"pixels"
    place_file(src, tmp_path / "c" / "a.png", "symlink")  # replaces what was there
    assert (tmp_path / "c" / "a.png").is_symlink()
    with pytest.raises(ValueError, match="unknown image mode"):
        place_file(src, tmp_path / "x.png", "move")
