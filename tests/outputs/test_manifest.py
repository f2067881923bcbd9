"""Parquet manifests: schema validation, round trips (pyarrow, DuckDB, pandas), determinism."""

from __future__ import annotations

import shutil

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from samrs.core import rle
from samrs.outputs.coco import coco_from_manifest
from samrs.outputs.manifest import (
    ROW_GROUP_SIZE,
    ManifestError,
    iter_batches,
    part_path,
    part_paths,
    part_version,
    read_table,
    to_table,
    write_part,
)
from samrs.outputs.metadata import (
    BuildMetadataError,
    build_class_table,
    read_build_metadata,
    write_build_metadata,
)
from samrs.outputs.schema import INSTANCES, MANIFEST_VERSION, TABLES, VECTOR_SIZE
from samrs.outputs.semantic import read_semantic_png
from tests.helpers.outputs import FAKE, instance_rows, make_fake_build


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake") / "out"
    make_fake_build(out)
    return out


def _error_row(**changes):
    row = {"source_file": "a.txt", "line": 3, "stage": "read", "message": "bad", "image_id": None,
           "n_objects": 1, "shard": 0}  # fmt: skip
    row.update(changes)
    return row


def test_part_names_and_order(build) -> None:
    assert part_path(build, "instances", 12).name == "part-00012.parquet"
    names = [p.name for p in part_paths(build, "images")]
    assert names == ["part-00000.parquet", "part-00001.parquet"]
    images = read_table(build, "images")
    assert images.column("image_id").to_pylist() == FAKE["image_ids"]
    assert images.schema.equals(TABLES["images"])
    inst = read_table(build, "instances")
    assert inst.column("instance_id").to_pylist() == list(range(FAKE["n_instances"]))


def test_round_trip_pyarrow_exact_values(tmp_path) -> None:
    rows = instance_rows()
    path = tmp_path / "p.parquet"
    write_part(path, "instances", rows)
    back = pq.read_table(path)
    # Parquet-compliant list child names ("element"); otherwise the very schema
    assert back.schema.names == INSTANCES.names
    back = back.cast(INSTANCES)
    assert back.schema.equals(INSTANCES, check_metadata=True)
    assert back.schema.metadata[b"samrs_manifest_version"] == MANIFEST_VERSION.encode()
    got = back.to_pylist()
    for a, b in zip(rows, got, strict=True):
        for key in ("instance_id", "image_id", "class_name", "segmentation", "area", "polygon",
                    "bbox", "kept", "reject_reason", "substituted", "flags"):  # fmt: skip
            assert a[key] == b[key], key
        assert b["score"] == pytest.approx(a["score"], abs=1e-7)  # float32 column
    # segmentation counts decode to a mask of (height, width) with the stored area and bbox
    r = got[0]
    enc = {"size": [24, 32], "counts": r["segmentation"]}
    assert rle.area(enc) == r["area"] == 300
    assert rle.bbox(enc) == r["bbox"] == [2.0, 3.0, 20.0, 15.0]


def test_readable_with_duckdb_and_pandas(build) -> None:
    glob = str(build / "manifest" / "instances" / "part-*.parquet")
    con = duckdb.connect()
    kept, total = con.execute(
        f"SELECT sum(CASE WHEN kept THEN 1 ELSE 0 END), count(*) FROM read_parquet('{glob}')"
    ).fetchone()
    assert (kept, total) == (FAKE["n_kept"], FAKE["n_instances"])
    reasons = con.execute(
        f"SELECT instance_id, reject_reason FROM read_parquet('{glob}') "
        "WHERE NOT kept ORDER BY instance_id"
    ).fetchall()
    assert reasons == [(2, "low-score"), (5, "low-rbox-iou")]
    df = pd.read_parquet(build / "manifest" / "images")
    assert sorted(df["image_id"]) == sorted(FAKE["image_ids"])
    assert dict(zip(df["image_id"], df["status"], strict=True))["P0003"] == "empty"
    assert list(df.loc[df["image_id"] == "P0002__20__10", "tile_window"].iloc[0]) == [
        20,
        10,
        20,
        20,
    ]


def test_double_write_is_byte_identical(tmp_path) -> None:
    rows = instance_rows()
    write_part(tmp_path / "a.parquet", "instances", rows)
    write_part(tmp_path / "b.parquet", "instances", [dict(r) for r in rows])
    assert (tmp_path / "a.parquet").read_bytes() == (tmp_path / "b.parquet").read_bytes()


def test_parquet_layout_zstd_and_row_groups(tmp_path) -> None:
    rows = [_error_row(line=i, message=f"m{i}") for i in range(ROW_GROUP_SIZE + 10)]
    write_part(tmp_path / "e.parquet", "errors", rows)
    meta = pq.ParquetFile(tmp_path / "e.parquet").metadata
    assert meta.num_row_groups == 2
    assert meta.row_group(0).num_rows == ROW_GROUP_SIZE
    assert meta.row_group(0).column(0).compression == "ZSTD"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"message": None}, r"errors row 1: column 'message' is required \(got null\)"),
        ({"line": "three"}, r"errors row 1: column 'line' expects int32, got 'three'"),
        ({"bogus": 1}, r"errors row 1: unknown column\(s\) bogus"),
    ],
)
def test_validation_names_row_and_column(tmp_path, change, message) -> None:
    rows = [_error_row(), _error_row(**change)]
    with pytest.raises(ManifestError, match=message):
        write_part(tmp_path / "x.parquet", "errors", rows)
    assert not (tmp_path / "x.parquet").exists()


def test_validation_fixed_size_lists() -> None:
    rows = instance_rows()
    rows[3]["polygon"] = rows[3]["polygon"][:6]
    with pytest.raises(ManifestError, match=r"instances row 3: column 'polygon' expects"):
        to_table("instances", rows)
    with pytest.raises(ManifestError, match="unknown manifest table 'objects'"):
        to_table("objects", [])


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("prompt_box", [1.0, 2.0, 3.0], r"'prompt_box' expects null or 4 double values, got \[1"),
        ("prompt_point", [], r"'prompt_point' expects null or 2 double values, got \[\]"),
        ("prompt_point", [1.0, 2.0, 3.0], r"'prompt_point' expects null or 2 double values"),
    ],
)
def test_validation_vector_sizes(column, value, message) -> None:
    rows = instance_rows()
    rows[2][column] = value
    with pytest.raises(ManifestError, match=rf"instances row 2: column {message}"):
        to_table("instances", rows)
    rows[2][column] = None  # null stays allowed
    assert to_table("instances", rows).column(column)[2].as_py() is None


def _nested_fields(field: pa.Field):
    yield field
    for i in range(field.type.num_fields):
        yield from _nested_fields(field.type.field(i))


def test_no_nullable_fixed_size_lists() -> None:
    """pyarrow < 26 cannot read null fixed-size lists from Parquet (apache/arrow#35692): a
    nullable vector is a variable-size list with its size in the field metadata."""
    vectors = set()
    for name, schema in TABLES.items():
        for field in (f for top in schema for f in _nested_fields(top)):
            if pa.types.is_fixed_size_list(field.type):
                assert not field.nullable, f"{name}.{field.name}: nullable fixed-size list"
            if field.metadata and VECTOR_SIZE in field.metadata:
                assert pa.types.is_list(field.type) and field.nullable, field
                vectors.add(field.name)
    assert vectors == {"tile_window", "transform", "prompt_box", "prompt_point"}


def _as_v1(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """A table as manifest version 1.0 wrote it: nullable vectors as fixed-size lists, the tile
    window named ``window``."""
    fields = []
    for f in schema:
        if f.metadata and VECTOR_SIZE in f.metadata:
            size = int(f.metadata[VECTOR_SIZE])
            f = pa.field(f.name, pa.list_(f.type.value_type, size))
        fields.append(f)
    table = table.rename_columns(
        ["window" if n == "tile_window" else n for n in table.column_names]
    )
    fields = [f.with_name("window") if f.name == "tile_window" else f for f in fields]
    v1 = pa.schema(fields, metadata={**schema.metadata, b"samrs_manifest_version": b"1.0"})
    return table.cast(v1)


def test_reads_parts_of_manifest_version_1_0(tmp_path, build) -> None:
    """Parts written as version 1.0 (fixed-size lists, nulls included) read as the current
    types; on pyarrow < 26, which cannot read those nulls, a clear error names the part."""
    old = tmp_path / "old"
    shutil.copytree(build, old)
    for name in ("images", "instances"):
        for path in part_paths(old, name):
            table = _as_v1(pq.read_table(path), TABLES[name])
            assert table.schema.field("window" if name == "images" else "prompt_box").type in (
                pa.list_(pa.int32(), 4), pa.list_(pa.float64(), 4),
            )  # fmt: skip
            pq.write_table(table, path, compression="zstd", store_schema=True)
            assert part_version(path) == "1.0"
    assert part_version(part_path(build, "images", 0)) == MANIFEST_VERSION
    images = read_table(build, "images").to_pylist()
    assert any(i["tile_window"] is None for i in images)  # the nulls older readers choke on
    if int(pa.__version__.split(".")[0]) < 26:
        with pytest.raises(ManifestError, match=r"images/part-0000\d\.parquet.*version 1\.0.*26"):
            read_table(old, "images")
        with pytest.raises(ManifestError, match=r"instances/part-.*version 1\.0"):
            list(iter_batches(old, "instances"))
        return
    for name in ("images", "instances", "errors"):
        got = read_table(old, name)
        assert got.schema.equals(TABLES[name])
        assert got.to_pylist() == read_table(build, name).to_pylist()
    assert coco_from_manifest(old, include_rejected=True) == coco_from_manifest(
        build, include_rejected=True
    )


def test_reads_parts_of_manifest_version_1_0_without_nulls(tmp_path) -> None:
    """Old parts without null vectors read with every supported pyarrow."""
    rows = instance_rows()
    for r in rows:
        r["prompt_point"] = [r["hbox"][0], r["hbox"][1]]
    table = _as_v1(to_table("instances", rows), INSTANCES)
    path = part_path(tmp_path, "instances", 0)
    path.parent.mkdir(parents=True)
    pq.write_table(table, path, store_schema=True)
    got = read_table(tmp_path, "instances")
    assert got.schema.equals(INSTANCES)
    assert got.to_pylist() == to_table("instances", rows).to_pylist()


def test_missing_nullable_columns_become_null(tmp_path) -> None:
    row = _error_row()
    del row["line"], row["image_id"]
    table = to_table("errors", [row])
    assert table.column("line").to_pylist() == [None]


def test_read_empty_build_and_filters(tmp_path, build) -> None:
    empty = read_table(tmp_path, "instances")
    assert empty.num_rows == 0 and empty.schema.equals(INSTANCES)
    assert read_table(tmp_path, "errors", columns=["stage"]).column_names == ["stage"]
    assert list(iter_batches(tmp_path, "images")) == []
    rejected = read_table(build, "instances", columns=["instance_id"], filter=~pc.field("kept"))
    assert rejected.column("instance_id").to_pylist() == FAKE["rejected_ids"]


def test_iter_batches_streams_in_order(build) -> None:
    batches = list(iter_batches(build, "instances", columns=["instance_id"], batch_size=2))
    assert all(b.num_rows <= 2 for b in batches)
    ids = pa.Table.from_batches(batches).column("instance_id").to_pylist()
    assert ids == list(range(FAKE["n_instances"]))


def test_fake_build_invariants(build) -> None:
    images = read_table(build, "images").to_pylist()
    inst = read_table(build, "instances").to_pylist()
    errors = read_table(build, "errors").to_pylist()
    # every object read appears exactly once: as an instance row or inside an errors row
    assert len(inst) + sum(e["n_objects"] for e in errors) == FAKE["n_objects_read"]
    assert sum(i["n_objects"] for i in images) == len(inst)
    assert len({r["instance_id"] for r in inst}) == len(inst)
    table = build_class_table(read_build_metadata(build))
    for image in images:
        rows = [r for r in inst if r["image_id"] == image["image_id"]]
        assert image["n_kept"] == sum(r["kept"] for r in rows)
        assert image["status"] == ("ok" if rows else "empty")
        label = read_semantic_png(build / image["semantic_file"])
        assert label.shape == (image["height"], image["width"])
        assert set(label.ravel().tolist()) <= set(range(len(table))) | {255}
        for r in rows:
            assert (r["reject_reason"] is None) == r["kept"]
            assert rle.area({"size": list(label.shape), "counts": r["segmentation"]}) == r["area"]
    assert (read_semantic_png(build / "semantic" / "P0003.png") == 255).all()


def test_build_metadata_round_trip_and_errors(tmp_path) -> None:
    data = {"b": [1, 2], "a": {"z": "é", "y": None}}
    path = write_build_metadata(tmp_path, data)
    assert read_build_metadata(tmp_path) == data
    text = path.read_text(encoding="utf-8")
    assert text.index('"a"') < text.index('"b"') and "é" in text and text.endswith("\n")
    with pytest.raises(BuildMetadataError, match="not found"):
        read_build_metadata(tmp_path / "nope")
    path.write_text("{oops", encoding="utf-8")
    with pytest.raises(BuildMetadataError, match="invalid JSON at line 1"):
        read_build_metadata(tmp_path)
