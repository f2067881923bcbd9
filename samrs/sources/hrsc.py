"""HRSC2016 XML reader (ships; rotated boxes, and colour-coded ground-truth masks).

Layout: ``FullDataSet/{AllImages,Annotations,Segmentations,LandMask}`` with split lists in
``ImageSets/{train,val,trainval,test}.txt``, and/or ``Train/`` and ``Test/`` folders with their
own ``AllImages`` and ``Annotations``. When a ``FullDataSet`` folder exists only it is read (the
release repeats its images under ``Train``/``Test``), with splits from the lists (``train``,
``val``, ``test``; ``trainval`` for ids in neither train nor val) or None; otherwise each folder
with ``AllImages``/``Annotations`` is read with its folder name as split (``Train`` -> ``train``).
``--root`` is the top folder or any of those folders.

XML: ``HRSC_Image/{Img_ID, Img_FileName, Img_FileFmt, Img_SizeWidth, Img_SizeHeight,
Img_Resolution}`` and ``HRSC_Objects/HRSC_Object/{Class_ID, truncated, difficult,
box_xmin..box_ymax, mbox_cx, mbox_cy, mbox_w, mbox_h, mbox_ang, seg_color}``. The rotated box
(angle in radians) becomes the polygon (:func:`samrs.core.geometry.rbox_polygon`); an object without
``mbox_*`` but with ``box_*`` uses that horizontal box (flag ``hbox_only``). Every object is class
``ship`` (the level-1 class SAMRS uses); the fine class is kept as the flag
``hrsc_class=<Class_ID>`` and the mask colour as ``seg_color=R,G,B`` (absent when the object
has no mask; a colour that is not three integers 0-255 is kept as written in the flag
``seg_color_invalid=<text>``) -- ``samrs evaluate`` matches ground-truth mask pixels by that
colour.
``Img_Resolution`` is the gsd. Image ids are the file stems; object ``k`` is line ``k`` and
element ``HRSC_Objects/HRSC_Object[k]``.

This is the one HRSC parser: ``samrs evaluate`` reads its ground truth with
``read(root, ctx, labels_only=True)`` (every label file, with or without its image) and
:func:`mask_colour`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from samrs.core.geometry import box_polygon, rbox_polygon
from samrs.core.records import ImageRecord, ObjectAnnotation
from samrs.sources.common import (
    SPLIT_RANK,
    ObjectFields,
    ReadContext,
    child,
    index_images,
    label_files,
    natural_key,
    parse_int,
    split_lists,
    split_of,
    xml_number,
)

MBOX_FIELDS = ("mbox_cx", "mbox_cy", "mbox_w", "mbox_h", "mbox_ang")
BOX_FIELDS = ("box_xmin", "box_ymin", "box_xmax", "box_ymax")
SEG_COLOR_FLAG = "seg_color="
SEG_COLOR_INVALID_FLAG = "seg_color_invalid="


def _is_leaf(folder: Path) -> bool:
    return child(folder, "AllImages", "Annotations") is not None


def seg_color(text: str | None) -> tuple[int, int, int] | None:
    """``R,G,B`` as a colour, or None when empty or malformed."""
    parts = [parse_int(p) for p in (text or "").split(",")]
    values = [p for p in parts if p is not None and 0 <= p <= 255]
    if len(parts) != 3 or len(values) != 3:
        return None
    r, g, b = values
    return (r, g, b)


def mask_colour(obj: ObjectAnnotation) -> tuple[int, int, int] | None:
    """The colour of an object's pixels in its image's ground-truth mask (its ``seg_color=``
    flag), or None when the object has no mask."""
    for flag in obj.flags:
        if flag.startswith(SEG_COLOR_FLAG):
            return seg_color(flag[len(SEG_COLOR_FLAG) :])
    return None


def object_fields(obj: ET.Element) -> ObjectFields | str:
    """The fields of one ``HRSC_Objects/HRSC_Object`` element, or what is wrong with it."""
    flags: list[str] = []
    mbox = [xml_number(obj, f) for f in MBOX_FIELDS]
    box = [xml_number(obj, f) for f in BOX_FIELDS]
    mbox_found = [v for v in mbox if v is not None]
    box_found = [v for v in box if v is not None]
    if len(mbox_found) == len(MBOX_FIELDS):
        coords = rbox_polygon(*mbox_found)
    elif len(box_found) == len(BOX_FIELDS):
        coords, flags = box_polygon(box_found), ["hbox_only"]
    else:
        bad = next(f for f, v in zip(MBOX_FIELDS, mbox, strict=True) if v is None)
        return (
            f"missing or non-numeric {bad}: expected mbox_cx, mbox_cy, mbox_w, mbox_h, "
            "mbox_ang (radians) or box_xmin..box_ymax"
        )
    class_id = (obj.findtext("Class_ID") or "").strip()
    if class_id:
        flags.append(f"hrsc_class={class_id}")
    written = (obj.findtext("seg_color") or "").strip()
    color = seg_color(written)
    if color is not None:
        flags.append(SEG_COLOR_FLAG + "{},{},{}".format(*color))
    elif written:  # kept as written: the object stays, its mask colour is unusable
        flags.append(SEG_COLOR_INVALID_FLAG + written)
    return ObjectFields(
        coords,
        "ship",
        difficult=parse_int(obj.findtext("difficult")) == 1,
        truncated=parse_int(obj.findtext("truncated")) == 1,
        flags=tuple(flags),
    )


def read(root: Path, ctx: ReadContext, *, labels_only: bool = False) -> list[ImageRecord]:
    """Read HRSC2016 under ``root`` (see the module docstring).

    Args:
        root: the dataset's top folder or one of its data folders.
        ctx: the reading context (class table, split, error rows).
        labels_only: read the label files only, whether their images exist or not (the
            ground truth of ``samrs evaluate``, which needs no pixels): an image without a
            label is not read, and a label without an image is a record of the image where
            it was expected (``AllImages/<stem>.bmp``) with the size its XML states, plus an
            error row (stage ``image``) saying the image is missing.
    """
    # splits come from the lists per image: filtered below, not by folder
    leaves = ctx.data_folders(root, _is_leaf, "HRSC2016 AllImages/ or Annotations/", by_split=False)
    full = [(s, leaf) for s, leaf in leaves if leaf.name.lower() == "fulldataset"]
    leaves = full or leaves
    images: list[ImageRecord] = []
    for named, leaf in leaves:
        named = split_of(root, leaf) if named is None else named
        leaf_split = named.lower() if named and named.lower() in SPLIT_RANK else None
        lists: dict[str, str] = {}
        if leaf_split is None:  # the lists beside FullDataSet (or in it, or in root)
            found = (split_lists(folder) for folder in (leaf, leaf.parent, root))
            lists = next((found_lists for found_lists in found if found_lists is not None), {})
        label_dir = child(leaf, "Annotations")
        index = index_images(child(leaf, "AllImages", "Images"))
        ctx.note_duplicates(index, lambda stem: stem)
        labels = label_files(label_dir, ".xml")
        images_in = leaf / "AllImages"
        stems = set(labels) if labels_only else set(index.by_stem) | set(labels)
        for stem in sorted(stems, key=natural_key):
            split = lists.get(stem, leaf_split)
            if not ctx.wants(split):
                continue
            image = index.by_stem.get(stem)
            if image is None and labels_only:
                image = (child(leaf, "AllImages", "Images") or images_in) / f"{stem}.bmp"
            record = ctx.xml_image_record(
                stem,
                split,
                image,
                labels.get(stem),
                "HRSC_Objects/HRSC_Object",
                object_fields,
                root_tag="HRSC_Image",
                size_tags=("Img_SizeWidth", "Img_SizeHeight"),
                gsd_tag="Img_Resolution",
                expected_label=label_dir / f"{stem}.xml" if label_dir is not None else None,
                images_in=images_in,
            )
            if record is not None:
                images.append(record)
    return images
