"""Training data from a ``samrs build`` output: manifests, semantic PNGs, label space, loaders.

A build directory ``OUT`` holds ``samrs.json`` (class table and build config),
``manifest/images/part-*.parquet`` (one row per image: ``file_name``, ``semantic_file``,
``split``, ``status``...) and ``semantic/<image_id>.png`` (palettized, pixel = class id,
255 = unlabelled). Rows with ``status == "error"`` have no label and are skipped (and counted).

**Label space.** The network has K+1 output channels: channel ``c + 1`` is the c-th kept class
and channel 0 is background. With a build made with ``--background`` (PNG id 0 = background,
classes shifted by one) channel 0 is that background class. Otherwise non-object pixels are
255 (unlabelled) and channel 0 is never a target: 255 is ignored by every loss and metric,
unless ``unlabelled_as_background`` trains channel 0 on them. Predicted channel 0 is written
back as the PNG id it came from (0 with ``--background``, else 255), so predictions use the
build's ids and palette. ``classes`` keeps a subset; other classes become 255 (ignored).

**Geometry.** Images are resized so the longer side equals ``image_size`` (bilinear, area when
shrinking; labels nearest) and padded at the bottom/right to a square (image: the SAM pixel
mean, label: 255), as SAM's ResizeLongestSide does. Training augmentation applies a random
multiple of 90 degrees and a random horizontal flip (all 8 dihedral transforms), seeded by
``(seed, epoch, index)`` so it does not depend on workers or batch order.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import Dataset, Sampler

from samrs.core.classes import UNLABELLED, normalize_class_name
from samrs.core.imageio import ImageReadError, read_image
from samrs.errors import SamrsError
from samrs.outputs.manifest import part_paths, read_table
from samrs.outputs.metadata import (
    BuildMetadataError,
    build_class_table,
    build_config,
    read_build_metadata,
)
from samrs.outputs.semantic import read_semantic_png, semantic_palette

PAD_RGB = (124, 116, 104)
"""Letterbox padding colour: SAM's pixel mean, so padding normalises to about zero."""

MANIFEST_COLUMNS = (
    "image_id",
    "split",
    "file_name",
    "width",
    "height",
    "semantic_file",
    "status",
)


class DataError(SamrsError, ValueError):
    """A build output, image or label that cannot be used (the message names the file)."""


# --- label space ----------------------------------------------------------------------------


@dataclass(frozen=True)
class LabelSpace:
    """Output channels of a MeSAM network and their PNG ids.

    Attributes:
        names: per channel; ``names[0]`` is ``background`` (or ``unlabelled``).
        dataset_ids: the PNG value of each channel (channel 0: 0 with a background class,
            else 255).
        colors: RGB per channel.
        scored: channel 0 is a real target (background class, or unlabelled-as-background);
            otherwise it appears in no target and is left out of per-class metrics.
        unlabelled_as_background: 255 pixels are trained as channel 0.
        png_palette: the build's flat 768-entry label palette (written with predictions).
    """

    names: tuple[str, ...]
    dataset_ids: tuple[int, ...]
    colors: tuple[tuple[int, int, int], ...]
    scored: bool
    unlabelled_as_background: bool = False
    png_palette: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        """Foreground classes (K); the network has K+1 channels."""
        return len(self.names) - 1

    @property
    def num_channels(self) -> int:
        return len(self.names)

    def scored_channels(self) -> list[int]:
        """Channels reported by metrics (mIoU averages over these)."""
        return list(range(0 if self.scored else 1, self.num_channels))

    def lut(self) -> np.ndarray:
        """(256,) uint8: PNG value -> channel, 255 = ignored."""
        table = np.full(256, UNLABELLED, dtype=np.uint8)
        for channel, value in enumerate(self.dataset_ids):
            if channel == 0 and value == UNLABELLED:
                continue
            table[value] = channel
        if self.unlabelled_as_background:
            table[UNLABELLED] = 0
        return table

    def channel_to_id(self) -> np.ndarray:
        """(channels,) uint8: channel -> PNG value."""
        return np.asarray(self.dataset_ids, dtype=np.uint8)

    def palette(self) -> list[int]:
        """Flat 768-entry palette of predicted PNGs: the build's, or the channel colours."""
        if len(self.png_palette) == 768:
            return list(self.png_palette)
        flat = [0] * 768
        for value, color in zip(self.dataset_ids, self.colors, strict=True):
            flat[3 * value : 3 * value + 3] = list(color)
        return flat

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["names"] = list(self.names)
        data["dataset_ids"] = list(self.dataset_ids)
        data["colors"] = [list(c) for c in self.colors]
        data["png_palette"] = list(self.png_palette)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LabelSpace:
        return cls(
            names=tuple(data["names"]),
            dataset_ids=tuple(int(v) for v in data["dataset_ids"]),
            colors=tuple((int(c[0]), int(c[1]), int(c[2])) for c in data["colors"]),
            scored=bool(data["scored"]),
            unlabelled_as_background=bool(data.get("unlabelled_as_background", False)),
            png_palette=tuple(int(v) for v in data.get("png_palette", ())),
        )


def label_space_from_build(
    meta: dict[str, Any],
    classes: Sequence[str] | None = None,
    unlabelled_as_background: bool = False,
) -> LabelSpace:
    """The label space of a build's ``samrs.json`` (see the module docstring).

    Raises:
        DataError: no usable class table, or a ``classes`` name the table does not have.
    """
    try:
        table = build_class_table(meta)
        background = bool(build_config(meta).get("background", False))
    except (BuildMetadataError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"samrs.json: unusable class table ({exc})") from exc
    shift = 1 if background else 0
    fg = [(name, i + shift, table.palette[i]) for i, name in enumerate(table.names)]
    if classes:
        wanted = {normalize_class_name(c): c for c in classes}
        known = {normalize_class_name(n) for n in table.names}
        unknown = [c for k, c in wanted.items() if k not in known]
        if unknown:
            raise DataError(
                f"unknown class(es) {', '.join(unknown)}; the build has: {', '.join(table.names)}"
            )
        fg = [item for item in fg if normalize_class_name(item[0]) in wanted]
    bg_name = "background" if (background or unlabelled_as_background) else "unlabelled"
    return LabelSpace(
        names=(bg_name, *(n for n, _, _ in fg)),
        dataset_ids=(0 if background else UNLABELLED, *(v for _, v, _ in fg)),
        colors=((0, 0, 0), *((int(r), int(g), int(b)) for _, _, (r, g, b) in fg)),
        scored=background or unlabelled_as_background,
        unlabelled_as_background=unlabelled_as_background,
        png_palette=tuple(semantic_palette(table, background=background)),
    )


# --- manifests ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One usable image of a build."""

    image_id: str
    split: str | None
    image_path: str
    label_path: str
    width: int | None
    height: int | None


@dataclass
class BuildData:
    """A build output read for training: metadata, usable samples, skipped error rows."""

    root: Path
    meta: dict[str, Any]
    samples: list[Sample]
    n_error_rows: int

    def splits(self) -> list[str]:
        return sorted({s.split or "(none)" for s in self.samples})


def read_build(out: str | Path) -> BuildData:
    """Read ``samrs.json`` and the images manifest of a build output (rows sorted by id).

    Raises:
        DataError: not a build output, unreadable manifest, or a usable row without a label.
    """
    root = Path(out)
    try:
        meta = read_build_metadata(root)
    except BuildMetadataError as exc:
        raise DataError(str(exc)) from exc
    if not part_paths(root, "images"):
        raise DataError(f"{root / 'manifest' / 'images'}: no part-*.parquet files")
    try:
        table = read_table(root, "images", columns=list(MANIFEST_COLUMNS))
    except (OSError, pa.ArrowException) as exc:
        raise DataError(f"{root / 'manifest' / 'images'}: unreadable manifest ({exc})") from exc
    source_root = build_config(meta).get("root")
    samples: list[Sample] = []
    n_errors = 0
    for row in table.to_pylist():
        if row["status"] == "error":
            n_errors += 1
            continue
        if not row["semantic_file"]:
            raise DataError(
                f"{root / 'manifest' / 'images'}: image {row['image_id']} has status "
                f"{row['status']!r} but no semantic_file"
            )
        samples.append(
            Sample(
                image_id=row["image_id"],
                split=row["split"],
                image_path=str(_resolve_image(root, source_root, row["file_name"])),
                label_path=str(root / row["semantic_file"]),
                width=row["width"],
                height=row["height"],
            )
        )
    samples.sort(key=lambda s: s.image_id)
    return BuildData(root=root, meta=meta, samples=samples, n_error_rows=n_errors)


def _resolve_image(root: Path, source_root: str | None, file_name: str) -> Path:
    path = Path(file_name)
    if path.is_absolute():
        return path
    if (root / path).exists() or not source_root:
        return root / path
    return Path(source_root) / path


def _hash_key(seed: int, image_id: str) -> str:
    return hashlib.sha256(f"{seed}:{image_id}".encode()).hexdigest()


def split_samples(
    samples: Sequence[Sample],
    train_splits: Sequence[str] = ("train",),
    val_splits: Sequence[str] = ("val",),
    val_fraction: float | None = None,
    seed: int = 0,
) -> tuple[list[Sample], list[Sample]]:
    """Train and validation samples.

    From the source split (``split`` in ``train_splits`` / ``val_splits``), or, with
    ``val_fraction``, a seeded split of the images of all those splits (and of images without
    a split): the ``val_fraction`` share with the smallest ``sha256(seed:image_id)`` is
    validation, so the split does not depend on row order.

    Raises:
        DataError: no training images (the message lists the splits found).
    """
    if val_fraction is not None:
        if not 0.0 < val_fraction < 1.0:
            raise DataError(f"--val-fraction must be in (0, 1), got {val_fraction}")
        pool_splits = set(train_splits) | set(val_splits)
        pool = [s for s in samples if s.split is None or s.split in pool_splits]
        ranked = sorted(pool, key=lambda s: _hash_key(seed, s.image_id))
        n_val = min(max(1, round(val_fraction * len(ranked))), len(ranked) - 1)
        val_ids = {s.image_id for s in ranked[:n_val]}
        train = [s for s in pool if s.image_id not in val_ids]
        val = [s for s in pool if s.image_id in val_ids]
    else:
        train = [s for s in samples if s.split in set(train_splits)]
        val = [s for s in samples if s.split in set(val_splits)]
    if not train:
        found = sorted({s.split or "(none)" for s in samples})
        raise DataError(
            f"no training images (splits found: {', '.join(found) or 'none'}); "
            "use --train-split or --val-fraction"
        )
    return train, val


# --- pixels ---------------------------------------------------------------------------------


def read_rgb(path: str) -> np.ndarray:
    """(H, W, 3) uint8 RGB image (through :func:`samrs.core.imageio.read_image`)."""
    try:
        return read_image(path)
    except ImageReadError as exc:
        raise DataError(str(exc)) from exc


def read_label(path: str) -> np.ndarray:
    """(H, W) uint8 label indices of a palettized (or grayscale) PNG."""
    if not Path(path).is_file():
        raise DataError(f"{path}: label file not found")
    try:
        return read_semantic_png(path)
    except Exception as exc:
        raise DataError(f"{path}: cannot read label ({exc})") from exc


def letterbox_shape(height: int, width: int, size: int) -> tuple[int, int]:
    """Size after resizing the longer side to ``size``."""
    scale = size / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def letterbox_image(image: np.ndarray, size: int) -> np.ndarray:
    """Resize the longer side to ``size`` and pad bottom/right with :data:`PAD_RGB`."""
    h, w = image.shape[:2]
    nh, nw = letterbox_shape(h, w, size)
    if (nh, nw) != (h, w):
        interp = cv2.INTER_AREA if nh < h else cv2.INTER_LINEAR
        image = cv2.resize(image, (nw, nh), interpolation=interp)
    out = np.empty((size, size, 3), dtype=np.uint8)
    out[...] = PAD_RGB
    out[:nh, :nw] = image
    return out


def letterbox_label(label: np.ndarray, size: int) -> np.ndarray:
    """Nearest-neighbour resize of a label like :func:`letterbox_image`, padded with 255."""
    h, w = label.shape
    nh, nw = letterbox_shape(h, w, size)
    if (nh, nw) != (h, w):
        label = cv2.resize(label, (nw, nh), interpolation=cv2.INTER_NEAREST)
    out = np.full((size, size), UNLABELLED, dtype=np.uint8)
    out[:nh, :nw] = label
    return out


def dihedral(arrays: Sequence[np.ndarray], rotations: int, flip: bool) -> list[np.ndarray]:
    """Rotate by ``rotations`` x 90 degrees, then flip horizontally if ``flip``."""
    out = []
    for a in arrays:
        a = np.rot90(a, rotations, axes=(0, 1))
        if flip:
            a = a[:, ::-1]
        out.append(np.ascontiguousarray(a))
    return out


def load_pair(sample: Sample, lut: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Image (H, W, 3) and channel-index label (H, W), checked to have the same size."""
    image = read_rgb(sample.image_path)
    label = read_label(sample.label_path)
    if image.shape[:2] != label.shape:
        raise DataError(
            f"{sample.label_path}: label is {label.shape[1]}x{label.shape[0]} but the image "
            f"{sample.image_path} is {image.shape[1]}x{image.shape[0]}"
        )
    return image, lut[label]


class SegmentationDataset(Dataset):
    """Letterboxed ``(image uint8 (3, S, S), label uint8 (S, S))`` pairs, labels as channels."""

    def __init__(
        self,
        samples: Sequence[Sample],
        label_space: LabelSpace,
        image_size: int,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        self.samples = list(samples)
        self.lut = label_space.lut()
        self.image_size = image_size
        self.augment = augment
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = load_pair(self.samples[index], self.lut)
        image = letterbox_image(image, self.image_size)
        label = letterbox_label(label, self.image_size)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            image, label = dihedral([image, label], int(rng.integers(4)), bool(rng.integers(2)))
        return torch.from_numpy(image).permute(2, 0, 1).contiguous(), torch.from_numpy(label)


class FullResolutionDataset(Dataset):
    """Full-size ``(image (H, W, 3), label channels (H, W), sample)`` for evaluation."""

    def __init__(self, samples: Sequence[Sample], label_space: LabelSpace) -> None:
        self.samples = list(samples)
        self.lut = label_space.lut()

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray, Sample]:
        image, label = load_pair(self.samples[index], self.lut)
        return image, label, self.samples[index]


def first_item(batch: list[Any]) -> Any:
    """``collate_fn`` for batch size 1 without stacking (picklable for worker processes)."""
    return batch[0]


def worker_init(_: int) -> None:
    """Keep data-loading workers single-threaded (they are many already)."""
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


class EpochSampler(Sampler[int]):
    """Seeded per-epoch order, sharded over DDP ranks, resumable mid-epoch.

    Every rank gets ``ceil(n / world)`` indices (the permutation wraps around to pad), so all
    ranks run the same number of batches. ``set_epoch(epoch, start)`` skips the first
    ``start`` indices of this rank's share (the part of an epoch already trained).
    """

    def __init__(
        self, n: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1, pad: bool = True
    ) -> None:
        if n < 1:
            raise DataError("no images to sample from")
        self.n, self.shuffle, self.seed = n, shuffle, seed
        self.rank, self.world, self.pad = rank, world, pad
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch, self.start = epoch, start

    def indices(self) -> list[int]:
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        if self.pad:
            total = math.ceil(self.n / self.world) * self.world
            order = (order * math.ceil(total / self.n))[:total]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices()[self.start :])

    def __len__(self) -> int:
        return max(0, len(self.indices()) - self.start)
