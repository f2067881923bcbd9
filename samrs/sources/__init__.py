"""Dataset readers: one module per source format, one entry point, :func:`read_dataset`.

>>> ds = read_dataset("dota", "DOTA", version="1.0")          # doctest: +SKIP
>>> ds.images[0].image_id, len(ds.images[0].objects), ds.errors[:1]   # doctest: +SKIP

Each reader module exposes ``read(root: Path, ctx: ReadContext) -> list[ImageRecord]``; the
registry :data:`READERS` maps a source name to its module (imported on first use).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from samrs.core.classes import DEFAULT_VERSION, SOURCES, class_table
from samrs.core.records import Dataset
from samrs.sources.common import (
    SPLIT_MARKER,
    ReadContext,
    SourceError,
    check_root,
    drop_symlink_duplicates,
    sort_images,
    unique_ids,
)

__all__ = ["READERS", "ReadContext", "SourceError", "read_dataset"]

READERS: dict[str, str] = {
    "dota": "samrs.sources.dota",
    "dior": "samrs.sources.dior",
    "fair1m": "samrs.sources.fair1m",
    "hrsc": "samrs.sources.hrsc",
    "isaid": "samrs.sources.isaid",
}
"""Source name -> reader module (``read(root, ctx)``, optional ``resolve_version(v)``)."""

ON_UNKNOWN_CLASS = ("error", "skip")


def split_output(folder: Path) -> tuple[str, str] | None:
    """``(source, version)`` when ``folder`` (or its parent, for one split's folder) is the
    output of ``samrs split`` (it holds :data:`samrs.sources.common.SPLIT_MARKER`), else None."""
    for candidate in (folder, folder.parent):
        marker = candidate / SPLIT_MARKER
        if not marker.is_file():
            continue
        try:
            info = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise SourceError(f"unreadable `samrs split` marker {marker}: {exc}") from exc
        if not (isinstance(info, dict) and info.get("source") in READERS and info.get("version")):
            raise SourceError(f"{marker}: expected the source and version of a `samrs split`")
        return str(info["source"]), str(info["version"])
    return None


def read_dataset(
    source: str,
    root: str | Path,
    version: str | None = None,
    split: str | None = None,
    class_order: str = "official",
    on_unknown_class: str = "error",
) -> Dataset:
    """Read a dataset of any supported source into the normalized model.

    Args:
        source: ``dota``, ``dior``, ``fair1m``, ``hrsc`` or ``isaid``.
        root: the dataset's top folder (with its split folders) or one split's folder; also
            a ``samrs split`` output of ``source`` (read as DOTA labelTxt patches with
            ``source``'s class table; version default: the one it was cut from).
        version: dataset version (default: the source's default, e.g. DOTA ``1.0``). DIOR also
            takes ``hbb`` or ``obb`` (alias ``r``, ``dior-r``) to choose the annotation set.
        split: only this split (``val`` also matches ``validation``); None reads all.
        class_order: ``official`` or ``samrs`` class ids.
        on_unknown_class: ``error`` or ``skip``; both record an error row for the object
            (stage ``read`` or ``skip``), never a silent drop.

    Returns:
        The images sorted by split then id (ids unique), and every problem found.

    Raises:
        SourceError: unknown source, version or option; root missing; no data under root;
            root is a ``samrs split`` output of another source.
    """
    if source not in READERS:
        raise SourceError(f"unknown source {source!r}; expected one of {', '.join(SOURCES)}")
    if on_unknown_class not in ON_UNKNOWN_CLASS:
        raise SourceError(
            f"unknown on_unknown_class {on_unknown_class!r}; expected one of "
            f"{', '.join(ON_UNKNOWN_CLASS)}"
        )
    path = check_root(root)
    patches = split_output(path)
    if patches is not None:  # a `samrs split` output: DOTA labelTxt, classes of its source
        if patches[0] != source:
            raise SourceError(
                f"{path} is a `samrs split` output of {patches[0]} {patches[1]}: read it with "
                f"source {patches[0]!r}"
            )
        module, variant = importlib.import_module(READERS["dota"]), None
        version = version or patches[1]
    else:
        module = importlib.import_module(READERS[source])
        variant = None
        if hasattr(module, "resolve_version"):
            version, variant = module.resolve_version(version)
    version = version or DEFAULT_VERSION[source]
    try:
        table = class_table(source, version, class_order)
    except ValueError as exc:
        raise SourceError(str(exc)) from exc
    ctx = ReadContext(
        source=source,
        version=version,
        table=table,
        on_unknown_class=on_unknown_class,
        split=split,
        variant=variant,
    )
    images = module.read(path, ctx)
    if split is not None and not images and not ctx.errors:
        raise SourceError(f"no {source} images of split {split!r} found under {path}")
    images = drop_symlink_duplicates(sort_images(images), ctx, path)
    return Dataset(source, version, unique_ids(images), ctx.errors)
