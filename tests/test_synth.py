"""Tests of samrs.synth and `samrs synth`: layouts, GT masks, determinism, reader round trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO

from samrs.cli import main
from samrs.core import rle
from samrs.core.classes import class_table
from samrs.core.geometry import mask_iou, polygon_area, rasterize_polygon
from samrs.core.imageio import image_size, read_image
from samrs.sources import read_dataset
from samrs.synth import FORMATS, GT_FILE, write_synthetic

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def datasets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The default dataset (8 images, seed 0) of every format."""
    base = tmp_path_factory.mktemp("synth")
    out = {}
    for fmt in FORMATS:
        summary = write_synthetic(fmt, base / fmt)
        assert summary.n_images == 8 and summary.n_empty == 1
        out[fmt] = base / fmt
    return out


def _gt(root: Path) -> dict:
    return json.loads((root / GT_FILE).read_text())


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.mark.slow
@pytest.mark.parametrize("fmt", FORMATS)
def test_deterministic_bytes(datasets: dict[str, Path], tmp_path: Path, fmt: str) -> None:
    write_synthetic(fmt, tmp_path / "again")
    assert _tree(tmp_path / "again") == _tree(datasets[fmt])


def test_seed_changes_the_data(tmp_path: Path) -> None:
    a = write_synthetic("hrsc", tmp_path / "a", n_images=2, seed=1)
    b = write_synthetic("hrsc", tmp_path / "b", n_images=2, seed=2)
    assert a.files == b.files
    assert (tmp_path / "a" / a.files[0]).read_bytes() != (tmp_path / "b" / b.files[0]).read_bytes()


def test_dota_layout_and_quirks(datasets: dict[str, Path]) -> None:
    root = datasets["dota"]
    assert sorted(p.name for p in (root / "train" / "images").iterdir()) == [
        f"P{i:04d}.png" for i in range(6)
    ]
    assert sorted(p.name for p in (root / "val" / "labelTxt").iterdir()) == [
        "P0006.txt",
        "P0007.txt",
    ]
    p0 = (root / "train/labelTxt/P0000.txt").read_bytes()
    assert p0.startswith(b"imagesource:GF\r\ngsd:0.") and b"\r\n" in p0
    p1 = (root / "train/labelTxt/P0001.txt").read_bytes()
    assert b"\r" not in p1 and p1.splitlines()[1] == b"gsd:null"
    p3 = (root / "train/labelTxt/P0003.txt").read_text()
    assert not p3.startswith("imagesource") and len(p3.split("\n")[0].split()) == 10
    tokens = p0.decode().splitlines()[2].split()
    assert all(t.lstrip("-").isdigit() for t in tokens[:8]) and tokens[9] in ("0", "1")
    assert image_size(root / "train/images/P0000.png") == (1300, 1100)
    assert max(max(image_size(p)) for p in root.glob("*/images/*.png")) > 1024
    # the empty image keeps its header-only label file
    assert (root / "train/labelTxt/P0005.txt").read_text().count("\n") <= 2


def test_dior_layout(datasets: dict[str, Path]) -> None:
    root = datasets["dior"]
    assert (root / "ImageSets/Main/train.txt").read_text().split() == [
        "00001", "00002", "00003", "00004"
    ]  # fmt: skip
    assert (root / "ImageSets/Main/test.txt").read_text().split() == ["00007", "00008"]
    assert (root / "JPEGImages-test/00008.jpg").is_file()
    assert (root / "JPEGImages-trainval/00001.jpg").is_file()
    assert image_size(root / "JPEGImages-trainval/00001.jpg") == (800, 800)
    obb = (root / "Annotations/Oriented Bounding Boxes/00001.xml").read_text()
    assert "<x_left_top>" in obb and "<type>robndbox</type>" in obb
    hbb_texts = [p.read_text() for p in (root / "Annotations/Horizontal Bounding Boxes").iterdir()]
    assert any("<robndbox>\n\t\t\t<xmin>" in t for t in hbb_texts)  # the robndbox quirk
    assert any("<bndbox>" in t for t in hbb_texts)
    names = {a["class_name"] for a in _gt(root)["annotations"]}
    assert "Expressway-Service-area" in names  # raw spelling


def test_fair1m_layout(datasets: dict[str, Path]) -> None:
    root = datasets["fair1m"]
    assert (root / "train/part1/images/0.tif").is_file()
    assert (root / "train/part2/labelXml/5.xml").is_file()
    assert sorted(p.name for p in (root / "validation/images").iterdir()) == ["0.tif", "1.tif"]
    text = (root / "train/part1/labelXml/0.xml").read_text()
    assert text.startswith('<?xml version="1.0" encoding="utf-8"?>\n<annotation>\n\t<source>')
    first = text.split("<points>")[1].split("</points>")[0]
    points = [p.split("</point>")[0] for p in first.split("<point>")[1:]]
    assert len(points) == 5 and points[0] == points[4]
    assert any(" " in a["class_name"] for a in _gt(root)["annotations"])
    assert image_size(root / "train/part1/images/0.tif") == (1300, 1100)


def test_hrsc_layout_and_colour_masks(datasets: dict[str, Path]) -> None:
    root = datasets["hrsc"]
    gt = _gt(root)
    assert (root / "ImageSets/trainval.txt").read_text().split() == [
        str(100000001 + i) for i in range(6)
    ]
    text = (root / "FullDataSet/Annotations/100000001.xml").read_bytes()
    assert b"<mbox_ang>" in text and b"\r\n" in text
    masks_checked = 0
    for image in gt["images"]:
        anns = [a for a in gt["annotations"] if a["image_id"] == image["id"]]
        if not anns:
            continue
        seg = read_image(root / image["segmentation_file"])
        xml = (root / image["annotation_file"]).read_text()
        colours = [c.split("</seg_color>")[0] for c in xml.split("<seg_color>")[1:]]
        assert len(colours) == len(anns)
        for ann, colour in zip(anns, colours, strict=True):
            rgb = np.array([int(v) for v in colour.split(",")])
            np.testing.assert_array_equal((seg == rgb).all(axis=2), rle.decode(ann["segmentation"]))
            masks_checked += 1
    assert masks_checked == len(gt["annotations"]) > 10


@pytest.mark.parametrize("fmt", FORMATS)
def test_gt_is_valid_coco_matching_the_files(datasets: dict[str, Path], fmt: str) -> None:
    root = datasets[fmt]
    gt = _gt(root)
    coco = COCO(str(root / GT_FILE))
    table = class_table(fmt)
    assert [c["name"] for c in gt["categories"]] == list(table.names)
    assert len(coco.getImgIds()) == 8
    for image in gt["images"]:
        assert image_size(root / image["file_name"]) == (image["width"], image["height"])
        assert (root / image["annotation_file"]).is_file()
    sizes = []
    for ann in gt["annotations"]:
        assert all((root / f).is_file() for f in ann["source_files"])
        assert ann["source_file"] == ann["source_files"][0]
        mask = coco.annToMask(ann).astype(bool)
        assert mask.sum() == ann["area"] > 0
        assert table.lookup(ann["class_name"]) == ann["category_id"] - 1
        sizes.append(max(ann["bbox"][2:]))
        assert ann["occluded"] < 0.41
    assert 8 <= min(sizes) <= 20 and max(sizes) >= 100  # tiny (8-20 px) and large objects
    assert len({a["class_name"] for a in gt["annotations"]}) >= (1 if fmt == "hrsc" else 6)
    assert any(a["occluded"] > 0 for a in gt["annotations"])  # some overlap
    # visible-part rule: the masks of one image are disjoint
    for image_id in coco.getImgIds():
        anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id))
        if anns:
            total = sum(coco.annToMask(a).astype(np.int32) for a in anns)
            assert total.max() <= 1


@pytest.mark.parametrize("fmt", FORMATS)
def test_masks_are_not_boxes(datasets: dict[str, Path], fmt: str) -> None:
    gt = _gt(datasets[fmt])
    fills, box_ious = [], []
    for ann in gt["annotations"]:
        mask = rle.decode(ann["segmentation"])
        fills.append(mask.sum() / polygon_area(ann["polygon"]))
        box = rasterize_polygon(ann["polygon"], *mask.shape)
        box_ious.append(mask_iou(box, mask))
    assert 0.5 <= float(np.mean(fills)) <= 0.9
    # every object not hidden by another and larger than a few pixels (where pixels are too
    # coarse to measure) fills 50-90% of its oriented box
    measurable = [
        f
        for f, a in zip(fills, gt["annotations"], strict=True)
        if a["occluded"] == 0 and polygon_area(a["polygon"]) >= 400
    ]
    assert len(measurable) >= 10
    assert min(measurable) >= 0.5 and max(measurable) <= 0.91
    assert float(np.mean(box_ious)) < 0.9
    assert {a["shape"] for a in gt["annotations"]} >= (
        {"ship"} if fmt == "hrsc" else {"ellipse", "plane", "ship", "rounded"}
    )


def test_objects_contrast_with_their_surroundings(datasets: dict[str, Path]) -> None:
    import cv2

    root = datasets["dota"]
    gt = _gt(root)
    image = gt["images"][0]
    pixels = read_image(root / image["file_name"]).astype(np.float64).mean(axis=2)
    diffs = []
    for ann in gt["annotations"]:
        if ann["image_id"] != image["id"] or ann["occluded"] > 0:
            continue
        mask = rle.decode(ann["segmentation"])
        ring = cv2.dilate(mask.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool) & ~mask
        diffs.append(abs(pixels[mask].mean() - pixels[ring].mean()))
    assert len(diffs) >= 5 and min(diffs) > 30


@pytest.mark.parametrize("fmt", FORMATS)
def test_background_is_textured(datasets: dict[str, Path], fmt: str) -> None:
    root = datasets[fmt]
    gt = _gt(root)
    image = gt["images"][0]
    gray = read_image(root / image["file_name"]).astype(np.float64).mean(axis=2)
    background = np.ones(gray.shape, dtype=bool)
    for ann in gt["annotations"]:
        if ann["image_id"] == image["id"]:
            background &= ~rle.decode(ann["segmentation"]).astype(bool)
    assert gray[background].std() > 4  # not a flat colour
    # structure larger than pixel noise: 32 px block means of the background vary too
    h, w = (s - s % 32 for s in gray.shape)
    blocks = gray[:h, :w].reshape(h // 32, 32, w // 32, 32).mean(axis=(1, 3))
    assert blocks.std() > 3


@pytest.mark.parametrize("fmt", FORMATS)
def test_round_trip_through_the_readers(datasets: dict[str, Path], fmt: str) -> None:
    root = datasets[fmt]
    gt = _gt(root)
    dataset = read_dataset(fmt, root)
    assert dataset.errors == []
    assert len(dataset.images) == 8
    assert dataset.n_objects == len(gt["annotations"])
    read = {}
    for image in dataset.images:
        for obj in image.objects:
            key = (os.path.relpath(obj.source_file, root), obj.source_line)
            assert key not in read
            read[key] = obj
    names = {c["id"]: c["name"] for c in gt["categories"]}
    for ann in gt["annotations"]:
        obj = read[(ann["source_file"], ann["source_line"])]
        assert obj.class_name == names[ann["category_id"]]
        np.testing.assert_allclose(obj.polygon, ann["polygon"], atol=1e-3)
        assert obj.difficult == bool(ann["difficult"])
    by_file = {os.path.relpath(im.image_path, root): im for im in dataset.images}
    for image in gt["images"]:
        record = by_file[image["file_name"]]
        assert (record.width, record.height) == (image["width"], image["height"])


def test_dior_horizontal_set_round_trip(datasets: dict[str, Path]) -> None:
    root = datasets["dior"]
    gt = _gt(root)
    dataset = read_dataset("dior", root, version="hbb")
    assert dataset.errors == [] and dataset.n_objects == len(gt["annotations"])
    read = {
        (os.path.relpath(o.source_file, root), o.source_line): o
        for im in dataset.images
        for o in im.objects
    }
    for ann in gt["annotations"]:
        obj = read[(ann["source_files"][1], ann["source_line"])]
        xs, ys = ann["polygon"][0::2], ann["polygon"][1::2]
        assert obj.hbox == (min(xs), min(ys), max(xs), max(ys))


def test_refuses_to_overwrite_other_folders(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        write_synthetic("dior", tmp_path / "mine", n_images=1)
    with pytest.raises(FileExistsError, match="not a samrs synthetic dataset"):
        write_synthetic("dior", tmp_path / "mine", n_images=1, overwrite=True)
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"
    write_synthetic("dior", tmp_path / "syn", n_images=2)
    summary = write_synthetic("dior", tmp_path / "syn", n_images=1, overwrite=True)
    assert summary.n_images == 1 and summary.n_empty == 0
    assert len(list((tmp_path / "syn" / "JPEGImages-trainval").iterdir())) == 1
    with pytest.raises(ValueError, match="unknown synthetic format"):
        write_synthetic("isaid", tmp_path / "x")


def test_cli(tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "d"
    args = ["synth", "--format", "dior", "--out", str(out), "--images", "2", "--seed", "3"]
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["images"] == 2 and doc["format"] == "dior" and doc["empty_images"] == 1
    result = runner.invoke(main, args)
    assert result.exit_code != 0 and "--overwrite" in result.output
    result = runner.invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 0 and "2 images" in result.output
    result = runner.invoke(main, ["synth", "--format", "coco", "--out", str(out)])
    assert result.exit_code == 2
