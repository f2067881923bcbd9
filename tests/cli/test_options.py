"""Options declared once: choices from the library registries, one weights rule, one device
resolver, one GPU count, batch sizes checked once."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import torch
from click.testing import CliRunner

import samrs
from samrs.cli import main
from samrs.cli.options import check_weight_options, checkpoint_option
from samrs.devices import DeviceError, resolve_device, visible_gpus
from samrs.errors import SamrsError
from samrs.prompts import PROMPT_MODES
from samrs.segmenters import (
    MODEL_NAMES,
    SEGMENTERS,
    CheckpointError,
    WeightsError,
    check_weights,
    needs_weights,
)
from samrs.segmenters.checkpoints import is_builtin, resolve_checkpoint


def choices(command_name: str, option: str) -> tuple[str, ...]:
    command = main.get_command(click.Context(main), command_name)
    assert command is not None
    param = next(p for p in command.params if p.name == option)
    assert isinstance(param.type, click.Choice)
    return tuple(param.type.choices)


@pytest.mark.parametrize("command", ["build", "ablate", "bench"])
def test_model_choices_come_from_the_registry(command: str) -> None:
    assert choices(command, "model") == MODEL_NAMES


def test_build_choices_come_from_the_registries() -> None:
    assert choices("build", "segmenter") == SEGMENTERS
    assert choices("build", "prompt") == PROMPT_MODES


def test_no_copy_of_the_registries_or_the_weights_rule() -> None:
    """The literal list of weighted segmenters lives in samrs.segmenters alone."""
    root = Path(samrs.__file__).parent
    pattern = re.compile(r"""\(\s*["']sam["']\s*,\s*["']sam-hq["']\s*\)""")
    holders = sorted(
        str(p.relative_to(root)) for p in root.rglob("*.py") if pattern.search(p.read_text())
    )
    assert holders == ["segmenters/__init__.py"]
    assert not any("def _visible_gpus" in p.read_text() for p in root.rglob("*.py"))


def test_check_weights() -> None:
    assert needs_weights("sam") and needs_weights("sam-hq")
    assert not needs_weights("grabcut") and not needs_weights("box")
    check_weights("grabcut", "x.pth", True)  # ignored: no weights needed
    check_weights("sam", "x.pth", False)
    check_weights("sam", None, True)
    with pytest.raises(WeightsError, match="not both") as both:
        check_weights("sam-hq", "x.pth", True)
    with pytest.raises(WeightsError, match="sam segmenter needs weights") as neither:
        check_weights("sam", None, False)
    for exc in (both.value, neither.value):
        assert isinstance(exc, (CheckpointError, ValueError, SamrsError))
    with pytest.raises(click.UsageError, match="not both"):
        check_weight_options("x.pth", True)


def test_finetune_rejects_both_weight_options(tmp_path: Path) -> None:
    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"")
    result = CliRunner().invoke(
        main,
        ["finetune", "--data", str(tmp_path), "--out", str(tmp_path / "run"),
         "--checkpoint", str(ckpt), "--random-weights"],
    )  # fmt: skip
    assert result.exit_code == 2 and "not both" in result.output


def test_resolve_device() -> None:
    cuda = torch.cuda.is_available()
    assert resolve_device(None).type == ("cuda" if cuda else "cpu")
    assert resolve_device("auto") == resolve_device("")
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto", local_rank=1) == torch.device("cuda:1" if cuda else "cpu")
    assert visible_gpus() == (torch.cuda.device_count() if cuda else 0)
    if not cuda:
        with pytest.raises(DeviceError, match="'cuda:0' requested but CUDA is not available"):
            resolve_device("cuda:0")


def test_build_checks_batch_size_once(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    for option in ("--batch-size", "--chunk-size"):
        result = CliRunner().invoke(
            main,
            ["build", "--source", "dota", "--root", str(root), "--out", str(tmp_path / "o"),
             "--segmenter", "grabcut", "--gpus", "0", option, "0"],
        )  # fmt: skip
        assert result.exit_code == 1
        assert "Error: --batch-size and --chunk-size must be >= 1" in result.output


@pytest.mark.parametrize(
    "command", ["build", "ablate", "bench", "finetune", "predict", "evaluate-seg"]
)
def test_every_checkpoint_option_gives_a_path(command: str) -> None:
    cmd = main.get_command(click.Context(main), command)
    assert cmd is not None
    param = next(p for p in cmd.params if p.name == "checkpoint")
    assert isinstance(param.type, click.Path) and param.type.type is Path


def test_checkpoint_option_value(tmp_path: Path) -> None:
    """One value at the CLI boundary: a Path for a file and for ``builtin:NAME`` (kept as
    written, what samrs.json records); with must_exist, a bad one is a usage error."""
    seen: list[object] = []

    @click.command()
    @checkpoint_option("weights", must_exist=True)
    def probe(checkpoint: Path | None) -> None:
        seen.append(checkpoint)

    ckpt = tmp_path / "sam.pth"
    ckpt.write_bytes(b"x")
    runner = CliRunner()
    for args in (["--checkpoint", str(ckpt)], ["--checkpoint", "builtin:tiny"], []):
        assert runner.invoke(probe, args).exit_code == 0
    assert seen == [ckpt, Path("builtin:tiny"), None]
    assert is_builtin(seen[1]) and resolve_checkpoint(seen[1]).is_file()
    result = runner.invoke(probe, ["--checkpoint", "builtin:nope"])
    assert result.exit_code == 2 and "no such builtin checkpoint" in result.output
    result = runner.invoke(probe, ["--checkpoint", str(tmp_path / "missing.pth")])
    assert result.exit_code == 2 and "missing.pth' does not exist" in result.output


def test_config_dataclasses_record_the_checkpoint_as_str() -> None:
    """Library users may pass a Path or a str; the JSON-serialized configs keep the str."""
    from samrs.build.config import BuildConfig
    from samrs.mesam.train import TrainConfig

    build = BuildConfig(source="dota", root="r", out="o", checkpoint=Path("w/sam.pth"))
    train = TrainConfig(data="d", out="o", checkpoint=Path("builtin:tiny"))
    assert build.to_dict()["checkpoint"] == "w/sam.pth"
    assert build == BuildConfig.from_dict(json.loads(json.dumps(build.to_dict())))
    assert train.to_dict()["checkpoint"] == "builtin:tiny"
    assert TrainConfig(data="d", out="o").checkpoint is None


def test_the_cli_does_not_retype_checkpoints() -> None:
    """The option's value goes to the library as it is (no str()/Path() hop in samrs/cli)."""
    cli = Path(samrs.__file__).parent / "cli"
    hops = re.compile(r"\b(str|Path|os\.fspath)\(checkpoint\b")
    assert [p.name for p in sorted(cli.glob("*.py")) if hops.search(p.read_text())] == []
