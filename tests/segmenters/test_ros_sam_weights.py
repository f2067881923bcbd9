"""ROS-SAM's trained weights (HQ decoder + LoRA, accelerate checkpoint folder) into an HQ-SAM
checkpoint that the sam-hq segmenter loads."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save_file

from samrs.cli import main
from samrs.segmenters import create_segmenter
from samrs.segmenters.checkpoints import CheckpointError, inspect_checkpoint, ros_sam_state
from samrs.segmenters.models import SAM_MODELS, build_random_model

RANK = 3


def ros_sam_folder(folder, drop: str | None = None):  # type: ignore[no-untyped-def]
    """A ROS-SAM checkpoint of the tiny size: model.safetensors (its HQ decoder) and
    model_1.safetensors (SAM whose blocks' qkv are wrapped in LoRA_qkv)."""
    hq = build_random_model(SAM_MODELS["tiny"], hq=True, seed=1).state_dict()
    sam = build_random_model(SAM_MODELS["tiny"], seed=2).state_dict()
    gen = torch.Generator().manual_seed(0)
    net = {k[len("mask_decoder.") :]: v for k, v in hq.items() if k.startswith("mask_decoder.")}
    enc: dict[str, torch.Tensor] = {}
    for key, value in sam.items():
        if key.endswith("attn.qkv.weight") or key.endswith("attn.qkv.bias"):
            enc[key.replace("attn.qkv.", "attn.qkv.qkv.")] = value
            if key.endswith("weight"):
                d = value.shape[1]
                base = key[: -len(".weight")]
                for t in ("q", "v"):
                    enc[f"{base}.linear_a_{t}.weight"] = torch.randn(RANK, d, generator=gen)
                    enc[f"{base}.linear_b_{t}.weight"] = torch.randn(d, RANK, generator=gen)
        else:
            enc[key] = value  # encoder, prompt encoder and SAM's own (unused) decoder
    if drop:
        net.pop(drop)
    folder.mkdir()
    save_file({k: v.contiguous() for k, v in net.items()}, str(folder / "model.safetensors"))
    save_file({k: v.contiguous() for k, v in enc.items()}, str(folder / "model_1.safetensors"))
    return net, enc


def test_ros_sam_weights_merge_into_hq_sam(tmp_path):
    net, enc = ros_sam_folder(tmp_path / "checkpoint_47")
    state = ros_sam_state(tmp_path / "checkpoint_47")
    # LoRA folded into qkv: the merged layer computes LoRA_qkv's output on any input
    base = "image_encoder.blocks.1.attn.qkv"
    x = torch.randn(5, enc[f"{base}.qkv.weight"].shape[1])
    d = x.shape[1]
    want = x @ enc[f"{base}.qkv.weight"].T + enc[f"{base}.qkv.bias"]
    want[:, :d] += x @ enc[f"{base}.linear_a_q.weight"].T @ enc[f"{base}.linear_b_q.weight"].T
    want[:, 2 * d :] += x @ enc[f"{base}.linear_a_v.weight"].T @ enc[f"{base}.linear_b_v.weight"].T
    got = x @ state[f"{base}.weight"].T + state[f"{base}.bias"]
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    assert not torch.equal(state[f"{base}.weight"], enc[f"{base}.qkv.weight"])
    # the trained HQ decoder replaces SAM's
    for key, value in net.items():
        assert torch.equal(state[f"mask_decoder.{key}"], value)
    out = tmp_path / "rossam_hq_tiny.pth"
    res = CliRunner().invoke(
        main, ["convert-ros-sam", str(tmp_path / "checkpoint_47"), "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    info, _ = inspect_checkpoint(out, hq=True)
    assert info.model == "tiny" and info.hq
    seg = create_segmenter("sam-hq", checkpoint=str(out), hq_token_only=True, device="cpu")
    loaded = seg.model.state_dict()
    torch.testing.assert_close(loaded[f"{base}.weight"], state[f"{base}.weight"])


def test_ros_sam_folder_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no ROS-SAM checkpoint files"):
        ros_sam_state(tmp_path)
    ros_sam_folder(tmp_path / "partial", drop="compress_vit_feat.0.weight")
    with pytest.raises(CheckpointError, match=r"not a complete HQ-SAM tiny checkpoint: 1 missing"):
        ros_sam_state(tmp_path / "partial")
    out = tmp_path / "x.pth"
    res = CliRunner().invoke(
        main, ["convert-ros-sam", str(tmp_path / "partial"), "--out", str(out)]
    )
    assert res.exit_code != 0 and "compress_vit_feat" in res.output and not out.exists()
