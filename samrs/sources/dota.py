"""DOTA v1.0 / v1.5 / v2.0 ``labelTxt`` reader (oriented and horizontal variants).

Layout: ``{train,val,test}/images/P####.png`` and ``{train,val}/labelTxt/P####.txt``; the
label folder may also be ``labelTxt-v1.5/`` or ``labelTxt-v1.0/labelTxt/`` as downloaded.
``--root`` is the top folder or one split's folder (or a ``samrs split`` output folder).

Label file: optional header lines ``imagesource:GoogleEarth`` and ``gsd:0.25`` (gsd may be
``null``; both are kept on the record, ``ImageRecord.imagesource`` and ``gsd``), then one object per line ``x1 y1 x2 y2 x3 y3 x4 y4 class [difficult]`` with integer
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

from samrs.core.records import ImageRecord, ObjectAnnotation
from samrs.sources.common import (
    ObjectFields,
    ReadContext,
    child,
    index_images,
    label_files,
    parse_float,
    parse_int,
)

HEADER = re.compile(r"^\s*(imagesource|gsd)\s*:(.*)$", re.IGNORECASE)
LINE_END = re.compile(r"\r\n|\r|\n")
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


def read_label_lines(path: Path, ctx: ReadContext, image_id: str | None) -> list[str] | None:
    """The lines of a labelTxt file (CRLF, CR or LF ends; UTF-8, BOM dropped), or None after
    an error row when it cannot be read."""
    try:
        text = path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        ctx.error(path, None, f"cannot read label file: {exc}; image skipped", image_id=image_id)
        return None
    return LINE_END.split(text)


def _header(lines: list[str], name: str) -> str | None:
    value = None
    for line in lines:
        header = HEADER.match(line)
        if header and header.group(1).lower() == name:
            value = header.group(2).strip()
    return value


def label_gsd(lines: list[str]) -> float | None:
    """The ``gsd:`` header value (None when absent, ``null`` or not a number)."""
    value = _header(lines, "gsd")
    return None if value is None else parse_float(value)


def label_imagesource(lines: list[str]) -> str | None:
    """The ``imagesource:`` header value (None when absent or empty)."""
    return _header(lines, "imagesource") or None


def line_fields(line: str) -> ObjectFields | str | None:
    """The fields of one object line, what is wrong with it, or None for a blank or header
    line."""
    line = line.strip()
    if not line or HEADER.match(line):
        return None
    tokens = line.split()
    if len(tokens) < 9 or len(tokens) > 10:
        return f"malformed object line: expected {EXPECTED}, got {len(tokens)} fields"
    parsed = [parse_float(t) for t in tokens[:8]]
    coords = [c for c in parsed if c is not None]
    if len(coords) < len(parsed):
        bad = next(t for t, c in zip(tokens, parsed, strict=False) if c is None)
        return f"non-numeric coordinate {bad!r}: expected {EXPECTED}"
    flag = parse_int(tokens[9]) if len(tokens) == 10 else 0
    if flag not in (0, 1, 2):
        return f"difficult must be 0 or 1 (2: cut by a patch), got {tokens[9]!r}"
    # 2: mmrotate's marker of an object cut by a patch -> truncated, not difficult
    return ObjectFields(coords, tokens[8], difficult=flag == 1, truncated=flag == 2)


def parse_label_lines(
    lines: list[str],
    path: Path,
    ctx: ReadContext,
    *,
    image_id: str,
    width: int | None,
    height: int | None,
) -> list[ObjectAnnotation]:
    """Objects of a labelTxt file's lines (item ``k`` is line ``k + 1``); bad lines become
    error rows in ``ctx``."""
    parsed = (
        (number, None, fields)
        for number, raw in enumerate(lines, start=1)
        if (fields := line_fields(raw)) is not None
    )
    return ctx.make_objects(path, parsed, image_id=image_id, width=width, height=height)


def _read_image(
    ctx: ReadContext,
    stem: str,
    split: str | None,
    image: Path | None,
    label: Path | None,
    expected_label: Path | None,
    images_in: Path,
) -> ImageRecord | None:
    """The record of one image/label pair (None: unreadable label, or no image)."""
    if label is None:
        return ctx.image_record(
            stem, split, image, expected_label=expected_label, images_in=images_in
        )
    lines = read_label_lines(label, ctx, stem)
    if lines is None:
        return None  # unreadable: recorded, image not returned

    def parse(width: int | None, height: int | None) -> list[ObjectAnnotation]:
        return parse_label_lines(lines, label, ctx, image_id=stem, width=width, height=height)

    record = ctx.image_record(
        stem, split, image, label=label, parse=parse, gsd=label_gsd(lines), images_in=images_in
    )
    imagesource = label_imagesource(lines)
    if record is None or imagesource is None:
        return record
    return record.with_changes(imagesource=imagesource)


def read(root: Path, ctx: ReadContext) -> list[ImageRecord]:
    """Read every DOTA split folder under ``root`` (see the module docstring)."""
    images: list[ImageRecord] = []
    for split, leaf in ctx.data_folders(root, _is_leaf, "DOTA images/ or labelTxt/"):
        label_dir = find_label_dir(leaf, ctx.version)
        index = index_images(child(leaf, "images"))
        ctx.note_duplicates(index, lambda stem: stem)
        labels = label_files(label_dir, ".txt")
        images_in = child(leaf, "images") or leaf / "images"
        for stem in sorted(set(index.by_stem) | set(labels)):
            expected = label_dir / f"{stem}.txt" if label_dir is not None else None
            record = _read_image(
                ctx, stem, split, index.by_stem.get(stem), labels.get(stem), expected, images_in
            )
            if record is not None:
                images.append(record)
    return images
