"""The SAM / HQ-SAM model registry: architectures built from segment-anything's modules.

``vit_b``, ``vit_l`` and ``vit_h`` are the published configurations (the same numbers as
``segment_anything.build_sam``). ``tiny`` is a small configuration with exactly the same code
path, for tests and CPU benchmarks; its weights are random, the shipped ``builtin:tiny``
(trained by ``samrs pretrain``) or come from another checkpoint saved from it:

========================  =====  =====  =====  ====
setting                   vit_b  vit_l  vit_h  tiny
========================  =====  =====  =====  ====
encoder embed dim           768   1024   1280    64
encoder depth                12     24     32     4
encoder heads                12     16     16     2
global attention blocks   2,5,8,11  5,11,17,23  7,15,23,31  1,3
prompt / decoder width      256    256    256    32
decoder MLP width          2048   2048   2048   128
decoder heads                 8      8      8     2
IoU head hidden width       256    256    256    32
input size                 1024   1024   1024   512
========================  =====  =====  =====  ====

The published models use a 1024-pixel input (64 x 64 image embedding, 256 x 256
low-resolution masks); ``tiny`` uses 512 pixels (32 x 32 embedding, 128 x 128 masks), the
same code path at a quarter of the pixels, so that it can be trained from scratch on 2 CPU
cores (``samrs pretrain``, shipped as ``builtin:tiny``). All use patch size 16 and 14-pixel
attention windows. On 2 CPU cores ``tiny`` encodes an image in well under 0.1 s and decodes
20 boxes in a few tens of ms.

HQ-SAM (``segment-anything-hq``) uses the same encoder and prompt encoder and its
``MaskDecoderHQ``; its package cannot be imported without ``timm`` (only its TinyViT needs
it), so :func:`hq_modules` loads the modules it needs directly from the package's files then.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class SamConfig:
    """One SAM architecture."""

    name: str
    encoder_embed_dim: int
    encoder_depth: int
    encoder_num_heads: int
    encoder_global_attn_indexes: tuple[int, ...]
    prompt_embed_dim: int = 256
    decoder_mlp_dim: int = 2048
    decoder_num_heads: int = 8
    iou_head_hidden_dim: int = 256
    image_size: int = 1024
    patch_size: int = 16
    window_size: int = 14
    mask_in_chans: int = 16

    @property
    def embedding_size(self) -> int:
        """Side of the image embedding grid (64 for a 1024 input)."""
        return self.image_size // self.patch_size

    @property
    def low_res_size(self) -> int:
        """Side of the decoder's low-resolution mask logits (4x the embedding grid)."""
        return 4 * self.embedding_size


SAM_MODELS: dict[str, SamConfig] = {
    "vit_b": SamConfig("vit_b", 768, 12, 12, (2, 5, 8, 11)),
    "vit_l": SamConfig("vit_l", 1024, 24, 16, (5, 11, 17, 23)),
    "vit_h": SamConfig("vit_h", 1280, 32, 16, (7, 15, 23, 31)),
    "tiny": SamConfig(
        "tiny", 64, 4, 2, (1, 3),
        prompt_embed_dim=32, decoder_mlp_dim=128, decoder_num_heads=2, iou_head_hidden_dim=32,
        image_size=512,
    ),
}  # fmt: skip
"""Model name -> architecture."""

MODEL_NAMES = tuple(SAM_MODELS)


def sam_modules() -> types.SimpleNamespace:
    """segment-anything's modeling classes."""
    from segment_anything import modeling

    return types.SimpleNamespace(
        Sam=modeling.Sam,
        ImageEncoderViT=modeling.ImageEncoderViT,
        PromptEncoder=modeling.PromptEncoder,
        MaskDecoder=modeling.MaskDecoder,
        TwoWayTransformer=modeling.TwoWayTransformer,
    )


_HQ_PRIVATE = "_samrs_segment_anything_hq"


def hq_modules() -> types.SimpleNamespace:
    """segment-anything-hq's modeling classes (``Sam``, ``ImageEncoderViT``, ``MaskDecoderHQ``...).

    Imported normally when possible. The package's ``__init__`` imports TinyViT, which needs
    ``timm``; without it the needed modules are loaded from the package's files under a private
    name, leaving ``sys.modules['segment_anything_hq']`` untouched.
    """
    try:
        from segment_anything_hq import modeling
    except ImportError:
        modeling = _load_hq_privately()
    return types.SimpleNamespace(
        Sam=modeling.Sam,
        ImageEncoderViT=modeling.ImageEncoderViT,
        PromptEncoder=modeling.PromptEncoder,
        MaskDecoderHQ=modeling.MaskDecoderHQ,
        TwoWayTransformer=modeling.TwoWayTransformer,
    )


def _load_hq_privately() -> types.SimpleNamespace:
    spec = importlib.util.find_spec("segment_anything_hq")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("segment-anything-hq is not installed (pip install segment-anything-hq)")
    modeling_dir = Path(next(iter(spec.submodule_search_locations))) / "modeling"
    if _HQ_PRIVATE not in sys.modules:
        package = types.ModuleType(_HQ_PRIVATE)
        package.__path__ = [str(modeling_dir)]  # a package whose modules are modeling/*.py
        sys.modules[_HQ_PRIVATE] = package
    names = {
        "Sam": "sam",
        "ImageEncoderViT": "image_encoder",
        "MaskDecoderHQ": "mask_decoder_hq",
        "PromptEncoder": "prompt_encoder",
        "TwoWayTransformer": "transformer",
    }
    return types.SimpleNamespace(
        **{
            cls: getattr(importlib.import_module(f"{_HQ_PRIVATE}.{mod}"), cls)
            for cls, mod in names.items()
        }
    )


def build_model(config: SamConfig, hq: bool = False) -> torch.nn.Module:
    """A ``Sam`` module of this architecture with freshly initialised weights (in eval mode).

    Args:
        config: the architecture.
        hq: build HQ-SAM (``MaskDecoderHQ``, encoder returning intermediate embeddings).
    """
    import torch

    m: Any = hq_modules() if hq else sam_modules()
    emb = config.embedding_size
    encoder = m.ImageEncoderViT(
        depth=config.encoder_depth,
        embed_dim=config.encoder_embed_dim,
        img_size=config.image_size,
        mlp_ratio=4,
        norm_layer=partial(torch.nn.LayerNorm, eps=1e-6),
        num_heads=config.encoder_num_heads,
        patch_size=config.patch_size,
        qkv_bias=True,
        use_rel_pos=True,
        global_attn_indexes=list(config.encoder_global_attn_indexes),
        window_size=config.window_size,
        out_chans=config.prompt_embed_dim,
    )
    prompt_encoder = m.PromptEncoder(
        embed_dim=config.prompt_embed_dim,
        image_embedding_size=(emb, emb),
        input_image_size=(config.image_size, config.image_size),
        mask_in_chans=config.mask_in_chans,
    )
    transformer = m.TwoWayTransformer(
        depth=2,
        embedding_dim=config.prompt_embed_dim,
        mlp_dim=config.decoder_mlp_dim,
        num_heads=config.decoder_num_heads,
    )
    decoder_args: dict[str, Any] = {
        "num_multimask_outputs": 3,
        "transformer": transformer,
        "transformer_dim": config.prompt_embed_dim,
        "iou_head_depth": 3,
        "iou_head_hidden_dim": config.iou_head_hidden_dim,
    }
    if hq:
        decoder = m.MaskDecoderHQ(vit_dim=config.encoder_embed_dim, **decoder_args)
    else:
        decoder = m.MaskDecoder(**decoder_args)
    model = m.Sam(
        image_encoder=encoder,
        prompt_encoder=prompt_encoder,
        mask_decoder=decoder,
        pixel_mean=list(PIXEL_MEAN),
        pixel_std=list(PIXEL_STD),
    )
    return model.eval()


def build_random_model(config: SamConfig, hq: bool = False, seed: int = 0) -> torch.nn.Module:
    """:func:`build_model` with weights drawn from a private RNG seeded with ``seed``.

    The global torch RNG is left as it was; the same seed gives the same weights everywhere.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_model(config, hq=hq)
