"""An independent, small re-implementation of MeSAM's forward pass, with MeSAM's key names.

Written from the MeSAM paper and the description of its model code (github.com/Magic-lem/MeSAM:
``image_encoder_iformer.py``, ``mask_decoder_iformer.py``, ``sam_hq.py``), not from samrs's
modules, so that ``tests/mesam/test_convert.py`` can check that a checkpoint saved in MeSAM's
format gives the same logits through ``samrs``. Only the parts MeSAM leaves unchanged come
from segment-anything (the decoder's two-way transformer and the prompt encoder).

Explicit loops and plain tensor algebra; eval mode only (no dropout).
"""

from __future__ import annotations

import torch
from segment_anything.modeling import PromptEncoder, TwoWayTransformer
from torch import nn
from torch.nn import functional as F


class LN2d(nn.Module):
    """LayerNorm over the channels of a (B, C, H, W) tensor (keys ``weight``, ``bias``)."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(c))
        self.bias = nn.Parameter(torch.zeros(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(1, keepdim=True)
        var = (x - mu).pow(2).mean(1, keepdim=True)
        return (
            self.weight[:, None, None] * (x - mu) / torch.sqrt(var + 1e-6)
            + self.bias[:, None, None]
        )


class Attn(nn.Module):
    """Multi-head attention with SAM's decomposed relative positions (explicit softmax).

    With ``lora_rank`` > 0 the qkv layer is SAMed's wrapper: ``qkv.qkv`` plus rank-r
    ``linear_a_q/linear_b_q`` and ``linear_a_v/linear_b_v``.
    """

    def __init__(self, dim: int, heads: int, size: int, lora_rank: int) -> None:
        super().__init__()
        self.heads = heads
        self.rank = lora_rank
        if lora_rank:
            self.qkv = nn.Module()
            self.qkv.qkv = nn.Linear(dim, 3 * dim)
            for name, shape in (("a", (dim, lora_rank)), ("b", (lora_rank, dim))):
                for t in ("q", "v"):
                    setattr(self.qkv, f"linear_{name}_{t}", nn.Linear(*shape, bias=False))
        else:
            self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hd = dim // heads
        self.rel_pos_h = nn.Parameter(torch.randn(2 * size - 1, hd) * 0.1)
        self.rel_pos_w = nn.Parameter(torch.randn(2 * size - 1, hd) * 0.1)

    def project(self, x: torch.Tensor) -> torch.Tensor:
        if not self.rank:
            return self.qkv(x)
        m = self.qkv
        out = m.qkv(x)
        d = x.shape[-1]
        dq = m.linear_b_q(m.linear_a_q(x))
        dv = m.linear_b_v(m.linear_a_v(x))
        return out + torch.cat([dq, torch.zeros_like(dq), dv], dim=-1)[..., : 3 * d]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, d = x.shape
        hd = d // self.heads
        qkv = self.project(x).reshape(b, h * w, 3, self.heads, hd)
        q, k, v = (qkv[:, :, i].transpose(1, 2) for i in range(3))  # (b, heads, hw, hd)
        logits = (q * hd**-0.5) @ k.transpose(-1, -2)
        ih = torch.arange(h)[:, None] - torch.arange(h)[None, :] + h - 1
        iw = torch.arange(w)[:, None] - torch.arange(w)[None, :] + w - 1
        rh, rw = self.rel_pos_h[ih], self.rel_pos_w[iw]  # (h, h, hd), (w, w, hd)
        qg = q.reshape(b, self.heads, h, w, hd)
        bias_h = torch.einsum("bnyxc,ykc->bnyxk", qg, rh)  # key row k
        bias_w = torch.einsum("bnyxc,xkc->bnyxk", qg, rw)  # key column k
        bias = bias_h[..., :, None] + bias_w[..., None, :]  # (b, n, h, w, kh, kw)
        logits = logits + bias.reshape(b, self.heads, h * w, h * w)
        out = logits.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, h, w, d))


class HighMixer(nn.Module):
    """conv1 (1x1) -> proj1 (depthwise kxk) -> ReLU on the first half; max-pool -> proj2 (1x1)
    -> ReLU on the second half; concatenated."""

    def __init__(self, c: int, k: int) -> None:
        super().__init__()
        half = c // 2
        self.conv1 = nn.Conv2d(half, c, 1, bias=False)
        self.proj1 = nn.Conv2d(c, c, k, padding=k // 2, groups=c, bias=False)
        self.proj2 = nn.Conv2d(half, c, 1)
        self.k = k

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = x.shape[1] // 2
        a = F.relu(self.proj1(self.conv1(x[:, :half])))
        p = F.max_pool2d(x[:, half:], self.k, stride=1, padding=self.k // 2)
        return torch.cat([a, F.relu(self.proj2(p))], 1)


class Block(nn.Module):
    def __init__(
        self, dim: int, heads: int, low_heads: int, window: int, grid: int, lora_rank: int
    ) -> None:
        super().__init__()
        self.window = window
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attn(dim, heads, window or grid, lora_rank)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Module()
        self.mlp.lin1 = nn.Linear(dim, 4 * dim)
        self.mlp.lin2 = nn.Linear(4 * dim, dim)
        self.high = dim - low_heads * (dim // heads)
        cat = 2 * self.high + (dim - self.high)
        self.high_mixer_lamb = HighMixer(self.high, 3 if window else 5)
        self.conv_fuse_lamb = nn.Conv2d(cat, cat, 3, padding=1, groups=cat, bias=False)
        self.proj_lamb = nn.Conv2d(cat, dim, 1)

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        if not self.window:
            return self.attn(x)
        b, h, w, d = x.shape
        s = self.window
        ph, pw = -h % s, -w % s
        xp = F.pad(x, (0, 0, 0, pw, 0, ph))
        H, W = h + ph, w + pw
        win = xp.reshape(b, H // s, s, W // s, s, d).permute(0, 1, 3, 2, 4, 5).reshape(-1, s, s, d)
        out = self.attn(win).reshape(b, H // s, W // s, s, s, d).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(b, H, W, d)[:, :h, :w]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.norm1(x)
        att = self.attend(n).permute(0, 3, 1, 2)
        mixed = self.high_mixer_lamb(n[..., : self.high].permute(0, 3, 1, 2))
        y = torch.cat([mixed, att[:, self.high :]], 1)
        y = self.proj_lamb(y + self.conv_fuse_lamb(y)).permute(0, 2, 3, 1)
        x = x + y
        return x + self.mlp.lin2(F.gelu(self.mlp.lin1(self.norm2(x))))


class MLP3(nn.Module):
    def __init__(self, i: int, h: int, o: int) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(i, h), nn.Linear(h, h), nn.Linear(h, o)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for j, layer in enumerate(self.layers):
            x = layer(x) if j == 2 else F.relu(layer(x))
        return x


def _up(cin: int, cmid: int, cout: int, act: type[nn.Module]) -> nn.Sequential:
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cmid, 2, 2), LN2d(cmid), act(), nn.ConvTranspose2d(cmid, cout, 2, 2)
    )


class Encoder(nn.Module):
    def __init__(self, a: dict) -> None:
        super().__init__()
        d, g = a["dim"], a["size"] // 16
        self.globals = a["globals"]
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, 16, 16)
        self.pos_embed = nn.Parameter(torch.randn(1, g, g, d) * 0.1)
        self.blocks = nn.ModuleList(
            Block(d, a["heads"], lh, 0 if i in self.globals else 14, g, a["lora_rank"])
            for i, lh in enumerate(a["low_heads"])
        )
        c = a["prompt_dim"]
        self.neck = nn.Sequential(
            nn.Conv2d(d, c, 1, bias=False),
            LN2d(c),
            nn.Conv2d(c, c, 3, padding=1, bias=False),
            LN2d(c),
        )

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.patch_embed.proj(x).permute(0, 2, 3, 1) + self.pos_embed
        inter = []
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.globals:
                inter.append(x)
        emb = self.neck(x.permute(0, 3, 1, 2))
        weights = (0.4, 0.3, 0.2, 0.1)
        vit = sum(w * e for w, e in zip(weights, inter, strict=True)).permute(0, 3, 1, 2)
        for w, e in zip(weights, inter, strict=True):
            emb = emb + w * self.neck(e.permute(0, 3, 1, 2))
        return emb, vit


class Decoder(nn.Module):
    def __init__(self, a: dict) -> None:
        super().__init__()
        c, n = a["prompt_dim"], a["num_classes"] + 1
        self.n = n
        self.transformer = TwoWayTransformer(
            depth=2, embedding_dim=c, mlp_dim=a["decoder_mlp_dim"], num_heads=a["decoder_heads"]
        )
        self.iou_token = nn.Embedding(1, c)
        self.mask_tokens = nn.Embedding(n, c)
        self.output_upscaling = nn.Sequential(
            nn.ConvTranspose2d(c, c // 4, 2, 2),
            LN2d(c // 4),
            nn.GELU(),
            nn.ConvTranspose2d(c // 4, c // 8, 2, 2),
            nn.GELU(),
        )
        self.output_hypernetworks_mlps = nn.ModuleList(MLP3(c, c, c // 8) for _ in range(n))
        self.iou_prediction_head = MLP3(c, c, n)
        self.hf_token_lamb = nn.Embedding(n, c)
        self.hf_mlp_lamb = MLP3(c, c, c // 8)
        self.compress_vit_feat_lamb = _up(a["dim"], c, c // 8, nn.ReLU)
        self.embedding_encoder_lamb = _up(c, c // 4, c // 8, nn.ReLU)
        self.embedding_maskfeature_lamb = nn.Sequential(
            nn.Conv2d(c // 8, c // 4, 3, 1, 1),
            LN2d(c // 4),
            nn.ReLU(),
            nn.Conv2d(c // 4, c // 8, 3, 1, 1),
        )

    def forward(self, emb, pe, dense, vit) -> torch.Tensor:  # type: ignore[no-untyped-def]
        b, c, h, w = emb.shape
        hq_feat = self.embedding_encoder_lamb(emb) + self.compress_vit_feat_lamb(vit)
        tokens = torch.cat(
            [self.iou_token.weight, self.mask_tokens.weight, self.hf_token_lamb.weight]
        )
        hs, src = self.transformer(emb + dense, pe.expand(b, -1, -1, -1), tokens.expand(b, -1, -1))
        up = self.output_upscaling(src.transpose(1, 2).reshape(b, c, h, w))
        up_hq = self.embedding_maskfeature_lamb(up) + hq_feat
        n = self.n
        sam = torch.stack(
            [
                torch.einsum("bc,bchw->bhw", self.output_hypernetworks_mlps[i](hs[:, 1 + i]), up)
                for i in range(n)
            ],
            1,
        )
        hq = torch.stack(
            [
                torch.einsum("bc,bchw->bhw", self.hf_mlp_lamb(hs[:, 1 + n + i]), up_hq)
                for i in range(n)
            ],
            1,
        )
        return 0.9 * sam + 0.1 * hq * (sam.mean() / hq.mean())


class ReferenceMeSAM(nn.Module):
    """``forward(images 0..255) -> fused logits (B, K+1, S/4, S/4)``.

    ``arch``: dim, heads, low_heads (per block), globals, size, prompt_dim, decoder_heads,
    decoder_mlp_dim, num_classes, lora_rank, mask_in_chans.
    """

    def __init__(self, arch: dict) -> None:
        super().__init__()
        g = arch["size"] // 16
        self.image_encoder = Encoder(arch)
        self.prompt_encoder = PromptEncoder(
            embed_dim=arch["prompt_dim"],
            image_embedding_size=(g, g),
            input_image_size=(arch["size"], arch["size"]),
            mask_in_chans=arch["mask_in_chans"],
        )
        self.mask_decoder = Decoder(arch)
        mean, std = (123.675, 116.28, 103.53), (58.395, 57.12, 57.375)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float() - self.pixel_mean) / self.pixel_std
        emb, vit = self.image_encoder(x)
        sparse, dense = self.prompt_encoder(points=None, boxes=None, masks=None)
        assert sparse.shape[1] == 0
        return self.mask_decoder(emb, self.prompt_encoder.get_dense_pe(), dense, vit)
