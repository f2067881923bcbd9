"""``samrs bench``: the model alone, the samrs pipeline and the SAMRS reference loop, measured
on the same images with the same weights in one run.

- ``model_only``: encoder + decoder on pre-loaded, preprocessed tensors (the ceiling).
- ``pipeline``: ``samrs build`` from files on disk to committed outputs.
- ``reference``: :func:`samrs.benchmarks.reference.run_reference_loop` (fp32, eager attention).

``masks``: ``model`` (the decoder's masks) or ``objects`` (benchmark only: the decoder runs,
then its logits are replaced by each object's own ellipse, :mod:`samrs.benchmarks.masks`, in
the pipeline and the reference loop alike).

``host_ms_per_mask`` (pipeline and reference, ``--workers 1``): each loop is run once more
with the encoder and decoder replaced by a replay of the same low-resolution logits (the
objects' ellipses, or with ``--masks model`` the pipeline's decoder outputs recorded in its
timed run, given to both loops): the wall time of that run in milliseconds, divided by the
number of masks. It is everything the loop does except the model (reading and decoding
image files, preprocessing, postprocessing, quality, RLE, labels, files), per mask.
"""

from __future__ import annotations

import math
import os
import resource
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np

from samrs.core.classes import DOTA_V1_0, class_table
from samrs.outputs.semantic import semantic_palette

if TYPE_CHECKING:
    from samrs.benchmarks.masks import DecoderBank
    from samrs.build import BuildConfig
    from samrs.core.records import Dataset, ImageRecord
    from samrs.segmenters.base import PromptSet
    from samrs.segmenters.sam import SamSegmenter


def make_bench_dataset(
    root: Path, n_images: int, objects_per_image: int, image_size: int, seed: int = 0
) -> None:
    """A DOTA-layout dataset of textured images with rotated ellipses and their boxes."""
    rng = np.random.default_rng(seed)
    images, labels = root / "train" / "images", root / "train" / "labelTxt"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        noise = rng.integers(60, 140, (image_size // 8, image_size // 8, 3), dtype=np.uint8)
        img = cv2.resize(noise, (image_size, image_size), interpolation=cv2.INTER_CUBIC)
        lines = ["imagesource:bench", "gsd:null"]
        for _ in range(objects_per_image):
            w = float(rng.uniform(12, image_size / 6))
            h = float(rng.uniform(0.3, 1.0) * w)
            cx = float(rng.uniform(w, image_size - w))
            cy = float(rng.uniform(w, image_size - w))
            angle = float(rng.uniform(0, 180))
            color = tuple(int(c) for c in rng.integers(150, 255, 3))
            cv2.ellipse(img, ((cx, cy), (w, h), angle), color, -1)
            corners = cv2.boxPoints(((cx, cy), (w, h), angle))
            coords = " ".join(f"{v:.1f}" for v in np.clip(corners, 0, image_size).ravel())
            lines.append(f"{coords} {DOTA_V1_0[int(rng.integers(len(DOTA_V1_0)))]} 0")
        cv2.imwrite(str(images / f"P{i:05d}.png"), img[:, :, ::-1])
        (labels / f"P{i:05d}.txt").write_text("\n".join(lines) + "\n")


def _peak_host_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _mask_agreement(out: Path, ref_dir: Path) -> dict[str, Any]:
    """Per-mask IoU between the pipeline's masks and the reference loop's."""
    import pickle

    from samrs.core import rle
    from samrs.core.geometry import mask_iou
    from samrs.outputs.manifest import read_table

    images = {r["image_id"]: r for r in read_table(out, "images").to_pylist()}
    ious = []
    for row in read_table(out, "instances").to_pylist():
        image = images[row["image_id"]]
        ref_file = ref_dir / "ins" / f"{Path(image['source_file']).stem}.pkl"
        with open(ref_file, "rb") as fh:
            ref = pickle.load(fh)[row["object_index"]]["segmentation"]
        ours = rle.decode(
            {"size": [image["height"], image["width"]], "counts": row["segmentation"]}
        )
        theirs = rle.decode(ref)
        ious.append(1.0 if not ours.any() and not theirs.any() else mask_iou(ours, theirs))
    arr = np.asarray(ious) if ious else np.zeros(1)
    return {
        "n": len(ious),
        "min": float(arr.min()),
        "p01": float(np.quantile(arr, 0.01)),
        "p05": float(np.quantile(arr, 0.05)),
        "median": float(np.median(arr)),
        "share_at_least_0.98": float(np.mean(arr >= 0.98)),
    }


def run_benchmark(
    *,
    device: str | None = None,
    model: str | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    random_weights: bool = True,
    images: int = 16,
    objects_per_image: int = 20,
    image_size: int = 1024,
    batch_size: int = 4,
    workers: int = 1,
    writers: int | None = None,
    decoders: int | None = None,
    compile: bool = False,
    repeats: int = 1,
    workdir: str | None = None,
    skip_reference: bool = False,
    masks: str = "model",
    host_cost: bool = True,
) -> dict[str, Any]:
    """Measure ``model_only``, ``pipeline`` and ``reference`` and return one JSON-ready dict.

    ``model`` None: detected from the checkpoint, ``tiny`` with random weights. The three
    measurements run in this process (``workers > 1``: the pipeline's worker processes) with
    the same settings, including :func:`~samrs.segmenters.memory.retain_freed_memory`.
    ``masks``, ``host_cost`` (``host_ms_per_mask``, with ``workers`` 1): see the module
    docstring (``objects`` needs ``workers`` 1: the pipeline's model is patched in this
    process).
    """
    from samrs.benchmarks.masks import MASKS, DecoderBank

    if masks not in MASKS:
        raise ValueError(f"masks must be one of {MASKS}, got {masks!r}")
    if masks == "objects" and workers != 1:
        raise ValueError("--masks objects runs the pipeline in this process: use --workers 1")
    import torch

    from samrs.build import BuildConfig
    from samrs.build.run import resolve_config
    from samrs.build.worker import get_segmenter
    from samrs.core.imageio import read_image
    from samrs.prompts import build_prompts
    from samrs.segmenters.memory import retain_freed_memory
    from samrs.segmenters.sam import SamSegmenter

    allocator = retain_freed_memory()
    tmp = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="samrs-bench-"))
    root = tmp / "data"
    if root.exists():
        shutil.rmtree(root)
    make_bench_dataset(root, images, objects_per_image, image_size)
    config = BuildConfig(
        source="dota", root=str(root), out=str(tmp / "pipeline"), segmenter="sam", model=model,
        checkpoint=checkpoint, random_weights=random_weights and checkpoint is None,
        device=device, batch_size=batch_size, workers=workers, writers=writers, decoders=decoders,
        compile=compile, progress=False,
        shard_size=max(1, math.ceil(images / max(workers, 1))), overwrite=True, resume=False,
        threads=None if workers == 1 else max(1, (torch.get_num_threads() or 1) // workers),
    )  # fmt: skip
    config = resolve_config(config)  # as run_build will: the same segmenter options
    segmenter = get_segmenter(config)  # the pipeline reuses this model in-process
    sam = segmenter.inner if hasattr(segmenter, "inner") else segmenter
    assert isinstance(sam, SamSegmenter)  # config.segmenter is "sam"
    dev = sam.device
    result: dict[str, Any] = {
        "device": str(dev),
        "device_name": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "model": sam.model_name,
        "dtype": sam.precision,
        "random_weights": checkpoint is None,
        "images": images,
        "objects_per_image": objects_per_image,
        "image_size": image_size,
        "batch_size": batch_size,
        "workers": workers,
        "writers": config.writers,
        "decoders": config.decoders,
        "masks": masks,
        "repeats": repeats,
        "retain_freed_memory": allocator,
    }
    if compile:
        result["compile_seconds"] = sam.warmup()

    # model only: pre-loaded tensors, encoder + decoder, nothing else
    pixels_np = [read_image(p) for p in sorted((root / "train" / "images").glob("*.png"))]
    from samrs.sources import read_dataset

    dataset = read_dataset("dota", root)
    prompt_sets = [
        build_prompts(np.array([o.polygon for o in im.objects]).reshape(-1, 8), config.prompt)
        for im in dataset.images
    ]
    batches = []
    with torch.inference_mode():
        for start in range(0, images, batch_size):
            chunk = pixels_np[start : start + batch_size]
            pixels, sizes = sam.preprocess(chunk)
            boxes = []
            for k, (h, _w) in enumerate(sizes):
                scale = h / chunk[k].shape[0]
                prompt_boxes = prompt_sets[start + k].boxes
                assert prompt_boxes is not None  # the bench prompts with boxes (rhbox)
                boxes.append(torch.as_tensor(prompt_boxes * scale, dtype=torch.float32))
            batches.append((pixels, torch.stack(boxes).to(dev)))
    sam.model_forward(*batches[0])  # warm-up
    _sync(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    best = math.inf
    for _ in range(repeats):
        began = time.perf_counter()
        for pixels, box_batch in batches:
            sam.model_forward(pixels, box_batch)
        _sync(dev)
        best = min(best, time.perf_counter() - began)
    del batches
    result["model_only"] = {"seconds": best, "images_per_s": images / best}

    bank = None
    if workers == 1 and (host_cost or masks == "objects"):
        # the pipeline runs in this process: its decoder can be patched (box prompts: keys)
        bank = DecoderBank(sam, prompt_sets, [_height_width(im) for im in dataset.images])
        if masks == "objects":
            bank.fill_objects()
        bank.install("objects" if masks == "objects" else "record")
    try:
        _measure_loops(
            result, config, sam, root, tmp, dataset, prompt_sets, bank, skip_reference, host_cost
        )
    finally:
        if bank is not None:
            bank.uninstall()
    result["pipeline_over_model_only"] = (
        result["pipeline"]["images_per_s"] / result["model_only"]["images_per_s"]
    )
    result["masks_per_s"] = result["pipeline"]["masks_per_s"]
    result["peak_host_mb"] = _peak_host_mb()
    if dev.type == "cuda":
        result["peak_device_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    if not workdir:
        shutil.rmtree(tmp, ignore_errors=True)
    return result


def _height_width(image: ImageRecord) -> tuple[int, int]:
    """``(height, width)`` of a bench image (the reader takes them from its PNG header)."""
    assert image.height is not None and image.width is not None
    return image.height, image.width


def _measure_loops(
    result: dict[str, Any],
    config: BuildConfig,
    sam: SamSegmenter,
    root: Path,
    tmp: Path,
    dataset: Dataset,
    prompt_sets: list[PromptSet],
    bank: DecoderBank | None,
    skip_reference: bool,
    host_cost: bool,
) -> None:
    """The ``pipeline`` and ``reference`` measurements (and, with a decoder bank,
    ``host_ms_per_mask`` of both) into ``result``."""
    from samrs.benchmarks.reference import run_reference_loop
    from samrs.build import run_build
    from samrs.segmenters import create_segmenter
    from samrs.segmenters.sam import SamSegmenter

    dev = sam.device
    images, repeats = result["images"], result.get("repeats", 1)
    masks = sum(len(p) for p in prompt_sets)

    # pipeline: files on disk -> committed outputs (after a one-image build, so that the
    # first imports of readers and writers are not timed; the model is warm already)
    warm_root = tmp / "warmup"
    shutil.rmtree(warm_root, ignore_errors=True)
    make_bench_dataset(warm_root, 1, min(result["objects_per_image"], 2), result["image_size"], 1)
    warm = replace(
        config, root=str(warm_root), out=str(tmp / "warmup-out"), workers=1, threads=None
    )
    run_build(warm)

    def pipeline() -> float:
        start = time.perf_counter()
        summary = run_build(config)
        _sync(dev)
        assert summary.ok, summary.failed_shards
        return time.perf_counter() - start

    best = min(pipeline() for _ in range(repeats))
    result["pipeline"] = {
        "seconds": best,
        "images_per_s": images / best,
        "masks_per_s": masks / best,
    }
    if skip_reference and (bank is None or not host_cost):
        return
    eager = create_segmenter(
        "sam", model=sam.model_name, checkpoint=config.checkpoint,
        random_weights=config.checkpoint is None, seed=config.seed, device=str(dev),
        attention="eager", precision="fp32",
    )  # fmt: skip
    assert isinstance(eager, SamSegmenter)  # "sam" without wrappers
    palette = semantic_palette(class_table("dota"))
    paths = sorted((root / "train" / "images").glob("*.png"))
    boxes_np = [p.enclosing_boxes() for p in prompt_sets]
    classes = [np.array([o.class_id for o in im.objects]) for im in dataset.images]
    low_res = bank.reference if bank is not None and result["masks"] == "objects" else None

    def reference(replay: bool = False) -> float:
        logits = low_res
        if replay:
            assert bank is not None  # replayed only with a bank (below)
            logits = bank.reference
        ref_dir = tmp / ("reference-replay" if replay else "reference")
        shutil.rmtree(ref_dir, ignore_errors=True)
        start = time.perf_counter()
        run_reference_loop(
            eager.model, paths, boxes_np, classes, ref_dir, palette,
            low_res=logits, replay=replay,
        )  # fmt: skip
        _sync(dev)
        return time.perf_counter() - start

    # warm-up on one image, as for the other two measurements
    run_reference_loop(
        eager.model, paths[:1], boxes_np[:1], classes[:1], tmp / "warmup-ref", palette,
        low_res=low_res,
    )  # fmt: skip
    if not skip_reference:
        best = min(reference() for _ in range(repeats))
        result["reference"] = {
            "seconds": best,
            "images_per_s": images / best,
            "masks_per_s": masks / best,
        }
        result["pipeline_over_reference"] = (
            result["pipeline"]["images_per_s"] / result["reference"]["images_per_s"]
        )
        result["mask_agreement"] = _mask_agreement(Path(config.out), tmp / "reference")
    if bank is None or not host_cost:
        return
    # host cost: both loops again, encoder and decoder replaced by the bank's logits
    bank.install("replay")
    host = min(pipeline() for _ in range(repeats))
    ref_host = min(reference(replay=True) for _ in range(repeats))
    result["pipeline"]["host_ms_per_mask"] = 1000 * host / max(masks, 1)
    result.setdefault("reference", {})["host_ms_per_mask"] = 1000 * ref_host / max(masks, 1)
    result["host_ms_per_mask_over_reference"] = host / ref_host
