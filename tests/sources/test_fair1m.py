"""FAIR1M XML reader on the hand-made fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs.sources import read_dataset

FAIR1M = Path(__file__).parents[1] / "fixtures" / "sources" / "fair1m"


def by_id(ds):
    return {im.image_id: im for im in ds.images}


@pytest.fixture(scope="module")
def fair1m():
    return read_dataset("fair1m", FAIR1M)


def test_ids_include_the_split_and_sort_naturally(fair1m):
    assert [(im.image_id, im.split) for im in fair1m.images] == [
        ("train_1", "train"),
        ("train_2", "train"),
        ("train_3", "train"),
        ("train_10", "train"),
        ("validation_1", "validation"),
        ("test_1", "test"),
    ]
    assert fair1m.version == "2.0"
    assert by_id(fair1m)["validation_1"].image_path.endswith("validation/images/1.tif")


def test_closed_rings_class_names_with_spaces_and_clipping(fair1m):
    car, plane, cargo = by_id(fair1m)["train_1"].objects
    assert car.polygon == (10, 4, 14, 8, 10, 12, 6, 8)  # 5th point dropped, start kept
    assert (car.class_name, car.class_id) == ("Small Car", 9)
    assert car.source_element == "objects/object[1]" and car.difficult is False
    assert plane.polygon == (1.5, 1.5, 9.5, 1.5, 9.5, 6.25, 1.5, 6.25)
    assert plane.class_name == "Boeing737"
    assert cargo.class_name == "Dry Cargo Ship" and cargo.hbox == (20, 20, 32, 30)
    assert cargo.truncated and cargo.flags == ("clipped",)


def test_bad_objects_are_error_rows(fair1m):
    (ship,) = by_id(fair1m)["train_2"].objects  # a 4-point ring is accepted
    assert ship.class_name == "other-ship"
    rows = [(e.line, e.n_objects, e.image_id) for e in fair1m.errors]
    assert rows == [(2, 1, "train_2"), (3, 1, "train_2"), (4, 1, "train_2"), (5, 1, "train_2")]
    msgs = [e.message for e in fair1m.errors]
    assert msgs[0].startswith("objects/object[2]: 6 points: expected 5")
    assert "does not repeat the 1st" in msgs[1]
    assert "unknown class 'Flying Saucer'" in msgs[2] and "Small Car" in msgs[2]
    assert "'5;1'" in msgs[3]
    assert all(e.source_file.endswith("part1/labelXml/2.xml") for e in fair1m.errors)


def test_samrs_order_uses_hyphenated_sorted_names():
    ds = read_dataset("fair1m", FAIR1M, class_order="samrs", version="1.0")
    car = by_id(ds)["train_1"].objects[0]
    assert (car.class_name, car.class_id) == ("Small-Car", 29)  # as in SAMRS's mapping.py


@pytest.mark.parametrize(
    ("sub", "split", "ids"),
    [
        ("train", None, ["train_1", "train_2", "train_3", "train_10"]),
        ("train/part2", None, ["train_3", "train_10"]),
        ("validation", None, ["validation_1"]),
        ("", "val", ["validation_1"]),  # "val" also matches "validation"
    ],
)
def test_root_may_be_a_split_or_part_folder(sub, split, ids):
    ds = read_dataset("fair1m", FAIR1M / sub, split=split)
    assert [im.image_id for im in ds.images] == ids


def test_size_from_image_header(fair1m):
    im = by_id(fair1m)["train_3"]
    assert (im.width, im.height) == (40, 24) and im.objects == ()
