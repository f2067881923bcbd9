"""Option decorators shared by several commands (one definition per option), their choices
taken from the library's registries (:data:`samrs.core.classes.SOURCES`,
:data:`samrs.prompts.PROMPT_MODES`, :data:`samrs.segmenters.SEGMENTERS`,
:data:`samrs.segmenters.MODEL_NAMES`), and the one check of weight options at the command
line (:func:`check_weight_options`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from samrs.core.classes import ORDERS, SOURCES
from samrs.core.imageio import DEFAULT_MAX_IMAGE_PIXELS
from samrs.prompts import PROMPT_MODES
from samrs.segmenters import MODEL_NAMES, SEGMENTERS, WeightsError, check_weights

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


def segmenter_option(help: str = "Mask generator. 'grabcut' and 'box' need no weights.") -> F:
    """``--segmenter``: one of :data:`samrs.segmenters.SEGMENTERS`."""
    return click.option("--segmenter", type=click.Choice(SEGMENTERS), default="sam", help=help)


def prompt_option(help: str) -> F:
    """``--prompt``: one of :data:`samrs.prompts.PROMPT_MODES`."""
    return click.option("--prompt", type=click.Choice(PROMPT_MODES), default="rhbox", help=help)


def model_option(help: str, choices: tuple[str, ...] = MODEL_NAMES) -> F:
    """``--model``: a SAM architecture (default: detected from the checkpoint)."""
    return click.option("--model", type=click.Choice(choices), default=None, help=help)


def checkpoint_option(help: str, must_exist: bool = False, dir_okay: bool = True) -> F:
    """``--checkpoint``: a weights file (never downloaded) or ``builtin:NAME``, given to the
    command as a :class:`~pathlib.Path` (None when absent) that the library takes as it is.

    ``builtin:NAME`` stays ``Path("builtin:NAME")``: the library resolves it where it loads
    the weights and records the name, not the file, in samrs.json. With ``must_exist``, an
    unknown builtin name or a missing file is a usage error at once (see
    :func:`existing_checkpoint`); ``dir_okay=False``: a folder is one too.
    """

    def callback(_ctx: click.Context, _param: click.Parameter, value: Path | None) -> Path | None:
        return existing_checkpoint(value) if must_exist else value

    return click.option(
        "--checkpoint",
        type=click.Path(path_type=Path, dir_okay=dir_okay),
        default=None,
        callback=callback,
        help=help,
    )


def existing_checkpoint(value: Path | None) -> Path | None:
    """A checkpoint file that exists, or a known ``builtin:NAME`` (a usage error otherwise)."""
    if value is None:
        return None
    from samrs.segmenters.checkpoints import CheckpointError, resolve_checkpoint

    try:
        path = resolve_checkpoint(value)
    except CheckpointError as exc:
        raise click.BadParameter(str(exc)) from exc
    if not path.is_file():
        raise click.BadParameter(f"file {str(value)!r} does not exist")
    return value


def random_weights_option(help: str) -> F:
    """``--random-weights``: seeded random weights instead of a checkpoint."""
    return click.option("--random-weights", is_flag=True, help=help)


def device_option(
    default: str | None = None,
    help: str = "Torch device (default: cuda when available, else cpu).",
    show_default: bool = False,
) -> F:
    """``--device``: a torch device name, resolved by :func:`samrs.devices.resolve_device`."""
    return click.option("--device", default=default, show_default=show_default, help=help)


def check_weight_options(
    checkpoint: str | os.PathLike[str] | None, random_weights: bool, segmenter: str = "sam"
) -> None:
    """:func:`samrs.segmenters.check_weights` for options given on the command line: a
    contradiction (or missing weights) is a usage error (exit status 2)."""
    try:
        check_weights(segmenter, checkpoint, random_weights)
    except WeightsError as exc:
        raise click.UsageError(str(exc)) from exc
