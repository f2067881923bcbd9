"""Train a SAM architecture from scratch on synthetic scenes: the shipped ``builtin:tiny``.

No SAM weights can be downloaded where samrs is developed and tested, so the SAM path would
only ever run on random weights. :func:`pretrain` trains the whole ``tiny`` model (image
encoder, prompt encoder, mask decoder) on scenes rendered in memory by
:func:`samrs.synth.render_scene` (``hard=True``: textures, shadows, clutter, dense small
objects, elongated diagonal objects; all four synthetic formats in turn) with prompts sampled
as SAM was trained:

- a box: the object's horizontal box, its coordinates jittered by noise of standard deviation
  ``box_jitter`` x the box side (at most ``max_jitter`` input pixels), or exact;
- a box plus the rotated box as a dense mask prompt (``rbox-mask``);
- a point: the polygon centroid or a random pixel of the object; with a box or alone.

Every prompt trains the single-mask output; point prompts also train the best of the three
multimask outputs (SAM's minimum over the outputs). The mask loss is SAM's kind, per mask at
the decoder's low resolution: binary cross-entropy over the grid plus the Dice loss of the
object's own pixels (:func:`mask_loss`); each object counts alike, however small. (A loss
pooled over the batch and over both classes, as MeSAM's semantic ``ce_dice_loss``, is
minimised by an empty mask around small objects: trained with it, the model ignored box
prompts.) The IoU head learns the IoU of its own mask (MSE).

Prompts and input frames are those of :class:`~samrs.segmenters.sam.SamSegmenter` (its
``preprocess`` and ``_prompt_tensors``), so training sees what ``samrs build`` feeds the model.
Training runs on the CPU, seeded, with deterministic kernels: the same config gives the same
bytes. Scenes use synth seeds ``10_000 + seed``, away from the small seeds of evaluations.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from samrs.core.geometry import mask_iou
from samrs.core.masks import mask_bbox
from samrs.core.settings import check_known_keys
from samrs.prompts import build_prompts
from samrs.synth import FORMATS, render_scene

log = logging.getLogger(__name__)

SCENE_SEED_OFFSET = 10_000
"""Training scenes use synth seed ``SCENE_SEED_OFFSET + seed``."""


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pretraining run (recorded beside the checkpoint).

    Attributes:
        model: registry architecture to train.
        seed: weights, scenes and prompts.
        steps: optimizer steps.
        images_per_step: scenes per step (one encoder batch).
        prompts_per_image: objects prompted per scene (a random subset when there are more).
        lr: AdamW learning rate (after a linear warm-up).
        warmup_steps: warm-up length.
        weight_decay: AdamW weight decay.
        box_jitter: box noise standard deviation, as a fraction of the box side.
        max_jitter: cap of the box noise, in input pixels.
        iou_weight: weight of the IoU head's MSE.
        bce_weight, dice_weight: the mask loss's mix (:func:`mask_loss`).
        formats: synthetic formats, in turn.
        hard: hard scenes (see :func:`samrs.synth.render_scene`).
        threads: torch CPU threads (results depend on it).
    """

    model: str = "tiny"
    seed: int = 0
    steps: int = 2000
    images_per_step: int = 2
    prompts_per_image: int = 16
    lr: float = 2e-3
    warmup_steps: int = 20
    weight_decay: float = 0.01
    box_jitter: float = 0.1
    max_jitter: float = 20.0
    iou_weight: float = 1.0
    bce_weight: float = 1.0
    dice_weight: float = 1.0
    formats: tuple[str, ...] = FORMATS
    hard: bool = True
    threads: int = 2

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (tuples as lists)."""
        out = asdict(self)
        out["formats"] = list(self.formats)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        """The inverse of :meth:`to_dict` (unknown keys are an error)."""
        check_known_keys(cls, data, "pretraining settings")
        values = dict(data)
        if "formats" in values:
            values["formats"] = tuple(values["formats"])
        return cls(**values)


# prompt kinds and their probabilities
_KINDS = ("box", "jitter-box", "rbox-mask", "point", "box+point")
_KIND_P = (0.15, 0.35, 0.2, 0.2, 0.1)


def _scene(cfg: PretrainConfig, k: int) -> Any:
    fmt = cfg.formats[k % len(cfg.formats)]
    return render_scene(fmt, SCENE_SEED_OFFSET + cfg.seed, k // len(cfg.formats), hard=cfg.hard)


def _random_points(rng: np.random.Generator, masks: np.ndarray) -> np.ndarray:
    """(N, 2) ``x, y`` of one random pixel centre of each mask."""
    out = np.zeros((len(masks), 2))
    for i, m in enumerate(masks):
        ys, xs = np.nonzero(m)
        j = int(rng.integers(len(ys)))
        out[i] = (xs[j] + 0.5, ys[j] + 0.5)
    return out


def _image_prompts(
    seg: Any, rng: np.random.Generator, scene: Any, input_size: tuple[int, int], cfg: PretrainConfig
) -> list[tuple[dict[str, Any], np.ndarray, bool]]:
    """Groups of ``(prompt tensors, object indices, is_point_only)`` for one scene."""
    n = len(scene.polygons)
    order = rng.permutation(n)[: cfg.prompts_per_image]
    kinds = rng.choice(len(_KINDS), size=len(order), p=_KIND_P)
    original = scene.pixels.shape[:2]
    groups = []
    for kind_index, kind in enumerate(_KINDS):
        idx = np.sort(order[kinds == kind_index])
        if len(idx) == 0:
            continue
        mode = {"box": "rhbox", "jitter-box": "rhbox", "rbox-mask": "rbox-mask"}.get(kind)
        mode = mode or ("point" if kind == "point" else "rhbox+point")
        ps = build_prompts(scene.polygons[idx], mode)
        if kind == "jitter-box" and ps.boxes is not None:
            side = np.repeat(ps.boxes[:, 2:] - ps.boxes[:, :2], 2, axis=0).reshape(-1, 4)
            scale = input_size[0] / original[0]
            sigma = np.minimum(cfg.box_jitter * side, cfg.max_jitter / scale)
            ps.boxes[:] = ps.boxes + rng.normal(size=ps.boxes.shape) * sigma
        if ps.points is not None:
            random_pts = _random_points(rng, scene.masks[idx])
            use = rng.random(len(idx)) < 0.5
            ps.points[use] = random_pts[use]
        groups.append((seg._prompt_tensors(ps, input_size, original), idx, kind == "point"))
    return groups


def _targets(masks: np.ndarray, input_size: tuple[int, int], low: int, size: int) -> Any:
    """(N, low, low) 0/1 targets: the masks in the padded input frame at the decoder's grid."""
    import torch
    from torch.nn import functional as F

    factor = size / low
    h, w = round(input_size[0] / factor), round(input_size[1] / factor)
    t = torch.from_numpy(masks).float()[:, None]
    t = F.interpolate(t, size=(h, w), mode="area")[:, 0]
    peak = t.amax(dim=(1, 2), keepdim=True)
    # an object thinner than a cell keeps its most covered cells (else it would vanish)
    fg = (t >= 0.5) | ((t >= 0.5 * peak) & (peak > 0) & (peak < 0.5))
    out = torch.zeros((len(masks), low, low), dtype=torch.long)
    out[:, :h, :w] = fg.long()
    return out


def mask_loss(logits: Any, targets: Any, bce_weight: float, dice_weight: float) -> Any:
    """Per mask: ``bce_weight`` x binary cross-entropy over the grid + ``dice_weight`` x
    ``1 - Dice`` of the foreground; the mean over masks. ``logits`` (N, H, W), ``targets``
    0/1 (N, H, W)."""
    import torch
    from torch.nn import functional as F

    t = targets.float()
    bce = F.binary_cross_entropy_with_logits(logits, t, reduction="none").mean(dim=(1, 2))
    p = logits.sigmoid()
    inter = (p * t).sum(dim=(1, 2))
    dice = 1.0 - (2.0 * inter + 1e-3) / (p.sum(dim=(1, 2)) + t.sum(dim=(1, 2)) + 1e-3)
    return torch.mean(bce_weight * bce + dice_weight * dice)


def _lr_at(cfg: PretrainConfig, step: int) -> float:
    """Linear warm-up, then constant: the first N steps of a longer run are an N-step run."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    return cfg.lr


@dataclass(frozen=True)
class PretrainResult:
    """What :func:`pretrain` wrote.

    Attributes:
        checkpoint: the ``torch.save`` of the state dict.
        info: the JSON beside it (config, sha256, losses, time).
        sha256: the checkpoint's sha256.
        seconds: training wall time.
        final_loss: mean loss of the last 10% of steps.
    """

    checkpoint: Path
    info: Path
    sha256: str
    seconds: float
    final_loss: float


def info_path(checkpoint: str | os.PathLike[str]) -> Path:
    """The JSON recorded beside a pretrained checkpoint (``tiny.pth`` -> ``tiny.json``)."""
    return Path(checkpoint).with_suffix(".json")


def pretrain(
    cfg: PretrainConfig,
    out: str | os.PathLike[str],
    progress: Callable[[int, float], None] | None = None,
    device: str = "cpu",
    snapshot_every: int = 0,
) -> PretrainResult:
    """Train ``cfg.model`` from scratch; write the checkpoint ``out`` and its JSON beside it.

    Args:
        cfg: the run.
        out: checkpoint path (``.pth``); its parent is created.
        progress: called after each step with ``(step, loss)``.
        device: where to train; only the CPU is deterministic (recorded in the JSON).
        snapshot_every: also save the weights every this many steps as ``NAME-stepN.pth``
            beside ``out`` (the learning rate is constant after the warm-up, so such a
            snapshot is exactly the checkpoint of a run with ``steps=N``).
    """
    import torch

    from samrs.segmenters.sam import SamSegmenter

    if cfg.steps < 1 or cfg.images_per_step < 1 or cfg.prompts_per_image < 1:
        raise ValueError("steps, images_per_step and prompts_per_image must be at least 1")
    unknown = [f for f in cfg.formats if f not in FORMATS]
    if unknown or not cfg.formats:
        raise ValueError(f"formats must be among {', '.join(FORMATS)}, got {cfg.formats}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    det = torch.are_deterministic_algorithms_enabled()
    on_cpu = torch.device(device).type == "cpu"
    torch.use_deterministic_algorithms(on_cpu)
    start = time.perf_counter()
    try:
        torch.manual_seed(cfg.seed)
        seg = SamSegmenter(model=cfg.model, random_weights=True, device=device, seed=cfg.seed)
        net: Any = seg.model  # segment_anything's Sam (untyped)
        for p in net.parameters():
            p.requires_grad_(True)
        net.train()
        decay = [p for n, p in net.named_parameters() if p.ndim >= 2 and "pos" not in n]
        other = [p for n, p in net.named_parameters() if p.ndim < 2 or "pos" in n]
        opt = torch.optim.AdamW(
            [{"params": decay, "weight_decay": cfg.weight_decay},
             {"params": other, "weight_decay": 0.0}],
            lr=cfg.lr,
        )  # fmt: skip
        pe = net.prompt_encoder
        dec = net.mask_decoder
        low = seg.config.low_res_size
        losses: list[float] = []
        for step in range(cfg.steps):
            for group in opt.param_groups:
                group["lr"] = _lr_at(cfg, step)
            rng = np.random.default_rng([cfg.seed, step])
            scenes = [
                _scene(cfg, step * cfg.images_per_step + i) for i in range(cfg.images_per_step)
            ]
            pixels, sizes = seg.preprocess([s.pixels for s in scenes])
            emb = net.image_encoder(pixels)
            dense_pe = pe.get_dense_pe()
            logits, targets, ious = [], [], []
            for i, scene in enumerate(scenes):
                if len(scene.polygons) == 0:
                    continue
                tgt_all = _targets(scene.masks, sizes[i], low, seg.config.image_size)
                tgt_all = tgt_all.to(seg.device)
                for prompt, idx, point_only in _image_prompts(seg, rng, scene, sizes[i], cfg):
                    prompt = {k: None if v is None else v.to(seg.device) for k, v in prompt.items()}
                    pts = prompt["points"]
                    point_arg = None if pts is None else (pts, torch.ones_like(pts[..., 0]))
                    sparse, dense = pe(points=point_arg, boxes=prompt["boxes"],
                                       masks=prompt["masks"])  # fmt: skip
                    masks, iou = dec.predict_masks(emb[i : i + 1], dense_pe, sparse, dense)
                    tgt = tgt_all[torch.from_numpy(idx)]
                    logits.append(masks[:, 0])
                    targets.append(tgt)
                    ious.append(iou[:, 0])
                    if point_only:
                        with torch.no_grad():
                            hit = _iou(masks[:, 1:4] > 0, tgt[:, None].bool())
                        best = hit.argmax(dim=1)
                        rows = torch.arange(len(idx), device=seg.device)
                        logits.append(masks[:, 1:4][rows, best])
                        targets.append(tgt)
                        ious.append(iou[:, 1:4][rows, best])
            if not logits:
                continue
            lg = torch.cat(logits)
            tg = torch.cat(targets)
            masks_loss = mask_loss(lg, tg, cfg.bce_weight, cfg.dice_weight)
            with torch.no_grad():
                actual = _iou(lg > 0, tg.bool())
            iou_loss = torch.nn.functional.mse_loss(torch.cat(ious), actual)
            loss = masks_loss + cfg.iou_weight * iou_loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
            opt.step()
            losses.append(float(loss.detach()))
            if snapshot_every and (step + 1) % snapshot_every == 0:
                snap = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
                torch.save(snap, out.with_name(f"{out.stem}-step{step + 1}.pth"))
            if progress is not None:
                progress(step, losses[-1])
        seconds = time.perf_counter() - start
        state = {k: v.detach().cpu().clone().contiguous() for k, v in net.state_dict().items()}
        torch.save(state, out)
    finally:
        torch.set_num_threads(threads)
        torch.use_deterministic_algorithms(det)
    info_file = write_info(out, cfg, losses, torch.device(device).type)
    info = json.loads(info_file.read_text())
    log.info("pretrained %s in %.0f s: %s", cfg.model, seconds, out)
    return PretrainResult(out, info_file, info["sha256"], seconds, info["final_loss"])


def write_info(
    checkpoint: str | os.PathLike[str], cfg: PretrainConfig, losses: list[float], device: str
) -> Path:
    """Write the training record beside ``checkpoint`` (see :func:`info_path`): name, file,
    sha256, config, device, the mean loss of the last 10% of steps and every 10th loss."""
    from samrs.segmenters.checkpoints import checkpoint_sha256

    out = Path(checkpoint)
    tail = losses[-max(1, len(losses) // 10) :]
    final = float(np.mean(tail)) if tail else float("nan")
    info = {
        "name": out.stem,
        "file": out.name,
        "sha256": checkpoint_sha256(out),
        "config": cfg.to_dict(),
        "device": device,
        "final_loss": round(final, 6),
        "loss_every_10_steps": [round(v, 4) for v in losses[::10]],
    }
    info_file = info_path(out)
    info_file.write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info_file


def _iou(pred: Any, target: Any) -> Any:
    """IoU over the last two dimensions of boolean tensors (1 where both are empty)."""
    import torch

    inter = (pred & target).sum(dim=(-2, -1)).float()
    union = (pred | target).sum(dim=(-2, -1)).float()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


def score_scenes(
    segmenter: Any, scenes: list[Any], mode: str = "rhbox", max_size: float | None = None
) -> list[float]:
    """IoU of each object's mask from ``segmenter`` (prompted in ``mode``) with its GT mask.

    Args:
        segmenter: any :class:`~samrs.segmenters.base.Segmenter`.
        scenes: :class:`~samrs.synth.SyntheticScene` objects.
        mode: prompt mode (:data:`samrs.prompts.PROMPT_MODES`).
        max_size: only objects whose GT box's longer side is below this many pixels.
    """
    ious: list[float] = []
    for scene in scenes:
        keep = np.arange(len(scene.polygons))
        if max_size is not None:
            sides = [max(mask_bbox(m)[2:]) for m in scene.masks]
            keep = np.asarray([i for i in keep if sides[i] < max_size], dtype=int)
        if len(keep) == 0:
            continue
        prompts = build_prompts(scene.polygons[keep], mode)
        result = segmenter.segment([scene.pixels], [prompts])[0]
        ious += [
            mask_iou(crop.full(), gt)
            for crop, gt in zip(result.crops, scene.masks[keep], strict=True)
        ]
    return ious
