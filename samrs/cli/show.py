"""``samrs show``: render one image of a build with its labels and outlines."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("show")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.argument("image_id")
@click.option(
    "--to",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG file to write (default OUT/show/<IMAGE_ID>.png).",
)
@click.option(
    "--alpha",
    type=click.FloatRange(0.0, 1.0),
    default=0.45,
    show_default=True,
    help="Opacity of the semantic label overlay.",
)
@click.option("--no-rejected", is_flag=True, help="Do not draw rejected instances.")
def command(out: Path, image_id: str, to: Path | None, alpha: float, no_rejected: bool) -> None:
    """Draw IMAGE_ID of build OUT: semantic label overlay in the class palette, instance
    outlines, rotated boxes and class names (rejected instances in red, with their reason).
    Prints the path of the PNG written.
    """
    import pyarrow as pa

    from samrs.analysis.show import show

    try:
        path = show(out, image_id, to, alpha=alpha, rejected=not no_rejected)
    except (pa.ArrowException, OSError) as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    click.echo(str(path))
