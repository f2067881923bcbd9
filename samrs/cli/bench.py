"""``samrs bench``: throughput of the model alone, the samrs pipeline and the SAMRS loop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from samrs.cli.options import (
    check_weight_options,
    checkpoint_option,
    device_option,
    json_option,
    model_option,
    random_weights_option,
)


@click.command("bench", context_settings={"show_default": True})
@device_option()
@model_option("SAM model  [default: detected from --checkpoint; tiny with random weights]")
@checkpoint_option(
    "SAM weights, or builtin:tiny (default: seeded random weights).",
    must_exist=True,
    dir_okay=False,
)
@random_weights_option("Use seeded random weights (the default without --checkpoint).")
@click.option("--images", type=int, default=16, help="Synthetic images to label.")
@click.option("--objects-per-image", type=int, default=20, help="Boxes per image.")
@click.option("--image-size", type=int, default=1024, help="Side of the square synthetic images.")
@click.option("--batch-size", type=int, default=4, help="Images per encoder call.")
@click.option("--workers", type=int, default=1, help="Pipeline worker processes (CPU).")
@click.option(
    "--writers",
    type=int,
    default=None,
    help="The pipeline's writer processes (samrs build --writers; default as there).",
)
@click.option(
    "--decoders",
    type=int,
    default=None,
    help="The pipeline's decode processes (samrs build --decoders; default as there).",
)
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    help="torch.compile the encoder; compile time is reported apart.",
)
@click.option("--repeats", type=int, default=1, help="Repeat each measurement and keep the best.")
@click.option("--skip-reference", is_flag=True, help="Do not run the (slow) SAMRS reference loop.")
@click.option(
    "--host-cost/--no-host-cost",
    default=True,
    help="With --workers 1, measure host_ms_per_mask (both loops again with the model "
    "replaced by a replay of the same decoder logits; runs even with --skip-reference).",
)
@click.option(
    "--masks",
    type=click.Choice(["model", "objects"]),
    default="model",
    help="model: the decoder's masks. objects (benchmark only): the encoder and decoder run, "
    "then the decoder's logits are replaced by each synthetic object's own ellipse, so "
    "everything after the decoder sees object-sized masks (random weights give masks "
    "covering most of the image). Needs --workers 1.",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False),
    default=None,
    help="Keep the data and outputs here (default: a temporary folder, removed).",
)
@json_option
def command(
    checkpoint: Path | None,
    random_weights: bool,
    compile_model: bool,
    as_json: bool,
    **options: Any,  # the options of run_benchmark, as Click passes them
) -> None:
    """Label the same synthetic images three ways and print images/s, ratios and peak memory.

    \b
    model_only  encoder + decoder on pre-loaded tensors (the ceiling on this device)
    pipeline    samrs build, from files on disk to committed outputs
    reference   the SAMRS loop: per-image set_image, 20 boxes per call, fp32, per-mask RLE

    With --workers 1, host_ms_per_mask (pipeline and reference): both loops run once more
    with the encoder and decoder replaced by a replay of the same decoder logits; that run's
    wall time in ms per mask (everything but the model).
    """
    from samrs.benchmarks.run import run_benchmark

    check_weight_options(checkpoint, random_weights or checkpoint is None)
    if options["masks"] == "objects" and options["workers"] != 1:
        raise click.UsageError("--masks objects needs --workers 1")
    result = run_benchmark(
        checkpoint=checkpoint, random_weights=checkpoint is None, compile=compile_model, **options
    )
    if as_json:
        click.echo(json.dumps(result, indent=2, sort_keys=True))
        return
    click.echo(
        f"device {result['device_name']} ({result['device']}), model {result['model']}, "
        f"{result['dtype']}, {result['images']} images of {result['image_size']} px, "
        f"{result['objects_per_image']} boxes each, {result['masks']} masks"
    )
    for name in ("model_only", "pipeline", "reference"):
        if name in result:
            r = result[name]
            click.echo(f"  {name:<11} {r['images_per_s']:8.2f} images/s  ({r['seconds']:.2f} s)")
    click.echo(f"  pipeline / model_only  {result['pipeline_over_model_only']:.2f}")
    if "host_ms_per_mask_over_reference" in result:
        click.echo(
            f"  host ms per mask: pipeline {result['pipeline']['host_ms_per_mask']:.2f}, "
            f"reference {result['reference']['host_ms_per_mask']:.2f} "
            f"({result['host_ms_per_mask_over_reference']:.2f})"
        )
    if "pipeline_over_reference" in result:
        click.echo(f"  pipeline / reference   {result['pipeline_over_reference']:.2f}")
        agree = result["mask_agreement"]
        click.echo(
            f"  masks vs reference: IoU min {agree['min']:.3f}, p05 {agree['p05']:.3f}, "
            f"median {agree['median']:.3f} over {agree['n']} masks"
        )
    click.echo(
        f"  masks/s {result['masks_per_s']:.1f}, peak host memory {result['peak_host_mb']:.0f} MB"
        + (
            f", peak device memory {result['peak_device_mb']:.0f} MB"
            if "peak_device_mb" in result
            else ""
        )
    )
    if "compile_seconds" in result:
        click.echo(f"  compile time {result['compile_seconds']:.1f} s (not in the numbers above)")
