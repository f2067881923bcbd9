"""DIOR (horizontal boxes) and DIOR-R (oriented boxes) VOC-style XML reader.

Layout (folder names contain spaces)::

    DIOR/JPEGImages-trainval/00001.jpg ...      DIOR/JPEGImages-test/11726.jpg ...
    DIOR/Annotations/Horizontal Bounding Boxes/00001.xml
    DIOR/Annotations/Oriented Bounding Boxes/00001.xml
    DIOR/ImageSets/Main/{train,val,test}.txt

A flat ``Annotations/*.xml`` (the first DIOR release) counts as horizontal boxes. ``--root`` is
the top folder or one ``JPEGImages-*`` folder (then only its images are read).

Which annotation set is read (``version``):

- ``None`` or ``1.0``: the oriented set when ``Annotations/Oriented Bounding Boxes`` exists,
  else the horizontal one;
- ``hbb`` (``horizontal``): the horizontal set; ``obb`` (``r``, ``dior-r``, ``oriented``): the
  oriented set. Either one missing is a :class:`SourceError`.

The class table version is ``1.0`` in every case. Splits come from ``ImageSets/Main`` lists
(``train``, ``val``, ``test``; ``trainval`` only for ids in neither train nor val); an image in
no list takes its folder's split (``trainval``/``test``, None for plain ``JPEGImages``).

Objects: ``object/name`` and ``bndbox/{xmin,ymin,xmax,ymax}`` -- also accepted inside a
``<robndbox>`` element, as some horizontal files have it -- or, for DIOR-R,
``robndbox/{x_left_top,y_left_top,x_right_top,...,y_left_bottom}`` (clockwise from the
left-top corner; ``angle`` is ignored), with ``truncated`` and ``difficult`` flags. Coordinates
are kept as written (no 1-based shift). Zero-width boxes are degenerate (error rows). Image ids
are the file stems (``00001``); XML object ``k`` is line ``k`` and element ``object[k]``. An
unreadable XML file is an error row with the parser's line and its image is not returned.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from samrs.core.geometry import box_polygon
from samrs.core.records import ImageRecord
from samrs.sources.common import (
    ObjectFields,
    ReadContext,
    SourceError,
    child,
    find_leaves,
    index_images,
    label_files,
    natural_key,
    parse_int,
    split_lists,
    xml_number,
)

HBB_DIRS = ("Horizontal Bounding Boxes", "Horizontal_Bounding_Boxes", "HorizontalBoundingBoxes")
OBB_DIRS = ("Oriented Bounding Boxes", "Oriented_Bounding_Boxes", "OrientedBoundingBoxes")
CORNER_FIELDS = (
    "x_left_top", "y_left_top", "x_right_top", "y_right_top",
    "x_right_bottom", "y_right_bottom", "x_left_bottom", "y_left_bottom",
)  # fmt: skip
BOX_FIELDS = ("xmin", "ymin", "xmax", "ymax")
VARIANTS = {
    "hbb": "hbb",
    "horizontal": "hbb",
    "obb": "obb",
    "r": "obb",
    "dior-r": "obb",
    "oriented": "obb",
}


def resolve_version(version: str | None) -> tuple[str, str | None]:
    """``(class table version, annotation set)`` for a ``--version`` value (see module doc)."""
    key = (version or "1.0").strip().lower()
    if key == "1.0":
        return "1.0", None
    if key in VARIANTS:
        return "1.0", VARIANTS[key]
    raise SourceError(
        f"unknown dior version {version!r}; expected 1.0 (automatic), hbb or obb (alias r)"
    )


def _image_dirs(top: Path) -> list[Path]:
    return sorted(
        (p for p in top.iterdir() if p.is_dir() and p.name.lower().startswith("jpegimages")),
        key=lambda p: natural_key(p.name),
    )


def _is_top(folder: Path) -> bool:
    return child(folder, "Annotations") is not None or bool(_image_dirs(folder))


def _folder_split(folder: Path) -> str | None:
    _, _, suffix = folder.name.partition("-")
    return suffix.lower() or None


def _images_of(folder: Path) -> Path:
    """The folder holding the images (descends one level for ``X/X/*.jpg`` archives)."""
    if index_images(folder).by_stem:
        return folder
    subs = [p for p in sorted(folder.iterdir()) if p.is_dir()]
    return subs[0] if len(subs) == 1 else folder


def label_dir(top: Path, variant: str | None) -> Path | None:
    """The annotation folder to read (None: no annotations at all)."""
    ann = child(top, "Annotations")
    if ann is None:
        return None
    hbb, obb = child(ann, *HBB_DIRS), child(ann, *OBB_DIRS)
    if hbb is None and any(p.suffix.lower() == ".xml" for p in ann.iterdir()):
        hbb = ann
    if variant == "hbb" and hbb is None:
        raise SourceError(f"no horizontal-box annotations under {ann}: expected '{HBB_DIRS[0]}'")
    if variant == "obb" and obb is None:
        raise SourceError(f"no oriented-box annotations under {ann}: expected '{OBB_DIRS[0]}'")
    if variant == "hbb":
        return hbb
    return obb or hbb


def object_fields(obj: ET.Element) -> ObjectFields | str:
    """The fields of one ``object`` element, or what is wrong with it."""
    name = (obj.findtext("name") or "").strip()
    box = obj.find("robndbox")
    if box is None:
        box = obj.find("bndbox")
    fields: tuple[str, ...] | None = None
    if box is not None:
        if box.find(CORNER_FIELDS[0]) is not None:
            fields = CORNER_FIELDS
        elif box.find(BOX_FIELDS[0]) is not None:
            fields = BOX_FIELDS
    if not name:
        return "missing <name>: expected a class name"
    if box is None or fields is None:
        return "expected bndbox/{xmin,ymin,xmax,ymax} or robndbox/{x_left_top,...,y_left_bottom}"
    values = [xml_number(box, f) for f in fields]
    bad = [f for f, v in zip(fields, values, strict=True) if v is None]
    if bad:
        return f"missing or non-numeric {box.tag}/{bad[0]}: expected a number"
    numbers = [v for v in values if v is not None]  # all of them (checked above)
    coords = numbers if fields is CORNER_FIELDS else box_polygon(numbers)
    return ObjectFields(
        coords,
        name,
        difficult=parse_int(obj.findtext("difficult")) == 1,
        truncated=parse_int(obj.findtext("truncated")) == 1,
    )


def _read_top(top: Path, ctx: ReadContext, only: Path | None) -> list[ImageRecord]:
    labels_in = label_dir(top, ctx.variant)
    labels = label_files(labels_in, ".xml")
    lists = split_lists(top) or {}
    found: dict[str, tuple[Path, str | None]] = {}
    for folder in [only] if only is not None else _image_dirs(top):
        index = index_images(_images_of(folder))
        ctx.note_duplicates(index, lambda stem: stem)
        for stem, path in index.by_stem.items():
            if stem in found:
                ctx.duplicate_image(path, found[stem][0], stem)
                continue
            found[stem] = (path, _folder_split(folder))
    stems = set(found) if only is not None else set(found) | set(labels)
    images = []
    for stem in sorted(stems, key=natural_key):
        image_path, folder_split = found.get(stem, (None, None))
        split = lists.get(stem, folder_split)
        if not ctx.wants(split):
            continue
        record = ctx.xml_image_record(
            stem,
            split,
            image_path,
            labels.get(stem),
            "object",
            object_fields,
            root_tag="annotation",
            size_tags=("size/width", "size/height"),
            expected_label=labels_in / f"{stem}.xml" if labels_in is not None else None,
            images_in=", ".join(p.name for p in _image_dirs(top)) or "JPEGImages-*",
        )
        if record is not None:
            images.append(record)
    return images


def read(root: Path, ctx: ReadContext) -> list[ImageRecord]:
    """Read DIOR / DIOR-R under ``root`` (see the module docstring)."""
    only = None
    if _is_top(root):
        tops = [root]
    elif root.name.lower().startswith("jpegimages") and _is_top(root.parent):
        tops, only = [root.parent], root
    else:
        tops = [leaf for _, leaf in find_leaves(root, _is_top)]
    if not tops:
        raise SourceError(f"no DIOR Annotations/ or JPEGImages-*/ folder found under {root}")
    images: list[ImageRecord] = []
    for top in tops:
        images.extend(_read_top(top, ctx, only))
    return images
