"""MeSAM network: schedules, blocks of every SAM size, LoRA, zero-init equivalence, loading."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from segment_anything.modeling import ImageEncoderViT

from samrs.mesam.checkpoint import CheckpointError, load_sam_checkpoint
from samrs.mesam.config import (
    BASE_LOW_HEADS,
    MODEL_SPECS,
    MeSAMConfig,
    low_heads_schedule,
    multiscale_weights,
)
from samrs.mesam.lora import LoRAQKV
from samrs.mesam.model import (
    InceptionMixer,
    MeSAMBlock,
    build_mesam,
    configure_trainable,
    fuse_logits,
)
from samrs.segmenters.models import SAM_MODELS, build_random_model

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny(
    num_classes: int = 3, image_size: int = 64, lora_rank: int = 4, variant: str = "mesam"
) -> MeSAMConfig:
    return MeSAMConfig.from_name("tiny", num_classes, image_size, lora_rank, variant)


# --- schedules ------------------------------------------------------------------------------


def test_vit_b_schedule_is_mesams():
    assert low_heads_schedule(12, 12) == BASE_LOW_HEADS
    plans = MeSAMConfig.from_name("vit_b", 5).block_plans()
    assert [p.low for p in plans] == [h * 64 for h in BASE_LOW_HEADS]
    assert [p.high for p in plans][:2] == [704, 704]
    assert [p.window_size for p in plans] == [0 if i in (2, 5, 8, 11) else 14 for i in range(12)]
    assert [p.kernel_size for p in plans] == [5 if i in (2, 5, 8, 11) else 3 for i in range(12)]


@pytest.mark.parametrize("model", ["vit_b", "vit_l", "vit_h", "tiny"])
def test_schedule_scales_to_depth(model):
    spec = MODEL_SPECS[model]
    heads = low_heads_schedule(spec.depth, spec.num_heads)
    assert len(heads) == spec.depth
    assert all(1 <= h <= spec.num_heads - 1 for h in heads)
    assert list(heads) == sorted(heads)  # shallow: convolution, deep: attention
    if spec.num_heads > 2:
        assert heads[0] < heads[-1]
    for plan in MeSAMConfig.from_name(model, 3).block_plans():
        assert plan.low + plan.high == spec.embed_dim and plan.high % 2 == 0


def test_multiscale_weights():
    assert multiscale_weights(4) == pytest.approx((0.4, 0.3, 0.2, 0.1))
    assert multiscale_weights(2) == pytest.approx((2 / 3, 1 / 3))
    assert sum(multiscale_weights(7)) == pytest.approx(1.0)


def test_vit_b_mixers_add_the_published_parameter_count():
    plans = MeSAMConfig.from_name("vit_b", 5).block_plans()
    n = sum(
        p.numel()
        for plan in plans
        for p in InceptionMixer(768, plan.high, plan.low, plan.kernel_size).parameters()
    )
    assert n == 12_593_536  # "about 12.6M" in the MeSAM paper (bias-free fusion conv)
    v1 = sum(
        p.numel()
        for plan in plans
        for p in InceptionMixer(768, plan.high, plan.low, plan.kernel_size, False).parameters()
    )
    assert v1 - n == sum(2 * plan.high + plan.low for plan in plans)  # samrs-v1: conv bias


@pytest.mark.parametrize("model", ["vit_l", "vit_h"])
def test_full_width_blocks_forward_backward(model):
    """The first (window) block and the first global block at full width, small input."""
    cfg = MeSAMConfig.from_name(model, 3, image_size=64)  # 4 x 4 grid
    spec = MODEL_SPECS[model]
    plans = cfg.block_plans()
    for plan in (plans[0], plans[spec.global_attn_indexes[0]]):
        torch.manual_seed(0)
        block = MeSAMBlock(spec.embed_dim, spec.num_heads, plan, cfg.grid, 4.0, lora_rank=4)
        configure = [p for n, p in block.named_parameters() if "lora_" in n or "mixer" in n]
        x = torch.randn(1, cfg.grid, cfg.grid, spec.embed_dim, requires_grad=True)
        y = block(x)
        assert y.shape == x.shape
        y.square().mean().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all()
        assert all(p.grad is not None for p in configure)


# --- the whole tiny network -----------------------------------------------------------------


@pytest.mark.parametrize("image_size", [64, 96])
def test_tiny_forward_backward_shapes(image_size):
    cfg = tiny(num_classes=5, image_size=image_size)
    model = build_mesam(cfg, seed=0)
    images = torch.randint(0, 256, (2, 3, image_size, image_size), dtype=torch.uint8)
    out = model.forward_all(images)
    side = image_size // 4
    for key in ("logits", "sam_logits", "correction_logits"):
        assert out[key].shape == (2, 6, side, side)
    out["logits"].logsumexp(1).mean().backward()
    grads = {n: p.grad for n, p in model.named_parameters()}
    assert all(g is None for n, g in grads.items() if not _trained(model, n))
    # every trained parameter receives a gradient (DDP without find_unused_parameters)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    with pytest.raises(ValueError, match="expected images of"):
        model(torch.zeros(1, 3, image_size + 16, image_size + 16))


def _trained(model, name: str) -> bool:
    return dict(model.named_parameters())[name].requires_grad


def test_only_lora_and_new_modules_train_in_the_encoder():
    model = build_mesam(tiny(), seed=0)
    summary = configure_trainable(model)
    enc_trained = [n for n, p in model.image_encoder.named_parameters() if p.requires_grad]
    assert enc_trained, "the encoder must have trained parameters"
    assert all(".lora_" in n or ".mixer." in n or n == "ms_scale" for n in enc_trained)
    for i in range(len(model.image_encoder.blocks)):
        for m in ("lora_q_a", "lora_q_b", "lora_v_a", "lora_v_b"):
            assert f"blocks.{i}.attn.qkv.{m}.weight" in enc_trained
    frozen = [n for n, p in model.image_encoder.named_parameters() if not p.requires_grad]
    for name in ("patch_embed.proj.weight", "pos_embed", "blocks.0.attn.qkv.weight",
                 "blocks.0.attn.proj.weight", "blocks.1.attn.rel_pos_h", "blocks.0.mlp.lin1.weight",
                 "neck.0.weight"):  # fmt: skip
        assert name in frozen
    assert all(p.requires_grad for p in model.mask_decoder.parameters())
    prompt = {n for n, p in model.prompt_encoder.named_parameters() if p.requires_grad}
    assert prompt == {"no_mask_embed.weight"}
    lora = sum(p.numel() for n, p in model.named_parameters() if ".lora_" in n)
    assert summary.groups["lora"] == lora == 4 * 2 * (64 * 4 + 4 * 64)  # blocks x (q, v)
    assert summary.trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert "trainable parameters" in summary.describe()


def test_lora_starts_at_zero_and_touches_only_q_and_v():
    torch.manual_seed(0)
    layer = LoRAQKV(8, rank=2)
    plain = torch.nn.Linear(8, 24)
    plain.load_state_dict({"weight": layer.weight, "bias": layer.bias})
    x = torch.randn(3, 8)
    assert torch.equal(layer(x), plain(x))
    assert layer.lora_q_a.weight.abs().sum() > 0 and layer.lora_q_b.weight.abs().sum() == 0
    with torch.no_grad():
        layer.lora_q_b.weight.fill_(0.5)
        layer.lora_v_b.weight.fill_(-0.5)
    diff = (layer(x) - plain(x)).abs().sum(0)
    assert (diff[:8] > 0).all() and (diff[8:16] == 0).all() and (diff[16:] > 0).all()
    no_lora = LoRAQKV(8, rank=0)
    assert not any("lora" in n for n, _ in no_lora.named_parameters())


def test_samrs_v1_zero_init_encoder_equals_sam_encoder():
    cfg = tiny(image_size=64, variant="samrs-v1")
    sam_cfg = SAM_MODELS["tiny"]
    torch.manual_seed(1)
    sam_encoder = ImageEncoderViT(
        img_size=64, patch_size=16, embed_dim=cfg.embed_dim, depth=cfg.depth,
        num_heads=cfg.num_heads, mlp_ratio=4, out_chans=cfg.prompt_dim, qkv_bias=True,
        norm_layer=lambda d: torch.nn.LayerNorm(d, eps=1e-6), use_rel_pos=True,
        global_attn_indexes=sam_cfg.encoder_global_attn_indexes,
        window_size=sam_cfg.window_size,
    )  # fmt: skip
    with torch.no_grad():  # SAM zero-initialises these: make them matter
        for name, p in sam_encoder.named_parameters():
            if "rel_pos" in name or name == "pos_embed":
                p.normal_(0, 0.5)
    model = build_mesam(cfg, seed=0)
    missing, unexpected = model.image_encoder.load_state_dict(
        sam_encoder.state_dict(), strict=False
    )
    assert unexpected == []
    assert all(".lora_" in k or ".mixer." in k or k == "ms_scale" for k in missing)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        expected = sam_encoder(x)
        embedding, vit = model.image_encoder(x)
    assert embedding.shape == expected.shape
    torch.testing.assert_close(embedding, expected, atol=2e-5, rtol=1e-5)
    assert vit.shape == (2, cfg.embed_dim, 4, 4)
    # the equality is not vacuous: a non-zero mixer output changes the embedding
    with torch.no_grad():
        model.image_encoder.blocks[0].mixer.proj.weight.normal_(0, 0.1)
        assert not torch.allclose(model.image_encoder(x)[0], expected, atol=1e-3)


def test_fuse_logits_batch_mean_is_mesams_rule_with_gradient():
    sam = torch.randn(2, 3, 4, 4, requires_grad=True)
    corr = torch.randn(2, 3, 4, 4, requires_grad=True)
    fused = fuse_logits(sam, corr)  # default: MeSAM's batch-mean rule
    expected = 0.9 * sam + 0.1 * corr * (sam.mean() / corr.mean())
    torch.testing.assert_close(fused, expected)
    fused.sum().backward()
    assert corr.grad is not None and sam.grad is not None
    # the scale couples the images of a batch (MeSAM's behaviour)
    assert not torch.allclose(fuse_logits(sam[:1], corr[:1]), fused[:1])


def test_fuse_logits_rms_is_safe_and_per_image():
    sam = torch.randn(2, 3, 4, 4)
    assert torch.equal(fuse_logits(sam, torch.zeros_like(sam), mode="rms"), 0.9 * sam)
    corr = torch.randn(2, 3, 4, 4) * 1e-12
    fused = fuse_logits(sam, corr, mode="rms")
    assert torch.isfinite(fused).all()
    big = torch.randn(2, 3, 4, 4) * 1e6
    single = fuse_logits(sam[:1], big[:1], mode="rms")
    torch.testing.assert_close(fuse_logits(sam, big, mode="rms")[:1], single)  # per image
    # the correction term is brought to the SAM logits' magnitude
    part = single - 0.9 * sam[:1]
    assert part.square().mean().sqrt() == pytest.approx(0.1 * sam[:1].square().mean().sqrt())


def test_build_is_seeded():
    a = build_mesam(tiny(), seed=3).state_dict()
    b = build_mesam(tiny(), seed=3).state_dict()
    c = build_mesam(tiny(), seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["image_encoder.blocks.0.attn.qkv.weight"],
                           c["image_encoder.blocks.0.attn.qkv.weight"])  # fmt: skip


# --- SAM checkpoints ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_sam_checkpoint(tmp_path_factory):
    """A SAM checkpoint of the tiny architecture at SAM's 1024-pixel geometry."""
    sam = build_random_model(SAM_MODELS["tiny"], seed=5)
    state = sam.state_dict()
    with torch.no_grad():
        for k in state:
            if "rel_pos" in k:
                state[k].normal_()
    path = tmp_path_factory.mktemp("ckpt") / "sam_tiny.pth"
    torch.save(state, path)
    return path, state


def test_load_sam_checkpoint_resizes_and_skips(tiny_sam_checkpoint):
    path, state = tiny_sam_checkpoint
    model = build_mesam(tiny(image_size=64), seed=0)
    report = load_sam_checkpoint(model, path)
    assert report.model == "tiny"
    assert set(report.resized) == {
        "image_encoder.pos_embed",
        "image_encoder.blocks.1.attn.rel_pos_h", "image_encoder.blocks.1.attn.rel_pos_w",
        "image_encoder.blocks.3.attn.rel_pos_h", "image_encoder.blocks.3.attn.rel_pos_w",
    }  # fmt: skip
    own = model.state_dict()
    assert own["image_encoder.pos_embed"].shape == (1, 4, 4, 64)
    assert own["image_encoder.blocks.1.attn.rel_pos_h"].shape == (7, 32)
    # window blocks keep their 14-pixel windows' tables unchanged
    assert torch.equal(own["image_encoder.blocks.0.attn.rel_pos_h"],
                       state["image_encoder.blocks.0.attn.rel_pos_h"])  # fmt: skip
    for key in ("image_encoder.blocks.2.attn.qkv.weight", "mask_decoder.iou_token.weight",
                "mask_decoder.transformer.layers.0.self_attn.q_proj.weight",
                "prompt_encoder.no_mask_embed.weight", "image_encoder.neck.0.weight"):  # fmt: skip
        assert torch.equal(own[key], state[key])
    assert all(k.startswith(("mask_decoder.mask_tokens", "mask_decoder.output_hypernetworks_mlps",
                             "mask_decoder.iou_prediction_head")) for k in report.skipped)  # fmt: skip
    assert "mask_decoder.iou_prediction_head.layers.0.weight" in report.skipped
    assert "mask_decoder.mask_tokens.weight" in report.initialised
    # the resized position embedding is the bilinear downscale of the 64 x 64 one
    pos = state["image_encoder.pos_embed"].permute(0, 3, 1, 2)
    expected = torch.nn.functional.interpolate(pos, size=(4, 4), mode="bilinear")
    torch.testing.assert_close(own["image_encoder.pos_embed"], expected.permute(0, 2, 3, 1))


def test_load_sam_checkpoint_errors(tiny_sam_checkpoint, tmp_path):
    path, state = tiny_sam_checkpoint
    vit_cfg = dataclasses.replace(tiny(), model="vit_b", embed_dim=768, num_heads=12, depth=12,
                                  global_attn_indexes=(2, 5, 8, 11))  # fmt: skip
    with pytest.raises(CheckpointError, match="checkpoint is tiny but the model is vit_b"):
        load_sam_checkpoint(_Stub(vit_cfg), path)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=r"truncated\.pth"):
        load_sam_checkpoint(build_mesam(tiny(), seed=0), truncated)
    with pytest.raises(CheckpointError, match="not found"):
        load_sam_checkpoint(build_mesam(tiny(), seed=0), tmp_path / "missing.pth")
    partial = {k: v for k, v in state.items() if "blocks.2.mlp" not in k}
    torch.save(partial, tmp_path / "partial.pth")
    with pytest.raises(CheckpointError, match="missing from the checkpoint"):
        load_sam_checkpoint(build_mesam(tiny(), seed=0), tmp_path / "partial.pth")


class _Stub:
    """Only what the loader reads before touching tensors (avoids building a vit_b)."""

    def __init__(self, config: MeSAMConfig) -> None:
        self.config = config


@pytest.mark.slow
def test_full_vit_b_builds_and_backpropagates():
    model = build_mesam(MeSAMConfig.from_name("vit_b", 3, image_size=64), seed=0)
    summary = configure_trainable(model)
    assert summary.groups["lora"] == 12 * 2 * (768 * 4 + 4 * 768)
    assert summary.groups["encoder_new"] == 12_593_536  # mixers (fixed multiscale weights)
    logits = model(torch.zeros(1, 3, 64, 64))
    assert logits.shape == (1, 4, 16, 16)
    logits.sum().backward()
    assert model.image_encoder.blocks[0].attn.qkv.weight.grad is None
    assert model.image_encoder.blocks[0].attn.qkv.lora_q_b.weight.grad is not None
