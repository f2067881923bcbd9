"""Low-rank adaptation (LoRA) of the encoder's fused qkv projections, on q and v (SAMed).

``W_qkv x`` becomes ``W_qkv x + [B_q A_q x, 0, B_v A_v x]`` with rank-``r`` matrices; ``A`` is
Kaiming-uniform and ``B`` zero, so an adapted layer starts out equal to the pretrained one.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

LORA_MARKER = "lora_"
"""Every LoRA parameter name contains this string (used to select what is trained)."""


class LoRAQKV(nn.Linear):
    """A ``dim -> 3 * dim`` qkv projection with rank-``rank`` updates on q and v.

    It subclasses :class:`torch.nn.Linear`, so the pretrained ``weight`` / ``bias`` keep their
    state-dict names (``...attn.qkv.weight``) and SAM checkpoints load unchanged.
    """

    def __init__(self, dim: int, rank: int, bias: bool = True) -> None:
        super().__init__(dim, 3 * dim, bias=bias)
        self.dim = dim
        self.rank = rank
        if rank > 0:
            self.lora_q_a = nn.Linear(dim, rank, bias=False)
            self.lora_q_b = nn.Linear(rank, dim, bias=False)
            self.lora_v_a = nn.Linear(dim, rank, bias=False)
            self.lora_v_b = nn.Linear(rank, dim, bias=False)
            self.reset_lora()

    def reset_lora(self) -> None:
        """A: Kaiming-uniform (as ``nn.Linear``), B: zero -> the update starts at zero."""
        if self.rank == 0:
            return
        for a, b in ((self.lora_q_a, self.lora_q_b), (self.lora_v_a, self.lora_v_b)):
            nn.init.kaiming_uniform_(a.weight, a=math.sqrt(5))
            nn.init.zeros_(b.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.linear(x, self.weight, self.bias)
        if self.rank == 0:
            return out
        q, k, v = out.split(self.dim, dim=-1)
        q = q + self.lora_q_b(self.lora_q_a(x))
        v = v + self.lora_v_b(self.lora_v_a(x))
        return torch.cat((q, k, v), dim=-1)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, lora_rank={self.rank}"
