"""What the dataset readers share: folder discovery, image lookup and size, object checks.

Every reader turns one source format into :class:`~samrs.core.records.ImageRecord` objects and
reports each problem as an :class:`~samrs.core.records.ErrorRecord` through a :class:`ReadContext`,
which also owns the class table and the unknown-class policy. Nothing is dropped silently:
an object is either returned or accounted for by an error record (``n_objects``).

A reader only knows its format: where images and label files are (:func:`find_leaves`,
:func:`index_images`, :func:`label_files`), and what one object says (a function returning
:class:`ObjectFields`, or a string saying what is wrong). The rest is shared:
:meth:`ReadContext.make_objects` checks the objects (class, corners, area, clipping) and
:meth:`ReadContext.image_record` (:meth:`~ReadContext.xml_image_record` for XML labels) pairs
an image with its label, recording a missing image or label as an error row.

Hostile layouts are error rows too: each real folder is walked once (a symlink cycle or a
second link to a folder is skipped, :func:`find_leaves`), each real image file is read once
(:func:`drop_symlink_duplicates`), and an image whose id or paths are not valid UTF-8 is not
returned (:meth:`ReadContext.image_record`); error rows always hold valid UTF-8
(:func:`printable`).
"""

from __future__ import annotations

import logging
import math
import os
import re
import xml.etree.ElementTree as ET
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from samrs.core.classes import ClassTable
from samrs.core.geometry import clip_polygon, polygon_area
from samrs.core.imageio import ImageReadError, image_size
from samrs.core.records import ErrorRecord, ImageRecord, ObjectAnnotation, as_polygon
from samrs.errors import SamrsError

log = logging.getLogger(__name__)

SPLIT_MARKER = "split.json"
"""Written by ``samrs split`` (:mod:`samrs.tiling`) to its output folder: options,
``source``/``version`` of the dataset cut, counts and every error record. A folder holding it
is read (by any source's reader) as DOTA labelTxt patches with that source's class table."""

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


class SourceError(SamrsError, ValueError):
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


def printable(text: str) -> str:
    """``text`` as valid UTF-8: bytes of a non-UTF-8 file name (which Python keeps as lone
    surrogates, PEP 383) become ``\\xNN`` escapes; valid text is returned unchanged."""
    try:
        return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def is_utf8(text: str) -> bool:
    """Whether ``text`` can be stored as a UTF-8 string (no undecodable file-name bytes)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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


def real_path(path: Path | str) -> Path:
    """The file or folder ``path`` leads to, every symlink resolved (``os.path.realpath``)."""
    return Path(os.path.realpath(path))


def find_leaves(
    root: Path,
    is_leaf: Callable[[Path], bool],
    max_depth: int = 3,
    on_duplicate: Callable[[Path, Path, Path], None] | None = None,
) -> list[tuple[str | None, Path]]:
    """Data folders under ``root`` (root included), with their split names, in a stable order.

    Symlinked folders are followed, but each real folder is walked once: real sub-folders
    first, then symlinked ones (so a dataset's own folder wins over a link to it), and a
    folder whose real path was already walked -- a cycle such as ``loop -> ..``, or a second
    link to one folder -- is skipped and reported to ``on_duplicate``.

    Args:
        root: the ``--root`` folder (a dataset's top folder or one split's folder).
        is_leaf: whether a folder holds the data itself (e.g. has ``images/`` or ``labelTxt/``).
        max_depth: how deep below root to look.
        on_duplicate: called with ``(skipped folder, its real path, the path walked)``.
    """
    found: list[Path] = []
    walked: dict[Path, Path] = {}  # real folder -> the path it was walked as
    links: list[tuple[Path, int]] = []  # symlinked folders, walked after the real ones

    def walk(folder: Path, depth: int) -> None:
        real = real_path(folder)
        if real in walked:
            if on_duplicate is not None:
                on_duplicate(folder, real, walked[real])
            return
        walked[real] = folder
        if is_leaf(folder):
            found.append(folder)
            return
        if depth >= max_depth:
            return
        for sub in sorted(folder.iterdir()):
            if sub.is_dir() and not sub.name.startswith("."):
                if sub.is_symlink():
                    links.append((sub, depth + 1))
                else:
                    walk(sub, depth + 1)

    walk(root, 0)
    while links:
        pending = sorted(links, key=lambda link: (link[1], natural_key(str(link[0]))))
        links.clear()
        for sub, depth in pending:
            walk(sub, depth)
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


def label_files(folder: Path | None, suffix: str) -> dict[str, Path]:
    """The files directly inside ``folder`` with ``suffix`` (case-insensitive), by stem."""
    if folder is None or not folder.is_dir():
        return {}
    return {p.stem: p for p in sorted(folder.iterdir()) if p.suffix.lower() == suffix}


SPLIT_LISTS = ("train", "val", "test", "trainval")
"""The split list files of an ``ImageSets`` folder, in the order a stem takes its split."""


def split_lists(folder: Path) -> dict[str, str] | None:
    """Image stem -> split from ``folder/ImageSets[/Main]/{train,val,test,trainval}.txt``.

    A stem takes the first list that names it (``trainval`` only for stems in no other list);
    a line may name the file (``00001.jpg``). None when ``folder`` has no ``ImageSets``.
    """
    sets = child(folder, "ImageSets")
    if sets is None or not sets.is_dir():
        return None
    sets = child(sets, "Main") or sets
    splits: dict[str, str] = {}
    for name in SPLIT_LISTS:
        path = child(sets, f"{name}.txt")
        if path is None:
            continue
        for line in path.read_text(encoding="utf-8-sig", errors="replace").splitlines():
            if line.strip():
                splits.setdefault(Path(line.split()[0]).stem, name)
    return splits


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


@dataclass(frozen=True)
class ObjectFields:
    """What a label file says about one object, before :meth:`ReadContext.make_object` checks
    it: 4 corners (8 numbers), the class name as spelled in the file, and flags."""

    coords: Sequence[float]
    class_name: str
    difficult: bool = False
    truncated: bool = False
    flags: tuple[str, ...] = ()


ParsedObject = tuple[int, str | None, "ObjectFields | str"]
"""One object of a label file: ``(line, element or None, its fields or what was wrong)``."""

ElementParser = Callable[[ET.Element], "ObjectFields | str"]
"""A reader's ``object_fields``: the fields of one XML object element, or what was wrong."""


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

    def data_folders(
        self, root: Path, is_leaf: Callable[[Path], bool], looked_for: str, *, by_split: bool = True
    ) -> list[tuple[str | None, Path]]:
        """:func:`find_leaves` under ``root``, only those of the wanted split when ``by_split``.

        Raises:
            SourceError: no data folder at all under ``root`` (``looked_for`` says which).
        """
        leaves = find_leaves(root, is_leaf, on_duplicate=self.duplicate_folder)
        if not leaves:
            raise SourceError(f"no {looked_for} folder found under {root}")
        return [(split, leaf) for split, leaf in leaves if not by_split or self.wants(split)]

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
        """Record one problem (file names that are not valid UTF-8 are written with ``\\xNN``
        escapes, see :func:`printable`, so the row can always be stored)."""
        self.errors.append(
            ErrorRecord(
                printable(str(source_file)),
                line,
                stage,
                printable(message),
                None if image_id is None else printable(image_id),
                n_objects,
            )
        )

    def duplicate_folder(self, folder: Path, target: Path, walked: Path) -> None:
        """An error row for a folder not walked because its real path already was."""
        self.error(
            folder,
            None,
            f"duplicate via symlink: {folder} -> {target}; not read again (read as {walked})",
        )

    def duplicate_file(self, image: ImageRecord, target: Path, kept: ImageRecord) -> None:
        """An error row for an image whose file is already read through another path; its
        objects are accounted for by the row."""
        self.error(
            image.image_path,
            None,
            f"duplicate via symlink: {image.image_path} -> {target}; not read again "
            f"(read as {kept.image_path}, image id {kept.image_id})",
            image_id=image.image_id,
            n_objects=len(image.objects),
        )

    def size_of(
        self,
        path: Path,
        image_id: str | None,
        fallback: tuple[int, int] | None = None,
    ) -> tuple[int | None, int | None]:
        """Image size from the header (:func:`samrs.core.imageio.image_size`, no pixel decoding).

        An unreadable header is an error row (stage ``image``); the size is then ``fallback``
        (e.g. the size an annotation file states) or ``(None, None)``.
        """
        try:
            return image_size(path)
        except (ImageReadError, OSError) as exc:
            self.error(path, None, str(exc), image_id=image_id, stage="image")
            return fallback if fallback is not None else (None, None)

    def duplicate_image(self, path: Path, used: Path, image_id: str) -> None:
        """An error row for an image file ignored because ``used`` has the same stem."""
        self.error(
            path,
            None,
            f"ignored: {used} has the same stem and is read instead; expected one image per stem",
            image_id=image_id,
        )

    def note_duplicates(self, index: ImageIndex, image_id_of: Callable[[str], str]) -> None:
        """An error row for every image file of ``index`` ignored for a same-stem file."""
        for stem, paths in index.duplicates.items():
            for path in paths:
                self.duplicate_image(path, index.by_stem[stem], image_id_of(stem))

    def make_object(
        self,
        fields: ObjectFields,
        *,
        width: int | None,
        height: int | None,
        source_file: Path | str,
        line: int | None,
        element: str | None = None,
        image_id: str | None = None,
    ) -> ObjectAnnotation | None:
        """The object a label file describes, or None after recording why not.

        Checks the class (unknown -> ``error``/``skip`` row), the corner count, the area
        (zero -> degenerate), and clips corners outside ``[0, width] x [0, height]`` (flag
        ``clipped``, truncated=True; entirely outside -> error row).
        """
        class_name, flags, truncated = fields.class_name, fields.flags, fields.truncated

        def reject(problem: str, stage: str = "read") -> None:
            where = f"{element}: " if element else ""
            self.error(
                source_file, line, where + problem, image_id=image_id, n_objects=1, stage=stage
            )

        if class_name not in self._class_ids:
            self._class_ids[class_name] = self.table.lookup(class_name)
        class_id = self._class_ids[class_name]
        if class_id is None:
            reject(
                f"unknown class {class_name!r}; expected one of the {self.source} "
                f"{self.version} classes: {', '.join(self.table.names)}",
                stage="skip" if self.on_unknown_class == "skip" else "read",
            )
            return None
        polygon = as_polygon(fields.coords)  # its 8 values are checked below
        if len(polygon) != 8:
            reject(f"expected 4 corners, got {len(polygon) // 2}")
            return None
        if polygon_area(polygon) <= 0:
            reject(f"degenerate polygon (zero area): {_fmt(polygon)}; expected a positive area")
            return None
        xs, ys = polygon[0::2], polygon[1::2]
        if (
            width is not None
            and height is not None
            and (min(xs) < 0 or min(ys) < 0 or max(xs) > width or max(ys) > height)
        ):
            clipped, moved = clip_polygon(polygon, (0.0, 0.0, float(width), float(height)))
            if moved:
                if polygon_area(clipped) <= 0:
                    reject(
                        f"polygon lies outside the {width}x{height} image: {_fmt(polygon)}; "
                        f"expected corners in [0, {width}] x [0, {height}]"
                    )
                    return None
                polygon, truncated, flags = clipped, True, (*flags, "clipped")
        return ObjectAnnotation(
            polygon=polygon,
            class_name=self.table.names[class_id],
            class_id=class_id,
            difficult=bool(fields.difficult),
            truncated=bool(truncated),
            source_file=str(source_file),
            source_line=line,
            source_element=element,
            flags=flags,
        )

    def make_objects(
        self,
        path: Path,
        parsed: Iterable[ParsedObject],
        *,
        image_id: str,
        width: int | None,
        height: int | None,
    ) -> list[ObjectAnnotation]:
        """The objects of one label file, from its ``(line, element, fields or problem)``
        items: a problem is an error row naming the file, the line and the element (prefix
        of the message); fields go through :meth:`make_object`."""
        objects = []
        for line, element, fields in parsed:
            if isinstance(fields, str):
                where = f"{element}: " if element else ""
                self.error(path, line, where + fields, image_id=image_id, n_objects=1)
                continue
            made = self.make_object(
                fields,
                width=width,
                height=height,
                source_file=path,
                line=line,
                element=element,
                image_id=image_id,
            )
            if made is not None:
                objects.append(made)
        return objects

    def image_record(
        self,
        image_id: str,
        split: str | None,
        image: Path | None,
        *,
        label: Path | None = None,
        parse: Callable[[int | None, int | None], Sequence[ObjectAnnotation]] | None = None,
        stated_size: tuple[int, int] | None = None,
        gsd: float | None = None,
        expected_label: Path | str | None = None,
        images_in: Path | str | None = None,
        stem: str | None = None,
    ) -> ImageRecord | None:
        """The record of one image and its (already loaded) label, or None for a label
        without image; the missing side is an error row.

        Args:
            image_id: the image's id.
            split: its split.
            image: the image file; None when only the label exists: an error row naming
                ``label`` accounts for the objects ``parse(None, None)`` finds, and None is
                returned.
            label: the label file the objects come from (None: the image has none).
            parse: ``(width, height) -> objects`` of the loaded label (None: no objects).
            stated_size: ``(width, height)`` the label states, used when the image header
                cannot be read.
            gsd: ground sample distance, if the source says.
            expected_label: where the label of an image without one was expected; an error
                row when ``label`` is None (the image is kept, without objects). None: the
                split has no labels at all (a test split), no error.
            images_in: where the image of a label was looked for (for the error row).
            stem: the image file stem looked for (default: ``label``'s stem).
        """
        named = image if image is not None else label  # the file an error row names
        if named is None:
            raise ValueError("image_record needs an image or a label file")
        names = [image_id, *(str(p) for p in (image, label) if p is not None)]
        bad = next((name for name in names if not is_utf8(name)), None)
        if bad is not None:  # an id or path no manifest can hold: this image only fails
            objects = parse(None, None) if parse is not None else ()
            self.error(
                named,
                None,
                f"file name is not valid UTF-8 ({printable(bad)}): image ids and manifest "
                "paths are UTF-8 strings; rename the file (and its folder) to UTF-8; image "
                "skipped",
                image_id=image_id,
                n_objects=len(objects),
            )
            return None
        if image is None:
            objects = parse(None, None) if parse is not None else ()
            self.error(
                named,  # the label
                None,
                f"no image for label file: expected {stem or named.stem}.* in {images_in}",
                image_id=image_id,
                n_objects=len(objects),
            )
            return None
        width, height = self.size_of(image, image_id, stated_size)
        objects = parse(width, height) if parse is not None else ()
        if label is None and expected_label is not None:
            self.error(
                image, None, f"missing label file: expected {expected_label}", image_id=image_id
            )
        return ImageRecord(
            image_id=image_id,
            image_path=str(image),
            width=width,
            height=height,
            source=self.source,
            version=self.version,
            split=split,
            gsd=gsd,
            objects=tuple(objects),
            annotation_file=str(label) if label is not None else None,
            source_width=width,
            source_height=height,
        )

    def xml_image_record(
        self,
        image_id: str,
        split: str | None,
        image: Path | None,
        label: Path | None,
        object_tag: str,
        object_fields: ElementParser,
        *,
        root_tag: str,
        size_tags: tuple[str, str],
        gsd_tag: str | None = None,
        expected_label: Path | None = None,
        images_in: Path | str | None = None,
        stem: str | None = None,
    ) -> ImageRecord | None:
        """:meth:`image_record` for an XML label: None also when the XML is unreadable (an
        error row; the image is not returned).

        Args:
            object_tag: path of the object elements; object ``k`` (1-based) is line ``k`` and
                element ``<object_tag>[k]``.
            object_fields: the format's fields of one object element (or what was wrong).
            root_tag: the document's root element (see :meth:`parse_xml`).
            size_tags: paths of the width and height elements (the stated size).
            gsd_tag: path of the gsd element, if the format has one (non-positive: None).
            image_id, split, image, label, expected_label, images_in, stem: as in
                :meth:`image_record`.
        """
        if label is None:
            return self.image_record(
                image_id, split, image, expected_label=expected_label, images_in=images_in
            )
        root = self.parse_xml(label, image_id, root_tag)
        if root is None:
            return None
        gsd = parse_float(root.findtext(gsd_tag)) if gsd_tag else None

        def parse(width: int | None, height: int | None) -> list[ObjectAnnotation]:
            parsed = (
                (k, f"{object_tag}[{k}]", object_fields(obj))
                for k, obj in enumerate(root.findall(object_tag), start=1)
            )
            return self.make_objects(label, parsed, image_id=image_id, width=width, height=height)

        return self.image_record(
            image_id,
            split,
            image,
            label=label,
            parse=parse,
            stated_size=xml_size(root, *size_tags),
            gsd=gsd if gsd is not None and gsd > 0 else None,
            images_in=images_in,
            stem=stem,
        )

    def parse_xml(self, path: Path, image_id: str | None, root_tag: str) -> ET.Element | None:
        """The root element of an XML label file, or None after an error row (the image of an
        unreadable file is not returned: its objects are unknown).

        An empty file (nothing but white space) is an annotation without objects: an empty
        ``root_tag`` element, no error. A parse error names the parser's line; a document
        whose root is not ``root_tag`` is an error too.
        """
        try:
            data = path.read_bytes()
            if not data.strip():
                return ET.Element(root_tag)
            root = ET.fromstring(data)
        except ET.ParseError as exc:
            line = exc.position[0] if getattr(exc, "position", None) else None
            self.error(
                path,
                line,
                f"unreadable or truncated XML ({exc}): expected a complete <{root_tag}> "
                "document; image skipped",
                image_id=image_id,
            )
            return None
        except OSError as exc:
            self.error(path, None, f"cannot read XML file: {exc}; image skipped", image_id=image_id)
            return None
        if root.tag != root_tag:
            self.error(
                path,
                None,
                f"root element <{root.tag}>: expected a <{root_tag}> document; image skipped",
                image_id=image_id,
            )
            return None
        return root


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
def drop_symlink_duplicates(
    images: Sequence[ImageRecord], ctx: ReadContext, root: Path
) -> list[ImageRecord]:
    """Each image file once: of the records whose image paths lead to the same real file
    (through a symlinked file or folder), the first reached without a symlink below ``root``
    is kept (else the first); each other one is an error row (stage ``read``,
    ``duplicate via symlink: <path> -> <target>``) that accounts for its objects.
    Symlinks to distinct files are ordinary images."""
    real_root = real_path(root)
    groups: dict[Path, list[int]] = defaultdict(list)
    for i, image in enumerate(images):
        groups[real_path(image.image_path)].append(i)
    drop: dict[int, tuple[Path, int]] = {}
    for target, members in groups.items():
        if len(members) < 2:
            continue

        def linked(i: int, target: Path = target) -> bool:
            relative = os.path.relpath(images[i].image_path, root)
            return Path(os.path.normpath(real_root / relative)) != target

        kept = min(members, key=lambda i: (linked(i), i))
        drop.update((i, (target, kept)) for i in members if i != kept)
    for i in sorted(drop):
        target, kept = drop[i]
        ctx.duplicate_file(images[i], target, images[kept])
    return [image for i, image in enumerate(images) if i not in drop]


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
