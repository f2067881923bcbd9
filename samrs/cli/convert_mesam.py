"""``samrs convert-mesam``: a checkpoint of MeSAM's own code as a run folder."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import json_option


@click.command("convert-mesam")
@click.argument("checkpoint", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Output folder of `samrs build` whose classes the checkpoint predicts.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    required=True,
    help="Run folder to write (then: samrs predict / evaluate-seg --run OUT).",
)
@click.option(
    "--classes",
    default=None,
    help="Comma-separated class names of channels 1..K, when the checkpoint predicts a subset "
    "of the build's classes (default: all, in the build's order).",
)
@click.option(
    "--unlabelled-as-background",
    is_flag=True,
    help="Channel 0 was trained on unlabelled (255) pixels as background.",
)
@json_option
def command(
    checkpoint: Path,
    data: Path,
    out: Path,
    classes: str | None,
    unlabelled_as_background: bool,
    as_json: bool,
) -> None:
    """Convert a state dict saved from MeSAM's code (github.com/Magic-lem/MeSAM, optionally in
    SAMed's LoRA wrapper) into a samrs run folder.

    The architecture (SAM size, input size, K, LoRA rank) is read from the tensors; every
    tensor must fit, otherwise nothing is written.
    """
    from samrs.mesam.convert import convert_mesam

    names = [c.strip() for c in classes.split(",") if c.strip()] if classes else None
    try:
        summary = convert_mesam(checkpoint, data, out, names, unlabelled_as_background)
    except ValueError as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
    else:
        click.echo(
            f"wrote {out}: MeSAM {summary['model']} at {summary['image_size']} px, LoRA rank "
            f"{summary['lora_rank']}, classes {', '.join(summary['classes'])}"
        )
