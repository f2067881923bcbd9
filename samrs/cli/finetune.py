"""``samrs finetune``: fine-tune SAM on a build output with the MeSAM method."""

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
from samrs.mesam.config import MODELS


def _classes(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(v.strip() for v in value.split(",") if v.strip())


@click.command("finetune")
@click.option(
    "--data",
    type=click.Path(path_type=Path),
    required=True,
    help="Output folder of `samrs build` (manifests + semantic PNGs).",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    required=True,
    help="Run folder: checkpoints, config.json, metrics.csv/json, curves.png.",
)
@model_option(
    "SAM size; default: detected from --checkpoint (vit_b with --random-weights).", MODELS
)
@checkpoint_option("SAM checkpoint (.pth) to start from, or builtin:tiny.", dir_okay=False)
@random_weights_option("Start from random weights (tests and benchmarks only).")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    default=None,
    help="Stop after this many optimizer steps (the schedule ends there).",
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Images per step and per GPU (before --grad-accum).",
)
@click.option(
    "--lr",
    type=click.FloatRange(min=0.0, min_open=True),
    default=0.005,
    show_default=True,
    help="Peak AdamW learning rate.",
)
@click.option("--weight-decay", type=click.FloatRange(min=0.0), default=0.1, show_default=True)
@click.option(
    "--warmup-steps",
    type=click.IntRange(min=0),
    default=250,
    show_default=True,
    help="Linear warmup steps, then poly decay (power 0.9) to the last step.",
)
@click.option(
    "--variant",
    type=click.Choice(["mesam", "samrs-v1"]),
    default="mesam",
    show_default=True,
    help="Network: mesam = MeSAM as published; samrs-v1 = samrs's first network (mixer added "
    "to the attention and zero-initialised, learned multiscale scale, per-image RMS fusion, "
    "GELU); see the README.",
)
@click.option(
    "--lora-rank",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="LoRA rank on q and v of every encoder block (0: no LoRA).",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=16),
    default=512,
    show_default=True,
    help="Training resolution (multiple of 16; the longer image side is resized to it).",
)
@click.option("--ce-weight", type=click.FloatRange(min=0.0), default=0.2, show_default=True)
@click.option("--dice-weight", type=click.FloatRange(min=0.0), default=0.8, show_default=True)
@click.option(
    "--grad-accum",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Micro-batches per optimizer step.",
)
@click.option(
    "--val-every",
    type=click.IntRange(min=1),
    default=None,
    help="Validate (and save) every N optimizer steps; default: every epoch.",
)
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=20,
    show_default=True,
    help="Log a progress line every N optimizer steps.",
)
@click.option(
    "--seed",
    type=int,
    default=0,
    show_default=True,
    help="Seeds data order, augmentation, seeded splits and random weights.",
)
@device_option("auto", "auto (CUDA when available), cpu, cuda, cuda:N.", show_default=True)
@click.option(
    "--num-workers",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Data-loading worker processes.",
)
@click.option(
    "--classes",
    callback=_classes,
    default=None,
    help="Comma-separated class names to train; other classes are ignored (255).",
)
@click.option(
    "--val-fraction",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    default=None,
    help="Hold out this seeded fraction for validation instead of using the source split.",
)
@click.option(
    "--train-split",
    "train_splits",
    multiple=True,
    default=("train",),
    show_default=True,
    help="Manifest split(s) to train on (repeatable).",
)
@click.option(
    "--val-split",
    "val_splits",
    multiple=True,
    default=("val",),
    show_default=True,
    help="Manifest split(s) to validate on (repeatable).",
)
@click.option(
    "--unlabelled-as-background",
    is_flag=True,
    help="Train unlabelled (255) pixels as background channel 0 instead of ignoring them.",
)
@click.option("--no-augment", is_flag=True, help="No random 90-degree rotations and flips.")
@click.option(
    "--resume",
    is_flag=True,
    help="Continue the run in --out from its last checkpoint (same step, optimizer, "
    "schedule; --epochs/--max-steps may be raised).",
)
@click.option(
    "--eval-only", is_flag=True, help="Only evaluate the run in --out on --data's validation split."
)
@json_option
def command(
    data: Path,
    out: Path,
    model: str | None,
    checkpoint: Path | None,
    random_weights: bool,
    classes: tuple[str, ...],
    no_augment: bool,
    eval_only: bool,
    as_json: bool,
    **options: Any,  # TrainConfig's other fields, as Click passes them
) -> None:
    """Fine-tune SAM on a build output with the MeSAM method (LoRA + inception mixers).

    Without prompts: the network predicts K+1 class channels per pixel. Multi-GPU: start it
    with `torchrun --nproc_per_node N --no-python samrs finetune ...`.
    """
    from samrs.mesam.infer import evaluate_run, format_report
    from samrs.mesam.train import TrainConfig, train

    progress = None if as_json else (lambda msg: click.echo(msg, err=True))
    try:
        if eval_only:
            val_splits = tuple(options["val_splits"])
            report = evaluate_run(
                out,
                data,
                split=val_splits[0] if val_splits else "val",
                device=str(options["device"]),
                num_workers=int(options["num_workers"]),
                progress=progress,
            )
            click.echo(json.dumps(report, sort_keys=True) if as_json else format_report(report))
            return
        if checkpoint is not None or random_weights or not options["resume"]:
            check_weight_options(checkpoint, random_weights)  # a resume may take the run's
        if checkpoint is not None:  # fail fast: unreadable file or another SAM size
            from samrs.segmenters.checkpoints import inspect_checkpoint

            model = inspect_checkpoint(checkpoint, model)[0].model
        elif model is None:
            model = "vit_b"
        cfg = TrainConfig(
            data=str(data),
            out=str(out),
            model=model,
            checkpoint=checkpoint,
            random_weights=random_weights,
            classes=classes or None,
            augment=not no_augment,
            **options,
        )
        summary = train(cfg, progress=progress)
    except ValueError as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
