"""``samrs evaluate-seg``: per-class IoU, mIoU and pixel accuracy of a fine-tuned run."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import json_option
from samrs.cli.predict import inference_options


@click.command("evaluate-seg")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Output folder of `samrs build` with the ground-truth labels.",
)
@click.option(
    "--split",
    default="val",
    show_default=True,
    help="Manifest split to score (for --val-fraction runs, val/train are the run's "
    "own seeded subsets).",
)
@inference_options
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=None,
    help="Only the first N images of the split (by image id).",
)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=2,
    show_default=True,
    help="Image-reading worker processes.",
)
@json_option
def command(
    run: Path,
    data: Path,
    split: str,
    weights: str,
    checkpoint: Path | None,
    device: str,
    mode: str,
    tile: int | None,
    overlap: int | None,
    limit: int | None,
    num_workers: int,
    as_json: bool,
) -> None:
    """Score a run's predictions against a build's labels at full resolution.

    Reports per-class IoU and accuracy, mIoU, pixel accuracy and the confusion matrix
    (rows: ground truth, columns: prediction); 255 pixels are ignored.
    """
    from samrs.mesam.infer import evaluate_run, format_report

    progress = None if as_json else (lambda msg: click.echo(msg, err=True))
    try:
        report = evaluate_run(
            run, data, split=split, which=weights,
            checkpoint=checkpoint, device=device, mode=mode,
            tile=tile, overlap=overlap, limit=limit, num_workers=num_workers, progress=progress,
        )  # fmt: skip
    except ValueError as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(report, sort_keys=True) if as_json else format_report(report))
