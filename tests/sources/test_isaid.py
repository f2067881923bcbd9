"""iSAID COCO reader on the hand-made fixtures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from samrs.sources import read_dataset
from samrs.sources.isaid import min_area_rect

ISAID = Path(__file__).parents[1] / "fixtures" / "sources" / "isaid"


def by_id(ds):
    return {im.image_id: im for im in ds.images}


@pytest.fixture(scope="module")
def isaid():
    return read_dataset("isaid", ISAID)


def test_images_masks_excluded(isaid):
    assert [(im.image_id, im.split) for im in isaid.images] == [
        ("P0001", "train"),
        ("P0002", "train"),
        ("P0005", "val"),
        ("P0007", "test"),
    ]


def test_objects_are_min_area_rectangles_of_segmentations(isaid):
    diamond, car, tank, boxed = by_id(isaid)["P0001"].objects
    assert diamond.polygon == (10, 2, 14, 6, 10, 10, 6, 6)
    assert (diamond.class_name, diamond.flags, diamond.source_element) == (
        "ship",
        ("coco_id=101",),
        "annotations[1]",
    )
    # a 5-point polygon starting elsewhere: the rectangle, clockwise from the top-left
    assert car.polygon == (2, 2, 8, 2, 8, 6, 2, 6) and car.class_name == "small-vehicle"
    # an uncompressed RLE of rows 10-12, columns 20-23: the pixels' outer corners
    assert tank.polygon == (20, 10, 24, 10, 24, 13, 20, 13) and tank.class_name == "storage-tank"
    assert boxed.hbox == (20, 20, 25, 24) and boxed.flags == ("coco_id=106", "bbox_only")


def test_categories_matched_by_name_not_id(isaid):
    ship, car = by_id(isaid)["P0005"].objects
    # val numbers ship 5 and Small_Vehicle 1; train numbers them 1 and 2
    assert (ship.class_name, ship.class_id) == ("ship", 6)
    assert (car.class_name, car.class_id) == ("small-vehicle", 4)
    assert (by_id(isaid)["P0005"].width, by_id(isaid)["P0005"].height) == (40, 30)


def test_error_rows_account_for_every_annotation(isaid):
    rows = [(Path(e.source_file).name, e.line, e.n_objects) for e in isaid.errors]
    assert rows == [
        ("iSAID_train.json", 4, 1),  # unknown class Martian
        ("iSAID_train.json", 5, 1),  # category id not in the file
        ("iSAID_train.json", None, 1),  # COCO image without image file
        ("iSAID_train.json", 8, 1),  # annotation of an unlisted image id
        ("P0002.png", None, 0),  # image not in the JSON
    ]
    assert "unknown class 'Martian'" in isaid.errors[0].message
    n_annotations = sum(
        len(json.loads(p.read_text())["annotations"]) for p in ISAID.rglob("*.json")
    )
    assert n_annotations == isaid.n_objects + sum(e.n_objects for e in isaid.errors)


def test_split_folder_root():
    ds = read_dataset("isaid", ISAID / "val")
    assert [im.image_id for im in ds.images] == ["P0005"] and ds.errors == []


def test_unreadable_json_skips_the_split(tmp_path):
    (tmp_path / "val" / "Annotations").mkdir(parents=True)
    (tmp_path / "val" / "Annotations" / "iSAID_val.json").write_text('{"images": [\n{"id": ')
    ds = read_dataset("isaid", tmp_path)
    (err,) = ds.errors
    assert ds.images == [] and err.line == 2 and "unreadable COCO JSON" in err.message


def test_min_area_rect_is_clockwise_from_top_left():
    pts = np.array([[0, 5], [10, 5], [10, 0], [0, 0]])  # counter-clockwise input
    assert min_area_rect(pts) == (0, 0, 10, 0, 10, 5, 0, 5)
