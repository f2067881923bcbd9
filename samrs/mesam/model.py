"""The MeSAM network on top of segment-anything's modeling code.

By default (variant ``mesam``, see :data:`~samrs.mesam.config.VARIANTS`) this is MeSAM's
published network (Zhou et al., TGRS 2024, and its model code):

* **Encoder blocks** (:class:`MeSAMBlock`): an :class:`InceptionMixer` works on the first
  ``high`` channels of the normalised input (1x1 conv + depthwise conv, and max-pool + 1x1
  conv, ReLU) and takes the last ``low`` channels of the attention output; the concatenation
  goes through ``z + dwconv3x3(z)`` and a 1x1 projection into the residual stream
  (``x + proj(...)``); the split follows :func:`~samrs.mesam.config.low_heads_schedule`.
* **Multiscale connections** (:class:`MeSAMImageEncoder`): the outputs ``E_k`` of the
  global-attention blocks go through SAM's neck and are added to the image embedding with
  weights :func:`~samrs.mesam.config.multiscale_weights` (0.4 / 0.3 / 0.2 / 0.1 for four
  blocks); their weighted sum (without the neck) is the ViT feature of the correction branch.
* **Decoder** (:class:`MeSAMMaskDecoder`): K+1 mask tokens (channel 0 = background or
  unlabelled, channel c+1 = class c) and K+1 correction tokens (HQ-SAM style branch fed by
  the image embedding, the multiscale ViT feature and SAM's upscaled features). The two
  logit sets are fused by :func:`fuse_logits`.
* **LoRA** (:class:`~samrs.mesam.lora.LoRAQKV`) on q and v of every encoder block (SAMed).

The ``samrs-v1`` variant (runs trained before samrs followed the published network) adds a
zero-initialised mixer to the full attention output, scales the multiscale term by a learned
per-channel factor initialised to zero, fuses with a per-image RMS ratio and uses GELU in the
correction branch. Depth-scaled mixer splits for vit_l / vit_h are a samrs extension (MeSAM's
code builds only vit_b).

There are no prompts: sparse prompt embeddings are empty and the dense embedding is SAM's
learned "no mask" embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from segment_anything.modeling import PromptEncoder, TwoWayTransformer
from segment_anything.modeling.common import LayerNorm2d, MLPBlock
from segment_anything.modeling.image_encoder import (
    Attention,
    PatchEmbed,
    get_rel_pos,
    window_partition,
    window_unpartition,
)
from segment_anything.modeling.mask_decoder import MLP
from torch import nn
from torch.nn import functional as F

from samrs.mesam.config import BlockPlan, MeSAMConfig, multiscale_weights
from samrs.mesam.lora import LORA_MARKER, LoRAQKV

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


def rel_pos_bias(
    q: torch.Tensor, rel_pos_h: torch.Tensor, rel_pos_w: torch.Tensor, size: tuple[int, int]
) -> torch.Tensor:
    """SAM's decomposed relative-position term as an additive attention bias.

    Args:
        q: (B, heads, H*W, head_dim) unscaled queries.
        rel_pos_h, rel_pos_w: (2H-1, head_dim) / (2W-1, head_dim) tables.
        size: (H, W).

    Returns:
        (B, heads, H*W, H*W) bias, the same values SAM adds to its attention logits.
    """
    h, w = size
    b, n, _, d = q.shape
    rh = get_rel_pos(h, h, rel_pos_h).to(q.dtype)
    rw = get_rel_pos(w, w, rel_pos_w).to(q.dtype)
    r_q = q.reshape(b * n, h, w, d)
    rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, rh)
    rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, rw)
    bias = rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]
    return bias.reshape(b, n, h * w, h * w)


class MeSAMAttention(Attention):
    """SAM's encoder attention with a LoRA qkv and ``scaled_dot_product_attention``.

    Parameter names are SAM's (``qkv``, ``proj``, ``rel_pos_h``, ``rel_pos_w``); the result
    equals SAM's explicit softmax attention up to floating-point rounding.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        input_size: tuple[int, int],
        lora_rank: int,
        qkv_bias: bool = True,
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias=qkv_bias, use_rel_pos=True, input_size=input_size)
        self.qkv = LoRAQKV(dim, lora_rank, bias=qkv_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, _ = x.shape
        qkv = self.qkv(x).reshape(b, h * w, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # (B, heads, N, head_dim)
        bias = rel_pos_bias(q, self.rel_pos_h, self.rel_pos_w, (h, w))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        out = out.transpose(1, 2).reshape(b, h, w, -1)
        return self.proj(out)


class InceptionMixer(nn.Module):
    """MeSAM's high-frequency mixer and channel fusion.

    Input: the first ``high`` channels of the normalised block input and the last ``low``
    channels of the attention output. Output: ``dim`` channels for the residual stream.
    ``published=True``: MeSAM's layers (bias-free depthwise fusion conv, default init);
    ``False`` (samrs-v1): a biased fusion conv and a zero-initialised output projection.
    """

    def __init__(
        self, dim: int, high: int, low: int, kernel_size: int, published: bool = True
    ) -> None:
        super().__init__()
        if high % 2:
            raise ValueError(f"mixer channels must be even, got {high}")
        self.high, self.low = high, low
        half, pad = high // 2, kernel_size // 2
        self.conv_branch = nn.Sequential(
            nn.Conv2d(half, high, 1, bias=False),
            nn.Conv2d(high, high, kernel_size, padding=pad, groups=high, bias=False),
            nn.ReLU(),
        )
        self.pool_branch = nn.Sequential(
            nn.MaxPool2d(kernel_size, stride=1, padding=pad),
            nn.Conv2d(half, high, 1),
            nn.ReLU(),
        )
        fused = 2 * high + low
        self.local = nn.Conv2d(fused, fused, 3, padding=1, groups=fused, bias=not published)
        self.proj = nn.Conv2d(fused, dim, 1)
        if not published:
            nn.init.zeros_(self.proj.weight)
            assert self.proj.bias is not None  # Conv2d's bias=True
            nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        """x, attn: (B, H, W, dim) -> (B, H, W, dim)."""
        hi = x[..., : self.high].permute(0, 3, 1, 2)
        lo = attn[..., attn.shape[-1] - self.low :].permute(0, 3, 1, 2)
        a, b = hi.chunk(2, dim=1)
        z = torch.cat((self.conv_branch(a), self.pool_branch(b), lo), dim=1)
        z = z + self.local(z)
        return self.proj(z).permute(0, 2, 3, 1)


class MeSAMBlock(nn.Module):
    """A SAM ViT block (same parameter names) with LoRA attention and an inception mixer."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        plan: BlockPlan,
        grid: int,
        mlp_ratio: float,
        lora_rank: int,
        wiring: str = "mesam",
    ) -> None:
        super().__init__()
        self.window_size = plan.window_size
        self.wiring = wiring
        size = grid if plan.window_size == 0 else plan.window_size
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = MeSAMAttention(dim, num_heads, (size, size), lora_rank)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = MLPBlock(embedding_dim=dim, mlp_dim=int(dim * mlp_ratio), act=nn.GELU)
        self.mixer = InceptionMixer(
            dim, plan.high, plan.low, plan.kernel_size, published=wiring == "mesam"
        )

    def attention(self, x: torch.Tensor) -> torch.Tensor:
        if self.window_size > 0:
            h, w = x.shape[1], x.shape[2]
            windows, pad_hw = window_partition(x, self.window_size)
            return window_unpartition(self.attn(windows), self.window_size, pad_hw, (h, w))
        return self.attn(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm1(x)
        a = self.attention(n)
        if self.wiring == "mesam":  # the mixer replaces the attention's first channels
            x = x + self.mixer(n, a)
        else:  # samrs-v1: the mixer is added to the whole attention output
            x = x + a + self.mixer(n, a)
        return x + self.mlp(self.norm2(x))


def _neck(embed_dim: int, out_chans: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(embed_dim, out_chans, kernel_size=1, bias=False),
        LayerNorm2d(out_chans),
        nn.Conv2d(out_chans, out_chans, kernel_size=3, padding=1, bias=False),
        LayerNorm2d(out_chans),
    )


class MeSAMImageEncoder(nn.Module):
    """SAM's ViT (same parameter names) with MeSAM blocks and multiscale connections."""

    def __init__(self, cfg: MeSAMConfig) -> None:
        super().__init__()
        self.img_size = cfg.image_size
        self.global_attn_indexes = tuple(cfg.global_attn_indexes)
        self.patch_embed = PatchEmbed(
            kernel_size=(cfg.patch_size, cfg.patch_size),
            stride=(cfg.patch_size, cfg.patch_size),
            in_chans=3,
            embed_dim=cfg.embed_dim,
        )
        self.pos_embed = nn.Parameter(torch.zeros(1, cfg.grid, cfg.grid, cfg.embed_dim))
        self.blocks = nn.ModuleList(
            MeSAMBlock(
                cfg.embed_dim,
                cfg.num_heads,
                plan,
                cfg.grid,
                cfg.mlp_ratio,
                cfg.lora_rank,
                cfg.wiring,
            )
            for plan in cfg.block_plans()
        )
        self.neck = _neck(cfg.embed_dim, cfg.prompt_dim)
        self.ms_weights = multiscale_weights(len(self.global_attn_indexes))
        self.ms_scale: nn.Parameter | None = None
        if cfg.multiscale == "learned":
            # samrs-v1: per-channel scale of the multiscale term, zero at start so the
            # embedding starts as SAM's
            self.ms_scale = nn.Parameter(torch.zeros(cfg.prompt_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) normalised image -> (image embedding (B, prompt_dim, g, g),
        multiscale ViT feature (B, embed_dim, g, g))."""
        x = self.patch_embed(x) + self.pos_embed
        feats: list[torch.Tensor] = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in self.global_attn_indexes:
                feats.append(x.permute(0, 3, 1, 2))
        last = len(self.blocks) - 1
        embedding = self.neck(x.permute(0, 3, 1, 2))
        ms = 0.0
        for idx, feat, weight in zip(self.global_attn_indexes, feats, self.ms_weights, strict=True):
            ms = ms + weight * (embedding if idx == last else self.neck(feat))
        if self.ms_scale is None:
            embedding = embedding + ms
        else:
            embedding = embedding + self.ms_scale.view(1, -1, 1, 1) * ms
        vit = sum(w * f for w, f in zip(self.ms_weights, feats, strict=True))
        assert isinstance(vit, torch.Tensor)  # a global block at least (multiscale_weights)
        return embedding, vit


def fuse_logits(
    sam_logits: torch.Tensor,
    correction_logits: torch.Tensor,
    sam_weight: float = 0.9,
    mode: str = "batch-mean",
    eps: float = 1e-6,
    max_scale: float = 1e3,
) -> torch.Tensor:
    """``w * sam + (1 - w) * s * correction``.

    ``batch-mean`` (MeSAM): ``s = mean(sam) / mean(correction)`` over the whole batch, with
    gradient. It is MeSAM's rule, including its faults: it explodes or flips sign when a mean
    is near zero, and an image's prediction depends on the other images of its batch.
    ``rms`` (samrs-v1): ``s = rms(sam) / max(rms(correction), eps)`` per image in float32,
    clamped to ``max_scale`` and detached, always finite and non-negative.
    """
    if mode == "batch-mean":
        scale = sam_logits.mean() / correction_logits.mean()
        return sam_weight * sam_logits + (1.0 - sam_weight) * (correction_logits * scale)
    if mode != "rms":
        raise ValueError(f"unknown fusion {mode!r}")
    dims = tuple(range(1, sam_logits.ndim))
    rms_sam = sam_logits.detach().float().pow(2).mean(dims, keepdim=True).sqrt()
    rms_corr = correction_logits.detach().float().pow(2).mean(dims, keepdim=True).sqrt()
    scale = (rms_sam / rms_corr.clamp_min(eps)).clamp(max=max_scale)
    return sam_weight * sam_logits + (1.0 - sam_weight) * correction_logits * scale.to(
        correction_logits.dtype
    )


class MeSAMMaskDecoder(nn.Module):
    """SAM's mask decoder with K+1 class tokens and an HQ-SAM-style correction branch.

    SAM's parameter names are kept for the pretrained parts (``transformer``, ``iou_token``,
    ``output_upscaling``); ``mask_tokens`` and ``output_hypernetworks_mlps`` have the same
    names but class-dependent shapes, and the IoU head is dropped (unused here).
    """

    def __init__(self, cfg: MeSAMConfig) -> None:
        super().__init__()
        d, n = cfg.prompt_dim, cfg.num_outputs
        self.sam_weight = cfg.sam_weight
        self.fusion = cfg.fusion
        self.num_mask_tokens = n
        act = nn.ReLU if cfg.correction_act == "relu" else nn.GELU
        self.transformer = TwoWayTransformer(
            depth=cfg.decoder_depth,
            embedding_dim=d,
            mlp_dim=cfg.decoder_mlp_dim,
            num_heads=cfg.decoder_heads,
        )
        self.iou_token = nn.Embedding(1, d)
        self.mask_tokens = nn.Embedding(n, d)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2),
            LayerNorm2d(d // 4),
            nn.GELU(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP(d, d, d // 8, 3) for _ in range(n))
        # correction branch
        self.correction_tokens = nn.Embedding(n, d)
        self.correction_mlp = MLP(d, d, d // 8, 3)
        self.compress_vit_feat = nn.Sequential(
            nn.ConvTranspose2d(cfg.embed_dim, d, kernel_size=2, stride=2),
            LayerNorm2d(d),
            act(),
            nn.ConvTranspose2d(d, d // 8, kernel_size=2, stride=2),
        )
        self.embedding_encoder = nn.Sequential(
            nn.ConvTranspose2d(d, d // 4, kernel_size=2, stride=2),
            LayerNorm2d(d // 4),
            act(),
            nn.ConvTranspose2d(d // 4, d // 8, kernel_size=2, stride=2),
        )
        self.embedding_maskfeature = nn.Sequential(
            nn.Conv2d(d // 8, d // 4, 3, padding=1),
            LayerNorm2d(d // 4),
            act(),
            nn.Conv2d(d // 4, d // 8, 3, padding=1),
        )

    def forward(
        self,
        image_embeddings: torch.Tensor,
        image_pe: torch.Tensor,
        dense_embeddings: torch.Tensor,
        vit_features: torch.Tensor,
    ) -> dict[str, torch.Tensor]:
        """Class logits at 4x the embedding resolution.

        Returns:
            ``logits`` (fused), ``sam_logits`` and ``correction_logits``, each
            (B, K+1, 4g, 4g).
        """
        b, d, h, w = image_embeddings.shape
        n = self.num_mask_tokens
        tokens = torch.cat(
            (self.iou_token.weight, self.mask_tokens.weight, self.correction_tokens.weight)
        )
        tokens = tokens.unsqueeze(0).expand(b, -1, -1)
        src = image_embeddings + dense_embeddings
        pos = image_pe.expand(b, -1, -1, -1)
        hs, src = self.transformer(src, pos, tokens)
        mask_out = hs[:, 1 : 1 + n]
        corr_out = hs[:, 1 + n : 1 + 2 * n]

        upscaled = self.output_upscaling(src.transpose(1, 2).reshape(b, d, h, w))
        corr_features = (
            self.embedding_maskfeature(upscaled)
            + self.embedding_encoder(image_embeddings)
            + self.compress_vit_feat(vit_features)
        )
        hyper = torch.stack(
            [mlp(mask_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)], dim=1
        )
        hyper_corr = self.correction_mlp(corr_out)
        uh, uw = upscaled.shape[-2:]
        sam_logits = (hyper @ upscaled.flatten(2)).view(b, n, uh, uw)
        corr_logits = (hyper_corr @ corr_features.flatten(2)).view(b, n, uh, uw)
        return {
            "logits": fuse_logits(sam_logits, corr_logits, self.sam_weight, self.fusion),
            "sam_logits": sam_logits,
            "correction_logits": corr_logits,
        }


class MeSAM(nn.Module):
    """The whole network: ``forward(images)`` -> class logits (B, K+1, S/4, S/4).

    ``images`` are (B, 3, S, S) RGB in 0..255 (any dtype), S = ``config.image_size``.
    """

    pixel_mean: torch.Tensor  # buffers (registered in __init__)
    pixel_std: torch.Tensor

    def __init__(self, cfg: MeSAMConfig) -> None:
        super().__init__()
        self.config = cfg
        self.image_encoder = MeSAMImageEncoder(cfg)
        self.prompt_encoder = PromptEncoder(
            embed_dim=cfg.prompt_dim,
            image_embedding_size=(cfg.grid, cfg.grid),
            input_image_size=(cfg.image_size, cfg.image_size),
            mask_in_chans=cfg.mask_in_chans,
        )
        self.mask_decoder = MeSAMMaskDecoder(cfg)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), False)

    def forward_all(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Fused, SAM and correction logits (see :meth:`MeSAMMaskDecoder.forward`)."""
        size = self.config.image_size
        if images.shape[-2:] != (size, size):
            raise ValueError(f"expected images of {size}x{size}, got {tuple(images.shape[-2:])}")
        x = (images.float() - self.pixel_mean) / self.pixel_std
        embedding, vit = self.image_encoder(x)
        g = self.config.grid
        dense = self.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        dense = dense.expand(images.shape[0], -1, g, g)
        with torch.autocast(images.device.type, enabled=False):
            # random Fourier features lose too much precision in bf16
            pe = self.prompt_encoder.get_dense_pe()
        return self.mask_decoder(embedding, pe, dense, vit)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.forward_all(images)["logits"]


def build_mesam(cfg: MeSAMConfig, seed: int | None = 0) -> MeSAM:
    """A MeSAM with random weights (seeded for reproducible frozen weights), trainable set marked.

    Construction happens on the CPU under a forked RNG, so the same ``seed`` gives the same
    weights without touching the caller's random state.
    """
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        model = MeSAM(cfg)
    configure_trainable(model)
    return model


# --- what is trained ------------------------------------------------------------------------

PARAM_GROUPS = ("lora", "encoder_new", "decoder", "prompt_encoder")


def param_group(name: str) -> str | None:
    """The trained group of a parameter name, or None for frozen parameters.

    Trained: LoRA matrices, the new encoder modules (inception mixers, multiscale scale), the
    whole mask decoder, and the prompt encoder's "no mask" embedding (the only prompt-encoder
    part used without prompts; point/box/mask-prompt parts stay frozen and unused).
    Frozen: every other pretrained encoder weight (patch embedding, positions, attention,
    MLPs, norms, neck).
    """
    if name.startswith("image_encoder."):
        if LORA_MARKER in name:
            return "lora"
        if ".mixer." in name or name == "image_encoder.ms_scale":
            return "encoder_new"
        return None
    if name.startswith("mask_decoder."):
        return "decoder"
    if name.startswith("prompt_encoder.no_mask_embed."):
        return "prompt_encoder"
    return None


@dataclass(frozen=True)
class TrainableSummary:
    """Parameter counts per trained group and in total."""

    groups: dict[str, int]
    trainable: int
    total: int

    def describe(self) -> str:
        parts = ", ".join(f"{k} {_fmt_count(v)}" for k, v in self.groups.items())
        return (
            f"trainable parameters: {_fmt_count(self.trainable)} of {_fmt_count(self.total)} "
            f"({parts}); the rest of the encoder is frozen"
        )


def _fmt_count(n: int) -> str:
    if n >= 1e6:
        return f"{n / 1e6:.2f}M"
    if n >= 1e3:
        return f"{n / 1e3:.1f}k"
    return str(n)


def configure_trainable(model: nn.Module) -> TrainableSummary:
    """Set ``requires_grad`` by :func:`param_group` and count the parameters."""
    groups = dict.fromkeys(PARAM_GROUPS, 0)
    total = 0
    for name, p in model.named_parameters():
        group = param_group(name)
        p.requires_grad_(group is not None)
        total += p.numel()
        if group is not None:
            groups[group] += p.numel()
    return TrainableSummary(groups, sum(groups.values()), total)


def trained_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Only the trained parameters (what a run checkpoint stores), detached on the CPU."""
    return {
        name: p.detach().cpu().clone()
        for name, p in model.named_parameters()
        if param_group(name) is not None
    }
