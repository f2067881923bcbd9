"""``samrs ablate``: compare prompt modes, segmenters and filters against ground truth."""

from __future__ import annotations

import json
from typing import Any

import click

from samrs.cli.options import (
    checkpoint_option,
    class_order_option,
    device_option,
    json_option,
    model_option,
    on_unknown_class_option,
    random_weights_option,
    root_option,
    source_option,
    split_option,
    version_option,
)
from samrs.devices import visible_gpus
from samrs.prompts import PROMPT_MODES as PROMPTS
from samrs.segmenters import SEGMENTERS, needs_weights


def _csv(choices: tuple[str, ...] | None = None, cast: type = str):
    """A click callback splitting ``a,b,c`` (validated against ``choices``)."""

    def parse(ctx: click.Context, param: click.Parameter, value: str | None) -> list[Any] | None:
        if value is None:
            return None
        items = [v.strip() for v in value.split(",") if v.strip()]
        if not items:
            raise click.BadParameter("expected a comma-separated list")
        if choices is not None:
            bad = [v for v in items if v not in choices]
            if bad:
                raise click.BadParameter(
                    f"unknown {', '.join(bad)}; expected some of {', '.join(choices)}"
                )
        try:
            return [cast(v) for v in items]
        except ValueError as exc:
            raise click.BadParameter(f"{value!r}: {exc}") from exc

    return parse


@click.command("ablate", context_settings={"show_default": True})
@source_option()
@root_option
@click.option(
    "--gt",
    required=True,
    type=click.Path(),
    help="Ground truth with masks (COCO JSON, a `samrs synth` folder, an HRSC2016 root).",
)
@click.option("--out", required=True, type=click.Path(), help="Ablation folder.")
@click.option(
    "--prompts",
    default="rhbox",
    callback=_csv(PROMPTS),
    help=f"Comma-separated prompt modes ({', '.join(PROMPTS)}).",
)
@click.option(
    "--segmenters",
    default="box,grabcut",
    callback=_csv(SEGMENTERS),
    help=f"Comma-separated segmenters ({', '.join(SEGMENTERS)}); sam needs --checkpoint.",
)
@click.option(
    "--min-score",
    "min_scores",
    default=None,
    callback=_csv(None, float),
    help="Comma-separated minimum SAM scores to compare as filter settings (one run each).",
)
@version_option
@split_option
@class_order_option
@on_unknown_class_option
@model_option("SAM model.")
@checkpoint_option("SAM / HQ-SAM checkpoint, or builtin:tiny.")
@random_weights_option("SAM with seeded random weights (trials only).")
@click.option("--patch-size", type=int, default=None, help="Cut images into patches.")
@click.option("--gap", type=int, default=200, help="Overlap between patches.")
@click.option("--seed", type=int, default=0, help="Seed for random weights and randomness.")
@click.option("--gpus", type=int, default=None, help="GPUs (default: all visible for sam).")
@click.option("--workers", type=int, default=1, help="CPU worker processes when --gpus 0.")
@device_option(help="Torch device (default: cuda when available).")
@click.option(
    "--band-fraction",
    type=click.FloatRange(min=0.0),
    default=0.02,
    help="Boundary IoU band as a fraction of each object's box diagonal (at least 1 px).",
)
@click.option(
    "--match-iou",
    type=click.FloatRange(min=0.0, max=1.0),
    default=0.5,
    help="Minimum box IoU when matching instances to GT objects by box overlap.",
)
@click.option(
    "--resume/--overwrite",
    default=True,
    help="Keep finished runs with the same configuration, or rebuild every run.",
)
@json_option
@click.pass_context
def command(
    ctx: click.Context,
    gt: str,
    out: str,
    prompts: list[str],
    segmenters: list[str],
    min_scores: list[float] | None,
    gpus: int | None,
    band_fraction: float,
    match_iou: float,
    resume: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Build every combination of segmenter and prompt mode (and --min-score setting) into
    OUT/runs/, score each against the ground truth, and compare them in OUT/ablation.md,
    OUT/ablation.json and OUT/ablation.png -- the SAMRS prompt study on any dataset with masks.

    \b
    Example (no weights needed):
      samrs synth --format dota --out demo
      samrs ablate --source dota --root demo --gt demo --out demo-ablation
    """
    from samrs.analysis.ablate import ablate, format_markdown
    from samrs.build.config import BuildConfig

    if gpus is None:
        gpus = visible_gpus() if any(needs_weights(s) for s in segmenters) else 0
    quiet = as_json or ctx.find_root().params.get("quiet", False)
    try:
        base = BuildConfig(
            out=out, gpus=gpus, resume=resume, overwrite=not resume, progress=not quiet, **options
        )
        result = ablate(
            base,
            gt,
            out,
            segmenters=segmenters,
            prompts=prompts,
            min_scores=min_scores,
            band_fraction=band_fraction,
            match_iou=match_iou,
            log=None if quiet else (lambda line: click.echo(line, err=True)),
        )
    except ValueError as exc:  # invalid run specs (SamrsError: samrs.cli)
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str))
    else:
        click.echo(format_markdown(result))
    if result.failed:
        names = ", ".join(f"{r['name']} ({r['error']})" for r in result.failed)
        raise click.ClickException(f"{len(result.failed)} run(s) failed: {names}")
