"""Exporters: a build (its manifests, labels and images) to other tools' layouts, without SAM.

Formats (``samrs export OUT --format F --to DIR``):

- ``coco``: ``annotations/instances_<split>.json`` plus the images under
  ``images/<split>/`` (``file_name`` relative to that folder; Datumaro's layout), see
  :mod:`samrs.outputs.coco`.
- ``mmseg``: ``img_dir/<split>/``, ``ann_dir/<split>/<name>.png`` (index PNGs, 255 =
  ignore), ``splits/<split>.txt`` (names without suffix), ``samrs_mmseg.json`` (classes,
  palette, mapping to the build's class ids) and ``samrs_dataset.py`` (a ready
  mmsegmentation dataset config snippet).
- ``ros-sam``: ``img/<name>.png``, ``boxes/<name>.npy`` float32 (N, 4) ``xyxy`` (the
  objects' horizontal boxes, the prompts), ``onehotmask/<name>.npy`` uint8 (N, H, W) 0/255;
  kept instances only; images without a kept instance are left out (counted).
- ``geojson``: ``instances.geojson`` and ``semantic/<name>.tif`` GeoTIFF labels for the
  geo-referenced images (see :mod:`samrs.outputs.geo`).

A :class:`~samrs.outputs.select.Selection` picks splits, classes and stricter quality
thresholds; labels are then repainted from the masks in the manifest with the build's
overlap policy and background flag. ``<name>`` is the image id with path separators replaced
by ``__``; images without a split go to ``all``. Images with ``status = error`` are not
exported (they are in the errors table).
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from samrs import __version__
from samrs.core import rle
from samrs.core.classes import UNLABELLED, ClassTable
from samrs.core.imageio import DEFAULT_MAX_IMAGE_PIXELS, image_size, read_image, write_png
from samrs.errors import SamrsError
from samrs.outputs.coco import write_coco
from samrs.outputs.geo import (
    instances_to_geojson,
    is_georeferenced,
    write_category_names,
    write_semantic_geotiff,
)
from samrs.outputs.manifest import read_table
from samrs.outputs.metadata import build_class_table, build_config, read_build_metadata
from samrs.outputs.select import ImageItem, Selection, iter_build
from samrs.outputs.semantic import (
    BACKGROUND_COLOR,
    paint_instances,
    semantic_class_names,
    semantic_palette,
    write_semantic_png,
)

EXPORT_FORMATS = ("coco", "mmseg", "ros-sam", "geojson")
IMAGE_MODES = ("hard", "symlink", "copy", "none")
"""How exported images are placed: hard link (copy when linking fails), symbolic link
(absolute), copy, or not at all (COCO only: ``file_name`` stays the manifest's)."""

NO_SPLIT = "all"

LEVELS = ("tile", "source")
"""COCO export levels: one annotation per instance on its tile, or per source object on its
source image (:mod:`samrs.outputs.objects`)."""

# What each format writes inside DIR: removed first with ``overwrite``; nothing else is.
MANAGED = {
    "coco": ("annotations", "images"),
    "mmseg": ("img_dir", "ann_dir", "splits", "samrs_mmseg.json", "samrs_dataset.py"),
    "ros-sam": ("img", "boxes", "onehotmask"),
    "geojson": ("instances.geojson", "instances.parquet", "semantic"),
}

Progress = Callable[[ImageItem], None]


class ExportError(SamrsError):
    """An export that cannot proceed (existing output, missing image file...)."""


def safe_name(image_id: str) -> str:
    """File name stem of an image id (path separators replaced by ``__``)."""
    return re.sub(r"[/\\]", "__", image_id)


def split_name(image: dict[str, Any]) -> str:
    """Folder name of an image's split (``all`` when the image has none)."""
    return image["split"] or NO_SPLIT


@dataclass
class BuildView:
    """What exporters need from a build: folder, metadata, class table, painting options."""

    out: Path
    meta: dict[str, Any]
    table: ClassTable
    overlap: str
    background: bool
    on_reject: str | None
    root: Path | None
    max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS
    """Pixel limit of image reads: the build's ``max_image_pixels`` (it read these images)."""

    @classmethod
    def open(cls, out: str | Path) -> BuildView:
        meta = read_build_metadata(out)
        config = build_config(meta)
        source = meta.get("source")
        root = config.get("root") or (source.get("root") if isinstance(source, dict) else None)
        return cls(
            out=Path(out),
            meta=meta,
            table=build_class_table(meta),
            overlap=str(config.get("overlap", "small-on-top")),
            background=bool(config.get("background", False)),
            on_reject=config.get("on_reject"),
            root=Path(root) if root else None,
            max_pixels=config.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS),
        )

    def items(self, sel: Selection) -> Any:
        return iter_build(self.out, sel, class_table=self.table, on_reject=self.on_reject)

    def image_path(self, image: dict[str, Any]) -> Path:
        """The pixels of an images row: ``file_name`` if absolute, else under OUT, else
        under the build's source root.

        Raises:
            ExportError: none of these exists (the message names the image and the paths).
        """
        name = Path(image["file_name"])
        candidates = [name] if name.is_absolute() else [self.out / name]
        if not name.is_absolute() and self.root is not None:
            candidates.append(self.root / name)
        for path in candidates:
            if path.is_file():
                return path
        tried = ", ".join(str(p) for p in candidates)
        raise ExportError(f"image {image['image_id']!r}: file not found (tried {tried})")

    def needs_crop(self, image: dict[str, Any], path: Path) -> bool:
        """Whether ``path`` is the whole source image of a windowed row (cut the window)."""
        if image["tile_window"] is None:
            return False
        return image_size(path) != (int(image["width"]), int(image["height"]))

    def label(
        self, item: ImageItem, class_map: dict[int, int] | None, background: bool | None = None
    ) -> np.ndarray:
        """Repaint an image's label from the kept masks in the manifest.

        Args:
            item: the image with its (re-thresholded) instances.
            class_map: build class id -> exported id; None keeps the ids. Pixels whose
                owner (under the build's overlap policy, among all kept instances) is of an
                unmapped class become 255: object pixels are never relabelled background,
                nor given to an object they lie under.
            background: override the build's background flag.
        """
        background = self.background if background is None else background
        label = paint_instances(
            item.height,
            item.width,
            item.instances,
            self.overlap,
            background,
            rejected_polygons=item.rejected_polygons,
        )
        if class_map is None:
            return label
        shift = 1 if background else 0
        lut = np.full(256, UNLABELLED, dtype=np.uint8)
        if background:
            lut[0] = 0
        for cid, new in class_map.items():
            lut[cid + shift] = new + shift
        return lut[label]


def place_file(src: Path, dst: Path, mode: str) -> None:
    """Put ``src`` at ``dst``: ``hard`` link (copy across devices), ``symlink``, ``copy``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    if mode == "hard":
        try:
            os.link(src, dst)
            return
        except OSError:
            mode = "copy"
    if mode == "symlink":
        dst.symlink_to(src.resolve())
    elif mode == "copy":
        shutil.copyfile(src, dst)
    else:
        raise ValueError(f"unknown image mode {mode!r}; expected one of {IMAGE_MODES}")


def check_target(to: str | Path, overwrite: bool) -> None:
    """Raise :class:`ExportError` when ``to`` is a file, or a non-empty folder without
    ``overwrite``."""
    to = Path(to)
    if to.exists() and not to.is_dir():
        raise ExportError(f"{to} exists and is not a folder")
    if to.is_dir() and any(to.iterdir()) and not overwrite:
        raise ExportError(f"{to} exists and is not empty; use --overwrite to replace it")


def prepare_dir(to: Path, fmt: str, overwrite: bool) -> None:
    """Create DIR; refuse a non-empty one unless ``overwrite`` (then clear what ``fmt`` writes)."""
    check_target(to, overwrite)
    if to.is_dir() and any(to.iterdir()):
        for name in MANAGED[fmt]:
            path = to / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    to.mkdir(parents=True, exist_ok=True)


def _place_image(view: BuildView, item: ImageItem, dst_stem: Path, mode: str) -> Path:
    """Export an image's pixels as ``dst_stem`` + suffix; a window is cut and written as PNG."""
    src = view.image_path(item.image)
    if view.needs_crop(item.image, src):
        dst = dst_stem.with_suffix(".png")
        write_png(
            dst, read_image(src, tuple(item.image["tile_window"]), max_pixels=view.max_pixels)
        )
        return dst
    dst = dst_stem.with_name(dst_stem.name + src.suffix.lower())
    place_file(src, dst, mode)
    return dst


def _class_map(view: BuildView, sel: Selection) -> dict[int, int] | None:
    ids = sel.class_ids(view.table)
    return None if ids is None else {cid: new for new, cid in enumerate(ids)}


def _n_kept(item: ImageItem, class_map: dict[int, int] | None) -> int:
    """Kept instances of the selected classes."""
    return sum(
        1 for r in item.instances if r["kept"] and (not class_map or r["class_id"] in class_map)
    )


def export_mmseg(
    out: str | Path,
    to: str | Path,
    sel: Selection | None = None,
    *,
    images: str = "hard",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export a build as an mmsegmentation dataset (see the module docstring).

    Labels are copied from ``OUT/semantic`` when neither thresholds nor a class subset are
    given; otherwise repainted. With a class subset the exported ids are contiguous
    ``0..K'-1`` in class-table order (``samrs_mmseg.json`` maps them back) and the pixels
    other classes' objects own are 255 (ignored; never background, and not given to a
    selected object they cover). With the build's ``background`` option class 0 is
    ``background``.
    """
    if images == "none":
        raise ExportError("mmseg needs the images: choose --images hard, symlink or copy")
    sel = sel or Selection()
    view = BuildView.open(out)
    to = Path(to)
    prepare_dir(to, "mmseg", overwrite)
    class_map = _class_map(view, sel)
    repaint = sel.rethresholds or class_map is not None
    ids = list(range(len(view.table))) if class_map is None else list(class_map)
    palette = semantic_palette([view.table.palette[i] for i in ids], view.background)
    names = [view.table.names[i] for i in ids]
    colors = [list(view.table.palette[i]) for i in ids]
    if view.background:
        names, colors = ["background", *names], [list(BACKGROUND_COLOR), *colors]
    split_names: dict[str, list[str]] = {}
    suffixes: dict[str, set[str]] = {}
    counts = {"images": 0, "kept": 0, "repainted": 0}
    # labels are painted from the kept instances of every class (see BuildView.label)
    for item in view.items(replace(sel, classes=None)):
        split = split_name(item.image)
        name = safe_name(item.image["image_id"])
        img = _place_image(view, item, to / "img_dir" / split / name, images)
        ann = to / "ann_dir" / split / f"{name}.png"
        ann.parent.mkdir(parents=True, exist_ok=True)
        semantic = item.image["semantic_file"]
        if not repaint and semantic and (view.out / semantic).is_file():
            place_file(view.out / semantic, ann, "copy")
        else:
            write_semantic_png(ann, view.label(item, class_map), palette)
            counts["repainted"] += 1
        split_names.setdefault(split, []).append(name)
        suffixes.setdefault(split, set()).add(img.suffix)
        counts["images"] += 1
        counts["kept"] += _n_kept(item, class_map)
        if progress is not None:
            progress(item)
    (to / "splits").mkdir(exist_ok=True)
    for split, lines in split_names.items():
        (to / "splits" / f"{split}.txt").write_text("".join(f"{n}\n" for n in lines))
    img_suffix = {s: sorted(v)[0] if len(v) == 1 else sorted(v) for s, v in suffixes.items()}
    info = {
        "samrs_version": __version__,
        "format": "mmseg",
        "classes": names,
        "palette": colors,
        "ignore_index": 255,
        "reduce_zero_label": False,
        "background": view.background,
        "samrs_class_ids": [None, *ids] if view.background else ids,
        "splits": {s: len(v) for s, v in sorted(split_names.items())},
        "img_suffix": dict(sorted(img_suffix.items())),
        "seg_map_suffix": ".png",
        "selection": _selection_dict(sel),
    }
    (to / "samrs_mmseg.json").write_text(
        json.dumps(info, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    (to / "samrs_dataset.py").write_text(_mmseg_config(names, colors, img_suffix))
    counts["splits"] = len(split_names)
    return counts


def _selection_dict(sel: Selection) -> dict[str, Any]:
    return {
        "splits": list(sel.splits) if sel.splits is not None else None,
        "classes": list(sel.classes) if sel.classes is not None else None,
        "min_score": sel.min_score,
        "min_stability": sel.min_stability,
        "min_rbox_iou": sel.min_rbox_iou,
        "min_area": sel.min_area,
    }


MMSEG_DATA_ROOT = "{{ fileDirname }}"
"""``data_root`` of the mmseg config: mmengine's predefined variable for the config's folder."""


def _mmseg_config(names: list[str], colors: list[list[int]], img_suffix: dict[str, Any]) -> str:
    lines = [
        "# mmsegmentation (1.x) dataset settings written by `samrs export --format mmseg`.",
        "# Use with `_base_ = ['<this file>']`; add your pipelines to the datasets.",
        "# data_root is this file's folder (mmengine replaces {{ fileDirname }} when it loads",
        "# the file), so the export can be moved; set it yourself when you copy these lines.",
        "# metainfo holds every class with its colour: BaseSegDataset has no classes of its own,",
        "# so to train on a subset re-export with --classes instead of editing the lists.",
        "dataset_type = 'BaseSegDataset'",
        f"data_root = {MMSEG_DATA_ROOT!r}",
        f"metainfo = dict(classes={tuple(names)!r}, palette={colors!r})",
    ]
    for split, suffix in sorted(img_suffix.items()):
        var = re.sub(r"\W", "_", split)
        if isinstance(suffix, list):
            lines.append(f"# WARNING: split {split!r} mixes image suffixes {suffix}")
            suffix = suffix[0]
        lines.append(
            f"{var}_dataset = dict(type=dataset_type, data_root=data_root, metainfo=metainfo, "
            f"data_prefix=dict(img_path='img_dir/{split}', seg_map_path='ann_dir/{split}'), "
            f"ann_file='splits/{split}.txt', img_suffix={suffix!r}, seg_map_suffix='.png', "
            "reduce_zero_label=False, ignore_index=255)"
        )
    return "\n".join(lines) + "\n"


def export_coco(
    out: str | Path,
    to: str | Path,
    sel: Selection | None = None,
    *,
    polygons: bool = False,
    images: str = "hard",
    overwrite: bool = False,
    progress: Progress | None = None,
    level: str = "tile",
) -> dict[str, Any]:
    """Export a build as COCO: one ``annotations/instances_<split>.json`` per split.

    With ``images`` other than ``none`` the images go to ``images/<split>/<name><suffix>``
    and ``file_name`` is that name (Datumaro's ``coco`` layout, which torchvision's
    ``CocoDetection(root=DIR/images/<split>, annFile=...)`` also reads); with ``none``
    ``file_name`` is the manifest's. ``level`` ``tile`` (default) writes one annotation per
    instance on its tile; ``source`` one per source object on the full source image
    (:func:`export_coco_source`).
    """
    if level == "source":
        return export_coco_source(
            out, to, sel, polygons=polygons, images=images, overwrite=overwrite, progress=progress
        )
    if level != "tile":
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    sel = sel or Selection()
    view = BuildView.open(out)
    to = Path(to)
    prepare_dir(to, "coco", overwrite)
    splits: list[str | None] = []
    for image in read_table(
        view.out, "images", columns=["image_id", "split", "status"]
    ).to_pylist():
        if sel.wants_image(image) and image["split"] not in splits:
            splits.append(image["split"])

    def place(item: ImageItem) -> str:
        """Export the image (called once per image, in order) and return its file name."""
        stem = to / "images" / split_name(item.image) / safe_name(item.image["image_id"])
        return _place_image(view, item, stem, images).name

    totals: dict[str, Any] = {"images": 0, "annotations": 0, "kept": 0, "files": []}
    for split in splits:
        path = to / "annotations" / f"instances_{split or NO_SPLIT}.json"
        counts = write_coco(
            view.out,
            path,
            include_rejected=sel.include_rejected,
            polygons=polygons,
            splits=(split,),
            classes=sel.classes,
            min_score=sel.min_score,
            min_stability=sel.min_stability,
            min_rbox_iou=sel.min_rbox_iou,
            min_area=sel.min_area,
            image_ids=sel.image_ids,
            file_name=place if images != "none" else None,
            progress=progress,
        )
        for key in ("images", "annotations", "kept"):
            totals[key] += counts[key]
        totals["files"].append(path.relative_to(to).as_posix())
    return totals


def export_coco_source(
    out: str | Path,
    to: str | Path,
    sel: Selection | None = None,
    *,
    polygons: bool = False,
    images: str = "hard",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export a build as COCO at the source-image level (``--level source``).

    One annotation per source object with a selected instance, on the full source image:
    its mask is the one of the tile where it lies farthest from a tile edge, pasted into
    source coordinates (the rule: :mod:`samrs.outputs.objects`). Annotations keep the chosen
    instance's fields and id, with ``samrs_source_object_index``, ``samrs_tile_image_id``,
    ``samrs_edge_distance`` (null when the tile is the whole image) and ``samrs_tiles`` (how
    many tiles kept the object). Images are the source images (``samrs_image_id`` is the
    ``source_image_id``), placed under ``images/<split>/`` like the tile level.
    """
    from samrs.outputs.coco import _prepare, coco_annotation, dumps, mask_polygons
    from samrs.outputs.objects import iter_source_images

    sel = sel or Selection()
    view = BuildView.open(out)
    to = Path(to)
    prepare_dir(to, "coco", overwrite)
    head, _, _ = _prepare(view.out, sel)
    head["info"]["samrs_level"] = "source"
    docs: dict[str, tuple[list[str], list[str]]] = {}
    totals: dict[str, Any] = {"images": 0, "annotations": 0, "kept": 0, "files": []}
    sources = iter_source_images(view.out, sel, class_table=view.table, on_reject=view.on_reject)
    for index, img in enumerate(sources, start=1):
        split = img.split or NO_SPLIT
        file_name = img.file
        if images != "none":
            src = Path(img.file)
            if not src.is_file():
                raise ExportError(f"source image {img.source_image_id!r}: {src} not found")
            dst = to / "images" / split / f"{safe_name(img.source_image_id)}{src.suffix}"
            place_file(src, dst, images)
            file_name = dst.name
        entry = {
            "id": index,
            "file_name": file_name,
            "width": img.width,
            "height": img.height,
            "samrs_image_id": img.source_image_id,
            "split": img.split,
        }
        image_docs, ann_docs = docs.setdefault(split, ([], []))
        image_docs.append(dumps(entry))
        for obj in img.objects:
            chosen = obj.chosen
            ann = coco_annotation(chosen.item, chosen.row)
            segmentation: Any = rle.encode_crop(chosen.mask)
            if polygons and chosen.mask.mask.size:
                off = np.array([chosen.mask.x, chosen.mask.y], dtype=np.float64)
                polys = [
                    [float(v) for v in (np.asarray(p).reshape(-1, 2) + off).reshape(-1)]
                    for p in mask_polygons(chosen.mask.mask)
                ]
                segmentation = polys or segmentation
            ann.update(
                image_id=index,
                segmentation=segmentation,
                area=chosen.mask.area,
                bbox=[float(v) for v in chosen.mask.bbox],
                polygon=obj.source_polygon(),
                samrs_source_object_index=obj.index,
                samrs_tile_image_id=chosen.item.image["image_id"],
                samrs_edge_distance=None
                if math.isinf(chosen.distance)
                else round(chosen.distance, 6),
                samrs_tiles=len(obj.copies),
            )
            ann_docs.append(dumps(ann))
            totals["annotations"] += 1
            totals["kept"] += int(bool(chosen.row["kept"]))
        totals["images"] += 1
        if progress is not None:
            for item in img.tiles:
                progress(item)
    (to / "annotations").mkdir(parents=True, exist_ok=True)
    for split, (image_docs, ann_docs) in docs.items():
        path = to / "annotations" / f"instances_{split}.json"
        text = (
            dumps(head)[:-1]
            + ',"images":['
            + ",".join(image_docs)
            + '],"annotations":['
            + ",".join(ann_docs)
            + "]}\n"
        )
        path.write_text(text, encoding="utf-8")
        totals["files"].append(path.relative_to(to).as_posix())
    return totals


def export_ros_sam(
    out: str | Path,
    to: str | Path,
    sel: Selection | None = None,
    *,
    images: str = "hard",
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Export kept instances in the ROS-SAM training layout (see the module docstring).

    Images are written as PNG (PNG sources are linked/copied as they are).
    """
    sel = sel or Selection()
    view = BuildView.open(out)
    to = Path(to)
    prepare_dir(to, "ros-sam", overwrite)
    for sub in MANAGED["ros-sam"]:
        (to / sub).mkdir(exist_ok=True)
    counts = {"images": 0, "instances": 0, "skipped_without_kept": 0}
    for item in view.items(sel):
        rows = [r for r in item.instances if r["kept"]]
        if progress is not None:
            progress(item)
        if not rows:
            counts["skipped_without_kept"] += 1
            continue
        name = safe_name(item.image["image_id"])
        src = view.image_path(item.image)
        if (
            src.suffix.lower() == ".png"
            and not view.needs_crop(item.image, src)
            and images != "none"
        ):
            place_file(src, to / "img" / f"{name}.png", images)
        else:
            window = tuple(item.image["tile_window"]) if view.needs_crop(item.image, src) else None
            pixels = read_image(src, window, max_pixels=view.max_pixels)
            write_png(to / "img" / f"{name}.png", pixels)
        boxes = np.asarray([r["hbox"] for r in rows], dtype=np.float32).reshape(-1, 4)
        masks = np.stack([rle.decode(item.rle(r)) for r in rows]).astype(np.uint8) * 255
        np.save(to / "boxes" / f"{name}.npy", boxes)
        np.save(to / "onehotmask" / f"{name}.npy", masks)
        counts["images"] += 1
        counts["instances"] += len(rows)
    return counts


def export_geojson(
    out: str | Path,
    to: str | Path,
    sel: Selection | None = None,
    *,
    geometry: str = "mask",
    dst_crs: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    level: str = "tile",
) -> dict[str, Any]:
    """Export the geo-referenced images: ``instances.geojson``, the same features as
    GeoParquet (``instances.parquet``) and GeoTIFF labels. ``level`` ``source``: one feature
    per source object instead (:func:`export_geojson_source`)."""
    if level == "source":
        return export_geojson_source(
            out, to, sel, geometry=geometry, dst_crs=dst_crs, overwrite=overwrite, progress=progress
        )
    if level != "tile":
        raise ValueError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    sel = sel or Selection()
    view = BuildView.open(out)
    to = Path(to)
    images = read_table(view.out, "images", columns=["crs", "transform"]).to_pylist()
    if not any(is_georeferenced(image) for image in images):
        raise ExportError(
            f"{view.out}: no image of this build is geo-referenced (images.crs and "
            "images.transform are null), so there is nothing to write as GeoJSON/GeoTIFF; "
            "build from GeoTIFF sources (e.g. `samrs synth --format fair1m`), or export "
            "plain images with --format coco or mmseg"
        )
    prepare_dir(to, "geojson", overwrite)
    counts = instances_to_geojson(
        view.out,
        to / "instances.geojson",
        selection=sel,
        geometry=geometry,
        dst_crs=dst_crs,
        geoparquet=to / "instances.parquet",
    )
    class_map = _class_map(view, sel)
    colors = view.table.palette if class_map is None else [view.table.palette[c] for c in class_map]
    palette = semantic_palette(list(colors), view.background)
    ids = range(len(view.table)) if class_map is None else list(class_map)
    names = semantic_class_names([view.table.names[i] for i in ids], view.background)
    counts["geotiffs"] = 0
    for item in view.items(replace(sel, classes=None)):  # labels: see BuildView.label
        if progress is not None:
            progress(item)
        if not is_georeferenced(item.image):
            continue
        path = to / "semantic" / f"{safe_name(item.image['image_id'])}.tif"
        path.parent.mkdir(parents=True, exist_ok=True)
        label = view.label(item, class_map)
        write_semantic_geotiff(
            path, label, item.image["crs"], item.image["transform"], palette, names
        )
        write_category_names(path, names)
        counts["geotiffs"] += 1
    return counts


def export_geojson_source(
    out: str | Path,
    to: str | Path,
    sel: Selection | None = None,
    *,
    geometry: str = "mask",
    dst_crs: str | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """``instances.geojson`` with one feature per source object of the geo-referenced
    images: the feature of the instance the source-level rule picks
    (:mod:`samrs.outputs.objects`; world coordinates do not depend on the tile), with
    ``source_image_id``, ``source_object_index``, ``tile_image_id`` and ``tiles`` added to its
    properties. No GeoTIFF labels (those are per tile).
    """
    from samrs.outputs.geo import instance_feature
    from samrs.outputs.objects import iter_source_images

    sel = sel or Selection()
    view = BuildView.open(out)
    to = Path(to)
    prepare_dir(to, "geojson", overwrite)
    features: list[str] = []
    crss: set[str] = set()
    counts = {"features": 0, "images": 0, "plain_images": 0}
    sources = iter_source_images(view.out, sel, class_table=view.table, on_reject=view.on_reject)
    for img in sources:
        if progress is not None:
            for item in img.tiles:
                progress(item)
        if not all(is_georeferenced(item.image) for item in img.tiles):
            counts["plain_images"] += 1
            continue
        counts["images"] += 1
        crss.update(str(item.image["crs"]) for item in img.tiles)
        if dst_crs is None and len(crss) > 1:
            raise ValueError(
                f"images are in several CRSs ({', '.join(sorted(crss))}); choose one (dst_crs)"
            )
        for obj in img.objects:
            chosen = obj.chosen
            feat = instance_feature(chosen.item, chosen.row, geometry, dst_crs)
            if feat is None:
                continue
            feat["properties"].update(
                source_image_id=img.source_image_id,
                source_object_index=obj.index,
                tile_image_id=chosen.item.image["image_id"],
                tiles=len(obj.copies),
            )
            features.append(json.dumps(feat, separators=(",", ":"), ensure_ascii=False))
    counts["features"] = len(features)
    crs = dst_crs or (sorted(crss)[0] if crss else None)
    head: dict[str, Any] = {"type": "FeatureCollection"}
    if crs is not None:
        head["crs"] = {"type": "name", "properties": {"name": crs}}
    text = json.dumps(head, separators=(",", ":"), ensure_ascii=False)[:-1]
    (to / "instances.geojson").write_text(
        text + ',"features":[' + ",".join(features) + "]}\n", encoding="utf-8"
    )
    return counts


def export(
    out: str | Path, fmt: str, to: str | Path, sel: Selection | None = None, **options: Any
) -> dict[str, Any]:
    """Export a build in one of :data:`EXPORT_FORMATS` (options go to that exporter)."""
    exporters: dict[str, Callable[..., dict[str, Any]]] = {
        "coco": export_coco,
        "mmseg": export_mmseg,
        "ros-sam": export_ros_sam,
        "geojson": export_geojson,
    }
    if fmt not in exporters:
        raise ValueError(f"unknown export format {fmt!r}; expected one of {EXPORT_FORMATS}")
    return exporters[fmt](out, to, sel, **options)
