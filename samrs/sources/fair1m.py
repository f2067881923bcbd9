"""FAIR1M 1.0 / 2.0 XML reader.

Layout: ``train/part1/{images,labelXml}``, ``train/part2/{images,labelXml}``,
``validation/{images,labelXml}`` (2.0) and ``test/images``; images are ``N.tif``. ``--root`` is
the top folder, a split folder (``train``, ``validation``) or one part (``train/part1``).

XML (UTF-8, tab-indented)::

    annotation/source/filename          1.tif   (also source/origin, and a research block)
    annotation/size/{width,height,depth}
    annotation/objects/object/{coordinate, type, description, possibleresult/name,
                               points/point x5}     each point "x,y"; the 5th repeats the 1st

The repeated 5th point is dropped (a 4-point ring is accepted as is; any other count, or a 5th
point that does not close the ring, is an error row). Class names contain spaces (``Small Car``)
and are matched through the class table's spelling aliases. FAIR1M has no difficult flag.

Train and validation reuse file names, so image ids are ``<split>_<stem>`` (``train_1``,
``validation_1``); ``train/part1`` and ``train/part2`` are both split ``train``. XML object
``k`` is line ``k`` and element ``objects/object[k]``. A split without a label folder (test) gives
images without objects and no error.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import partial
from pathlib import Path

from samrs.core.records import ImageRecord
from samrs.sources.common import (
    ObjectFields,
    ReadContext,
    child,
    index_images,
    label_files,
    natural_key,
    parse_float,
)

OBJECT_TAG = "objects/object"
LABEL_DIRS = ("labelXml", "labelxmls", "label_xml", "labels")
RING_TOLERANCE = 1e-3
"""Largest distance (pixels) between the 1st and 5th point of a closed ring."""


def _is_leaf(folder: Path) -> bool:
    return child(folder, "images", *LABEL_DIRS) is not None


def image_id_for(split: str | None, stem: str) -> str:
    """The FAIR1M image id: the split and the file stem (``train_1``)."""
    return f"{split}_{stem}" if split else stem


def parse_points(obj: ET.Element) -> tuple[list[float] | None, str | None]:
    """The 8 corner coordinates of an object, or None and what was wrong."""
    texts = [(p.text or "").strip() for p in obj.findall("points/point")]
    coords: list[float] = []
    for t in texts:
        parts = t.split(",")
        values = [parse_float(v) for v in parts]
        if len(parts) != 2 or any(v is None for v in values):
            return None, f"point {t!r} is not 'x,y': expected two numbers"
        coords.extend(v for v in values if v is not None)  # both (checked above)
    if len(texts) == 5:
        dx, dy = coords[8] - coords[0], coords[9] - coords[1]
        if abs(dx) > RING_TOLERANCE or abs(dy) > RING_TOLERANCE:
            return (
                None,
                "the 5th point does not repeat the 1st: expected a closed ring of 4 corners",
            )
        return coords[:8], None
    if len(texts) == 4:
        return coords, None
    return None, f"{len(texts)} points: expected 5 (4 corners and the 1st repeated)"


def object_fields(obj: ET.Element) -> ObjectFields | str:
    """The fields of one ``objects/object`` element, or what is wrong with it."""
    name = (obj.findtext("possibleresult/name") or "").strip()
    coords, problem = parse_points(obj)
    if not name:
        return "missing possibleresult/name: expected a class name"
    if coords is None:
        return problem or "no points"
    return ObjectFields(coords, name)


def read(root: Path, ctx: ReadContext) -> list[ImageRecord]:
    """Read every FAIR1M split/part folder under ``root`` (see the module docstring)."""
    images: list[ImageRecord] = []
    for split, leaf in ctx.data_folders(root, _is_leaf, "FAIR1M images/ or labelXml/"):
        label_dir = child(leaf, *LABEL_DIRS)
        index = index_images(child(leaf, "images"))
        ctx.note_duplicates(index, partial(image_id_for, split))
        labels = label_files(label_dir, ".xml")
        for stem in sorted(set(index.by_stem) | set(labels), key=natural_key):
            record = ctx.xml_image_record(
                image_id_for(split, stem),
                split,
                index.by_stem.get(stem),
                labels.get(stem),
                OBJECT_TAG,
                object_fields,
                root_tag="annotation",
                size_tags=("size/width", "size/height"),
                expected_label=label_dir / f"{stem}.xml" if label_dir is not None else None,
                images_in=leaf / "images",
                stem=stem,
            )
            if record is not None:
                images.append(record)
    return images
