"""The work on one shard: read pixels -> prompts -> segmenter -> quality -> writers -> commit.

Runs inside a worker process (or the main process for ``--workers 1``). Reading and
decoding images, the model, and encoding/writing outputs overlap: images are decoded ahead
of the model (bounded look-ahead) by a thread pool, or by decode processes
(``BuildConfig.decoders``); while the model works on the next batch, a thread of that pool
takes each segmented image's masks off the device (COCO RLE strings encoded there, when
the segmenter kept them) and hands the image to a writer
process (``BuildConfig.writers``; quality, reject policy, label painting, PNGs and the
manifest rows), or finishes it itself without writers. The process that drives the model
then only drives the model. Memory stays bounded by the look-ahead and batch sizes,
whatever the size of the shard or dataset.

:func:`run_shard` runs one shard (Dask tasks); :func:`stage_shard` is the same without
the commit, with an :class:`ImageReader` shared by the shards a process runs in a row
(:func:`samrs.build.executors.run_local` commits on a thread while the next shard runs).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import socket
import threading
import time
import zlib
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import (
    BrokenExecutor,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from samrs.build.config import BuildConfig
from samrs.build.fragments import coco_options
from samrs.build.layout import MANIFEST_TABLES, Layout
from samrs.build.plan import Shard
from samrs.core.classes import ClassTable
from samrs.core.records import ErrorRecord, ImageRecord, Polygon, exception_message
from samrs.errors import SamrsError
from samrs.segmenters import needs_weights
from samrs.segmenters.base import MaskSet, PromptSet, Segmenter

if TYPE_CHECKING:
    from samrs.core.masks import MaskCrop
    from samrs.quality import FilterResult

log = logging.getLogger(__name__)

FAULT_ENV = "SAMRS_FAULT_INJECT"
"""Testing hook: ``kill:SHARD`` or ``raise:SHARD`` makes the first attempt at that shard die
(``os._exit``) or raise, so tests can check retries and resume. Ignored when unset."""

_SEGMENTERS: dict[str, Segmenter] = {}
_WRITERS: dict[int, ProcessPoolExecutor] = {}
_DECODERS: list[ProcessPoolExecutor] = []
_WARNED_DAEMONIC: set[str] = set()


@dataclass
class ShardResult:
    """What one shard produced (summed up for the progress display and the summary)."""

    index: int
    images: int = 0
    objects: int = 0
    kept: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    status: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    skipped: bool = False
    worker: str = ""


@dataclass
class _ImageOutput:
    image_row: dict[str, object]
    instance_rows: list[dict[str, object]]
    error_rows: list[dict[str, object]]


class _SourceCache:
    """Open images shared by the reader threads, so the tiles of one image decode it once.

    Tiles of an image are consecutive in the plan; a few sources are kept open (least
    recently used first out) and each is read under its own lock.
    """

    def __init__(
        self,
        size: int = 3,
        max_pixels: int | None = None,
        pad_value: tuple[int, int, int] | None = None,
    ) -> None:
        from samrs.core.imageio import PAD_VALUE

        self.size = size
        self.max_pixels = max_pixels
        self.pad_value = PAD_VALUE if pad_value is None else pad_value
        self.lock = threading.Lock()
        self.sources: OrderedDict[str, tuple[Any, threading.Lock]] = OrderedDict()

    def read(self, image: ImageRecord) -> tuple[np.ndarray, tuple[str, tuple[float, ...]] | None]:
        """Pixels of the image (or its window) and its georeferencing, if any."""
        from samrs.core.imageio import georeference, open_image, window_transform

        with self.lock:
            entry = self.sources.get(image.image_path)
            if entry is None:
                entry = (None, threading.Lock())
                self.sources[image.image_path] = entry
                while len(self.sources) > self.size:
                    _, (old, old_lock) = self.sources.popitem(last=False)
                    if old is not None:
                        with old_lock:
                            old.close()
            self.sources.move_to_end(image.image_path)
        source_lock = entry[1]
        with source_lock:
            source = self.sources.get(image.image_path, entry)[0]
            if source is None:
                source = open_image(image.image_path, self.max_pixels)
                with self.lock:
                    self.sources[image.image_path] = (source, source_lock)
            pixels = source.read(image.window, self.pad_value)
        geo = georeference(image.image_path) if source.windowed else None
        if geo is not None and image.window is not None:
            geo = (geo[0], window_transform(geo[1], image.window))
        return pixels, geo

    def close(self) -> None:
        """Close every open source."""
        with self.lock:
            for source, lock in self.sources.values():
                if source is not None:
                    with lock:
                        source.close()
            self.sources.clear()


class ImageReader:
    """Images decoded ahead of the model, over open sources: by a thread pool (which also
    finishes images), or by decode processes (``BuildConfig.decoders``; see
    :func:`decoder_pools`), each with its own open sources, every image of one source file
    sent to the same process (:func:`decoder_index`) so that the tiles of a big image decode
    it once. Shared by the shards one process runs in a row, so that the next shard's first
    images are decoded while the current one ends, and handed over."""

    def __init__(self, config: BuildConfig) -> None:
        from samrs.tiling import patch_pad_value

        self.settings = (config.max_image_pixels, patch_pad_value(config.tile_convention))
        self.cache = _SourceCache(max_pixels=self.settings[0], pad_value=self.settings[1])
        threads = max(2, min(8, (os.cpu_count() or 2)))
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="samrs-io")
        self.decoders = decoder_pools(config.decoders or 0)
        self.ahead: dict[tuple[str, object], Future] = {}

    @staticmethod
    def _key(image: ImageRecord) -> tuple[str, object]:
        return (image.image_path, image.window)

    def _submit(self, image: ImageRecord) -> Future:
        if not self.decoders:
            return self.pool.submit(self.cache.read, image)
        k = decoder_index(image.image_path, len(self.decoders))
        try:
            return _live_decoder(self.decoders, k).submit(_decode, image, *self.settings)
        except BrokenExecutor:  # died since the check: once more, on a new process
            return _live_decoder(self.decoders, k).submit(_decode, image, *self.settings)

    def read(self, image: ImageRecord) -> Future:
        """The image's pixels and georeferencing (a future; read ahead, or now). A read ahead
        whose decode process died is read again (the shard that saw it die is retried)."""
        future = self.ahead.pop(self._key(image), None)
        if future is not None and not (
            future.done() and isinstance(future.exception(), BrokenExecutor)
        ):
            return future
        return self._submit(image)

    def read_ahead(self, image: ImageRecord) -> Future:
        """Start reading an image that a later :meth:`read` will ask for."""
        key = self._key(image)
        if key not in self.ahead:
            self.ahead[key] = self._submit(image)
        return self.ahead[key]

    def close(self) -> None:
        """Wait for the pool's work, then close every source (the decode processes' too:
        they stay up for the next reader, their sources do not)."""
        for future in self.ahead.values():
            future.cancel()
        self.ahead.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.cache.close()
        closing = []
        for executor in self.decoders or ():
            with contextlib.suppress(BrokenExecutor):  # a dead process has no open sources
                closing.append(executor.submit(_close_sources))
        wait(closing)


def decoder_index(image_path: str, n: int) -> int:
    """The decode process (of ``n``) for every image of the source file ``image_path``: a
    stable hash, the same in every process and run."""
    return zlib.crc32(os.fsencode(image_path)) % n


class _DecodeFailure(SamrsError):
    """An image a decode process could not read; its message is the errors row's (computed
    there, so that any exception arrives as one that pickles)."""


_DECODE_CACHE: _SourceCache | None = None
"""In a decode process: the open sources of the current reader (closed with it)."""


def _decode(
    image: ImageRecord, max_pixels: int | None, pad_value: tuple[int, int, int]
) -> tuple[np.ndarray, tuple[str, tuple[float, ...]] | None]:
    """In a decode process: :meth:`_SourceCache.read` on this process's open sources."""
    global _DECODE_CACHE
    cache = _DECODE_CACHE
    if cache is None or (cache.max_pixels, cache.pad_value) != (max_pixels, pad_value):
        if cache is not None:
            cache.close()
        cache = _DECODE_CACHE = _SourceCache(max_pixels=max_pixels, pad_value=pad_value)
    try:
        return cache.read(image)
    except Exception as exc:
        raise _DecodeFailure(exception_message(exc, "reading the image")) from None


def _close_sources() -> None:
    """In a decode process: close its open sources."""
    if _DECODE_CACHE is not None:
        _DECODE_CACHE.close()


def segmenter_options(config: BuildConfig) -> dict[str, Any]:
    """Keyword arguments of :func:`samrs.segmenters.create_segmenter` for a build (SAM
    keeps its masks on the device for the RLE stage, :func:`samrs.core.rle.encode_masks`)."""
    sam = {"keep_device_masks": True} if needs_weights(config.segmenter) else {}
    return {
        "model": config.model,
        "checkpoint": config.checkpoint,
        "random_weights": config.random_weights,
        "device": config.device,
        "seed": config.seed,
        "batch_size": config.batch_size,
        "chunk_size": config.chunk_size,
        "hq_token_only": config.hq_token_only,
        "multimask": config.multimask,
        "compile": config.compile,
        "clip_to_rbox": config.clip_to_rbox,
        "small_object_zoom": config.small_object_zoom,
        "zoom": {
            "crop": config.zoom_crop,
            "factor": config.zoom_factor,
            "zoom_all": config.zoom_all,
            "border": config.zoom_border,
        },
        "resize": config.resize,
        **sam,
    }


def get_segmenter(config: BuildConfig) -> Segmenter:
    """The segmenter of this process for ``config``, created once and reused across shards."""
    from samrs.segmenters import create_segmenter

    options = segmenter_options(config)
    key = json.dumps([config.segmenter, options], sort_keys=True, default=str)
    if key not in _SEGMENTERS:
        _SEGMENTERS.clear()  # one model per process
        _SEGMENTERS[key] = create_segmenter(config.segmenter, **options)
    return _SEGMENTERS[key]


def _children_allowed(what: str) -> bool:
    """Whether this process may start child processes: not a daemonic one (a Dask worker of
    a cluster that samrs did not start); there ``what`` is done on threads (warned once)."""
    import multiprocessing

    if not multiprocessing.current_process().daemon:
        return True
    if what not in _WARNED_DAEMONIC:
        log.warning("daemonic worker process: %s processes off, using threads", what)
        _WARNED_DAEMONIC.add(what)
    return False


def _process_pool(processes: int, kind: str) -> ProcessPoolExecutor:
    """Spawned processes (never forked: this process may have initialised CUDA)."""
    import multiprocessing

    return ProcessPoolExecutor(
        processes,
        multiprocessing.get_context("spawn"),
        initializer=functools.partial(_start_child, kind),
    )


def writer_pool(processes: int) -> ProcessPoolExecutor | None:
    """This process's writer processes (started once, reused across shards; a broken pool is
    replaced). None for 0, and in a daemonic process (a Dask worker of a cluster that samrs
    did not start), which may not have children: its images are finished on threads."""
    if processes <= 0 or not _children_allowed("writer"):
        return None
    pool = _WRITERS.get(processes)
    if pool is not None and getattr(pool, "_broken", False):
        pool.shutdown(wait=False, cancel_futures=True)
        pool = None
    if pool is None:
        for old in _WRITERS.values():
            old.shutdown(wait=False, cancel_futures=True)
        _WRITERS.clear()
        pool = _process_pool(processes, "writer")
        _WRITERS[processes] = pool
    return pool


def decoder_pools(processes: int) -> list[ProcessPoolExecutor] | None:
    """This process's decode processes: ``processes`` executors of one process each (an
    image goes to the one of its source file, :func:`decoder_index`), started once and
    reused across shards; a dead one is replaced when next used. None for 0 and in a
    daemonic process (images are then decoded on threads, as with 0)."""
    if processes <= 0 or not _children_allowed("decode"):
        return None
    if len(_DECODERS) != processes:
        for old in _DECODERS:
            old.shutdown(wait=False, cancel_futures=True)
        _DECODERS[:] = [_process_pool(1, "decode") for _ in range(processes)]
    return _DECODERS


def _live_decoder(pools: list[ProcessPoolExecutor], k: int) -> ProcessPoolExecutor:
    """Decode process ``k``, replaced first if it died (its pending reads failed with
    ``BrokenProcessPool``, which fails the shard that waits for them: it is retried)."""
    pool = pools[k]
    if getattr(pool, "_broken", False):
        pool.shutdown(wait=False, cancel_futures=True)
        log.warning("decode process %d died; starting a new one", k)
        pool = pools[k] = _process_pool(1, "decode")
    return pool


def _start_child(kind: str) -> None:
    """A writer or decode process: one thread for OpenCV, Ctrl-C left to the parent (which
    stops it), and an exit as soon as the parent is gone (a Dask worker is killed at the end
    of a build without shutting its pools down)."""
    import signal

    import cv2

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    cv2.setNumThreads(1)
    parent = os.getppid()

    def exit_with_parent() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=exit_with_parent, name=f"samrs-{kind}-watch", daemon=True).start()


def configure_threads(threads: int | None) -> None:
    """Set up a worker process: malloc keeps freed memory for reuse (SAM frees and
    re-allocates large blocks per image), and torch/OpenCV intra-op threads are limited so
    worker processes do not oversubscribe cores."""
    from samrs.segmenters.memory import retain_freed_memory

    retain_freed_memory()
    if not threads:
        return
    import cv2
    import torch

    torch.set_num_threads(threads)
    cv2.setNumThreads(threads)


@dataclass
class StagedShard:
    """A processed shard whose rows are written but not committed yet (see :meth:`commit`)."""

    layout: Layout
    result: ShardResult
    rows: dict[str, list[dict[str, object]]]
    start: float
    coco: dict[str, Any]  # the build's COCO options, for the shard's fragment
    writers: int = 0  # the build's writer processes (the fragment is made in one of them)

    def commit(self) -> ShardResult:
        """Commit the shard's manifest parts (and COCO fragment) atomically; its result,
        counted."""
        result, rows = self.result, self.rows
        _commit(self.layout, result.index, rows, self.coco, writer_pool(self.writers))
        result.images = len(rows["images"])
        for row in rows["instances"]:
            if row["kept"]:
                result.kept += 1
            else:
                result.rejected[str(row["reject_reason"])] += 1
        for row in rows["errors"]:
            result.errors[str(row["stage"])] += 1
        for row in rows["images"]:
            result.status[str(row["status"])] += 1
        result.seconds = time.perf_counter() - self.start
        return result


def run_shard(
    shard: Shard,
    config: BuildConfig,
    classes: ClassTable,
    on_image: Callable[[dict[str, object]], None] | None = None,
) -> ShardResult:
    """Process one shard and commit it atomically. Idempotent: a committed shard is skipped.

    ``on_image`` is called with each image's images-table row once its files are written
    (live progress; the rows are committed with the shard).
    """
    reader = ImageReader(config)
    try:
        staged = stage_shard(shard, config, classes, reader, on_image)
    finally:
        reader.close()
    return staged if isinstance(staged, ShardResult) else staged.commit()


def stage_shard(
    shard: Shard,
    config: BuildConfig,
    classes: ClassTable,
    reader: ImageReader,
    on_image: Callable[[dict[str, object]], None] | None = None,
    upcoming: Sequence[ImageRecord] = (),
) -> ShardResult | StagedShard:
    """Everything of :func:`run_shard` but the commit: the shard's files, and its rows to
    commit (a committed shard: its skipped result). ``upcoming``: the images of the shard
    this process runs next, whose first batch is read (``reader``) and encoded ahead."""
    layout = Layout(config.out)
    result = ShardResult(shard.index, worker=f"{socket.gethostname()}:{os.getpid()}")
    if layout.is_committed(shard.index):
        result.skipped = True
        return result
    layout.discard_uncommitted(shard.index)
    _maybe_inject_fault(shard.index, layout)
    start = time.perf_counter()
    configure_threads(config.threads)
    segmenter = get_segmenter(config) if shard.n_objects else None
    outputs = []
    for out in _process_images(shard, config, classes, segmenter, layout, reader, upcoming):
        outputs.append(out)
        if on_image is not None:
            on_image(out.image_row)
    error_rows = [_error_row(e, shard.index) for e in shard.errors]
    image_rows, instance_rows = [], []
    for out in outputs:
        image_rows.append(out.image_row)
        instance_rows.extend(out.instance_rows)
        error_rows.extend(out.error_rows)
    result.objects = shard.n_objects
    rows = {"images": image_rows, "instances": instance_rows, "errors": error_rows}
    return StagedShard(layout, result, rows, start, coco_options(config), config.writers or 0)


def _maybe_inject_fault(shard: int, layout: Layout) -> None:
    spec = os.environ.get(FAULT_ENV, "")
    if not spec:
        return
    action, _, target = spec.partition(":")
    if target != str(shard):
        return
    flag = layout.state / f"fault-{shard:05d}"
    if flag.exists():
        return  # only the first attempt fails
    flag.parent.mkdir(parents=True, exist_ok=True)
    flag.write_text(action)
    if action == "kill":
        os._exit(77)
    if action == "interrupt":  # as if Ctrl-C arrived while this shard runs
        raise KeyboardInterrupt
    raise RuntimeError(f"injected fault in shard {shard}")


def _commit(
    layout: Layout,
    shard: int,
    rows: dict[str, list[dict[str, object]]],
    coco: dict[str, Any],
    writers: ProcessPoolExecutor | None = None,
) -> None:
    """Write the three parts to temporary names, the shard's checksum record and its COCO
    fragment (with the options ``coco``, :mod:`samrs.build.fragments`; made in a process of
    ``writers`` when given, so that a commit on a thread of the process driving a GPU leaves
    it the interpreter), then rename the fragment and the parts into place, images last."""
    from samrs.build.checksums import write_shard_record
    from samrs.build.fragments import stage_fragment
    from samrs.outputs.manifest import write_part

    tmp = layout.tmp(shard)
    tmp.mkdir(parents=True, exist_ok=True)
    staged = {}
    for table in MANIFEST_TABLES:
        path = tmp / f"{table}.parquet"
        write_part(path, table, rows[table])
        staged[table] = path
    record = write_shard_record(layout, shard, staged, _written_files(layout, rows["images"]))
    make = functools.partial(stage_fragment, layout, shard, staged["images"],
                             staged["instances"], cast(dict, record["parts"]), coco)  # fmt: skip
    fragment = writers.submit(make).result() if writers is not None else make()
    layout.coco_fragment(shard).parent.mkdir(parents=True, exist_ok=True)
    os.replace(fragment, layout.coco_fragment(shard))
    for table in MANIFEST_TABLES:
        final = layout.part(table, shard)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged[table], final)
    tmp.rmdir()


def _written_files(layout: Layout, image_rows: list[dict[str, object]]) -> list[str]:
    """Files under OUT written for the shard's images (paths relative to OUT; a tile whose
    source could not be read has none)."""
    files = []
    for row in image_rows:
        semantic = row.get("semantic_file")
        if semantic:
            files.append(str(semantic))
            geotiff = Path(str(semantic)).with_suffix(".tif")
            if (layout.out / geotiff).is_file():
                files.append(geotiff.as_posix())
        if row["status"] != "error" and not os.path.isabs(str(row["file_name"])):
            files.append(str(row["file_name"]))  # a tile image written by the build
    return files


def _process_images(
    shard: Shard,
    config: BuildConfig,
    classes: ClassTable,
    segmenter: Segmenter | None,
    layout: Layout,
    reader: ImageReader,
    upcoming: Sequence[ImageRecord] = (),
) -> Iterator[_ImageOutput]:
    """Outputs of the shard's images, in order, with decoding and writing overlapped.

    Batches never span shards (on a GPU, results may depend on what is batched together,
    and a resumed build must batch as an uninterrupted one did); but once every image of
    this shard is being read, the first batch of ``upcoming`` is read too, and the model
    is told of it (:meth:`~samrs.segmenters.base.Segmenter.prefetch`) with this shard's last
    batch, so the device is not left idle between shards."""
    batch_size = config.batch_size  # >= 1: checked once, by build.run.resolve_config
    instance_ids = _instance_ids(shard)
    writers = writer_pool(config.writers or 0)
    pool = reader.pool
    next_batch = list(upcoming[:batch_size])
    loads: deque[tuple[int, Future]] = deque()
    finishing: deque[Future[_ImageOutput | Future[_ImageOutput]]] = deque()
    pending = iter(range(len(shard.images)))

    def top_up() -> None:
        while len(loads) < 2 * batch_size:
            i = next(pending, None)
            if i is None:
                for image in next_batch:
                    reader.read_ahead(image)
                return
            loads.append((i, reader.read(shard.images[i])))

    top_up()
    while loads:
        batch = [loads.popleft() for _ in range(min(batch_size, len(loads)))]
        top_up()
        pixels: dict[int, np.ndarray] = {}
        geos: dict[int, Any] = {}
        failures: dict[int, tuple[str, str]] = {}  # image -> (stage, message)
        for i, future in batch:
            try:
                pixels[i], geos[i] = future.result()
            except BrokenExecutor as exc:  # the decode process died: not the image's fault
                raise RuntimeError(
                    f"the decode process reading {shard.images[i].image_path} died ({exc}); "
                    "the shard is run again on a new one"
                ) from exc
            except Exception as exc:  # a corrupt image is a record error, not a crash
                failures[i] = ("image", exception_message(exc, "reading the image"))
        todo = [i for i in pixels if shard.images[i].objects]
        prompts = {i: _prompts(shard.images[i], config) for i in todo}
        masks: dict[int, MaskSet] = {}
        if todo and segmenter is not None:
            if segmenter.prefetches:  # else nothing waits for the next batch's pixels here
                ahead = (
                    [(shard.images[i], f) for i, f in list(loads)[:batch_size]]
                    if loads
                    else [(image, reader.read_ahead(image)) for image in next_batch]
                )
                segmenter.prefetch(_decoded_ahead(ahead))
            try:
                results = segmenter.segment([pixels[i] for i in todo], [prompts[i] for i in todo])
                masks = dict(zip(todo, results, strict=True))
            except Exception as exc:
                if len(todo) == 1:
                    message = exception_message(exc, "segmenting")
                    failures[todo[0]] = ("segment", f"segmenter failed: {message}")
                else:  # isolate the image that fails
                    for i in todo:
                        try:
                            masks[i] = segmenter.segment([pixels[i]], [prompts[i]])[0]
                        except Exception as inner:
                            message = exception_message(inner, "segmenting")
                            failures[i] = ("segment", f"segmenter failed: {message}")
        for i, _ in batch:
            image = shard.images[i]
            if i in failures:
                stage, message = failures[i]
                finishing.append(
                    pool.submit(_failed_image, image, message, stage, shard.index, layout)
                )
            else:
                finishing.append(
                    pool.submit(
                        _hand_over,
                        writers,
                        image,
                        pixels.pop(i),
                        geos.pop(i),
                        prompts.get(i),
                        masks.get(i),
                        instance_ids[i],
                        shard.index,
                        config,
                        classes,
                        layout,
                    )
                )
        while len(finishing) > 2 * batch_size:
            yield _finished(finishing.popleft())
    while finishing:
        yield _finished(finishing.popleft())


def _finished(future: Future[_ImageOutput | Future[_ImageOutput]]) -> _ImageOutput:
    """An image's output: from an I/O thread, or from the writer process it handed it to (an
    I/O thread never waits for a writer, so that image reads are not held up)."""
    output = future.result()
    return output.result() if isinstance(output, Future) else output


def _decoded_ahead(batch: list[tuple[ImageRecord, Future]]) -> list[np.ndarray]:
    """The pixels the next ``segment`` call will get (the next batch's images with objects,
    as in the loop above). Waits for them: they were read ahead, and are needed next."""
    wait(future for _, future in batch)
    return [
        future.result()[0]
        for image, future in batch
        if future.exception() is None and image.objects
    ]


def _instance_ids(shard: Shard) -> list[int]:
    ids, next_id = [], shard.first_instance_id
    for image in shard.images:
        ids.append(next_id)
        next_id += len(image.objects)
    return ids


def _prompts(image: ImageRecord, config: BuildConfig) -> PromptSet:
    from samrs.prompts import build_prompts

    polygons = np.array([obj.polygon for obj in image.objects], dtype=np.float64).reshape(-1, 8)
    return build_prompts(polygons, config.prompt)


def _image_row(
    image: ImageRecord, shard: int, layout: Layout, **values: object
) -> dict[str, object]:
    file_name = (
        str(layout.tile_image(image.image_id).relative_to(layout.out))
        if image.window is not None
        else os.path.abspath(image.image_path)
    )
    row: dict[str, object] = {
        "image_id": image.image_id,
        "source": image.source,
        "version": image.version,
        "split": image.split,
        "file_name": file_name,
        "source_file": os.path.abspath(image.image_path),
        "annotation_file": image.annotation_file,
        "tile_window": list(image.window) if image.window is not None else None,
        "width": image.width,
        "height": image.height,
        "gsd": image.gsd,
        "n_objects": len(image.objects),
        "n_kept": 0,
        "semantic_file": None,
        "status": "ok",
        "crs": None,
        "transform": None,
        "shard": shard,
        "ignore_polygons": [[float(v) for v in p] for p in image.ignore_polygons] or None,
        "source_image_id": image.source_image_id or image.image_id,
        "source_width": image.source_width,
        "source_height": image.source_height,
    }
    row.update(values)
    if image.window is None:  # a whole image is its own source
        row["source_width"], row["source_height"] = row["width"], row["height"]
    return row


def _error_row(error: ErrorRecord, shard: int) -> dict[str, object]:
    return {
        "source_file": error.source_file,
        "line": error.line,
        "stage": error.stage,
        "message": error.message,
        "image_id": error.image_id,
        "n_objects": error.n_objects,
        "shard": shard,
    }


def _failed_image(
    image: ImageRecord, message: str, stage: str, shard: int, layout: Layout
) -> _ImageOutput:
    error = ErrorRecord(image.image_path, None, stage, message, image.image_id, len(image.objects))
    return _ImageOutput(
        _image_row(image, shard, layout, status="error", n_objects=0),
        [],
        [_error_row(error, shard)],
    )


def _write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    from samrs.core.imageio import temp_name

    tmp = path.with_name(temp_name(path.name, f"{os.getpid()}.tmp"))
    write(tmp)
    os.replace(tmp, path)


def _hand_over(
    writers: ProcessPoolExecutor | None,
    image: ImageRecord,
    pixels: np.ndarray,
    geo: tuple[str, tuple[float, ...]] | None,
    prompts: PromptSet | None,
    masks: MaskSet | None,
    *context: Any,
) -> _ImageOutput | Future[_ImageOutput]:
    """On an I/O thread of the model's process: the RLE strings of masks still on the device
    (encoded there; device memory freed as soon as they are back), then the rest of
    :func:`_finish_image` here without writers, or in a writer process (its future returned
    at once). A writer gets the pixels of tiles only (which it writes), the size of whole
    images."""
    from samrs.core import rle

    strings = None
    if masks is not None and masks.device_masks is not None:
        strings = [
            cast(str, r["counts"]) for r in rle.encode_masks(masks.crops, masks.device_masks)
        ]
        masks.device_masks = None
    if writers is None:
        return _finish_image(image, pixels, geo, prompts, masks, strings, *context)
    sent = pixels if image.window is not None else pixels.shape[:2]
    return writers.submit(_finish_image, image, sent, geo, prompts, masks, strings, *context)


def _finish_image(
    image: ImageRecord,
    pixels: np.ndarray | tuple[int, ...],
    geo: tuple[str, tuple[float, ...]] | None,
    prompts: PromptSet | None,
    masks: MaskSet | None,
    strings: list[str] | None,
    first_id: int,
    shard: int,
    config: BuildConfig,
    classes: ClassTable,
    layout: Layout,
) -> _ImageOutput:
    """Quality, filters, RLE, semantic label and tile image of one segmented image.

    ``pixels``: the image, or its ``(height, width)`` where no tile image is written.
    ``strings``: the RLE counts of ``masks`` when they were encoded already (on the device);
    masks the reject policy replaces are encoded here."""
    from samrs.core import rle
    from samrs.core.masks import polygon_crops
    from samrs.outputs.geo import pixel_size_m
    from samrs.outputs.semantic import paint_semantic, semantic_palette, write_semantic_png
    from samrs.quality import apply_filters

    shape = pixels if isinstance(pixels, tuple) else pixels.shape
    height, width = int(shape[0]), int(shape[1])
    instance_rows: list[dict[str, object]] = []
    paint_masks: list[MaskCrop] = []
    paint_classes: list[int] = []
    paint_areas: list[float] = []
    paint_scores: list[float | None] = []
    rejected: list[Polygon] = []  # never painted as background
    if image.objects:
        assert prompts is not None and masks is not None
        verdict = apply_filters(masks, prompts.polygons.reshape(-1, 8), config, config.on_reject)
        encoded_masks: list[dict[str, object]] = (
            rle.encode_masks(verdict.masks)
            if strings is None
            else [
                rle.encode_crop(crop) if substituted else {"counts": string}
                for crop, string, substituted in zip(
                    verdict.masks, strings, verdict.substituted, strict=True
                )
            ]
        )
        for j, obj in enumerate(image.objects):
            row = instance_row(image, j, first_id, prompts, masks, verdict, encoded_masks[j])
            if row["kept"]:
                paint_masks.append(verdict.masks[j])
                paint_classes.append(obj.class_id)
                paint_areas.append(cast(float, row["area"]))
                paint_scores.append(cast("float | None", row["score"]))
            elif config.background:
                rejected.append(obj.polygon)
            instance_rows.append(row)
    if config.background:
        rejected.extend(image.ignore_polygons)  # objects cut by the tile edge, left out or clipped
    label = paint_semantic(
        height,
        width,
        paint_masks,
        paint_classes,
        paint_areas,
        paint_scores,
        policy=config.overlap,
        background=config.background,
        ignore=polygon_crops(rejected, 0.0, height, width),
    )
    semantic_path = layout.semantic(image.image_id)
    palette = semantic_palette(classes, config.background)
    _write_atomic(semantic_path, lambda p: write_semantic_png(p, label, palette))
    if geo is not None:
        from samrs.outputs.geo import write_category_names, write_semantic_geotiff
        from samrs.outputs.semantic import semantic_class_names

        geotiff = semantic_path.with_suffix(".tif")
        names = semantic_class_names(classes, config.background)
        _write_atomic(
            geotiff, lambda p: write_semantic_geotiff(p, label, geo[0], geo[1], palette, names)
        )
        write_category_names(geotiff, names)
    if image.window is not None:
        from samrs.core.imageio import write_png

        assert isinstance(pixels, np.ndarray)
        write_png(layout.tile_image(image.image_id), pixels)  # temporary name, then rename
    n_kept = sum(1 for row in instance_rows if row["kept"])
    row = _image_row(
        image,
        shard,
        layout,
        width=width,
        height=height,
        n_kept=n_kept,
        semantic_file=str(semantic_path.relative_to(layout.out)),
        status="ok" if image.objects else "empty",
        crs=geo[0] if geo else None,
        transform=list(geo[1]) if geo else None,
        gsd=image.gsd if image.gsd is not None or not geo else pixel_size_m(geo[0], geo[1]),
    )
    return _ImageOutput(row, instance_rows, [])


def instance_row(
    image: ImageRecord,
    j: int,
    first_id: int,
    prompts: PromptSet,
    masks: MaskSet,
    verdict: FilterResult,
    encoded: dict[str, object],
) -> dict[str, object]:
    """The instances-table row of object ``j`` of ``image`` (the one place it is built):
    its source record, prompt, mask (``encoded``: its COCO RLE), the segmenter's scores and
    the quality verdict (:func:`samrs.quality.apply_filters`) with how the mask was made."""
    obj = image.objects[j]
    substituted = bool(verdict.substituted[j])
    reason = None if substituted else verdict.reasons[j]
    flags = [*obj.flags, f"substituted:{verdict.reasons[j]}"] if substituted else list(obj.flags)
    fell_back = masks.fell_back(j)
    mask_source, mask_note = (
        ("substituted-box", verdict.reasons[j])
        if substituted
        else ("fallback-box", fell_back)
        if fell_back is not None
        else ("segmenter", None)
    )
    return {
        "instance_id": first_id + j,
        "image_id": image.image_id,
        "object_index": j,
        "class_id": obj.class_id,
        "class_name": obj.class_name,
        "difficult": bool(obj.difficult),
        "truncated": bool(obj.truncated),
        "polygon": [float(v) for v in obj.polygon],
        "hbox": [float(v) for v in obj.hbox],
        "prompt": prompts.mode,
        "prompt_box": _floats(prompts.boxes, j),
        "prompt_point": _floats(prompts.points, j),
        "segmentation": encoded["counts"],
        "area": int(verdict.metrics["area"][j]),
        "bbox": [float(v) for v in verdict.metrics["bbox"][j]],
        "score": _opt(masks.scores[j]),
        "stability": _opt(masks.stability[j]),
        "rbox_iou": float(verdict.metrics["rbox_iou"][j]),
        "inside_fraction": float(verdict.metrics["inside_fraction"][j]),
        "n_components": int(verdict.metrics["n_components"][j]),
        "kept": reason is None,
        "reject_reason": reason,
        "substituted": substituted,
        "source_file": obj.source_file,
        "source_line": obj.source_line,
        "flags": flags,
        "mask_source": mask_source,
        "mask_note": mask_note,
        "source_image_id": image.source_image_id or image.image_id,
        "source_object_index": j if obj.source_index is None else obj.source_index,
    }


def _floats(values: np.ndarray | None, j: int) -> list[float] | None:
    return None if values is None else [float(v) for v in values[j]]


def _opt(value: float) -> float | None:
    value = float(value)
    return None if np.isnan(value) else value
