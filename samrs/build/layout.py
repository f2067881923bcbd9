"""Where a build keeps things inside OUT, and how a shard is known to be committed.

A shard is committed when its ``images`` part exists: the worker renames its errors and
instances parts into place first and the images part last. Parts of an uncommitted shard
are leftovers of an interrupted attempt and are removed before the shard is redone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

MANIFEST_TABLES = ("errors", "instances", "images")  # commit order: images last
STATE_DIR = ".samrs"
MANAGED = (
    "samrs.json",
    "manifest",
    "semantic",
    "images",
    "coco",
    "geo",
    "stats",
    "audit",
    "show",
    STATE_DIR,
)
"""Everything a build writes directly under OUT (removed by ``--overwrite``)."""


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

    def discard_uncommitted(self, shard: int) -> None:
        """Remove leftovers of an interrupted attempt at a shard that is not committed."""
        if self.is_committed(shard):
            return
        for table in MANIFEST_TABLES:
            self.part(table, shard).unlink(missing_ok=True)
        shutil.rmtree(self.tmp(shard), ignore_errors=True)

    def record_failure(self, shard: int, cause: str) -> None:
        """Write why a shard failed (read back by the summary and by ``--resume``)."""
        path = self.failure(shard)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"shard": shard, "cause": cause}, indent=2) + "\n")

    def clear_failure(self, shard: int) -> None:
        """Forget an earlier failure of a shard (it is being retried)."""
        self.failure(shard).unlink(missing_ok=True)

    def remove_managed(self) -> None:
        """Delete everything a build wrote under OUT (``--overwrite``); other files stay."""
        for name in MANAGED:
            path = self.out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
