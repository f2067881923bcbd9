"""The resolved configuration of a build and its fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from samrs.core.imageio import DEFAULT_MAX_IMAGE_PIXELS
from samrs.core.settings import check_known_keys

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
        "writers",
        "decoders",
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
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS  # None or 0: no limit
    # tiling
    patch_size: int | None = None
    gap: int = 200
    rates: tuple[float, ...] = (1.0,)
    iof_threshold: float = 0.7
    clip_to_window: bool = False
    tile_convention: str = "mmrotate"
    # segmentation
    segmenter: str = "sam"
    model: str | None = None
    checkpoint: str | os.PathLike[str] | None = None
    """A weights file or ``builtin:NAME``; stored as given, as a str (what samrs.json records
    once :func:`samrs.build.run.resolve_config` made a file's path absolute)."""
    checkpoint_sha256: str | None = None
    random_weights: bool = False
    seed: int = 0
    prompt: str = "rhbox"
    hq_token_only: bool = False
    multimask: bool = False
    clip_to_rbox: float | None = None
    small_object_zoom: int | None = None
    zoom_crop: int | None = None
    zoom_factor: float | None = None
    zoom_all: bool = False
    zoom_border: str = "shift"
    resize: str = "torch"
    cpu_threads: int | None = None
    """Resolved, not set by users: torch threads of a model running on the CPU. Its float
    results depend on the thread count, so it is part of the configuration (any ``--workers``
    gives the same bytes); None when the model runs on a GPU or there is no model."""
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
    writers: int | None = None
    """Writer processes per worker (quality, labels, PNGs and rows of finished images, off the
    process that drives the model); 0: threads of that process. None: resolved (see
    :func:`samrs.build.run.resolve_config`)."""
    decoders: int | None = None
    """Decode processes per worker (images decoded ahead of the model, every image of one
    source file in the same process); 0: threads of the worker's process. None: resolved (see
    :func:`samrs.build.run.resolve_config`)."""
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
    preset: str | None = None
    extra: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.checkpoint is not None:
            self.checkpoint = os.fspath(self.checkpoint)

    def to_dict(self) -> dict[str, object]:
        """JSON-ready dict of every field."""
        data = asdict(self)
        data["rates"] = list(self.rates)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> BuildConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError`` naming them."""
        check_known_keys(cls, data, "build option(s)")
        values: dict[str, Any] = dict(data)  # JSON values; keys checked above
        if "rates" in values and values["rates"] is not None:
            values["rates"] = tuple(float(r) for r in values["rates"])
        return cls(**values)

    def output_affecting(self) -> dict[str, object]:
        """The part of the configuration that changes what is written."""
        return {k: v for k, v in self.to_dict().items() if k not in EXECUTION_FIELDS}

    def fingerprint(self) -> str:
        """sha256 over the output-affecting configuration (stable JSON)."""
        blob = json.dumps(self.output_affecting(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


# --- presets --------------------------------------------------------------------------------

PRESETS: dict[str, dict[str, object]] = {
    "samrs": {
        "overlap": "annotation-order",
        "class_order": "samrs",
        "prompt": {"dota": "hbox", "dior": "hbox", "fair1m": "rhbox"},
        "resize": "pil",
    },
    "ros-sam": {
        "zoom_all": True,
        "zoom_crop": 512,
        "zoom_factor": 2.0,
        "zoom_border": "pad",
    },
}
"""Named sets of build options (``--preset``). A value that is a dict is chosen by source.

* ``samrs``: the SAMRS generation scripts' rules: annotation-order painting (later objects
  overwrite earlier ones), the SAMRS papers' class order, horizontal boxes for DOTA (SOTA) and
  DIOR (SIOR), boxes around the rotated boxes for FAIR1M (FAST), and SAM's input resized with
  PIL as segment-anything's predictor does (``--resize pil``).
* ``ros-sam``: ROS-SAM's inference rules: every box on its own 512-pixel crop centred on it,
  zero-padded where it leaves the image, upsampled 2x bicubic, masks pasted back.
"""


def preset_options(preset: str | None, source: str | None) -> dict[str, object]:
    """The options a preset sets for ``source`` (empty for None).

    Raises:
        ValueError: unknown preset.
    """
    if preset is None:
        return {}
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)}")
    out: dict[str, object] = {}
    for key, value in PRESETS[preset].items():
        if isinstance(value, dict):
            if source in value:
                out[key] = value[source]
        else:
            out[key] = value
    return out
