"""Settings dataclasses read back from JSON (build, MeSAM and pretraining configs)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def check_known_keys(cls: Any, data: Mapping[str, object], what: str) -> None:
    """Raise ``ValueError("unknown WHAT: a, b")`` naming, sorted, the keys of ``data`` that
    are not fields of the dataclass ``cls``."""
    unknown = sorted(set(data) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what}: {', '.join(unknown)}")
