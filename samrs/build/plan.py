"""Planning a build: read the source, tile it, number the instances, cut deterministic shards."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from samrs.build.config import BuildConfig
from samrs.core.classes import ClassTable, class_table
from samrs.core.records import ErrorRecord, ImageRecord


@dataclass(frozen=True)
class Shard:
    """A contiguous run of planned images, processed and committed as one unit.

    Attributes:
        index: shard number (its part files are ``part-{index:05d}.parquet``).
        images: the image records of the shard, in plan order.
        first_instance_id: instance id of the first object of the first image; ids then run
            consecutively over the shard's objects in image and object order.
        errors: reader/tiler errors that belong to this shard (written with its parts).
    """

    index: int
    images: tuple[ImageRecord, ...]
    first_instance_id: int
    errors: tuple[ErrorRecord, ...] = ()

    @property
    def n_objects(self) -> int:
        """Objects over the shard's images."""
        return sum(len(image.objects) for image in self.images)


@dataclass
class Plan:
    """Everything a build will do, fixed before any pixel is read."""

    config: BuildConfig
    classes: ClassTable
    images: list[ImageRecord]
    errors: list[ErrorRecord]
    shards: list[Shard] = field(default_factory=list)
    n_source_images: int = 0

    @property
    def n_objects(self) -> int:
        """Objects over all planned images (tiles count an object once per tile)."""
        return sum(len(image.objects) for image in self.images)

    def summary(self) -> dict[str, object]:
        """JSON-ready overview (``--dry-run`` and samrs.json)."""
        per_class: dict[str, int] = {}
        for image in self.images:
            for obj in image.objects:
                per_class[obj.class_name] = per_class.get(obj.class_name, 0) + 1
        return {
            "source_images": self.n_source_images,
            "images": len(self.images),
            "tiles": sum(1 for image in self.images if image.window is not None),
            "objects": self.n_objects,
            "shards": len(self.shards),
            "classes": {name: per_class.get(name, 0) for name in self.classes.names},
            "read_errors": len(self.errors),
        }


def make_plan(config: BuildConfig) -> Plan:
    """Read (and tile) the source and cut it into shards of ``config.shard_size`` images.

    Raises:
        samrs.sources.SourceError: missing root or unknown source (fatal, before any work).
    """
    from samrs.sources import read_dataset

    dataset = read_dataset(
        config.source,
        config.root,
        version=config.version,
        split=config.split,
        class_order=config.class_order,
        on_unknown_class=config.on_unknown_class,
    )
    n_source_images = len(dataset.images)
    if config.patch_size:
        from samrs.tiling import tile_dataset

        dataset = tile_dataset(
            dataset,
            patch_size=config.patch_size,
            gap=config.gap,
            rates=config.rates,
            iof_threshold=config.iof_threshold,
            clip=config.clip_to_window,
            convention=config.tile_convention,
        )
    table = class_table(config.source, dataset.version, config.class_order)
    errors = list(dataset.errors)
    images = writable_images(dataset.images, errors, config.out)
    plan = Plan(config, table, images, errors, [], n_source_images)
    plan.shards = cut_shards(plan.images, plan.errors, config.shard_size)
    return plan


def writable_images(
    images: list[ImageRecord], errors: list[ErrorRecord], out: str
) -> list[ImageRecord]:
    """The images whose output files can be created under ``out``; each other one becomes an
    errors row (stage ``read``, accounting for its objects) appended to ``errors``.

    An image id gives the names ``semantic/<id>.png`` (and ``.tif``) and, for tiles,
    ``images/<id>.png``: one longer than the file system's name limit
    (:func:`samrs.core.imageio.name_max`, 255 bytes on most) would fail its whole shard at write
    time, on every re-run. Temporary names never exceed the limit when the final name fits
    (:func:`samrs.core.imageio.temp_name`). Ids that are not valid UTF-8 never get here (the
    readers turn them into errors rows).
    """
    from samrs.build.layout import Layout
    from samrs.core.imageio import long_name, name_max

    layout = Layout(out)
    limits: dict[Path, int] = {}
    kept = []
    for image in images:
        paths = [layout.semantic(image.image_id)]
        if image.window is not None:
            paths.append(layout.tile_image(image.image_id))
        problem = None
        for path in paths:
            if path.parent not in limits:
                limits[path.parent] = name_max(path.parent)
            problem = long_name(path, limits[path.parent], str(path.relative_to(layout.out)))
            if problem is not None:
                problem += "; image skipped"
                break
        if problem is None:
            kept.append(image)
        else:
            errors.append(
                ErrorRecord(
                    image.image_path, None, "read", problem, image.image_id, len(image.objects)
                )
            )
    return kept


def cut_shards(
    images: list[ImageRecord], errors: list[ErrorRecord], shard_size: int
) -> list[Shard]:
    """Deterministic shards of ``shard_size`` images; errors go with their image's shard.

    Errors that belong to no planned image go to shard 0, so every error is written once.
    A dataset without images still gets one (empty) shard, which carries its errors.
    """
    if shard_size < 1:
        raise ValueError("shard size must be at least 1")
    shard_of_image: dict[str, int] = {}
    chunks = [images[i : i + shard_size] for i in range(0, len(images), shard_size)] or [[]]
    for index, chunk in enumerate(chunks):
        for image in chunk:
            shard_of_image[image.image_id] = index
    errors_by_shard: list[list[ErrorRecord]] = [[] for _ in chunks]
    for error in errors:
        errors_by_shard[shard_of_image.get(error.image_id or "", 0)].append(error)
    shards, next_id = [], 0
    for index, chunk in enumerate(chunks):
        shard = Shard(index, tuple(chunk), next_id, tuple(errors_by_shard[index]))
        shards.append(shard)
        next_id += shard.n_objects
    return shards
