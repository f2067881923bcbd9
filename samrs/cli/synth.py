"""``samrs synth``: write a small synthetic dataset in a source's real format, with GT masks."""

from __future__ import annotations

import json

import click

from samrs.cli.options import json_option


@click.command("synth", context_settings={"show_default": True})
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dota", "dior", "fair1m", "hrsc"]),
    required=True,
    help="Source format (layout, file formats and quirks of the real dataset).",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=str),
    required=True,
    help="Folder to create (must be empty or absent).",
)
@click.option("--images", "n_images", type=click.IntRange(min=1), default=8, help="Images.")
@click.option("--seed", type=int, default=0, help="Random seed (same seed, same bytes).")
@click.option(
    "--overwrite",
    is_flag=True,
    help="Replace --out if it holds a previous synthetic dataset (never another folder).",
)
@click.option(
    "--hard",
    is_flag=True,
    help="Harder scenes: textured, lower-contrast objects, shadows, unannotated clutter, rows "
    "of densely packed small objects, elongated diagonal objects (what samrs pretrain trains on).",
)
@json_option
def command(
    fmt: str, out: str, n_images: int, seed: int, overwrite: bool, hard: bool, as_json: bool
) -> None:
    """Write a synthetic FORMAT dataset with ground-truth instance masks in OUT/gt/instances.json.

    Objects are rendered non-rectangular shapes (ellipses, planes, ships, rounded rectangles)
    of several classes and sizes on a textured background; DOTA and FAIR1M include images
    larger than 1024 px, and one image has no objects.
    """
    from samrs.synth import write_synthetic

    try:
        summary = write_synthetic(
            fmt, out, n_images=n_images, seed=seed, overwrite=overwrite, hard=hard
        )
    except FileExistsError as exc:
        hint = "" if overwrite else " (--overwrite replaces a previous synthetic dataset)"
        raise click.ClickException(f"{exc}{hint}") from exc
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(summary.to_dict(), sort_keys=True))
        return
    splits = ", ".join(f"{n} {s}" for s, n in summary.splits.items())
    click.echo(
        f"wrote a synthetic {fmt} {summary.version} dataset to {summary.root}: "
        f"{summary.n_images} images ({splits}; {summary.n_empty} without objects), "
        f"{summary.n_objects} objects in {len(summary.classes)} classes, "
        f"{summary.n_bytes / 1e6:.1f} MB"
    )
    click.echo(f"ground truth: {summary.gt_file}")
