"""The resolved configuration of a build and its fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields

# Fields that do not change what a build writes: excluded from the fingerprint.
EXECUTION_FIELDS = frozenset(
    {
        "out",
        "gpus",
        "workers",
        "scheduler",
        "device",
        "resume",
        "overwrite",
        "dry_run",
        "threads",
        "max_retries",
        "progress",
        "compile",
        "chunk_size",
        "batch_size",
    }
)


@dataclass
class BuildConfig:
    """Everything a build needs. Defaults are the documented CLI defaults."""

    source: str
    root: str
    out: str
    version: str | None = None
    split: str | None = None
    class_order: str = "official"
    on_unknown_class: str = "error"
    # tiling
    patch_size: int | None = None
    gap: int = 200
    rates: tuple[float, ...] = (1.0,)
    iof_threshold: float = 0.7
    clip_to_window: bool = False
    # segmentation
    segmenter: str = "sam"
    model: str | None = None
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None
    random_weights: bool = False
    seed: int = 0
    prompt: str = "rhbox"
    hq_token_only: bool = False
    multimask: bool = False
    clip_to_rbox: float | None = None
    small_object_zoom: int | None = None
    # quality filter
    min_score: float = 0.0
    min_stability: float = 0.0
    min_rbox_iou: float | None = None  # None: the segmenter's default (quality.default_thresholds)
    min_inside_fraction: float = 0.0
    min_area: int | None = None  # None: the segmenter's default
    on_reject: str = "keep-rejected"
    # outputs
    overlap: str = "small-on-top"
    background: bool = False
    include_rejected: bool = False
    polygons: bool = False
    # execution
    shard_size: int = 64
    gpus: int = 0
    workers: int = 1
    threads: int | None = None
    scheduler: str | None = None
    device: str | None = None
    batch_size: int = 4
    chunk_size: int = 64
    compile: bool = False
    max_retries: int = 2
    resume: bool = True
    overwrite: bool = False
    dry_run: bool = False
    progress: bool = True
    extra: dict[str, object] = field(default_factory=dict)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict of every field."""
        data = asdict(self)
        data["rates"] = list(self.rates)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BuildConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown build option(s): {', '.join(unknown)}")
        values = dict(data)
        if "rates" in values and values["rates"] is not None:
            values["rates"] = tuple(float(r) for r in values["rates"])  # type: ignore[union-attr]
        return cls(**values)  # type: ignore[arg-type]

    def output_affecting(self) -> dict[str, object]:
        """The part of the configuration that changes what is written."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}

    def fingerprint(self) -> str:
        """sha256 over the output-affecting configuration (stable JSON)."""
        blob = json.dumps(self.output_affecting(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()
