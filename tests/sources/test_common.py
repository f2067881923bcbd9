"""What every reader shares: split-folder roots, header-only image sizes, lossless bad input."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import PIL.ImageFile
import pytest
import rasterio
import rasterio.io

from samrs.sources import read_dataset
from samrs.synth import write_synthetic
from tests.helpers.hostile import bomb_png

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sources"


def _objects_read_and_lost(ds) -> int:
    return ds.n_objects + sum(e.n_objects for e in ds.errors)


# --- --root at a split folder -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "top", "sub", "version"),
    [
        ("dota", "dota", "train", None),
        ("dota", "dota", "val", None),
        ("dota", "dota", "test", None),
        ("dior", "dior", "JPEGImages-trainval", None),
        ("dior", "dior", "JPEGImages-test", "hbb"),
        ("fair1m", "fair1m", "train", None),
        ("fair1m", "fair1m", "train/part1", None),
        ("fair1m", "fair1m", "validation", None),
        ("hrsc", "hrsc", "FullDataSet", None),
        ("hrsc", "hrsc_tt", "Test", None),
        ("isaid", "isaid", "train", None),
        ("isaid", "isaid", "val", None),
    ],
)
def test_a_split_folder_reads_as_its_part_of_the_whole(
    source: str, top: str, sub: str, version: str | None
) -> None:
    whole = read_dataset(source, FIXTURES / top, version=version)
    part = read_dataset(source, FIXTURES / top / sub, version=version)
    folder = str(FIXTURES / top / sub) + "/"
    expected = [im for im in whole.images if im.image_path.startswith(folder)]
    assert expected and part.images == expected  # same ids, splits, sizes and objects


# --- image sizes from headers -------------------------------------------------------------------


def _sparse_tiff(path: Path, width: int, height: int) -> None:
    """A tiled GeoTIFF of that size with no blocks written (a few kB on disk)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": width, "height": height, "count": 3}
    profile.update(dtype="uint8", tiled=True, blockxsize=256, blockysize=256, SPARSE_OK=True)
    with pytest.warns(rasterio.errors.NotGeoreferencedWarning):
        rasterio.open(path, "w", **profile).close()


@pytest.fixture
def no_decoding(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every pixel decode fail: Pillow's load and rasterio's read."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(rasterio.io.DatasetReader, "read", refuse)


@pytest.mark.usefixtures("no_decoding")
def test_large_image_sizes_come_from_headers(tmp_path: Path) -> None:
    bomb_png(tmp_path / "dota/train/images/P9999.png", 20000, 15000)
    (tmp_path / "dota/train/labelTxt").mkdir(parents=True)
    (tmp_path / "dota/train/labelTxt/P9999.txt").write_text(
        "19000 14000 19990 14000 19990 14990 19000 14990 plane 0\n"
    )
    dota = read_dataset("dota", tmp_path / "dota")
    (im,) = dota.images
    assert (im.width, im.height) == (20000, 15000) and dota.errors == []
    assert im.objects[0].flags == ()  # inside the image: not clipped

    _sparse_tiff(tmp_path / "fair1m/train/part1/images/1.tif", 30000, 20000)
    fair1m = read_dataset("fair1m", tmp_path / "fair1m")
    assert [(im.image_id, im.width, im.height) for im in fair1m.images] == [
        ("train_1", 30000, 20000)
    ]
    assert fair1m.errors == []


@pytest.mark.usefixtures("no_decoding")
@pytest.mark.parametrize(
    ("source", "top", "version"),
    [("dota", "dota", None), ("dior", "dior", "hbb"), ("fair1m", "fair1m", None),
     ("hrsc", "hrsc", None), ("isaid", "isaid", None)],
)  # fmt: skip
def test_no_reader_decodes_pixels(source: str, top: str, version: str | None) -> None:
    ds = read_dataset(source, FIXTURES / top, version=version)
    assert ds.images and all(im.width and im.height for im in ds.images)
    assert not [e for e in ds.errors if e.stage == "image"]


# --- XML label files: empty, truncated, not an annotation -------------------------------------

XML_CASES = [
    ("dior", "dior", "Annotations/Oriented Bounding Boxes/00002.xml", "00002"),
    ("fair1m", "fair1m", "train/part2/labelXml/10.xml", "train_10"),
    ("hrsc", "hrsc", "FullDataSet/Annotations/100000001.xml", "100000001"),
]


def _others(ds, image_id: str) -> list:
    return [im for im in ds.images if im.image_id != image_id]


@pytest.mark.parametrize(("source", "top", "label", "image_id"), XML_CASES)
def test_empty_xml_label_file_is_an_image_without_objects(
    tmp_path: Path, source: str, top: str, label: str, image_id: str
) -> None:
    shutil.copytree(FIXTURES / top, tmp_path / top)
    before = read_dataset(source, tmp_path / top)
    (tmp_path / top / label).write_bytes(b" \r\n")
    after = read_dataset(source, tmp_path / top)
    im = next(im for im in after.images if im.image_id == image_id)
    assert im.objects == () and im.annotation_file == str(tmp_path / top / label)
    assert after.errors == before.errors  # no new error row
    assert _others(after, image_id) == _others(before, image_id)


@pytest.mark.parametrize(("source", "top", "label", "image_id"), XML_CASES)
@pytest.mark.parametrize(
    ("content", "line", "words"),
    [
        (None, 4, "unreadable or truncated XML"),  # the file cut after its 3rd line
        (b"<?xml version='1.0'?>\n<html><body/></html>\n", None, "root element <html>"),
    ],
)
def test_unreadable_xml_is_an_error_and_the_rest_is_read(
    tmp_path: Path,
    source: str,
    top: str,
    label: str,
    image_id: str,
    content: bytes | None,
    line: int | None,
    words: str,
) -> None:
    shutil.copytree(FIXTURES / top, tmp_path / top)
    before = read_dataset(source, tmp_path / top)
    path = tmp_path / top / label
    if content is None:
        content = b"".join(path.read_bytes().splitlines(keepends=True)[:3]) + b"<obj"
    path.write_bytes(content)
    after = read_dataset(source, tmp_path / top)
    (new,) = [e for e in after.errors if e not in before.errors]
    assert (new.source_file, new.line, new.image_id) == (str(path), line, image_id)
    assert words in new.message and "expected a" in new.message and "image skipped" in new.message
    assert image_id not in {im.image_id for im in after.images}
    assert after.images == _others(before, image_id)


# --- iSAID: malformed COCO entries --------------------------------------------------------------


def test_malformed_coco_entries_are_error_rows(tmp_path: Path) -> None:
    shutil.copytree(FIXTURES / "isaid/val", tmp_path / "val")
    path = tmp_path / "val/Annotations/iSAID_val.json"
    coco = json.loads(path.read_text())
    coco["annotations"] += [5, {"id": 3, "category_id": 1}]  # not an object; no image_id
    coco["images"] += ["P0006.png", {"id": 7}]  # not an object; no file_name
    coco["annotations"].append(
        {"id": 4, "image_id": 7, "category_id": 1, "segmentation": [[1, 1, 5, 1, 5, 5]]}
    )
    path.write_text(json.dumps(coco))
    ds = read_dataset("isaid", tmp_path)
    assert [(im.image_id, len(im.objects)) for im in ds.images] == [("P0005", 2)]
    rows = [(e.line, e.n_objects, e.message.split(":")[0]) for e in ds.errors]
    assert rows == [
        (3, 1, "annotations[3]"),
        (4, 1, "annotations[4]"),
        (None, 0, "images[2]"),
        (None, 0, "images[3]"),
        (5, 1, "annotations[5]"),
    ]
    assert all("expected" in e.message and e.source_file == str(path) for e in ds.errors)
    assert _objects_read_and_lost(ds) == len(coco["annotations"])


# --- every error row says where and what was expected -------------------------------------------


@pytest.mark.parametrize(
    ("source", "top", "version"),
    [("dota", "dota", None), ("dota", "dota_dup", None), ("dior", "dior", "hbb"),
     ("fair1m", "fair1m", None), ("hrsc", "hrsc", None), ("isaid", "isaid", None)],
)  # fmt: skip
def test_error_rows_name_the_file_and_what_was_expected(
    source: str, top: str, version: str | None
) -> None:
    ds = read_dataset(source, FIXTURES / top, version=version)
    assert ds.errors
    for e in ds.errors:
        assert Path(e.source_file).is_file(), e
        assert "expected" in e.message, e
        if e.n_objects == 1 and "no image for label file" not in e.message:
            assert e.line is not None and e.line >= 1, e  # one object: its line / element
        if source != "dota" and e.line is not None and "XML" not in e.message:
            assert "[" in e.message.split(":")[0], e  # the XML element / JSON entry


# --- symlinks and names that cannot be stored ------------------------------------------------


@pytest.fixture
def dota_root(tmp_path: Path) -> Path:
    root = tmp_path / "dota"
    write_synthetic("dota", root, 4, 3)
    return root


def _label_objects(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if len(line.split()) in (9, 10))


def test_symlink_cycles_are_walked_once(dota_root: Path) -> None:
    before = read_dataset("dota", dota_root)
    (dota_root / "loop").symlink_to(".")
    (dota_root / "train" / "up").symlink_to("..")
    (dota_root / "train" / "images" / "loop").symlink_to("..")
    after = read_dataset("dota", dota_root)
    assert [(im.image_id, im.image_path, im.objects) for im in after.images] == [
        (im.image_id, im.image_path, im.objects) for im in before.images
    ]
    skipped = [e for e in after.errors if e.message.startswith("duplicate via symlink")]
    assert [(e.source_file, e.stage, e.n_objects) for e in skipped] == [
        (str(dota_root / "loop"), "read", 0)
    ]
    assert f"{dota_root / 'loop'} -> {dota_root.resolve()}" in skipped[0].message


def test_a_file_reached_twice_through_symlinks_is_read_once(
    dota_root: Path, tmp_path: Path
) -> None:
    train, val = dota_root / "train", dota_root / "val"
    # a link that sorts before the file it points to, and one from another split
    (train / "images" / "A0.png").symlink_to("P0001.png")
    shutil.copy(train / "labelTxt" / "P0001.txt", train / "labelTxt" / "A0.txt")
    (val / "images" / "X9.png").symlink_to(train / "images" / "P0000.png")
    shutil.copy(train / "labelTxt" / "P0000.txt", val / "labelTxt" / "X9.txt")
    # a symlinked folder and a symlinked file that lead to files read nowhere else
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(val, elsewhere / "extra")
    for name in ("X9.png", "P0003.png"):
        (elsewhere / "extra" / "images" / name).unlink()
    shutil.copy(val / "images" / "P0003.png", elsewhere / "real.png")
    (elsewhere / "extra" / "images" / "E1.png").symlink_to(elsewhere / "real.png")
    shutil.copy(val / "labelTxt" / "P0003.txt", elsewhere / "extra" / "labelTxt" / "E1.txt")
    (dota_root / "extra").symlink_to(elsewhere / "extra")

    ds = read_dataset("dota", dota_root)
    paths = {im.image_id: im.image_path for im in ds.images}
    assert paths["P0000"] == str(train / "images" / "P0000.png")  # not renamed P0000_2
    assert paths["P0001"] == str(train / "images" / "P0001.png")  # the file, not the link
    assert paths["E1"] == str(dota_root / "extra" / "images" / "E1.png")  # distinct: read
    assert "A0" not in paths and "X9" not in paths
    dupes = {e.image_id: e for e in ds.errors if e.message.startswith("duplicate via symlink")}
    assert set(dupes) == {"A0", "X9"}
    assert dupes["A0"].message.startswith(
        f"duplicate via symlink: {train / 'images' / 'A0.png'} -> "
        f"{(train / 'images' / 'P0001.png').resolve()}"
    )
    assert dupes["A0"].n_objects == _label_objects(train / "labelTxt" / "P0001.txt") > 0
    assert dupes["X9"].n_objects == _label_objects(train / "labelTxt" / "P0000.txt") > 0
    labels = [*dota_root.rglob("*.txt"), *(elsewhere / "extra").rglob("*.txt")]
    assert _objects_read_and_lost(ds) == sum(_label_objects(p) for p in labels)


def test_a_file_name_that_is_not_utf8_is_an_error_row_for_that_image(dota_root: Path) -> None:
    train = os.fsencode(dota_root / "train")
    shutil.copy(train + b"/images/P0000.png", train + b"/images/Q\xff.png")
    shutil.copy(train + b"/labelTxt/P0000.txt", train + b"/labelTxt/Q\xff.txt")
    ds = read_dataset("dota", dota_root)
    assert len(ds.images) == 4
    (error,) = [e for e in ds.errors if "UTF-8" in e.message]
    assert error.source_file == str(dota_root / "train" / "images" / "Q\\xff.png")
    assert error.image_id == "Q\\xff" and error.stage == "read"
    assert error.n_objects == _label_objects(dota_root / "train" / "labelTxt" / "P0000.txt") > 0
    for e in ds.errors:  # every row can be stored as UTF-8
        json.dumps(e.to_dict()).encode("utf-8")
        e.source_file.encode("utf-8")


def test_readers_import_nothing_later_in_the_pipeline() -> None:
    """Sources come first: they never import tiling, segmenters, quality, outputs or build
    (the `samrs split` marker name lives in samrs.sources.common, tiling takes it there)."""
    import ast

    import samrs.sources
    import samrs.tiling
    from samrs.sources.common import SPLIT_MARKER

    later = ("samrs.tiling", "samrs.segmenters", "samrs.quality", "samrs.outputs", "samrs.build")
    found = []
    for path in sorted(Path(samrs.sources.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(later):
                found.append(f"{path.name}: {node.module}")
            if isinstance(node, ast.Import):
                found += [f"{path.name}: {a.name}" for a in node.names if a.name.startswith(later)]
    assert found == []
    assert samrs.sources.common.SPLIT_MARKER == SPLIT_MARKER == "split.json"
