"""``samrs inspect``: read a dataset and report images, objects, classes and every error."""

from __future__ import annotations

import json
from typing import Any

import click

from samrs.cli.options import (
    class_order_option,
    json_option,
    on_unknown_class_option,
    root_option,
    source_option,
    split_option,
    version_option,
)


def format_summary(summary: dict[str, Any], root: str) -> str:
    """The human-readable report of :func:`samrs.sources.summary.summarize`."""
    splits = ", ".join(f"{split} {n}" for split, n in summary["splits"].items())
    lines = [
        f"{summary['source']} {summary['version']} at {root}",
        f"images:  {summary['images']}"
        + (f" ({splits})" if splits else "")
        + f"; {summary['images_without_objects']} without objects",
        f"objects: {summary['objects']} (truncated {summary['truncated']}, difficult "
        f"{summary['difficult']}, clipped to the image {summary['clipped']})",
        "classes:",
    ]
    width = max((len(name) for name in summary["classes"]), default=0)
    lines += [f"  {name:<{width}}  {n:>8}" for name, n in summary["classes"].items()]
    errors = summary["errors"]
    lines.append(f"errors:  {len(errors)} (objects not read: {summary['objects_in_errors']})")
    for e in errors:
        where = e["file"] + (f":{e['line']}" if e["line"] is not None else "")
        stage = "" if e["stage"] == "read" else f"[{e['stage']}] "
        lines.append(f"  {where}: {stage}{e['message']}")
    return "\n".join(lines)


@click.command(name="inspect")
@source_option()
@root_option
@version_option
@split_option
@class_order_option
@on_unknown_class_option
@json_option
def command(
    source: str,
    root: str,
    version: str | None,
    split: str | None,
    class_order: str,
    on_unknown_class: str,
    as_json: bool,
) -> None:
    """Read a dataset and report images, objects, per-class counts and every error record.

    Problems with single records (malformed lines, unknown classes, missing files) are listed
    and do not change the exit status; a missing or unreadable root exits non-zero.
    """
    from samrs.core.classes import class_table
    from samrs.sources import read_dataset
    from samrs.sources.summary import summarize

    if not as_json:
        click.echo(f"reading {source} from {root} ...", err=True)
    dataset = read_dataset(
        source,
        root,
        version=version,
        split=split,
        class_order=class_order,
        on_unknown_class=on_unknown_class,
    )
    summary = summarize(dataset, class_table(dataset.source, dataset.version, class_order))
    if as_json:
        click.echo(json.dumps({"root": str(root), **summary}, indent=2))
    else:
        click.echo(format_summary(summary, root))
