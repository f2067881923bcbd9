"""``samrs audit``: mask quality report and contact sheets of the worst instances."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import json_option


@click.command("audit")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--worst",
    type=click.IntRange(min=1),
    default=16,
    show_default=True,
    help="Instances per contact sheet (the N lowest values of each metric; copies of an "
    "object in overlapping tiles count once).",
)
@click.option(
    "--kept-only", is_flag=True, help="Audit only kept masks (default: kept and rejected)."
)
@click.option(
    "--bad-rbox-iou",
    type=click.FloatRange(0.0, 1.0),
    default=0.5,
    show_default=True,
    help="Bad-mask rule: rbox_iou below this marks a mask bad (used to suggest thresholds).",
)
@click.option(
    "--max-components",
    type=click.IntRange(min=1),
    default=3,
    show_default=True,
    help="Bad-mask rule: more connected components than this marks a mask bad.",
)
@json_option
def command(
    out: Path,
    worst: int,
    kept_only: bool,
    bad_rbox_iou: float,
    max_components: int,
    as_json: bool,
) -> None:
    """Quality of the masks of OUT: per-class score, stability, rbox_iou and inside_fraction
    distributions, the classes and images that look worst, suggested filter thresholds.

    Writes OUT/audit/worst_<metric>.png (contact sheets), OUT/audit/summary.txt and
    OUT/audit/audit.json. Metrics without values (segmenters without scores) are skipped with
    a note.
    """
    import pyarrow as pa

    from samrs.analysis.audit import BadRule, compute_audit, summary_text, write_audit

    rule = BadRule(min_rbox_iou=bad_rbox_iou, max_components=max_components)
    try:
        audit = compute_audit(out, worst=worst, kept_only=kept_only, rule=rule)
        written = write_audit(
            out, audit, progress=None if as_json else lambda m: click.echo(m, err=True)
        )
    except (pa.ArrowException, OSError) as exc:  # SamrsError: samrs.cli
        raise click.ClickException(str(exc)) from exc
    if as_json:
        click.echo(json.dumps(audit, indent=2, ensure_ascii=False))
        return
    click.echo(summary_text(audit), nl=False)
    click.echo(f"\nwritten: {written['summary']}, {written['json']}")
