"""Inference with a trained MeSAM run: label PNGs for a folder, and full-resolution evaluation.

Geometry of a prediction (``mode``):

* ``resize`` - the whole image is letterboxed to the training size (longer side = image size,
  as in training), the logits are upsampled bilinearly to the letterboxed size, cropped to
  the image and upsampled to the original size; argmax of the softmax.
* ``slide`` - square windows of ``tile`` pixels (default: the median longer side of the
  training images, recorded in the run, i.e. the same ground sampling as in training) with
  ``overlap`` pixels of overlap (default tile / 4); each window is predicted as in
  ``resize``; class probabilities are averaged where windows overlap; argmax.
* ``auto`` (default) - ``slide`` when the longer side of an image exceeds 1.5 x tile, else
  ``resize``.

Predicted channels are written as the build's PNG ids (channel 0 as 0 with a background class,
else 255 = unlabelled), palettized with all 256 palette entries.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader

from samrs.devices import resolve_device
from samrs.mesam.checkpoint import (
    CheckpointError,
    frozen_fingerprint,
    load_trained,
    read_run_checkpoint,
)
from samrs.mesam.config import MeSAMConfig
from samrs.mesam.convert import load_mesam_state
from samrs.mesam.data import (
    DataError,
    FullResolutionDataset,
    LabelSpace,
    first_item,
    label_space_from_build,
    letterbox_image,
    letterbox_shape,
    read_build,
    read_rgb,
    split_samples,
    worker_init,
)
from samrs.mesam.metrics import ConfusionMatrix
from samrs.mesam.model import MeSAM, build_mesam
from samrs.mesam.train import TrainConfig, autocast, base_model
from samrs.outputs.semantic import write_semantic_png
from samrs.segmenters.checkpoints import is_builtin

log = logging.getLogger(__name__)

Progress = Callable[[str], None]
MODES = ("auto", "resize", "slide")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")


@dataclass
class LoadedRun:
    """A trained network ready for inference, with its label space and run metadata."""

    model: MeSAM
    label_space: LabelSpace
    meta: dict[str, Any]
    weights: Path
    device: torch.device


def load_run(
    run: str | Path,
    which: str = "best",
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
) -> LoadedRun:
    """Rebuild a run's network: base weights (SAM checkpoint or seed) + trained parameters.

    Args:
        run: the run directory.
        which: ``best`` (``best.pt``, falling back to ``last.pt`` when the run has no
            validation) or ``last``.
        checkpoint: the base SAM checkpoint, when it is no longer at the recorded path.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:1``...

    Raises:
        CheckpointError: no run checkpoint, or the base SAM checkpoint cannot be found.
    """
    run = Path(run)
    if which not in ("best", "last"):
        raise ValueError(f"which must be 'best' or 'last', got {which!r}")
    path = run / "best.pt"
    if which == "last" or not path.exists():
        path = run / "last.pt"
    payload = read_run_checkpoint(path)
    mcfg = MeSAMConfig.from_dict(payload["model_config"])
    base = payload["base"]
    dev = resolve_device(device, local_rank=0)
    meta = {k: v for k, v in payload.items() if k not in ("trained", "optimizer", "scheduler")}
    if base.get("converted_from"):  # `samrs convert-mesam`: the run holds every tensor
        model = build_mesam(mcfg, seed=0)
        load_mesam_state(model, payload["trained"], path)
        model.eval().to(dev)
        return LoadedRun(model, LabelSpace.from_dict(payload["label_space"]), meta, path, dev)
    base_ckpt = None
    if not base.get("random_weights"):
        base_ckpt = checkpoint or base.get("checkpoint")
        if not base_ckpt or not (is_builtin(base_ckpt) or Path(base_ckpt).is_file()):
            raise CheckpointError(
                f"{path}: base SAM checkpoint {base_ckpt} not found; pass --checkpoint"
            )
    model, _ = base_model(mcfg, int(base.get("seed", 0)), base_ckpt)
    if base.get("fingerprint") and frozen_fingerprint(model) != base["fingerprint"]:
        log.warning("%s: frozen base weights differ from the ones the run was trained with", path)
    load_trained(model, payload["trained"])
    model.eval().to(dev)
    return LoadedRun(model, LabelSpace.from_dict(payload["label_space"]), meta, path, dev)


def window_starts(length: int, tile: int, stride: int) -> list[int]:
    """Start offsets covering ``0..length`` with windows of ``tile`` (last one flush)."""
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, stride))
    return [*starts, length - tile]


class Predictor:
    """Class probabilities and labels for images of any size (see the module docstring)."""

    def __init__(
        self,
        loaded: LoadedRun,
        mode: str = "auto",
        tile: int | None = None,
        overlap: int | None = None,
        batch_size: int = 4,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        self.loaded = loaded
        self.model = loaded.model
        self.device = loaded.device
        self.size = loaded.model.config.image_size
        native = (loaded.meta.get("data") or {}).get("native_side")
        self.tile = int(tile or native or self.size)
        self.overlap = int(self.tile // 4 if overlap is None else overlap)
        if not 0 <= self.overlap < self.tile:
            raise ValueError(f"overlap must be in [0, tile={self.tile}), got {self.overlap}")
        self.mode = mode
        self.batch_size = max(1, batch_size)
        self.channel_ids = loaded.label_space.channel_to_id()

    def windows(self, height: int, width: int) -> list[tuple[int, int, int, int]]:
        """(y, x, h, w) windows for an image of this size under the chosen mode."""
        slide = self.mode == "slide" or (
            self.mode == "auto" and max(height, width) > 1.5 * self.tile
        )
        if not slide:
            return [(0, 0, height, width)]
        stride = self.tile - self.overlap
        th, tw = min(self.tile, height), min(self.tile, width)
        return [
            (y, x, th, tw)
            for y in window_starts(height, self.tile, stride)
            for x in window_starts(width, self.tile, stride)
        ]

    @torch.no_grad()
    def probabilities(self, image: np.ndarray) -> torch.Tensor:
        """(channels, H, W) float32 class probabilities on the model's device."""
        height, width = image.shape[:2]
        windows = self.windows(height, width)
        n_ch = self.loaded.label_space.num_channels
        acc = torch.zeros((n_ch, height, width), dtype=torch.float32, device=self.device)
        count = torch.zeros((1, height, width), dtype=torch.float32, device=self.device)
        for start in range(0, len(windows), self.batch_size):
            chunk = windows[start : start + self.batch_size]
            batch = np.stack(
                [letterbox_image(image[y : y + h, x : x + w], self.size) for y, x, h, w in chunk]
            )
            tensor = torch.from_numpy(batch).permute(0, 3, 1, 2).to(self.device)
            with autocast(self.device):
                logits = self.model(tensor)
            logits = F.interpolate(logits.float(), size=(self.size, self.size), mode="bilinear")
            for (y, x, h, w), win in zip(chunk, logits, strict=True):
                nh, nw = letterbox_shape(h, w, self.size)
                win = win[None, :, :nh, :nw]
                if (nh, nw) != (h, w):
                    win = F.interpolate(win, size=(h, w), mode="bilinear")
                acc[:, y : y + h, x : x + w] += win[0].softmax(0)
                count[:, y : y + h, x : x + w] += 1
        return acc / count

    def predict_channels(self, image: np.ndarray) -> np.ndarray:
        """(H, W) uint8 output channels."""
        return self.probabilities(image).argmax(0).to(torch.uint8).cpu().numpy()

    def predict_ids(self, image: np.ndarray) -> np.ndarray:
        """(H, W) uint8 PNG ids of the build's label convention."""
        return self.channel_ids[self.predict_channels(image)]


def write_label_png(path: str | Path, ids: np.ndarray, palette: list[int]) -> None:
    """A palettized label PNG (all 256 palette entries; :mod:`samrs.outputs.semantic`)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_semantic_png(path, np.ascontiguousarray(ids, dtype=np.uint8), palette)


def list_images(images: str | Path, exclude: str | Path | None = None) -> list[Path]:
    """Image files under a folder (recursively, sorted), or the file itself."""
    root = Path(images)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise DataError(f"{root}: no such file or folder")
    skip = Path(exclude).resolve() if exclude else None
    found = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if skip is not None and skip in p.resolve().parents:
            continue
        found.append(p)
    return found


def predict_images(
    predictor: Predictor,
    images: str | Path,
    out: str | Path,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Write ``OUT/<relative path>.png`` label maps for every image under ``images``.

    Unreadable images do not stop the run: they are listed in the returned ``failed``.
    """
    out = Path(out)
    files = list_images(images, exclude=out)
    if not files:
        raise DataError(f"{images}: no images ({', '.join(IMAGE_SUFFIXES)})")
    root = Path(images) if Path(images).is_dir() else Path(images).parent
    palette = predictor.loaded.label_space.palette()
    written, failed = [], []
    every = max(1, len(files) // 20)
    for i, path in enumerate(files, 1):
        target = out / path.relative_to(root).with_suffix(".png")
        try:
            image = read_rgb(str(path))
        except DataError as exc:
            failed.append({"file": str(path), "error": str(exc)})
            continue
        write_label_png(target, predictor.predict_ids(image), palette)
        written.append(str(target))
        if progress and (i % every == 0 or i == len(files)):
            progress(f"predicted {i}/{len(files)} images")
    return {
        "images": len(files),
        "written": len(written),
        "failed": failed,
        "out": str(out),
        "weights": str(predictor.loaded.weights),
    }


def evaluate_run(
    run: str | Path,
    data: str | Path,
    split: str = "val",
    which: str = "best",
    checkpoint: str | os.PathLike[str] | None = None,
    device: str = "auto",
    mode: str = "auto",
    tile: int | None = None,
    overlap: int | None = None,
    limit: int | None = None,
    num_workers: int = 2,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Per-class IoU, mIoU, pixel accuracy and confusion matrix at full label resolution.

    ``split`` selects manifest rows by their ``split``; for a run trained with
    ``--val-fraction``, ``val`` and ``train`` mean the run's own seeded subsets.

    Raises:
        DataError: the build's classes differ from the run's, or the split has no images.
    """
    loaded = load_run(run, which=which, checkpoint=checkpoint, device=device)
    space = loaded.label_space
    build = read_build(data)
    build_space = label_space_from_build(
        build.meta, list(space.names[1:]), space.unlabelled_as_background
    )
    if (build_space.names, build_space.dataset_ids) != (space.names, space.dataset_ids):
        raise DataError(
            f"{data}: class table differs from the run's ({', '.join(space.names[1:])})"
        )
    tc = TrainConfig.from_dict(loaded.meta["train_config"])
    if tc.val_fraction is not None and split in ("train", "val"):
        train_s, val_s = split_samples(
            build.samples, tc.train_splits, tc.val_splits, tc.val_fraction, tc.seed
        )
        samples = val_s if split == "val" else train_s
    else:
        samples = [s for s in build.samples if s.split == split]
    if not samples:
        raise DataError(
            f"{data}: no images in split {split!r} (found: {', '.join(build.splits())})"
        )
    if limit is not None:
        samples = samples[:limit]
    predictor = Predictor(loaded, mode=mode, tile=tile, overlap=overlap)
    loader = DataLoader(
        FullResolutionDataset(samples, space),
        batch_size=1,
        collate_fn=first_item,
        num_workers=num_workers,
        worker_init_fn=worker_init if num_workers > 0 else None,
        # spawned, not forked: a fork after torch/OpenMP or Dask threads ran can deadlock
        multiprocessing_context="spawn" if num_workers > 0 else None,
        persistent_workers=num_workers > 0,
    )
    cm = ConfusionMatrix(space.num_channels, device=loaded.device)
    every = max(1, math.ceil(len(samples) / 20))
    for i, (image, label, _sample) in enumerate(loader, 1):
        pred = predictor.probabilities(image).argmax(0)
        cm.update(pred, torch.from_numpy(label))
        if progress and (i % every == 0 or i == len(samples)):
            progress(f"evaluated {i}/{len(samples)} images")
    report = cm.report(space)
    return {
        "run": str(run),
        "weights": str(loaded.weights),
        "data": str(data),
        "split": split,
        "images": len(samples),
        "mode": mode,
        **report,
    }


def format_report(report: dict[str, Any]) -> str:
    """A human-readable table of :func:`evaluate_run`'s report."""

    def pct(v: float | None) -> str:
        return "   n/a" if v is None else f"{100 * v:6.2f}"

    width = max([len(c["name"]) for c in report["classes"]] + [5])
    lines = [
        f"{report['images']} images, {report['pixels']} labelled pixels ({report['weights']})",
        f"{'class':<{width}}  {'IoU':>6}  {'acc':>6}  {'gt px':>10}  {'pred px':>10}",
    ]
    for c in report["classes"]:
        lines.append(
            f"{c['name']:<{width}}  {pct(c['iou'])}  {pct(c['accuracy'])}  "
            f"{c['gt_pixels']:>10}  {c['pred_pixels']:>10}"
        )
    lines.append(
        f"mIoU {pct(report['miou']).strip()}%  pixel accuracy "
        f"{pct(report['pixel_accuracy']).strip()}%  mean accuracy "
        f"{pct(report['mean_accuracy']).strip()}%"
    )
    return "\n".join(lines)
