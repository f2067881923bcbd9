"""MeSAM model configurations: SAM sizes, the ``tiny`` test size, block and fusion schedules.

A :class:`MeSAMConfig` fully describes the network (it is stored in every run checkpoint), so a
run can be rebuilt without the command line that trained it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import numpy as np

from samrs.core.settings import check_known_keys
from samrs.segmenters.models import SAM_MODELS, SamConfig

BASE_LOW_HEADS = (1, 1, 3, 3, 7, 7, 7, 9, 9, 9, 11, 11)
"""MeSAM's attention-head schedule for the 12 blocks of vit_b (12 heads per block): block ``i``
keeps ``BASE_LOW_HEADS[i] * head_dim`` attention ("low-frequency") channels and gives the
remaining channels to the convolution / max-pool mixer ("high-frequency")."""
BASE_NUM_HEADS = 12


@dataclass(frozen=True)
class ModelSpec:
    """Architecture of one SAM size (encoder, prompt encoder and decoder widths)."""

    embed_dim: int
    depth: int
    num_heads: int
    global_attn_indexes: tuple[int, ...]
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0
    prompt_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    mask_in_chans: int = 16


def _spec(cfg: SamConfig) -> ModelSpec:
    return ModelSpec(
        embed_dim=cfg.encoder_embed_dim,
        depth=cfg.encoder_depth,
        num_heads=cfg.encoder_num_heads,
        global_attn_indexes=tuple(cfg.encoder_global_attn_indexes),
        window_size=cfg.window_size,
        patch_size=cfg.patch_size,
        prompt_dim=cfg.prompt_embed_dim,
        decoder_heads=cfg.decoder_num_heads,
        decoder_mlp_dim=cfg.decoder_mlp_dim,
        mask_in_chans=cfg.mask_in_chans,
    )


MODEL_SPECS: dict[str, ModelSpec] = {name: _spec(cfg) for name, cfg in SAM_MODELS.items()}
"""The SAM architectures of :data:`samrs.segmenters.models.SAM_MODELS` (``vit_b``, ``vit_l``,
``vit_h`` and the small ``tiny`` used by tests), seen from MeSAM."""
MODELS = tuple(MODEL_SPECS)


def low_heads_schedule(depth: int, num_heads: int) -> tuple[int, ...]:
    """Attention heads kept per block, MeSAM's 12-block schedule scaled to any depth and width.

    The vit_b schedule is read as a fraction of the heads (1/12 ... 11/12) and linearly
    interpolated over relative depth, then rounded to whole heads and clamped to
    ``1 .. num_heads - 1`` so every block keeps some attention and some mixer channels.
    For ``depth=12, num_heads=12`` it is exactly :data:`BASE_LOW_HEADS`.
    """
    if num_heads < 2:
        raise ValueError(f"the inception mixer needs at least 2 attention heads, got {num_heads}")
    fractions = np.asarray(BASE_LOW_HEADS, dtype=np.float64) / BASE_NUM_HEADS
    base_pos = np.arange(len(BASE_LOW_HEADS), dtype=np.float64)
    pos = np.linspace(0.0, len(BASE_LOW_HEADS) - 1, depth) if depth > 1 else np.zeros(1)
    scaled = np.interp(pos, base_pos, fractions) * num_heads
    return tuple(min(max(math.floor(v + 0.5), 1), num_heads - 1) for v in scaled)


def multiscale_weights(n: int) -> tuple[float, ...]:
    """Weights of the global blocks' features, shallow to deep: ``n, n-1, ..., 1`` over their sum.

    For four global blocks this is MeSAM's 0.4 / 0.3 / 0.2 / 0.1.
    """
    if n < 1:
        raise ValueError("at least one global-attention block is needed")
    total = n * (n + 1) / 2
    return tuple((n - i) / total for i in range(n))


VARIANT_CHOICES: dict[str, tuple[str, ...]] = {
    "wiring": ("mesam", "additive"),
    "multiscale": ("fixed", "learned"),
    "fusion": ("batch-mean", "rms"),
    "correction_act": ("relu", "gelu"),
}
"""The variant fields of :class:`MeSAMConfig` and their values."""


class VariantOptions(TypedDict):
    """The variant fields of :class:`MeSAMConfig` (values: :data:`VARIANT_CHOICES`)."""

    wiring: str
    multiscale: str
    fusion: str
    correction_act: str


VARIANTS: dict[str, VariantOptions] = {
    "mesam": {
        "wiring": "mesam",
        "multiscale": "fixed",
        "fusion": "batch-mean",
        "correction_act": "relu",
    },
    "samrs-v1": {
        "wiring": "additive",
        "multiscale": "learned",
        "fusion": "rms",
        "correction_act": "gelu",
    },
}
"""Named network variants.

* ``mesam`` (default): MeSAM's published network. A block's residual branch is
  ``proj(z + dwconv(z))`` with ``z = cat(mixer(first high channels), attention[last low])``
  (the attention output reaches the residual only through the new projection); the global
  blocks' neck outputs are added to the image embedding with the fixed weights 0.4 / 0.3 /
  0.2 / 0.1; the logits are ``0.9 sam + 0.1 hq * mean(sam) / mean(hq)`` with the means over
  the whole batch (with gradient); the correction branch uses ReLU.
* ``samrs-v1``: samrs's first network, kept to load runs trained with it: the mixer's
  zero-initialised projection is *added* to the full attention output (a block starts as the
  pretrained SAM block), the multiscale term has a learnable per-channel scale initialised to
  zero, the fusion scale is a per-image RMS ratio (detached, clamped), GELU in the correction
  branch.
"""


def variant_options(variant: str) -> VariantOptions:
    """The config fields of a named variant (``ValueError`` naming the known ones)."""
    try:
        return VARIANTS[variant].copy()
    except KeyError:
        raise ValueError(
            f"unknown MeSAM variant {variant!r}; expected one of {', '.join(VARIANTS)}"
        ) from None


@dataclass(frozen=True)
class BlockPlan:
    """What one encoder block looks like: attention window and the channel split."""

    index: int
    window_size: int  # 0 = global attention
    low: int  # attention channels kept (the last ``low`` of the attention output)
    high: int  # mixer input channels (the first ``high`` of the normalised input)
    kernel_size: int  # mixer kernel: 3 in window blocks, 5 in global blocks


@dataclass(frozen=True)
class MeSAMConfig:
    """The whole network. ``num_classes`` counts foreground classes (K); outputs are K+1."""

    model: str
    num_classes: int
    image_size: int = 512
    lora_rank: int = 4
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    global_attn_indexes: tuple[int, ...] = (2, 5, 8, 11)
    window_size: int = 14
    patch_size: int = 16
    mlp_ratio: float = 4.0
    prompt_dim: int = 256
    decoder_depth: int = 2
    decoder_heads: int = 8
    decoder_mlp_dim: int = 2048
    mask_in_chans: int = 16
    sam_weight: float = 0.9  # weight of the SAM logits in the fused output
    # network variant (see VARIANTS); the defaults are MeSAM's published network
    wiring: str = "mesam"
    multiscale: str = "fixed"
    fusion: str = "batch-mean"
    correction_act: str = "relu"

    def __post_init__(self) -> None:
        if self.image_size % self.patch_size:
            raise ValueError(
                f"image size {self.image_size} is not a multiple of the patch size "
                f"{self.patch_size}"
            )
        if self.num_classes < 1:
            raise ValueError("at least one class is needed")
        if self.lora_rank < 0:
            raise ValueError("the LoRA rank must be >= 0")
        if self.embed_dim % self.num_heads:
            raise ValueError("embed_dim must be a multiple of num_heads")
        for name, allowed in VARIANT_CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}"
                )
        bad = [i for i in self.global_attn_indexes if not 0 <= i < self.depth]
        if bad or not self.global_attn_indexes:
            raise ValueError(f"global attention indexes must lie in 0..{self.depth - 1}")

    @classmethod
    def from_name(
        cls,
        model: str,
        num_classes: int,
        image_size: int = 512,
        lora_rank: int = 4,
        variant: str = "mesam",
    ) -> MeSAMConfig:
        """The configuration of a registered size (``vit_b``, ``vit_l``, ``vit_h``, ``tiny``)
        and network variant (:data:`VARIANTS`)."""
        if model not in MODEL_SPECS:
            raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
        spec = asdict(MODEL_SPECS[model])
        spec["global_attn_indexes"] = tuple(spec["global_attn_indexes"])
        return cls(
            model=model,
            num_classes=num_classes,
            image_size=image_size,
            lora_rank=lora_rank,
            **spec,
            **variant_options(variant),
        )

    @property
    def variant(self) -> str | None:
        """The name of this configuration's variant in :data:`VARIANTS` (None if mixed)."""
        for name, options in VARIANTS.items():
            if all(getattr(self, k) == v for k, v in options.items()):
                return name
        return None

    @property
    def grid(self) -> int:
        """Side of the image embedding (image_size / patch_size)."""
        return self.image_size // self.patch_size

    @property
    def num_outputs(self) -> int:
        """Output channels: background / unlabelled channel 0 plus one per class."""
        return self.num_classes + 1

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    def block_plans(self) -> tuple[BlockPlan, ...]:
        """Per-block window size and low/high channel split."""
        plans = []
        for i, heads in enumerate(low_heads_schedule(self.depth, self.num_heads)):
            is_global = i in self.global_attn_indexes
            low = heads * self.head_dim
            high = self.embed_dim - low
            if high % 2:
                raise ValueError(f"block {i}: mixer channels ({high}) must be even")
            plans.append(
                BlockPlan(i, 0 if is_global else self.window_size, low, high, 5 if is_global else 3)
            )
        return tuple(plans)

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["global_attn_indexes"] = list(self.global_attn_indexes)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> MeSAMConfig:
        check_known_keys(cls, data, "MeSAM config key(s)")
        # runs written before the variant fields existed were trained with samrs-v1
        values: dict[str, Any] = {**VARIANTS["samrs-v1"], **data}  # a run's JSON
        values["global_attn_indexes"] = tuple(values["global_attn_indexes"])
        return cls(**values)
