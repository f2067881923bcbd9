"""``samrs pretrain``: train the ``tiny`` SAM from scratch on synthetic scenes."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import json_option
from samrs.pretrain import PretrainConfig

_D = PretrainConfig()


@click.command("pretrain", context_settings={"show_default": True})
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Checkpoint to write (.pth); its training record goes beside it (.json).",
)
@click.option("--seed", type=int, default=_D.seed, help="Weights, scenes and prompts.")
@click.option("--steps", type=click.IntRange(min=1), default=_D.steps, help="Optimizer steps.")
@click.option(
    "--images-per-step", type=click.IntRange(min=1), default=_D.images_per_step,
    help="Synthetic scenes per step.",
)  # fmt: skip
@click.option(
    "--prompts-per-image", type=click.IntRange(min=1), default=_D.prompts_per_image,
    help="Objects prompted per scene.",
)  # fmt: skip
@click.option("--lr", type=float, default=_D.lr, help="Peak AdamW learning rate.")
@click.option("--threads", type=click.IntRange(min=1), default=_D.threads, help="CPU threads.")
@click.option("--overwrite", is_flag=True, help="Replace --out if it exists.")
@json_option
def command(
    out: Path,
    seed: int,
    steps: int,
    images_per_step: int,
    prompts_per_image: int,
    lr: float,
    threads: int,
    overwrite: bool,
    as_json: bool,
) -> None:
    """Train the tiny SAM (image encoder, prompt encoder, mask decoder) from scratch.

    Scenes are hard synthetic scenes of all four formats rendered in memory (textures,
    shadows, clutter, dense small objects, elongated diagonal objects); prompts are boxes
    (jittered or exact), boxes with a rotated-box mask prompt, and points, as SAM was
    trained. Runs on the CPU, seeded: the same options give the same bytes. With the defaults
    this is how the shipped `--checkpoint builtin:tiny` was made (2,000 steps of 2 scenes
    and 16 prompts each; about 22 minutes on 2 CPU cores).
    """
    from samrs.pretrain import pretrain

    if out.exists() and not overwrite:
        raise click.ClickException(f"{out} exists (--overwrite replaces it)")
    cfg = PretrainConfig(
        seed=seed, steps=steps, images_per_step=images_per_step,
        prompts_per_image=prompts_per_image, lr=lr, threads=threads,
    )  # fmt: skip
    every = max(1, steps // 20)

    def progress(step: int, loss: float) -> None:
        if not as_json and (step % every == 0 or step == steps - 1):
            click.echo(f"step {step + 1}/{steps}: loss {loss:.4f}", err=True)

    try:
        result = pretrain(cfg, out, progress)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps({
            "checkpoint": str(result.checkpoint), "info": str(result.info),
            "sha256": result.sha256, "seconds": round(result.seconds, 1),
            "final_loss": result.final_loss,
        }, sort_keys=True))  # fmt: skip
        return
    click.echo(
        f"wrote {result.checkpoint} (sha256 {result.sha256[:12]}..., final loss "
        f"{result.final_loss:.4f}, {result.seconds:.0f} s) and {result.info}"
    )
