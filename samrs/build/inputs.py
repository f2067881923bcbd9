"""What a build read: the files behind its plan, so ``--resume`` can tell a changed dataset.

A plan is fixed by its input files (images, label files, files that gave errors). Their
paths, sizes and modification times are recorded in ``OUT/.samrs/inputs.json`` when a build
starts; resuming compares the dataset of the new plan with that record and refuses to mix
outputs of two different datasets, naming what changed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from samrs.core.records import ErrorRecord, ImageRecord

InputFiles = dict[str, list[int]]
"""Path (relative to the dataset root where inside it) -> [size in bytes, mtime in ns]."""


def input_files(
    root: str | Path, images: Iterable[ImageRecord], errors: Iterable[ErrorRecord]
) -> InputFiles:
    """Size and modification time of every file a plan reads (missing files: ``[-1, -1]``)."""
    root = Path(root)
    paths: set[str] = set()
    for image in images:
        paths.add(image.image_path)
        if image.annotation_file:
            paths.add(image.annotation_file)
    paths.update(error.source_file for error in errors if error.source_file)
    files: InputFiles = {}
    for path in sorted(paths):
        try:
            st = os.stat(path)
            stamp = [st.st_size, st.st_mtime_ns]
        except OSError:
            stamp = [-1, -1]
        files[_relative(path, root)] = stamp
    return files


def _relative(path: str, root: Path) -> str:
    try:
        return Path(path).resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return os.path.abspath(path)


def describe_changes(recorded: InputFiles, current: InputFiles, most: int = 5) -> str | None:
    """A one-line description of how ``current`` differs from ``recorded``; None if equal."""
    added = sorted(set(current) - set(recorded))
    removed = sorted(set(recorded) - set(current))
    modified = sorted(p for p in set(current) & set(recorded) if current[p] != recorded[p])
    parts = []
    for label, names in (("modified", modified), ("added", added), ("removed", removed)):
        if names:
            shown = ", ".join(names[:most]) + (
                f", ... ({len(names) - most} more)" if len(names) > most else ""
            )
            parts.append(f"{len(names)} {label} ({shown})")
    return "; ".join(parts) or None


def write_input_files(path: Path, files: InputFiles) -> None:
    """Record the input files (atomic write; ASCII JSON, so any file name round-trips)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(files, sort_keys=True, separators=(",", ":")) + "\n")
    os.replace(tmp, path)


def read_input_files(path: Path) -> InputFiles | None:
    """The recorded input files, or None when the build has no record (older samrs)."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}  # unreadable record: every current file shows up as added
    return {str(k): list(v) for k, v in data.items()} if isinstance(data, dict) else {}
