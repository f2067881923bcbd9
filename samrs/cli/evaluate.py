"""``samrs evaluate``: score a build's masks against ground-truth masks."""

from __future__ import annotations

import json
from pathlib import Path

import click

from samrs.cli.options import json_option


@click.command("evaluate")
@click.option(
    "--pred",
    "pred",
    type=click.Path(path_type=Path),
    required=True,
    help="Output folder of `samrs build`.",
)
@click.option(
    "--gt",
    "gt",
    type=click.Path(path_type=Path),
    required=True,
    help="Ground truth: a COCO instances JSON (iSAID's, or gt/instances.json of `samrs synth`; "
    "a synth folder works too) or an HRSC2016 root.",
)
@click.option(
    "--band-fraction",
    type=click.FloatRange(min=0.0),
    default=0.02,
    show_default=True,
    help="Boundary IoU band as a fraction of each object's box diagonal (at least 1 px).",
)
@click.option(
    "--match-iou",
    type=click.FloatRange(min=0.0, max=1.0),
    default=0.5,
    show_default=True,
    help="Minimum box IoU when matching instances to GT objects by box overlap.",
)
@click.option(
    "--instances",
    "instances_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write per-instance scores and the unmatched objects to this JSON file.",
)
@json_option
def command(
    pred: Path,
    gt: Path,
    band_fraction: float,
    match_iou: float,
    instances_file: Path | None,
    as_json: bool,
) -> None:
    """Score generated masks against ground-truth masks.

    Each generated instance is matched to the GT object it was prompted from (by object
    identity when the GT carries it, else by box overlap within its class); unmatched GT
    objects are reported apart, not counted as misses. Reports mean IoU, area-weighted IoU,
    boundary IoU and COCO mask AP over kept instances, per class and size, and how the
    rejected instances compare.
    """
    from samrs.analysis.evaluate import evaluate, format_result

    def progress(done: int, total: int) -> None:
        if done % 100 == 0 or done == total:
            click.echo(f"evaluated {done}/{total} images", err=True)

    result = evaluate(
        pred,
        gt,
        band_fraction=band_fraction,
        match_iou=match_iou,
        progress=None if as_json else progress,
    )
    doc = result.to_dict()
    if doc["matched"] == 0 and doc["unmatched_pred"]:
        why = ", ".join(f"{k} {v}" for k, v in doc["matching"]["unmatched_pred_per_reason"].items())
        click.echo(
            f"warning: none of the {doc['unmatched_pred']} generated instances matched a GT "
            f"object ({why}); is {gt} the ground truth of the dataset {pred} was built from?",
            err=True,
        )
    if instances_file is not None:
        instances_file.parent.mkdir(parents=True, exist_ok=True)
        instances_file.write_text(
            json.dumps(result.to_dict(instances=True), indent=2, sort_keys=True) + "\n"
        )
    if as_json:
        click.echo(json.dumps(doc, indent=2, sort_keys=True))
    else:
        click.echo(format_result(doc))
