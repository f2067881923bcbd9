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
    # equivalently (no console script needed): torchrun --nproc_per_node 4 -m samrs.cli finetune ...

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

from samrs.devices import resolve_device
from samrs.errors import SamrsError
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
from samrs.segmenters import check_weights
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


class RunError(SamrsError, ValueError):
    """A run directory that cannot be used as asked (exists, missing checkpoint...)."""


@dataclass
class TrainConfig:
    """Every option of ``samrs finetune`` (CLI defaults)."""

    data: str
    out: str
    model: str = "vit_b"
    checkpoint: str | os.PathLike[str] | None = None  # stored as a str (config.json)
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

    def __post_init__(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint = os.fspath(self.checkpoint)

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
    checkpoint: str | os.PathLike[str] | None,
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
            "checkpoint": os.fspath(checkpoint)
            if is_builtin(checkpoint)
            else str(Path(checkpoint).resolve()),
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
        return Trainer(cfg, dist_info, device, say).fit(stop_after_steps)
    finally:
        if dist_info.initialised_here:
            import torch.distributed as dist

            dist.destroy_process_group()


class Trainer:
    """One fine-tuning run in this process (one rank of a DDP run).

    Construction does everything before the first step, in this order (the order the random
    number generators are drawn from, so a run is reproducible): the options (a resume takes
    the run's own), the data, the model, the optimizer and schedule, the resumed state, and
    ``config.json``. :meth:`fit` runs the epochs, validating and checkpointing as configured.
    """

    def __init__(self, cfg: TrainConfig, dist_info: Dist, device: torch.device, say: Progress):
        self.dist, self.device, self.say = dist_info, device, say
        self.run = Path(cfg.out)
        self.last_path = self.run / "last.pt"
        self.cfg, self.resumed = self._options(cfg)
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True
        self._data()
        self._model()
        self._optimizer()
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best_miou: float | None = None
        self.history: list[dict[str, Any]] = []
        if self.resumed is not None:
            self._restore(self.resumed)
        self.meta = self._write_config()
        self.last_val: dict[str, Any] | None = None
        self.last_plot = -math.inf

    # --- set-up -----------------------------------------------------------------------------

    def _options(self, cfg: TrainConfig) -> tuple[TrainConfig, dict[str, Any] | None]:
        """The options of this run and, for a resume, the state in ``last.pt``."""
        resumed: dict[str, Any] | None = None
        if cfg.resume:
            resumed = read_run_checkpoint(self.last_path) if self.last_path.exists() else None
            if resumed is None:
                raise RunError(f"{self.last_path}: nothing to resume (no checkpoint)")
            stored = TrainConfig.from_dict(resumed["train_config"])
            overrides = {k: v for k, v in cfg.to_dict().items() if k in RESUME_OVERRIDES}
            if cfg.checkpoint:  # the base checkpoint may have moved
                overrides["checkpoint"] = cfg.checkpoint
            cfg = TrainConfig.from_dict({**stored.to_dict(), **overrides})
        elif self.last_path.exists():
            raise RunError(
                f"{self.run} already holds a run (last.pt); use --resume or another --out"
            )
        if cfg.batch_size < 1 or cfg.grad_accum < 1 or cfg.epochs < 1:
            raise RunError("--batch-size, --grad-accum and --epochs must be >= 1")
        check_weights("sam", None if cfg.random_weights else cfg.checkpoint, cfg.random_weights)
        return cfg, resumed

    def _data(self) -> None:
        """The build's samples, label space, train/validation split and their loaders."""
        cfg, dist_info, say = self.cfg, self.dist, self.say
        self.build = read_build(cfg.data)
        if self.resumed is not None:
            self.label_space = LabelSpace.from_dict(self.resumed["label_space"])
        else:
            self.label_space = label_space_from_build(
                self.build.meta, cfg.classes, cfg.unlabelled_as_background
            )
        self.train_samples, self.val_samples = split_samples(
            self.build.samples, cfg.train_splits, cfg.val_splits, cfg.val_fraction, cfg.seed
        )
        if self.build.n_error_rows:
            say(f"skipping {self.build.n_error_rows} image(s) with status 'error' in the manifest")
        if not self.val_samples:
            say(
                f"no validation images (split {', '.join(cfg.val_splits)} absent): validation "
                "is skipped; use --val-fraction to hold some out"
            )
        self.train_set = SegmentationDataset(
            self.train_samples, self.label_space, cfg.image_size, augment=cfg.augment, seed=cfg.seed
        )
        self.train_sampler = EpochSampler(
            len(self.train_set), shuffle=True, seed=cfg.seed, rank=dist_info.rank,
            world=dist_info.world,
        )  # fmt: skip
        self.train_loader = _loader(
            self.train_set, self.train_sampler, cfg.batch_size, cfg.num_workers, self.device
        )
        self.val_loader = None
        if self.val_samples:
            val_set = SegmentationDataset(self.val_samples, self.label_space, cfg.image_size)
            val_sampler = EpochSampler(
                len(val_set), shuffle=False, rank=dist_info.rank, world=dist_info.world, pad=False
            )
            self.val_loader = _loader(
                val_set, val_sampler, cfg.batch_size, cfg.num_workers, self.device
            )

    def _model(self) -> None:
        """MeSAM on the base weights, its trainable part (restored on a resume), on the
        device, wrapped in DDP for more than one process."""
        cfg, resumed, say = self.cfg, self.resumed, self.say
        if resumed is not None:
            self.mcfg = MeSAMConfig.from_dict(resumed["model_config"])
        else:
            self.mcfg = MeSAMConfig.from_name(
                cfg.model, self.label_space.num_classes, cfg.image_size, cfg.lora_rank,
                cfg.variant,
            )  # fmt: skip
        model, self.base_info = base_model(
            self.mcfg, cfg.seed, None if cfg.random_weights else cfg.checkpoint, say,
            self.dist.main,
        )  # fmt: skip
        self.base_info["fingerprint"] = frozen_fingerprint(model)
        self.params = configure_trainable(model)
        say(self.params.describe())
        if resumed is not None:
            load_trained(model, resumed["trained"])
            if resumed["base"].get("fingerprint") != self.base_info["fingerprint"]:
                say(
                    "warning: the frozen base weights differ from the ones this run started "
                    "with (another checkpoint file or torch version?)"
                )
        model.to(self.device)
        self.model = model
        self.net: nn.Module = model
        if self.dist.world > 1:
            # Depthwise-conv weight gradients of shape (C, 1, k, k) come back from the backward
            # kernels with another stride on their size-1 dimension; DDP copies them into its
            # buckets and warns on every step. The layouts are equivalent.
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view")
            self.net = nn.parallel.DistributedDataParallel(
                model,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                gradient_as_bucket_view=True,
            )

    def _optimizer(self) -> None:
        """Steps per epoch and in all, AdamW on the trainable parameters, warmup + poly decay."""
        cfg = self.cfg
        n = len(self.train_sampler.indices())
        self.batches_per_epoch = n // cfg.batch_size + bool(n % cfg.batch_size)
        steps_per_epoch = math.ceil(self.batches_per_epoch / cfg.grad_accum)
        total_steps = cfg.epochs * steps_per_epoch
        if cfg.max_steps is not None:
            total_steps = min(total_steps, cfg.max_steps)
        self.total_steps = total_steps
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=cfg.lr, betas=(0.9, 0.999), weight_decay=cfg.weight_decay
        )
        warmup = cfg.warmup_steps

        def schedule(step: int) -> float:  # a plain function: LambdaLR stores no state for it
            return lr_factor(step, warmup, total_steps)

        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, schedule)

    def _restore(self, resumed: dict[str, Any]) -> None:
        """Optimizer, schedule, position and history of a resumed run."""
        self.optimizer.load_state_dict(resumed["optimizer"])
        self.scheduler.load_state_dict(resumed["scheduler"])
        self.step, self.epoch = int(resumed["step"]), int(resumed["epoch"])
        self.batch_in_epoch = int(resumed["batch_in_epoch"])
        self.best_miou = resumed.get("best_miou")
        self.history = list(resumed.get("history", []))
        self.say(
            f"resuming {self.run} at step {self.step} (epoch {self.epoch}, batch "
            f"{self.batch_in_epoch})"
        )

    def _write_config(self) -> dict[str, Any]:
        """The run's facts, written to ``config.json`` by rank 0 and kept in every checkpoint."""
        cfg, params = self.cfg, self.params
        sides = [max(s.width, s.height) for s in self.train_samples if s.width and s.height]
        native_side = int(statistics.median(sides)) if sides else None
        meta = {
            "train_config": cfg.to_dict(),
            "model_config": self.mcfg.to_dict(),
            "label_space": self.label_space.to_dict(),
            "base": self.base_info,
            "data": {
                "root": str(Path(cfg.data).resolve()),
                "train_images": len(self.train_samples),
                "val_images": len(self.val_samples),
                "skipped_error_rows": self.build.n_error_rows,
                "native_side": native_side,
            },
            "parameters": {"trainable": params.trainable, "total": params.total,
                           **params.groups},
            "world_size": self.dist.world,
        }  # fmt: skip
        if self.dist.main:
            self.run.mkdir(parents=True, exist_ok=True)
            (self.run / "config.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return meta

    # --- state ------------------------------------------------------------------------------

    def payload(self, with_optimizer: bool) -> dict[str, Any]:
        """What ``last.pt`` (with the optimizer) and ``best.pt`` (without) hold."""
        data: dict[str, Any] = {
            **self.meta,
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "total_steps": self.total_steps,
            "best_miou": self.best_miou,
            "history": self.history,
            "trained": trained_state_dict(self.model),
        }
        if with_optimizer:
            data["optimizer"] = self.optimizer.state_dict()
            data["scheduler"] = self.scheduler.state_dict()
        return data

    def summary(self) -> dict[str, Any]:
        """The run summary (``metrics.json``'s and :func:`train`'s)."""
        return {
            "run": str(self.run),
            "step": self.step,
            "total_steps": self.total_steps,
            "epoch": self.epoch,
            "best_miou": self.best_miou,
            "last_validation": self.last_val,
            "train_images": len(self.train_samples),
            "val_images": len(self.val_samples),
            "trainable_parameters": self.params.trainable,
        }

    def checkpoint(self, do_validate: bool, final: bool = False) -> None:
        """Validate (when asked and there is a validation set; a better mIoU saves
        ``best.pt``), then save ``last.pt`` and the metrics (rank 0)."""
        if do_validate and self.val_loader is not None:
            report = validate(self.model, self.val_loader, self.label_space, self.device, self.dist)
            self.last_val = {k: report[k] for k in ("miou", "pixel_accuracy", "mean_accuracy")}
            miou = report["miou"]
            self.history.append(
                {"step": self.step, "epoch": self.epoch + bool(self.batch_in_epoch),
                 "val_miou": miou, "val_pixel_accuracy": report["pixel_accuracy"]}
            )  # fmt: skip
            self.say(
                f"validation at step {self.step}: mIoU {_pct(miou)}, pixel accuracy "
                f"{_pct(report['pixel_accuracy'])}"
            )
            if miou is not None and (self.best_miou is None or miou > self.best_miou):
                self.best_miou = miou
                if self.dist.main:
                    save_run_checkpoint(self.run / "best.pt", self.payload(with_optimizer=False))
        if self.dist.main:
            save_run_checkpoint(self.last_path, self.payload(with_optimizer=True))
            plot = final or time.perf_counter() - self.last_plot > PLOT_INTERVAL_S
            write_metrics(self.run, self.history, self.summary(), plot=plot)
            if plot:
                self.last_plot = time.perf_counter()

    # --- training ---------------------------------------------------------------------------

    def fit(self, stop_after_steps: int | None = None) -> dict[str, Any]:
        """Train to the end of the schedule (or ``stop_after_steps`` steps of this call);
        returns :meth:`summary` with ``finished``."""
        cfg, dist_info = self.cfg, self.dist
        self.say(
            f"training {len(self.train_samples)} images ({len(self.val_samples)} validation) "
            f"for {self.total_steps} steps of {cfg.batch_size * cfg.grad_accum * dist_info.world}"
            f" images on {self.device}"
            f"{f' x {dist_info.world} processes' if dist_info.world > 1 else ''}"
        )
        self.model.train()
        self.steps_this_call = 0
        self._reset_window()
        self.t_start = self.t_window
        self.start_step = self.step
        stopped = False
        while self.epoch < cfg.epochs and self.step < self.total_steps and not stopped:
            stopped = self._epoch(stop_after_steps)
        finished = not stopped
        validated_now = bool(self.history) and self.history[-1].get("val_miou") is not None
        validated_now = validated_now and self.history[-1]["step"] == self.step
        self.checkpoint(do_validate=finished and not validated_now, final=True)
        summary = self.summary()
        summary["finished"] = finished and self.step >= self.total_steps
        self.say(
            f"{'finished' if summary['finished'] else 'stopped'} at step {self.step}; best mIoU "
            f"{_pct(self.best_miou)}; run in {self.run}"
        )
        return summary

    def _epoch(self, stop_after_steps: int | None) -> bool:
        """The rest of the current epoch; True when stopped by ``stop_after_steps``."""
        cfg = self.cfg
        self.train_set.epoch = self.epoch
        self.train_sampler.set_epoch(self.epoch, start=self.batch_in_epoch * cfg.batch_size)
        micro = self.batch_in_epoch
        stopped = False
        for images, labels in self.train_loader:
            group_start = (micro // cfg.grad_accum) * cfg.grad_accum
            group_size = min(cfg.grad_accum, self.batches_per_epoch - group_start)
            sync = micro + 1 == group_start + group_size
            self._backward(images, labels, group_size, sync)
            micro += 1
            if not sync:
                continue
            lr = self.optimizer.param_groups[0]["lr"]  # the rate this step used
            self.optimizer.step()
            self.scheduler.step()
            self.optimizer.zero_grad(set_to_none=True)
            self.step += 1
            self.steps_this_call += 1
            self.batch_in_epoch = micro
            if self.step % cfg.log_every == 0 or self.step == self.total_steps:
                self._log(lr)
            if cfg.val_every and self.step % cfg.val_every == 0:
                self.checkpoint(do_validate=True)
            if self.step >= self.total_steps:
                break
            if stop_after_steps is not None and self.steps_this_call >= stop_after_steps:
                stopped = True
                break
        if micro >= self.batches_per_epoch:
            self.epoch += 1
            self.batch_in_epoch = 0
            if not cfg.val_every:
                self.checkpoint(do_validate=True)
        return stopped

    def _backward(
        self, images: torch.Tensor, labels: torch.Tensor, group_size: int, sync: bool
    ) -> None:
        """Loss and gradients of one batch (DDP gradient sync only on the group's last)."""
        cfg = self.cfg
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        no_sync = getattr(self.net, "no_sync", None)
        ctx = no_sync() if (no_sync is not None and not sync) else contextlib.nullcontext()
        with ctx:
            with autocast(self.device):
                logits = self.net(images)
            parts = ce_dice_loss(
                logits, resize_labels(labels, logits.shape[-2:]), cfg.ce_weight, cfg.dice_weight
            )
            (parts["loss"] / group_size).backward()
        self.window += torch.stack([parts["loss"], parts["ce"], parts["dice"]]).detach()
        self.window_batches += 1
        self.window_images += images.shape[0] * self.dist.world

    def _reset_window(self) -> None:
        """Start a new logging window (loss sums, batches, images, start time)."""
        self.window = torch.zeros(3, device=self.device)
        self.window_batches = 0
        self.window_images = 0
        self.t_window = time.perf_counter()

    def _log(self, lr: float) -> None:
        """One progress line and history row: the window's mean losses (over all processes)."""
        cfg = self.cfg
        if self.dist.world > 1:  # log the mean over all processes
            import torch.distributed as dist

            dist.all_reduce(self.window)
            self.window /= self.dist.world
        loss, ce, dice = (self.window / max(self.window_batches, 1)).tolist()
        elapsed = time.perf_counter() - self.t_window
        rate = self.window_images / elapsed if elapsed > 0 else 0.0
        self.history.append(
            {"step": self.step, "epoch": self.epoch + bool(self.batch_in_epoch), "lr": lr,
             "loss": loss, "ce": ce, "dice": dice, "images_per_s": rate}
        )  # fmt: skip
        per_step = (time.perf_counter() - self.t_start) / max(self.step - self.start_step, 1)
        self.say(
            f"step {self.step}/{self.total_steps} epoch {self.epoch + 1}/{cfg.epochs} loss "
            f"{loss:.4f} (ce {ce:.4f} dice {dice:.4f}) lr {lr:.2e} {rate:.1f} img/s "
            f"eta {_fmt_time(per_step * (self.total_steps - self.step))}"
        )
        self._reset_window()


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
