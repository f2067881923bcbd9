"""Tests of samrs.analysis.evaluate: metrics with known answers, matching, COCO AP, the CLI."""

from __future__ import annotations

import contextlib
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samrs.analysis.evaluate import (
    EvaluationError,
    boundary_iou,
    boundary_region,
    evaluate,
    format_result,
    load_ground_truth,
    mask_iou,
    object_band,
)
from samrs.cli import main
from samrs.core import rle
from samrs.sources import read_dataset
from tests.helpers.evaluate import box_mask, write_build, write_coco

# --- pure metrics -----------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 2, 5, 8])
def test_two_squares_offset_by_k(k: int) -> None:
    a = box_mask(20, 30, (0, 0, 10, 10))
    b = box_mask(20, 30, (k, 0, 10 + k, 10))
    assert mask_iou(a, b) == pytest.approx((10 - k) / (10 + k))
    # 1-px bands are the 36-pixel outer rings; they share the top and bottom rows' overlap
    inter = 2 * (10 - k)
    assert boundary_iou(a, b, 1) == pytest.approx(inter / (72 - inter))


def test_ring() -> None:
    square = box_mask(24, 24, (2, 2, 22, 22))  # 20 x 20
    ring = square & ~box_mask(24, 24, (7, 7, 17, 17))  # 10 x 10 hole
    assert mask_iou(square, ring) == pytest.approx(300 / 400)
    # band 1: outer ring 76 px; around the hole the 4-adjacent pixels, 12*12 - 10*10 - 4 = 40
    assert boundary_region(square, 1).sum() == 76
    assert boundary_region(ring, 1).sum() == 116
    assert boundary_iou(square, ring, 1) == pytest.approx(76 / 116)
    # a band wider than the object covers it all: boundary IoU becomes mask IoU
    assert boundary_iou(square, ring, 50) == pytest.approx(0.75)
    assert boundary_iou(ring, ring, 3) == 1.0


def test_boundary_at_the_image_border_counts_as_contour() -> None:
    full = np.ones((10, 10), dtype=bool)
    assert boundary_region(full, 1).sum() == 36


def test_empty_prediction() -> None:
    gt = box_mask(16, 16, (2, 2, 8, 8))
    empty = np.zeros_like(gt)
    assert mask_iou(empty, gt) == 0.0
    assert boundary_iou(empty, gt, 1) == 0.0
    assert boundary_iou(empty, empty, 1) == 0.0
    assert boundary_region(empty, 2).sum() == 0


def test_object_band() -> None:
    assert object_band((0, 0, 30, 40)) == 1.0  # 2% of 50 px is below the 1 px floor
    assert object_band((0, 0, 300, 400)) == pytest.approx(10.0)
    assert object_band((0, 0, 300, 400), 0.05) == pytest.approx(25.0)


# --- a hand-made build and its ground truth ----------------------------------------------

ROOT = "/data/dota"
H, W = 64, 64
HB, WB = 128, 128

# (class, GT box, predicted mask box or None for empty, hbox, kept, reject reason, score)
OBJECTS_A = [
    ("plane", (10, 10, 30, 30), (12, 10, 32, 30), (10, 10, 30, 30), True, None, 0.9),
    ("small-vehicle", (40, 40, 50, 50), (40, 40, 50, 50), (44, 44, 54, 54), True, None, 0.8),
    ("ship", (5, 40, 15, 60), None, (5, 40, 15, 60), True, None, None),
    ("plane", (40, 5, 60, 15), (44, 5, 64, 15), (40, 5, 60, 15), False, "low-score", 0.2),
]
OBJECTS_B = [
    ("storage-tank", (10, 10, 50, 50), (10, 10, 50, 46), (10, 10, 50, 50), True, None, 0.7)
]
CATEGORIES = [
    {"id": 11, "name": "plane"},
    {"id": 12, "name": "small-vehicle"},
    {"id": 13, "name": "ship"},
    {"id": 14, "name": "storage-tank"},
    {"id": 15, "name": "harbor"},
]
CAT = {c["name"]: c["id"] for c in CATEGORIES}


def make_case(tmp_path: Path, identity: bool = True) -> tuple[Path, Path]:
    """Build + GT: 4 kept matches with known IoUs, 1 rejected, 1 extra GT, 2 unmatched preds."""
    images = [
        {"image_id": "P0001", "width": W, "height": H},
        {"image_id": "P0002", "width": WB, "height": HB},
        {"image_id": "P9999", "width": W, "height": H},  # not in the GT
    ]
    instances, gt_anns = [], []
    for image_id, gid, (h, w), objects in (
        ("P0001", 1, (H, W), OBJECTS_A),
        ("P0002", 2, (HB, WB), OBJECTS_B),
    ):
        for k, (name, gbox, pbox, hbox, kept, reason, score) in enumerate(objects):
            mask = box_mask(h, w, pbox) if pbox else np.zeros((h, w), dtype=bool)
            instances.append(
                {"image_id": image_id, "class_name": name, "hbox": hbox, "mask": mask,
                 "object_index": k, "kept": kept, "reject_reason": reason, "score": score}
            )  # fmt: skip
            ann = {"image_id": gid, "category_id": CAT[name], "mask": box_mask(h, w, gbox)}
            if identity:
                ann |= {"source_file": f"train/labelTxt/{image_id}.txt", "object_index": k}
            gt_anns.append(ann)
    # a GT object the build does not have, and build objects the GT does not have
    gt_anns.append(
        {"image_id": 1, "category_id": CAT["harbor"], "mask": box_mask(H, W, (0, 0, 4, 4))}
    )
    instances.append(
        {"image_id": "P0002", "class_name": "harbor", "hbox": (90, 90, 110, 110),
         "mask": box_mask(HB, WB, (90, 90, 110, 110)), "object_index": 1}
    )  # fmt: skip
    instances.append(
        {"image_id": "P9999", "class_name": "plane", "hbox": (1, 1, 9, 9),
         "mask": box_mask(H, W, (1, 1, 9, 9)), "object_index": 0}
    )  # fmt: skip
    out = write_build(tmp_path / "out", images, instances, root=ROOT)
    gt = write_coco(
        tmp_path / "gt.json",
        [
            {"id": 1, "file_name": "train/images/P0001.png", "width": W, "height": H},
            {"id": 2, "file_name": "train/images/P0002.png", "width": WB, "height": HB},
        ],
        gt_anns,
        CATEGORIES,
    )
    return out, gt


# kept matches: IoU 18*20/(22*20), 1, 0 (empty), 40*36/(40*40)
KEPT_IOUS = [360 / 440, 1.0, 0.0, 1440 / 1600]
# 1-px bands: plane rings (76 px) offset by 2 share 2*18 px; storage-tank rings of 156 and
# 148 px share the top row, both sides and the two corners of the shorter one: 40+2*34+2
KEPT_BIOUS = [36 / (76 * 2 - 36), 1.0, 0.0, 110 / (156 + 148 - 110)]


def test_evaluate_known_values(tmp_path: Path) -> None:
    out, gt = make_case(tmp_path)
    doc = evaluate(out, gt).to_dict()
    assert doc["matched"] == 5
    assert doc["matching"]["by_identity"] == 5
    assert doc["miou"] == pytest.approx(np.mean(KEPT_IOUS))
    assert doc["area_iou"] == pytest.approx((360 + 100 + 0 + 1440) / (440 + 100 + 200 + 1600))
    assert doc["boundary_iou"] == pytest.approx(np.mean(KEPT_BIOUS))
    assert doc["per_class"]["plane"]["count"] == 1
    assert doc["per_class"]["plane"]["miou"] == pytest.approx(360 / 440)
    assert doc["per_class"]["ship"]["miou"] == 0.0
    assert doc["per_size"]["small"]["count"] == 3
    assert doc["per_size"]["medium"]["count"] == 1
    assert doc["per_size"]["medium"]["miou"] == pytest.approx(0.9)
    assert doc["per_size"]["large"]["count"] == 0
    # unmatched GT is reported apart, not as a miss; unmatched predictions with a reason
    assert doc["unmatched_gt"] == 1
    assert doc["matching"]["unmatched_gt_per_class"] == {"harbor": 1}
    assert doc["unmatched_pred"] == 2
    assert doc["matching"]["unmatched_pred_per_reason"] == {"no GT image": 1, "no GT object": 1}
    rej = doc["rejected"]
    assert rej["count"] == 1
    assert rej["miou"] == pytest.approx(160 / 240)
    assert rej["per_reason"]["low-score"]["count"] == 1
    assert rej["kept_miou"] == pytest.approx(np.mean(KEPT_IOUS))
    assert rej["kept_bad"] == 1 and rej["rejected_good"] == 1
    assert 0.0 < doc["mask_ap"] < 1.0
    json.dumps(doc)  # JSON-ready
    table = format_result(doc)
    assert "mIoU" in table and "plane" in table and "low-score" in table


def test_matching_by_box_without_identity(tmp_path: Path) -> None:
    out, gt = make_case(tmp_path, identity=False)
    doc = evaluate(out, gt).to_dict()
    # the small vehicle's prompt box overlaps its GT box by IoU 0.22: identity matched it,
    # box overlap cannot (threshold 0.5)
    assert doc["matching"]["by_identity"] == 0
    assert doc["matched"] == 4 and doc["matching"]["by_box"] == 4
    assert doc["miou"] == pytest.approx(np.mean([KEPT_IOUS[0], KEPT_IOUS[2], KEPT_IOUS[3]]))
    assert doc["unmatched_gt"] == 2
    # with a looser threshold the box match is found, same IoUs as identity
    doc = evaluate(out, gt, match_iou=0.2).to_dict()
    assert doc["matched"] == 5 and doc["miou"] == pytest.approx(np.mean(KEPT_IOUS))


def test_identity_checked_against_class_and_box(tmp_path: Path) -> None:
    """A GT key that points at another object is not trusted: box matching takes over."""
    mask = box_mask(H, W, (10, 10, 30, 30))
    out = write_build(
        tmp_path / "out",
        [{"image_id": "P0001", "width": W, "height": H}],
        [{"image_id": "P0001", "class_name": "plane", "hbox": (10, 10, 30, 30), "mask": mask,
          "object_index": 0}],
    )  # fmt: skip
    gt = write_coco(
        tmp_path / "gt.json",
        [{"id": 1, "file_name": "train/images/P0001.png", "width": W, "height": H}],
        [
            {"image_id": 1, "category_id": 11, "mask": box_mask(H, W, (40, 40, 60, 60)),
             "source_file": "train/labelTxt/P0001.txt", "object_index": 0},
            {"image_id": 1, "category_id": 11, "mask": mask,
             "source_file": "train/labelTxt/P0001.txt", "object_index": 1},
        ],
        CATEGORIES,
    )  # fmt: skip
    result = evaluate(out, gt)
    assert [(s.method, s.gt_annotation, s.iou) for s in result.scores] == [("box", "2", 1.0)]


def test_isaid_categories_matched_by_name(tmp_path: Path) -> None:
    """iSAID spells classes its own way and numbers them differently: match by name."""
    sv, tank = box_mask(H, W, (10, 10, 20, 30)), box_mask(H, W, (30, 30, 60, 60))
    out = write_build(
        tmp_path / "out",
        [{"image_id": "P0001", "width": W, "height": H}],
        [
            {"image_id": "P0001", "class_name": "small-vehicle", "hbox": (10, 10, 20, 30),
             "mask": sv},
            {"image_id": "P0001", "class_name": "storage-tank", "hbox": (30, 30, 60, 60),
             "mask": tank},
        ],
    )  # fmt: skip
    # DOTA ids: small-vehicle 4, storage-tank 9; GT id 4 is a plane on the same box
    gt = write_coco(
        tmp_path / "isaid.json",
        [{"id": 5, "file_name": "P0001.png", "width": W, "height": H}],
        [
            {"id": 100, "image_id": 5, "category_id": 4, "mask": sv},
            {"id": 101, "image_id": 5, "category_id": 7, "mask": sv},
            {"id": 102, "image_id": 5, "category_id": 9, "mask": tank},
        ],
        [{"id": 4, "name": "plane"}, {"id": 7, "name": "Small_Vehicle"},
         {"id": 9, "name": "storage_tank"}],
    )  # fmt: skip
    result = evaluate(out, gt)
    assert [(s.class_name, s.gt_annotation, s.iou) for s in result.scores] == [
        ("small-vehicle", "101", 1.0),
        ("storage-tank", "102", 1.0),
    ]
    assert [u["class_name"] for u in result.unmatched_gt] == ["plane"]


def test_tiles_see_the_gt_through_their_window(tmp_path: Path) -> None:
    gh, gw = 80, 100
    gt_boxes = [(10, 10, 30, 30), (45, 20, 70, 40), (80, 60, 96, 76)]
    gt = write_coco(
        tmp_path / "gt.json",
        [{"id": 1, "file_name": "train/images/P0003.png", "width": gw, "height": gh}],
        [{"image_id": 1, "category_id": 11, "mask": box_mask(gh, gw, b)} for b in gt_boxes],
        CATEGORIES,
    )
    src = f"{ROOT}/train/images/P0003.png"
    wx, wy, tw, th = 40, 6, 50, 60  # covers x 40..90, y 6..66
    tiles = [
        {"image_id": "P0003__50__40___6", "width": tw, "height": th, "tile_window": [wx, wy, tw, th],
         "file_name": "/out/images/P0003__50__40___6.png", "source_file": src},
        # a half-resolution tile of the whole image (rate 0.5)
        {"image_id": "P0003__r0.5", "width": 50, "height": 40, "tile_window": [0, 0, gw, gh],
         "file_name": "/out/images/P0003__r0.5.png", "source_file": src},
    ]  # fmt: skip
    instances = [
        # object 2 inside the tile, object 3 cut by its border (polygon not clipped)
        {"image_id": tiles[0]["image_id"], "class_name": "plane", "hbox": (5, 14, 30, 34),
         "mask": box_mask(th, tw, (5, 14, 30, 34)), "object_index": 0},
        {"image_id": tiles[0]["image_id"], "class_name": "plane", "hbox": (40, 54, 56, 70),
         "mask": box_mask(th, tw, (40, 54, 50, 60)), "object_index": 1},
        # object 1 at half scale
        {"image_id": tiles[1]["image_id"], "class_name": "plane", "hbox": (5, 5, 15, 15),
         "mask": box_mask(40, 50, (5, 5, 15, 15)), "object_index": 0},
    ]  # fmt: skip
    out = write_build(tmp_path / "out", tiles, instances, root=ROOT)
    result = evaluate(out, gt)
    assert [(s.image_id, s.gt_annotation, s.iou) for s in result.scores] == [
        ("P0003__50__40___6", "2", 1.0),
        ("P0003__50__40___6", "3", 1.0),
        ("P0003__r0.5", "1", 1.0),
    ]
    assert result.scores[1].gt_area == 10 * 6  # only the part inside the tile counts
    assert result.unmatched_gt == []  # each GT object was seen by some tile


def test_mask_ap_equals_cocoeval_on_the_same_files(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    images, instances, anns = [], [], []
    names = ["plane", "ship", "storage-tank"]
    for i in range(3):
        image_id = f"P{i:04d}"
        images.append({"image_id": image_id, "width": 96, "height": 96})
        for k in range(6):
            x, y = 4 + (k % 3) * 30, 4 + (k // 3) * 45
            size = int(rng.integers(12, 24))
            gbox = (x, y, x + size, y + size)
            shift = int(rng.integers(0, 6))
            pbox = (x + shift, y, x + size + shift, y + size - int(rng.integers(0, 4)))
            name = names[(i + k) % 3]
            instances.append(
                {"image_id": image_id, "class_name": name, "hbox": gbox,
                 "mask": box_mask(96, 96, pbox), "object_index": k,
                 "score": None if k == 5 else float(rng.uniform(0.3, 1.0))}
            )  # fmt: skip
            anns.append(
                {"image_id": i + 1, "category_id": CAT[name], "mask": box_mask(96, 96, gbox)}
            )
    out = write_build(tmp_path / "out", images, instances)
    gt_path = write_coco(
        tmp_path / "gt.json",
        [{"id": i + 1, "file_name": f"train/images/P{i:04d}.png", "width": 96, "height": 96}
         for i in range(3)],
        anns,
        CATEGORIES,
    )  # fmt: skip
    doc = evaluate(out, gt_path).to_dict()
    assert doc["matched"] == 18 and doc["unmatched_gt"] == 0

    # pycocotools' own result: the GT file and the build's masks as detections
    from samrs.outputs.manifest import read_table

    rows = read_table(out, "instances").to_pylist()
    dets = [
        {"image_id": int(r["image_id"][1:]) + 1, "category_id": CAT[r["class_name"]],
         "segmentation": {"size": [96, 96], "counts": r["segmentation"]},
         "score": 1.0 if r["score"] is None else r["score"]}
        for r in rows
    ]  # fmt: skip
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(str(gt_path))
        ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iouType="segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert 0.1 < ev.stats[0] < 0.9
    assert doc["mask_ap"] == pytest.approx(ev.stats[0], abs=1e-12)
    assert doc["mask_ap50"] == pytest.approx(ev.stats[1], abs=1e-12)
    assert doc["mask_ap75"] == pytest.approx(ev.stats[2], abs=1e-12)
    # per size: COCOeval's area ranges; every object here is small (COCO gives -1 for none)
    assert doc["per_size"]["small"]["mask_ap"] == pytest.approx(ev.stats[3], abs=1e-12)
    assert ev.stats[4] == ev.stats[5] == -1
    assert doc["per_size"]["medium"]["mask_ap"] is doc["per_size"]["large"]["mask_ap"] is None


def write_hrsc(root: Path) -> None:
    """A one-image HRSC2016 folder: XML, colour mask (two ships, one without mask)."""
    ann = root / "FullDataSet" / "Annotations"
    ann.mkdir(parents=True)
    colour = np.zeros((60, 80, 3), dtype=np.uint8)
    colour[10:20, 10:40] = (255, 0, 0)
    colour[30:50, 50:70] = (0, 128, 255)
    (root / "FullDataSet" / "Segmentations").mkdir()
    Image.fromarray(colour).save(root / "FullDataSet" / "Segmentations" / "100000001.png")
    objects = [("255,0,0", (10, 10, 39, 19)), ("", (0, 50, 5, 55)), ("0,128,255", (50, 30, 69, 49))]
    body = "".join(
        f"<HRSC_Object><Object_ID>{k}</Object_ID><Class_ID>100000001</Class_ID>"
        f"<box_xmin>{b[0]}</box_xmin><box_ymin>{b[1]}</box_ymin><box_xmax>{b[2]}</box_xmax>"
        f"<box_ymax>{b[3]}</box_ymax><seg_color>{c}</seg_color></HRSC_Object>"
        for k, (c, b) in enumerate(objects)
    )
    (ann / "100000001.xml").write_text(
        "<HRSC_Image><Img_ID>100000001</Img_ID><Img_FileName>100000001</Img_FileName>"
        "<Img_FileFmt>bmp</Img_FileFmt><Img_SizeWidth>80</Img_SizeWidth>"
        f"<Img_SizeHeight>60</Img_SizeHeight><HRSC_Objects>{body}</HRSC_Objects></HRSC_Image>"
    )


def test_hrsc_ground_truth(tmp_path: Path) -> None:
    """HRSC masks by seg_color; identity by label file + source_line (1-based object position),
    also when the build numbered its objects otherwise."""
    write_hrsc(tmp_path / "HRSC2016")
    label = f"{tmp_path}/HRSC2016/FullDataSet/Annotations/100000001.xml"
    boxes = [((10, 10, 40, 20), (10, 10, 40, 20)), ((0, 50, 6, 56), (0, 50, 6, 56)),
             ((50, 30, 70, 50), (50, 30, 70, 45))]  # fmt: skip
    out = write_build(
        tmp_path / "out",
        [{"image_id": "100000001", "width": 80, "height": 60,
          "source_file": f"{tmp_path}/HRSC2016/FullDataSet/AllImages/100000001.bmp"}],
        [{"image_id": "100000001", "class_name": "ship", "hbox": hbox,
          "mask": box_mask(60, 80, mbox), "object_index": 7 - k, "source_line": k + 1,
          "source_file": label} for k, (hbox, mbox) in enumerate(boxes)],
        source="hrsc",
        root=f"{tmp_path}/HRSC2016",
    )  # fmt: skip
    doc = evaluate(out, tmp_path / "HRSC2016").to_dict(instances=True)
    assert doc["matching"]["by_identity"] == 2
    assert [s["iou"] for s in doc["instances"]] == [1.0, 0.75]
    assert doc["matching"]["gt_without_mask"] == 1
    assert doc["unmatched_pred"] == 1  # the ship without a GT mask


def test_hrsc_colour_that_is_no_colour_is_named_not_dropped(tmp_path: Path, caplog) -> None:
    """A seg_color that is not R,G,B (a value over 255) keeps its object in the reader, with the
    text in a flag; evaluate counts the object as without mask and says which one and why."""
    import xml.etree.ElementTree as ET

    from samrs.sources import hrsc

    root = tmp_path / "HRSC2016"
    write_hrsc(root)
    label = root / "FullDataSet" / "Annotations" / "100000001.xml"
    label.write_text(
        label.read_text().replace("<seg_color></seg_color>", "<seg_color>300,0,0</seg_color>")
    )
    element = ET.parse(label).getroot().findall("HRSC_Objects/HRSC_Object")[1]
    fields = hrsc.object_fields(element)
    assert not isinstance(fields, str)
    assert fields.flags == ("hbox_only", "hrsc_class=100000001", "seg_color_invalid=300,0,0")
    with caplog.at_level("WARNING"):
        truth = load_ground_truth(root)
    assert truth.n_without_mask == 1 and sum(len(i.objects) for i in truth.images) == 2
    assert "100000001.xml:2: seg_color_invalid=300,0,0: not an R,G,B colour" in caplog.text


def test_hrsc_ground_truth_is_the_readers_objects(tmp_path: Path, caplog) -> None:
    """One HRSC parser: evaluate's GT objects are the reader's objects with a mask colour, one
    to one (label file, line, box, colour); the rest are counted, the rejected one logged."""
    root = tmp_path / "hrsc"
    shutil.copytree(Path(__file__).parents[1] / "fixtures" / "sources" / "hrsc", root)
    (root / "FullDataSet" / "Segmentations").mkdir()
    for stem in ("100000001", "100000002", "100000009"):
        Image.new("RGB", (32, 32)).save(root / "FullDataSet" / "Segmentations" / f"{stem}.png")
    with caplog.at_level("WARNING"):
        truth = load_ground_truth(root)
    gt = {
        (obj.source_files, obj.source_line): (image.file_name, obj.bbox, obj.mask_rgb,
                                              obj.object_index, obj.ann_id)
        for image in truth.images
        for obj in image.objects
    }  # fmt: skip
    ds = read_dataset("hrsc", root)
    read = {}
    for image in ds.images:
        for obj in image.objects:
            colour = [f.split("=")[1] for f in obj.flags if f.startswith("seg_color=")]
            if colour:
                key = ((Path(obj.source_file).relative_to(root).as_posix(),), obj.source_line)
                read[key] = (Path(image.image_path).relative_to(root).as_posix(), obj.hbox,
                             tuple(int(v) for v in colour[0].split(",")),
                             obj.source_line - 1, obj.source_element)  # fmt: skip
    assert gt == read
    assert {k: v[1:3] for k, v in gt.items()} == {
        (("FullDataSet/Annotations/100000001.xml",), 1): ((10, 8, 22, 12), (0, 0, 255)),
        (("FullDataSet/Annotations/100000002.xml",), 1): ((2, 2, 9, 6), (255, 0, 0)),
    }
    # labelled images, with or without the image file (100000009); not 100000003 (no label)
    assert [image.file_name for image in truth.images] == [
        "FullDataSet/AllImages/100000001.bmp",
        "FullDataSet/AllImages/100000002.bmp",
        "FullDataSet/AllImages/100000009.bmp",
    ]
    # three objects without a colour, one the reader rejected (no box): logged with its line
    assert truth.n_without_mask == 4
    assert "100000002.xml:2: HRSC_Objects/HRSC_Object[2]: missing" in caplog.text


# --- CLI ----------------------------------------------------------------------------------


def test_cli_json_and_table(tmp_path: Path) -> None:
    out, gt = make_case(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", "--pred", str(out), "--gt", str(gt), "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    for key in ("miou", "area_iou", "boundary_iou", "mask_ap", "per_class", "per_size",
                "matched", "unmatched_gt", "unmatched_pred", "rejected"):  # fmt: skip
        assert key in doc
    assert doc["miou"] == pytest.approx(np.mean(KEPT_IOUS))
    res = runner.invoke(main, ["evaluate", "--pred", str(out), "--gt", str(gt)])
    assert res.exit_code == 0, res.output
    assert "mIoU" in res.stdout and "storage-tank" in res.stdout


def test_cli_errors_name_the_file(tmp_path: Path) -> None:
    out, gt = make_case(tmp_path)
    runner = CliRunner()
    res = runner.invoke(main, ["evaluate", "--pred", str(tmp_path), "--gt", str(gt)])
    assert res.exit_code != 0 and "samrs.json" in res.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"images": []}')
    res = runner.invoke(main, ["evaluate", "--pred", str(out), "--gt", str(bad), "--json"])
    assert res.exit_code != 0 and "bad.json" in res.output and res.stdout == ""


def test_bad_segmentation_is_reported(tmp_path: Path) -> None:
    gt = write_coco(
        tmp_path / "gt.json",
        [{"id": 1, "file_name": "a.png", "width": 8, "height": 8}],
        [{"image_id": 1, "category_id": 3, "segmentation": {"size": [8, 8], "counts": "zz"},
          "bbox": [0, 0, 2, 2], "area": 4}],
        [{"id": 3, "name": "plane"}],
    )  # fmt: skip
    out = write_build(
        tmp_path / "out",
        [{"image_id": "a", "width": 8, "height": 8, "source_file": "a.png"}],
        [{"image_id": "a", "class_name": "plane", "hbox": (0, 0, 2, 2),
          "mask": box_mask(8, 8, (0, 0, 2, 2))}],
    )  # fmt: skip
    with pytest.raises(EvaluationError, match="annotation 1"):
        evaluate(out, gt)


def test_a_folder_that_is_no_ground_truth_says_what_the_hrsc_reader_missed(tmp_path: Path) -> None:
    """A folder without gt/instances.json is read as HRSC2016; the error keeps the reader's
    own words (what it looked for), not only the generic list of accepted forms."""
    (tmp_path / "gt").mkdir()
    (tmp_path / "gt" / "notes.txt").write_text("not ground truth")
    with pytest.raises(EvaluationError) as info:
        load_ground_truth(tmp_path / "gt")
    message = str(info.value)
    assert message.startswith(f"{tmp_path / 'gt'}: no ground truth found")
    assert "read as HRSC2016:" in message and "AllImages" in message


def test_rle_roundtrip_helper() -> None:
    """The fixture's masks survive the manifest's RLE encoding (guards the fixtures)."""
    mask = box_mask(7, 9, (1, 2, 5, 6))
    assert (rle.decode(rle.encode(mask)) == mask).all()


def test_placed_masks_round_trip_through_rle() -> None:
    """The crop-only RLE decode/encode used for IoU and AP equals pycocotools' full path."""
    from samrs.analysis.evaluate.metrics import _encode_placed, _placed_rle

    rng = np.random.default_rng(1)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 12, 2))
        full = rng.random((h, w)) < 0.4
        if rng.random() < 0.3:
            full[:] = False
        enc = rle.encode(full)
        placed = _placed_rle({"size": enc["size"], "counts": enc["counts"].encode()})
        assert placed.area == full.sum()
        again = _encode_placed(placed, w, h)
        assert (rle.decode(again) == full).all()


def test_build_without_instances(tmp_path: Path) -> None:
    """Nothing generated: no metrics (null, not 0), every GT object unmatched, table prints."""
    _, gt = make_case(tmp_path)
    out = write_build(tmp_path / "empty", [{"image_id": "P0001", "width": W, "height": H}], [])
    doc = evaluate(out, gt).to_dict()
    assert doc["matched"] == 0 and doc["miou"] is None and doc["mask_ap"] is None
    assert doc["unmatched_gt"] == len(OBJECTS_A) + 1
    assert doc["matching"]["gt_images_evaluated"] == 1
    assert "all (kept)" in format_result(doc)


def test_cli_instances_file(tmp_path: Path) -> None:
    out, gt = make_case(tmp_path)
    target = tmp_path / "scores" / "instances.json"
    res = CliRunner().invoke(
        main, ["evaluate", "--pred", str(out), "--gt", str(gt), "--instances", str(target)]
    )
    assert res.exit_code == 0, res.output
    doc = json.loads(target.read_text())
    assert [s["iou"] for s in doc["instances"] if s["kept"]] == pytest.approx(KEPT_IOUS)
    assert [u["reason"] for u in doc["unmatched_pred_instances"]] == [
        "no GT object",
        "no GT image",
    ]


def test_ground_truth_optional_ints_accept_json_numbers_and_numeric_strings() -> None:
    from samrs.analysis.evaluate.groundtruth import _opt_int

    values = [3, 3.0, "4", True, None, "x", [1], {"a": 1}, float("nan")]
    assert [_opt_int(v) for v in values] == [3, 3, 4, 1, None, None, None, None, None]
