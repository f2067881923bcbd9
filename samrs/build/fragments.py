"""COCO fragments: ``coco/instances.json`` assembled from per-shard pieces.

When a shard commits, its worker also writes the shard's COCO fragment
(``OUT/.samrs/coco/part-NNNNN.jsonl``, :func:`samrs.outputs.coco.write_fragment`): the
``images`` and ``annotations`` entries of its part as the build's document has them, image
ids local to the part. It is written in the shard's scratch folder and renamed into place
before the images part (the commit marker), so every committed shard has one. Its header
names what it was made from: the sha256 of the shard's images and instances parts (as in
the shard's checksum record) and the COCO options (``include_rejected``, ``polygons``,
``on_reject``).

:func:`write_instances` (finalize) then only copies text and shifts image ids, instead of
reading every manifest part in one process at the end. A fragment that is missing (a shard
committed by an older samrs), stale, foreign or damaged is made again from the shard's
parts by the same function, so the document is always the one
:func:`samrs.outputs.coco.write_coco` writes.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from samrs.build.config import BuildConfig
from samrs.build.layout import Layout

log = logging.getLogger(__name__)


def coco_options(config: BuildConfig) -> dict[str, Any]:
    """The options of a build's COCO document (:func:`samrs.outputs.coco.fragment_options`)."""
    from samrs.outputs.coco import fragment_options

    return fragment_options(config.include_rejected, config.polygons, config.on_reject)


def fragment_origin(parts: dict[str, Any]) -> dict[str, Any]:
    """What a fragment is made from: the sha256 of the images and instances parts, from a
    shard record's ``parts`` (:func:`samrs.build.checksums.write_shard_record`)."""
    return {table: (parts.get(table) or {}).get("sha256") for table in ("images", "instances")}


def stage_fragment(
    layout: Layout,
    shard: int,
    images_part: Path,
    instances_part: Path,
    parts: dict[str, Any],
    options: dict[str, Any],
) -> Path:
    """Write the fragment of a shard's (staged) parts in the shard's scratch folder; its
    path there (the caller renames it to :meth:`Layout.coco_fragment`)."""
    from samrs.outputs.coco import write_fragment

    path = layout.tmp(shard) / "coco.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_fragment(path, images_part, instances_part, fragment_origin(parts), options)
    return path


def _recorded_parts(layout: Layout, shard: int) -> dict[str, Any]:
    """The parts' digests of a committed shard: its record's, or (no readable record: a shard
    of an older samrs) computed from the parts."""
    from samrs.build.checksums import file_digest

    try:
        parts = json.loads(layout.shard_record(shard).read_text())["parts"]
        if isinstance(parts, dict):
            return parts
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return {
        table: file_digest(path)
        for table in ("images", "instances")
        if (path := layout.part(table, shard)).is_file()
    }


def sound_fragment(layout: Layout, shard: int, options: dict[str, Any]) -> Path:
    """The fragment of a committed shard, made again from its parts unless it is there,
    readable, undamaged and made from these parts with these options."""
    from samrs.outputs.coco import read_fragment_header

    parts = _recorded_parts(layout, shard)
    path = layout.coco_fragment(shard)
    if read_fragment_header(path, fragment_origin(parts), options) is not None:
        return path
    log.info("shard %d: COCO fragment %s missing or out of date; making it again", shard, path)
    staged = stage_fragment(
        layout, shard, layout.part("images", shard), layout.part("instances", shard), parts, options
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    os.replace(staged, path)
    shutil.rmtree(layout.tmp(shard), ignore_errors=True)
    return path


def write_instances(layout: Layout, config: BuildConfig) -> dict[str, int]:
    """Write ``OUT/coco/instances.json`` from the fragments of the committed parts (made
    again where needed): the bytes :func:`samrs.outputs.coco.write_coco` writes with the
    build's options. Returns counts (``images``, ``annotations``)."""
    import pyarrow.parquet as pq

    from samrs.outputs.coco import assemble_coco
    from samrs.outputs.manifest import part_paths

    options = coco_options(config)
    fragments: list[tuple[str | Path, int]] = []
    offset = 0
    for images_part in part_paths(layout.out, "images"):
        shard = int(images_part.stem.split("-")[1])
        fragments.append((sound_fragment(layout, shard, options), offset))
        offset += pq.ParquetFile(images_part).metadata.num_rows
    return assemble_coco(layout.out, layout.out / "coco" / "instances.json", fragments)
