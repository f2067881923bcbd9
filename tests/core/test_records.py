"""Records: the typed keywords of ``with_changes`` are exactly the dataclasses' fields."""

from __future__ import annotations

from dataclasses import fields
from typing import get_type_hints

import pytest

from samrs.core.records import ImageChanges, ImageRecord, ObjectAnnotation, ObjectChanges


@pytest.mark.parametrize(
    ("record", "changes"), [(ImageRecord, ImageChanges), (ObjectAnnotation, ObjectChanges)]
)
def test_with_changes_keywords_mirror_the_fields(record: type, changes: type) -> None:
    """A field added to a record without its keyword (or the reverse) fails here: the
    TypedDict is the type checker's copy of the field list."""
    hints = get_type_hints(record)
    assert {f.name: hints[f.name] for f in fields(record)} == get_type_hints(changes)


def test_with_changes_replaces_only_what_it_is_given() -> None:
    image = ImageRecord("a", "a.png", 10, 20, "dota", "1.0", "train")
    changed = image.with_changes(image_id="b", split=None)
    assert (changed.image_id, changed.split) == ("b", None)
    assert (changed.image_path, changed.width, changed.height) == ("a.png", 10, 20)
    assert image.image_id == "a"  # a copy
