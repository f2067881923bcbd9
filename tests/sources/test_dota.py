"""DOTA labelTxt reader and the reader registry, on the hand-made fixtures."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from samrs.sources import SourceError, read_dataset

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sources"
DOTA = FIXTURES / "dota"


@pytest.fixture(scope="module")
def dota():
    return read_dataset("dota", DOTA)


def by_id(ds):
    return {im.image_id: im for im in ds.images}


def test_images_sorted_by_split_then_id(dota):
    assert [(im.split, im.image_id) for im in dota.images] == [
        ("train", "P0001"),
        ("train", "P0002"),
        ("train", "P0003"),
        ("train", "P0004"),
        ("train", "P0005"),
        ("val", "P0010"),
        ("test", "P0020"),
        ("test", "P0021"),
    ]
    assert dota.n_objects == 7
    assert dota.source == "dota" and dota.version == "1.0"


def test_header_crlf_integer_coordinates_and_difficult(dota):
    im = by_id(dota)["P0001"]
    assert (im.width, im.height) == (32, 32)
    assert im.gsd == pytest.approx(0.146343590398)
    assert im.annotation_file.endswith("P0001.txt")
    plane, car = im.objects
    assert plane.polygon == (2, 2, 12, 2, 12, 8, 2, 8)
    assert (plane.class_name, plane.class_id, plane.difficult, plane.source_line) == (
        "plane",
        0,
        False,
        3,
    )
    assert plane.hbox == (2, 2, 12, 8)
    assert (car.class_name, car.class_id, car.difficult, car.truncated) == (
        "small-vehicle",
        4,
        True,
        False,
    )


def test_floats_gsd_null_alias_missing_difficult_clipping(dota):
    im = by_id(dota)["P0002"]
    assert (im.width, im.height, im.gsd) == (40, 30, None)
    car, ship, bridge = im.objects
    assert car.class_name == "small-vehicle" and car.difficult is False and car.flags == ()
    # coordinates beyond the 40x30 image are clipped and the object flagged
    assert ship.polygon == (30.5, 20, 40, 20, 40, 30, 30.5, 30)
    assert ship.truncated is True and ship.flags == ("clipped",)
    # mmrotate's "2" marker: cut by a patch -> truncated, not difficult
    assert (bridge.difficult, bridge.truncated, bridge.source_line) == (False, True, 11)


def test_every_bad_line_is_an_error_row_naming_file_and_line(dota):
    rows = [(Path(e.source_file).name, e.line, e.n_objects) for e in dota.errors]
    assert rows == [
        ("P0002.txt", 5, 1),
        ("P0002.txt", 6, 1),
        ("P0002.txt", 7, 1),
        ("P0002.txt", 8, 1),
        ("P0002.txt", 10, 1),
        ("P0004.png", None, 0),
        ("P0099.txt", 3, 1),
        ("P0099.txt", None, 2),
    ]
    msgs = [e.message for e in dota.errors]
    assert "malformed" in msgs[0] and "got 7 fields" in msgs[0] and "x1 y1" in msgs[0]
    assert "non-numeric coordinate 'x'" in msgs[1]
    assert "unknown class 'spaceship'" in msgs[2] and "plane, baseball-diamond" in msgs[2]
    assert "degenerate" in msgs[3]
    assert "outside the 40x30 image" in msgs[4]
    assert "missing label file" in msgs[5]
    assert "no image for label file" in msgs[7]
    assert all(e.stage == "read" for e in dota.errors)
    assert {e.image_id for e in dota.errors} == {"P0002", "P0004", "P0099"}


def test_every_object_line_is_accounted_for(dota):
    # object lines in the fixture files = objects read + objects inside error rows
    lines = 0
    for label in DOTA.rglob("labelTxt/*.txt"):
        for raw in label.read_text().splitlines():
            if raw.strip() and not raw.startswith(("imagesource:", "gsd:")):
                lines += 1
    assert lines == dota.n_objects + sum(e.n_objects for e in dota.errors)


def test_empty_label_file_and_test_split_are_not_errors(dota):
    ims = by_id(dota)
    assert ims["P0005"].objects == () and ims["P0005"].annotation_file.endswith("P0005.txt")
    assert ims["P0020"].objects == () and ims["P0020"].annotation_file is None
    assert not any(e.image_id in ("P0005", "P0020", "P0021") for e in dota.errors)


def test_jpeg_and_grayscale_bmp_sizes_from_header(dota):
    ims = by_id(dota)
    assert ims["P0003"].image_path.endswith("P0003.jpg")
    assert (ims["P0010"].width, ims["P0010"].height) == (24, 16)


def test_unknown_class_skip_policy_still_records_a_row():
    ds = read_dataset("dota", DOTA, on_unknown_class="skip")
    unknown = [e for e in ds.errors if "spaceship" in e.message]
    assert len(unknown) == 1 and unknown[0].stage == "skip" and unknown[0].n_objects == 1
    assert ds.n_objects == 7


def test_version_and_class_order():
    ds = read_dataset("dota", DOTA, version="2.0", class_order="samrs")
    plane = by_id(ds)["P0001"].objects[0]
    assert (plane.class_name, plane.class_id) == ("plane", 4)
    assert ds.version == "2.0"


@pytest.mark.parametrize(
    ("root", "split", "ids"),
    [
        (DOTA / "train", None, ["P0001", "P0002", "P0003", "P0004", "P0005"]),
        (DOTA / "val", None, ["P0010"]),
        (DOTA, "val", ["P0010"]),
        (DOTA / "test", None, ["P0020", "P0021"]),
    ],
)
def test_root_may_be_a_split_folder(root, split, ids):
    ds = read_dataset("dota", root, split=split)
    assert [im.image_id for im in ds.images] == ids
    assert {im.split for im in ds.images} == {root.name if split is None else split}


def test_downloaded_nested_layout_prefers_oriented_labels():
    ds = read_dataset("dota", FIXTURES / "dota_nested")
    (im,) = ds.images
    assert im.objects[0].polygon == (1, 3, 9, 1, 11, 7, 3, 9)
    assert "labelTxt-v1.0/labelTxt/" in im.objects[0].source_file
    assert ds.errors == []


def test_duplicate_stems_get_unique_ids_and_an_error_for_the_ignored_file():
    ds = read_dataset("dota", FIXTURES / "dota_dup")
    assert [(im.image_id, im.split) for im in ds.images] == [
        ("P0001", "train"),
        ("val_P0001", "val"),
        ("P0002", "val"),
    ]
    assert by_id(ds)["val_P0001"].objects[0].class_name == "ship"
    (err,) = ds.errors
    assert err.source_file.endswith("P0002.jpg") and "P0002.png" in err.message


def test_fatal_errors_name_the_path(tmp_path):
    with pytest.raises(SourceError, match=r"not found: .*nowhere"):
        read_dataset("dota", tmp_path / "nowhere")
    with pytest.raises(SourceError, match="unknown source 'kitti'"):
        read_dataset("kitti", tmp_path)
    with pytest.raises(SourceError, match="no DOTA images"):
        read_dataset("dota", tmp_path)
    with pytest.raises(SourceError, match=r"version '3\.0'"):
        read_dataset("dota", DOTA, version="3.0")
    with pytest.raises(SourceError, match="split 'val'"):
        read_dataset("dota", DOTA / "train", split="val")
    assert issubclass(SourceError, ValueError)


def test_label_folder_without_images_folder(tmp_path):
    shutil.copytree(DOTA / "val" / "labelTxt", tmp_path / "val" / "labelTxt")
    ds = read_dataset("dota", tmp_path)
    assert ds.images == []
    (err,) = ds.errors
    assert "no image for label file" in err.message and err.n_objects == 1


def test_fixture_files_keep_their_line_ends():
    assert b"\r\n" in (DOTA / "train/labelTxt/P0001.txt").read_bytes()
    assert b"\r" not in (DOTA / "train/labelTxt/P0002.txt").read_bytes()


def test_unreadable_image_is_an_image_error_and_objects_are_kept(tmp_path):
    shutil.copytree(DOTA / "val", tmp_path / "val")
    (tmp_path / "val/images/P0010.bmp").write_bytes(b"not an image")
    ds = read_dataset("dota", tmp_path)
    (im,) = ds.images
    assert (im.width, im.height) == (None, None) and len(im.objects) == 1
    (err,) = ds.errors
    assert err.stage == "image" and err.source_file.endswith("P0010.bmp")
    assert err.image_id == "P0010" and err.n_objects == 0
