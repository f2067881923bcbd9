"""``samrs build``: generate a segmentation dataset by prompting a segmenter with every box."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from samrs.build.config import PRESETS, BuildConfig, preset_options
from samrs.cli.options import (
    checkpoint_option,
    class_order_option,
    device_option,
    json_option,
    max_image_pixels_option,
    model_option,
    on_unknown_class_option,
    prompt_option,
    random_weights_option,
    segmenter_option,
    split_option,
    version_option,
)
from samrs.core.classes import SOURCES
from samrs.devices import visible_gpus
from samrs.tiling import TILE_CONVENTIONS


def load_config_file(path: str) -> dict[str, Any]:
    """Options from a TOML recipe (keys as the long option names, '-' or '_')."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover
        import tomli as tomllib
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise click.BadParameter(f"{path}: {exc.strerror}", param_hint="--config") from exc
    except tomllib.TOMLDecodeError as exc:
        raise click.BadParameter(f"{path}: {exc}", param_hint="--config") from exc
    data = data.get("build", data)
    data.pop("description", None)
    return {key.replace("-", "_"): value for key, value in data.items()}


@click.command("build", context_settings={"show_default": True})
@click.option(
    "--source", type=click.Choice(SOURCES), help="Dataset format of --root (or from --config)."
)
@click.option("--root", type=click.Path(), help="Dataset folder: top folder or one split's folder.")
@click.option("--out", type=click.Path(), required=True, help="Output folder of the build.")
@version_option
@split_option
@click.option(
    "--config",
    "config_file",
    type=click.Path(),
    help="TOML recipe (see pipelines/); command-line options override it.",
)
@class_order_option
@on_unknown_class_option
@max_image_pixels_option
@segmenter_option()
@model_option("SAM model; detected from the checkpoint when omitted.")
@checkpoint_option(
    "SAM / HQ-SAM checkpoint file (never downloaded), or builtin:tiny (the tiny SAM trained "
    "by `samrs pretrain`, shipped with samrs)."
)
@random_weights_option(
    "Run SAM with seeded random weights (tests and benchmarks only; recorded in samrs.json)."
)
@click.option("--hq-token-only", is_flag=True, help="sam-hq: use only the HQ output token.")
@click.option(
    "--multimask",
    is_flag=True,
    help="Ask SAM for 3 masks per prompt and keep the one with the best predicted IoU.",
)
@prompt_option(
    "Prompt built from each object: hbox (horizontal box), rhbox (box around the rotated "
    "polygon), rbox-mask (polygon as dense mask), point (polygon centre), rhbox+point."
)
@click.option(
    "--clip-to-rbox",
    type=float,
    default=None,
    metavar="PX",
    help="Intersect each mask with its rotated polygon grown by PX pixels.",
)
@click.option(
    "--small-object-zoom",
    type=int,
    default=None,
    metavar="PX",
    help="Segment objects smaller than PX on an upsampled crop around them (ROS-SAM's idea).",
)
@click.option(
    "--zoom-crop",
    type=click.IntRange(min=16),
    default=None,
    metavar="PX",
    help="Zoom crop side in pixels (ROS-SAM: 512); default max(256, 4 x the object's side).",
)
@click.option(
    "--zoom-factor",
    type=click.FloatRange(1.0, 8.0),
    default=None,
    help="Upsample zoom crops by this factor, bicubic (ROS-SAM: 2); default: the segmenter "
    "resizes the crop to its input size.",
)
@click.option(
    "--zoom-all", is_flag=True, help="Zoom every object, not only small ones (as ROS-SAM does)."
)
@click.option(
    "--zoom-border",
    type=click.Choice(["shift", "pad"]),
    default="shift",
    help="Crops at image borders: shift inside the image (and share crops between nearby "
    "objects), or stay centred with zero padding, one per object (ROS-SAM).",
)
@click.option(
    "--resize",
    type=click.Choice(["torch", "pil"]),
    default="torch",
    help="SAM's input resize: torch (antialiased bilinear on the device) or pil (exactly "
    "segment-anything's predictor, on the host; for reproduction runs).",
)
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=None,
    help="A published method's rules, applied before --config and command-line options: "
    "samrs = annotation-order overlap, SAMRS class order, hbox (DOTA, DIOR) / rhbox (FAIR1M) "
    "prompts, --resize pil; ros-sam = --zoom-all --zoom-crop 512 --zoom-factor 2 --zoom-border pad.",
)
@click.option(
    "--patch-size",
    type=int,
    default=None,
    help="Cut images into patches of this size (no tiling when omitted).",
)
@click.option("--gap", type=int, default=200, help="Overlap between patches.")
@click.option(
    "--rates",
    default="1.0",
    help="Comma-separated scale rates for tiling (window = patch-size / rate).",
)
@click.option(
    "--iof-threshold",
    type=float,
    default=0.7,
    help="Keep an object in a patch when this share of it lies inside.",
)
@click.option(
    "--tile-convention",
    type=click.Choice(TILE_CONVENTIONS),
    default="mmrotate",
    help="Tiling rules (see `samrs split --help`): mmrotate's (patches padded with RGB "
    "124,116,104, its [104,116,124] being BGR) or the official DOTA_devkit's (names "
    "<id>__<rate>__<x>___<y>, black padding, cut objects clipped, rate 1 only).",
)
@click.option(
    "--min-score", type=float, default=0.0, help="Reject masks with a lower SAM predicted IoU."
)
@click.option(
    "--min-stability",
    type=float,
    default=0.0,
    help="Reject masks with a lower SAM stability score.",
)
@click.option(
    "--min-rbox-iou",
    type=float,
    default=None,
    show_default=False,
    help="Reject masks whose IoU with the rotated box is lower "
    "[default: 0.3 for box/grabcut, 0 (off) for sam/sam-hq].",
)
@click.option(
    "--min-inside-fraction",
    type=float,
    default=0.0,
    help="Reject masks with a smaller share inside the (dilated) rotated box.",
)
@click.option(
    "--min-area",
    type=int,
    default=None,
    show_default=False,
    help="Reject masks with fewer pixels (1 rejects empty masks) "
    "[default: 4 for box/grabcut, 1 for sam/sam-hq].",
)
@click.option(
    "--on-reject",
    type=click.Choice(["keep-rejected", "box"]),
    default="keep-rejected",
    help="Rejected masks: keep them as rejected instances, or substitute the box mask in the labels.",
)
@click.option(
    "--overlap",
    type=click.Choice(["small-on-top", "score", "annotation-order"]),
    default="small-on-top",
    help="Which object owns overlapping pixels in semantic labels.",
)
@click.option(
    "--background",
    is_flag=True,
    help="Label non-object pixels as class 0 (class ids shift by +1); rejected objects stay 255.",
)
@click.option(
    "--include-rejected",
    is_flag=True,
    help="Also put rejected instances in coco/instances.json (flagged).",
)
@click.option("--polygons", is_flag=True, help="COCO segmentations as polygons instead of RLE.")
@click.option("--seed", type=int, default=0, help="Seed for random weights and any randomness.")
@click.option(
    "--gpus",
    type=int,
    default=None,
    help="GPUs to use, one worker process each (default: all visible GPUs; 0 = CPU).",
)
@click.option("--workers", type=int, default=1, help="CPU worker processes when --gpus 0.")
@click.option(
    "--threads",
    type=int,
    default=None,
    help="Torch/OpenCV threads per worker. A SAM model on the CPU computes slightly "
    "different floats with another thread count, so there the count is part of the build's "
    "configuration and defaults to all cores whatever --workers is (any --workers then gives "
    "the same bytes; pass --threads cores/workers to avoid oversubscribing). Other builds: "
    "default cores / workers.",
)
@click.option(
    "--writers",
    type=int,
    default=None,
    help="Writer processes per worker: quality checks, labels, PNGs and manifest rows of "
    "finished images run there, so the worker's process only drives the model. Default: "
    "with a model on a GPU, the cores left per GPU (up to 8); otherwise 0 (the worker's "
    "threads). Outputs are the same whatever the count.",
)
@click.option(
    "--decoders",
    type=int,
    default=None,
    help="Decode processes per worker: images are decoded (and padded, colour-converted) "
    "ahead of the model there, every image of one source file in the same process (the "
    "tiles of a big image decode it once), so the worker's process only drives the model. "
    "0: threads of the worker. Default: 2 with a model on a GPU (about 90 1024-px PNGs/s, "
    "3x what vit_h segments on an H200; more help with many large sources); otherwise 0 (a "
    "model on the CPU needs the cores itself, and CPU builds scale with --workers). Outputs "
    "are the same whatever the count.",
)
@click.option(
    "--scheduler",
    default=None,
    metavar="ADDRESS",
    help="Submit shards to an existing Dask cluster (workers started with --resources GPU=1 for GPUs).",
)
@device_option()
@click.option("--batch-size", type=int, default=4, help="Images per encoder call.")
@click.option("--chunk-size", type=int, default=64, help="Prompts per decoder call.")
@click.option(
    "--compile",
    "compile_model",
    is_flag=True,
    help="torch.compile the model (CUDA; compile time is paid once per worker).",
)
@click.option(
    "--shard-size",
    type=int,
    default=64,
    help="Images per shard (the unit of commit, retry and resume).",
)
@click.option(
    "--max-retries",
    type=int,
    default=2,
    help="Attempts per shard after the first before it is recorded as failed.",
)
@click.option(
    "--resume/--overwrite",
    default=True,
    help="Continue an existing build with the same configuration and dataset (skip "
    "committed shards that pass their checksums, rebuild damaged ones), or delete what an "
    "earlier build wrote there and start over (a folder without samrs.json is never deleted).",
)
@click.option(
    "--dry-run", is_flag=True, help="Print the plan and what exists in --out; do nothing."
)
@json_option
@click.pass_context
def command(
    ctx: click.Context,
    config_file: str | None,
    rates: str,
    gpus: int | None,
    compile_model: bool,
    resume: bool,
    as_json: bool,
    **options: Any,
) -> None:
    """Prompt a segmenter with every annotated box of a detection dataset and write semantic
    labels, COCO instances and Parquet manifests to --out.

    \b
    Examples:
      samrs build --source dota --root DOTA --out SOTA --checkpoint sam_vit_h.pth --gpus 8
      samrs build --config pipelines/sota.toml --root DOTA --out SOTA --checkpoint sam_vit_h.pth
      samrs build --source dota --root demo --out demo-out --segmenter grabcut

    The build is cut into shards committed atomically: re-running the same command after a
    crash or Ctrl-C (exit status 130) continues where it stopped; a finished build is left
    as it is. Progress goes to stderr: a bar on a terminal, plain lines otherwise.

    A plain build uses samrs's defaults (small objects painted on top, the dataset's official
    class order), which are not SAMRS's: add --preset samrs, or use a recipe
    (--config pipelines/sota.toml, sior.toml, fast.toml), to reproduce the SAMRS subsets.
    """
    from samrs.build import BuildInterrupted, run_build
    from samrs.build.progress import format_summary

    values: dict[str, Any] = {}
    if config_file:
        values.update(load_config_file(config_file))
    explicit = {
        name
        for name in ctx.params
        if ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
    }
    # a preset's options come first: the --config file and explicit options override them
    preset = options["preset"] if "preset" in explicit else values.get("preset")
    source = options["source"] if "source" in explicit else values.get("source")
    try:
        values = {**preset_options(preset, source), **values, "preset": preset}
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--preset") from exc
    cli = dict(options, rates=rates, gpus=gpus, compile=compile_model)
    for name, value in cli.items():
        key = {"compile": "compile_model"}.get(name, name)
        if key in explicit or name not in values:
            values[name] = value
    if isinstance(values.get("rates"), str):
        values["rates"] = tuple(float(r) for r in str(values["rates"]).split(","))
    if values.get("gpus") is None:
        values["gpus"] = visible_gpus() if values.get("device") in (None, "cuda") else 0
    values["overwrite"] = not resume
    values["resume"] = resume
    values["progress"] = not as_json and not ctx.find_root().params.get("quiet", False)
    zoom_set = [k for k in ("zoom_crop", "zoom_factor") if values.get(k) is not None]
    if values.get("zoom_border", "shift") != "shift":
        zoom_set.append("zoom_border")
    if zoom_set and not (values.get("small_object_zoom") or values.get("zoom_all")):
        names = ", ".join("--" + k.replace("_", "-") for k in zoom_set)
        raise click.UsageError(f"{names} need --small-object-zoom or --zoom-all")
    for required in ("source", "root"):
        if not values.get(required):
            raise click.UsageError(f"--{required} is required (on the command line or in --config)")
    try:
        config = BuildConfig.from_dict(values)
        summary = run_build(config)
    except ValueError as exc:  # config validation (SamrsError: samrs.cli)
        raise click.ClickException(str(exc)) from exc
    except BuildInterrupted as exc:  # Ctrl-C while shards ran: say how to go on, no traceback
        click.echo(str(exc), err=True)
        ctx.exit(INTERRUPTED_EXIT)
    except KeyboardInterrupt:  # while planning or finalizing
        click.echo("interrupted: run the same command again to resume", err=True)
        ctx.exit(INTERRUPTED_EXIT)
    if as_json:
        click.echo(json.dumps(summary.to_dict(), indent=2, sort_keys=True, default=str))
    elif summary.state == "dry-run":
        _print_plan(summary.to_dict())
    elif summary.state == "already-complete":
        click.echo(
            f"{summary.out}: already complete with this configuration; nothing to do.", err=True
        )
    else:
        click.echo(f"build {summary.state}: {summary.out}", err=True)
        click.echo(format_summary(summary.to_dict()), err=True)
    if not summary.ok:
        failed = ", ".join(f"{f['shard']} ({f['cause']})" for f in summary.failed_shards)
        raise click.ClickException(
            f"{len(summary.failed_shards)} shard(s) failed: {failed}; the other shards are "
            "committed; fix the cause and re-run the same command to retry them"
        )


INTERRUPTED_EXIT = 130
"""Exit status after Ctrl-C (128 + SIGINT, as shells report it)."""


def _print_plan(summary: dict[str, Any]) -> None:
    plan = summary["plan"]
    echo = click.echo
    echo(f"plan for {summary['out']}")
    echo(f"  source images   {plan['source_images']}")
    echo(f"  images/tiles    {plan['images']} ({plan['tiles']} tiles)")
    echo(f"  objects         {plan['objects']}")
    echo(f"  shards          {plan['shards']}")
    echo("  classes:")
    for name, count in plan["classes"].items():
        echo(f"    {name:<28} {count}")
    errors = plan.get("errors_found", [])
    echo(f"  errors found while reading: {len(errors)}")
    for e in errors:
        where = f"{e['file']}:{e['line']}" if e["line"] is not None else e["file"]
        echo(f"    {where}: [{e['stage']}] {e['message']}")
    existing = summary["existing"]
    if not existing.get("exists"):
        echo("  --out does not exist yet")
    elif existing.get("overwrite"):
        echo("  --out exists and would be overwritten")
    else:
        echo(
            f"  --out exists: {existing.get('committed_shards', 0)} shard(s) committed"
            + (", complete" if existing.get("complete") else "")
        )
    echo("  config:")
    for key, value in sorted(summary["config"].items()):
        echo(f"    {key} = {value}")
