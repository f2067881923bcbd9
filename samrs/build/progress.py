"""Live progress of a build on stderr, and its final summary table.

On a terminal one status line is redrawn in place; elsewhere (CI, log files) a plain line is
printed at most every ``interval`` seconds and at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import TextIO

from samrs.build.worker import ShardResult


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:d}:{s:02d}"


class Progress:
    """Counts shards, images and objects as shard results arrive."""

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
        self.last_print = 0.0
        self.done = self.failed = self.skipped = 0
        self.images = self.objects = 0
        self.skipped_images = self.skipped_objects = 0
        self.workers: Counter[str] = Counter()

    def shard_done(self, result: ShardResult, images: int, objects: int) -> None:
        """Count a finished shard (``images``/``objects`` from the plan, for skipped ones)."""
        self.done += 1
        if result.skipped:
            self.skipped += 1
            self.skipped_images += images
            self.skipped_objects += objects
        else:
            self.workers[result.worker] += 1
        self.images += images
        self.objects += objects
        self._show()

    def shard_failed(self) -> None:
        """Count a shard that failed for good."""
        self.failed += 1
        self._show(force=True)

    def line(self) -> str:
        """The current status line."""
        elapsed = time.perf_counter() - self.start
        fresh_images = self.images - self.skipped_images
        fresh_objects = self.objects - self.skipped_objects
        rate = fresh_images / elapsed if elapsed > 0 else 0.0
        orate = fresh_objects / elapsed if elapsed > 0 else 0.0
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
        if self.failed:
            parts.insert(1, f"failed {self.failed}")
        if self.skipped:
            parts.insert(1, f"already done {self.skipped}")
        if len(self.workers) > 1:
            busy = ", ".join(f"{w.rsplit(':', 1)[-1]}:{n}" for w, n in sorted(self.workers.items()))
            parts.append(f"shards by worker pid {busy}")
        return "  ".join(parts)

    def _show(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        finished = self.done + self.failed >= self.total_shards
        if self.tty:
            self.stream.write("\r\033[K" + self.line() + ("\n" if finished else ""))
            self.stream.flush()
        elif force or finished or now - self.last_print >= self.interval:
            self.stream.write(self.line() + "\n")
            self.stream.flush()
            self.last_print = now


def format_summary(summary: dict[str, object]) -> str:
    """The final summary table of a build, as plain text."""
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
        wall = float(summary["wall_seconds"])  # type: ignore[arg-type]
        rows.append(("wall time", _duration(wall)))
        done = int(summary.get("images_processed", 0))  # type: ignore[arg-type]
        if wall > 0 and done:
            rows.append(("throughput", f"{done / wall:.2f} images/s"))
    workers = summary.get("workers") or {}
    if len(workers) > 1:  # type: ignore[arg-type]
        rows.append(("shards per worker", ", ".join(f"{w} {n}" for w, n in workers.items())))  # type: ignore[union-attr]
    failed = summary.get("failed_shards") or []
    if failed:
        rows.append(("FAILED shards", ", ".join(str(f["shard"]) for f in failed)))  # type: ignore[index]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"  {k.ljust(width)}  {v}" for k, v in rows)
