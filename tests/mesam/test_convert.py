"""Checkpoints of MeSAM's own code: equivalence with an independent forward pass, the run
folder written by `samrs convert-mesam`, and the errors of files that do not fit."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from samrs.cli import main
from samrs.mesam.checkpoint import CheckpointError
from samrs.mesam.config import BASE_LOW_HEADS, MeSAMConfig
from samrs.mesam.convert import convert_mesam, load_mesam_checkpoint
from samrs.mesam.data import DataError
from samrs.mesam.infer import load_run
from tests.helpers.mesam import make_seg_build
from tests.helpers.mesam_reference import LN2d, ReferenceMeSAM

# vit_b's block structure (12 blocks, 12 heads, globals 2/5/8/11, MeSAM's head schedule) at a
# tiny width: head dim 8, so block i keeps BASE_LOW_HEADS[i] * 8 attention channels
ARCH = {
    "dim": 96,
    "heads": 12,
    "low_heads": list(BASE_LOW_HEADS),
    "globals": (2, 5, 8, 11),
    "size": 128,
    "prompt_dim": 32,
    "decoder_heads": 2,
    "decoder_mlp_dim": 64,
    "num_classes": 3,
    "lora_rank": 0,
    "mask_in_chans": 4,
}
BASE = MeSAMConfig(
    model="vit_b-style-test",
    num_classes=3,
    image_size=128,
    lora_rank=0,
    embed_dim=96,
    depth=12,
    num_heads=12,
    global_attn_indexes=(2, 5, 8, 11),
    prompt_dim=32,
    decoder_heads=2,
    decoder_mlp_dim=64,
    mask_in_chans=4,
)


pytestmark = pytest.mark.usefixtures("one_thread")


def reference(lora_rank: int, seed: int = 0) -> ReferenceMeSAM:
    torch.manual_seed(seed)
    ref = ReferenceMeSAM({**ARCH, "lora_rank": lora_rank}).eval()
    with torch.no_grad():  # layer norms start at 1/0: make them matter
        for module in ref.modules():
            if isinstance(module, (LN2d, torch.nn.LayerNorm)):
                module.weight.add_(torch.randn_like(module.weight) * 0.1)
                module.bias.add_(torch.randn_like(module.bias) * 0.1)
    return ref


def save_mesam(ref: ReferenceMeSAM, path, samed: bool) -> None:  # type: ignore[no-untyped-def]
    state = ref.state_dict()
    if samed:  # SAMed's LoRA_Sam wrapper: sam. prefix, duplicate LoRA lists
        state = {f"sam.{k}": v for k, v in state.items()}
        blocks = [k for k in state if k.endswith("attn.qkv.linear_a_q.weight")]
        for i, k in enumerate(blocks):
            state[f"w_As.{2 * i}.weight"] = state[k]
            state[f"w_Bs.{2 * i}.weight"] = state[k.replace("linear_a_q", "linear_b_q")]
    torch.save(state, path)


@pytest.mark.parametrize("samed", [False, True], ids=["mesam", "samed-lora"])
def test_samrs_reproduces_mesams_forward_pass(tmp_path, samed):
    ref = reference(lora_rank=4 if samed else 0)
    path = tmp_path / "mesam.pth"
    save_mesam(ref, path, samed)
    model = load_mesam_checkpoint(path, BASE).eval()
    assert model.config.variant == "mesam"
    assert model.config.lora_rank == (4 if samed else 0)
    images = torch.randint(0, 256, (2, 3, 128, 128)).float()
    with torch.no_grad():
        expected = ref(images)
        got = model(images)
    assert got.shape == expected.shape == (2, 4, 32, 32)
    agree = (got.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agree >= 0.999
    assert (got - expected).abs().max().item() < 1e-4
    # not vacuous: the classes are not constant, and another variant disagrees
    assert len(torch.unique(expected.argmax(1))) > 1
    v1 = MeSAMConfig.from_dict({**model.config.to_dict(), "wiring": "additive"})
    other = type(model)(v1).eval()
    other.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        assert (other(images) - expected).abs().max().item() > 1e-2


def test_wrong_files_are_refused_with_one_message(tmp_path):
    ref = reference(lora_rank=0)
    state = ref.state_dict()
    path = tmp_path / "bad.pth"
    torch.save(
        {k: v for k, v in state.items() if k != "image_encoder.blocks.3.proj_lamb.bias"}, path
    )
    with pytest.raises(CheckpointError, match=r"1 missing tensors \(e.g. .*blocks\.3\.mixer"):
        load_mesam_checkpoint(path, BASE)
    bad = dict(state)
    bad["image_encoder.blocks.0.conv_fuse_lamb.weight"] = torch.zeros(5, 1, 3, 3)
    torch.save(bad, path)
    with pytest.raises(CheckpointError, match="another shape"):
        load_mesam_checkpoint(path, BASE)
    torch.save({k: v for k, v in state.items() if "_lamb" not in k}, path)
    with pytest.raises(CheckpointError, match="not a MeSAM checkpoint"):
        load_mesam_checkpoint(path, BASE)
    torch.save(state, path)
    with pytest.raises(CheckpointError, match="match no SAM size"):
        load_mesam_checkpoint(path)  # a 96-wide encoder without an explicit architecture


def test_convert_mesam_writes_a_run_predict_and_evaluate_read(tmp_path):
    build = tmp_path / "build"
    make_seg_build(build, n_train=2, n_val=2, size=64, background=True)
    torch.manual_seed(0)
    arch = {**ARCH, "num_classes": 2}
    ref = ReferenceMeSAM(arch).eval()
    path = tmp_path / "mesam.pth"
    torch.save(ref.state_dict(), path)
    run = tmp_path / "run"
    with pytest.raises(DataError, match="predicts 2 classes"):
        convert_mesam(path, build, tmp_path / "x", classes=None, base=BASE)  # 2 vs DOTA's 15
    summary = convert_mesam(path, build, run, classes=["plane", "ship"], base=BASE)
    assert summary["classes"] == ["plane", "ship"]
    loaded = load_run(run, which="last", device="cpu")
    images = torch.randint(0, 256, (1, 3, 128, 128)).float()
    with torch.no_grad():
        torch.testing.assert_close(loaded.model(images), ref(images), atol=1e-4, rtol=1e-4)
    config = json.loads((run / "config.json").read_text())
    assert config["base"]["converted_from"].endswith("mesam.pth")
    assert config["model_config"]["wiring"] == "mesam"
    runner = CliRunner()
    res = runner.invoke(
        main,
        ["evaluate-seg", "--run", str(run), "--data", str(build), "--split", "val",
         "--weights", "last", "--device", "cpu", "--num-workers", "0", "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    report = json.loads(res.output.strip().splitlines()[-1])
    assert 0.0 <= report["miou"] <= 1.0
    out = tmp_path / "pred"
    res = runner.invoke(
        main,
        ["predict", "--run", str(run), "--images", str(build / "images"), "--out", str(out),
         "--weights", "last", "--device", "cpu"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert len(list(out.rglob("*.png"))) == 4
    # a second conversion into the same folder is refused
    res = runner.invoke(main, ["convert-mesam", str(path), "--data", str(build), "--out", str(run)])
    assert res.exit_code != 0 and "already holds a run" in res.output


def test_old_runs_load_as_samrs_v1():
    old = MeSAMConfig.from_name("tiny", 2, 64, 4, "samrs-v1").to_dict()
    for key in ("wiring", "multiscale", "fusion", "correction_act"):
        del old[key]  # what runs written before the variants recorded
    cfg = MeSAMConfig.from_dict(old)
    assert cfg.variant == "samrs-v1"
    assert MeSAMConfig.from_name("tiny", 2).variant == "mesam"
