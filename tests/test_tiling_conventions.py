"""Tile conventions (mmrotate, DOTA_devkit), remnants of cut objects, split metadata.

The devkit expectations are worked out by hand from its rules (see ``samrs.tiling``), on
small fixtures: dense objects across tile edges, a small image that needs padding, a long
diagonal (pier-like) object.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from samrs.build.config import BuildConfig
from samrs.cli import main
from samrs.core.geometry import box_polygon, iof, rasterize_polygon
from samrs.core.imageio import read_image, write_png
from samrs.core.records import Dataset, ImageRecord, ObjectAnnotation
from samrs.outputs.export import BuildView
from samrs.outputs.manifest import read_table
from samrs.outputs.select import Selection
from samrs.outputs.semantic import read_semantic_png
from samrs.sources import read_dataset
from samrs.tiling import (
    LOW_IOF_FLAG,
    TilingError,
    dota_label_text,
    tile_dataset,
    tile_id,
    write_dota_patches,
)

PIER = (14.0, 20.0, 20.0, 14.0, 286.0, 280.0, 280.0, 286.0)  # 8.5 px wide, 380 px long


def _obj(polygon, line: int, difficult: bool = False) -> ObjectAnnotation:
    return ObjectAnnotation(
        tuple(float(v) for v in polygon), "ship", 6, difficult, source_file="P1.txt",
        source_line=line,
    )  # fmt: skip


# A 300 x 300 image, 200 px windows with gap 50: starts 0 and 100 on each axis. Window (0, 0)
# is framed [0, 200] x [0, 200] by the devkit, window (100, 0) [100, 299] x [0, 200] (the
# frame ends at W - 1 where the window reaches the image border).
OBJECTS = (
    _obj(box_polygon((180.7, 10, 220, 30)), 1),  # iof 0.5 in window (0, 0)
    _obj(box_polygon((170, 50, 210, 70)), 2, difficult=True),  # iof 0.75 in (0, 0)
    _obj(box_polygon((250, 100, 300, 120)), 3),  # touches the right border
    _obj((200, 130, 220, 150, 200, 170, 180, 150), 4),  # diamond: a triangle in (0, 0)
    _obj((192, 128, 212, 150, 192, 170, 172, 150), 5),  # a 5-vertex cut in (0, 0)
    _obj(PIER, 6),
)
IMAGE = ImageRecord("P1", "P1.png", 300, 300, "dota", "1.0", "train", objects=OBJECTS)


def _tiles(convention: str, image: ImageRecord = IMAGE, size: int = 200, gap: int = 50):
    tiles = tile_dataset(Dataset("dota", "1.0", [image]), size, gap, convention=convention)
    return tiles, {t.window[:2]: t for t in tiles.images}


def _by_line(tile: ImageRecord) -> dict[int, ObjectAnnotation]:
    return {o.source_line: o for o in tile.objects}  # type: ignore[misc]


# --- names ----------------------------------------------------------------------------------


def test_devkit_names_carry_the_rate_as_str() -> None:
    window = (87, 0, 1024, 1024)
    assert tile_id("P0706", window) == "P0706__1024__87___0"
    assert tile_id("P0706", window, "devkit") == "P0706__1__87___0"
    assert tile_id("P0706", window, "devkit", 0.5) == "P0706__0.5__87___0"
    assert tile_id("P0706", window, "devkit", 1.5) == "P0706__1.5__87___0"
    tiles, _ = _tiles("devkit")
    assert [t.image_id for t in tiles.images] == [
        "P1__1__0___0", "P1__1__100___0", "P1__1__0___100", "P1__1__100___100"
    ]  # fmt: skip
    with pytest.raises(TilingError, match="rate 1 only"):
        tile_dataset(Dataset("dota", "1.0", [IMAGE]), 200, 50, (0.5, 1.0), convention="devkit")
    with pytest.raises(TilingError, match="unknown tile convention"):
        tile_dataset(Dataset("dota", "1.0", [IMAGE]), 200, 50, convention="bboxtoolkit")


# --- devkit object rules ----------------------------------------------------------------------


def test_devkit_cut_objects_are_clipped_intersections() -> None:
    tiles, by_window = _tiles("devkit")
    assert tiles.errors == []
    first = _by_line(by_window[0, 0])
    # iof 0.5 <= 0.7: kept, its intersection (coordinates truncated: 180.7 -> 180), difficulty 2
    assert first[1].polygon == (180, 10, 200, 10, 200, 30, 180, 30)
    assert LOW_IOF_FLAG in first[1].flags and first[1].truncated
    # iof 0.75 > 0.7: the intersection, the source difficulty
    assert first[2].polygon == (170, 50, 200, 50, 200, 70, 170, 70)
    assert LOW_IOF_FLAG not in first[2].flags and first[2].difficult
    # 5 vertices (192,128) (200,136.8) (200,162) (192,170) (172,150): the shortest edge
    # (200,162)-(192,170) becomes its midpoint (196,166); order starts nearest the source's
    # first corner; int() truncates 136.8 -> 136
    assert first[5].polygon == (192, 128, 200, 136, 196, 166, 172, 150)
    assert LOW_IOF_FLAG not in first[5].flags  # iof 0.82
    # the diamond's part is a triangle: not written; it and the objects written altered are
    # ignore regions of the tile, with their source polygons
    assert 4 not in first
    assert by_window[0, 0].ignore_polygons == tuple(OBJECTS[i].polygon for i in (0, 1, 3, 4, 5))
    second = _by_line(by_window[100, 0])
    # wholly inside: translated, untouched
    assert second[1].polygon == (80, 10, 120, 10, 120, 30, 80, 30) and not second[1].truncated
    assert second[4].polygon == (100, 130, 120, 150, 100, 170, 80, 150)
    # touching x = 300 on a 300 px image: the frame ends at 299, so it is cut (iof 0.98)
    assert second[3].polygon == (150, 100, 199, 100, 199, 120, 150, 120)
    assert "clipped" in second[3].flags and LOW_IOF_FLAG not in second[3].flags


def test_devkit_pier_is_clamped_into_one_to_size() -> None:
    _, by_window = _tiles("devkit")
    for (x, y), tile in by_window.items():
        pier = _by_line(tile)[6]
        share = iof(PIER, (x, y, min(200, 299 - x), min(200, 299 - y)))
        assert 0 < share <= 0.7 and LOW_IOF_FLAG in pier.flags
        assert len(pier.polygon) == 8 and all(1 <= v <= 200 for v in pier.polygon)
    # window (100, 0): the cut (100,94) (100,106) (194,200) (206,200) -> x 0 clamps to 1
    assert _by_line(by_window[100, 0])[6].polygon == (1, 106, 1, 94, 106, 200, 94, 200)
    # window (0, 0): 5 vertices with two 6 px edges at the corner (200,194) (200,200)
    # (194,200): one of them (the first in the ring) is merged
    assert _by_line(by_window[0, 0])[6].polygon in (
        (14, 20, 20, 14, 200, 197, 194, 200),
        (14, 20, 20, 14, 200, 194, 197, 200),
    )


def test_devkit_label_flags() -> None:
    _, by_window = _tiles("devkit")
    lines = dota_label_text(by_window[0, 0].objects, convention="devkit").splitlines()
    assert lines[0] == "gsd:null"
    assert [line.rsplit(" ", 1)[1] for line in lines[1:]] == ["2", "1", "0", "2"]
    mm = dota_label_text(by_window[0, 0].objects).splitlines()
    assert [line.rsplit(" ", 1)[1] for line in mm[1:]] == ["2", "1", "2", "2"]


def test_small_image_is_padded_with_zeros_under_devkit(tmp_path: Path) -> None:
    pixels = np.random.default_rng(1).integers(1, 255, (557, 712, 3), dtype=np.uint8)
    write_png(tmp_path / "P0010.png", pixels)
    ship = _obj(box_polygon((700, 500, 712, 520)), 1)  # touches the right border
    image = ImageRecord(
        "P0010", str(tmp_path / "P0010.png"), 712, 557, "dota", "1.0", "val", objects=(ship,)
    )
    tiles, by_window = _tiles("devkit", image, 1024, 200)
    assert list(by_window) == [(0, 0)] and by_window[0, 0].image_id == "P0010__1__0___0"
    assert _by_line(by_window[0, 0])[1].polygon == (700, 500, 711, 500, 711, 520, 700, 520)
    write_dota_patches(tiles, tmp_path / "out", 1024, convention="devkit")
    patch = read_image(tmp_path / "out/val/images/P0010__1__0___0.png")
    assert patch.shape == (1024, 1024, 3)
    np.testing.assert_array_equal(patch[:557, :712], pixels)
    assert (patch[557:] == 0).all() and (patch[:, 712:] == 0).all()
    mm, _ = _tiles("mmrotate", image, 1024, 200)
    write_dota_patches(mm, tmp_path / "mm", 1024)
    patch = read_image(tmp_path / "mm/val/images/P0010__1024__0___0.png")
    assert (patch[557:] == (124, 116, 104)).all()  # mmrotate's BGR [104, 116, 124]


# --- remnants -----------------------------------------------------------------------------


def test_mmrotate_remnants_are_the_cut_objects_left_out() -> None:
    tiles, by_window = _tiles("mmrotate")
    first = by_window[0, 0]
    assert sorted(_by_line(first)) == [2, 5]
    expected = [OBJECTS[i].polygon for i in (0, 3, 5)]  # iof 0.5, 0.5 and the pier
    assert sorted(first.ignore_polygons) == sorted(expected)
    assert by_window[100, 0].ignore_polygons == ((-86, 20, -80, 14, 186, 280, 180, 286),)
    # the pier is in no tile: an error row accounts for it, and every tile ignores it
    assert [e.line for e in tiles.errors] == [6]
    assert all(len(t.ignore_polygons) >= 1 for t in tiles.images)
    # an object wholly outside a window is not a remnant of it
    assert all(OBJECTS[2].polygon not in t.ignore_polygons for t in tiles.images)


def test_mmrotate_clipped_objects_are_ignore_regions_too() -> None:
    tiles = tile_dataset(Dataset("dota", "1.0", [IMAGE]), 200, 50, clip=True)
    first = next(t for t in tiles.images if t.window[:2] == (0, 0))
    kept = _by_line(first)
    assert kept[2].polygon == (170, 50, 200, 50, 200, 70, 170, 70) and "clipped" in kept[2].flags
    assert OBJECTS[1].polygon in first.ignore_polygons  # its source polygon, in full
    unclipped = tile_dataset(Dataset("dota", "1.0", [IMAGE]), 200, 50)
    assert OBJECTS[1].polygon not in unclipped.images[0].ignore_polygons


# --- a dense real-format tile through build, manifest and export ----------------------------


@pytest.fixture(scope="module")
def dense_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """DOTA folder: a 300 x 300 image with 6 x 12 px ships packed across x = 200 and y = 200,
    the pier, ``imagesource:``/``gsd:`` headers."""
    root = tmp_path_factory.mktemp("dense") / "dota"
    rng = np.random.default_rng(7)
    write_png(root / "train/images/P0001.png", rng.integers(0, 255, (300, 300, 3), np.uint8))
    lines = ["imagesource:GoogleEarth", "gsd:0.3"]
    for row in range(6):
        for col in range(7):
            x0, y0 = 168 + col * 9.5, 20 + row * 30 + (col % 3) * 3
            coords = box_polygon((x0, y0, x0 + 6, y0 + 12))
            lines.append(" ".join(f"{v:g}" for v in coords) + " ship 0")
    for col in range(12):  # a row of ships across y = 200
        x0 = 20 + col * 10
        lines.append(" ".join(f"{v:g}" for v in box_polygon((x0, 190, x0 + 6, 205))) + " ship 0")
    lines.append(" ".join(f"{v:g}" for v in PIER) + " harbor 0")
    label = root / "train/labelTxt/P0001.txt"
    label.parent.mkdir(parents=True)
    label.write_text("\n".join(lines) + "\n")
    return root


def _build(root: Path, out: Path, *options: str) -> None:
    args = ["build", "--source", "dota", "--root", str(root), "--out", str(out), "--segmenter",
            "box", "--patch-size", "200", "--gap", "50", "--background", *options]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("convention", ["mmrotate", "devkit"])
def test_background_never_labels_an_annotated_object(
    dense_root: Path, tmp_path: Path, convention: str
) -> None:
    out = tmp_path / "out"
    _build(dense_root, out, "--tile-convention", convention)
    source = read_dataset("dota", dense_root).images[0]
    images = read_table(out, "images").to_pylist()
    assert len(images) == 4
    instances: dict[str, list[dict]] = {}
    for inst in read_table(out, "instances").to_pylist():
        instances.setdefault(inst["image_id"], []).append(inst)
    remnant_pixels = 0
    for row in images:
        x, y, w, h = row["tile_window"]
        label = read_semantic_png(out / row["semantic_file"])
        assert label.shape == (h, w)
        inside = np.zeros((h, w), dtype=bool)
        for obj in source.objects:  # every source object, in tile coordinates
            shifted = [v - (x if i % 2 == 0 else y) for i, v in enumerate(obj.polygon)]
            inside |= rasterize_polygon(shifted, h, w)
        assert (label[inside] != 0).all(), row["image_id"]  # never background
        # ignore regions stay within the objects, or the polygon a rejected instance has in
        # this tile (255 by the --background rule; under the devkit rules that polygon is
        # the object's clipped, integer and 5-to-4-vertex form, which can leave the object)
        for inst in instances.get(row["image_id"], []):
            if not inst["kept"]:
                inside |= rasterize_polygon(inst["polygon"], h, w)
        assert (label[~inside] != 255).all()
        for polygon in row["ignore_polygons"] or []:
            remnant_pixels += int((label[rasterize_polygon(polygon, h, w)] == 255).sum())
    if convention == "mmrotate":
        assert remnant_pixels > 100  # (the devkit writes most cut objects, as difficulty 2)
    # the export repaints from the manifest: same labels as the build
    view = BuildView.open(out)
    for item in view.items(Selection()):
        np.testing.assert_array_equal(
            view.label(item, None), read_semantic_png(out / item.image["semantic_file"])
        )
    meta = json.loads((out / "samrs.json").read_text())
    assert json.dumps(meta).count(f'"tile_convention": "{convention}"') >= 1


def test_ignore_polygons_column_matches_the_tiler(dense_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    _build(dense_root, out)
    tiles = tile_dataset(read_dataset("dota", dense_root), 200, 50)
    rows = {r["image_id"]: r for r in read_table(out, "images").to_pylist()}
    assert sorted(rows) == sorted(t.image_id for t in tiles.images)
    for tile in tiles.images:
        column = rows[tile.image_id]["ignore_polygons"]
        assert [tuple(p) for p in column or []] == list(tile.ignore_polygons)
    assert any(rows[t]["ignore_polygons"] for t in rows)


def test_tile_convention_is_part_of_the_fingerprint() -> None:
    base = BuildConfig("dota", "r", "o", patch_size=1024)
    devkit = BuildConfig("dota", "r", "o", patch_size=1024, tile_convention="devkit")
    assert base.fingerprint() != devkit.fingerprint()
    assert devkit.output_affecting()["tile_convention"] == "devkit"


# --- samrs split: counts, headers, conventions --------------------------------------------------


@pytest.mark.parametrize("convention", ["mmrotate", "devkit"])
def test_split_keeps_counts_and_headers(dense_root: Path, tmp_path: Path, convention: str) -> None:
    out = tmp_path / "patches"
    args = ["split", "--source", "dota", "--root", str(dense_root), "--out", str(out),
            "--patch-size", "200", "--gap", "50", "--tile-convention", convention, "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc == json.loads((out / "split.json").read_text())
    assert doc["source_objects"] == 42 + 12 + 1 and doc["tile_convention"] == convention
    back = read_dataset("dota", out)
    assert doc["patch_objects"] == back.n_objects > doc["source_objects"]  # overlaps count twice
    assert doc["pad_value"] == ([0, 0, 0] if convention == "devkit" else [124, 116, 104])
    for label in sorted((out / "train/labelTxt").iterdir()):
        head = label.read_text().splitlines()[:2]
        assert head == ["imagesource:GoogleEarth", "gsd:0.3"], label
    assert all(im.imagesource == "GoogleEarth" for im in back.images)
    rate = "1" if convention == "devkit" else "200"
    assert sorted(im.image_id for im in back.images) == [
        f"P0001__{rate}__{x}___{y}" for x, y in ((0, 0), (0, 100), (100, 0), (100, 100))
    ]
    help_text = CliRunner().invoke(main, ["split", "--help"]).output
    assert "124,116,104" in help_text and "BGR" in help_text and "devkit" in help_text
