"""Object-level outputs across tiles: provenance columns, ``export --level source`` and the
cross-tile agreement, on a small DOTA image with dense objects across tile edges and a
pier-like long diagonal object."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samrs.build import BuildConfig, run_build
from samrs.cli import main
from samrs.core.geometry import rasterize_polygon, rbox_polygon
from samrs.outputs.manifest import read_table
from samrs.outputs.objects import cross_tile_agreement, edge_distance

WIDTH, HEIGHT = 1000, 700
PATCH, GAP = 512, 200  # windows at x 0/312/488, y 0/188


def _transform():  # type: ignore[no-untyped-def]
    from rasterio.transform import Affine

    return Affine(0.5, 0.0, 500000.0, 0.0, -0.5, 4800000.0)  # 0.5 m pixels, UTM 33N


TRANSFORM = _transform()


def _objects() -> list[tuple[str, tuple[float, ...]]]:
    """Dense small vehicles in a grid straddling the tile edges, ships, and a pier."""
    objs: list[tuple[str, tuple[float, ...]]] = []
    for row in range(4):
        for col in range(10):
            cx, cy = 280 + col * 26.0, 150 + row * 26.0  # around x 312 / y 188 edges
            objs.append(("small-vehicle", rbox_polygon(cx, cy, 16, 8, 0.3)))
    objs.append(("ship", rbox_polygon(520, 520, 80, 22, -0.4)))
    objs.append(("ship", rbox_polygon(820, 420, 70, 20, 1.1)))
    objs.append(("harbor", rbox_polygon(445, 340, 300, 10, math.radians(38))))  # the pier
    return objs


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    root = tmp_path_factory.mktemp("src") / "dota"
    (root / "train" / "images").mkdir(parents=True)
    (root / "train" / "labelTxt").mkdir(parents=True)
    rng = np.random.default_rng(0)
    image = rng.integers(60, 120, (HEIGHT, WIDTH, 3), dtype=np.uint8)
    objs = _objects()
    for _, poly in objs:
        image[rasterize_polygon(poly, HEIGHT, WIDTH)] = (220, 215, 200)
    import rasterio
    from rasterio.transform import Affine

    with rasterio.open(
        root / "train" / "images" / "P0001.tif", "w", driver="GTiff", width=WIDTH,
        height=HEIGHT, count=3, dtype="uint8", crs="EPSG:32633", transform=TRANSFORM,
    ) as dst:  # fmt: skip
        dst.write(image.transpose(2, 0, 1))
    assert isinstance(TRANSFORM, Affine)
    lines = ["imagesource:GoogleEarth", "gsd:0.5"]
    lines += [" ".join(f"{v:.1f}" for v in poly) + f" {name} 0" for name, poly in objs]
    (root / "train" / "labelTxt" / "P0001.txt").write_text("\n".join(lines) + "\n")
    out = tmp_path_factory.mktemp("out") / "build"
    config = BuildConfig(
        source="dota", root=str(root), out=str(out), segmenter="box", prompt="rbox-mask",
        patch_size=PATCH,
        gap=GAP, shard_size=2, progress=False,
    )  # fmt: skip
    run_build(config)
    return out, objs


def test_instances_carry_source_image_and_object_index(build) -> None:  # type: ignore[no-untyped-def]
    out, objs = build
    images = read_table(out, "images").to_pylist()
    inst = read_table(out, "instances").to_pylist()
    (source_id,) = {im["source_image_id"] for im in images}  # every tile: one source image
    assert len(images) == 6 and source_id not in {im["image_id"] for im in images}
    assert all((im["source_width"], im["source_height"]) == (WIDTH, HEIGHT) for im in images)
    by_id = {im["image_id"]: im for im in images}
    for row in inst:
        x, y = by_id[row["image_id"]]["tile_window"][:2]
        source_poly = np.asarray(objs[row["source_object_index"]][1])
        moved = np.asarray(row["polygon"]) + np.tile([x, y], 4)
        np.testing.assert_allclose(moved, source_poly, atol=0.051)  # labels have 1 decimal
        assert row["mask_source"] == "segmenter" and row["mask_note"] is None
    errors = read_table(out, "errors").to_pylist()
    seen = {r["source_object_index"] for r in inst}
    assert len(seen) + sum(e["n_objects"] for e in errors) == len(objs)
    assert len(inst) > len(seen)  # dense objects across edges: several tiles each


def _expected_tile(images: list[dict], inst: list[dict], objs: list, index: int) -> str:
    """Independent statement of the rule: largest corner distance to a window side inside
    the image; ties to the smallest instance id."""
    by_id = {im["image_id"]: im for im in images}
    best: tuple[float, int, str] | None = None
    pts = np.asarray(objs[index][1]).reshape(4, 2)
    for row in inst:
        if row["source_object_index"] != index or not row["kept"]:
            continue
        x, y, w, h = by_id[row["image_id"]]["tile_window"]
        sides = []
        if x > 0:
            sides.append(pts[:, 0] - x)
        if y > 0:
            sides.append(pts[:, 1] - y)
        if x + w < WIDTH:
            sides.append(x + w - pts[:, 0])
        if y + h < HEIGHT:
            sides.append(y + h - pts[:, 1])
        d = float(np.min(sides))
        key = (-round(d, 6), row["instance_id"], row["image_id"])
        if best is None or key < best:
            best = key
    assert best is not None
    return best[2]


def test_export_source_level_coco(build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, objs = build
    to = tmp_path / "coco"
    result = CliRunner().invoke(
        main, ["export", str(out), "--format", "coco", "--to", str(to), "--level", "source",
               "--images", "none", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    images = read_table(out, "images").to_pylist()
    inst = read_table(out, "instances").to_pylist()
    path = to / "annotations" / "instances_train.json"
    doc = json.loads(path.read_text())
    assert doc["info"]["samrs_level"] == "source"
    assert [(im["width"], im["height"]) for im in doc["images"]] == [(WIDTH, HEIGHT)]
    kept_objects = sorted({r["source_object_index"] for r in inst if r["kept"]})
    anns = doc["annotations"]
    assert sorted(a["samrs_source_object_index"] for a in anns) == kept_objects  # one each
    coco = COCO(str(path))
    for ann in anns:
        index = ann["samrs_source_object_index"]
        assert ann["samrs_tile_image_id"] == _expected_tile(images, inst, objs, index)
        mask = coco.annToMask(ann).astype(bool)
        truth = rasterize_polygon(np.round(objs[index][1], 1), HEIGHT, WIDTH)  # as labelled
        assert ann["area"] == int(mask.sum())
        if ann["samrs_edge_distance"] >= 0:  # whole in its tile: the box mask itself
            np.testing.assert_array_equal(mask, truth)
    pier = next(a for a in anns if a["samrs_source_object_index"] == len(objs) - 1)
    assert pier["samrs_tiles"] >= 1 and pier["samrs_edge_distance"] > 0
    # the result evaluates against itself as a perfect detector (loadRes + COCOeval)
    dets = [dict(a, score=1.0) for a in anns]
    ev = COCOeval(coco, coco.loadRes(dets), "segm")
    ev.params.useCats = 0
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    assert ev.stats[0] > 0.99
    tile_doc = tmp_path / "tile"
    again = CliRunner().invoke(
        main, ["export", str(out), "--format", "coco", "--to", str(tile_doc), "--images", "none"]
    )
    assert again.exit_code == 0, again.output
    tiles = json.loads((tile_doc / "annotations" / "instances_train.json").read_text())
    assert len(tiles["annotations"]) == sum(r["kept"] for r in inst) > len(anns)


def test_edge_distance_rule() -> None:
    poly = (10.0, 10.0, 30.0, 10.0, 30.0, 20.0, 10.0, 20.0)
    assert edge_distance(poly, None, 100, 100) == math.inf
    assert edge_distance(poly, (0, 0, 100, 100), 100, 100) == math.inf  # no cutting side
    assert edge_distance(poly, (0, 0, 40, 100), 100, 100) == 10.0  # right side at x 40
    assert edge_distance(poly, (20, 0, 80, 100), 100, 100) == -10.0  # cut: a corner outside
    assert edge_distance(poly, (0, 0, 60, 25), 100, 100) == 5.0  # bottom side at y 25


def test_cross_tile_agreement(build) -> None:  # type: ignore[no-untyped-def]
    out, _ = build
    agreement = cross_tile_agreement(out)
    assert agreement["objects"] > 10 and agreement["pairs"] >= agreement["objects"]
    # box masks of one polygon agree exactly where both tiles see them
    assert agreement["min_iou"] == pytest.approx(1.0)
    assert agreement["median_iou"] == pytest.approx(1.0)


def test_stats_report_cross_tile_agreement(build) -> None:  # type: ignore[no-untyped-def]
    from samrs.analysis.stats import compute_stats, format_stats

    out, _ = build
    stats = compute_stats(out)
    assert stats["cross_tile"] == cross_tile_agreement(out)
    assert "cross-tile agreement: " in format_stats(stats)
    assert "IoU median 1.000" in format_stats(stats)


def test_export_source_level_geojson(build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One feature per source object, in the source image's world coordinates."""
    import shapely.geometry

    out, _ = build
    coco_dir, geo_dir = tmp_path / "coco", tmp_path / "geo"
    for fmt, to in (("coco", coco_dir), ("geojson", geo_dir)):
        args = ["export", str(out), "--format", fmt, "--to", str(to), "--level", "source"]
        result = CliRunner().invoke(main, [*args, "--images", "none"] if fmt == "coco" else args)
        assert result.exit_code == 0, result.output
    anns = json.loads((coco_dir / "annotations" / "instances_train.json").read_text())[
        "annotations"
    ]
    doc = json.loads((geo_dir / "instances.geojson").read_text())
    assert doc["crs"]["properties"]["name"] == "EPSG:32633"
    by_index = {f["properties"]["source_object_index"]: f for f in doc["features"]}
    assert len(by_index) == len(doc["features"]) == len(anns)
    for ann in anns:
        feat = by_index[ann["samrs_source_object_index"]]
        assert feat["properties"]["tile_image_id"] == ann["samrs_tile_image_id"]
        x, y, w, h = ann["bbox"]  # source pixels -> world through the source transform
        t = TRANSFORM  # north-up: x' = c + a x, y' = f + e y
        x0, y0 = t.c + t.a * x, t.f + t.e * (y + h)
        x1, y1 = t.c + t.a * (x + w), t.f + t.e * y
        bounds = shapely.geometry.shape(feat["geometry"]).bounds
        np.testing.assert_allclose(bounds, (x0, y0, x1, y1), atol=1e-6)
        assert shapely.geometry.shape(feat["geometry"]).area == pytest.approx(ann["area"] * 0.25)


def test_source_level_polygons_match_the_rle(build, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out, _ = build
    docs = {}
    for name, extra in (("rle", []), ("poly", ["--polygons"])):
        to = tmp_path / name
        args = ["export", str(out), "--format", "coco", "--to", str(to), "--level", "source"]
        result = CliRunner().invoke(main, [*args, "--images", "none", *extra])
        assert result.exit_code == 0, result.output
        docs[name] = to / "annotations" / "instances_train.json"
    rle_coco, poly_coco = COCO(str(docs["rle"])), COCO(str(docs["poly"]))
    for ann_id in rle_coco.getAnnIds():
        poly_ann = poly_coco.anns[ann_id]
        assert isinstance(poly_ann["segmentation"], list)  # source-image polygons
        np.testing.assert_array_equal(
            poly_coco.annToMask(poly_ann), rle_coco.annToMask(rle_coco.anns[ann_id])
        )
