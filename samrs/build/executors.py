"""Where shards run: in this process, on a local Dask cluster, or on an existing one.

Every executor takes the shards still to do and yields one outcome per shard as it ends,
either a :class:`~samrs.build.worker.ShardResult` or the cause of its final failure.
Retries are bounded by ``max_retries``; a worker process that dies mid-shard makes Dask
run the shard again on another worker.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from samrs.build.config import BuildConfig
from samrs.build.plan import Shard
from samrs.build.worker import ImageReader, ShardResult, StagedShard, run_shard, stage_shard
from samrs.core.classes import ClassTable

log = logging.getLogger(__name__)


@dataclass
class ShardFailure:
    """A shard that failed on every attempt."""

    index: int
    cause: str


Outcome = ShardResult | ShardFailure
OnImage = Callable[[dict[str, object]], None]


def _cause(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"


def run_local(
    shards: list[Shard],
    config: BuildConfig,
    classes: ClassTable,
    on_image: OnImage | None = None,
) -> Iterator[Outcome]:
    """Run shards one after the other in this process (``--workers 1``); ``on_image`` gets
    each written image's row (see :func:`~samrs.build.worker.run_shard`).

    Shards follow each other without a pause for the model: one image reader serves them
    all (the next shard's first batch is read and encoded while the current one ends), and
    a shard is committed on a thread while the next one runs. A shard whose commit fails is
    run again from the start, within ``max_retries``."""
    reader = ImageReader(config)
    committing: tuple[Shard, Future[ShardResult], int] | None = None  # and tries made
    try:
        with ThreadPoolExecutor(1, thread_name_prefix="samrs-commit") as committer:
            for k, shard in enumerate(shards):
                upcoming = shards[k + 1].images if k + 1 < len(shards) else ()
                stage = functools.partial(
                    stage_shard, shard, config, classes, reader, on_image, upcoming
                )
                outcome, attempts = _with_retries(shard, config, stage)
                if committing is not None:
                    yield _committed(*committing, config, classes, on_image)
                    committing = None
                if isinstance(outcome, StagedShard):
                    committing = (shard, committer.submit(outcome.commit), attempts)
                else:
                    yield outcome
            if committing is not None:
                yield _committed(*committing, config, classes, on_image)
    finally:
        reader.close()


def _with_retries(
    shard: Shard, config: BuildConfig, attempt: Callable[[], object], done: int = 0
) -> tuple[Any, int]:
    """``attempt()``'s value, or the shard's failure after ``max_retries`` more tries;
    and how many tries were made in all (``done`` before these)."""
    cause = ""
    tries = done
    while tries <= config.max_retries:
        tries += 1
        try:
            return attempt(), tries
        except Exception as exc:
            cause = _cause(exc)
            log.warning("shard %d attempt %d failed: %s", shard.index, tries, cause)
    return ShardFailure(shard.index, cause), tries


def _committed(
    shard: Shard,
    commit: Future[ShardResult],
    tries: int,
    config: BuildConfig,
    classes: ClassTable,
    on_image: OnImage | None,
) -> Outcome:
    """The result of a shard's commit; if it failed, the shard run again (whole)."""
    try:
        return commit.result()
    except Exception as exc:
        log.warning("shard %d commit failed: %s", shard.index, _cause(exc))
        run = functools.partial(run_shard, shard, config, classes, on_image)
        outcome: Outcome = _with_retries(shard, config, run, tries)[0]
        return outcome


def _local_cluster(config: BuildConfig):
    """A Dask cluster on this machine: one process per GPU (pinned) or per CPU worker."""
    import dask
    from distributed import LocalCluster, Nanny, Scheduler, SpecCluster

    from samrs.segmenters.memory import ALLOCATOR_ENV

    # set in the nanny before it spawns a worker, so glibc reads them at the worker's start
    # (Dask's default MALLOC_TRIM_THRESHOLD_ would shrink the heap after every image)
    spawn_env = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **ALLOCATOR_ENV}
    dask.config.set({"distributed.nanny.pre-spawn-environ": spawn_env})
    if config.writers or config.decoders:  # daemonic processes may not have children
        dask.config.set({"distributed.worker.daemon": False})
    if config.gpus > 0:
        workers = {
            f"gpu-{i}": {
                "cls": Nanny,
                "options": {
                    "nthreads": 1,
                    "env": {"CUDA_VISIBLE_DEVICES": str(i)},
                    "resources": {"GPU": 1},
                    "silence_logs": logging.ERROR,
                },
            }
            for i in range(config.gpus)
        }
        scheduler = {"cls": Scheduler, "options": {"dashboard_address": None}}
        return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=logging.ERROR)
    return LocalCluster(
        n_workers=config.workers,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
        memory_limit=0,
    )


PROGRESS_FIELDS = ("shard", "n_objects", "status")
"""What a Dask worker reports of each finished image (the images row, trimmed)."""


def report_image(topic: str, row: dict[str, object]) -> None:
    """On a Dask worker: send one finished image's progress to the client as an event."""
    from distributed import get_worker

    get_worker().log_event(topic, {k: row.get(k) for k in PROGRESS_FIELDS})


def run_dask(
    shards: list[Shard],
    config: BuildConfig,
    classes: ClassTable,
    on_image: OnImage | None = None,
) -> Iterator[Outcome]:
    """Run shards on Dask: a local cluster, or the one at ``config.scheduler``.

    With ``--scheduler``, workers started with a ``GPU`` resource get one shard per GPU;
    OUT must be on a file system every worker can write. ``on_image`` is called in this
    process, from Dask's event thread, for every image a worker finishes (worker events on a
    topic of this build).
    """
    import dask
    from distributed import Client, as_completed

    dask.config.set({"distributed.scheduler.allowed-failures": config.max_retries})
    cluster = None if config.scheduler else _local_cluster(config)
    client = Client(config.scheduler) if config.scheduler else Client(cluster)
    topic = f"samrs-progress-{socket.gethostname()}-{os.getpid()}-{id(shards)}"
    report = None
    if on_image is not None:
        client.subscribe_topic(topic, lambda event: on_image(event[1]))
        report = functools.partial(report_image, topic)
    try:
        resources = {"GPU": 1} if (config.gpus > 0 or _has_gpu_workers(client)) else None
        futures = {}
        for shard in shards:
            future = client.submit(
                run_shard,
                shard,
                config,
                classes,
                report,
                key=f"samrs-shard-{shard.index:05d}-{os.getpid()}",
                resources=resources,
                retries=config.max_retries,
                pure=False,
            )
            futures[future] = shard.index
        for future in as_completed(futures):
            index = futures[future]
            try:
                yield future.result()
            except Exception as exc:
                yield ShardFailure(index, _cause(exc))
    finally:
        if on_image is not None:
            client.unsubscribe_topic(topic)
        client.close()
        if cluster is not None:
            cluster.close()


def _has_gpu_workers(client) -> bool:
    info = client.scheduler_info().get("workers", {})
    return bool(info) and all("GPU" in (w.get("resources") or {}) for w in info.values())


def execute(
    shards: list[Shard],
    config: BuildConfig,
    classes: ClassTable,
    on_image: OnImage | None = None,
) -> Iterator[Outcome]:
    """Pick the executor: Dask for a scheduler, several GPUs or several CPU workers; this
    process otherwise (one GPU or one CPU worker: no cluster overhead).

    ``on_image`` (live progress) is called per image in this process, for Dask runs from
    Dask's event thread.
    """
    if config.scheduler or config.gpus > 1 or (config.gpus == 0 and config.workers > 1):
        return run_dask(shards, config, classes, on_image)
    return run_local(shards, config, classes, on_image)
