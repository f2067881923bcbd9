"""``OUT/README.md``: a Hugging Face dataset card that makes a build loadable as it is.

The YAML header declares one ``configs:`` entry per manifest table with rows
(``instances``, the default, ``images`` and ``errors``), each reading ``manifest/<table>/*.parquet``, so
``datasets.load_dataset(OUT, "instances")`` (or the Hub, after an upload of OUT) gives the
table with its Parquet schema; without the header ``datasets`` would guess an image folder.
The body summarizes the build (counts, classes) and shows how to read it. Same build -> same
bytes (no timestamps).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from samrs.outputs.manifest import MANIFEST_DIR
from samrs.outputs.metadata import build_class_table
from samrs.outputs.schema import TABLES

CARD_FILE = "README.md"

CARD_CONFIGS = ("instances", "images", "errors")
"""``configs`` of the card, the first being the default one."""

CARD_BATCH_SIZE = 4096
"""Rows per batch ``datasets`` reads: set, because its default (the first row group's size)
is 0 for the empty part of a shard without rows of that table, which it refuses."""

HF_SPLIT = "train"
"""The one ``datasets`` split of every config (the source's splits are in the ``split``
column of ``images``)."""


def _yaml_str(value: str) -> str:
    """A YAML scalar that any YAML parser reads back as this string (JSON is YAML)."""
    return json.dumps(value, ensure_ascii=False)


def card_configs(meta: dict[str, Any]) -> list[str]:
    """The tables the card declares: those with rows (``datasets`` refuses an empty split);
    all of them while the build has no counts yet."""
    counts = meta.get("counts")
    if not counts:
        return list(CARD_CONFIGS)
    rows = {
        "instances": counts.get("instances", 0),
        "images": sum((counts.get("images") or {}).values()),
        "errors": sum((counts.get("errors") or {}).values()),
    }
    return [t for t in CARD_CONFIGS if rows[t]]


def card_header(meta: dict[str, Any]) -> str:
    """The YAML front matter (between ``---`` lines) of a build's dataset card."""
    source = meta.get("source") or {}
    name = source.get("format", "") if isinstance(source, dict) else str(source)
    version = source.get("version", "") if isinstance(source, dict) else ""
    lines = [
        "---",
        f"pretty_name: {_yaml_str(f'samrs {name} {version}'.strip())}",
        "license: other",
        "task_categories:",
        "- image-segmentation",
        "tags:",
        "- remote-sensing",
        "- segment-anything",
        "- samrs",
        "configs:",
    ]
    for i, table in enumerate(card_configs(meta)):
        lines += [
            f"- config_name: {table}",
            *(["  default: true"] if i == 0 else []),
            f"  batch_size: {CARD_BATCH_SIZE}",
            "  data_files:",
            f"  - split: {HF_SPLIT}",
            f"    path: {MANIFEST_DIR}/{table}/*.parquet",
        ]
    lines.append("---")
    return "\n".join(lines) + "\n"


def dataset_card(meta: dict[str, Any]) -> str:
    """The whole ``README.md`` text of a build (``meta``: its ``samrs.json``)."""
    table = build_class_table(meta)
    source = meta.get("source") or {}
    segmenter = meta.get("segmenter") or {}
    counts = meta.get("counts") or {}
    images = counts.get("images") or {}
    body = [
        "",
        f"# samrs segmentation dataset: {source.get('format', '?')} {source.get('version', '')}",
        "",
        "Instance masks made by prompting a segmenter with every annotated box of the source "
        "detection dataset (the SAMRS method), written by "
        f"samrs {meta.get('samrs_version', '')} (manifest schema "
        f"{meta.get('manifest_version', '')}).",
        "",
        f"- segmenter: `{segmenter.get('name')}`"
        + (f", model `{segmenter['model']}`" if segmenter.get("model") else "")
        + (" (random weights)" if segmenter.get("random_weights") else ""),
        f"- images: {sum(images.values())}"
        + (f" ({', '.join(f'{k} {v}' for k, v in sorted(images.items()))})" if images else ""),
        f"- instances: {counts.get('instances', 0)}, kept {counts.get('kept', 0)}",
        f"- error rows: {sum((counts.get('errors') or {}).values())}",
        "",
        "## Configurations",
        "",
        "| config | rows | columns |",
        "|---|---|---|",
    ]
    configs = card_configs(meta)
    for name in CARD_CONFIGS:
        rows = {"instances": counts.get("instances"), "images": sum(images.values())}.get(name)
        if name == "errors":
            rows = sum((counts.get("errors") or {}).values())
        shown = f"`{name}`" if name in configs else f"({name}: none, no config)"
        body.append(f"| {shown} | {rows if rows is not None else ''} | "
                    f"{', '.join(f'`{c}`' for c in TABLES[name].names)} |")  # fmt: skip
    body += [
        "",
        "A table without rows has no config (`datasets` cannot load an empty split); its "
        "Parquet parts are still in `manifest/`.",
        "",
        "Every Parquet column carries its description and unit as field metadata; the "
        "schema is documented in samrs' `manifests/README.md`.",
        "",
        "```python",
        "from datasets import load_dataset",
        "",
        'instances = load_dataset("path/to/this/folder", "instances", split="train")',
        "```",
        "",
        "`segmentation` holds COCO RLE counts of a mask of the image's `height` x `width` "
        "(`pycocotools.mask.decode({'size': [h, w], 'counts': counts})`); semantic labels are "
        "`semantic/<image_id>.png` (palette PNG, value = class id, 255 = unlabelled), COCO "
        "instances `coco/instances.json`.",
        "",
        "## Classes",
        "",
        "| id | name | colour |",
        "|---|---|---|",
        *(
            f"| {i} | {name} | `#{''.join(f'{v:02x}' for v in color)}` |"
            for i, (name, color) in enumerate(zip(table.names, table.palette, strict=True))
        ),
        "",
    ]
    return card_header(meta) + "\n".join(body)


def write_dataset_card(out: str | Path, meta: dict[str, Any]) -> Path:
    """Write ``OUT/README.md`` (through a temporary file and a rename)."""
    path = Path(out) / CARD_FILE
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(dataset_card(meta), encoding="utf-8")
    os.replace(tmp, path)
    return path
