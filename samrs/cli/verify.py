"""``samrs verify``: check a build's committed shards and final files against their checksums."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import json_option


@click.command("verify")
@click.argument("out", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option(
    "--repair",
    is_flag=True,
    help="Uncommit the damaged shards, so that running the same `samrs build` again rebuilds "
    "exactly those (and rewrites the COCO JSON).",
)
@json_option
def command(out: Path, repair: bool, as_json: bool) -> None:
    """Check every committed shard of OUT (manifest parts, label PNGs, tile images) and the
    COCO JSON against the sizes and sha256 checksums recorded when they were written.

    Exits 1 when something is missing or damaged. `samrs build --resume` checks the parts and
    file sizes by itself and rebuilds damaged shards; `verify` also reads every file.
    """
    from samrs.build.checksums import verify_build
    from samrs.build.lock import BuildLockedError

    try:
        report = verify_build(out, repair=repair)
    except BuildLockedError as exc:
        raise click.ClickException(f"{out}: a build is running ({exc}); repair after it") from exc
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, sort_keys=True))
    else:
        echo = click.echo
        echo(f"{out}: {report.shards} committed shard(s), {len(report.damaged)} damaged")
        for shard, problems in sorted(report.damaged.items()):
            for problem in problems:
                echo(f"  shard {shard}: {problem}")
        for problem in report.final_files:
            echo(f"  {problem}")
        if report.unverifiable:
            echo(f"  {len(report.unverifiable)} shard(s) have no checksum record (older samrs)")
        if not report.ok:
            echo(
                "repaired: run the same `samrs build` command again to rebuild them"
                if report.repaired
                else "run `samrs verify --repair` and then the same `samrs build` command again, "
                "or simply the build with --resume (it rebuilds damaged parts by itself)"
            )
    if not report.ok:
        raise SystemExit(1)
