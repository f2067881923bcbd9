"""HRSC2016 XML reader on the hand-made fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs.sources import read_dataset

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sources"
HRSC = FIXTURES / "hrsc"


def by_id(ds):
    return {im.image_id: im for im in ds.images}


@pytest.fixture(scope="module")
def hrsc():
    return read_dataset("hrsc", HRSC)


def test_full_dataset_with_split_lists(hrsc):
    # Train/ repeats FullDataSet images and is not read again
    assert [(im.image_id, im.split) for im in hrsc.images] == [
        ("100000003", None),
        ("100000001", "train"),
        ("100000002", "test"),
    ]
    assert all("FullDataSet" in im.image_path for im in hrsc.images)
    assert hrsc.version == "2016"


def test_rotated_boxes_in_radians_and_seg_colour(hrsc):
    im = by_id(hrsc)["100000001"]
    assert (im.width, im.height, im.gsd) == (32, 32, pytest.approx(1.07))
    flat, upright = im.objects
    assert flat.polygon == pytest.approx((10, 8, 22, 8, 22, 12, 10, 12))
    assert (flat.class_name, flat.class_id) == ("ship", 0)
    assert flat.flags == ("hrsc_class=100000005", "seg_color=0,0,255")
    assert flat.source_element == "HRSC_Objects/HRSC_Object[1]"
    # 90 degrees: the 8 x 4 box stands upright around (8, 24)
    assert upright.hbox == pytest.approx((6, 20, 10, 28))
    assert upright.difficult is True and upright.flags == ("hrsc_class=100000005",)


def test_horizontal_fallback_clipping_and_errors(hrsc):
    hbox_only, clipped = by_id(hrsc)["100000002"].objects
    assert hbox_only.polygon == (2, 2, 9, 2, 9, 6, 2, 6)
    assert hbox_only.flags == ("hbox_only", "hrsc_class=100000005", "seg_color=255,0,0")
    assert clipped.hbox == pytest.approx((25, 14, 32, 18)) and clipped.truncated
    assert clipped.flags[-1] == "clipped" and clipped.source_line == 3
    rows = [(Path(e.source_file).name, e.line, e.n_objects) for e in hrsc.errors]
    assert rows == [
        ("100000002.xml", 2, 1),  # neither mbox_* nor box_*
        ("100000003.bmp", None, 0),  # missing label file
        ("100000009.xml", None, 1),  # no image
    ]
    assert "mbox_cx" in hrsc.errors[0].message
    assert "no image for label file" in hrsc.errors[2].message


def test_full_dataset_folder_as_root_finds_the_lists_beside_it():
    ds = read_dataset("hrsc", HRSC / "FullDataSet", split="test")
    assert [im.image_id for im in ds.images] == ["100000002"]


def test_train_test_layout():
    ds = read_dataset("hrsc", FIXTURES / "hrsc_tt")
    assert [(im.image_id, im.split, im.width, im.height) for im in ds.images] == [
        ("100000001", "train", 32, 32),
        ("100000002", "test", 40, 20),
    ]
    assert ds.errors == []
    ds = read_dataset("hrsc", FIXTURES / "hrsc_tt" / "Test")
    assert [(im.image_id, im.split) for im in ds.images] == [("100000002", "test")]


def test_labels_only_reads_every_label_file_with_or_without_its_image():
    """The ground truth of `samrs evaluate`: label files only; a missing image is an error
    row (stage image) and the XML's size is used."""
    from samrs.core.classes import class_table
    from samrs.sources import hrsc
    from samrs.sources.common import ReadContext

    ctx = ReadContext("hrsc", "2016", class_table("hrsc"))
    images = hrsc.read(HRSC, ctx, labels_only=True)
    assert [(im.image_id, Path(im.image_path).name, im.width) for im in images] == [
        ("100000001", "100000001.bmp", 32),
        ("100000002", "100000002.bmp", 32),
        ("100000009", "100000009.bmp", 32),
    ]
    assert not Path(images[2].image_path).exists() and len(images[2].objects) == 1
    rows = [(Path(e.source_file).name, e.line, e.stage) for e in ctx.errors]
    assert rows == [("100000002.xml", 2, "read"), ("100000009.bmp", None, "image")]
    assert [hrsc.mask_colour(obj) for obj in images[0].objects] == [(0, 0, 255), None]
