"""Where a build keeps things inside OUT, and how a shard is known to be committed.

A shard is committed when its ``images`` part exists: the worker writes the shard's record
(sizes and sha256 of its parts and files, :mod:`samrs.build.checksums`) and its COCO
fragment (:mod:`samrs.build.fragments`), renames its errors and instances parts into place,
and the images part last. Parts of an uncommitted shard are
leftovers of an interrupted attempt and are removed before the shard is redone.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

MANIFEST_TABLES = ("errors", "instances", "images")  # commit order: images last
STATE_DIR = ".samrs"
MANAGED = (
    "manifest",
    "semantic",
    "images",
    "coco",
    "geo",
    "stats",
    "audit",
    "show",
    STATE_DIR,
    "README.md",
    "samrs.json",
)
"""Everything a build writes directly under OUT (removed by ``--overwrite``, in this order:
``samrs.json`` last, so that an interrupted overwrite can be run again)."""

LOCK_FILE = "lock"
"""Inside the state folder: the lock of the build in progress (kept by ``--overwrite``)."""

TEMPORARY_PATTERNS = (".*.tmp", ".ann-*")
"""Names of temporary files (written, then renamed into place) in output folders."""


class Layout:
    """Paths of one build output folder."""

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)

    def part(self, table: str, shard: int) -> Path:
        """Final path of one shard's part of a manifest table."""
        return self.out / "manifest" / table / f"part-{shard:05d}.parquet"

    def semantic(self, image_id: str) -> Path:
        """Semantic label PNG of an image."""
        return self.out / "semantic" / f"{image_id}.png"

    def tile_image(self, image_id: str) -> Path:
        """Image file of a tile cut from a larger image."""
        return self.out / "images" / f"{image_id}.png"

    @property
    def state(self) -> Path:
        """Internal state: temporary files, failure records, completion marker."""
        return self.out / STATE_DIR

    def tmp(self, shard: int) -> Path:
        """Private scratch folder of one shard attempt."""
        return self.state / "tmp" / f"shard-{shard:05d}"

    @property
    def complete_marker(self) -> Path:
        """Written last by finalize: the build is complete."""
        return self.state / "complete.json"

    @property
    def lock(self) -> Path:
        """The advisory lock held by the build in progress (:mod:`samrs.build.lock`)."""
        return self.state / LOCK_FILE

    @property
    def inputs(self) -> Path:
        """Record of the input files of the plan (:mod:`samrs.build.inputs`)."""
        return self.state / "inputs.json"

    def shard_record(self, shard: int) -> Path:
        """Sizes and checksums of a committed shard's parts and files."""
        return self.state / "shards" / f"shard-{shard:05d}.json"

    def coco_fragment(self, shard: int) -> Path:
        """A committed shard's COCO fragment (:mod:`samrs.build.fragments`)."""
        return self.state / "coco" / f"part-{shard:05d}.jsonl"

    def failure(self, shard: int) -> Path:
        """Record of a shard that kept failing."""
        return self.state / "failed" / f"shard-{shard:05d}.json"

    def is_committed(self, shard: int) -> bool:
        """Whether the shard's outputs are all in place."""
        return self.part("images", shard).is_file()

    def committed_shards(self) -> set[int]:
        """Indices of committed shards."""
        folder = self.out / "manifest" / "images"
        if not folder.is_dir():
            return set()
        return {int(p.stem.split("-")[1]) for p in folder.glob("part-*.parquet")}

    def uncommit(self, shard: int) -> None:
        """Turn a committed shard back into leftovers (a part or file failed its check)."""
        self.part("images", shard).unlink(missing_ok=True)
        self.discard_uncommitted(shard)
        self.shard_record(shard).unlink(missing_ok=True)
        self.complete_marker.unlink(missing_ok=True)

    def discard_uncommitted(self, shard: int) -> None:
        """Remove leftovers of an interrupted attempt at a shard that is not committed."""
        if self.is_committed(shard):
            return
        for table in MANIFEST_TABLES:
            self.part(table, shard).unlink(missing_ok=True)
        self.coco_fragment(shard).unlink(missing_ok=True)
        shutil.rmtree(self.tmp(shard), ignore_errors=True)

    def record_failure(self, shard: int, cause: str) -> None:
        """Write why a shard failed (read back by the summary and by ``--resume``)."""
        path = self.failure(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"shard": shard, "cause": cause}, indent=2) + "\n")

    def clear_failure(self, shard: int) -> None:
        """Forget an earlier failure of a shard (it is being retried)."""
        self.failure(shard).unlink(missing_ok=True)

    def is_empty(self) -> bool:
        """True when OUT is missing, empty, or holds only the state folder's lock file."""
        if not self.out.is_dir():
            return True
        entries = list(self.out.iterdir())
        if not entries:
            return True
        if [p.name for p in entries] != [STATE_DIR] or not self.state.is_dir():
            return False
        return all(p.name == LOCK_FILE for p in self.state.iterdir())

    def temporaries(self) -> Iterator[Path]:
        """Temporary files left by killed writers (only meaningful while the lock is held)."""
        for folder in (self.out, *(self.out / name for name in MANAGED)):
            if folder.is_dir():
                for pattern in TEMPORARY_PATTERNS:
                    yield from folder.glob(pattern)
        tmp = self.state / "tmp"
        if tmp.is_dir():
            yield from tmp.iterdir()

    def remove_temporaries(self) -> int:
        """Delete leftovers of killed writers; returns how many were removed."""
        removed = 0
        for path in list(self.temporaries()):
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed += 1
        return removed

    def remove_managed(self) -> None:
        """Delete everything a build wrote under OUT (``--overwrite``); other files stay, and
        so does the lock of the build doing the overwrite."""
        for name in MANAGED:
            path = self.out / name
            if name == STATE_DIR and path.is_dir():
                for child in path.iterdir():
                    if child.name != LOCK_FILE:
                        shutil.rmtree(child) if child.is_dir() else child.unlink()
            elif path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
