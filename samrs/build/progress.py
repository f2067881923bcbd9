"""Live progress of a build on stderr, and its final summary table.

On a terminal a tqdm progress bar counts images as each one is written (local runs; Dask
runs advance a shard at a time), with images/s, objects/s, ETA, shards and failures. Elsewhere
(CI, log files) a plain line is printed at most every ``interval`` seconds and at the end, so
logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any, TextIO

from samrs.build.worker import ShardResult


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class Progress:
    """Counts shards, images and objects as images and shard results arrive.

    :meth:`image_done` counts one written image (from the worker, in-process runs);
    :meth:`shard_done` counts what a shard's images did not report (all of them for Dask
    runs and for shards committed by an earlier run).
    """

    def __init__(
        self,
        total_shards: int,
        total_images: int,
        total_objects: int,
        *,
        enabled: bool = True,
        stream: TextIO | None = None,
        interval: float = 10.0,
    ) -> None:
        self.total_shards, self.total_images, self.total_objects = (
            total_shards,
            total_images,
            total_objects,
        )
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.interval = interval
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.perf_counter()
        self.last_print = self.start  # plain lines: the first one after ``interval`` seconds
        self.done = self.failed = self.skipped = 0
        self.images = self.objects = 0
        self.skipped_images = self.skipped_objects = 0
        self.failed_images = 0
        self.workers: Counter[str] = Counter()
        self._reported: Counter[int] = Counter()  # images reported per unfinished shard
        self._reported_objects: Counter[int] = Counter()
        self._bar: Any = None
        self._lock = threading.RLock()  # Dask reports images from its event thread
        self._ended: set[int] = set()  # shards counted whole: late image reports are ignored

    def image_done(self, row: dict[str, Any]) -> None:
        """Count one image the worker has written (``row``: its images-table row)."""
        with self._lock:
            self._image_done(row)

    def _image_done(self, row: dict[str, Any]) -> None:
        shard = int(row["shard"])
        if shard in self._ended:  # a Dask event that arrived after its shard's result
            return
        objects = int(row.get("n_objects") or 0)
        self._reported[shard] += 1
        self._reported_objects[shard] += objects
        self.images += 1
        self.objects += objects
        self.failed_images += row.get("status") == "error"
        self._show(advance=1)

    def shard_done(self, result: ShardResult, images: int, objects: int) -> None:
        """Count a finished shard (``images``/``objects`` from the plan, for skipped ones)."""
        with self._lock:
            self._shard_done(result, images, objects)

    def _shard_done(self, result: ShardResult, images: int, objects: int) -> None:
        self._ended.add(result.index)
        self.done += 1
        if result.skipped:
            self.skipped += 1
            self.skipped_images += images
            self.skipped_objects += objects
        else:
            self.workers[result.worker] += 1
        # what the images did not report (a retried shard may have reported some twice)
        images_left = images - self._reported.pop(result.index, 0)
        self.images += images_left
        self.objects += objects - self._reported_objects.pop(result.index, 0)
        self._show(advance=images_left)

    def shard_failed(self, index: int | None = None) -> None:
        """Count a shard that failed for good (its reported images stay counted)."""
        with self._lock:
            self._shard_failed(index)

    def _shard_failed(self, index: int | None) -> None:
        if index is not None:
            self._ended.add(index)
        self.failed += 1
        if index is not None:
            self._reported.pop(index, None)
            self._reported_objects.pop(index, None)
        self._show(force=True)

    def _rates(self) -> tuple[float, float, float]:
        elapsed = time.perf_counter() - self.start
        fresh_images = self.images - self.skipped_images
        fresh_objects = self.objects - self.skipped_objects
        rate = fresh_images / elapsed if elapsed > 0 else 0.0
        orate = fresh_objects / elapsed if elapsed > 0 else 0.0
        return elapsed, rate, orate

    def _failures(self) -> str:
        parts = []
        if self.failed:
            parts.append(f"failed shards {self.failed}")
        if self.failed_images:
            parts.append(f"failed images {self.failed_images}")
        return "  ".join(parts)

    def line(self) -> str:
        """The current status line (plain mode)."""
        elapsed, rate, orate = self._rates()
        left = self.total_images - self.images
        eta = _duration(left / rate) if rate > 0 and left > 0 else "--"
        parts = [
            f"shards {self.done}/{self.total_shards}",
            f"images {self.images}/{self.total_images}",
            f"{rate:.2f} img/s",
            f"{orate:.1f} obj/s",
            f"elapsed {_duration(elapsed)}",
            f"ETA {eta}",
        ]
        if self._failures():
            parts.insert(1, self._failures())
        if self.skipped:
            parts.insert(1, f"already done {self.skipped}")
        if len(self.workers) > 1:
            busy = ", ".join(f"{w.rsplit(':', 1)[-1]}:{n}" for w, n in sorted(self.workers.items()))
            parts.append(f"shards by worker pid {busy}")
        return "  ".join(parts)

    def postfix(self) -> str:
        """What the bar shows after its own counts and rates."""
        _, _, orate = self._rates()
        parts = [f"{orate:.1f} obj/s", f"shards {self.done}/{self.total_shards}"]
        if self.skipped:
            parts.append(f"already done {self.skipped}")
        if self._failures():
            parts.append(self._failures())
        return ", ".join(parts)

    def _make_bar(self) -> Any:
        from tqdm import tqdm

        # started at the first fresh work: shards committed by an earlier run are the
        # bar's initial count and do not inflate its rate
        return tqdm(
            total=self.total_images,
            initial=self.images,
            unit="img",
            desc="build",
            file=self.stream,
            dynamic_ncols=True,
            smoothing=0.1,
            mininterval=0.2,
        )

    def _show(self, force: bool = False, advance: int = 0) -> None:
        if not self.enabled:
            return
        finished = self.done + self.failed >= self.total_shards
        if self.tty:
            if self._bar is None:
                if not advance and not finished and not force:
                    return
                self._bar = self._make_bar()
            elif advance:
                self._bar.update(advance)
            self._bar.set_postfix_str(self.postfix(), refresh=force or finished)
            if finished:
                self.close()
            return
        now = time.perf_counter()
        if force or finished or now - self.last_print >= self.interval:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last_print = now

    def close(self) -> None:
        """End the bar (its last state stays on the terminal)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def format_summary(summary: Mapping[str, Any]) -> str:
    """The final summary table of a build (:meth:`~samrs.build.run.BuildSummary.to_dict`),
    as plain text."""
    rows: list[tuple[str, str]] = []
    counts = summary.get("counts") or {}
    assert isinstance(counts, dict)
    images = counts.get("images", {})
    rows.append(
        (
            "images",
            f"{sum(images.values())} ({', '.join(f'{k} {v}' for k, v in sorted(images.items()))})",
        )
    )
    rows.append(("objects", str(counts.get("objects", 0))))
    rows.append(("instances kept", str(counts.get("kept", 0))))
    rejected = counts.get("rejected", {})
    rows.append(
        (
            "instances rejected",
            f"{sum(rejected.values())}"
            + (
                f" ({', '.join(f'{k} {v}' for k, v in sorted(rejected.items()))})"
                if rejected
                else ""
            ),
        )
    )
    errors = counts.get("errors", {})
    rows.append(
        (
            "error rows",
            f"{sum(errors.values())}"
            + (f" ({', '.join(f'{k} {v}' for k, v in sorted(errors.items()))})" if errors else ""),
        )
    )
    if "objects_in_errors" in counts:
        rows.append(("objects in error rows", str(counts["objects_in_errors"])))
    if summary.get("wall_seconds") is not None:
        wall = float(summary["wall_seconds"])
        rows.append(("wall time", _duration(wall)))
        done = int(summary.get("images_processed", 0))
        if wall > 0 and done:
            rows.append(("throughput", f"{done / wall:.2f} images/s"))
    workers = summary.get("workers") or {}
    if len(workers) > 1:
        rows.append(("shards per worker", ", ".join(f"{w} {n}" for w, n in workers.items())))
    failed = summary.get("failed_shards") or []
    if failed:
        rows.append(("FAILED shards", ", ".join(str(f["shard"]) for f in failed)))
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
