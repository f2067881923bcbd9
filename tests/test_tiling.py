"""Tests of samrs.tiling and `samrs split`: windows, iof assignment, naming, patch round trips."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from samrs.cli import main
from samrs.core.geometry import box_polygon, clip_polygon
from samrs.core.imageio import read_image, write_png
from samrs.core.records import Dataset, ErrorRecord, ImageRecord, ObjectAnnotation
from samrs.sources import SourceError, read_dataset
from samrs.synth import write_synthetic
from samrs.tiling import (
    TilingError,
    assign_objects,
    dota_label_text,
    image_windows,
    object_iof,
    tile_dataset,
    tile_id,
    window_starts,
    write_dota_patches,
)

# --- window starts --------------------------------------------------------------------------


def test_window_starts_reference_values() -> None:
    assert window_starts(4000, 1024, 200) == [0, 824, 1648, 2472, 2976]
    assert window_starts(1024, 1024, 200) == [0]
    assert window_starts(800, 1024, 200) == [0]
    assert window_starts(1025, 1024, 200) == [0, 1]
    assert window_starts(1300, 1024, 200) == [0, 276]
    assert window_starts(260, 100, 20) == [0, 80, 160]
    with pytest.raises(TilingError):
        window_starts(100, 50, 50)
    with pytest.raises(TilingError):
        window_starts(100, 0, 0)


@settings(max_examples=300, deadline=None)
@given(
    length=st.integers(1, 30000),
    size=st.integers(1, 2048),
    gap_fraction=st.floats(0.0, 0.95),
)
def test_window_starts_properties(length: int, size: int, gap_fraction: float) -> None:
    gap = min(int(size * gap_fraction), size - 1)
    starts = window_starts(length, size, gap)
    assert starts[0] == 0
    assert starts == sorted(set(starts))  # strictly increasing
    if length <= size:
        assert starts == [0]
        return
    assert starts[-1] == length - size  # the last window ends at the border
    assert all(s >= 0 and s + size <= length for s in starts)  # all windows inside
    steps = np.diff(starts)
    assert (steps <= size - gap).all()  # overlap at least gap, so the length is covered
    covered = np.zeros(length, dtype=bool)
    for s in starts:
        covered[s : s + size] = True
    assert covered.all()
    # no more windows than needed: all but the last step are exactly size - gap
    assert (steps[:-1] == size - gap).all()


def test_image_windows_coverage_and_rates() -> None:
    assert image_windows(1300, 1100, 1024, 200) == [
        (0, 0, 1024, 1024), (276, 0, 1024, 1024), (0, 76, 1024, 1024), (276, 76, 1024, 1024)
    ]  # fmt: skip
    # a small image: coverage 0.34 <= 0.6, but an image always keeps its best windows
    assert image_windows(600, 600, 1024, 200) == [(0, 0, 1024, 1024)]
    assert image_windows(2000, 700, 1024, 200) == [
        (0, 0, 1024, 1024), (824, 0, 1024, 1024), (976, 0, 1024, 1024)
    ]  # fmt: skip
    # rate 0.5: windows of int(1024 / 0.5) = 2048 source pixels with gap 400
    assert image_windows(4000, 2048, 1024, 200, rate=0.5) == [
        (0, 0, 2048, 2048), (1648, 0, 2048, 2048), (1952, 0, 2048, 2048)
    ]  # fmt: skip
    # rate 1.5: int(1024 / 1.5) = 682, gap int(200 / 1.5) = 133
    assert image_windows(682, 682, 1024, 200, rate=1.5) == [(0, 0, 682, 682)]


# --- iof and assignment ---------------------------------------------------------------------


def _obj(box: tuple[float, float, float, float], name: str = "plane", line: int = 1):
    return ObjectAnnotation(box_polygon(box), name, 0, source_file="a.txt", source_line=line)


def test_iof_hand_values() -> None:
    window = (0, 0, 100, 100)
    assert object_iof(_obj((10, 10, 30, 30)), window) == 1.0
    assert object_iof(_obj((200, 10, 230, 30)), window) == 0.0
    assert object_iof(_obj((90, 0, 110, 10)), window) == pytest.approx(0.5)
    assert object_iof(_obj((92, 0, 102, 10)), window) == pytest.approx(0.8)
    assert object_iof(_obj((90, 90, 110, 110)), window) == pytest.approx(0.25)
    # a diamond centred on the window's right edge: half inside
    diamond = ObjectAnnotation((100.0, 40.0, 110.0, 50.0, 100.0, 60.0, 90.0, 50.0), "plane", 0)
    assert object_iof(diamond, window) == pytest.approx(0.5)
    # a diamond whose box pokes out but whose area is inside: exact shapely value, not the box
    diamond2 = ObjectAnnotation((100.0, 40.0, 104.0, 50.0, 100.0, 60.0, 80.0, 50.0), "plane", 0)
    assert object_iof(diamond2, window) == pytest.approx(1 - (4 * 20 / 2) / (24 * 20 / 2))


def test_assign_objects_translates_truncates_and_clips() -> None:
    objects = [_obj((92, 0, 102, 10), line=1), _obj((150, 20, 160, 30), line=2)]
    kept = assign_objects(objects, (0, 0, 100, 100))
    assert [i for i, _ in kept] == [0]
    obj = kept[0][1]
    assert obj.truncated and obj.flags == () and obj.polygon == box_polygon((92, 0, 102, 10))
    kept = assign_objects(objects, (80, 0, 100, 100))
    assert [i for i, _ in kept] == [0, 1]
    assert kept[0][1].polygon == box_polygon((12, 0, 22, 10)) and not kept[0][1].truncated
    assert kept[1][1].polygon == box_polygon((70, 20, 80, 30))
    assert kept[1][1].source_line == 2 and kept[1][1].source_file == "a.txt"
    clipped = assign_objects(objects, (0, 0, 100, 100), clip=True)[0][1]
    assert clipped.polygon == box_polygon((92, 0, 100, 10)) and clipped.flags == ("clipped",)
    assert assign_objects(objects, (0, 0, 100, 100), iof_threshold=0.81) == []


def _image(objects: list[ObjectAnnotation], width: int = 260, height: int = 180) -> ImageRecord:
    return ImageRecord(
        "img", "img.png", width, height, "dota", "1.0", "train", objects=tuple(objects),
        annotation_file="a.txt", source_width=width, source_height=height,
    )  # fmt: skip


def test_tile_dataset_assignment_naming_and_lost_objects() -> None:
    objects = [
        _obj((10, 10, 30, 30), line=1),  # A: one window
        _obj((85, 10, 95, 20), line=2),  # B: x windows 0 and 80
        _obj((90, 50, 110, 60), line=3),  # C: iof 0.5 in window 0, whole in window 80
        _obj((170, 10, 200, 20), line=4),  # D: only window 160
        _obj((0, 0, 260, 180), "roundabout", line=5),  # E: larger than any window
        _obj((92, 0, 102, 10), line=6),  # F: truncated (0.8) in window 0, whole in 80
    ]
    source = Dataset("dota", "1.0", [_image(objects)], [])
    tiled = tile_dataset(source, patch_size=100, gap=20)
    ids = [t.image_id for t in tiled.images]
    assert ids == [
        "img__100__0___0", "img__100__80___0", "img__100__160___0",
        "img__100__0___80", "img__100__80___80", "img__100__160___80",
    ]  # fmt: skip
    assert tile_id("img", (80, 0, 100, 100)) == "img__100__80___0"
    by_id = {t.image_id: t for t in tiled.images}
    lines = {i: [o.source_line for o in t.objects] for i, t in by_id.items()}
    assert lines["img__100__0___0"] == [1, 2, 6]
    assert lines["img__100__80___0"] == [2, 3, 6]
    assert lines["img__100__160___0"] == [4]
    assert lines["img__100__0___80"] == lines["img__100__80___80"] == []
    truncated = {(i, o.source_line) for i, t in by_id.items() for o in t.objects if o.truncated}
    assert truncated == {("img__100__0___0", 6)}
    tile = by_id["img__100__80___0"]
    assert tile.window == (80, 0, 100, 100) and (tile.width, tile.height) == (100, 100)
    assert (tile.source_width, tile.source_height) == (260, 180)
    assert tile.image_path == "img.png" and tile.split == "train"
    assert tile.objects[1].polygon == box_polygon((10, 50, 30, 60))
    # E fell in no window: an error record, not a silent drop
    assert len(tiled.errors) == 1
    error = tiled.errors[0]
    assert (error.stage, error.n_objects, error.line, error.source_file) == ("tile", 1, 5, "a.txt")
    assert "iof threshold 0.7" in error.message and error.image_id == "img"
    # every source object appears at least once (in a tile or an error)
    seen = {o.source_line for t in tiled.images for o in t.objects} | {e.line for e in tiled.errors}
    assert seen == {1, 2, 3, 4, 5, 6}


def test_tile_dataset_rates_empty_images_and_errors(tmp_path: Path) -> None:
    objects = [_obj((10, 10, 30, 30))]
    empty = _image([]).with_changes(image_id="empty")
    previous = Dataset("dota", "1.0", [_image(objects), empty], [])
    read_error = ErrorRecord("x.txt", 3, "read", "bad line", "img", 1)
    previous.errors.append(read_error)
    tiled = tile_dataset(previous, patch_size=100, gap=20, rates=(1.0, 0.5))
    assert tiled.errors == [read_error]  # the reader's errors are kept, first
    ids = [t.image_id for t in tiled.images]
    assert "img__200__0___0" in ids and "img__200__60___0" in ids
    assert sum(1 for i in ids if i.startswith("empty__")) == 8  # empty images keep windows
    big = next(t for t in tiled.images if t.image_id == "img__200__0___0")
    assert big.width == 200 and big.objects[0].polygon == box_polygon((10, 10, 30, 30))
    with pytest.raises(TilingError):
        tile_dataset(previous, patch_size=100, gap=100)
    with pytest.raises(TilingError):
        tile_dataset(previous, patch_size=100, gap=20, rates=(0.0,))
    # unknown size: read from the header; unreadable: an error accounting for the objects
    write_png(tmp_path / "real.png", np.zeros((150, 120, 3), np.uint8))
    unknown = _image(objects).with_changes(image_path=str(tmp_path / "real.png"), width=None,
                                           height=None)  # fmt: skip
    missing = _image(objects).with_changes(image_id="gone", image_path=str(tmp_path / "no.png"),
                                           width=None, height=None)  # fmt: skip
    tiled = tile_dataset(Dataset("dota", "1.0", [unknown, missing]), patch_size=100, gap=20)
    assert [t.image_id for t in tiled.images] == [
        "img__100__0___0", "img__100__20___0", "img__100__0___50", "img__100__20___50"
    ]  # fmt: skip
    assert tiled.images[0].source_width == 120
    assert [(e.stage, e.n_objects, e.image_id) for e in tiled.errors] == [("tile", 1, "gone")]


def test_dota_label_text() -> None:
    obj = ObjectAnnotation((1.0, 2.5, 3.0, 2.5, 3.0, 4.0, 1.0, 4.0), "Small Car", 0, difficult=True)
    assert dota_label_text([obj], scale=2.0, gsd=0.5) == "gsd:0.5\n2 5 6 5 6 8 2 8 Small-Car 1\n"
    obj = obj.with_changes(polygon=(0.1234, -0.0001, 3.0, 2.5, 3.0, 4.0, 1.0, 4.0))
    assert dota_label_text([obj]).splitlines()[1].startswith("0.123 0 3 2.5 ")
    assert dota_label_text([], gsd=None, imagesource="GF") == "imagesource:GF\ngsd:null\n"
    # cut objects: mmrotate's 2, unless difficult (which wins)
    cut = obj.with_changes(truncated=True)
    assert dota_label_text([cut]).splitlines()[1].endswith(" Small-Car 1")
    assert dota_label_text([cut.with_changes(difficult=False)]).splitlines()[1].endswith(" 2")


# --- patches and `samrs split` --------------------------------------------------------------


@pytest.fixture(scope="module")
def dota_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dota") / "dota"
    write_synthetic("dota", root, n_images=3, seed=4)
    return root


def _read_back(out: Path) -> dict[str, ImageRecord]:
    back = read_dataset("dota", out)
    assert back.errors == []
    return {im.image_id: im for im in back.images}


@pytest.mark.parametrize("clip", [True, False])
def test_patches_round_trip_through_the_dota_reader(
    dota_root: Path, tmp_path: Path, clip: bool
) -> None:
    source = read_dataset("dota", dota_root)
    tiles = tile_dataset(source, patch_size=512, gap=100, clip=clip)
    assert tiles.errors == []
    summary = write_dota_patches(tiles, tmp_path / "out", 512)
    assert summary.patches == len(tiles.images) and summary.source_images == 3
    back = _read_back(tmp_path / "out")
    assert sorted(back) == sorted(t.image_id for t in tiles.images)
    assert any(t.objects and any(o.truncated for o in t.objects) for t in tiles.images)
    for tile in tiles.images:
        record = back[tile.image_id]
        assert (record.width, record.height) == (512, 512) and record.split == tile.split
        assert record.gsd == tile.gsd
        assert [o.class_name for o in record.objects] == [o.class_name for o in tile.objects]
        for mine, read in zip(tile.objects, record.objects, strict=True):
            # the reader clips corners outside the patch; clipped tiles already are inside
            expected, _ = clip_polygon(mine.polygon, (0, 0, 512, 512))
            np.testing.assert_allclose(read.polygon, expected, atol=1e-3)
            assert read.difficult == mine.difficult
            assert read.truncated == mine.truncated or mine.difficult
    # pixels: a patch is the crop of its window
    tile = tiles.images[1]
    x, y, _, _ = tile.window
    patch = read_image(tmp_path / "out" / tile.split / "images" / f"{tile.image_id}.png")
    np.testing.assert_array_equal(patch, read_image(tile.image_path)[y : y + 512, x : x + 512])


def test_patches_pad_windows_past_the_image(dota_root: Path, tmp_path: Path) -> None:
    image = read_dataset("dota", dota_root).images[0]
    assert (image.width, image.height) == (1300, 1100)
    tiles = tile_dataset(Dataset("dota", "1.0", [image]), patch_size=1400, gap=200)
    assert [t.window for t in tiles.images] == [(0, 0, 1400, 1400)]
    assert all(not o.truncated for o in tiles.images[0].objects)
    write_dota_patches(tiles, tmp_path / "out", 1400)
    patch = read_image(tmp_path / "out" / "train" / "images" / "P0000__1400__0___0.png")
    np.testing.assert_array_equal(patch[:1100, :1300], read_image(image.image_path))
    assert (patch[1100:] == (124, 116, 104)).all() and (patch[:, 1300:] == (124, 116, 104)).all()


def test_rate_patches_are_resized_with_scaled_labels(dota_root: Path, tmp_path: Path) -> None:
    source = read_dataset("dota", dota_root)
    tiles = tile_dataset(source, patch_size=256, gap=50, rates=(0.5,), clip=True)
    assert all(t.window[2] == 512 for t in tiles.images)
    write_dota_patches(tiles, tmp_path / "out", 256)
    back = _read_back(tmp_path / "out")
    tile = next(t for t in tiles.images if t.objects)
    record = back[tile.image_id]
    assert tile.image_id.split("__")[1] == "512" and (record.width, record.height) == (256, 256)
    for mine, read in zip(tile.objects, record.objects, strict=True):
        np.testing.assert_allclose(read.polygon, np.asarray(mine.polygon) * 0.5, atol=1e-3)
    if tile.gsd is not None:
        assert record.gsd == pytest.approx(tile.gsd * 2)


def test_unreadable_images_are_error_records(dota_root: Path, tmp_path: Path) -> None:
    source = read_dataset("dota", dota_root)
    broken = tmp_path / "broken.png"
    data = Path(source.images[0].image_path).read_bytes()
    broken.write_bytes(data[: len(data) // 3])
    first = source.images[0].with_changes(image_path=str(broken))
    tiles = tile_dataset(Dataset("dota", "1.0", [first, *source.images[1:]]), 512, 100)
    summary = write_dota_patches(tiles, tmp_path / "out", 512)
    bad = [t for t in tiles.images if t.image_path == str(broken)]
    assert [e.image_id for e in summary.errors] == [t.image_id for t in bad]
    assert all(e.stage == "image" and str(broken) in e.message for e in summary.errors)
    assert sum(e.n_objects for e in summary.errors) == sum(len(t.objects) for t in bad)
    assert summary.patches == len(tiles.images) - len(bad)


def test_split_cli(dota_root: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "patches"
    args = ["split", "--source", "dota", "--root", str(dota_root), "--out", str(out),
            "--patch-size", "512", "--gap", "100"]  # fmt: skip
    result = runner.invoke(main, [*args, "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["images"] == 3 and doc["patches"] > 3 and doc["errors"] == []
    assert json.loads((out / "split.json").read_text())["patches"] == doc["patches"]
    first = {p.name: p.read_bytes() for p in sorted((out / "train" / "images").iterdir())}
    assert len(first) == doc["splits"]["train"]
    result = runner.invoke(main, args)
    assert result.exit_code == 1 and "--overwrite" in result.output
    result = runner.invoke(main, [*args, "--overwrite"])
    assert result.exit_code == 0 and "patches" in result.output
    again = {p.name: p.read_bytes() for p in sorted((out / "train" / "images").iterdir())}
    assert again == first  # deterministic bytes
    # the source count and the patch count are both kept (an object in 2 patches counts twice)
    assert read_dataset("dota", out).n_objects == doc["patch_objects"] > doc["source_objects"]
    assert doc["source_objects"] == read_dataset("dota", dota_root).n_objects
    assert "objects" not in doc
    result = runner.invoke(main, [*args[:-2], "--gap", "600", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "--gap" in result.output
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "f").write_text("x")
    result = runner.invoke(main, [*args[:6], str(tmp_path / "other"), "--overwrite"])
    assert result.exit_code == 1 and "refusing" in result.output
    assert os.path.exists(tmp_path / "other" / "f")


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    width=st.integers(1, 3000),
    height=st.integers(1, 3000),
    size=st.integers(64, 1024),
    gap_fraction=st.floats(0.0, 0.5),
    rate=st.sampled_from([0.5, 1.0, 1.5]),
)
def test_image_windows_cover_every_pixel(
    width: int, height: int, size: int, gap_fraction: float, rate: float
) -> None:
    gap = int(size * gap_fraction)
    windows = image_windows(width, height, size, gap, rate)
    win = int(size / rate)
    assert windows and all(w == h == win for _, _, w, h in windows)
    assert windows == sorted(windows, key=lambda w: (w[1], w[0]))  # row by row
    assert len(set(windows)) == len(windows)
    xs, ys = sorted({x for x, _, _, _ in windows}), sorted({y for _, y, _, _ in windows})
    assert xs == window_starts(width, win, int(gap / rate))
    assert ys == window_starts(height, win, int(gap / rate))
    assert len(windows) == len(xs) * len(ys)  # windows start inside: coverage >= ~min side
    covered = np.zeros((min(height, 64), min(width, 64)), dtype=bool)  # the top-left corner
    for x, y, w, h in windows:
        assert x >= 0 and y >= 0 and (x + w <= width or x == 0) and (y + h <= height or y == 0)
        covered[y : y + h, x : x + w] = True
    assert covered.all()


def test_tiff_patches_are_read_window_by_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import PIL.ImageFile
    import rasterio
    import rasterio.io

    pixels = np.random.default_rng(0).integers(0, 255, (700, 900, 3), dtype=np.uint8)
    path = tmp_path / "train/images/T1.tif"
    path.parent.mkdir(parents=True)
    profile = {"driver": "GTiff", "width": 900, "height": 700, "count": 3, "dtype": "uint8"}
    profile.update(tiled=True, blockxsize=128, blockysize=128)
    with (
        pytest.warns(rasterio.errors.NotGeoreferencedWarning),
        rasterio.open(path, "w", **profile) as ds,
    ):
        ds.write(pixels.transpose(2, 0, 1))
    image = ImageRecord("T1", str(path), 900, 700, "dota", "1.0", "train")
    tiles = tile_dataset(Dataset("dota", "1.0", [image]), patch_size=512, gap=100)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("decoded with Pillow")

    reads: list[object] = []
    original = rasterio.io.DatasetReader.read

    def spy(self: rasterio.io.DatasetReader, *args: object, **kwargs: object) -> np.ndarray:
        reads.append(kwargs.get("window"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(PIL.ImageFile.ImageFile, "load", refuse)
    monkeypatch.setattr(rasterio.io.DatasetReader, "read", spy)
    summary = write_dota_patches(tiles, tmp_path / "out", 512, pad_value=(1, 2, 3))
    assert summary.patches == len(tiles.images) == 4 and summary.errors == []
    assert len(reads) == 4 and all(w is not None for w in reads)  # one window read a patch
    assert all(w.width * w.height < 900 * 700 for w in reads)  # type: ignore[attr-defined]
    monkeypatch.undo()
    for tile in tiles.images:
        x, y, w, h = tile.window
        patch = read_image(tmp_path / "out/train/images" / f"{tile.image_id}.png")
        np.testing.assert_array_equal(patch, pixels[y : y + h, x : x + w])


def test_split_cli_pad_value_and_coverage(tmp_path: Path) -> None:
    runner = CliRunner()
    val = Path(__file__).parent / "fixtures/sources/dota/val"  # one 24 x 16 image
    args = ["split", "--source", "dota", "--root", str(val), "--patch-size", "32", "--gap", "8",
            "--json"]  # fmt: skip
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "a"), "--pad-value", "0,0,255"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["pad_value"] == [0, 0, 255] and doc["coverage_threshold"] == 0.6
    assert doc["patches"] == 1 and doc["patch_objects"] == doc["source_objects"] == 1
    patch = read_image(tmp_path / "a/val/images/P0010__32__0___0.png")
    assert (patch[16:] == (0, 0, 255)).all() and (patch[:, 24:] == (0, 0, 255)).all()
    assert (patch[:16, :24] == 128).all()  # the grey image itself
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "b"), "--pad-value", "1,2"])
    assert result.exit_code == 2 and "R,G,B" in result.output
    result = runner.invoke(main, [*args, "--out", str(tmp_path / "c"), "--coverage-threshold",
                                  "1.0"])  # fmt: skip
    assert result.exit_code == 2 and "--coverage-threshold" in result.output


def test_split_output_of_any_source_reads_back_with_its_classes(tmp_path: Path) -> None:
    part1 = Path(__file__).parent / "fixtures/sources/fair1m/train/part1"
    out = tmp_path / "patches"
    args = ["split", "--source", "fair1m", "--root", str(part1), "--out", str(out),
            "--patch-size", "24", "--gap", "8", "--json"]  # fmt: skip
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    back = read_dataset("fair1m", out)
    assert (back.source, back.version, back.errors) == ("fair1m", "2.0", [])
    assert len(back.images) == doc["patches"] == 8 and back.n_objects == doc["patch_objects"]
    names = {o.class_name for im in back.images for o in im.objects}
    assert names == {"Small Car", "Boeing737", "Dry Cargo Ship", "other-ship"}  # FAIR1M names
    assert back.images[0].image_id == "train_1__24__0___0"
    assert read_dataset("fair1m", out / "train").images == back.images
    with pytest.raises(SourceError, match=r"output of fair1m 2\.0: read it with source 'fair1m'"):
        read_dataset("dota", out)
