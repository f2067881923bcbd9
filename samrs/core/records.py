"""The normalized annotation model every reader produces and every later stage consumes.

Coordinates are image pixels, origin at the top-left corner of the top-left pixel, x to the
right, y down; a pixel (row r, column c) covers ``[c, c+1) x [r, r+1)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, TypedDict, cast

if TYPE_CHECKING:
    from typing_extensions import Unpack

Polygon = tuple[float, float, float, float, float, float, float, float]
"""Four corners ``(x1, y1, ..., x4, y4)`` in image pixels, in source order."""

Box = tuple[float, float, float, float]
"""Horizontal box ``(xmin, ymin, xmax, ymax)`` in image pixels."""

Window = tuple[int, int, int, int]
"""A window ``(x, y, w, h)`` of a source image, in that image's pixels."""


def as_polygon(values: Iterable[float]) -> Polygon:
    """The values as a :data:`Polygon` of Python floats. The caller passes the 8 values of
    4 corners (not checked; the type checker cannot count a tuple built from an iterable)."""
    return cast("Polygon", tuple(float(v) for v in values))


def polygon_hbox(polygon: Sequence[float]) -> Box:
    """Enclosing horizontal box ``(xmin, ymin, xmax, ymax)`` of a flat polygon."""
    xs, ys = polygon[0::2], polygon[1::2]
    return (float(min(xs)), float(min(ys)), float(max(xs)), float(max(ys)))


@dataclass(frozen=True)
class ObjectAnnotation:
    """One annotated object of an image.

    Attributes:
        polygon: the four corners in image pixels (rotated box, or a horizontal box as 4 corners).
        class_name: canonical class name of the dataset's class table.
        class_id: index of ``class_name`` in that class table.
        difficult: the source's difficult flag (False where the format has none).
        truncated: the object is cut by the image or window border (or was clipped to it).
        source_file: the annotation file it was read from.
        source_line: 1-based line number (text formats) or object position (XML, 1-based).
        source_element: XML element path where that applies, e.g. ``objects/object[3]``.
        flags: extra facts, e.g. ``("clipped",)`` when coordinates were clipped to the image.
        source_index: for an object of a tile, its index among the objects of the whole
            source image (None for whole images: the index in the image is that index).
    """

    polygon: Polygon
    class_name: str
    class_id: int
    difficult: bool = False
    truncated: bool = False
    source_file: str = ""
    source_line: int | None = None
    source_element: str | None = None
    flags: tuple[str, ...] = ()
    source_index: int | None = None

    @property
    def hbox(self) -> Box:
        """Enclosing horizontal box ``(xmin, ymin, xmax, ymax)``."""
        return polygon_hbox(self.polygon)

    def with_changes(self, **changes: Unpack[ObjectChanges]) -> ObjectAnnotation:
        """A copy with some fields replaced."""
        return replace(self, **changes)


@dataclass(frozen=True)
class ImageRecord:
    """One image (or one tile of an image) with its objects.

    Attributes:
        image_id: stable, unique id within a dataset (includes the split where file names
            repeat across splits, and the window for tiles).
        image_path: path of the image file to read pixels from.
        width, height: size in pixels of this record (the window size for tiles); None when
            neither the annotation nor the image header could tell.
        source: format name (``dota``, ``dior``, ``fair1m``, ``hrsc``, ``isaid``).
        version: dataset version (``1.0``, ``2.0``, ...).
        split: ``train``, ``val``, ``test``... or None when unknown.
        gsd: ground sample distance in metres per pixel, if the source says.
        objects: the objects, in source order.
        annotation_file: the label file, or None for an image without one.
        window: for a tile, its window in the source image; None for whole images.
        source_width, source_height: size of the whole source image (equal to width/height
            for whole images).
        imagesource: the ``imagesource:`` header of a DOTA label file (e.g. ``GoogleEarth``),
            kept so that patch label files can repeat it; None where the source has none.
        ignore_polygons: for a tile, the source polygons (tile coordinates) of the objects
            that lie partly in the window but are not objects of the tile (below the iof
            threshold, or not representable under the tile convention) or are objects of it
            in an altered form (clipped, integer coordinates): their pixels are never labelled
            background (255 where no kept mask covers them). Empty for whole images.
        source_image_id: for a tile, the ``image_id`` of the whole source image (None for
            whole images).
    """

    image_id: str
    image_path: str
    width: int | None
    height: int | None
    source: str
    version: str
    split: str | None
    gsd: float | None = None
    objects: tuple[ObjectAnnotation, ...] = ()
    annotation_file: str | None = None
    window: Window | None = None
    source_width: int | None = None
    source_height: int | None = None
    imagesource: str | None = None
    ignore_polygons: tuple[Polygon, ...] = ()
    source_image_id: str | None = None

    def with_changes(self, **changes: Unpack[ImageChanges]) -> ImageRecord:
        """A copy with some fields replaced."""
        return replace(self, **changes)


class ObjectChanges(TypedDict, total=False):
    """Fields of :class:`ObjectAnnotation` that :meth:`~ObjectAnnotation.with_changes` replaces
    (the type checker holds the two lists equal at every call)."""

    polygon: Polygon
    class_name: str
    class_id: int
    difficult: bool
    truncated: bool
    source_file: str
    source_line: int | None
    source_element: str | None
    flags: tuple[str, ...]
    source_index: int | None


class ImageChanges(TypedDict, total=False):
    """Fields of :class:`ImageRecord` that :meth:`~ImageRecord.with_changes` replaces."""

    image_id: str
    image_path: str
    width: int | None
    height: int | None
    source: str
    version: str
    split: str | None
    gsd: float | None
    objects: tuple[ObjectAnnotation, ...]
    annotation_file: str | None
    window: Window | None
    source_width: int | None
    source_height: int | None
    imagesource: str | None
    ignore_polygons: tuple[Polygon, ...]
    source_image_id: str | None


@dataclass(frozen=True)
class ErrorRecord:
    """A problem with one record of the input (or one stage of the work on it).

    Attributes:
        source_file: the file concerned (label file, image, XML).
        line: 1-based line (or XML object position), None when it concerns the whole file.
        stage: where it was found: ``read``, ``image``, ``tile``, ``segment``, ``write``...
        message: what was wrong and what was expected.
        image_id: the image it belongs to, when known.
        n_objects: how many source objects this error accounts for (a malformed object line
            is 1; an unreadable label file with no parsable object is 0), so that every
            object read appears exactly once as an instance or inside an error.
    """

    source_file: str
    line: int | None
    stage: str
    message: str
    image_id: str | None = None
    n_objects: int = 0

    def to_dict(self) -> dict[str, object]:
        """JSON-ready row: ``file``, ``line``, ``stage``, ``message``, ``image_id``,
        ``n_objects`` (what ``samrs inspect --json`` and ``split.json`` list)."""
        return {
            "file": self.source_file,
            "line": self.line,
            "stage": self.stage,
            "message": self.message,
            "image_id": self.image_id,
            "n_objects": self.n_objects,
        }


def exception_message(exc: BaseException, doing: str | None = None) -> str:
    """A one-line, never empty message for an errors row from an exception.

    ``str(exc)`` on one line when it says something; otherwise (a bare ``MemoryError``
    stringifies to ``''``) the exception's type name, and what was being done when given
    (``"MemoryError while reading the image"``). A MemoryError always says it ran out of memory.
    """
    text = " ".join(str(exc).split())
    name = type(exc).__name__
    if text and not isinstance(exc, MemoryError):
        return text
    message = f"{name}: {text}" if text else name
    if doing:
        message += f" while {doing}"
    if isinstance(exc, MemoryError):
        message = f"out of memory ({message})"
    return message


@dataclass
class Dataset:
    """What a reader returns: images in a stable order, and every problem found."""

    source: str
    version: str
    images: list[ImageRecord] = field(default_factory=list)
    errors: list[ErrorRecord] = field(default_factory=list)

    @property
    def n_objects(self) -> int:
        """Number of objects over all images."""
        return sum(len(image.objects) for image in self.images)
