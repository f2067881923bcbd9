"""Geo-referenced outputs: GeoTIFF labels and GeoJSON instances in the images' CRS."""

from __future__ import annotations

import json
import logging

import numpy as np
import pyarrow.parquet as pq
import pytest
import rasterio
import shapely
from shapely.geometry import shape

from samrs.outputs.geo import instances_to_geojson, is_georeferenced, write_semantic_geotiff
from samrs.outputs.manifest import part_path, read_table, write_part
from samrs.outputs.select import Selection
from samrs.outputs.semantic import read_semantic_png, semantic_palette
from tests.helpers.outputs import FAKE, make_fake_build

TRANSFORM = [0.5, 0.0, 500000.0, 0.0, -0.5, 4000000.0]


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("fake") / "out"
    make_fake_build(out)
    return out


def test_geotiff_round_trip(tmp_path, build, caplog) -> None:
    label = read_semantic_png(build / "semantic" / "P0001.png")
    palette = semantic_palette(FAKE["class_table"])
    path = tmp_path / "P0001.tif"
    with caplog.at_level(logging.DEBUG, logger="rasterio"):
        write_semantic_geotiff(path, label, "EPSG:32633", TRANSFORM, palette)
    # the colour table goes in before the pixels: GDAL has nothing to complain about
    assert not [r for r in caplog.records if "GDAL signalled an error" in r.getMessage()]
    with rasterio.open(path) as ds:
        assert ds.colorinterp[0] == rasterio.enums.ColorInterp.palette
        assert (ds.count, ds.dtypes[0], ds.nodata) == (1, "uint8", 255.0)
        assert ds.crs.to_epsg() == 32633
        assert list(ds.transform)[:6] == TRANSFORM
        np.testing.assert_array_equal(ds.read(1), label)
        cmap = ds.colormap(1)
        assert cmap[0][:3] == FAKE["class_table"].palette[0]
        assert cmap[4][:3] == FAKE["class_table"].palette[4]
    write_semantic_geotiff(tmp_path / "again.tif", label, "EPSG:32633", TRANSFORM, palette)
    assert path.read_bytes() == (tmp_path / "again.tif").read_bytes()


def test_geojson_mask_outlines_in_image_crs(tmp_path, build) -> None:
    counts = instances_to_geojson(build, tmp_path / "i.geojson")
    assert counts == {"features": 2, "images": 1, "plain_images": 2}
    doc = json.loads((tmp_path / "i.geojson").read_text())
    assert doc["type"] == "FeatureCollection"
    assert doc["crs"]["properties"]["name"] == "EPSG:32633"
    plane, car = doc["features"]
    assert plane["properties"]["class_name"] == "plane" and plane["properties"]["area_px"] == 300
    geom = shape(plane["geometry"])
    # mask rows 3..17, columns 2..21 (pixel edges), 0.5 m pixels from (500000, 4000000)
    assert geom.bounds == (500001.0, 3999991.0, 500011.0, 3999998.5)
    assert geom.area == pytest.approx(300 * 0.25)
    assert shape(car["geometry"]).area == pytest.approx(36 * 0.25)


def test_geoparquet_has_the_geojson_features(tmp_path, build) -> None:
    counts = instances_to_geojson(
        build, tmp_path / "i.geojson", geoparquet=tmp_path / "i.parquet", dst_crs="EPSG:4326"
    )
    doc = json.loads((tmp_path / "i.geojson").read_text())
    table = pq.read_table(tmp_path / "i.parquet")
    assert table.num_rows == counts["features"] == 2
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry"
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["crs"]["id"] == {
        "authority": "EPSG",
        "code": 4326,
    }
    rows = table.to_pylist()
    for row, feat in zip(rows, doc["features"], strict=True):
        assert shapely.from_wkb(row.pop("geometry")).equals(shape(feat["geometry"]))
        assert row == feat["properties"]
    # a second run: the same bytes
    instances_to_geojson(
        build, tmp_path / "j.geojson", geoparquet=tmp_path / "j.parquet", dst_crs="EPSG:4326"
    )
    assert (tmp_path / "j.parquet").read_bytes() == (tmp_path / "i.parquet").read_bytes()


def test_geojson_source_polygons_reprojection_and_rejected(tmp_path, build) -> None:
    instances_to_geojson(
        build,
        tmp_path / "p.geojson",
        geometry="polygon",
        selection=Selection(include_rejected=True),
    )
    feats = json.loads((tmp_path / "p.geojson").read_text())["features"]
    assert [f["properties"]["kept"] for f in feats] == [True, True, False]
    assert shape(feats[0]["geometry"]).bounds == (500001.0, 3999991.0, 500011.0, 3999999.0)
    instances_to_geojson(build, tmp_path / "w.geojson", dst_crs="EPSG:4326")
    doc = json.loads((tmp_path / "w.geojson").read_text())
    lon, lat = shape(doc["features"][0]["geometry"]).centroid.coords[0]
    assert doc["crs"]["properties"]["name"] == "EPSG:4326"
    assert 14.9 < lon < 15.1 and 36.0 < lat < 36.2  # UTM 33N, 500 km E, 4000 km N


def test_several_crs_need_a_target(tmp_path) -> None:
    out = tmp_path / "out"
    make_fake_build(out)
    rows = read_table(out, "images", filter=None).to_pylist()[:2]
    rows[1].update(crs="EPSG:32632", transform=TRANSFORM)
    write_part(part_path(out, "images", 0), "images", rows)
    assert all(is_georeferenced(r) for r in rows)
    with pytest.raises(ValueError, match="several CRSs"):
        instances_to_geojson(out, tmp_path / "x.geojson")
    counts = instances_to_geojson(out, tmp_path / "x.geojson", dst_crs="EPSG:4326")
    assert counts["images"] == 2 and counts["features"] == 4
