"""``samrs convert-ros-sam``: ROS-SAM's trained weights as an HQ-SAM checkpoint."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("convert-ros-sam")
@click.argument("folder", type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="The HQ-SAM checkpoint to write (.pth).",
)
def command(folder: Path, out: Path) -> None:
    """Merge a ROS-SAM checkpoint folder (accelerate's save_state of its training:
    model.safetensors = the trained HQ decoder, model_1.safetensors = SAM with LoRA) into one
    HQ-SAM checkpoint; the LoRA updates are folded into the qkv weights.

    \b
    Then, ROS-SAM's inference rules with its network:
      samrs build ... --segmenter sam-hq --hq-token-only --checkpoint OUT --preset ros-sam
    """
    import torch

    from samrs.segmenters.checkpoints import detect_model, ros_sam_state

    if out.exists():
        raise click.ClickException(f"{out}: already exists")
    state = ros_sam_state(folder)
    model, _ = detect_model(state, folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.save(state, tmp)
    tmp.replace(out)
    click.echo(f"wrote {out}: HQ-SAM {model}, {len(state)} tensors (LoRA merged)")
