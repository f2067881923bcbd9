"""Subsets and re-thresholding of a build, streamed shard by shard from the manifests.

Exporters (COCO, mmseg, ROS-SAM, GeoJSON) see a build as a sequence of :class:`ImageItem`:
one images row and its instance rows, with ``kept`` / ``reject_reason`` / ``substituted``
re-evaluated under a :class:`Selection` (stricter quality thresholds, a class subset, splits).
No SAM is run: rejected masks are in the manifest, so only the decision changes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from samrs.core import rle
from samrs.core.classes import ClassTable
from samrs.outputs.manifest import ManifestError, part_paths, schema_of
from samrs.quality import THRESHOLD_REASONS, box_substitutes, fails

REJECT_REASONS = {
    name: THRESHOLD_REASONS[name]
    for name in ("min_score", "min_stability", "min_rbox_iou", "min_area")
}
"""``reject_reason`` written by re-thresholding, per threshold (checked in this order)."""


@dataclass(frozen=True)
class Selection:
    """Which images and instances an export contains, and under which quality thresholds.

    Thresholds only tighten the build's decision: an instance is kept when the build kept it
    and it passes every threshold given here (a null score/stability passes: the segmenter
    had none). Instances whose mask was already replaced by their box (``substituted``) stay
    as they are. A newly failing instance becomes rejected with the reason of the first
    failing threshold (:data:`REJECT_REASONS`), or, when the build ran with
    ``--on-reject box``, substituted by its rasterized polygon.

    Attributes:
        splits: only images of these splits (None: all; an element None: images without
            a split).
        classes: only instances of these classes, names (any spelling) or ids (None: all).
        min_score, min_stability, min_rbox_iou, min_area: stricter thresholds (None or
            <= 0: off, the build's decision stands; :func:`samrs.quality.fails` decides).
        include_rejected: also yield rejected instances (flagged ``kept = False``).
        image_ids: only these images (None: all).
    """

    splits: tuple[str | None, ...] | None = None
    classes: tuple[str | int, ...] | None = None
    min_score: float | None = None
    min_stability: float | None = None
    min_rbox_iou: float | None = None
    min_area: int | None = None
    include_rejected: bool = False
    image_ids: tuple[str, ...] | None = None

    def wants_image(self, image: dict[str, Any], include_errors: bool = False) -> bool:
        """Whether an images row is selected (``status = error`` only with ``include_errors``)."""
        if image["status"] == "error" and not include_errors:
            return False
        if self.splits is not None and image["split"] not in self.splits:
            return False
        return self.image_ids is None or image["image_id"] in self.image_ids

    @property
    def rethresholds(self) -> bool:
        """Whether any threshold is given (kept decisions may change)."""
        return any(getattr(self, name) is not None for name in REJECT_REASONS)

    def class_ids(self, table: ClassTable) -> list[int] | None:
        """The selected class ids, in class-table order (None: all classes).

        Raises:
            ValueError: a name or id the class table does not know (the message lists them).
        """
        if self.classes is None:
            return None
        ids = set()
        for spec in self.classes:
            if isinstance(spec, int) or (isinstance(spec, str) and spec.isdigit()):
                cid = int(spec)
                if not 0 <= cid < len(table):
                    raise ValueError(f"class id {cid} out of range 0..{len(table) - 1}")
            else:
                found = table.lookup(spec)
                if found is None:
                    raise ValueError(
                        f"unknown class {spec!r}; expected one of {', '.join(table.names)}"
                    )
                cid = found
            ids.add(cid)
        return sorted(ids)


@dataclass
class ImageItem:
    """One image of a build with its (selected, re-thresholded) instances.

    Attributes:
        index: 1-based position of the image in the build (all parts, all images), stable
            across subsets (the COCO image id).
        image: the images row.
        instances: instance rows in ``instance_id`` order, with re-evaluated ``kept``,
            ``reject_reason``, ``substituted``, ``segmentation``, ``area``, ``bbox``.
        rejected_polygons: polygons of the rejected instances left out of ``instances``
            and of the tile's remnants (images column ``ignore_polygons``): ignore regions
            of a repainted label, see :func:`~samrs.outputs.semantic.paint_instances`.
        n_kept: kept instances among them.
    """

    index: int
    image: dict[str, Any]
    instances: list[dict[str, Any]] = field(default_factory=list)
    rejected_polygons: list[list[float]] = field(default_factory=list)

    @property
    def n_kept(self) -> int:
        return sum(1 for r in self.instances if r["kept"])

    @property
    def height(self) -> int:
        return int(self.image["height"])

    @property
    def width(self) -> int:
        return int(self.image["width"])

    def rle(self, row: dict[str, Any]) -> dict[str, Any]:
        """The COCO RLE dict of an instance row of this image."""
        return {"size": [self.height, self.width], "counts": row["segmentation"]}


def _failing_reason(row: dict[str, Any], sel: Selection) -> str | None:
    for name, reason in REJECT_REASONS.items():
        if fails(row["area" if name == "min_area" else name[4:]], getattr(sel, name)):
            return reason
    return None


def rethreshold(
    row: dict[str, Any], sel: Selection, height: int, width: int, on_reject: str | None = None
) -> dict[str, Any]:
    """An instance row with ``kept`` etc. re-evaluated under ``sel`` (a copy when changed).

    Args:
        row: an instances row (dict).
        sel: the selection with its thresholds.
        height, width: size of the instance's image (for a box substitution).
        on_reject: the build's ``on_reject`` option; ``box`` substitutes the rasterized
            polygon for a newly rejected mask.
    """
    if not row["kept"] or row["substituted"] or not sel.rethresholds:
        return row
    reason = _failing_reason(row, sel)
    if reason is None:
        return row
    out = dict(row)
    if on_reject == "box":
        mask = box_substitutes([row["polygon"]], height, width)[0]  # as the build does
        out.update(
            segmentation=rle.encode_crop(mask)["counts"],
            area=mask.area,
            bbox=[float(v) for v in mask.bbox],
            substituted=True,
            flags=[*row["flags"], f"substituted:{reason}"],
        )
    else:
        out.update(kept=False, reject_reason=reason)
    return out


def iter_build(
    out: str | Path,
    sel: Selection | None = None,
    *,
    class_table: ClassTable | None = None,
    on_reject: str | None = None,
    instance_columns: Sequence[str] | None = None,
    include_errors: bool = False,
) -> Iterator[ImageItem]:
    """Stream the selected images of a build with their instances, one shard at a time.

    Images with ``status = error`` are skipped unless ``include_errors`` (they are in the
    errors table). Instances of unselected classes are left out; rejected instances only
    with ``sel.include_rejected``.

    Raises:
        ManifestError: an instances part refers to an image its images part lacks.
    """
    reading = _Reading.of(sel, class_table, on_reject, instance_columns, include_errors)
    inst_dir = Path(out) / "manifest" / "instances"
    index = 0
    for image_part in part_paths(out, "images"):
        images = _read_images(image_part)
        yield from reading.items(images, image_part, inst_dir / image_part.name, index)
        index += len(images)


def iter_part(
    images_part: str | Path,
    instances_part: str | Path,
    sel: Selection | None = None,
    start: int = 0,
    *,
    class_table: ClassTable | None = None,
    on_reject: str | None = None,
    instance_columns: Sequence[str] | None = None,
    include_errors: bool = False,
) -> Iterator[ImageItem]:
    """:func:`iter_build` of one part (an images part and its instances part, which may be
    missing), image indices counted from ``start + 1``: what :func:`iter_build` yields for
    the part when ``start`` images rows come before it."""
    reading = _Reading.of(sel, class_table, on_reject, instance_columns, include_errors)
    images_part = Path(images_part)
    yield from reading.items(_read_images(images_part), images_part, Path(instances_part), start)


def _read_images(images_part: Path) -> list[dict[str, Any]]:
    return pq.read_table(images_part, schema=schema_of("images")).to_pylist()


@dataclass(frozen=True)
class _Reading:
    """How :func:`iter_build` and :func:`iter_part` read parts (the selection, resolved)."""

    sel: Selection
    class_ids: set[int] | None
    columns: list[str]
    on_reject: str | None
    include_errors: bool

    @classmethod
    def of(
        cls,
        sel: Selection | None,
        class_table: ClassTable | None,
        on_reject: str | None,
        instance_columns: Sequence[str] | None,
        include_errors: bool,
    ) -> _Reading:
        sel = sel or Selection()
        class_ids = None
        if sel.classes is not None:
            if class_table is None:
                raise ValueError("a class selection needs the build's class table")
            class_ids = set(sel.class_ids(class_table) or [])
        names = schema_of("instances").names
        cols = list(instance_columns) if instance_columns is not None else names
        needed = {"instance_id", "image_id", "class_id", "kept", "substituted", "segmentation",
                  "area", "bbox", "polygon", "flags", "reject_reason", "score", "stability",
                  "rbox_iou"}  # fmt: skip
        return cls(sel, class_ids, [*cols, *sorted(needed - set(cols))], on_reject, include_errors)

    def items(
        self, images: list[dict[str, Any]], image_part: Path, inst_part: Path, start: int
    ) -> Iterator[ImageItem]:
        """The selected items of one part (``images``: the rows of ``image_part``), image
        indices counted from ``start + 1``: the one body of both readers."""
        sel, class_ids, on_reject = self.sel, self.class_ids, self.on_reject
        chosen: dict[str, ImageItem] = {}
        for index, image in enumerate(images, start + 1):
            if sel.wants_image(image, self.include_errors):
                remnants = [list(p) for p in image.get("ignore_polygons") or []]
                chosen[image["image_id"]] = ImageItem(index, image, rejected_polygons=remnants)
        all_ids = {image["image_id"] for image in images}
        if inst_part.is_file():
            table = pq.read_table(inst_part, columns=self.columns, schema=schema_of("instances"))
            for row in table.to_pylist():
                if row["image_id"] not in all_ids:
                    raise ManifestError(
                        f"{inst_part}: instance {row['instance_id']} refers to image "
                        f"{row['image_id']!r}, which {image_part} does not list"
                    )
                item = chosen.get(row["image_id"])
                if item is None or (class_ids is not None and row["class_id"] not in class_ids):
                    continue
                row = rethreshold(row, sel, item.height, item.width, on_reject)
                if row["kept"] or sel.include_rejected:
                    item.instances.append(row)
                else:
                    item.rejected_polygons.append(row["polygon"])
        for item in chosen.values():
            item.instances.sort(key=lambda r: r["instance_id"])
            yield item


def count_images(out: str | Path) -> int:
    """Number of images rows of a build (cheap: Parquet footers only)."""
    return sum(pq.ParquetFile(p).metadata.num_rows for p in part_paths(out, "images"))


def normalize_classes(names: Sequence[str]) -> tuple[str, ...]:
    """Class names as given on a command line (repeatable, comma-separated), split."""
    out: list[str] = []
    for name in names:
        out.extend(n.strip() for n in name.split(",") if n.strip())
    return tuple(out)


__all__ = [
    "REJECT_REASONS",
    "ImageItem",
    "Selection",
    "count_images",
    "count_selected",
    "iter_build",
    "iter_part",
    "normalize_classes",
    "rethreshold",
]


def count_selected(out: str | Path, sel: Selection | None = None) -> int:
    """How many images :func:`iter_build` yields for ``sel`` (reads only the images table)."""
    sel = sel or Selection()
    return sum(
        sel.wants_image(image)
        for p in part_paths(out, "images")
        for image in pq.read_table(p, columns=["image_id", "split", "status"]).to_pylist()
    )
