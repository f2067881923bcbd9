"""DIOR (horizontal) and DIOR-R (oriented) XML reader on the hand-made fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from samrs.sources import SourceError, read_dataset

DIOR = Path(__file__).parents[1] / "fixtures" / "sources" / "dior"


def by_id(ds):
    return {im.image_id: im for im in ds.images}


@pytest.fixture(scope="module")
def hbb():
    return read_dataset("dior", DIOR, version="hbb")


@pytest.fixture(scope="module")
def obb():
    return read_dataset("dior", DIOR)


def test_default_reads_oriented_boxes_with_splits_from_imagesets(obb):
    assert [(im.image_id, im.split) for im in obb.images] == [
        ("00001", "train"),
        ("00003", "train"),
        ("00004", "trainval"),  # in no list: the folder's split
        ("00002", "val"),
        ("00010", "test"),
        ("00011", "test"),
    ]
    assert obb.version == "1.0" and obb.errors == []
    esa = by_id(obb)["00001"].objects[0]
    assert esa.polygon == (2, 4, 12, 2, 14, 8, 4, 10)
    assert (esa.class_name, esa.class_id, esa.difficult, esa.truncated) == (
        "expressway-service-area",
        7,
        True,
        True,
    )
    assert esa.source_element == "object[1]" and esa.source_line == 1
    assert "Oriented Bounding Boxes" in esa.source_file
    assert by_id(obb)["00002"].objects[0].polygon == (4.5, 4, 8, 4, 8, 10.5, 4.5, 10.5)


@pytest.mark.parametrize("version", ["obb", "r", "dior-r", "1.0"])
def test_oriented_aliases(version):
    ds = read_dataset("dior", DIOR, version=version)
    assert by_id(ds)["00001"].objects[0].polygon == (2, 4, 12, 2, 14, 8, 4, 10)


def test_horizontal_boxes_bndbox_and_robndbox(hbb):
    ims = by_id(hbb)
    esa, plane = ims["00001"].objects
    assert esa.polygon == (2, 3, 12, 3, 12, 9, 2, 9) and esa.class_name == "expressway-service-area"
    assert plane.class_name == "airplane" and plane.hbox == (20, 20, 30, 28)
    # the box written inside <robndbox> with xmin/ymin/xmax/ymax
    (car,) = ims["00002"].objects
    assert car.class_name == "vehicle" and car.hbox == (4, 4, 8, 10)
    # clipped to the 32 px image
    (windmill,) = ims["00010"].objects
    assert windmill.hbox == (10, 10, 32, 20) and windmill.flags == ("clipped",)
    assert windmill.source_element == "object[3]"
    # size from the image header (the XML says 48x48, the image is 48x40)
    assert (ims["00011"].width, ims["00011"].height) == (48, 40) and ims["00011"].objects == ()


def test_horizontal_error_rows(hbb):
    rows = [(Path(e.source_file).name, e.line, e.n_objects, e.image_id) for e in hbb.errors]
    assert rows == [
        ("00002.xml", 2, 1, "00002"),  # zero-width box
        ("00003.xml", 8, 0, "00003"),  # truncated XML: the parser's line
        ("00004.jpg", None, 0, "00004"),  # no annotation file
        ("00010.xml", 1, 1, "00010"),  # unknown class
        ("00010.xml", 2, 1, "00010"),  # missing ymax
        ("00099.xml", None, 1, "00099"),  # no image
    ]
    msgs = [e.message for e in hbb.errors]
    assert "object[2]: degenerate" in msgs[0]
    assert "unreadable or truncated XML" in msgs[1] and "image skipped" in msgs[1]
    assert "missing label file" in msgs[2] and "Horizontal Bounding Boxes" in msgs[2]
    assert "unknown class 'ufo'" in msgs[3] and "windmill" in msgs[3]
    assert "bndbox/ymax" in msgs[4]
    assert "no image for label file" in msgs[5]
    # the unreadable file's image is not returned; the others are
    assert "00003" not in by_id(hbb) and "00004" in by_id(hbb)


def test_root_may_be_one_image_folder():
    ds = read_dataset("dior", DIOR / "JPEGImages-test", version="hbb")
    assert [im.image_id for im in ds.images] == ["00010", "00011"]
    assert [e.line for e in ds.errors] == [1, 2]  # no "no image" row for other folders


def test_split_filter():
    ds = read_dataset("dior", DIOR, split="val")
    assert [im.image_id for im in ds.images] == ["00002"]


def test_samrs_class_order(obb):
    ds = read_dataset("dior", DIOR, class_order="samrs")
    assert by_id(ds)["00001"].objects[0].class_id == 6
    assert by_id(ds)["00003"].objects[0].class_id == 8  # dam moves after the expressway classes


def test_bad_version_and_missing_set(tmp_path):
    with pytest.raises(SourceError, match="unknown dior version"):
        read_dataset("dior", DIOR, version="2.0")
    (tmp_path / "Annotations" / "Horizontal Bounding Boxes").mkdir(parents=True)
    with pytest.raises(SourceError, match="Oriented Bounding Boxes"):
        read_dataset("dior", tmp_path, version="obb")
