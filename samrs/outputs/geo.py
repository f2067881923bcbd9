"""Geo-referenced outputs for images that carry a CRS and a geotransform.

``images.transform`` holds the six affine coefficients ``(a, b, c, d, e, f)`` in rasterio's
``Affine`` order (``x_geo = a * col + b * row + c``, ``y_geo = d * col + e * row + f``) for
pixel-corner coordinates, i.e. ``list(dataset.transform)[:6]`` of the source raster; a tile
carries its window's transform (:func:`samrs.core.imageio.window_transform`). ``images.crs`` is any string
rasterio accepts (``EPSG:32633``, WKT). Images without both stay plain.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import rasterio
import shapely
from affine import Affine
from rasterio import features
from rasterio.crs import CRS
from rasterio.warp import transform_geom
from shapely.geometry import mapping, shape

from samrs.core import rle
from samrs.core.classes import ClassTable
from samrs.outputs.manifest import read_table
from samrs.outputs.metadata import build_class_table, build_config, read_build_metadata
from samrs.outputs.select import ImageItem, Selection, iter_build
from samrs.outputs.semantic import semantic_palette

GEOMETRIES = ("mask", "polygon")


def affine_of(transform: Sequence[float]) -> Affine:
    """``Affine`` from the six stored coefficients ``(a, b, c, d, e, f)``."""
    if len(transform) != 6:
        raise ValueError(f"a geotransform has 6 coefficients, got {len(transform)}")
    return Affine(*(float(v) for v in transform))


def is_georeferenced(image: dict[str, Any]) -> bool:
    """Whether an images row has both ``crs`` and ``transform``."""
    return bool(image.get("crs")) and image.get("transform") is not None


def _colormap(palette: Sequence[int] | ClassTable) -> dict[int, tuple[int, int, int, int]]:
    flat = semantic_palette(palette) if isinstance(palette, ClassTable) else list(palette)
    if len(flat) != 768:
        raise ValueError(f"palette must have 768 entries, got {len(flat)}")
    return {i: (flat[3 * i], flat[3 * i + 1], flat[3 * i + 2], 255) for i in range(256)}


def write_semantic_geotiff(
    path: str | Path,
    label: np.ndarray,
    crs: str,
    transform: Sequence[float],
    palette: Sequence[int] | ClassTable,
    class_names: Sequence[str] | None = None,
) -> None:
    """Write a label map as a single-band uint8 GeoTIFF with a colour map.

    Nodata is 255 (unlabelled); deflate-compressed; the geo-referencing of the image.
    ``class_names`` (256 entries, see :func:`~samrs.outputs.semantic.semantic_class_names`)
    go into the band's ``CLASS_NAMES`` tag (JSON; GDAL metadata, read by rasterio's
    ``tags(1)``); the category names GDAL and QGIS show are in the PAM sidecar
    (:func:`write_category_names`).
    """
    label = np.asarray(label)
    if label.ndim != 2 or label.dtype != np.uint8:
        raise ValueError(f"label must be a 2-D uint8 array, got {label.dtype} {label.shape}")
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        height=label.shape[0],
        width=label.shape[1],
        count=1,
        dtype="uint8",
        crs=crs,
        transform=affine_of(transform),
        nodata=255,
        compress="deflate",
        photometric="palette",
    ) as dst:
        # the colour table must precede the pixels: GDAL cannot set a palette's photometric
        # tag once strips are written (it logs an error and leaves the tag as it was)
        dst.write_colormap(1, _colormap(palette))
        if class_names is not None:
            used = {i: n for i, n in enumerate(class_names) if n}
            dst.update_tags(1, CLASS_NAMES=json.dumps(used, separators=(",", ":")))
            dst.set_band_description(1, "class")
        dst.write(label, 1)


def category_names_xml(class_names: Sequence[str]) -> str:
    """GDAL PAM XML (``<file>.aux.xml``) giving band 1 its category names (value = index).

    GDAL (``gdalinfo``, ``GetCategoryNames``) and QGIS (paletted renderer legend) read it;
    rasterio has no API to write category names, and GeoTIFF cannot hold them itself (GDAL
    keeps them in this sidecar too).
    """
    last = max((i for i, n in enumerate(class_names) if n), default=-1)
    cats = "".join(
        f"      <Category>{escape(n)}</Category>\n" for n in list(class_names)[: last + 1]
    )
    return (
        '<PAMDataset>\n  <PAMRasterBand band="1">\n    <CategoryNames>\n'
        f"{cats}    </CategoryNames>\n  </PAMRasterBand>\n</PAMDataset>\n"
    )


def category_names_path(tif: str | Path) -> Path:
    """The PAM sidecar of a GeoTIFF: ``<name>.tif.aux.xml``."""
    tif = Path(tif)
    return tif.with_name(tif.name + ".aux.xml")


def write_category_names(tif: str | Path, class_names: Sequence[str]) -> Path:
    """Write the category names of a label GeoTIFF to its PAM sidecar (atomically)."""
    path = category_names_path(tif)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(category_names_xml(class_names), encoding="utf-8")
    os.replace(tmp, path)
    return path


def pixel_size_m(crs: str | None, transform: Sequence[float] | None) -> float | None:
    """Ground sample distance (metres per pixel) of a geotransform in a projected CRS.

    ``sqrt(|a*e - b*d|)`` (the side of a pixel's square area, exact for square pixels,
    rotated or not) times the CRS's linear unit in metres; None for geographic or unknown
    CRSs and missing transforms.
    """
    if not crs or transform is None:
        return None
    try:
        ref = CRS.from_user_input(crs)
    except Exception:
        return None
    if not ref.is_projected:
        return None
    try:
        _, to_metres = ref.linear_units_factor
    except Exception:
        return None
    a, b, _, d, e, _ = (float(v) for v in transform[:6])
    size = math.sqrt(abs(a * e - b * d)) * float(to_metres)
    return round(size, 9) if size > 0 else None


def mask_geometry(mask: np.ndarray, transform: Affine | None = None) -> Any:
    """Shapely (multi)polygon of a boolean mask along pixel edges, holes kept.

    In pixel-corner coordinates, or mapped through ``transform``. None for an empty mask.
    """
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    parts = [
        shape(geom)
        for geom, _ in features.shapes(
            mask, mask=mask.astype(bool), connectivity=4, transform=transform or Affine.identity()
        )
    ]
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def _polygon_geometry(polygon: Sequence[float], transform: Affine) -> Any:
    pts = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    t = transform  # x' = a x + b y + c, y' = d x + e y + f (any affine version)
    matrix = np.array([[t.a, t.d], [t.b, t.e]], dtype=np.float64)
    return shapely.Polygon(pts @ matrix + np.array([t.c, t.f], dtype=np.float64))


def instance_feature(
    item: ImageItem, row: dict[str, Any], geometry: str = "mask", dst_crs: str | None = None
) -> dict[str, Any] | None:
    """GeoJSON feature of an instance of a geo-referenced image (None: empty mask)."""
    transform = affine_of(item.image["transform"])
    if geometry == "mask":
        geom = mask_geometry(rle.decode(item.rle(row)), transform)
    elif geometry == "polygon":
        geom = _polygon_geometry(row["polygon"], transform)
    else:
        raise ValueError(f"unknown geometry {geometry!r}; expected one of {GEOMETRIES}")
    if geom is None:
        return None
    geo = mapping(geom)
    if dst_crs is not None and dst_crs != item.image["crs"]:
        geo = transform_geom(item.image["crs"], dst_crs, geo)
    score = row["score"]
    return {
        "type": "Feature",
        "id": int(row["instance_id"]),
        "geometry": geo,
        "properties": {
            "image_id": item.image["image_id"],
            "instance_id": int(row["instance_id"]),
            "class_id": int(row["class_id"]),
            "class_name": row["class_name"],
            "score": None if score is None else round(float(score), 6),
            "rbox_iou": round(float(row["rbox_iou"]), 6),
            "area_px": int(row["area"]),
            "kept": bool(row["kept"]),
            "reject_reason": row["reject_reason"],
            "substituted": bool(row["substituted"]),
        },
    }


GEOPARQUET_VERSION = "1.1.0"

_GEOPARQUET_FIELDS = [
    ("image_id", pa.string()),
    ("instance_id", pa.int64()),
    ("class_id", pa.int32()),
    ("class_name", pa.string()),
    ("score", pa.float64()),
    ("rbox_iou", pa.float64()),
    ("area_px", pa.int64()),
    ("kept", pa.bool_()),
    ("reject_reason", pa.string()),
    ("substituted", pa.bool_()),
]


def geoparquet_schema(crs: str | None, geometry: str = "mask") -> pa.Schema:
    """Arrow schema of the GeoParquet instances file: the GeoJSON properties and a WKB
    ``geometry`` column, with GeoParquet ``geo`` metadata (CRS as PROJJSON)."""
    types = ["MultiPolygon", "Polygon"] if geometry == "mask" else ["Polygon"]
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": types}
    column["crs"] = None if crs is None else CRS.from_user_input(crs).to_dict(projjson=True)
    geo = {"version": GEOPARQUET_VERSION, "primary_column": "geometry",
           "columns": {"geometry": column}}  # fmt: skip
    fields = [pa.field(n, t) for n, t in _GEOPARQUET_FIELDS]
    fields.append(pa.field("geometry", pa.binary(), nullable=False))
    return pa.schema(fields, metadata={b"geo": json.dumps(geo, sort_keys=True).encode()})


class _GeoParquetSink:
    """Features -> GeoParquet rows, written in row groups as they come."""

    ROWS = 65536

    def __init__(self, path: Path, crs: str | None, geometry: str) -> None:
        self.schema = geoparquet_schema(crs, geometry)
        self.writer = pq.ParquetWriter(path, self.schema, compression="zstd")
        self.rows: list[dict[str, Any]] = []

    def add(self, feature: dict[str, Any]) -> None:
        row = dict(feature["properties"])
        row["geometry"] = shapely.to_wkb(shape(feature["geometry"]))
        self.rows.append(row)
        if len(self.rows) >= self.ROWS:
            self.flush()

    def flush(self) -> None:
        if self.rows:
            self.writer.write_table(pa.Table.from_pylist(self.rows, schema=self.schema))
            self.rows = []

    def close(self) -> None:
        self.flush()
        self.writer.close()


def instances_to_geojson(
    out: str | Path,
    to: str | Path,
    *,
    selection: Selection | None = None,
    geometry: str = "mask",
    dst_crs: str | None = None,
    geoparquet: str | Path | None = None,
) -> dict[str, int]:
    """Write the instances of the geo-referenced images of a build as a GeoJSON file.

    Args:
        out: the build folder.
        to: the ``.geojson`` file to write.
        selection: subset / thresholds (default: kept instances of every image).
        geometry: ``mask`` (outline of the mask along pixel edges, holes kept) or
            ``polygon`` (the source's rotated box).
        dst_crs: CRS of the output; default the images' CRS, which must then be unique.
        geoparquet: also write the same features to this GeoParquet file (WKB geometry,
            the properties as columns, CRS as PROJJSON in the ``geo`` metadata).

    The FeatureCollection carries a ``crs`` member naming the CRS (GeoJSON 2008 style; RFC
    7946 readers assume WGS84 unless told). Plain images are skipped and counted.

    Raises:
        ValueError: images in several CRSs and no ``dst_crs``.
    """
    sel = selection or Selection()
    meta = read_build_metadata(out)
    config = build_config(meta)
    images = read_table(out, "images", columns=["image_id", "split", "status", "crs", "transform"])
    chosen = [im for im in images.to_pylist() if sel.wants_image(im)]
    crss = sorted({str(im["crs"]) for im in chosen if is_georeferenced(im)})
    if dst_crs is None and len(crss) > 1:
        raise ValueError(f"images are in several CRSs ({', '.join(crss)}); choose one (dst_crs)")
    crs = dst_crs or (crss[0] if crss else None)
    head: dict[str, Any] = {"type": "FeatureCollection"}
    if crs is not None:
        head["crs"] = {"type": "name", "properties": {"name": crs}}
    counts = {"features": 0, "images": 0, "plain_images": 0}
    to = Path(to)
    to.parent.mkdir(parents=True, exist_ok=True)
    items = iter_build(
        out, sel, class_table=build_class_table(meta), on_reject=config.get("on_reject")
    )
    sink = None if geoparquet is None else _GeoParquetSink(Path(geoparquet), crs, geometry)
    try:
        with open(to, "w", encoding="utf-8") as f:
            f.write(_dumps(head)[:-1] + ',"features":[')
            for item in items:
                if not is_georeferenced(item.image):
                    counts["plain_images"] += 1
                    continue
                counts["images"] += 1
                for row in item.instances:
                    feat = instance_feature(item, row, geometry, crs)
                    if feat is not None:
                        f.write(("," if counts["features"] else "") + _dumps(feat))
                        counts["features"] += 1
                        if sink is not None:
                            sink.add(feat)
            f.write("]}\n")
    finally:
        if sink is not None:
            sink.close()
    return counts


def _dumps(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
