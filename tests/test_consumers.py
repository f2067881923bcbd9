"""Outputs other tools load untouched: file modes, COCO (pycocotools, Datumaro), Hugging Face
``datasets``, Parquet field metadata, GeoTIFF class names, mmseg; live progress; Ctrl-C."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import rasterio
import yaml
from click.testing import CliRunner
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from samrs.build import BuildConfig, run_build
from samrs.build.progress import Progress
from samrs.build.worker import FAULT_ENV, ShardResult
from samrs.cli import main
from samrs.outputs.card import card_configs
from samrs.outputs.coco import coco_results
from samrs.outputs.export import export
from samrs.outputs.geo import category_names_path
from samrs.outputs.manifest import iter_batches, read_table
from samrs.outputs.metadata import read_build_metadata
from samrs.outputs.schema import DESCRIPTIONS, TABLES, UNITS
from samrs.synth import FAIR1M_CRS, FAIR1M_GSD, write_synthetic

pytestmark = pytest.mark.slow  # its tests read a build made by a module fixture (several seconds)

UMASK = 0o027  # unusual on purpose: files must be 0640, not mkstemp's 0600 nor a fixed 0644
MANIFESTS_DOC = Path(__file__).resolve().parents[1] / "manifests" / "README.md"


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def _build(root: Path, out: Path, source: str, **options: object) -> Path:
    values: dict[str, object] = {
        "source": source, "root": str(root), "out": str(out), "segmenter": "box",
        "shard_size": 2, "progress": False, **options,
    }  # fmt: skip
    summary = run_build(BuildConfig(**values))  # type: ignore[arg-type]
    assert summary.state == "complete", summary.failed_shards
    return out


@pytest.fixture(scope="module")
def dota(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weight-free DOTA build, tiled (so tile PNGs are written), with one bad label line."""
    base = tmp_path_factory.mktemp("consumers")
    with umask(UMASK):
        write_synthetic("dota", base / "src", 4, 5)
        label = sorted((base / "src" / "train" / "labelTxt").glob("*.txt"))[1]
        with label.open("a") as fh:
            fh.write("1 2 3 not-a-number\n")
        return _build(base / "src", base / "out", "dota", patch_size=1024, gap=200)


@pytest.fixture(scope="module")
def fair1m(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A FAIR1M build from the georeferenced synthetic GeoTIFFs, tiled."""
    base = tmp_path_factory.mktemp("fair1m")
    with umask(UMASK):
        write_synthetic("fair1m", base / "src", 3, 2)
        return _build(base / "src", base / "out", "fair1m", patch_size=1024, gap=200)


@pytest.fixture(scope="module")
def exports(dota: Path, fair1m: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    base = tmp_path_factory.mktemp("exports")
    with umask(UMASK):
        return {
            "coco": (base / "coco", export(dota, "coco", base / "coco", images="copy")),
            "mmseg": (base / "mmseg", export(dota, "mmseg", base / "mmseg", images="copy")),
            "ros-sam": (base / "ros", export(dota, "ros-sam", base / "ros", images="copy")),
            "geojson": (base / "geo", export(fair1m, "geojson", base / "geo")),
        }


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def test_every_written_file_honours_the_umask(dota: Path, fair1m: Path, exports: dict) -> None:
    expected = 0o666 & ~UMASK
    folders = [dota, fair1m, *(to for to, _ in exports.values())]
    checked = 0
    for folder in folders:
        files = _files(folder)
        assert files, folder
        for path in files:
            assert stat.S_IMODE(path.stat().st_mode) == expected, (
                f"{path}: {oct(stat.S_IMODE(path.stat().st_mode))}"
            )
        checked += len(files)
    assert list((dota / "images").glob("*.png"))  # tiles written by imageio.write_image
    assert list((exports["ros-sam"][0] / "img").glob("*.png"))
    assert checked > 50


def test_weight_free_coco_omits_score_and_evaluates(dota: Path) -> None:
    doc = json.loads((dota / "coco" / "instances.json").read_text())
    anns = doc["annotations"]
    assert anns and all("score" not in a for a in anns)
    for ann in anns:
        attrs = ann["attributes"]
        assert None not in attrs.values() and "score" not in attrs
        assert attrs["samrs_instance_id"] == ann["samrs_instance_id"]
        assert attrs["rbox_iou"] == ann["rbox_iou"] and attrs["kept"] is True
    assert {c["supercategory"] for c in doc["categories"]} == {"dota"}
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(dota / "coco" / "instances.json"))
        dt = gt.loadRes(coco_results(doc))
        ev = COCOeval(gt, dt, "segm")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[0] == pytest.approx(1.0)  # the build against itself
    assert {a["score"] for a in dt.dataset["annotations"]} == {1.0}


def test_fair1m_categories_keep_their_supercategories(fair1m: Path) -> None:
    doc = json.loads((fair1m / "coco" / "instances.json").read_text())
    sup = {c["name"]: c["supercategory"] for c in doc["categories"]}
    assert sup["Boeing737"] == "Airplane" and sup["Bus"] == "Vehicle"


def test_coco_export_is_datumaro_layout(dota: Path, exports: dict) -> None:
    to, counts = exports["coco"]
    # Datumaro's coco format: annotations/instances_<subset>.json, images/<subset>/<file_name>
    assert sorted(p.name for p in to.iterdir()) == ["annotations", "images"]
    splits = []
    for path in sorted((to / "annotations").iterdir()):
        match = re.fullmatch(r"instances_(\w+)\.json", path.name)
        assert match, path
        splits.append(match.group(1))
        doc = json.loads(path.read_text())
        for image in doc["images"]:
            assert (to / "images" / match.group(1) / image["file_name"]).is_file()
    assert sorted(p.name for p in (to / "images").iterdir()) == splits
    dm = pytest.importorskip("datumaro")
    from datumaro.components.dataset import Dataset

    dataset = Dataset.import_from(str(to), "coco_instances")
    assert sorted(dataset.subsets()) == splits and len(dataset) == counts["images"]
    labels = [c.name for c in dataset.categories()[dm.AnnotationType.label]]
    assert labels == list(read_build_metadata(dota)["class_table"]["classes"][i]["name"]
                          for i in range(len(labels)))  # fmt: skip
    masks = [a for item in dataset for a in item.annotations if a.type == dm.AnnotationType.mask]
    assert len(masks) == counts["annotations"]
    assert all("rbox_iou" in a.attributes and "kept" in a.attributes for a in masks)
    item = next(item for item in dataset if item.annotations)
    assert item.media.data.ndim == 3


def _front_matter(text: str) -> dict:
    assert text.startswith("---\n")
    return yaml.safe_load(text.split("---\n")[1])


def test_dataset_card_declares_the_tables(dota: Path) -> None:
    card = _front_matter((dota / "README.md").read_text())
    configs = {c["config_name"]: c for c in card["configs"]}
    assert list(configs) == ["instances", "images", "errors"]  # the errors table has rows
    assert configs["instances"]["default"] is True
    for name, config in configs.items():
        (files,) = config["data_files"]
        assert files["split"] == "train" and files["path"] == f"manifest/{name}/*.parquet"
        assert sorted(dota.glob(files["path"])) == sorted((dota / "manifest" / name).iterdir())
    assert "Boeing737" not in (dota / "README.md").read_text()
    assert "| 0 | plane |" in (dota / "README.md").read_text()


def test_dataset_card_leaves_out_empty_tables(fair1m: Path) -> None:
    meta = read_build_metadata(fair1m)
    assert sum(meta["counts"]["errors"].values()) == 0
    card = _front_matter((fair1m / "README.md").read_text())
    assert [c["config_name"] for c in card["configs"]] == card_configs(meta)
    assert card_configs(meta) == ["instances", "images"]


def test_hugging_face_datasets_loads_each_config(dota: Path) -> None:
    datasets = pytest.importorskip("datasets")
    cache = dota.parent / "hf-cache"
    load = datasets.load_dataset
    instances = load(str(dota), "instances", split="train", cache_dir=str(cache))
    assert instances.num_rows == read_table(dota, "instances").num_rows
    assert instances.column_names == TABLES["instances"].names
    images = load(str(dota), "images", split="train", cache_dir=str(cache))
    assert images.num_rows == read_table(dota, "images").num_rows
    assert "tile_window" in images.column_names
    errors = load(str(dota), "errors", split="train", cache_dir=str(cache))
    assert errors.num_rows == read_table(dota, "errors").num_rows >= 1
    default = load(str(dota), split="train", cache_dir=str(cache))
    assert default.column_names == TABLES["instances"].names


def test_parquet_fields_carry_descriptions_and_units(dota: Path) -> None:
    for table, schema in TABLES.items():
        assert set(DESCRIPTIONS[table]) == set(schema.names), table
        stored = pq.read_schema(next((dota / "manifest" / table).glob("*.parquet")))
        for field in schema:
            meta = stored.field(field.name).metadata
            assert meta[b"description"].decode() == DESCRIPTIONS[table][field.name]
            assert meta.get(b"unit", b"").decode() == UNITS[table].get(field.name, "")
    assert UNITS["images"]["gsd"] == "m/px"


def test_manifest_docs_show_the_schema_descriptions() -> None:
    """manifests/README.md's column tables say what the schema's field metadata says."""
    table = None
    seen: dict[str, set[str]] = {t: set() for t in TABLES}
    for line in MANIFESTS_DOC.read_text().splitlines():
        if line.startswith("## "):
            match = re.fullmatch(r"## `(\w+)`", line)
            table = match.group(1) if match and match.group(1) in TABLES else None
        elif table and line.startswith("| `"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            assert len(cells) == 5, line
            for column in re.findall(r"`(\w+)`", cells[0]):
                assert cells[4] == DESCRIPTIONS[table][column], (table, column)
                assert cells[3] == UNITS[table].get(column, ""), (table, column)
                seen[table].add(column)
    for name, schema in TABLES.items():
        assert seen[name] == set(schema.names), name


def test_tile_window_is_plain_sql_and_old_manifests_still_read(dota: Path, tmp_path) -> None:
    duckdb = pytest.importorskip("duckdb")
    glob = str(dota / "manifest" / "images" / "*.parquet")
    windows = duckdb.sql(f"SELECT tile_window FROM '{glob}' WHERE tile_window IS NOT NULL")
    assert len(windows.fetchall()) >= 2
    # a manifest written before the rename, with the column named `window`
    old = tmp_path / "old"
    (old / "manifest").mkdir(parents=True)
    for table in TABLES:
        (old / "manifest" / table).mkdir()
        for part in sorted((dota / "manifest" / table).glob("*.parquet")):
            data = pq.read_table(part)
            names = ["window" if n == "tile_window" else n for n in data.column_names]
            pq.write_table(data.rename_columns(names), old / "manifest" / table / part.name)
    assert "window" in pq.read_schema(next((old / "manifest" / "images").iterdir())).names
    assert read_table(old, "images").equals(read_table(dota, "images"))
    some = read_table(old, "images", columns=["image_id", "tile_window"])
    assert some.column_names == ["image_id", "tile_window"]
    assert (
        some.column("tile_window").to_pylist()
        == read_table(dota, "images", columns=["tile_window"]).column("tile_window").to_pylist()
    )
    batches = list(iter_batches(old, "images", columns=["tile_window"]))
    assert sum(b.num_rows for b in batches) == some.num_rows


def test_synthetic_fair1m_is_georeferenced_end_to_end(fair1m: Path, exports: dict) -> None:
    images = read_table(fair1m, "images").to_pylist()
    assert any(r["tile_window"] is not None for r in images)  # tiles carry their transforms
    names = read_build_metadata(fair1m)["class_table"]["classes"]
    for row in images:
        assert row["crs"] == FAIR1M_CRS and row["gsd"] == pytest.approx(FAIR1M_GSD)
        tif = fair1m / row["semantic_file"].replace(".png", ".tif")
        with rasterio.open(tif) as src:
            assert src.crs.to_string() == FAIR1M_CRS
            assert list(src.transform)[:6] == pytest.approx(row["transform"])
            tagged = json.loads(src.tags(1)["CLASS_NAMES"])
        assert tagged["0"] == names[0]["name"] and tagged["255"] == "unlabelled"
        cats = [c.text or "" for c in ET.parse(category_names_path(tif)).iter("Category")]
        assert cats[: len(names)] == [c["name"] for c in names] and cats[255] == "unlabelled"
    to, counts = exports["geojson"]
    assert counts["geotiffs"] == len(images) and counts["features"] > 0
    tifs = sorted((to / "semantic").glob("*.tif"))
    assert len(tifs) == len(images)
    assert all(category_names_path(t).is_file() for t in tifs)
    geo = json.loads((to / "instances.geojson").read_text())
    assert "32650" in json.dumps(geo["crs"])


def test_geopandas_reads_the_geo_export(fair1m: Path, exports: dict) -> None:
    """GeoJSON and GeoParquet load in geopandas with the images' CRS, the same features both
    ways, and each mask's area in square metres is its pixel count times the GSD squared."""
    gpd = pytest.importorskip("geopandas")
    to, counts = exports["geojson"]
    from_parquet = gpd.read_parquet(to / "instances.parquet")
    from_json = gpd.read_file(to / "instances.geojson")
    assert len(from_parquet) == len(from_json) == counts["features"] > 0
    assert from_parquet.crs == from_json.crs == FAIR1M_CRS
    assert from_parquet.geometry.is_valid.all()
    assert list(from_parquet["instance_id"]) == list(from_json["instance_id"])
    assert from_parquet.geometry.geom_equals_exact(from_json.geometry, tolerance=1e-6).all()
    instances = read_table(fair1m, "instances").to_pandas().set_index("instance_id")
    pixels = instances.loc[from_parquet["instance_id"], "area"].to_numpy()
    assert (from_parquet["area_px"].to_numpy() == pixels).all()
    assert from_parquet.geometry.area.to_numpy() == pytest.approx(pixels * FAIR1M_GSD**2, rel=1e-6)


def test_geo_export_of_a_plain_build_is_an_error(dota: Path, tmp_path: Path) -> None:
    to = tmp_path / "geo"
    result = CliRunner().invoke(main, ["export", str(dota), "--format", "geojson", "--to", str(to)])
    assert result.exit_code != 0
    assert "no image of this build is geo-referenced" in result.output
    assert not to.exists()


def test_progress_advances_per_image_in_process(tmp_path: Path, monkeypatch) -> None:
    write_synthetic("dota", tmp_path / "src", 5, 1)
    seen: list[tuple[int, int]] = []
    original = Progress.image_done

    def spy(self: Progress, row: dict) -> None:
        original(self, row)
        seen.append((self.images, self.done))

    monkeypatch.setattr(Progress, "image_done", spy)
    _build(tmp_path / "src", tmp_path / "out", "dota", shard_size=64)  # one shard
    assert seen == [(i, 0) for i in range(1, 6)]  # each image counted before its shard ends


def test_progress_advances_per_image_on_dask(tmp_path: Path, monkeypatch) -> None:
    """Dask workers report each finished image as an event on the build's topic."""
    write_synthetic("dota", tmp_path / "src", 6, 1)
    seen: list[int] = []
    original = Progress.image_done

    def spy(self: Progress, row: dict) -> None:
        original(self, row)
        seen.append(int(row["shard"]))

    monkeypatch.setattr(Progress, "image_done", spy)
    _build(tmp_path / "src", tmp_path / "out", "dota", shard_size=3, workers=2)
    assert sorted(seen) == [0, 0, 0, 1, 1, 1]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal_and_lines_elsewhere() -> None:
    term = _Terminal()
    bar = Progress(2, 4, 10, stream=term)
    bar.image_done({"shard": 0, "n_objects": 3, "status": "ok"})
    bar.image_done({"shard": 0, "n_objects": 3, "status": "ok"})
    bar.shard_done(ShardResult(0), 2, 6)
    bar.image_done({"shard": 1, "n_objects": 4, "status": "error"})
    bar.shard_done(ShardResult(1), 2, 4)  # one image not reported: counted with its shard
    text = term.getvalue()
    assert "\r" in text and "|" in text and "4/4" in text and "img/s" in text
    assert "obj/s" in text and "shards 2/2" in text and "failed images 1" in text
    assert (bar.images, bar.objects) == (4, 10)
    plain = io.StringIO()
    lines = Progress(2, 4, 10, stream=plain, interval=3600)
    lines.image_done({"shard": 0, "n_objects": 3, "status": "ok"})
    assert plain.getvalue() == ""  # at most one line per interval
    lines.shard_done(ShardResult(0), 2, 6)
    lines.shard_failed(1)
    out = plain.getvalue()
    assert "\r" not in out and "images 2/4" in out and "failed shards 1" in out


def test_ctrl_c_says_how_to_resume(tmp_path: Path, monkeypatch) -> None:
    write_synthetic("dota", tmp_path / "src", 6, 2)
    args = ["build", "--source", "dota", "--root", str(tmp_path / "src"),
            "--out", str(tmp_path / "out"), "--segmenter", "box", "--shard-size", "2"]  # fmt: skip
    monkeypatch.setenv(FAULT_ENV, "interrupt:1")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 130, result.output
    assert (
        "interrupted: run the same command again to resume (1 of 3 shards committed)"
        in result.output
    )
    assert "Traceback" not in result.output and "Aborted" not in result.output
    monkeypatch.delenv(FAULT_ENV)
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0, again.output
    counts = read_build_metadata(tmp_path / "out")["counts"]
    assert counts["images"] == {"empty": 1, "ok": 5}


def test_mmseg_config_is_relative_with_palette(dota: Path, exports: dict) -> None:
    to, _ = exports["mmseg"]
    text = (to / "samrs_dataset.py").read_text()
    assert str(to) not in text and str(dota) not in text
    config: dict = {}
    exec(text, config)
    table = read_build_metadata(dota)["class_table"]["classes"]
    assert config["metainfo"]["classes"] == tuple(c["name"] for c in table)
    assert config["metainfo"]["palette"] == [list(c["color"]) for c in table]
