"""``OUT/samrs.json``: build metadata (tool version, config, class table, model, counts).

Written by the build, read by exporters, stats and evaluation. Keys sorted, two-space
indent, UTF-8, trailing newline: same data -> same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from samrs.core.classes import ClassTable, as_color
from samrs.errors import SamrsError

METADATA_FILE = "samrs.json"


class BuildMetadataError(SamrsError, ValueError):
    """``samrs.json`` is missing or not what a build writes."""


def dumps(data: Any) -> str:
    """The canonical JSON text of build metadata."""
    return json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False) + "\n"


def write_build_metadata(out: str | Path, data: dict[str, Any]) -> Path:
    """Write ``OUT/samrs.json`` (through a temporary file, then an atomic rename)."""
    path = Path(out) / METADATA_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(dumps(data), encoding="utf-8")
    tmp.replace(path)
    return path


def read_build_metadata(out: str | Path) -> dict[str, Any]:
    """The parsed ``OUT/samrs.json``.

    Raises:
        BuildMetadataError: no such file, or not a JSON object.
    """
    path = Path(out) / METADATA_FILE
    if not path.is_file():
        raise BuildMetadataError(f"{path}: not found; is {out} the output folder of `samrs build`?")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BuildMetadataError(f"{path}: invalid JSON at line {exc.lineno}: {exc.msg}") from exc
    if not isinstance(data, dict):
        raise BuildMetadataError(f"{path}: expected a JSON object")
    return data


def class_table_from_dict(data: dict[str, Any]) -> ClassTable:
    """Inverse of :meth:`ClassTable.to_dict` (aliases are not stored and come back empty)."""
    classes = sorted(data["classes"], key=lambda c: int(c["id"]))
    if [int(c["id"]) for c in classes] != list(range(len(classes))):
        raise BuildMetadataError("class table ids must be 0..K-1")
    return ClassTable(
        source=str(data.get("source", "")),
        version=str(data.get("version", "")),
        order=str(data.get("order", "official")),
        names=tuple(str(c["name"]) for c in classes),
        palette=tuple(as_color(c["color"]) for c in classes),
        supercategories=tuple(c.get("supercategory") for c in classes),
    )


def build_class_table(meta: dict[str, Any]) -> ClassTable:
    """The class table stored under ``samrs.json["class_table"]``."""
    if "class_table" not in meta:
        raise BuildMetadataError("samrs.json has no 'class_table'")
    return class_table_from_dict(meta["class_table"])


def build_config(meta: dict[str, Any]) -> dict[str, Any]:
    """The build configuration stored under ``samrs.json["config"]`` ({} when absent)."""
    config = meta.get("config") or {}
    if not isinstance(config, dict):
        raise BuildMetadataError("samrs.json 'config' must be an object")
    return config
