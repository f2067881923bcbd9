"""MeSAM training: overfitting, schedule, checkpoints (save -> load -> same predictions), resume."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

from samrs.mesam.checkpoint import read_run_checkpoint, save_run_checkpoint
from samrs.mesam.config import MeSAMConfig
from samrs.mesam.data import SegmentationDataset, label_space_from_build, read_build, split_samples
from samrs.mesam.infer import load_run
from samrs.mesam.losses import ce_dice_loss
from samrs.mesam.model import build_mesam, trained_state_dict
from samrs.mesam.train import RunError, TrainConfig, lr_factor, resize_labels, train, validate
from tests.helpers.mesam import make_seg_build

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def build(tmp_path_factory):
    out = tmp_path_factory.mktemp("mesam") / "build"
    make_seg_build(out, n_train=4, n_val=2)
    return out


def _cfg(build, out, **kw) -> TrainConfig:
    base = dict(
        data=str(build), out=str(out), model="tiny", random_weights=True, epochs=3,
        batch_size=2, image_size=64, warmup_steps=2, num_workers=0, log_every=1, seed=0,
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


def _batch(build):
    data = read_build(build)
    space = label_space_from_build(data.meta)
    train_s, _ = split_samples(data.samples)
    ds = SegmentationDataset(train_s, space, 64)
    images = torch.stack([ds[i][0] for i in range(len(ds))])
    labels = torch.stack([ds[i][1] for i in range(len(ds))])
    return space, images, labels


def test_lr_schedule():
    assert lr_factor(0, 4, 10) == 0.25
    assert lr_factor(3, 4, 10) == 1.0
    assert lr_factor(4, 4, 10) == 1.0
    assert lr_factor(7, 4, 10) == pytest.approx(0.5**0.9)
    assert lr_factor(10, 4, 10) == 0.0
    assert lr_factor(0, 0, 10) == 1.0


@pytest.mark.slow
def test_overfits_four_images(build):
    space, images, labels = _batch(build)
    assert len(images) == 4
    model = build_mesam(MeSAMConfig.from_name("tiny", space.num_classes, 64), seed=0)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(40):
        logits = model(images)
        loss = ce_dice_loss(logits, resize_labels(labels, logits.shape[-2:]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.35 * losses[0], losses


def test_run_checkpoint_roundtrip_gives_identical_predictions(build, tmp_path):
    space, images, labels = _batch(build)
    cfg = MeSAMConfig.from_name("tiny", space.num_classes, 64)
    model = build_mesam(cfg, seed=7)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    for _ in range(3):
        logits = model(images)
        ce_dice_loss(logits, resize_labels(labels, logits.shape[-2:]))["loss"].backward()
        opt.step()
        opt.zero_grad()
    trained = trained_state_dict(model)
    frozen_keys = [k for k in model.state_dict() if k not in trained]
    assert "image_encoder.blocks.0.attn.qkv.weight" in frozen_keys
    (tmp_path / "run").mkdir()
    save_run_checkpoint(
        tmp_path / "run" / "last.pt",
        {"model_config": cfg.to_dict(), "label_space": space.to_dict(),
         "base": {"random_weights": True, "seed": 7}, "trained": trained,
         "train_config": _cfg(build, tmp_path / "run").to_dict()},
    )  # fmt: skip
    stored = read_run_checkpoint(tmp_path / "run" / "last.pt")
    assert set(stored["trained"]) == set(trained)  # only what was trained is stored
    loaded = load_run(tmp_path / "run", which="last", device="cpu")
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images), model(images), rtol=0, atol=0)


def test_train_writes_a_run_and_reloads_it(build, tmp_path):
    run = tmp_path / "run"
    lines: list[str] = []
    summary = train(_cfg(build, run, epochs=2), progress=lines.append)
    assert summary["step"] == 4 and summary["finished"]
    assert any(line.startswith("trainable parameters:") for line in lines)
    assert any("skipping 1 image(s) with status 'error'" in line for line in lines)
    for name in ("config.json", "last.pt", "best.pt", "metrics.csv", "metrics.json", "curves.png"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows if r["loss"]] == [1, 2, 3, 4]
    val_rows = [r for r in rows if r["val_miou"]]
    assert [int(r["step"]) for r in val_rows] == [2, 4]  # once per epoch
    doc = json.loads((run / "metrics.json").read_text())
    assert doc["summary"]["step"] == 4
    config = json.loads((run / "config.json").read_text())
    assert config["label_space"]["names"][0] == "background"
    assert config["base"]["random_weights"] is True
    # the reloaded network reproduces the last validation exactly
    last = read_run_checkpoint(run / "last.pt")
    loaded = load_run(run, which="last", device="cpu")
    data = read_build(build)
    _, val = split_samples(data.samples)
    ds = SegmentationDataset(val, loaded.label_space, 64)
    report = validate(loaded.model, torch.utils.data.DataLoader(ds, batch_size=2),
                      loaded.label_space, torch.device("cpu"))  # fmt: skip
    assert report["miou"] == pytest.approx(last["history"][-1]["val_miou"], abs=0)
    # an existing run is not overwritten
    with pytest.raises(RunError, match="already holds a run"):
        train(_cfg(build, run))


@pytest.mark.slow
def test_resume_continues_from_the_saved_step(build, tmp_path):
    full = train(_cfg(build, tmp_path / "full", epochs=3, val_every=100))
    assert full["step"] == 6
    stopped = train(_cfg(build, tmp_path / "part", epochs=3, val_every=100), stop_after_steps=3)
    assert stopped["step"] == 3 and not stopped["finished"]
    ck = read_run_checkpoint(tmp_path / "part" / "last.pt")
    assert (ck["step"], ck["epoch"], ck["batch_in_epoch"]) == (3, 1, 1)  # mid-epoch
    assert ck["scheduler"]["last_epoch"] == 3 and ck["optimizer"]["state"]
    lines: list[str] = []
    resumed = train(
        _cfg(build, tmp_path / "part", epochs=3, val_every=100, resume=True, lr=1.0),
        progress=lines.append,
    )
    assert any("resuming" in line and "at step 3" in line for line in lines)
    assert resumed["step"] == 6 and resumed["finished"]
    a = read_run_checkpoint(tmp_path / "full" / "last.pt")
    b = read_run_checkpoint(tmp_path / "part" / "last.pt")
    assert b["train_config"]["lr"] == a["train_config"]["lr"]  # stored options win
    assert [r["step"] for r in b["history"]] == [r["step"] for r in a["history"]]
    for ra, rb in zip(a["history"], b["history"], strict=True):
        if ra.get("loss") is not None:
            assert rb["loss"] == pytest.approx(ra["loss"], rel=1e-5)
    for key, value in a["trained"].items():
        torch.testing.assert_close(b["trained"][key], value, rtol=1e-5, atol=1e-6)
    with pytest.raises(RunError, match="nothing to resume"):
        train(_cfg(build, tmp_path / "none", resume=True))


@pytest.mark.slow
def test_gradient_accumulation_and_max_steps(build, tmp_path):
    # 4 images, 1 per micro-batch, 3 micro-batches per step: groups of 3 and 1 -> 2 steps/epoch
    out = train(_cfg(build, tmp_path / "acc", batch_size=1, grad_accum=3, epochs=2, val_every=99))
    assert out["step"] == out["total_steps"] == 4
    capped = train(_cfg(build, tmp_path / "cap", epochs=50, max_steps=3, val_every=99))
    assert capped["step"] == capped["total_steps"] == 3 and capped["finished"]
    ck = read_run_checkpoint(tmp_path / "cap" / "last.pt")
    assert ck["scheduler"]["_last_lr"][0] == 0.0  # the poly schedule ends at max_steps


def test_the_library_never_imports_the_cli() -> None:
    """The CLI is a layer over the library: no module outside samrs.cli imports it (MeSAM's
    trainer used to, for torchrun; torchrun starts ``-m samrs.cli finetune`` now)."""
    import ast

    import samrs

    root = Path(samrs.__file__).parent
    offenders = []
    for path in sorted(root.rglob("*.py")):
        if path.is_relative_to(root / "cli"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            if any(n == "samrs.cli" or n.startswith("samrs.cli.") for n in names):
                offenders.append(str(path.relative_to(root)))
    assert offenders == []
