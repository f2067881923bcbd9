"""``samrs stats``: statistics, plots and an HTML report of one or more builds."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import json_option

_build_dir = click.Path(exists=True, file_okay=False, path_type=Path)


@click.command("stats")
@click.argument("out", type=_build_dir)
@click.option(
    "--compare",
    multiple=True,
    type=_build_dir,
    help="Another build to show side by side (repeatable); labelled by its folder name.",
)
@click.option(
    "--gallery",
    type=click.IntRange(min=0),
    default=6,
    show_default=True,
    help="Sample images of OUT drawn with their labels in the report, beside the worst "
    "masks of `samrs audit` (0: no gallery, faster).",
)
@json_option
def command(out: Path, compare: tuple[Path, ...], gallery: int, as_json: bool) -> None:
    """Count classes, pixels, mask sizes, objects per image, rejections and errors of OUT.

    Writes OUT/stats/stats.json, PNG plots and a self-contained OUT/stats/report.html. With
    --compare, the other builds appear in the same plots and tables (their folders are only
    read). --json prints OUT's statistics (and those of compared builds under "compare").
    """
    import pyarrow as pa

    from samrs.analysis.stats import build_name, compute_stats, format_stats, write_report

    def progress_for(folder: Path):
        if as_json:
            return None

        def progress(done: int, total: int) -> None:
            click.echo(f"{folder.name}: read {done:,}/{total:,} semantic labels", err=True)

        return progress

    try:
        stats = compute_stats(out, progress=progress_for(out))
        others = [(build_name(o), compute_stats(o, progress=progress_for(o))) for o in compare]
        written = write_report(out, stats, others, gallery=gallery)
    except (pa.ArrowException, OSError) as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    if as_json:
        doc = dict(stats)
        if others:
            doc["compare"] = [{"name": name, "stats": s} for name, s in others]
        click.echo(json.dumps(doc, indent=2, ensure_ascii=False))
        return
    click.echo(format_stats(stats))
    for _name, s in others:
        click.echo("")
        click.echo(format_stats(s))
    click.echo(f"\nreport: {written['report']}\nnumbers: {written['stats']}")
