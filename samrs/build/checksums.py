"""Checksums of committed shards: what ``--resume`` and ``samrs verify`` check.

When a shard commits, its record ``OUT/.samrs/shards/shard-NNNNN.json`` lists the size and
sha256 of its three manifest parts and of every file its images wrote (semantic labels,
label GeoTIFFs, tile images), by path relative to OUT. The record is written before the
images part is renamed into place, so every committed shard has one (shards committed by an
older samrs have none and are reported as unverifiable).

Two depths of checking:

- ``quick`` (every ``--resume``): parts by sha256 (they are small), files by size.
- ``full`` (``samrs verify``): everything by sha256.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from samrs.build.layout import MANIFEST_TABLES, Layout

RECORD_VERSION = 1


def file_digest(path: str | os.PathLike[str]) -> dict[str, object]:
    """``{"bytes": size, "sha256": hex}`` of a file."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return {"bytes": size, "sha256": digest.hexdigest()}


def write_shard_record(
    layout: Layout, shard: int, staged_parts: dict[str, Path], files: Iterable[str]
) -> dict[str, object]:
    """Record the staged parts (before they are renamed into place) and the shard's files;
    returns the record."""
    record = {
        "version": RECORD_VERSION,
        "shard": shard,
        "parts": {table: file_digest(staged_parts[table]) for table in MANIFEST_TABLES},
        "files": {name: file_digest(layout.out / name) for name in sorted(set(files))},
    }
    path = layout.shard_record(shard)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")
    os.replace(tmp, path)
    return record


@dataclass
class ShardCheck:
    """Outcome of checking one committed shard."""

    shard: int
    problems: list[str] = field(default_factory=list)
    verified: bool = True  # False: no record (committed by an older samrs)

    @property
    def ok(self) -> bool:
        """No problem found (an unverifiable shard is not a problem)."""
        return not self.problems


def check_shard(layout: Layout, shard: int, *, full: bool = False) -> ShardCheck:
    """Compare a committed shard's parts and files with its record."""
    result = ShardCheck(shard)
    try:
        record = json.loads(layout.shard_record(shard).read_text())
        parts, files = record["parts"], record["files"]
    except FileNotFoundError:
        result.verified = False
        return result
    except (OSError, ValueError, KeyError, TypeError):
        result.problems.append(f"{layout.shard_record(shard)}: unreadable checksum record")
        return result
    expected = [(layout.part(t, shard), parts.get(t), True) for t in MANIFEST_TABLES]
    expected += [(layout.out / name, digest, full) for name, digest in files.items()]
    for path, digest, by_hash in expected:
        name = path.relative_to(layout.out).as_posix()
        if digest is None:
            result.problems.append(f"{name}: not in the checksum record")
            continue
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            result.problems.append(f"{name}: missing")
            continue
        if size != digest["bytes"]:
            result.problems.append(f"{name}: {size} bytes, expected {digest['bytes']}")
        elif by_hash and file_digest(path)["sha256"] != digest["sha256"]:
            result.problems.append(f"{name}: checksum mismatch")
    return result


def check_shards(layout: Layout, *, full: bool = False) -> list[ShardCheck]:
    """Check every committed shard, in shard order."""
    return [check_shard(layout, s, full=full) for s in sorted(layout.committed_shards())]


@dataclass
class VerifyReport:
    """What ``samrs verify`` found in a build folder."""

    out: Path
    shards: int = 0
    damaged: dict[int, list[str]] = field(default_factory=dict)
    unverifiable: list[int] = field(default_factory=list)
    final_files: list[str] = field(default_factory=list)  # problems with finalize's files
    complete: bool = False
    repaired: bool = False

    @property
    def ok(self) -> bool:
        """No damage found."""
        return not self.damaged and not self.final_files

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form."""
        return {
            "out": str(self.out),
            "ok": self.ok,
            "shards": self.shards,
            "damaged": {str(k): v for k, v in sorted(self.damaged.items())},
            "unverifiable": self.unverifiable,
            "final_files": self.final_files,
            "complete": self.complete,
            "repaired": self.repaired,
        }


def verify_build(out: str | os.PathLike[str], *, repair: bool = False) -> VerifyReport:
    """Check every committed shard (full checksums) and the files written at the end.

    With ``repair``, damaged shards are uncommitted (and the completion marker removed), so
    that running the same build again rebuilds exactly them; the build's lock is taken for
    that, so a build in progress is never changed under it.

    Raises:
        samrs.build.lock.BuildLockedError: ``repair`` while a build holds OUT.
    """
    from samrs.build.lock import BuildLock

    layout = Layout(Path(out))
    report = VerifyReport(layout.out)
    for check in check_shards(layout, full=True):
        report.shards += 1
        if not check.verified:
            report.unverifiable.append(check.shard)
        elif not check.ok:
            report.damaged[check.shard] = check.problems
    report.complete = layout.complete_marker.is_file()
    if report.complete:
        try:
            recorded = json.loads(layout.complete_marker.read_text()).get("files", {})
        except (OSError, ValueError):
            recorded = {}
        for name, digest in sorted(recorded.items()):
            path = layout.out / name
            if not path.is_file():
                report.final_files.append(f"{name}: missing")
            elif file_digest(path) != digest:
                report.final_files.append(f"{name}: checksum mismatch")
    if repair and not report.ok:
        with BuildLock(layout.lock):
            for shard in report.damaged:
                layout.uncommit(shard)
            layout.complete_marker.unlink(missing_ok=True)
        report.repaired = True
    return report
