"""The ``samrs`` command line: a Click group with one small module per command.

Commands are imported only when invoked, so ``samrs --help`` stays fast (torch loads only
for the commands that need it).
"""

from __future__ import annotations

import errno
import importlib
import logging

import click

from samrs import __version__
from samrs.errors import SamrsError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module under samrs.cli, one-line help shown by `samrs --help`)
    "synth": ("synth", "Write a synthetic dataset in a source's real format, with GT masks."),
    "inspect": ("inspect", "Read a dataset and report images, objects, classes and errors."),
    "split": ("split", "Cut large images into patches with DOTA-format labels."),
    "build": ("build", "Generate a segmentation dataset by prompting SAM with every box."),
    "stats": ("stats", "Statistics, plots and an HTML report of a build."),
    "audit": ("audit", "Mask quality report and contact sheets of the worst instances."),
    "show": ("show", "Render one image of a build with its labels and outlines."),
    "evaluate": ("evaluate", "Score generated masks against ground-truth masks."),
    "ablate": ("ablate", "Compare prompt modes and segmenters against ground truth."),
    "export": ("export", "Export a build as COCO, mmsegmentation or ROS-SAM data."),
    "finetune": ("finetune", "Fine-tune SAM on a build with the MeSAM method."),
    "convert-mesam": ("convert_mesam", "Turn a checkpoint of MeSAM's own code into a run."),
    "convert-ros-sam": (
        "convert_ros_sam",
        "Turn ROS-SAM's trained weights into an HQ-SAM checkpoint.",
    ),
    "predict": ("predict", "Write semantic labels for images with a fine-tuned model."),
    "evaluate-seg": ("evaluate_seg", "Score semantic labels of a fine-tuned model (mIoU)."),
    "verify": ("verify", "Check a build's shards and files against their recorded checksums."),
    "bench": ("bench", "Measure throughput: model alone, pipeline, SAMRS reference loop."),
    "pretrain": ("pretrain", "Train the tiny SAM from scratch on synthetic scenes (builtin:tiny)."),
}


class LazyGroup(click.Group):
    """A group that imports a command's module the first time the command is used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        module = importlib.import_module(f"samrs.cli.{COMMANDS[cmd_name][0]}")
        return module.command

    def invoke(self, ctx: click.Context) -> object:
        """Run the command. The one place errors become messages: a :class:`SamrsError` (bad
        input, a build or checkpoint that cannot be used; its message names the file) and a
        file-system error nobody handled (a read-only or full disk, a missing permission)
        become one line on stderr and exit status 1 instead of a traceback."""
        try:
            return super().invoke(ctx)
        except SamrsError as exc:
            raise click.ClickException(str(exc)) from exc
        except OSError as exc:
            if exc.errno == errno.EPIPE:  # click handles a closed stdout itself
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            raise click.ClickException(f"{where}{exc.strerror or exc}") from exc

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="samrs")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
def main(verbose: int, quiet: bool) -> None:
    """samrs: segmentation datasets from remote-sensing detection datasets with SAM.

    Typical run: `samrs build --source dota --root DOTA --out SOTA --checkpoint sam_vit_h.pth`.
    Try it without weights: `samrs synth --format dota --out demo && samrs build --source dota
    --root demo --out demo-out --segmenter grabcut`.
    """
    level = (
        logging.WARNING if quiet else (logging.INFO, logging.INFO, logging.DEBUG)[min(verbose, 2)]
    )
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
