"""Arrow schemas of the Parquet manifests (documented in ``manifests/``).

Bump :data:`MANIFEST_VERSION` on any change that is not a pure addition of nullable columns.

Nullable vectors (``window``, ``transform``, ``prompt_box``, ``prompt_point``) are variable-size
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

IMAGES = pa.schema(
    [
        pa.field("image_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("version", pa.string(), nullable=False),
        pa.field("split", pa.string()),
        pa.field("file_name", pa.string(), nullable=False),
        pa.field("source_file", pa.string(), nullable=False),
        pa.field("annotation_file", pa.string()),
        _vector("window", pa.int32(), 4),
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
    ],
    metadata={"samrs_manifest_version": MANIFEST_VERSION, "table": "images"},
)

INSTANCES = pa.schema(
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
    ],
    metadata={"samrs_manifest_version": MANIFEST_VERSION, "table": "instances"},
)

ERRORS = pa.schema(
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
)

TABLES: dict[str, pa.Schema] = {"images": IMAGES, "instances": INSTANCES, "errors": ERRORS}
