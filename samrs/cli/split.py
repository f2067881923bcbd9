"""``samrs split``: cut large images into patches with DOTA-format labels."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import click

from samrs.cli.options import (
    class_order_option,
    json_option,
    max_image_pixels_option,
    on_unknown_class_option,
    root_option,
    source_option,
    split_option,
    version_option,
)
from samrs.sources.common import SPLIT_MARKER
from samrs.tiling import TILE_CONVENTIONS


def _rates(ctx: click.Context, param: click.Parameter, value: str) -> tuple[float, ...]:
    try:
        rates = tuple(float(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"expected comma-separated numbers, got {value!r}") from None
    if not rates or any(r <= 0 for r in rates):
        raise click.BadParameter(f"expected positive rates, got {value!r}")
    return rates


def _pad_value(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[int, int, int] | None:
    if value is None:
        return None
    parts = [v.strip() for v in value.split(",")]
    if len(parts) != 3 or not all(v.isdigit() and int(v) <= 255 for v in parts):
        raise click.BadParameter(f"expected R,G,B with values 0-255, got {value!r}")
    return (int(parts[0]), int(parts[1]), int(parts[2]))


def _prepare_out(out: Path, overwrite: bool) -> None:
    if out.exists() and not out.is_dir():
        raise click.ClickException(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise click.ClickException(
                f"--out {out} is not empty (--overwrite replaces a previous `samrs split` output)"
            )
        if not (out / SPLIT_MARKER).is_file():
            raise click.ClickException(
                f"refusing to overwrite {out}: it is not a `samrs split` output (no {SPLIT_MARKER})"
            )
        shutil.rmtree(out)


@click.command("split", context_settings={"show_default": True})
@source_option()
@root_option
@click.option(
    "--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder."
)
@version_option
@split_option
@class_order_option
@on_unknown_class_option
@click.option("--patch-size", type=click.IntRange(min=1), default=1024, help="Patch side (px).")
@click.option("--gap", type=click.IntRange(min=0), default=200, help="Overlap of windows (px).")
@click.option(
    "--rates",
    default="1.0",
    callback=_rates,
    help="Comma-separated scales; the window is patch-size / rate source pixels, resized to "
    "patch-size (e.g. 0.5,1.0,1.5 with --gap 500 for multi-scale).",
)
@click.option(
    "--iof-threshold",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=0.7,
    help="Keep an object in a window when this fraction of its area is inside.",
)
@click.option(
    "--coverage-threshold",
    type=click.FloatRange(0.0, 1.0, max_open=True),
    default=0.6,
    help="Drop windows whose fraction inside the image is at most this (an image keeps its "
    "best covered windows when none passes).",
)
@click.option(
    "--tile-convention",
    type=click.Choice(TILE_CONVENTIONS),
    default="mmrotate",
    help="mmrotate: names <id>__<window>__<x>___<y>, windows mostly outside the image "
    "dropped, objects below --iof-threshold left out (2 marks cut objects). devkit: the "
    "official DOTA_devkit ImgSplit: names <id>__<rate>__<x>___<y>, every patch padded to "
    "full size with black, cut objects clipped to the window, those below the threshold "
    "kept with difficulty 2 (rate 1 only; --coverage-threshold and --clip do not apply).",
)
@click.option(
    "--pad-value",
    default=None,
    callback=_pad_value,
    help="R,G,B fill of window parts outside the image [default: 124,116,104 for mmrotate "
    "(its [104,116,124] is applied to BGR arrays, i.e. this RGB), 0,0,0 for devkit].",
)
@click.option("--clip", is_flag=True, help="Clamp the corners of cut objects to the window.")
@click.option("--overwrite", is_flag=True, help="Replace a previous `samrs split` output.")
@max_image_pixels_option
@json_option
def command(
    source: str,
    root: str,
    out: Path,
    version: str | None,
    split: str | None,
    class_order: str,
    on_unknown_class: str,
    patch_size: int,
    gap: int,
    rates: tuple[float, ...],
    iof_threshold: float,
    coverage_threshold: float,
    tile_convention: str,
    pad_value: tuple[int, int, int] | None,
    clip: bool,
    overwrite: bool,
    max_image_pixels: int,
    as_json: bool,
) -> None:
    """Cut the images of a dataset into patches: OUT/<split>/images/*.png + labelTxt/*.txt.

    Windows, object assignment (iof), padding and patch names follow mmrotate's splitter
    or, with --tile-convention devkit, the official DOTA_devkit's; the output is itself a
    DOTA dataset (`--source dota`) whose label files keep their source's imagesource:/gsd:
    headers. OUT/split.json records the options, source_objects and patch_objects counts,
    objects that fall in no window and unreadable images.
    """
    from samrs.sources import read_dataset
    from samrs.tiling import patch_pad_value, tile_dataset, write_dota_patches

    if gap >= patch_size:
        raise click.UsageError(f"--gap ({gap}) must be smaller than --patch-size ({patch_size})")
    dataset = read_dataset(
        source,
        root,
        version=version,
        split=split,
        class_order=class_order,
        on_unknown_class=on_unknown_class,
    )
    tiles = tile_dataset(
        dataset,
        patch_size,
        gap,
        rates,
        iof_threshold,
        clip,
        coverage_threshold,
        convention=tile_convention,
    )
    if pad_value is None:
        pad_value = patch_pad_value(tile_convention)
    _prepare_out(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    if as_json:
        summary = write_dota_patches(
            tiles,
            out,
            patch_size,
            pad_value=pad_value,
            max_pixels=max_image_pixels,
            convention=tile_convention,
        )
    else:
        with click.progressbar(
            length=len(tiles.images), label="cutting patches", file=sys.stderr
        ) as bar:
            summary = write_dota_patches(
                tiles,
                out,
                patch_size,
                progress=lambda _: bar.update(1),
                pad_value=pad_value,
                max_pixels=max_image_pixels,
                convention=tile_convention,
            )
    report = {
        "source": source,
        "version": dataset.version,
        "root": str(root),
        "images": len(dataset.images),
        "source_objects": dataset.n_objects,
        "patch_size": patch_size,
        "gap": gap,
        "rates": list(rates),
        "iof_threshold": iof_threshold,
        "coverage_threshold": coverage_threshold,
        "tile_convention": tile_convention,
        "pad_value": list(pad_value),
        "clip": clip,
        **summary.to_dict(),
    }
    (out / SPLIT_MARKER).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    if as_json:
        click.echo(json.dumps(report))
        return
    click.echo(
        f"{len(dataset.images)} images, {dataset.n_objects} objects -> {summary.patches} "
        f"patches with {summary.objects} objects (counted in every patch) in {out} "
        f"({', '.join(f'{n} {s}' for s, n in summary.splits.items()) or 'no patches'})"
    )
    if summary.errors:
        click.echo(f"{len(summary.errors)} error records (all in {out / SPLIT_MARKER}):", err=True)
        for error in summary.errors[:10]:
            where = error.source_file + (f":{error.line}" if error.line else "")
            click.echo(f"  [{error.stage}] {where}: {error.message}", err=True)
        if len(summary.errors) > 10:
            click.echo(f"  ... and {len(summary.errors) - 10} more", err=True)
