"""Checkpoints of MeSAM's own code (github.com/Magic-lem/MeSAM) into samrs runs.

MeSAM's model is segment-anything's ``SamHQ`` with iFormer-style encoder blocks; its
``state_dict`` uses SAM's names plus:

==========================================================  =======================================
MeSAM                                                       samrs
==========================================================  =======================================
``image_encoder.blocks.i.high_mixer_lamb.conv1``            ``...blocks.i.mixer.conv_branch.0``
``image_encoder.blocks.i.high_mixer_lamb.proj1``            ``...blocks.i.mixer.conv_branch.1``
``image_encoder.blocks.i.high_mixer_lamb.proj2``            ``...blocks.i.mixer.pool_branch.1``
``image_encoder.blocks.i.conv_fuse_lamb``                   ``...blocks.i.mixer.local``
``image_encoder.blocks.i.proj_lamb``                        ``...blocks.i.mixer.proj``
``mask_decoder.hf_token_lamb``                              ``mask_decoder.correction_tokens``
``mask_decoder.hf_mlp_lamb``                                ``mask_decoder.correction_mlp``
``mask_decoder.{compress_vit_feat,embedding_encoder,``      same names without ``_lamb``
``embedding_maskfeature}_lamb``
``mask_decoder.iou_prediction_head``                        dropped (samrs predicts no IoU)
==========================================================  =======================================

A file may also be SAMed's LoRA wrapper around that model (MeSAM builds on SAMed): a ``sam.``
prefix, ``attn.qkv.qkv`` for the pretrained projection and ``attn.qkv.linear_{a,b}_{q,v}``
for the LoRA matrices (``w_As`` / ``w_Bs`` hold the same tensors and are ignored). DDP's
``module.`` prefix and ``{"model": ...}`` / ``{"state_dict": ...}`` wrappers are accepted.

The architecture is read from the tensors (encoder width and depth -> SAM size, position
embedding -> input size, mask tokens -> classes, LoRA matrices -> rank); every tensor must
land on a model tensor of the same shape and every model tensor must be filled, otherwise
the file is rejected with one message naming what does not fit.
"""

from __future__ import annotations

import dataclasses
import os
import re
from typing import Any

import torch

from samrs.mesam.config import MODEL_SPECS, MeSAMConfig
from samrs.mesam.model import MeSAM, build_mesam
from samrs.segmenters.checkpoints import CheckpointError, load_state_dict, structure_problems

RENAMES: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), repl)
    for pattern, repl in (
        (r"\.high_mixer_lamb\.conv1\.", ".mixer.conv_branch.0."),
        (r"\.high_mixer_lamb\.proj1\.", ".mixer.conv_branch.1."),
        (r"\.high_mixer_lamb\.proj2\.", ".mixer.pool_branch.1."),
        (r"\.conv_fuse_lamb\.", ".mixer.local."),
        (r"\.proj_lamb\.", ".mixer.proj."),
        (r"^mask_decoder\.hf_token_lamb\.", "mask_decoder.correction_tokens."),
        (r"^mask_decoder\.hf_mlp_lamb\.", "mask_decoder.correction_mlp."),
        (r"^mask_decoder\.(compress_vit_feat|embedding_encoder|embedding_maskfeature)_lamb\.",
         r"mask_decoder.\1."),
        # SAMed's LoRA wrapper
        (r"\.attn\.qkv\.qkv\.", ".attn.qkv."),
        (r"\.attn\.qkv\.linear_a_q\.", ".attn.qkv.lora_q_a."),
        (r"\.attn\.qkv\.linear_b_q\.", ".attn.qkv.lora_q_b."),
        (r"\.attn\.qkv\.linear_a_v\.", ".attn.qkv.lora_v_a."),
        (r"\.attn\.qkv\.linear_b_v\.", ".attn.qkv.lora_v_b."),
    )
)  # fmt: skip
DROPPED = (re.compile(r"^mask_decoder\.iou_prediction_head\."), re.compile(r"^w_[AB]s\."))
"""MeSAM / SAMed tensors samrs has no use for."""


def rename_key(key: str) -> str:
    """samrs's name of one MeSAM state-dict key."""
    for pattern, repl in RENAMES:
        key = pattern.sub(repl, key)
    return key


def read_mesam_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """A MeSAM state dict with samrs's names (dropped tensors removed).

    Raises:
        CheckpointError: unreadable, or not a MeSAM checkpoint (no inception mixers).
    """
    raw = load_state_dict(path)
    if all(k.startswith("sam.") or k.startswith("w_") for k in raw):
        raw = {(k[4:] if k.startswith("sam.") else k): v for k, v in raw.items()}
    if not any(".high_mixer_lamb." in k for k in raw):
        hint = (
            "; a samrs run is a folder (pass it as --run)"
            if "format" in raw or "trained" in raw
            else ""
        )
        raise CheckpointError(
            f"{path}: not a MeSAM checkpoint (no '...high_mixer_lamb...' tensors){hint}"
        )
    return {rename_key(k): v for k, v in raw.items() if not any(p.search(k) for p in DROPPED)}


def infer_config(
    state: dict[str, torch.Tensor],
    path: str | os.PathLike[str] = "",
    base: MeSAMConfig | None = None,
) -> MeSAMConfig:
    """The :class:`MeSAMConfig` (variant ``mesam``) of a renamed MeSAM state dict.

    ``base`` gives the architecture for sizes outside the registry (tests); otherwise the
    encoder width and depth must match vit_b, vit_l, vit_h or tiny.
    """

    def need(key: str) -> torch.Tensor:
        if key not in state:
            raise CheckpointError(f"{path}: not a MeSAM checkpoint (no tensor {key!r})")
        return state[key]

    embed_dim = int(need("image_encoder.patch_embed.proj.weight").shape[0])
    patch = int(need("image_encoder.patch_embed.proj.weight").shape[-1])
    depth = len(
        {int(m.group(1)) for k in state if (m := re.match(r"image_encoder\.blocks\.(\d+)\.", k))}
    )
    grid = int(need("image_encoder.pos_embed").shape[1])
    outputs = int(need("mask_decoder.mask_tokens.weight").shape[0])
    lora = state.get("image_encoder.blocks.0.attn.qkv.lora_q_a.weight")
    rank = int(lora.shape[0]) if lora is not None else 0
    if outputs < 2:
        raise CheckpointError(f"{path}: {outputs} mask token(s); a MeSAM network has K+1 >= 2")
    if base is None:
        found = [
            name
            for name, spec in MODEL_SPECS.items()
            if (spec.embed_dim, spec.depth) == (embed_dim, depth)
        ]
        if not found:
            raise CheckpointError(
                f"{path}: encoder width {embed_dim} and depth {depth} match no SAM size "
                f"({', '.join(MODEL_SPECS)})"
            )
        return MeSAMConfig.from_name(found[0], outputs - 1, grid * patch, rank, "mesam")
    return dataclasses.replace(
        base, num_classes=outputs - 1, image_size=grid * base.patch_size, lora_rank=rank
    )


def load_mesam_state(
    model: MeSAM, state: dict[str, torch.Tensor], path: str | os.PathLike[str] = ""
) -> None:
    """Load a renamed MeSAM state dict into ``model``: every tensor, strictly.

    Raises:
        CheckpointError: tensors missing, left over or of another shape (all counted, the first
            of each named).
    """
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    problems = structure_problems(own, state)
    if any("another shape" in p for p in problems):
        problems.append("another mixer split or model size?")
    if problems:
        raise CheckpointError(
            f"{path}: does not fit MeSAM {model.config.model}: {'; '.join(problems)}"
        )
    model.load_state_dict(state, strict=True)


def load_mesam_checkpoint(path: str | os.PathLike[str], base: MeSAMConfig | None = None) -> MeSAM:
    """A :class:`MeSAM` (variant ``mesam``) holding a checkpoint of MeSAM's code."""
    state = read_mesam_state(path)
    cfg = infer_config(state, path, base)
    model = build_mesam(cfg, seed=0)
    load_mesam_state(model, state, path)
    return model


def converted_payload(
    model: MeSAM, source: str | os.PathLike[str], sha256: str, meta: dict[str, Any]
) -> dict[str, Any]:
    """A run-checkpoint payload holding every tensor of a converted model.

    ``base.converted_from`` marks it: :func:`samrs.mesam.infer.load_run` then loads the
    whole network from ``trained`` instead of rebuilding a SAM base.
    """
    return {
        **meta,
        "model_config": model.config.to_dict(),
        "base": {
            "converted_from": str(source),
            "sha256": sha256,
            "random_weights": True,
            "seed": 0,
        },
        "trained": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "step": 0,
        "epoch": 0,
        "history": [],
        "best_miou": None,
    }


def convert_mesam(
    path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    out: str | os.PathLike[str],
    classes: list[str] | None = None,
    unlabelled_as_background: bool = False,
    base: MeSAMConfig | None = None,
) -> dict[str, Any]:
    """Turn a checkpoint of MeSAM's code into a run folder ``out`` (``last.pt``, ``config.json``)
    that ``samrs predict`` / ``samrs evaluate-seg`` read like a fine-tuned run.

    The build ``data`` gives the class names and PNG ids of the network's K+1 channels
    (channel 0 = background or unlabelled, then the build's classes in order, or ``classes``).

    Raises:
        CheckpointError: the file is not a MeSAM checkpoint or does not fit its architecture.
        DataError: the build's classes do not match the checkpoint's K.
        ValueError: ``out`` already holds a run.
    """
    import json
    from pathlib import Path

    from samrs.mesam.checkpoint import checkpoint_sha256, save_run_checkpoint
    from samrs.mesam.data import DataError, label_space_from_build, read_build
    from samrs.mesam.train import TrainConfig

    out = Path(out)
    if (out / "last.pt").exists():
        raise ValueError(f"{out}: already holds a run (last.pt); choose another --out")
    model = load_mesam_checkpoint(path, base)
    cfg = model.config
    build = read_build(Path(data))
    space = label_space_from_build(build.meta, classes, unlabelled_as_background)
    if space.num_classes != cfg.num_classes:
        raise DataError(
            f"{path}: the checkpoint predicts {cfg.num_classes} classes + channel 0, the build "
            f"{data} has {space.num_classes} ({', '.join(space.names[1:])}); pick them with "
            "--classes"
        )
    tc = TrainConfig(
        data=str(Path(data).resolve()),
        out=str(out.resolve()),
        model=cfg.model,
        image_size=cfg.image_size,
        lora_rank=cfg.lora_rank,
        classes=tuple(classes) if classes else None,
        unlabelled_as_background=unlabelled_as_background,
    )
    meta = {
        "train_config": tc.to_dict(),
        "label_space": space.to_dict(),
        "data": {"root": str(Path(data).resolve()), "native_side": None},
    }
    payload = converted_payload(model, Path(path).resolve(), checkpoint_sha256(path), meta)
    out.mkdir(parents=True, exist_ok=True)
    save_run_checkpoint(out / "last.pt", payload)
    info = {k: v for k, v in payload.items() if k != "trained"}
    (out / "config.json").write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")
    return {
        "out": str(out),
        "model": cfg.model,
        "image_size": cfg.image_size,
        "lora_rank": cfg.lora_rank,
        "classes": list(space.names[1:]),
        "tensors": len(payload["trained"]),
    }
