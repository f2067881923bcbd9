"""Arrow schemas of the Parquet manifests (documented in ``manifests/``).

Bump :data:`MANIFEST_VERSION` on any change that is not a pure addition of nullable columns.

Nullable vectors (``tile_window``, ``transform``, ``prompt_box``, ``prompt_point``) are variable-size
lists whose length is in the field metadata (:data:`VECTOR_SIZE`): Arrow's Parquet reader
before pyarrow 26 cannot read null fixed-size lists (apache/arrow#35692). Version 1.0 stored
them as fixed-size lists; such parts still read (their types cast), with nulls on pyarrow >= 26.
"""

from __future__ import annotations

import pyarrow as pa

MANIFEST_VERSION = "2.0"

VECTOR_SIZE = b"samrs_vector_size"
"""Field metadata key: the number of values of a nullable vector column (when not null)."""


def _vector(name: str, value_type: pa.DataType, size: int) -> pa.Field:
    """A nullable column of ``size`` values: a variable-size list, ``size`` in its metadata."""
    return pa.field(name, pa.list_(value_type), metadata={VECTOR_SIZE: str(size).encode()})


IMAGE_STATUSES = ("ok", "empty", "error")

MASK_SOURCES = ("segmenter", "fallback-box", "substituted-box")
"""``mask_source`` values: the segmenter's own mask; the prompt's mask because the segmenter
could not segment the object (``mask_note`` says why); the rasterized polygon substituted by
``--on-reject box`` (``mask_note``: the reject reason)."""


# One place for what each column means (Parquet field metadata ``description``) and its
# unit (``unit``); manifests/README.md shows the same text (tests/outputs/test_manifest.py).
DESCRIPTIONS: dict[str, dict[str, str]] = {
    "images": {
        "image_id": "unique id of the image in the build (tiles include their window)",
        "source": "source format: `dota`, `dior`, `fair1m`, `hrsc`, `isaid`",
        "version": "dataset version (`1.0`, `2.0`, ...)",
        "split": "`train`, `val`, `test`, ...; null when the source does not say",
        "file_name": "where the pixels are: an absolute path, or relative to OUT (tiles: `images/<image_id>.png`), else relative to the source root (`samrs.json` config `root`)",
        "source_file": "the source image file: an absolute path (`samrs build` writes the resolved path; readers also accept a path relative to the source root)",
        "annotation_file": "the label file the objects came from (absolute path, as `source_file`); null when the image has none",
        "width": "size in pixels of this image (the tile for tiles); null only when `status = error` and unknown",
        "height": "size in pixels of this image (the tile for tiles); null only when `status = error` and unknown",
        "gsd": "ground sample distance, metres per pixel: the source's, else the side of a pixel of the GeoTIFF transform when the CRS is projected (converted to metres)",
        "n_objects": "instance rows of this image (objects inside errors rows are counted there)",
        "n_kept": "of those, rows with `kept = true`",
        "semantic_file": "label PNG relative to OUT (`semantic/<image_id>.png`); null for `status = error`",
        "status": "`ok` (has objects), `empty` (no objects: all-255 label, still a row and a PNG), `error` (see the errors table)",
        "crs": "CRS of a geo-referenced source (`EPSG:xxxx` or WKT); null for plain images",
        "transform": "affine `(a, b, c, d, e, f)` in rasterio order: `x = a*col + b*row + c`, `y = d*col + e*row + f` (pixel corners); a tile carries its window's transform",
        "shard": "shard index (= part number)",
        "ignore_polygons": "tiles only: source polygons (tile pixels) of the objects reaching into the tile that are not objects of it (below the iof threshold, or not writable under `--tile-convention devkit`) or are objects of it in an altered form (clipped, devkit integer coordinates); with `--background` their pixels are 255 where no kept mask covers them, never 0, in the build's labels and in labels an export repaints; null when none (and for whole images)",
        "source_image_id": "the whole source image's `image_id` (a tile's source; a whole image's own id); null in builds made before the column",
        "source_width": "width of the whole source image (a tile's `width` is its window's)",
        "source_height": "height of the whole source image",
        "tile_window": "`[x, y, w, h]` of a tile in the source image's pixels; null for whole images (named `window` before manifest 2.0; readers map it)",
    },
    "instances": {
        "instance_id": "unique over the build (COCO annotation id = `instance_id + 1`)",
        "image_id": "the image (same shard/part)",
        "object_index": "0-based position of the object among its image's objects, source order",
        "class_id": "class id (see Conventions)",
        "class_name": "canonical class name of the class table",
        "difficult": "the source's difficult flag (false where the format has none)",
        "truncated": "the object is cut by the image/tile border (or was clipped)",
        "polygon": "the object's four corners `x1, y1, ..., x4, y4`, image pixels, source order",
        "hbox": "enclosing horizontal box of `polygon`, `xyxy`",
        "prompt": "prompt mode: `hbox`, `rhbox`, `rbox-mask`, `point`, `rhbox+point`",
        "prompt_box": "box prompt given to the segmenter, `xyxy`; null when none",
        "prompt_point": "positive point prompt `x, y`; null when none",
        "segmentation": "COCO RLE counts (ASCII) of the stored mask, size `(height, width)` of the image. For rejected instances this is the rejected mask (so exports can re-threshold); for substituted ones the box mask",
        "area": "mask pixels",
        "bbox": "COCO `[x, y, w, h]` of the mask (zeros for an empty mask)",
        "score": "SAM's predicted IoU; null for segmenters without one (box, grabcut)",
        "stability": "SAM stability score; null for segmenters without one",
        "rbox_iou": "IoU between the mask and the rasterized `polygon`",
        "inside_fraction": "fraction of the mask's pixels inside the object's polygon (as used by `--min-inside-fraction`)",
        "n_components": "connected components of the mask",
        "kept": "the mask passed the quality filter (or was substituted); kept masks are painted and exported",
        "reject_reason": "why the mask was rejected: `empty`, `low-score`, `low-stability`, `low-rbox-iou`, `low-inside-fraction` or `small-area` (the first failing check, in this order); null when kept",
        "substituted": "`--on-reject box`: the rejected mask was replaced by the object's box mask; then `kept = true`, `reject_reason = null`, and `flags` holds `substituted:<reason>`",
        "source_file": "annotation file of the object",
        "source_line": "1-based line (text formats) or object position (XML)",
        "flags": "extra facts, e.g. `clipped`, `substituted:low-score`",
        "mask_source": "how the stored mask was made: `segmenter` (the segmenter's own mask), `fallback-box` (the segmenter could not segment the object and returned its prompt's mask: the box, or the polygon for `rbox-mask`), `substituted-box` (`--on-reject box` replaced a rejected mask by the rasterized polygon). `samrs stats`/`audit` count them per class and flag a build where more than 5% are not `segmenter`",
        "mask_note": "why, for masks that are not the segmenter's own: the fallback's reason (`box smaller than 4 px`, `too little background around the box to model`, `empty foreground`, `foreground collapsed to the core`, `grabcut error: ...`) or, for `substituted-box`, the reject reason; null for `segmenter`",
        "source_image_id": "the whole source image the object was annotated on (the tile's source; the image itself when not tiled)",
        "source_object_index": "0-based index of the object among the source image's objects (its `object_index` when not tiled): one source object's instances in overlapping tiles share `(source_image_id, source_object_index)`",
    },
    "errors": {
        "source_file": "the file concerned (label file, image)",
        "line": "1-based line / object position; null when about the whole file",
        "stage": "`read`, `image`, `tile`, `segment`, `write`, `skip`, ...",
        "message": "what was wrong and what was expected",
        "image_id": "the image, when known",
        "n_objects": "source objects this error accounts for (a malformed object line: 1)",
        "shard": "shard index",
    },
}

UNITS: dict[str, dict[str, str]] = {
    "images": {
        "tile_window": "px",
        "ignore_polygons": "px",
        "source_width": "px",
        "source_height": "px",
        "width": "px",
        "height": "px",
        "gsd": "m/px",
        "transform": "CRS units",
    },
    "instances": {
        "polygon": "px",
        "hbox": "px",
        "prompt_box": "px",
        "prompt_point": "px",
        "area": "px^2",
        "bbox": "px",
    },
    "errors": {},
}

LEGACY_NAMES: dict[str, dict[str, str]] = {"images": {"window": "tile_window"}}
"""Old column name -> current name, per table: manifests written before a rename still read."""


def _described(table: str, schema: pa.Schema) -> pa.Schema:
    """``schema`` with each field's ``description`` (and ``unit``) as Parquet field metadata."""
    fields = []
    for field in schema:
        meta = {**(field.metadata or {}), b"description": DESCRIPTIONS[table][field.name].encode()}
        if field.name in UNITS[table]:
            meta[b"unit"] = UNITS[table][field.name].encode()
        fields.append(field.with_metadata(meta))
    return pa.schema(fields, metadata=schema.metadata)


IMAGES = _described(
    "images",
    pa.schema(
        [
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("source", pa.string(), nullable=False),
            pa.field("version", pa.string(), nullable=False),
            pa.field("split", pa.string()),
            pa.field("file_name", pa.string(), nullable=False),
            pa.field("source_file", pa.string(), nullable=False),
            pa.field("annotation_file", pa.string()),
            _vector("tile_window", pa.int32(), 4),
            pa.field("width", pa.int32()),
            pa.field("height", pa.int32()),
            pa.field("gsd", pa.float64()),
            pa.field("n_objects", pa.int32(), nullable=False),
            pa.field("n_kept", pa.int32(), nullable=False),
            pa.field("semantic_file", pa.string()),
            pa.field("status", pa.string(), nullable=False),
            pa.field("crs", pa.string()),
            _vector("transform", pa.float64(), 6),
            pa.field("shard", pa.int32(), nullable=False),
            pa.field("ignore_polygons", pa.list_(pa.list_(pa.float64()))),
            pa.field("source_image_id", pa.string()),
            pa.field("source_width", pa.int32()),
            pa.field("source_height", pa.int32()),
        ],
        metadata={"samrs_manifest_version": MANIFEST_VERSION, "table": "images"},
    ),
)

INSTANCES = _described(
    "instances",
    pa.schema(
        [
            pa.field("instance_id", pa.int64(), nullable=False),
            pa.field("image_id", pa.string(), nullable=False),
            pa.field("object_index", pa.int32(), nullable=False),
            pa.field("class_id", pa.int32(), nullable=False),
            pa.field("class_name", pa.string(), nullable=False),
            pa.field("difficult", pa.bool_(), nullable=False),
            pa.field("truncated", pa.bool_(), nullable=False),
            pa.field("polygon", pa.list_(pa.float64(), 8), nullable=False),
            pa.field("hbox", pa.list_(pa.float64(), 4), nullable=False),
            pa.field("prompt", pa.string(), nullable=False),
            _vector("prompt_box", pa.float64(), 4),
            _vector("prompt_point", pa.float64(), 2),
            pa.field("segmentation", pa.string(), nullable=False),
            pa.field("area", pa.int64(), nullable=False),
            pa.field("bbox", pa.list_(pa.float64(), 4), nullable=False),
            pa.field("score", pa.float32()),
            pa.field("stability", pa.float32()),
            pa.field("rbox_iou", pa.float32(), nullable=False),
            pa.field("inside_fraction", pa.float32(), nullable=False),
            pa.field("n_components", pa.int32(), nullable=False),
            pa.field("kept", pa.bool_(), nullable=False),
            pa.field("reject_reason", pa.string()),
            pa.field("substituted", pa.bool_(), nullable=False),
            pa.field("source_file", pa.string(), nullable=False),
            pa.field("source_line", pa.int32()),
            pa.field("flags", pa.list_(pa.string()), nullable=False),
            pa.field("mask_source", pa.string()),
            pa.field("mask_note", pa.string()),
            pa.field("source_image_id", pa.string()),
            pa.field("source_object_index", pa.int32()),
        ],
        metadata={"samrs_manifest_version": MANIFEST_VERSION, "table": "instances"},
    ),
)

ERRORS = _described(
    "errors",
    pa.schema(
        [
            pa.field("source_file", pa.string(), nullable=False),
            pa.field("line", pa.int32()),
            pa.field("stage", pa.string(), nullable=False),
            pa.field("message", pa.string(), nullable=False),
            pa.field("image_id", pa.string()),
            pa.field("n_objects", pa.int32(), nullable=False),
            pa.field("shard", pa.int32(), nullable=False),
        ],
        metadata={"samrs_manifest_version": MANIFEST_VERSION, "table": "errors"},
    ),
)

TABLES: dict[str, pa.Schema] = {"images": IMAGES, "instances": INSTANCES, "errors": ERRORS}
