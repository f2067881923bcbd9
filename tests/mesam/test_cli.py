"""``samrs finetune`` / ``predict`` / ``evaluate-seg`` on small build outputs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from samrs.cli import main
from samrs.segmenters.checkpoints import checkpoint_sha256
from samrs.segmenters.models import SAM_MODELS, build_random_model
from tests.helpers.mesam import make_seg_build
from tests.helpers.outputs import make_fake_build

pytestmark = pytest.mark.usefixtures("one_thread")


TRAIN = ["--model", "tiny", "--random-weights", "--epochs", "2", "--batch-size", "2",
         "--image-size", "64", "--warmup-steps", "1", "--log-every", "1"]  # fmt: skip


def run(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A build without a background class and a run trained on it with worker processes."""
    root = tmp_path_factory.mktemp("cli")
    facts = make_seg_build(root / "build", n_train=4, n_val=2, background=False)
    result = run("finetune", "--data", str(root / "build"), "--out", str(root / "run"),
                 *TRAIN, "--num-workers", "1", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    return root, facts, json.loads(result.stdout)


def test_finetune_json_summary(trained):
    root, _, summary = trained
    assert summary["step"] == 4 and summary["finished"] is True
    assert summary["train_images"] == 4 and summary["val_images"] == 2
    assert (root / "run" / "best.pt").is_file() and (root / "run" / "curves.png").is_file()


def test_predict_writes_palettized_labels(trained, tmp_path):
    root, facts, _ = trained
    result = run("predict", "--run", str(root / "run"), "--images", str(root / "build" / "images"),
                 "--out", str(tmp_path / "pred"), "--device", "cpu")  # fmt: skip
    assert result.exit_code == 0, result.output
    names = sorted(p.name for p in (tmp_path / "pred").iterdir())
    assert names == [f"{i}.png" for i in facts["ids"]]
    with Image.open(tmp_path / "pred" / names[0]) as img:
        assert img.mode == "P" and img.size == (64, 64)
        assert img.getpalette() == facts["palette"]
        values = set(np.unique(np.asarray(img)).tolist())
    # without a background class the ids are class ids or 255, never a shifted id
    assert values <= set(range(15)) | {255}
    # the sliding mode covers the image with windows and gives a label of the same size
    result = run("predict", "--run", str(root / "run"), "--images",
                 str(root / "build" / "images" / "S0000.png"), "--out", str(tmp_path / "slide"),
                 "--mode", "slide", "--tile", "32", "--overlap", "8", "--json")  # fmt: skip
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert doc["written"] == 1 and doc["failed"] == []
    with Image.open(tmp_path / "slide" / "S0000.png") as img:
        assert img.size == (64, 64)


def test_evaluate_seg_reports(trained):
    root, _, _ = trained
    result = run("evaluate-seg", "--run", str(root / "run"), "--data", str(root / "build"),
                 "--json", "--num-workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)  # one JSON document, nothing else on stdout
    assert report["images"] == 2 and report["split"] == "val"
    assert [c["name"] for c in report["classes"]][:2] == ["plane", "baseball-diamond"]
    assert len(report["confusion_matrix"]["matrix"]) == 16
    total = sum(map(sum, report["confusion_matrix"]["matrix"]))
    assert total == report["pixels"] > 0
    human = run("finetune", "--data", str(root / "build"), "--out", str(root / "run"),
                "--eval-only", "--num-workers", "0")  # fmt: skip
    assert human.exit_code == 0, human.output
    assert "mIoU" in human.stdout and "plane" in human.stdout


def test_finetune_on_the_shared_fake_build(tmp_path):
    """Images of different sizes and a tile under OUT/images (tests/helpers/outputs.py)."""
    make_fake_build(tmp_path / "fake")
    result = run("finetune", "--data", str(tmp_path / "fake"), "--out", str(tmp_path / "run"),
                 *TRAIN, "--num-workers", "0", "--classes", "plane,small-vehicle")  # fmt: skip
    assert result.exit_code == 0, result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["label_space"]["names"] == ["unlabelled", "plane", "small-vehicle"]
    assert config["data"]["train_images"] == 2 and config["data"]["val_images"] == 1


def test_cli_errors(trained, tmp_path):
    root, _, _ = trained
    data = str(root / "build")
    result = run("finetune", "--data", data, "--out", str(tmp_path / "r"), "--model", "tiny")
    assert result.exit_code != 0 and "--checkpoint" in result.output
    result = run("finetune", "--data", data, "--out", str(root / "run"), *TRAIN)
    assert result.exit_code != 0 and "--resume" in result.output
    result = run("finetune", "--data", data, "--out", str(tmp_path / "r"), *TRAIN,
                 "--classes", "airplane")  # fmt: skip
    assert result.exit_code != 0 and "unknown class" in result.output
    result = run("finetune", "--data", str(tmp_path), "--out", str(tmp_path / "r"), *TRAIN)
    assert result.exit_code != 0 and "samrs.json" in result.output
    result = run("finetune", "--data", data, "--out", str(tmp_path / "r2"), "--model", "tiny",
                 "--checkpoint", str(tmp_path / "missing.pth"))  # fmt: skip
    assert result.exit_code != 0 and "missing.pth" in result.output
    result = run("predict", "--run", str(tmp_path), "--images", data, "--out", str(tmp_path / "p"))
    assert result.exit_code != 0 and "last.pt" in result.output


def _run_launcher(
    cmd: list[str], env: dict[str, str], out: Path, timeout_s: float = 240
) -> tuple[int, str]:
    """Run a ``torchrun`` command writing to ``out``: (exit status, stderr). A launch that hangs
    is killed with its ranks and tried once more from an empty ``out``.

    18 s alone on 2 cores, 27 s beside three busy processes; one CI run at the lowest versions
    (torch 2.3) hung past 600 s without a word, which points at the launcher's rendezvous (it
    picks a free port, closes it and hands it to rank 0: another test's process can take it
    in between). A second hang, or any failure, fails the test with what the processes printed.
    """
    for attempt in (1, 2):
        shutil.rmtree(out, ignore_errors=True)
        with subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True, start_new_session=True) as proc:  # fmt: skip
            try:
                _, stderr = proc.communicate(timeout=timeout_s)
                return proc.returncode, stderr
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
        if attempt == 2:
            pytest.fail(f"torchrun hung twice ({timeout_s:.0f} s each)\nstdout:\n{stdout[-3000:]}\n"
                        f"stderr:\n{stderr[-3000:]}")  # fmt: skip
    raise AssertionError("unreachable")


@pytest.mark.slow
def test_ddp_with_torchrun(trained, tmp_path):
    """Two CPU processes (gloo) through ``torchrun -m samrs.cli finetune``."""
    root, _, _ = trained
    # Loopback only: no hostname lookups (a CI machine without DNS) for the rendezvous or gloo.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLOO_SOCKET_IFNAME": "lo"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "--local-addr", "127.0.0.1", "-m", "samrs.cli", "finetune", "--data",
           str(root / "build"), "--out", str(tmp_path / "ddp"), *TRAIN, "--batch-size", "1",
           "--num-workers", "0", "--device", "cpu"]  # fmt: skip
    returncode, stderr = _run_launcher(cmd, env, tmp_path / "ddp")
    assert returncode == 0, stderr[-3000:]
    config = json.loads((tmp_path / "ddp" / "config.json").read_text())
    assert config["world_size"] == 2
    rows = list(csv.DictReader((tmp_path / "ddp" / "metrics.csv").open()))
    # 4 images, 1 per process and step: 2 steps per epoch
    assert [int(r["step"]) for r in rows if r["loss"]] == [1, 2, 3, 4]
    assert stderr.count("trainable parameters") == 1  # only rank 0 reports
    assert "Grad strides" not in stderr


def test_finetune_from_a_sam_checkpoint(trained, tmp_path):
    """Base weights from a (tiny) SAM checkpoint; the run finds them again, or is told where."""
    root, _, _ = trained
    ckpt = tmp_path / "sam_tiny.pth"
    torch.save(build_random_model(SAM_MODELS["tiny"], seed=3).state_dict(), ckpt)
    result = run("finetune", "--data", str(root / "build"), "--out", str(tmp_path / "run"),
                 "--checkpoint", str(ckpt), *TRAIN[3:], "--num-workers", "0")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "loaded tiny checkpoint" in result.output and "pos_embed" not in result.output
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["base"]["random_weights"] is False
    assert config["base"]["sha256"] == checkpoint_sha256(ckpt)
    assert config["model_config"]["model"] == "tiny"  # detected from the checkpoint
    predict = ["predict", "--run", str(tmp_path / "run"), "--images",
               str(root / "build" / "images" / "S0000.png")]  # fmt: skip
    assert run(*predict, "--out", str(tmp_path / "p1")).exit_code == 0
    moved = ckpt.rename(tmp_path / "moved.pth")
    result = run(*predict, "--out", str(tmp_path / "p2"))
    assert result.exit_code != 0 and "pass --checkpoint" in result.output
    assert run(*predict, "--out", str(tmp_path / "p2"), "--checkpoint", str(moved)).exit_code == 0
    a = np.asarray(Image.open(tmp_path / "p1" / "S0000.png"))
    b = np.asarray(Image.open(tmp_path / "p2" / "S0000.png"))
    assert np.array_equal(a, b)
    result = run("finetune", "--data", str(root / "build"), "--out", str(tmp_path / "r3"),
                 "--checkpoint", str(moved), "--model", "vit_b")  # fmt: skip
    assert result.exit_code != 0 and "not the requested vit_b" in result.output
