"""MeSAM fine-tuning: SAMed's recipe on a ``samrs build`` output.

Loss ``0.2 CE + 0.8 Dice`` on the K+1 low-resolution logits (S/4, labels nearest-resized),
255 ignored; AdamW (0.9, 0.999), linear warmup then poly decay (power 0.9) per optimizer
step; bf16 autocast and TF32 on CUDA; gradient accumulation; validation (mIoU at the training
resolution) every ``val_every`` steps or at the end of every epoch.

Run directory ``RUN``:

* ``config.json`` - training options, network config, label space, base weights, data sizes;
* ``last.pt`` - trained parameters only (LoRA, mixers, multiscale scale, decoder, no-mask
  embedding) + optimizer, scheduler, step, epoch and position in the epoch: ``--resume``
  continues from it exactly (same data order, same schedule);
* ``best.pt`` - trained parameters of the best validation mIoU;
* ``metrics.csv`` / ``metrics.json`` / ``curves.png`` - the log.

Frozen weights are not stored: they are rebuilt from the base SAM checkpoint (path and sha256
recorded) or, with random weights, from the seed.

Multi-GPU (DDP): start one process per GPU with torchrun; each process reads ``LOCAL_RANK`` /
``WORLD_SIZE``, takes one GPU, its share of every epoch (``--batch-size`` is per GPU) and its
share of the validation set; rank 0 writes the run directory::

    torchrun --nproc_per_node 4 --no-python samrs finetune --data OUT --out RUN \\
        --model vit_b --checkpoint sam_vit_b_01ec64.pth --batch-size 12
    # equivalently: torchrun --nproc_per_node 4 -m samrs.mesam.train --data OUT ...

Resume a DDP run with the same number of processes to continue with exactly the same data
order.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader

from samrs.mesam.checkpoint import (
    checkpoint_sha256,
    frozen_fingerprint,
    load_sam_checkpoint,
    load_trained,
    read_run_checkpoint,
    save_run_checkpoint,
)
from samrs.mesam.config import MeSAMConfig
from samrs.mesam.data import (
    EpochSampler,
    LabelSpace,
    SegmentationDataset,
    label_space_from_build,
    read_build,
    split_samples,
    worker_init,
)
from samrs.mesam.losses import ce_dice_loss
from samrs.mesam.metrics import ConfusionMatrix
from samrs.mesam.model import MeSAM, build_mesam, configure_trainable, trained_state_dict
from samrs.mesam.runlog import write_metrics
from samrs.segmenters.checkpoints import is_builtin

Progress = Callable[[str], None]

# options a resumed run may change (everything else comes from the checkpoint)
RESUME_OVERRIDES = frozenset(
    {
        "epochs",
        "max_steps",
        "device",
        "num_workers",
        "log_every",
        "resume",
        "eval_only",
        "out",
        "data",
    }
)


PLOT_INTERVAL_S = 60.0
"""``curves.png`` is redrawn at checkpoints at most this often (and always at the end)."""


class RunError(ValueError):
    """A run directory that cannot be used as asked (exists, missing checkpoint...)."""


@dataclass
class TrainConfig:
    """Every option of ``samrs finetune`` (CLI defaults)."""

    data: str
    out: str
    model: str = "vit_b"
    checkpoint: str | None = None
    random_weights: bool = False
    epochs: int = 10
    max_steps: int | None = None
    batch_size: int = 4
    lr: float = 0.005
    weight_decay: float = 0.1
    warmup_steps: int = 250
    lora_rank: int = 4
    image_size: int = 512
    variant: str = "mesam"
    ce_weight: float = 0.2
    dice_weight: float = 0.8
    grad_accum: int = 1
    val_every: int | None = None
    log_every: int = 20
    seed: int = 0
    device: str = "auto"
    num_workers: int = 4
    classes: tuple[str, ...] | None = None
    val_fraction: float | None = None
    train_splits: tuple[str, ...] = ("train",)
    val_splits: tuple[str, ...] = ("val",)
    unlabelled_as_background: bool = False
    augment: bool = True
    resume: bool = False
    eval_only: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("classes", "train_splits", "val_splits"):
            if data[key] is not None:
                data[key] = list(data[key])
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("classes", "train_splits", "val_splits"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)


def lr_factor(step: int, warmup: int, total: int, power: float = 0.9) -> float:
    """Learning-rate multiplier at optimizer step ``step`` (0-based): linear warmup to 1 over
    ``warmup`` steps, then ``(1 - progress) ** power`` down to 0 at ``total``."""
    if warmup > 0 and step < warmup:
        return (step + 1) / warmup
    span = max(1, total - warmup)
    return max(0.0, 1.0 - (step - warmup) / span) ** power


# --- devices and processes ------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    initialised_here: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` -> ``cuda:<local_rank>`` when CUDA is available, else ``cpu``."""
    if name == "auto":
        return torch.device(f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RunError(f"device {name} requested but CUDA is not available")
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def setup_distributed(device_name: str) -> tuple[Dist, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE`` > 1 (else a single process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if world <= 1:
        return Dist(), device
    import torch.distributed as dist

    initialised_here = False
    if not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        initialised_here = True
    return Dist(dist.get_rank(), dist.get_world_size(), local_rank, initialised_here), device


def autocast(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA, nothing elsewhere."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def resize_labels(labels: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, H, W) channel labels -> (B, h, w) long, nearest (pixel nearest to each cell centre)."""
    if tuple(labels.shape[-2:]) == tuple(size):
        return labels.long()
    out = F.interpolate(labels[:, None].float(), size=size, mode="nearest-exact")
    return out[:, 0].long()


# --- model construction (shared with inference) ---------------------------------------------


def base_model(
    mcfg: MeSAMConfig,
    seed: int,
    checkpoint: str | None,
    progress: Progress | None = None,
    record_sha256: bool = False,
) -> tuple[MeSAM, dict[str, Any]]:
    """The model with its frozen weights: seeded random init, then the SAM checkpoint if any.

    Returns the model and facts about its base weights (checkpoint path, its sha256 when
    ``record_sha256``, skipped and resized tensors, seed).
    """
    model = build_mesam(mcfg, seed=seed)
    info: dict[str, Any] = {"checkpoint": None, "sha256": None, "random_weights": True}
    if checkpoint:
        report = load_sam_checkpoint(model, checkpoint)
        info = {
            "checkpoint": checkpoint if is_builtin(checkpoint) else str(Path(checkpoint).resolve()),
            "sha256": checkpoint_sha256(checkpoint) if record_sha256 else None,
            "random_weights": False,
            "skipped": report.skipped,
            "resized": sorted(report.resized),
        }
        if progress:
            progress(
                f"loaded {report.model} checkpoint {checkpoint}: {len(report.loaded)} tensors, "
                f"{len(report.resized)} resized to {mcfg.image_size} px, class-dependent heads "
                f"skipped: {', '.join(sorted({k.rsplit('.', 2)[0] for k in report.skipped}))}"
            )
    info["seed"] = seed
    return model, info


# --- validation -----------------------------------------------------------------------------


@torch.no_grad()
def validate(
    model: MeSAM,
    loader: DataLoader,
    label_space: LabelSpace,
    device: torch.device,
    dist_info: Dist = Dist(),
) -> dict[str, Any]:
    """Metrics at the training resolution (letterboxed labels; padding is ignored)."""
    was_training = model.training
    model.eval()
    cm = ConfusionMatrix(label_space.num_channels, device=device)
    for images, labels in loader:
        images = images.to(device, non_blocking=True)
        labels = labels.to(device, non_blocking=True)
        with autocast(device):
            logits = model(images)
        logits = F.interpolate(logits.float(), size=labels.shape[-2:], mode="bilinear")
        cm.update(logits.argmax(1), labels)
    if dist_info.world > 1:
        import torch.distributed as dist

        dist.all_reduce(cm.matrix)
    model.train(was_training)
    return cm.report(label_space)


# --- training -------------------------------------------------------------------------------


def _fmt_time(seconds: float) -> str:
    seconds = int(seconds)
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s"


def _loader(
    dataset: SegmentationDataset,
    sampler: EpochSampler,
    batch_size: int,
    num_workers: int,
    device: torch.device,
) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=device.type == "cuda",
        worker_init_fn=worker_init if num_workers > 0 else None,
        # spawned, not forked: a fork after torch/OpenMP or Dask threads ran can deadlock
        multiprocessing_context="spawn" if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
        drop_last=False,
    )


def train(
    cfg: TrainConfig, progress: Progress | None = None, stop_after_steps: int | None = None
) -> dict[str, Any]:
    """Fine-tune (or continue with ``cfg.resume``); returns the run summary.

    Args:
        cfg: the options.
        progress: receives human-readable progress lines (rank 0 only).
        stop_after_steps: stop after this many optimizer steps of this call, saving
            ``last.pt`` as an interruption would (for time-limited jobs and tests).

    Raises:
        RunError, DataError, CheckpointError: unusable options, data or weights.
    """
    dist_info, device = setup_distributed(cfg.device)
    say: Progress = progress if (progress and dist_info.main) else (lambda _msg: None)
    try:
        return _train(cfg, dist_info, device, say, stop_after_steps)
    finally:
        if dist_info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


def _train(
    cfg: TrainConfig,
    dist_info: Dist,
    device: torch.device,
    say: Progress,
    stop_after_steps: int | None,
) -> dict[str, Any]:
    run = Path(cfg.out)
    last_path = run / "last.pt"
    resumed: dict[str, Any] | None = None
    if cfg.resume:
        resumed = read_run_checkpoint(last_path) if last_path.exists() else None
        if resumed is None:
            raise RunError(f"{last_path}: nothing to resume (no checkpoint)")
        stored = TrainConfig.from_dict(resumed["train_config"])
        overrides = {k: v for k, v in cfg.to_dict().items() if k in RESUME_OVERRIDES}
        if cfg.checkpoint:  # the base checkpoint may have moved
            overrides["checkpoint"] = cfg.checkpoint
        cfg = TrainConfig.from_dict({**stored.to_dict(), **overrides})
    elif last_path.exists():
        raise RunError(f"{run} already holds a run (last.pt); use --resume or another --out")
    if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs < 1:
        raise RunError("--batch-size, --grad-accum and --epochs must be >= 1")
    if not cfg.random_weights and not cfg.checkpoint:
        raise RunError("give --checkpoint (a SAM .pth file) or --random-weights")

    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # data
    build = read_build(cfg.data)
    if resumed is not None:
        label_space = LabelSpace.from_dict(resumed["label_space"])
    else:
        label_space = label_space_from_build(build.meta, cfg.classes, cfg.unlabelled_as_background)
    train_samples, val_samples = split_samples(
        build.samples, cfg.train_splits, cfg.val_splits, cfg.val_fraction, cfg.seed
    )
    if build.n_error_rows:
        say(f"skipping {build.n_error_rows} image(s) with status 'error' in the manifest")
    if not val_samples:
        say(
            f"no validation images (split {', '.join(cfg.val_splits)} absent): validation is "
            "skipped; use --val-fraction to hold some out"
        )
    train_set = SegmentationDataset(
        train_samples, label_space, cfg.image_size, augment=cfg.augment, seed=cfg.seed
    )
    train_sampler = EpochSampler(
        len(train_set), shuffle=True, seed=cfg.seed, rank=dist_info.rank, world=dist_info.world
    )
    train_loader = _loader(train_set, train_sampler, cfg.batch_size, cfg.num_workers, device)
    val_loader = None
    if val_samples:
        val_set = SegmentationDataset(val_samples, label_space, cfg.image_size)
        val_sampler = EpochSampler(
            len(val_set), shuffle=False, rank=dist_info.rank, world=dist_info.world, pad=False
        )
        val_loader = _loader(val_set, val_sampler, cfg.batch_size, cfg.num_workers, device)

    # model
    if resumed is not None:
        mcfg = MeSAMConfig.from_dict(resumed["model_config"])
    else:
        mcfg = MeSAMConfig.from_name(
            cfg.model, label_space.num_classes, cfg.image_size, cfg.lora_rank, cfg.variant
        )
    model, base_info = base_model(
        mcfg, cfg.seed, None if cfg.random_weights else cfg.checkpoint, say, dist_info.main
    )
    base_info["fingerprint"] = frozen_fingerprint(model)
    summary_params = configure_trainable(model)
    say(summary_params.describe())
    if resumed is not None:
        load_trained(model, resumed["trained"])
        if resumed["base"].get("fingerprint") != base_info["fingerprint"]:
            say(
                "warning: the frozen base weights differ from the ones this run started with "
                "(another checkpoint file or torch version?)"
            )
    model.to(device)
    net: nn.Module = model
    if dist_info.world > 1:
        # Depthwise-conv weight gradients of shape (C, 1, k, k) come back from the backward
        # kernels with another stride on their size-1 dimension; DDP copies them into its
        # buckets and warns on every step. The layouts are equivalent.
        warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
        net = nn.parallel.DistributedDataParallel(
            model,
            device_ids=[device.index] if device.type == "cuda" else None,
            gradient_as_bucket_view=True,
        )

    batches_per_epoch = len(train_sampler.indices()) // cfg.batch_size + bool(
        len(train_sampler.indices()) % cfg.batch_size
    )
    steps_per_epoch = math.ceil(batches_per_epoch / cfg.grad_accum)
    total_steps = cfg.epochs * steps_per_epoch
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)

    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(
        params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay
    )
    warmup = cfg.warmup_steps

    def schedule(step: int) -> float:
        return lr_factor(step, warmup, total_steps)

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)

    step, epoch, batch_in_epoch = 0, 0, 0
    best_miou: float | None = None
    history: list[dict[str, Any]] = []
    if resumed is not None:
        optimizer.load_state_dict(resumed["optimizer"])
        scheduler.load_state_dict(resumed["scheduler"])
        step, epoch = int(resumed["step"]), int(resumed["epoch"])
        batch_in_epoch = int(resumed["batch_in_epoch"])
        best_miou = resumed.get("best_miou")
        history = list(resumed.get("history", []))
        say(f"resuming {run} at step {step} (epoch {epoch}, batch {batch_in_epoch})")

    sides = [max(s.width, s.height) for s in train_samples if s.width and s.height]
    native_side = int(statistics.median(sides)) if sides else None
    meta = {
        "train_config": cfg.to_dict(),
        "model_config": mcfg.to_dict(),
        "label_space": label_space.to_dict(),
        "base": base_info,
        "data": {
            "root": str(Path(cfg.data).resolve()),
            "train_images": len(train_samples),
            "val_images": len(val_samples),
            "skipped_error_rows": build.n_error_rows,
            "native_side": native_side,
        },
        "parameters": {"trainable": summary_params.trainable, "total": summary_params.total,
                       **summary_params.groups},
        "world_size": dist_info.world,
    }  # fmt: skip
    if dist_info.main:
        run.mkdir(parents=True, exist_ok=True)
        (run / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    def payload(with_optimizer: bool) -> dict[str, Any]:
        data: dict[str, Any] = {
            **meta,
            "step": step,
            "epoch": epoch,
            "batch_in_epoch": batch_in_epoch,
            "total_steps": total_steps,
            "best_miou": best_miou,
            "history": history,
            "trained": trained_state_dict(model),
        }
        if with_optimizer:
            data["optimizer"] = optimizer.state_dict()
            data["scheduler"] = scheduler.state_dict()
        return data

    def run_summary(last_val: dict[str, Any] | None) -> dict[str, Any]:
        return {
            "run": str(run),
            "step": step,
            "total_steps": total_steps,
            "epoch": epoch,
            "best_miou": best_miou,
            "last_validation": last_val,
            "train_images": len(train_samples),
            "val_images": len(val_samples),
            "trainable_parameters": summary_params.trainable,
        }

    last_val: dict[str, Any] | None = None
    last_plot = -math.inf

    def checkpoint(do_validate: bool, final: bool = False) -> None:
        nonlocal best_miou, last_val, last_plot
        if do_validate and val_loader is not None:
            report = validate(model, val_loader, label_space, device, dist_info)
            last_val = {k: report[k] for k in ("miou", "pixel_accuracy", "mean_accuracy")}
            miou = report["miou"]
            history.append(
                {"step": step, "epoch": epoch + bool(batch_in_epoch), "val_miou": miou,
                 "val_pixel_accuracy": report["pixel_accuracy"]}
            )  # fmt: skip
            say(
                f"validation at step {step}: mIoU {_pct(miou)}, pixel accuracy "
                f"{_pct(report['pixel_accuracy'])}"
            )
            if miou is not None and (best_miou is None or miou > best_miou):
                best_miou = miou
                if dist_info.main:
                    save_run_checkpoint(run / "best.pt", payload(with_optimizer=False))
        if dist_info.main:
            save_run_checkpoint(last_path, payload(with_optimizer=True))
            plot = final or time.perf_counter() - last_plot > PLOT_INTERVAL_S
            write_metrics(run, history, run_summary(last_val), plot=plot)
            if plot:
                last_plot = time.perf_counter()

    say(
        f"training {len(train_samples)} images ({len(val_samples)} validation) for "
        f"{total_steps} steps of {cfg.batch_size * cfg.grad_accum * dist_info.world} images "
        f"on {device}{f' x {dist_info.world} processes' if dist_info.world > 1 else ''}"
    )
    model.train()
    steps_this_call = 0
    window = torch.zeros(3, device=device)
    window_batches = 0
    window_images = 0
    t_window = time.perf_counter()
    t_start = t_window
    start_step = step
    stopped = False
    while epoch < cfg.epochs and step < total_steps and not stopped:
        train_set.epoch = epoch
        train_sampler.set_epoch(epoch, start=batch_in_epoch * cfg.batch_size)
        micro = batch_in_epoch
        for images, labels in train_loader:
            group_start = (micro // cfg.grad_accum) * cfg.grad_accum
            group_size = min(cfg.grad_accum, batches_per_epoch - group_start)
            sync = micro + 1 == group_start + group_size
            images = images.to(device, non_blocking=True)
            labels = labels.to(device, non_blocking=True)
            no_sync = getattr(net, "no_sync", None)
            ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
            with ctx:
                with autocast(device):
                    logits = net(images)
                parts = ce_dice_loss(
                    logits, resize_labels(labels, logits.shape[-2:]), cfg.ce_weight, cfg.dice_weight
                )
                (parts["loss"] / group_size).backward()
            window += torch.stack([parts["loss"], parts["ce"], parts["dice"]]).detach()
            window_batches += 1
            window_images += images.shape[0] * dist_info.world
            micro += 1
            if not sync:
                continue
            lr = optimizer.param_groups[0]["lr"]  # the rate this step used
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            steps_this_call += 1
            batch_in_epoch = micro
            if step % cfg.log_every == 0 or step == total_steps:
                if dist_info.world > 1:  # log the mean over all processes
                    import torch.distributed as dist

                    dist.all_reduce(window)
                    window /= dist_info.world
                loss, ce, dice = (window / max(window_batches, 1)).tolist()
                elapsed = time.perf_counter() - t_window
                rate = window_images / elapsed if elapsed > 0 else 0.0
                history.append(
                    {"step": step, "epoch": epoch + bool(batch_in_epoch), "lr": lr, "loss": loss, "ce": ce,
                     "dice": dice, "images_per_s": rate}
                )  # fmt: skip
                per_step = (time.perf_counter() - t_start) / max(step - start_step, 1)
                say(
                    f"step {step}/{total_steps} epoch {epoch + 1}/{cfg.epochs} loss {loss:.4f} "
                    f"(ce {ce:.4f} dice {dice:.4f}) lr {lr:.2e} {rate:.1f} img/s "
                    f"eta {_fmt_time(per_step * (total_steps - step))}"
                )
                window.zero_()
                window_batches = window_images = 0
                t_window = time.perf_counter()
            if cfg.val_every and step % cfg.val_every == 0:
                checkpoint(do_validate=True)
            if step >= total_steps:
                break
            if stop_after_steps is not None and steps_this_call >= stop_after_steps:
                stopped = True
                break
        if micro >= batches_per_epoch:
            epoch += 1
            batch_in_epoch = 0
            if not cfg.val_every:
                checkpoint(do_validate=True)
    finished = not stopped
    validated_now = bool(history) and history[-1].get("val_miou") is not None
    validated_now = validated_now and history[-1]["step"] == step
    checkpoint(do_validate=finished and not validated_now, final=True)
    summary = run_summary(last_val)
    summary["finished"] = finished and step >= total_steps
    say(
        f"{'finished' if summary['finished'] else 'stopped'} at step {step}; best mIoU "
        f"{_pct(best_miou)}; run in {run}"
    )
    return summary


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


if __name__ == "__main__":  # torchrun -m samrs.mesam.train ... (same options as finetune)
    from samrs.cli.finetune import command

    command(prog_name="samrs finetune")
