"""``samrs export``: a build as COCO, mmsegmentation, ROS-SAM or GeoJSON data (no SAM run)."""

from __future__ import annotations

import json
import sys
from contextlib import nullcontext
from typing import Any

import click

from samrs.cli.options import json_option
from samrs.outputs.export import (
    EXPORT_FORMATS,
    IMAGE_MODES,
    LEVELS,
    check_target,
    export,
)
from samrs.outputs.geo import GEOMETRIES
from samrs.outputs.metadata import build_class_table, read_build_metadata
from samrs.outputs.select import Selection, count_selected, normalize_classes


@click.command("export")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=str))
@click.option(
    "--format", "fmt", type=click.Choice(EXPORT_FORMATS), required=True, help="Output layout."
)
@click.option("--to", "to", type=click.Path(path_type=str), required=True, help="Folder to write.")
@click.option("--split", "splits", multiple=True, help="Only this split (repeatable).")
@click.option(
    "--classes",
    multiple=True,
    help="Only these classes: names in any spelling or ids, comma-separated or repeated. "
    "mmseg renumbers them 0..K-1 in class-table order.",
)
@click.option("--min-score", type=float, default=None, help="Reject kept masks scoring less.")
@click.option("--min-stability", type=float, default=None, help="Reject less stable masks.")
@click.option(
    "--min-rbox-iou", type=float, default=None, help="Reject masks with a lower IoU to their box."
)
@click.option("--min-area", type=int, default=None, help="Reject masks of fewer pixels.")
@click.option(
    "--include-rejected",
    is_flag=True,
    help="coco/geojson: also write rejected instances, flagged kept=false.",
)
@click.option("--polygons", is_flag=True, help="coco: polygon segmentations instead of RLE.")
@click.option(
    "--images",
    "images",
    type=click.Choice(IMAGE_MODES),
    default="hard",
    show_default=True,
    help="How images are placed: hard link (copy across devices), symlink, copy, or "
    "none (coco only: file_name stays the build's).",
)
@click.option(
    "--geometry",
    type=click.Choice(GEOMETRIES),
    default="mask",
    show_default=True,
    help="geojson: mask outlines or the source rotated boxes.",
)
@click.option("--dst-crs", default=None, help="geojson: reproject into this CRS (e.g. EPSG:4326).")
@click.option(
    "--level",
    type=click.Choice(LEVELS),
    default="tile",
    show_default=True,
    help="coco/geojson: one annotation per instance on its tile, or (source) one per source "
    "object on the full source image, its mask from the tile where the object lies farthest "
    "from a tile edge (ties: the first tile).",
)
@click.option("--overwrite", is_flag=True, help="Replace what an earlier export wrote in --to.")
@json_option
def command(
    out: str,
    fmt: str,
    to: str,
    splits: tuple[str, ...],
    classes: tuple[str, ...],
    min_score: float | None,
    min_stability: float | None,
    min_rbox_iou: float | None,
    min_area: int | None,
    include_rejected: bool,
    polygons: bool,
    images: str,
    geometry: str,
    dst_crs: str | None,
    level: str,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Export build OUT to --to in another layout, from its manifests.

    \b
    coco:    annotations/instances_<split>.json + images/<split>/ (Datumaro's layout).
    mmseg:   img_dir/, ann_dir/, splits/ and samrs_dataset.py (data_root relative to it).
    ros-sam: img/, boxes/, onehotmask/.
    geojson: the instances of geo-referenced images as GeoJSON and GeoParquet, and their
             labels as GeoTIFFs with class names (an error for a build without any).

    Stricter --min-* thresholds reject more instances and repaint the labels from the masks
    stored in the manifest (with the build's overlap policy), without running SAM again.
    """
    if polygons and fmt != "coco":
        raise click.UsageError("--polygons applies to --format coco only")
    if include_rejected and fmt not in ("coco", "geojson"):
        raise click.UsageError("--include-rejected applies to --format coco or geojson only")
    if level != "tile" and fmt not in ("coco", "geojson"):
        raise click.UsageError("--level source applies to --format coco or geojson only")
    if images == "none" and fmt != "coco":
        raise click.UsageError("--images none applies to --format coco only")
    sel = Selection(
        splits=splits or None,
        classes=normalize_classes(classes) or None,
        min_score=min_score,
        min_stability=min_stability,
        min_rbox_iou=min_rbox_iou,
        min_area=min_area,
        include_rejected=include_rejected,
    )
    options: dict[str, Any] = {"overwrite": overwrite}
    if fmt == "coco":
        options.update(polygons=polygons, images=images, level=level)
    elif fmt in ("mmseg", "ros-sam"):
        options["images"] = images
    else:
        options.update(geometry=geometry, dst_crs=dst_crs, level=level)
    try:
        check_target(to, overwrite)
        sel.class_ids(build_class_table(read_build_metadata(out)))  # unknown names fail now
        total = count_selected(out, sel)
        bar = (
            nullcontext(None)
            if as_json
            else click.progressbar(length=total, label=f"export {fmt}", file=sys.stderr)
        )
        with bar as progress:
            counts = export(
                out,
                fmt,
                to,
                sel,
                progress=(lambda _item: progress.update(1)) if progress is not None else None,
                **options,
            )
    except ValueError as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    summary = {"format": fmt, "to": to, **counts}
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        details = ", ".join(f"{k} {v}" for k, v in counts.items() if not isinstance(v, list))
        click.echo(f"exported {fmt} to {to}: {details}")
