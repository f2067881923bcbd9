"""SAM checkpoints into MeSAM, and MeSAM run checkpoints (trained parameters only).

SAM checkpoints (``sam_vit_b_01ec64.pth`` and friends) are read and recognised by
:mod:`samrs.segmenters.checkpoints` (``weights_only=True``, memory-mapped).
Tensors whose shape depends on the input resolution are resized to the training resolution:
the absolute position embedding bilinearly, the relative-position tables of the
global-attention blocks (indexes from the config) linearly to ``2 * grid - 1``. The
class-dependent decoder heads (mask tokens, hypernetwork MLPs, IoU head) are skipped and
listed; every other checkpoint tensor must match a model tensor and every model tensor that
is not new in MeSAM must come from the checkpoint, otherwise the file is rejected.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F

from samrs.mesam.config import MODEL_SPECS
from samrs.mesam.model import MeSAM, param_group
from samrs.segmenters.checkpoints import (
    CheckpointError,
    checkpoint_sha256,
    detect_model,
    load_state_dict,
)

__all__ = [
    "CheckpointError",
    "LoadReport",
    "checkpoint_sha256",
    "frozen_fingerprint",
    "load_sam_checkpoint",
    "load_trained",
    "read_run_checkpoint",
    "save_run_checkpoint",
]

log = logging.getLogger(__name__)

RUN_FORMAT = "samrs-mesam-run"
RUN_FORMAT_VERSION = 1

SKIPPED_PREFIXES = (
    "mask_decoder.mask_tokens.",
    "mask_decoder.output_hypernetworks_mlps.",
    "mask_decoder.iou_prediction_head.",
)
"""Class-dependent SAM heads: not loaded (MeSAM has K+1 classes, and no IoU head)."""

NEW_MODULE_PATTERNS = (
    re.compile(r"\.lora_"),
    re.compile(r"^image_encoder\.blocks\.\d+\.mixer\."),
    re.compile(r"^image_encoder\.ms_scale$"),
    re.compile(r"^mask_decoder\.(mask_tokens|output_hypernetworks_mlps)\."),
    re.compile(
        r"^mask_decoder\.(correction_tokens|correction_mlp|compress_vit_feat|"
        r"embedding_encoder|embedding_maskfeature)\."
    ),
)
"""Model tensors a SAM checkpoint does not have (they keep their initialisation)."""


@dataclass
class LoadReport:
    """What :func:`load_sam_checkpoint` did."""

    model: str
    loaded: list[str] = field(default_factory=list)
    resized: dict[str, tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)


def _is_new(name: str) -> bool:
    return any(p.search(name) for p in NEW_MODULE_PATTERNS)


def _resize_pos_embed(t: torch.Tensor, grid: int) -> torch.Tensor:
    x = t.permute(0, 3, 1, 2).float()
    x = F.interpolate(x, size=(grid, grid), mode="bilinear", align_corners=False)
    return x.permute(0, 2, 3, 1).to(t.dtype).contiguous()


def _resize_rel_pos(t: torch.Tensor, length: int) -> torch.Tensor:
    x = t.float().t().unsqueeze(0)  # (1, head_dim, L)
    x = F.interpolate(x, size=length, mode="linear", align_corners=False)
    return x.squeeze(0).t().to(t.dtype).contiguous()


def load_sam_checkpoint(model: MeSAM, path: str | os.PathLike[str]) -> LoadReport:
    """Load a SAM checkpoint into ``model`` (see the module docstring for the rules).

    Raises:
        CheckpointError: missing/unreadable file, another SAM size than the model's, tensors
            missing or left over, or a shape that cannot be adapted.
    """
    cfg = model.config
    state = load_state_dict(path)
    found, is_hq = detect_model(state, path)
    if is_hq:
        raise CheckpointError(f"{path}: an HQ-SAM checkpoint; MeSAM starts from a plain SAM one")
    spec = MODEL_SPECS[found]
    if (spec.embed_dim, spec.depth) != (cfg.embed_dim, cfg.depth):
        raise CheckpointError(f"{path}: checkpoint is {found} but the model is {cfg.model}")

    report = LoadReport(model=found)
    target = model.state_dict()
    globals_ = set(cfg.global_attn_indexes)
    new_state: dict[str, torch.Tensor] = {}
    leftover = []
    for key, tensor in state.items():
        if key.startswith(SKIPPED_PREFIXES):
            report.skipped.append(key)
            continue
        if key not in target:
            leftover.append(key)
            continue
        want = tuple(target[key].shape)
        have = tuple(tensor.shape)
        if want != have:
            m = re.match(r"image_encoder\.blocks\.(\d+)\.attn\.rel_pos_[hw]$", key)
            if key == "image_encoder.pos_embed" and len(have) == 4:
                tensor = _resize_pos_embed(tensor, want[1])
            elif m and int(m.group(1)) in globals_ and have[1:] == want[1:]:
                tensor = _resize_rel_pos(tensor, want[0])
            else:
                raise CheckpointError(f"{path}: {key} has shape {have}, the model needs {want}")
            report.resized[key] = (have, want)
        new_state[key] = tensor
        report.loaded.append(key)
    if leftover:
        raise CheckpointError(
            f"{path}: {len(leftover)} tensor(s) the model does not have, e.g. {leftover[0]}"
        )
    missing = [k for k in target if k not in new_state and not _is_new(k)]
    if missing:
        raise CheckpointError(
            f"{path}: {len(missing)} model tensor(s) missing from the checkpoint, e.g. {missing[0]}"
        )
    report.initialised = [k for k in target if k not in new_state]
    model.load_state_dict(new_state, strict=False)
    if report.skipped:
        log.info("class-dependent SAM heads not loaded: %s", ", ".join(report.skipped))
    if report.resized:
        log.info(
            "resized to %d px: %s",
            cfg.image_size,
            ", ".join(f"{k} {a}->{b}" for k, (a, b) in report.resized.items()),
        )
    return report


def frozen_fingerprint(model: MeSAM) -> str:
    """A cheap digest of the frozen tensors (sums per tensor), to detect a wrong base model."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        if param_group(name) is not None:
            continue
        t = tensor.detach().double().cpu()
        digest.update(
            f"{name}:{tuple(t.shape)}:{t.sum().item():.6e}:{t.abs().sum().item():.6e}".encode()
        )
    return digest.hexdigest()


# --- run checkpoints ------------------------------------------------------------------------


def save_run_checkpoint(path: str | os.PathLike[str], payload: dict[str, Any]) -> None:
    """Write ``payload`` atomically (temporary file + rename)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": RUN_FORMAT, "format_version": RUN_FORMAT_VERSION, **payload}, tmp)
    os.replace(tmp, path)


def read_run_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A run checkpoint written by :func:`save_run_checkpoint` (``weights_only=True``)."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: no such run checkpoint")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{p}: not a readable run checkpoint ({exc})") from exc
    if not isinstance(obj, dict) or obj.get("format") != RUN_FORMAT:
        raise CheckpointError(f"{p}: not a samrs MeSAM run checkpoint")
    if obj.get("format_version") != RUN_FORMAT_VERSION:
        raise CheckpointError(
            f"{p}: run checkpoint format {obj.get('format_version')}, expected {RUN_FORMAT_VERSION}"
        )
    return obj


def load_trained(model: MeSAM, state: dict[str, torch.Tensor]) -> None:
    """Load a run checkpoint's trained parameters; the names must be exactly the trained set.

    Raises:
        CheckpointError: missing or unexpected tensor names, or shape mismatches.
    """
    expected = {n for n, _ in model.named_parameters() if param_group(n) is not None}
    got = set(state)
    if expected != got:
        missing, extra = sorted(expected - got), sorted(got - expected)
        example = (missing or extra)[0]
        raise CheckpointError(
            f"run checkpoint does not fit the model: {len(missing)} tensor(s) missing, "
            f"{len(extra)} unexpected (e.g. {example})"
        )
    try:
        model.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise CheckpointError(f"run checkpoint does not fit the model ({exc})") from exc
