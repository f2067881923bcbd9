"""What the dataset readers share: folder discovery, image lookup and size, object checks.

Every reader turns one source format into :class:`~samrs.records.ImageRecord` objects and
reports each problem as an :class:`~samrs.records.ErrorRecord` through a :class:`ReadContext`,
which also owns the class table and the unknown-class policy. Nothing is dropped silently:
an object is either returned or accounted for by an error record (``n_objects``).
"""

from __future__ import annotations

import logging
import math
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from samrs.classes import ClassTable
from samrs.geometry import clip_polygon, polygon_area
from samrs.imageio import ImageReadError, image_size
from samrs.records import ErrorRecord, ImageRecord, ObjectAnnotation, Polygon

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")
"""Image file extensions, in the order of preference when one stem has several files."""

SPLIT_RANK = {
    "train": 0,
    "trainval": 1,
    "val": 2,
    "valid": 2,
    "validation": 2,
    "test": 3,
    "test-dev": 4,
    "testdev": 4,
}
"""Known split folder names and their order in a dataset (unknown names sort after)."""

SPLIT_ALIASES = {"valid": "val", "validation": "val", "testdev": "test-dev"}
"""Spellings of a split that ``--split`` treats as the same split."""


class SourceError(ValueError):
    """A dataset cannot be read at all (unknown source, missing root, nothing found)."""


# --- names and ordering -------------------------------------------------------------------
def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that orders embedded numbers numerically (``2`` before ``10``)."""
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text))


def split_rank(split: str | None) -> tuple[int, str]:
    """Sort key of a split name: known splits in their usual order, then others by name."""
    if split is None:
        return (-1, "")
    return (SPLIT_RANK.get(split.lower(), len(SPLIT_RANK)), split.lower())


def same_split(requested: str | None, actual: str | None) -> bool:
    """Whether ``actual`` is the split ``requested`` by the user (None requests all)."""
    if requested is None:
        return True
    if actual is None:
        return False
    norm = lambda s: SPLIT_ALIASES.get(s.lower(), s.lower())  # noqa: E731
    return norm(requested) == norm(actual)


def child(folder: Path, *names: str) -> Path | None:
    """The first existing child of ``folder`` named one of ``names`` (case-insensitive)."""
    if not folder.is_dir():
        return None
    entries = {p.name.lower(): p for p in sorted(folder.iterdir())}
    for name in names:
        hit = entries.get(name.lower())
        if hit is not None:
            return hit
    return None


def is_image_file(path: Path) -> bool:
    """A regular file with an image extension (case-insensitive)."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()


# --- folder discovery ---------------------------------------------------------------------
def split_of(root: Path, leaf: Path) -> str | None:
    """Split name of a data folder ``leaf`` found under ``root``.

    The first folder between root and leaf with a known split name; else root itself or its
    parent when named like a split (``--root DOTA/train`` or ``FAIR1M/train/part1``); else the
    first folder below root; else None.
    """
    rel = leaf.relative_to(root).parts
    for part in rel:
        if part.lower() in SPLIT_RANK:
            return part
    for folder in (root, root.parent):
        if folder.name.lower() in SPLIT_RANK:
            return folder.name
    return rel[0] if rel else None


def find_leaves(
    root: Path, is_leaf: Callable[[Path], bool], max_depth: int = 3
) -> list[tuple[str | None, Path]]:
    """Data folders under ``root`` (root included), with their split names, in a stable order.

    Args:
        root: the ``--root`` folder (a dataset's top folder or one split's folder).
        is_leaf: whether a folder holds the data itself (e.g. has ``images/`` or ``labelTxt/``).
        max_depth: how deep below root to look.
    """
    found: list[Path] = []

    def walk(folder: Path, depth: int) -> None:
        if is_leaf(folder):
            found.append(folder)
            return
        if depth >= max_depth:
            return
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and not sub.name.startswith("."):
                walk(sub, depth + 1)

    walk(root, 0)
    leaves = [(split_of(root, leaf), leaf) for leaf in found]
    return sorted(leaves, key=lambda sl: (split_rank(sl[0]), natural_key(str(sl[1]))))


def check_root(root: str | Path) -> Path:
    """``root`` as a Path; SourceError when it is not an existing folder."""
    path = Path(root)
    if not path.exists():
        raise SourceError(f"dataset root not found: {path}")
    if not path.is_dir():
        raise SourceError(f"dataset root is not a folder: {path}")
    return path


# --- images -------------------------------------------------------------------------------
@dataclass
class ImageIndex:
    """Image files of a folder by stem (any extension).

    Attributes:
        by_stem: stem -> the chosen file (by :data:`IMAGE_EXTENSIONS` preference).
        duplicates: stem -> the other files with that stem, which are not used.
    """

    by_stem: dict[str, Path] = field(default_factory=dict)
    duplicates: dict[str, list[Path]] = field(default_factory=dict)


def index_images(folder: Path | None, exclude: Callable[[Path], bool] | None = None) -> ImageIndex:
    """Index the image files directly inside ``folder`` by stem."""
    index = ImageIndex()
    if folder is None or not folder.is_dir():
        return index
    groups: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(folder.iterdir()):
        if is_image_file(path) and not (exclude and exclude(path)):
            groups[path.stem].append(path)
    for stem, paths in groups.items():
        paths.sort(key=lambda p: (IMAGE_EXTENSIONS.index(p.suffix.lower()), p.name))
        index.by_stem[stem] = paths[0]
        if len(paths) > 1:
            index.duplicates[stem] = paths[1:]
    return index


def parse_float(text: str | None) -> float | None:
    """A finite float, or None for missing/non-numeric/inf/nan text."""
    if text is None:
        return None
    try:
        value = float(text.strip())
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def parse_int(text: str | None) -> int | None:
    """An integer (``"1"`` or ``"1.0"``), or None."""
    value = parse_float(text)
    if value is None or value != int(value):
        return None
    return int(value)


# --- the reading context ------------------------------------------------------------------
@dataclass
class ReadContext:
    """One reading of one dataset: its class table, policies and the errors found so far.

    Attributes:
        source: format name.
        version: dataset (class table) version.
        table: class table that names map to.
        on_unknown_class: ``error`` or ``skip`` (both record an error row; stage differs).
        split: only read this split (None: all).
        variant: a reader-specific choice (DIOR: ``hbb``, ``obb`` or None for automatic).
        errors: problems found, in reading order.
    """

    source: str
    version: str
    table: ClassTable
    on_unknown_class: str = "error"
    split: str | None = None
    variant: str | None = None
    errors: list[ErrorRecord] = field(default_factory=list)
    _class_ids: dict[str, int | None] = field(default_factory=dict, repr=False)

    def wants(self, split: str | None) -> bool:
        """Whether images of ``split`` are read."""
        return same_split(self.split, split)

    def error(
        self,
        source_file: Path | str,
        line: int | None,
        message: str,
        *,
        image_id: str | None = None,
        n_objects: int = 0,
        stage: str = "read",
    ) -> None:
        """Record one problem."""
        self.errors.append(ErrorRecord(str(source_file), line, stage, message, image_id, n_objects))

    def size_of(
        self,
        path: Path,
        image_id: str | None,
        fallback: tuple[int, int] | None = None,
    ) -> tuple[int | None, int | None]:
        """Image size from the header (:func:`samrs.imageio.image_size`, no pixel decoding).

        An unreadable header is an error row (stage ``image``); the size is then ``fallback``
        (e.g. the size an annotation file states) or ``(None, None)``.
        """
        try:
            return image_size(path)
        except (ImageReadError, OSError) as exc:
            self.error(path, None, str(exc), image_id=image_id, stage="image")
            return fallback if fallback is not None else (None, None)

    def note_duplicates(self, index: ImageIndex, image_id_of: Callable[[str], str]) -> None:
        """An error row for every image file ignored because another has the same stem."""
        for stem, paths in index.duplicates.items():
            for path in paths:
                self.error(
                    path,
                    None,
                    f"another image with the same stem is used instead: {index.by_stem[stem].name}",
                    image_id=image_id_of(stem),
                )

    def make_object(
        self,
        coords: Sequence[float],
        class_name: str,
        *,
        width: int | None,
        height: int | None,
        source_file: Path | str,
        line: int | None,
        element: str | None = None,
        image_id: str | None = None,
        difficult: bool = False,
        truncated: bool = False,
        flags: Iterable[str] = (),
    ) -> ObjectAnnotation | None:
        """An object from 4 corners and a class name, or None after recording why not.

        Checks the class (unknown -> ``error``/``skip`` row), the area (zero -> degenerate), and
        clips corners outside ``[0, width] x [0, height]`` (flags ``clipped``, truncated=True).
        """
        where = f"{element}: " if element else ""
        if class_name not in self._class_ids:
            self._class_ids[class_name] = self.table.lookup(class_name)
        class_id = self._class_ids[class_name]
        if class_id is None:
            self.error(
                source_file,
                line,
                f"{where}unknown class {class_name!r}; expected one of the {self.source} "
                f"{self.version} classes: {', '.join(self.table.names)}",
                image_id=image_id,
                n_objects=1,
                stage="skip" if self.on_unknown_class == "skip" else "read",
            )
            return None
        polygon: Polygon = tuple(float(v) for v in coords)  # type: ignore[assignment]
        if len(polygon) != 8:
            self.error(
                source_file,
                line,
                f"{where}expected 4 corners, got {len(polygon) // 2}",
                image_id=image_id,
                n_objects=1,
            )
            return None
        if polygon_area(polygon) <= 0:
            self.error(
                source_file,
                line,
                f"{where}degenerate polygon (zero area): {_fmt(polygon)}",
                image_id=image_id,
                n_objects=1,
            )
            return None
        flags = tuple(flags)
        xs, ys = polygon[0::2], polygon[1::2]
        if (
            width is not None
            and height is not None
            and (min(xs) < 0 or min(ys) < 0 or max(xs) > width or max(ys) > height)
        ):
            clipped, moved = clip_polygon(polygon, (0.0, 0.0, float(width), float(height)))
            if moved:
                if polygon_area(clipped) <= 0:
                    self.error(
                        source_file,
                        line,
                        f"{where}polygon lies outside the {width}x{height} image: {_fmt(polygon)}",
                        image_id=image_id,
                        n_objects=1,
                    )
                    return None
                polygon, truncated, flags = clipped, True, (*flags, "clipped")
        return ObjectAnnotation(
            polygon=polygon,
            class_name=self.table.names[class_id],
            class_id=class_id,
            difficult=bool(difficult),
            truncated=bool(truncated),
            source_file=str(source_file),
            source_line=line,
            source_element=element,
            flags=flags,
        )

    def parse_xml(self, path: Path, image_id: str | None) -> ET.Element | None:
        """The root element of an XML file, or None after recording an error row naming the
        file and the parser's line (the image of an unreadable file is not returned)."""
        try:
            return ET.parse(path).getroot()
        except ET.ParseError as exc:
            line = exc.position[0] if getattr(exc, "position", None) else None
            self.error(
                path,
                line,
                f"unreadable or truncated XML ({exc}): expected a complete annotation "
                "document; image skipped",
                image_id=image_id,
            )
        except OSError as exc:
            self.error(path, None, f"cannot read XML file: {exc}; image skipped", image_id=image_id)
        return None


def xml_number(element: ET.Element, tag: str) -> float | None:
    """The finite number in ``element/tag``, or None when missing or not a number."""
    return parse_float(element.findtext(tag))


def xml_size(root: ET.Element, width_tag: str, height_tag: str) -> tuple[int, int] | None:
    """A positive image size written in an annotation, or None."""
    w, h = parse_int(root.findtext(width_tag)), parse_int(root.findtext(height_tag))
    return (w, h) if w and h and w > 0 and h > 0 else None


def _fmt(polygon: Sequence[float]) -> str:
    return " ".join(f"{v:g}" for v in polygon)


# --- finishing a dataset ------------------------------------------------------------------
def sort_images(images: Iterable[ImageRecord]) -> list[ImageRecord]:
    """Images by split (usual split order), then id (numbers in ids compared as numbers)."""
    return sorted(images, key=lambda im: (split_rank(im.split), natural_key(im.image_id)))


def unique_ids(images: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Make image ids unique, deterministically, keeping the first (in order) unchanged.

    A later image with a taken id becomes ``<split>_<id>`` when that is free, else
    ``<id>_<n>`` with the smallest free ``n >= 2``.
    """
    taken = {im.image_id for im in images}
    seen: set[str] = set()
    out = []
    for im in images:
        new_id = im.image_id
        if new_id in seen:
            candidate = f"{im.split}_{im.image_id}" if im.split else None
            if candidate is None or candidate in taken:
                n = 2
                while f"{im.image_id}_{n}" in taken:
                    n += 1
                candidate = f"{im.image_id}_{n}"
            log.warning(
                "image id %s is not unique (%s); using %s", new_id, im.image_path, candidate
            )
            new_id = candidate
            taken.add(new_id)
            im = im.with_changes(image_id=new_id)
        seen.add(new_id)
        out.append(im)
    return out
