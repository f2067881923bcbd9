"""DOTA v1.0 / v1.5 / v2.0 ``labelTxt`` reader (oriented and horizontal variants).

Layout: ``{train,val,test}/images/P####.png`` and ``{train,val}/labelTxt/P####.txt``; the
label folder may also be ``labelTxt-v1.5/`` or ``labelTxt-v1.0/labelTxt/`` as downloaded.
``--root`` is the top folder or one split's folder (or a ``samrs split`` output folder).

Label file: optional header lines ``imagesource:GoogleEarth`` and ``gsd:0.25`` (gsd may be
``null``), then one object per line ``x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]`` with integer
or float coordinates, CRLF or LF line ends. ``difficult`` is 0/1 (missing -> 0); the value 2
written by mmrotate's splitter for cut objects reads as not difficult but truncated.

Image ids are the file stems (``P0001``). A split with no label folder at all (the test split)
gives images without objects and no error; an image without its label file when the split has a
label folder gives an image without objects and an error row; a label file without an image
gives an error row accounting for its objects; an empty label file is an image without objects;
an unreadable label file is an error row and its image is not returned.
"""

from __future__ import annotations

import re
from pathlib import Path

from samrs.records import ImageRecord, ObjectAnnotation
from samrs.sources.common import (
    ReadContext,
    SourceError,
    child,
    find_leaves,
    index_images,
    parse_float,
    parse_int,
)

HEADER = re.compile(r"^\s*(imagesource|gsd)\s*:(.*)$", re.IGNORECASE)
EXPECTED = "'x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]'"


def _label_dirs(leaf: Path) -> list[Path]:
    return sorted(p for p in leaf.iterdir() if p.is_dir() and p.name.lower().startswith("labeltxt"))


def _is_leaf(folder: Path) -> bool:
    return child(folder, "images") is not None or bool(_label_dirs(folder))


def _has_txt(folder: Path) -> bool:
    return any(p.suffix.lower() == ".txt" for p in folder.iterdir() if p.is_file())


def find_label_dir(leaf: Path, version: str) -> Path | None:
    """The label folder of a split folder, or None when it has none.

    ``labelTxt`` itself, else ``labelTxt-v<version>`` (else the first ``labelTxt*``), descending
    into its ``labelTxt`` child or first sub-folder holding ``.txt`` files.
    """
    dirs = _label_dirs(leaf)
    if not dirs:
        return None
    by_name = {p.name.lower(): p for p in dirs}
    top = by_name.get("labeltxt") or by_name.get(f"labeltxt-v{version}") or dirs[0]
    if _has_txt(top):
        return top
    inner = child(top, "labelTxt")
    if inner is not None and inner.is_dir():
        return inner
    for sub in sorted(top.rglob("*")):
        if sub.is_dir() and _has_txt(sub):
            return sub
    return top


def parse_label_file(
    path: Path,
    ctx: ReadContext,
    *,
    image_id: str | None,
    width: int | None,
    height: int | None,
) -> tuple[list[ObjectAnnotation], float | None] | None:
    """Objects and gsd of one labelTxt file; bad lines become error rows in ``ctx``.

    None (after an error row) when the file cannot be read at all.
    """
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        ctx.error(path, None, f"cannot read label file: {exc}; image skipped", image_id=image_id)
        return None
    objects: list[ObjectAnnotation] = []
    gsd: float | None = None
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line:
            continue
        header = HEADER.match(line)
        if header:
            if header.group(1).lower() == "gsd":
                gsd = parse_float(header.group(2))
            continue
        tokens = line.split()
        if len(tokens) < 9 or len(tokens) > 10:
            ctx.error(
                path,
                number,
                f"malformed object line: expected {EXPECTED}, got {len(tokens)} fields",
                image_id=image_id,
                n_objects=1,
            )
            continue
        coords = [parse_float(t) for t in tokens[:8]]
        if any(c is None for c in coords):
            bad = next(t for t, c in zip(tokens, coords, strict=False) if c is None)
            ctx.error(
                path,
                number,
                f"non-numeric coordinate {bad!r}: expected {EXPECTED}",
                image_id=image_id,
                n_objects=1,
            )
            continue
        difficult, truncated = 0, False
        if len(tokens) == 10:
            flag = parse_int(tokens[9])
            if flag not in (0, 1, 2):
                ctx.error(
                    path,
                    number,
                    f"difficult must be 0 or 1 (2: cut by a patch), got {tokens[9]!r}",
                    image_id=image_id,
                    n_objects=1,
                )
                continue
            difficult, truncated = (0, True) if flag == 2 else (flag, False)
        obj = ctx.make_object(
            coords,  # type: ignore[arg-type]
            tokens[8],
            width=width,
            height=height,
            source_file=path,
            line=number,
            image_id=image_id,
            difficult=bool(difficult),
            truncated=truncated,
        )
        if obj is not None:
            objects.append(obj)
    return objects, gsd


def read(root: Path, ctx: ReadContext) -> list[ImageRecord]:
    """Read every DOTA split folder under ``root`` (see the module docstring)."""
    leaves = find_leaves(root, _is_leaf)
    if not leaves:
        raise SourceError(f"no DOTA images/ or labelTxt/ folder found under {root}")
    images: list[ImageRecord] = []
    for split, leaf in leaves:
        if not ctx.wants(split):
            continue
        label_dir = find_label_dir(leaf, ctx.version)
        index = index_images(child(leaf, "images"))
        ctx.note_duplicates(index, lambda stem: stem)
        labels = (
            {p.stem: p for p in sorted(label_dir.iterdir()) if p.suffix.lower() == ".txt"}
            if label_dir is not None
            else {}
        )
        for stem in sorted(set(index.by_stem) | set(labels)):
            image_path = index.by_stem.get(stem)
            label_path = labels.get(stem)
            if image_path is None:
                assert label_path is not None
                parsed = parse_label_file(label_path, ctx, image_id=stem, width=None, height=None)
                if parsed is None:
                    continue
                ctx.error(
                    label_path,
                    None,
                    f"no image for label file (looked for {stem}.* in "
                    f"{child(leaf, 'images') or leaf / 'images'})",
                    image_id=stem,
                    n_objects=len(parsed[0]),
                )
                continue
            width, height = ctx.size_of(image_path, stem)
            objects, gsd = [], None
            if label_path is not None:
                parsed = parse_label_file(
                    label_path, ctx, image_id=stem, width=width, height=height
                )
                if parsed is None:
                    continue
                objects, gsd = parsed
            elif label_dir is not None:
                ctx.error(
                    image_path,
                    None,
                    f"missing label file: expected {label_dir / (stem + '.txt')}",
                    image_id=stem,
                )
            images.append(
                ImageRecord(
                    image_id=stem,
                    image_path=str(image_path),
                    width=width,
                    height=height,
                    source=ctx.source,
                    version=ctx.version,
                    split=split,
                    gsd=gsd,
                    objects=tuple(objects),
                    annotation_file=str(label_path) if label_path else None,
                    source_width=width,
                    source_height=height,
                )
            )
    return images
