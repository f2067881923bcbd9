"""End to end on a real build: synth -> build (grabcut, tiled) -> export / stats / audit / show /
evaluate, through the command line, checked against direct counts over the outputs.

One small DOTA build (3 synthetic images cut into 1024 px patches, one of them without
objects) is shared by the module; a second build of the same data with ``--background``
checks the shifted label ids and palette.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samrs.cli import main
from samrs.core import rle
from samrs.core.geometry import rasterize_polygon

pytestmark = pytest.mark.slow  # every test reads builds made by module fixtures (tens of seconds)

BUILD_ARGS = ["--source", "dota", "--segmenter", "grabcut", "--patch-size", "1024"]


def run(*args: str) -> str:
    """Invoke ``samrs ARGS``; fail with its output unless it exits 0; return its stdout."""
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, f"samrs {' '.join(map(str, args))}:\n{result.output}"
    return result.stdout


@pytest.fixture(scope="module")
def src(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("e2e") / "src"
    run("synth", "--format", "dota", "--out", root, "--images", "3", "--json")
    return root


@pytest.fixture(scope="module")
def build(src: Path) -> Path:
    out = src.parent / "out"
    run("build", *BUILD_ARGS, "--root", src, "--out", out, "--json")
    return out


@pytest.fixture(scope="module")
def build_bg(src: Path) -> Path:
    out = src.parent / "out-bg"
    run("build", *BUILD_ARGS, "--root", src, "--out", out, "--background", "--json")
    return out


def frame(out: Path, table: str) -> pd.DataFrame:
    return pd.read_parquet(out / "manifest" / table)


def meta(out: Path) -> dict:
    return json.loads((out / "samrs.json").read_text())


def label(out: Path, image_id: str) -> np.ndarray:
    return np.asarray(Image.open(out / "semantic" / f"{image_id}.png"))


def decode(row, height: int, width: int) -> np.ndarray:
    return rle.decode({"size": [height, width], "counts": row.segmentation}).astype(bool)


def quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


def test_every_object_once_and_label_values(build: Path) -> None:
    images, inst, errors = (frame(build, t) for t in ("images", "instances", "errors"))
    counts = meta(build)["counts"]
    assert len(inst) + int(errors["n_objects"].sum()) == counts["objects"] == len(inst)
    assert int(images["n_objects"].sum()) == len(inst)
    assert inst["instance_id"].is_unique and images["image_id"].is_unique
    assert set(images["status"]) == {"ok", "empty"}  # the synthetic set has an empty image
    n_classes = len(meta(build)["class_table"]["classes"])
    for im in images.itertuples():
        png = Image.open(build / im.semantic_file)
        assert png.mode == "P" and len(png.getpalette()) == 768
        values = set(np.unique(np.asarray(png)).tolist())
        assert values <= set(range(n_classes)) | {255}
        if im.status == "empty":
            assert values == {255}
        assert png.size == (im.width, im.height)


def test_coco_export_round_trip(build: Path, tmp_path: Path) -> None:
    images = frame(build, "images").set_index("image_id")
    inst = frame(build, "instances")
    to = tmp_path / "coco"
    summary = json.loads(run("export", build, "--format", "coco", "--to", to, "--json"))
    assert summary["annotations"] == int(inst["kept"].sum())
    path = to / "annotations" / "instances_train.json"
    coco = quiet(COCO, str(path))
    assert len(coco.getImgIds()) == len(images)
    by_id = inst.set_index("instance_id")
    for ann in coco.dataset["annotations"]:
        row = by_id.loc[ann["id"] - 1]
        img = coco.imgs[ann["image_id"]]
        assert img["samrs_image_id"] == row.image_id
        assert ann["category_id"] == row.class_id + 1 and ann["iscrowd"] == 0
        m = coco.annToMask(ann).astype(bool)
        h, w = images.loc[row.image_id, ["height", "width"]]
        np.testing.assert_array_equal(m, decode(row, h, w))
        assert ann["area"] == m.sum() == row.area
        assert ann["bbox"] == pytest.approx(list(mask_utils.toBbox(ann["segmentation"])))
    # the masks as detections of themselves: AP 1; leave out every other one: recall drops
    dets = [dict(a, score=1.0) for a in coco.dataset["annotations"]]
    aps = []
    for subset in (dets, dets[::2]):
        ev = COCOeval(coco, quiet(coco.loadRes, subset), "segm")
        with contextlib.redirect_stdout(io.StringIO()):
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        aps.append(ev.stats[0])
    assert aps[0] == pytest.approx(1.0) and aps[1] < 0.9
    # the same export again: the same bytes
    run("export", build, "--format", "coco", "--to", tmp_path / "again", "--json")
    assert path.read_bytes() == (tmp_path / "again" / path.relative_to(to)).read_bytes()


def test_coco_thresholds_and_polygons(build: Path, tmp_path: Path) -> None:
    inst = frame(build, "instances")
    t = float(inst["rbox_iou"].median())
    to = tmp_path / "strict"
    run("export", build, "--format", "coco", "--to", to, "--min-rbox-iou", t,
        "--include-rejected", "--images", "none", "--json")  # fmt: skip
    anns = json.loads((to / "annotations" / "instances_train.json").read_text())["annotations"]
    expect_kept = set(inst.loc[inst["kept"] & (inst["rbox_iou"] >= t), "instance_id"])
    assert {a["id"] - 1 for a in anns if a["kept"]} == expect_kept
    assert len(anns) == len(inst)  # rejected ones flagged, not dropped
    assert {a["reject_reason"] for a in anns if not a["kept"]} == {"low-rbox-iou"}

    poly = tmp_path / "poly"
    run("export", build, "--format", "coco", "--to", poly, "--polygons", "--images", "none")
    coco = quiet(COCO, str(poly / "annotations" / "instances_train.json"))
    rle_coco = quiet(COCO, str(build / "coco" / "instances.json"))
    for ann in coco.dataset["annotations"]:
        assert isinstance(ann["segmentation"], list)
        outline = coco.annToMask(ann).astype(bool)
        exact = rle_coco.annToMask(rle_coco.anns[ann["id"]]).astype(bool)
        assert (outline >= exact).all()  # traced along pixel edges, holes filled


def test_mmseg_export_layout_and_class_subset(build: Path, tmp_path: Path) -> None:
    images = frame(build, "images")
    table = meta(build)["class_table"]["classes"]
    to = tmp_path / "mmseg"
    run("export", build, "--format", "mmseg", "--to", to, "--json")
    names = (to / "splits" / "train.txt").read_text().split()
    assert names == images["image_id"].tolist()
    info = json.loads((to / "samrs_mmseg.json").read_text())
    assert info["classes"] == [c["name"] for c in table]
    assert info["palette"] == [c["color"] for c in table] and info["ignore_index"] == 255
    for name in names:
        assert (to / "img_dir" / "train" / f"{name}.png").is_file()
        ann = to / "ann_dir" / "train" / f"{name}.png"
        assert ann.read_bytes() == (build / "semantic" / f"{name}.png").read_bytes()

    sub = tmp_path / "subset"
    run("export", build, "--format", "mmseg", "--to", sub, "--classes", "ship,Plane", "--json")
    info = json.loads((sub / "samrs_mmseg.json").read_text())
    assert info["classes"] == ["plane", "ship"]
    lut = subset_lut(table, ["plane", "ship"], background=False)
    for name in names:
        part = np.asarray(Image.open(sub / "ann_dir" / "train" / f"{name}.png"))
        # pixels of planes and ships renumbered 0, 1; every other pixel 255
        np.testing.assert_array_equal(part, lut[label(build, name)])


def subset_lut(table: list[dict], names: list[str], background: bool) -> np.ndarray:
    """Full label value -> value in a class-subset export."""
    shift = int(background)
    lut = np.full(256, 255, dtype=np.uint8)
    lut[0] = 0 if background else 255
    chosen = sorted(c["id"] for c in table if c["name"] in names)
    for new, cid in enumerate(chosen):
        lut[cid + shift] = new + shift
    return lut


def test_ros_sam_arrays(build: Path, tmp_path: Path) -> None:
    images = frame(build, "images").set_index("image_id")
    inst = frame(build, "instances")
    to = tmp_path / "ros"
    summary = json.loads(run("export", build, "--format", "ros-sam", "--to", to, "--json"))
    kept = inst[inst["kept"]]
    with_kept = sorted(kept["image_id"].unique())
    assert summary["images"] == len(with_kept) and summary["instances"] == len(kept)
    assert summary["skipped_without_kept"] == len(images) - len(with_kept)
    assert sorted(p.stem for p in (to / "img").glob("*.png")) == with_kept
    for image_id in with_kept:
        rows = kept[kept["image_id"] == image_id].sort_values("object_index")
        h, w = images.loc[image_id, ["height", "width"]]
        boxes = np.load(to / "boxes" / f"{image_id}.npy")
        masks = np.load(to / "onehotmask" / f"{image_id}.npy")
        assert boxes.dtype == np.float32 and boxes.shape == (len(rows), 4)
        np.testing.assert_allclose(boxes, np.stack(rows["hbox"].to_list()), atol=1e-3)
        assert masks.dtype == np.uint8 and masks.shape == (len(rows), h, w)
        expect = np.stack([decode(r, h, w) for r in rows.itertuples()]).astype(np.uint8) * 255
        np.testing.assert_array_equal(masks, expect)


def test_stats_equal_direct_counts(build: Path, build_bg: Path) -> None:
    images, inst = frame(build, "images"), frame(build, "instances")
    s = json.loads(run("stats", build, "--compare", build_bg, "--json"))
    kept = inst[inst["kept"]]["class_name"].value_counts().to_dict()
    assert {c["name"]: c["instances"] for c in s["classes"] if c["instances"]} == kept
    assert s["instances"]["total"] == len(inst) and s["instances"]["kept"] == inst["kept"].sum()
    pixels = np.zeros(256, dtype=np.int64)
    for image_id in images["image_id"]:
        pixels += np.bincount(label(build, image_id).ravel(), minlength=256)
    assert [c["pixels"] for c in s["classes"]] == pixels[: len(s["classes"])].tolist()
    assert s["pixels"]["unlabelled"] == pixels[255] and s["pixels"]["background"] == 0
    n_obj = {str(k): v for k, v in sorted(images["n_objects"].value_counts().items())}
    assert s["objects_per_image"]["n_objects"] == n_obj
    assert s["images"]["by_status"] == images["status"].value_counts().to_dict()
    assert s["build"]["config_fingerprint"] == meta(build)["fingerprint"]
    assert s["instances"]["truncated"] == int(inst["truncated"].sum())
    # the compared build: every unlabelled pixel is background (class 0), except those of
    # objects cut by a tile edge or rejected, which stay 255 (never background)
    assert s["compare"][0]["name"] == build_bg.name
    bg = s["compare"][0]["stats"]
    ignored = sum(int((label(build_bg, i) == 255).sum()) for i in images["image_id"])
    assert bg["pixels"]["unlabelled"] == ignored
    assert bg["pixels"]["background"] + ignored == pixels[255]
    folder = build / "stats"
    for name in ("stats.json", "report.html", "classes_pixels.png", "mask_area.png"):
        assert (folder / name).stat().st_size > 0
    html = (folder / "report.html").read_text()
    assert "data:image/png;base64," in html and build_bg.name in html


def test_audit_and_show(build: Path, tmp_path: Path) -> None:
    inst = frame(build, "instances")
    audit = json.loads(run("audit", build, "--worst", "6", "--json"))
    worst = audit["worst"]["rbox_iou"]
    assert worst[0]["rbox_iou"] == pytest.approx(inst["rbox_iou"].min(), abs=1e-6)
    # one entry per source object, though tiles overlap (objects appear in several tiles)
    ids = [w["instance_id"] for w in worst]
    keys = inst.set_index("instance_id").loc[ids, ["source_file", "source_line"]]
    assert not keys.duplicated().any()
    assert inst.duplicated(["source_file", "source_line"]).any()
    assert "score" not in audit["worst"]  # grabcut gives no scores
    sheet = Image.open(build / "audit" / "worst_rbox_iou.png")
    assert sheet.width > 200 and sheet.height > 200
    assert (build / "audit" / "summary.txt").read_text().startswith("samrs audit")

    first = frame(build, "images").iloc[0]
    png = tmp_path / "show.png"
    assert run("show", build, first["image_id"], "--to", png).strip() == str(png)
    drawn = np.asarray(Image.open(png))
    assert drawn.shape == (first["height"], first["width"], 3) and drawn.std() > 0


def test_evaluate_json(build: Path, src: Path) -> None:
    inst = frame(build, "instances")
    doc = json.loads(run("evaluate", "--pred", build, "--gt", src / "gt" / "instances.json",
                         "--json"))  # fmt: skip
    assert doc["matched"] == len(inst) and doc["unmatched_pred"] == 0
    assert doc["matching"]["by_identity"] == len(inst)
    assert doc["miou"] > 0.8 and doc["area_iou"] > 0.8 and doc["boundary_iou"] > 0.5
    assert 0.5 < doc["mask_ap"] <= 1.0
    assert set(doc["per_class"]) == set(inst["class_name"])
    assert sum(v["count"] for v in doc["per_size"].values()) == len(inst)
    assert all("mask_ap" in v for v in doc["per_size"].values())


def test_background_build_shifts_ids_and_palette(build: Path, build_bg: Path, tmp_path) -> None:
    classes = meta(build)["class_table"]["classes"]
    inst = frame(build_bg, "instances")
    for row in frame(build_bg, "images").itertuples():
        image_id = row.image_id
        plain, bg = label(build, image_id), label(build_bg, image_id)
        # 255 stays only on objects: tile remnants (ignore_polygons) and rejected instances
        objects = np.zeros_like(bg, dtype=bool)
        rejected = inst[(inst["image_id"] == row.image_id) & ~inst["kept"]]["polygon"]
        remnants = [] if row.ignore_polygons is None else list(row.ignore_polygons)
        for polygon in [*remnants, *rejected]:
            objects |= rasterize_polygon(list(polygon), row.height, row.width)
        ignored = bg == 255
        assert (plain[ignored] == 255).all() and objects[ignored].all()
        expected = np.where(plain == 255, 0, plain + 1)
        np.testing.assert_array_equal(bg[~ignored], expected[~ignored])
    pal = Image.open(build_bg / "semantic" / f"{image_id}.png").getpalette()
    for c in classes:
        assert pal[3 * (c["id"] + 1) : 3 * (c["id"] + 2)] == c["color"]
    # COCO ids do not shift; the mmseg export names class 0 'background'
    cats = json.loads((build_bg / "coco" / "instances.json").read_text())["categories"]
    assert [c["id"] for c in cats] == [c["id"] + 1 for c in classes]
    run("export", build_bg, "--format", "mmseg", "--to", tmp_path / "mm", "--images", "symlink")
    info = json.loads((tmp_path / "mm" / "samrs_mmseg.json").read_text())
    assert info["classes"] == ["background"] + [c["name"] for c in classes]
    assert info["palette"][1:] == [c["color"] for c in classes]
    # a class subset: objects of the other classes are ignored (255), never background
    sub = tmp_path / "sub"
    run("export", build_bg, "--format", "mmseg", "--to", sub, "--classes", "ship", "--json")
    assert json.loads((sub / "samrs_mmseg.json").read_text())["classes"] == ["background", "ship"]
    lut = subset_lut(classes, ["ship"], background=True)
    for image_id in frame(build, "images")["image_id"]:
        part = np.asarray(Image.open(sub / "ann_dir" / "train" / f"{image_id}.png"))
        np.testing.assert_array_equal(part, lut[label(build_bg, image_id)])
