"""Option decorators shared by several commands (one definition per option)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from samrs.classes import ORDERS, SOURCES
from samrs.imageio import DEFAULT_MAX_IMAGE_PIXELS

F = Callable[..., Any]


def source_option(required: bool = True, sources: tuple[str, ...] = SOURCES) -> Callable[[F], F]:
    """``--source``: the dataset format."""
    return click.option(
        "--source",
        type=click.Choice(sources),
        required=required,
        help="Dataset format of --root.",
    )


root_option = click.option(
    "--root",
    type=click.Path(path_type=str),
    required=True,
    help="Dataset folder: its top folder (with split folders) or one split's folder.",
)
version_option = click.option(
    "--version", "version", default=None, help="Dataset version (e.g. DOTA 1.0, 1.5, 2.0)."
)
split_option = click.option(
    "--split", default=None, help="Only this split (train, val, test...); default all found."
)
class_order_option = click.option(
    "--class-order",
    type=click.Choice(ORDERS),
    default="official",
    show_default=True,
    help="Class id order: the dataset's official order or the SAMRS papers' order.",
)
on_unknown_class_option = click.option(
    "--on-unknown-class",
    type=click.Choice(["error", "skip"]),
    default="error",
    show_default=True,
    help="An object with a class name not in the table: record an error row for it, or "
    "skip it (still counted in the errors table with stage 'skip').",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON document on stdout and nothing else."
)
max_image_pixels_option = click.option(
    "--max-image-pixels",
    type=click.IntRange(min=0),
    default=DEFAULT_MAX_IMAGE_PIXELS,
    show_default=True,
    metavar="N",
    help="Largest number of pixels one image read may decode, checked from the header before "
    "decoding (a decompression bomb, e.g. a 40 KB JPEG declaring 40000x40000 px, becomes an "
    "error row instead of exhausting memory). Whole image for PNG/JPEG; the window for tiled "
    "GeoTIFF reads. 0: no limit.",
)
