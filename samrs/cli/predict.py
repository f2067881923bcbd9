"""``samrs predict``: semantic label PNGs for images, from a fine-tuned MeSAM run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import checkpoint_option, device_option, json_option


def inference_options(f):
    """Options shared by ``predict`` and ``evaluate-seg`` (run, weights, device, geometry)."""
    for decorator in reversed(
        [
            click.option("--run", type=click.Path(path_type=Path, file_okay=False),
                         required=True, help="Run folder of `samrs finetune` (or of `samrs "
                         "convert-mesam` for a checkpoint of MeSAM's own code)."),
            click.option("--weights", type=click.Choice(["best", "last"]), default="best",
                         show_default=True,
                         help="best.pt (best validation mIoU; last.pt when there is none) "
                         "or last.pt."),
            checkpoint_option("The base SAM checkpoint, if no longer at the path the run "
                              "recorded.", dir_okay=False),
            device_option("auto", "auto (CUDA when available), cpu, cuda, cuda:N.",
                          show_default=True),
            click.option("--mode", type=click.Choice(["auto", "resize", "slide"]),
                         default="auto", show_default=True,
                         help="resize: whole image at the training size; slide: overlapping "
                         "windows of --tile px; auto: slide for images over 1.5 x tile."),
            click.option("--tile", type=click.IntRange(min=16), default=None,
                         help="Sliding window side in image pixels (default: the median "
                         "training image side)."),
            click.option("--overlap", type=click.IntRange(min=0), default=None,
                         help="Sliding window overlap in pixels (default: tile / 4)."),
        ]
    ):  # fmt: skip
        f = decorator(f)
    return f


@click.command("predict")
@click.option(
    "--images",
    type=click.Path(path_type=Path),
    required=True,
    help="An image file or a folder of images (searched recursively).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Folder for the label PNGs (same relative paths, .png).",
)
@inference_options
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Windows per forward pass.",
)
@json_option
def command(
    run: Path,
    images: Path,
    out: Path,
    weights: str,
    checkpoint: Path | None,
    device: str,
    mode: str,
    tile: int | None,
    overlap: int | None,
    batch_size: int,
    as_json: bool,
) -> None:
    """Write palettized label PNGs (the build's ids and palette, 255 = unlabelled)."""
    from samrs.mesam.infer import Predictor, load_run, predict_images

    progress = None if as_json else (lambda msg: click.echo(msg, err=True))
    try:
        loaded = load_run(run, which=weights, checkpoint=checkpoint, device=device)
        predictor = Predictor(loaded, mode=mode, tile=tile, overlap=overlap, batch_size=batch_size)
        summary = predict_images(predictor, images, out, progress=progress)
    except ValueError as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        click.echo(f"wrote {summary['written']} label PNGs to {out}")
    for failure in summary["failed"]:
        click.echo(f"error: {failure['error']}", err=True)
    if summary["failed"]:
        raise click.exceptions.Exit(1)
