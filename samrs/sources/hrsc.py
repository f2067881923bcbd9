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
(angle in radians) becomes the polygon (:func:`samrs.geometry.rbox_polygon`); an object without
``mbox_*`` but with ``box_*`` uses that horizontal box (flag ``hbox_only``). Every object is class
``ship`` (the level-1 class SAMRS uses); the fine class is kept as the flag
``hrsc_class=<Class_ID>`` and the mask colour as ``seg_color=R,G,B`` (absent when the object
has no mask) -- ``samrs evaluate`` matches ground-truth mask pixels by that colour.
``Img_Resolution`` is the gsd. Image ids are the file stems; object ``k`` is line ``k`` and
element ``HRSC_Objects/HRSC_Object[k]``.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from samrs.geometry import box_polygon, rbox_polygon
from samrs.records import ImageRecord, ObjectAnnotation
from samrs.sources.common import (
    SPLIT_RANK,
    ReadContext,
    SourceError,
    child,
    find_leaves,
    index_images,
    natural_key,
    parse_float,
    parse_int,
    split_of,
    xml_number,
    xml_size,
)

MBOX_FIELDS = ("mbox_cx", "mbox_cy", "mbox_w", "mbox_h", "mbox_ang")
BOX_FIELDS = ("box_xmin", "box_ymin", "box_xmax", "box_ymax")


def _is_leaf(folder: Path) -> bool:
    return child(folder, "AllImages", "Annotations") is not None


def seg_color(text: str | None) -> tuple[int, int, int] | None:
    """``R,G,B`` as a colour, or None when empty or malformed."""
    parts = [parse_int(p) for p in (text or "").split(",")]
    if len(parts) != 3 or any(p is None or not 0 <= p <= 255 for p in parts):
        return None
    return (parts[0], parts[1], parts[2])  # type: ignore[return-value]


def split_lists(folders: list[Path]) -> dict[str, str]:
    """Image id -> split from the first ``ImageSets`` folder found among ``folders``."""
    for folder in folders:
        sets = child(folder, "ImageSets")
        if sets is None or not sets.is_dir():
            continue
        sets = child(sets, "Main") or sets
        splits: dict[str, str] = {}
        for name in ("train", "val", "test", "trainval"):
            path = child(sets, f"{name}.txt")
            if path is None:
                continue
            for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
                if line.strip():
                    splits.setdefault(Path(line.split()[0]).stem, name)
        return splits
    return {}


def parse_objects(
    root: ET.Element,
    path: Path,
    ctx: ReadContext,
    *,
    image_id: str,
    width: int | None,
    height: int | None,
) -> list[ObjectAnnotation]:
    """Objects of one parsed HRSC2016 XML file; bad objects become error rows."""
    objects = []
    for k, obj in enumerate(root.findall("HRSC_Objects/HRSC_Object"), start=1):
        element = f"HRSC_Objects/HRSC_Object[{k}]"
        flags: list[str] = []
        mbox = [xml_number(obj, f) for f in MBOX_FIELDS]
        box = [xml_number(obj, f) for f in BOX_FIELDS]
        if all(v is not None for v in mbox):
            coords = rbox_polygon(*mbox)  # type: ignore[arg-type]
        elif all(v is not None for v in box):
            coords, flags = box_polygon(box), ["hbox_only"]  # type: ignore[arg-type]
        else:
            bad = next(f for f, v in zip(MBOX_FIELDS, mbox, strict=True) if v is None)
            ctx.error(
                path,
                k,
                f"{element}: missing or non-numeric {bad}: expected mbox_cx, mbox_cy, mbox_w, "
                "mbox_h, mbox_ang (radians) or box_xmin..box_ymax",
                image_id=image_id,
                n_objects=1,
            )
            continue
        class_id = (obj.findtext("Class_ID") or "").strip()
        if class_id:
            flags.append(f"hrsc_class={class_id}")
        color = seg_color(obj.findtext("seg_color"))
        if color is not None:
            flags.append("seg_color={},{},{}".format(*color))
        made = ctx.make_object(
            coords,
            "ship",
            width=width,
            height=height,
            source_file=path,
            line=k,
            element=element,
            image_id=image_id,
            difficult=parse_int(obj.findtext("difficult")) == 1,
            truncated=parse_int(obj.findtext("truncated")) == 1,
            flags=flags,
        )
        if made is not None:
            objects.append(made)
    return objects


def read(root: Path, ctx: ReadContext) -> list[ImageRecord]:
    """Read HRSC2016 under ``root`` (see the module docstring)."""
    leaves = find_leaves(root, _is_leaf)
    if not leaves:
        raise SourceError(f"no HRSC2016 AllImages/ or Annotations/ folder found under {root}")
    full = [(s, leaf) for s, leaf in leaves if leaf.name.lower() == "fulldataset"]
    leaves = full or leaves
    images: list[ImageRecord] = []
    for named, leaf in leaves:
        named = split_of(root, leaf) if named is None else named
        leaf_split = named.lower() if named and named.lower() in SPLIT_RANK else None
        lists = split_lists([leaf, leaf.parent, root]) if leaf_split is None else {}
        label_dir = child(leaf, "Annotations")
        index = index_images(child(leaf, "AllImages", "Images"))
        ctx.note_duplicates(index, lambda stem: stem)
        labels = (
            {p.stem: p for p in sorted(label_dir.iterdir()) if p.suffix.lower() == ".xml"}
            if label_dir is not None
            else {}
        )
        for stem in sorted(set(index.by_stem) | set(labels), key=natural_key):
            split = lists.get(stem, leaf_split)
            if not ctx.wants(split):
                continue
            image_path, label = index.by_stem.get(stem), labels.get(stem)
            xml = ctx.parse_xml(label, stem) if label is not None else None
            if label is not None and xml is None:
                continue  # unreadable: recorded, image not returned
            if image_path is None:
                assert label is not None and xml is not None
                objects = parse_objects(xml, label, ctx, image_id=stem, width=None, height=None)
                ctx.error(
                    label,
                    None,
                    f"no image for label file (looked for {stem}.* in {leaf / 'AllImages'})",
                    image_id=stem,
                    n_objects=len(objects),
                )
                continue
            stated = xml_size(xml, "Img_SizeWidth", "Img_SizeHeight") if xml is not None else None
            width, height = ctx.size_of(image_path, stem, stated)
            objects, gsd = [], None
            if xml is not None:
                objects = parse_objects(
                    xml,
                    label,  # type: ignore[arg-type]
                    ctx,
                    image_id=stem,
                    width=width,
                    height=height,
                )
                gsd = parse_float(xml.findtext("Img_Resolution"))
                gsd = gsd if gsd is not None and gsd > 0 else None
            elif label_dir is not None:
                ctx.error(
                    image_path,
                    None,
                    f"missing label file: expected {label_dir / (stem + '.xml')}",
                    image_id=stem,
                )
            images.append(
                ImageRecord(
                    image_id=stem,
                    image_path=str(image_path),
                    width=width,
                    height=height,
                    source=ctx.source,
                    version=ctx.version,
                    split=split,
                    gsd=gsd,
                    objects=tuple(objects),
                    annotation_file=str(label) if label is not None else None,
                    source_width=width,
                    source_height=height,
                )
            )
    return images
