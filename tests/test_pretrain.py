"""``samrs pretrain`` and the checkpoint it made, shipped as ``builtin:tiny`` (issue 18)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from samrs.cli import main
from samrs.cli.pretrain import command as pretrain_command
from samrs.pretrain import PretrainConfig, info_path, score_scenes
from samrs.segmenters import create_segmenter
from samrs.segmenters.checkpoints import (
    BUILTIN_DIR,
    CheckpointError,
    builtin_info,
    builtin_names,
    checkpoint_sha256,
    inspect_checkpoint,
    load_state_dict,
    resolve_checkpoint,
)
from samrs.synth import render_scene, write_synthetic


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_builtin_tiny_is_the_command_defaults_output() -> None:
    """The shipped file loads as the tiny SAM, its sha256 is the recorded one, and its
    recorded training config is exactly what `samrs pretrain` runs without options."""
    assert "tiny" in builtin_names()
    path = resolve_checkpoint("builtin:tiny")
    assert path == BUILTIN_DIR / "tiny.pth" and path.is_file()
    assert path.stat().st_size < 5_000_000  # a few MB at most, shipped in the wheel
    info = builtin_info("tiny")
    assert info["sha256"] == checkpoint_sha256("builtin:tiny") == checkpoint_sha256(path)
    assert info["config"] == PretrainConfig().to_dict()
    assert info["device"] == "cpu"
    cli_defaults = {p.name: p.default for p in pretrain_command.params}
    for key, value in PretrainConfig().to_dict().items():
        if key in cli_defaults:
            assert cli_defaults[key] == value, key
    facts, state = inspect_checkpoint("builtin:tiny", "tiny")
    assert facts.model == "tiny" and not facts.hq
    assert all(np.isfinite(t.numpy()).all() for t in state.values())
    losses = info["loss_every_10_steps"]
    assert info["final_loss"] < 0.6 * losses[0]  # it learned something
    seg = create_segmenter("sam", checkpoint="builtin:tiny", device="cpu")
    assert seg.describe()["checkpoint"] == "builtin:tiny"
    assert seg.describe()["checkpoint_sha256"] == info["sha256"]


def test_unknown_builtin_is_one_clear_line() -> None:
    with pytest.raises(CheckpointError, match=r"builtin:nope: no such builtin.*builtin:tiny"):
        load_state_dict("builtin:nope")
    with pytest.raises(CheckpointError, match="no such builtin"):
        resolve_checkpoint("builtin:../weights/tiny")
    assert resolve_checkpoint("some/file.pth") == Path("some/file.pth")


@pytest.mark.slow
def test_pretrain_smoke_same_seed_same_bytes(tmp_path: Path) -> None:
    args = ["--steps", "2", "--images-per-step", "1", "--prompts-per-image", "3"]
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name / "tiny.pth"
        result = run("pretrain", "--out", str(out), *args, "--json")
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["sha256"] == checkpoint_sha256(out)
        outs.append(out)
    assert outs[0].read_bytes() == outs[1].read_bytes()
    assert info_path(outs[0]).read_text() == info_path(outs[1]).read_text()
    info = json.loads(info_path(outs[0]).read_text())
    assert (
        info["config"] == PretrainConfig(steps=2, images_per_step=1, prompts_per_image=3).to_dict()
    )
    assert np.isfinite(info["final_loss"])
    other = tmp_path / "c" / "tiny.pth"
    assert run("pretrain", "--out", str(other), *args, "--seed", "1").exit_code == 0
    assert other.read_bytes() != outs[0].read_bytes()
    # the result is a tiny SAM checkpoint the segmenters load
    seg = create_segmenter("sam", checkpoint=str(outs[0]), device="cpu")
    assert seg.describe()["model"] == "tiny"
    again = run("pretrain", "--out", str(outs[0]), *args)
    assert again.exit_code != 0 and "exists" in again.output


def test_hard_scenes_are_harder_and_default_scenes_unchanged(tmp_path: Path) -> None:
    """``render_scene`` draws what ``write_synthetic`` writes; ``hard`` adds objects and
    clutter and never changes the default scenes."""
    plain = render_scene("dior", 0, 2)
    write_synthetic("dior", tmp_path / "plain", n_images=3, seed=0)
    gt = json.loads((tmp_path / "plain" / "gt" / "instances.json").read_text())
    anns = [a for a in gt["annotations"] if a["image_id"] == 3]
    assert len(anns) == len(plain.polygons)
    assert [a["area"] for a in anns] == [int(m.sum()) for m in plain.masks]
    hard = render_scene("dior", 0, 2, hard=True)
    assert len(hard.polygons) > len(plain.polygons)
    assert not np.array_equal(hard.pixels, plain.pixels)
    assert (hard.masks.sum(axis=0) <= 1).all() and (hard.masks.sum(axis=(1, 2)) > 0).all()
    write_synthetic("dior", tmp_path / "hard", n_images=3, seed=0, hard=True)
    hard_gt = json.loads((tmp_path / "hard" / "gt" / "instances.json").read_text())
    assert hard_gt["info"]["hard"] is True and "hard" not in gt["info"]
    assert len(hard_gt["annotations"]) > len(gt["annotations"])


# --- what the trained model does (issue 18's measurements) ----------------------------------
# Held-out scenes: synth seed 1 (training scenes use seeds from 10_000), hard mode. The shipped
# checkpoint is far from the targets (README: A trained tiny SAM); these tests pin
# what it does measurably do, so that a better one can only raise the numbers.


@pytest.mark.slow
def test_builtin_tiny_beats_random_weights_on_held_out_scenes() -> None:
    scenes = [render_scene(fmt, 1, 0, hard=True) for fmt in ("dior", "fair1m")]
    trained = create_segmenter("sam", checkpoint="builtin:tiny", device="cpu")
    random = create_segmenter("sam", random_weights=True, device="cpu")
    # measured: rbox-mask 0.422, rhbox 0.182, point 0.168; random weights 0.002, 0.001 (README)
    for mode, margin in (("rbox-mask", 0.3), ("rhbox", 0.12), ("point", 0.1)):
        ours = float(np.mean(score_scenes(trained, scenes, mode)))
        base = float(np.mean(score_scenes(random, scenes, mode)))
        print(mode, f"builtin:tiny {ours:.3f}, random weights {base:.3f}")
        assert ours > base + margin


@pytest.mark.slow
def test_small_object_zoom_raises_the_iou_of_objects_under_16_px() -> None:
    """``--small-object-zoom 16`` segments each object under 16 px on a zoomed crop: with
    builtin:tiny on held-out scenes (half their objects are that small: 4-6 px in the 512-px
    input) that is measured at rbox-mask 0.25 -> 0.58 and rhbox 0.08 -> 0.28 (49 objects)."""
    scenes = [render_scene(fmt, 1, 0, hard=True) for fmt in ("dota", "dior", "fair1m")]
    plain = create_segmenter("sam", checkpoint="builtin:tiny", device="cpu")
    zoomed = create_segmenter("sam", checkpoint="builtin:tiny", device="cpu", small_object_zoom=16)
    for mode, margin in (("rbox-mask", 0.2), ("rhbox", 0.12)):
        before = score_scenes(plain, scenes, mode, max_size=16)
        after = score_scenes(zoomed, scenes, mode, max_size=16)
        assert len(before) == len(after) >= 30  # the same small objects
        print(mode, f"{np.mean(before):.3f} -> {np.mean(after):.3f} ({len(after)} objects)")
        assert np.mean(after) > np.mean(before) + margin


@pytest.mark.slow
def test_ablate_ranks_prompt_modes(tmp_path: Path) -> None:
    """``samrs ablate`` (builds + evaluation against the GT masks) with builtin:tiny: the
    rotated-box mask prompt beats the bare box; samrs.json names the shipped weights."""
    root = tmp_path / "dior"
    write_synthetic("dior", root, n_images=3, seed=1, hard=True)
    out = tmp_path / "ablation"
    result = run("-q", "ablate", "--source", "dior", "--root", str(root), "--gt", str(root),
                 "--out", str(out), "--segmenters", "sam", "--prompts", "rhbox,rbox-mask",
                 "--checkpoint", "builtin:tiny", "--gpus", "0", "--device", "cpu", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    miou = {r["name"]: r["miou"] for r in doc["runs"]}
    print({k: round(v, 3) for k, v in miou.items()})
    assert doc["best"] == "sam-rbox-mask"
    assert miou["sam-rbox-mask"] > miou["sam-rhbox"]
    for r in doc["runs"]:
        config = json.loads((out / r["out"] / "samrs.json").read_text())["config"]
        assert config["checkpoint"] == "builtin:tiny"
        assert config["checkpoint_sha256"] == builtin_info("tiny")["sha256"]
