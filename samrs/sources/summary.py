"""Counts over a read dataset: what ``samrs inspect`` reports."""

from __future__ import annotations

from collections import Counter
from typing import Any

from samrs.core.classes import ClassTable
from samrs.core.records import Dataset
from samrs.sources.common import split_rank


def summarize(dataset: Dataset, table: ClassTable | None = None) -> dict[str, Any]:
    """A JSON-ready summary of a dataset: counts per split and class, flags, every error.

    Args:
        dataset: what :func:`samrs.sources.read_dataset` returned.
        table: the class table; when given every class is listed (zeros included) in table
            order, else only the classes seen, by class id.

    Returns:
        ``images``, ``objects``, ``splits`` (split -> images), ``classes`` (name -> objects),
        ``truncated``, ``difficult``, ``clipped``, ``images_without_objects``,
        ``objects_in_errors`` (objects accounted for by error rows) and ``errors``
        (``file``, ``line``, ``stage``, ``message``, ``image_id``, ``n_objects``), in reading order.
    """
    objects = [obj for image in dataset.images for obj in image.objects]
    seen = Counter(obj.class_name for obj in objects)
    ids = {obj.class_name: obj.class_id for obj in objects}
    names = list(table.names) if table is not None else sorted(seen, key=lambda n: (ids[n], n))
    names += sorted(set(seen) - set(names))
    splits = Counter(image.split for image in dataset.images)
    return {
        "source": dataset.source,
        "version": dataset.version,
        "images": len(dataset.images),
        "objects": len(objects),
        "splits": {str(split): splits[split] for split in sorted(splits, key=split_rank)},
        "classes": {name: seen.get(name, 0) for name in names},
        "truncated": sum(obj.truncated for obj in objects),
        "difficult": sum(obj.difficult for obj in objects),
        "clipped": sum("clipped" in obj.flags for obj in objects),
        "images_without_objects": sum(not image.objects for image in dataset.images),
        "objects_in_errors": sum(e.n_objects for e in dataset.errors),
        "errors": [e.to_dict() for e in dataset.errors],
    }
