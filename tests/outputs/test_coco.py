"""COCO from manifests: pycocotools loads and evaluates it; subsets, rejected, polygons."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pyarrow.parquet as pq
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samrs.core import rle
from samrs.core.geometry import rasterize_polygon
from samrs.outputs.coco import (
    assemble_coco,
    category_id,
    coco_from_manifest,
    fragment_options,
    mask_polygons,
    read_fragment_header,
    write_coco,
    write_fragment,
    write_json,
)
from samrs.outputs.manifest import ManifestError, part_path, write_part
from samrs.outputs.select import Selection, count_images, iter_build, iter_part, rethreshold
from tests.helpers.outputs import FAKE, instance_rows, make_fake_build


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake") / "out"
    make_fake_build(out)
    return out


def _load(path) -> COCO:
    with contextlib.redirect_stdout(io.StringIO()):
        return COCO(str(path))


def _evaluate(gt: COCO, iou_type: str) -> np.ndarray:
    results = [dict(a, score=a["score"]) for a in gt.dataset["annotations"]]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, iou_type)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def test_default_document_structure(build) -> None:
    doc = coco_from_manifest(build)
    table = FAKE["class_table"]
    assert [c["id"] for c in doc["categories"]] == list(range(1, len(table) + 1))
    assert doc["categories"][4] == {
        "id": 5, "name": "small-vehicle", "supercategory": "dota", "samrs_class_id": 4,
    }  # fmt: skip
    assert [(i["id"], i["samrs_image_id"], i["width"], i["height"]) for i in doc["images"]] == [
        (1, "P0001", 32, 24),
        (2, "P0002__20__10", 20, 20),
        (3, "P0003", 16, 16),
    ]
    anns = doc["annotations"]
    assert [a["samrs_instance_id"] for a in anns] == FAKE["kept_ids"]
    assert [a["id"] for a in anns] == [i + 1 for i in FAKE["kept_ids"]]
    first = anns[0]
    rows = {r["instance_id"]: r for r in instance_rows()}
    assert first["image_id"] == 1 and first["category_id"] == category_id(0) == 1
    assert first["segmentation"] == {"size": [24, 32], "counts": rows[0]["segmentation"]}
    assert first["bbox"] == [2.0, 3.0, 20.0, 15.0] and first["area"] == 300
    assert first["iscrowd"] == 0 and first["kept"] is True and first["reject_reason"] is None
    assert first["polygon"] == [2.0, 2.0, 22.0, 2.0, 22.0, 18.0, 2.0, 18.0]
    assert first["score"] == 0.95 and first["rbox_iou"] == 0.94
    assert anns[3]["substituted"] is True
    # the extras again under "attributes" (Datumaro keeps those), without nulls
    assert first["attributes"] == {
        "samrs_instance_id": 0, "score": 0.95, "stability": first["stability"],
        "rbox_iou": 0.94, "kept": True, "substituted": False, "difficult": False,
    }  # fmt: skip


def test_loads_in_pycocotools_and_self_evaluation_is_perfect(build, tmp_path) -> None:
    path = tmp_path / "instances.json"
    write_json(path, coco_from_manifest(build))
    gt = _load(path)
    assert len(gt.getImgIds()) == 3 and len(gt.getAnnIds()) == FAKE["n_kept"]
    ann = gt.loadAnns(gt.getAnnIds(imgIds=[1]))[0]
    mask = gt.annToMask(ann).astype(bool)
    assert mask.shape == (24, 32) and mask.sum() == 300
    for iou_type in ("segm", "bbox"):
        stats = _evaluate(gt, iou_type)
        assert stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
        assert stats[1] == pytest.approx(1.0)  # AP@.5


def test_include_rejected_flags_them(build) -> None:
    anns = coco_from_manifest(build, include_rejected=True)["annotations"]
    assert [a["samrs_instance_id"] for a in anns] == list(range(FAKE["n_instances"]))
    rejected = {a["samrs_instance_id"]: a["reject_reason"] for a in anns if not a["kept"]}
    assert rejected == {2: "low-score", 5: "low-rbox-iou"}


def test_polygons_rasterize_back_to_the_masks(build, tmp_path) -> None:
    path = tmp_path / "poly.json"
    write_json(path, coco_from_manifest(build, polygons=True, include_rejected=True))
    gt = _load(path)
    rows = {r["instance_id"]: r for r in instance_rows()}
    sizes = {1: (24, 32), 2: (20, 20)}
    for ann in gt.dataset["annotations"]:
        assert isinstance(ann["segmentation"], list) and ann["segmentation"]
        h, w = sizes[ann["image_id"]]
        expected = rle.decode(
            {"size": [h, w], "counts": rows[ann["samrs_instance_id"]]["segmentation"]}
        )
        np.testing.assert_array_equal(gt.annToMask(ann).astype(bool), expected)
    assert _evaluate(gt, "segm")[0] == pytest.approx(1.0)


def test_mask_polygons_fill_holes_and_split_components() -> None:
    m = np.zeros((10, 12), dtype=bool)
    m[1:6, 1:6] = True
    m[3, 3] = False  # a hole: filled in polygon form
    m[7:9, 8:11] = True  # a second component
    polys = mask_polygons(m)
    assert len(polys) == 2
    assert sorted(len(p) for p in polys) == [8, 8]  # two rectangles, 4 vertices each
    assert mask_polygons(np.zeros((4, 4), dtype=bool)) == []


def _polygons_of_the_whole_image(mask: np.ndarray) -> list[list[float]]:
    """mask_polygons as first written: the outline traced over the whole image."""
    import shapely
    from rasterio import features
    from shapely.geometry import shape

    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    polys = []
    for geom, _ in features.shapes(mask, mask=mask.astype(bool), connectivity=4):
        ring = shapely.simplify(shapely.Polygon(shape(geom).exterior), 0)
        coords = np.asarray(ring.exterior.coords)[:-1]
        if len(coords) >= 3:
            polys.append([float(v) for v in coords.reshape(-1)])
    return polys


def test_mask_polygons_traced_on_the_mask_box_equal_the_whole_image_trace() -> None:
    """Tracing only the mask's box (fast on big images) gives the same polygons, in the same
    order and from the same first vertex: components touching diagonally, holes, the image
    border, one pixel, an empty mask."""
    rng = np.random.default_rng(7)
    masks = [np.zeros((9, 11), dtype=bool), np.ones((5, 6), dtype=bool)]
    one = np.zeros((8, 8), dtype=bool)
    one[7, 0] = True
    masks.append(one)
    for _ in range(60):
        h, w = rng.integers(4, 40, size=2)
        m = rng.random((h, w)) < rng.uniform(0.05, 0.6)
        y, x = rng.integers(0, h), rng.integers(0, w)
        m[y:, x:] &= rng.random() < 0.5  # sometimes a blank corner, so the box is smaller
        masks.append(m)
    for m in masks:
        assert mask_polygons(m) == _polygons_of_the_whole_image(m)


def test_streamed_writer_matches_in_memory_document(build, tmp_path) -> None:
    for kwargs in ({}, {"include_rejected": True, "polygons": True}, {"splits": ["val"]}):
        write_json(tmp_path / "a.json", coco_from_manifest(build, **kwargs))
        counts = write_coco(build, tmp_path / "b.json", **kwargs)
        assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
        doc = json.loads((tmp_path / "b.json").read_text())
        assert counts["annotations"] == len(doc["annotations"])
    assert not list(tmp_path.glob(".*"))  # temporary files are gone


def test_same_build_twice_gives_identical_bytes(tmp_path) -> None:
    make_fake_build(tmp_path / "one" / "out")
    make_fake_build(tmp_path / "two" / "out")
    write_coco(tmp_path / "one" / "out", tmp_path / "a.json", include_rejected=True)
    write_coco(tmp_path / "two" / "out", tmp_path / "b.json", include_rejected=True)
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()


def test_subsets_by_split_class_and_threshold(build) -> None:
    val = coco_from_manifest(build, splits=["val"])
    assert [i["samrs_image_id"] for i in val["images"]] == ["P0003"] and val["annotations"] == []
    assert val["images"][0]["id"] == 3  # ids stay those of the whole build

    sub = coco_from_manifest(build, classes=["Small Vehicle", "plane"])
    assert [c["name"] for c in sub["categories"]] == ["plane", "small-vehicle"]
    assert [a["samrs_instance_id"] for a in sub["annotations"]] == [0, 1]
    assert len(sub["images"]) == 3

    strict = coco_from_manifest(build, min_score=0.92, include_rejected=True)
    state = {a["samrs_instance_id"]: (a["kept"], a["reject_reason"]) for a in strict["annotations"]}
    assert state == {
        0: (True, None),
        1: (False, "low-score"),
        2: (False, "low-score"),
        3: (False, "low-score"),
        4: (True, None),  # a substituted box stays
        5: (False, "low-rbox-iou"),
    }
    big = coco_from_manifest(build, min_area=40)["annotations"]
    assert [a["samrs_instance_id"] for a in big] == [0, 3, 4]  # 300, 128 px and the box
    with pytest.raises(ValueError, match="unknown class 'boat'"):
        coco_from_manifest(build, classes=["boat"])


def test_rethreshold_with_box_substitution() -> None:
    row = instance_rows()[3]  # kept large-vehicle, score 0.85, in a 20x20 tile
    sel = Selection(min_score=0.9, min_rbox_iou=0.5)
    assert rethreshold(row, Selection(min_score=0.5), 20, 20) is row
    rejected = rethreshold(row, sel, 20, 20)
    assert (rejected["kept"], rejected["reject_reason"]) == (False, "low-score")
    assert row["kept"] is True  # the input row is not modified
    boxed = rethreshold(row, sel, 20, 20, on_reject="box")
    expected = rasterize_polygon(row["polygon"], 20, 20)
    assert boxed["kept"] and boxed["substituted"] and boxed["reject_reason"] is None
    np.testing.assert_array_equal(
        rle.decode({"size": [20, 20], "counts": boxed["segmentation"]}), expected
    )
    assert boxed["area"] == int(expected.sum()) and boxed["flags"] == ["substituted:low-score"]


def test_inconsistent_parts_are_reported(tmp_path) -> None:
    out = tmp_path / "out"
    make_fake_build(out)
    rows = instance_rows()[:1]  # an instance of P0001 (shard 0) written into shard 1
    write_part(part_path(out, "instances", 1), "instances", rows)
    with pytest.raises(ManifestError, match="refers to image 'P0001'"):
        list(iter_build(out))


def test_rethreshold_follows_the_build_rule_for_off_and_missing_values() -> None:
    """Exports re-judge with samrs.quality.fails: a threshold <= 0 is off (as in the build),
    a missing score never rejects."""
    row = dict(instance_rows()[3], score=-0.05)  # random-weight SAM can predict below 0
    assert rethreshold(row, Selection(min_score=0.0), 20, 20) is row
    assert rethreshold(dict(row, score=None), Selection(min_score=0.5), 20, 20)["kept"]
    assert not rethreshold(row, Selection(min_score=0.01), 20, 20)["kept"]


def _fragments(out, folder, options, origin=None) -> list:
    """A fragment per part of build ``out`` in ``folder``, with each one's image id shift."""
    folder.mkdir(exist_ok=True)
    fragments, offset = [], 0
    for k in (0, 1):
        path = folder / f"part-{k}.jsonl"
        images = part_path(out, "images", k)
        write_fragment(path, images, part_path(out, "instances", k), origin or {"k": k}, options)
        fragments.append((path, offset))
        offset += len(pq.read_table(images))
    return fragments


@pytest.mark.parametrize("include_rejected", [False, True])
@pytest.mark.parametrize("polygons", [False, True])
def test_fragments_assemble_to_the_streamed_document(
    build, tmp_path, include_rejected, polygons
) -> None:
    options = fragment_options(include_rejected, polygons, "keep-rejected")
    fragments = _fragments(build, tmp_path / "frag", options)
    counts = assemble_coco(build, tmp_path / "a.json", fragments)
    expected = write_coco(build, tmp_path / "b.json", include_rejected=include_rejected,
                          polygons=polygons)  # fmt: skip
    assert (tmp_path / "a.json").read_bytes() == (tmp_path / "b.json").read_bytes()
    assert counts == {k: expected[k] for k in ("images", "annotations")}
    assert fragments[1][1] > 0  # the second part's ids are shifted
    doc = json.loads((tmp_path / "a.json").read_text())
    assert len({a["image_id"] for a in doc["annotations"]}) > 1
    assert [i["id"] for i in doc["images"]] == list(range(1, count_images(build) + 1))
    assert not list(tmp_path.glob(".*"))


def test_iter_part_is_iter_build_of_one_part(build) -> None:
    sel = Selection(include_rejected=True)
    whole = [(i.index, i.image, i.instances) for i in iter_build(build, sel)]
    start = len(pq.read_table(part_path(build, "images", 0)))
    parts = [
        (i.index, i.image, i.instances)
        for k, first in ((0, 0), (1, start))
        for i in iter_part(
            part_path(build, "images", k), part_path(build, "instances", k), sel, first
        )
    ]
    assert parts == whole


def test_fragment_header_refuses_stale_foreign_and_damaged_fragments(build, tmp_path) -> None:
    options = fragment_options(True, False, "keep-rejected")
    path = _fragments(build, tmp_path, options, origin={"images": "a"})[0][0]
    header = read_fragment_header(path, {"images": "a"}, options)
    assert header is not None and header["images"] >= 1 and header["annotations"] >= 1
    assert read_fragment_header(path, {"images": "b"}, options) is None  # other parts
    other = fragment_options(True, True, "keep-rejected")
    assert read_fragment_header(path, {"images": "a"}, other) is None  # other options
    assert read_fragment_header(tmp_path / "none.jsonl", {"images": "a"}, options) is None
    data = path.read_bytes()
    first = data.index(b"\n") + 1
    for damaged in (
        data[:-5],  # truncated
        data[: first + 8] + b"9" + data[first + 9 :],  # a byte of an entry changed
        data + b"{}\n",  # a line too many
        b"\x00garbage\n" + data[first:],  # no header
        b"",
    ):
        path.write_bytes(damaged)
        assert read_fragment_header(path, {"images": "a"}, options) is None
