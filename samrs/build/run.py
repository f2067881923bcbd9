"""``run_build``: the library entry point behind ``samrs build``."""

from __future__ import annotations

import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from samrs import __version__
from samrs.build.checksums import file_digest
from samrs.build.config import BuildConfig
from samrs.build.executors import ShardFailure, execute
from samrs.build.inputs import (
    InputFiles,
    describe_changes,
    input_files,
    read_input_files,
    write_input_files,
)
from samrs.build.layout import Layout
from samrs.build.lock import BuildLock, BuildLockedError
from samrs.build.plan import Plan, make_plan
from samrs.build.progress import Progress
from samrs.errors import SamrsError
from samrs.segmenters import WeightsError, check_weights, needs_weights

log = logging.getLogger(__name__)


class BuildError(SamrsError, RuntimeError):
    """A fatal problem found before any work started (one-line cause)."""


class BuildInterrupted(SamrsError):
    """The build was interrupted (Ctrl-C); committed shards stay and a re-run resumes."""

    def __init__(self, committed: int, total: int) -> None:
        self.committed, self.total = committed, total
        super().__init__(
            "interrupted: run the same command again to resume "
            f"({committed} of {total} shards committed)"
        )


@dataclass
class BuildSummary:
    """What a build did (also the ``--dry-run`` plan)."""

    out: Path
    plan: dict[str, Any]
    state: str  # "dry-run" | "complete" | "already-complete" | "failed"
    counts: dict[str, Any] = field(default_factory=dict)
    failed_shards: list[dict[str, Any]] = field(default_factory=list)
    existing: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    wall_seconds: float | None = None
    images_processed: int = 0
    workers: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True unless a shard failed for good."""
        return not self.failed_shards

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "out": str(self.out),
            "state": self.state,
            "plan": self.plan,
            "counts": self.counts,
            "failed_shards": self.failed_shards,
            "existing": self.existing,
            "config": self.config,
            "wall_seconds": self.wall_seconds,
            "images_processed": self.images_processed,
            "workers": self.workers,
        }


def resolve_config(config: BuildConfig) -> BuildConfig:
    """Check what must be right before any work starts; fill in derived values.

    Raises:
        BuildError: missing root, segmenter without weights, unreadable checkpoint, bad option.
    """
    root = Path(config.root)
    if not root.exists():
        raise BuildError(f"--root {config.root}: no such folder")
    if config.gpus < 0 or config.workers < 1 or config.shard_size < 1:
        raise BuildError("--gpus must be >= 0, --workers and --shard-size >= 1")
    if config.batch_size < 1 or config.chunk_size < 1:  # the one check (worker and SAM trust it)
        raise BuildError("--batch-size and --chunk-size must be >= 1")
    if config.resume and config.overwrite:
        config = replace(config, resume=False)
    if config.min_rbox_iou is None or config.min_area is None:
        from samrs.quality import default_thresholds

        gates = default_thresholds(config.segmenter)
        config = replace(
            config,
            min_rbox_iou=gates.min_rbox_iou if config.min_rbox_iou is None else config.min_rbox_iou,
            min_area=gates.min_area if config.min_area is None else config.min_area,
        )
    if not needs_weights(config.segmenter):  # weight options mean nothing there
        config = replace(config, model=None, checkpoint=None, random_weights=False)
    config = _resolve_decoders(_resolve_writers(_resolve_threads(config)))
    if needs_weights(config.segmenter):
        try:
            check_weights(config.segmenter, config.checkpoint, config.random_weights)
        except WeightsError as exc:
            raise BuildError(str(exc)) from exc
        if config.checkpoint:
            from samrs.segmenters import CheckpointError, checkpoint_sha256, validate_checkpoint
            from samrs.segmenters.checkpoints import is_builtin

            try:
                info = validate_checkpoint(
                    config.segmenter, model=config.model, checkpoint=config.checkpoint
                )
            except (CheckpointError, ValueError) as exc:
                raise BuildError(str(exc)) from exc
            config = replace(
                config,
                model=info.model if info is not None else config.model,
                checkpoint=config.checkpoint
                if is_builtin(config.checkpoint)
                else str(Path(config.checkpoint).resolve()),
                checkpoint_sha256=checkpoint_sha256(config.checkpoint),
            )
        elif config.model is None:
            config = replace(config, model="tiny")
    return replace(config, root=str(root.resolve()), out=str(Path(config.out).resolve()))


def _model_on_cpu(config: BuildConfig) -> bool:
    """Whether the build's model runs on this machine's CPU (not known for a remote cluster,
    whose workers choose their device: then only an explicit ``--device cpu`` counts)."""
    if not needs_weights(config.segmenter):
        return False
    if config.device is not None:
        return config.device == "cpu"
    if config.scheduler or config.gpus > 0:
        return False
    import torch

    return not torch.cuda.is_available()


def _resolve_threads(config: BuildConfig) -> BuildConfig:
    """Threads per worker. A model on the CPU gets a thread count that does not depend on
    ``--workers`` (default: all cores), recorded in the configuration: its float results
    depend on it. Other builds share the cores between CPU workers (Dask would otherwise
    start each with one thread)."""
    cores = os.cpu_count() or 1
    if _model_on_cpu(config):
        threads = config.threads or cores
        return replace(config, threads=threads, cpu_threads=threads)
    if config.gpus == 0 and config.workers > 1 and not config.threads:
        config = replace(config, threads=max(1, cores // config.workers))
    return replace(config, cpu_threads=None)


def _resolve_writers(config: BuildConfig) -> BuildConfig:
    """Writer processes per worker. Default: a model on a GPU gets the cores it leaves (up to
    8 per GPU, two cores kept for the process driving the GPU and its readers), so that one
    process only drives the GPU; everything else writes from threads of its worker (a CPU
    model needs the cores itself, and CPU builds scale with ``--workers``)."""
    cores = os.cpu_count() or 1
    with_gpu = max(1, min(8, cores // max(1, config.gpus) - 2))
    return replace(config, writers=_processes(config, config.writers, "--writers", with_gpu))


def _resolve_decoders(config: BuildConfig) -> BuildConfig:
    """Decode processes per worker. Default: 2 with a model on a GPU (image decode, padding
    and colour conversion then leave the GIL of the process driving the GPU; at ~22 ms per
    1024-px PNG two decode ~90 images/s, 3x what vit_h segments on an H200; every image of
    a source file goes to one process, so more help only with many large sources at once);
    0 (threads of the worker) otherwise: a CPU model needs the cores itself, and CPU builds
    scale with ``--workers``."""
    return replace(config, decoders=_processes(config, config.decoders, "--decoders", 2))


def _processes(config: BuildConfig, given: int | None, option: str, with_gpu: int) -> int:
    """A count of child processes per worker (``option``: ``--writers``, ``--decoders``):
    ``given`` when set (checked), else ``with_gpu`` for a model on a GPU and 0 (threads of
    the worker) otherwise."""
    if given is not None:
        if given < 0:
            raise BuildError(f"{option} must be >= 0")
        return given
    if not needs_weights(config.segmenter) or _model_on_cpu(config):
        return 0
    return with_gpu


def _check_root_and_out(config: BuildConfig) -> None:
    """Refuse an --out that holds the dataset or lies inside it (outputs would be read back,
    and --overwrite could delete source files)."""
    root, out = Path(config.root), Path(config.out)
    if root == out or root.is_relative_to(out):
        raise BuildError(f"--out {out} contains the dataset --root {root}; choose another --out")
    if out.is_relative_to(root):
        raise BuildError(
            f"--out {out} lies inside the dataset --root {root}, where its outputs would be read "
            "as input; choose a folder outside it"
        )


def _metadata(config: BuildConfig, plan: Plan) -> dict[str, Any]:
    from samrs.outputs.schema import MANIFEST_VERSION

    return {
        "tool": "samrs",
        "samrs_version": __version__,
        "manifest_version": MANIFEST_VERSION,
        "fingerprint": config.fingerprint(),
        "config": config.output_affecting(),
        "source": {
            "format": config.source,
            "version": plan.classes.version,
            "root": config.root,
            "split": config.split,
        },
        "class_table": plan.classes.to_dict(),
        "segmenter": {
            "name": config.segmenter,
            "model": config.model if needs_weights(config.segmenter) else None,
            "checkpoint": config.checkpoint,
            "checkpoint_sha256": config.checkpoint_sha256,
            "random_weights": bool(config.random_weights),
            "prompt": config.prompt,
        },
        "plan": plan.summary(),
    }


def _check_existing(config: BuildConfig, layout: Layout) -> dict[str, Any]:
    """Refuse an incompatible OUT; describe what exists (for the plan)."""
    from samrs.outputs.metadata import METADATA_FILE, BuildMetadataError, read_build_metadata

    out = layout.out
    if not out.exists():
        return {"exists": False}
    if not out.is_dir():
        raise BuildError(f"--out {out} is a file, not a folder")
    if layout.is_empty():
        return {"exists": False}
    try:
        meta = read_build_metadata(out)
    except BuildMetadataError as exc:
        if not (out / METADATA_FILE).is_file():
            entries = sorted(p.name for p in out.iterdir())
            shown = ", ".join(entries[:8]) + (", ..." if len(entries) > 8 else "")
            raise BuildError(
                f"--out {out} is not empty and is not a samrs build (no samrs.json): it holds "
                f"{shown}; samrs deletes only what it wrote and will not delete these (not "
                "even with --overwrite): choose an empty or new folder"
            ) from exc
        if not config.overwrite:
            raise BuildError(
                f"--out {out}: {exc}; pass --overwrite to start that build over"
            ) from exc
        meta = {}
    if config.overwrite:
        return {"exists": True, "overwrite": True}
    if meta.get("fingerprint") != config.fingerprint():
        old = meta.get("config") or {}
        new = config.output_affecting()
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        raise BuildError(
            f"--out {out} holds a build with another configuration "
            f"(differs in: {', '.join(changed) or 'tool version'}); "
            "use another --out, the same options, or --overwrite"
        )
    return {
        "exists": True,
        "committed_shards": len(layout.committed_shards()),
        "complete": layout.complete_marker.is_file(),
    }


def count_outputs(out: Path) -> dict[str, Any]:
    """Counts over the committed manifests (streamed: only small columns are read)."""
    from samrs.outputs.manifest import read_table

    images = read_table(out, "images", columns=["status"]).column("status").to_pylist()
    inst = read_table(out, "instances", columns=["kept", "reject_reason"])
    errors = read_table(out, "errors", columns=["stage", "n_objects"])
    kept = inst.column("kept").to_pylist()
    reasons = inst.column("reject_reason").to_pylist()
    in_errors = sum(errors.column("n_objects").to_pylist())
    return {
        "images": dict(sorted(Counter(images).items())),
        "instances": len(kept),
        "kept": sum(kept),
        "rejected": dict(
            sorted(Counter(r for k, r in zip(kept, reasons, strict=True) if not k).items())
        ),
        "errors": dict(sorted(Counter(errors.column("stage").to_pylist()).items())),
        "objects_in_errors": in_errors,
        "objects": len(kept) + in_errors,
    }


def finalize(out: Path, config: BuildConfig, metadata: dict[str, Any]) -> dict[str, Any]:
    """Assemble the COCO JSON from the shards' fragments, write counts into samrs.json and
    the completion marker."""
    from samrs.build.fragments import write_instances
    from samrs.outputs.card import write_dataset_card
    from samrs.outputs.metadata import dumps, write_build_metadata

    layout = Layout(out)
    write_instances(layout, config)  # from the shards' COCO fragments
    counts = count_outputs(out)
    write_build_metadata(out, {**metadata, "counts": counts})
    write_dataset_card(out, {**metadata, "counts": counts})
    layout.state.mkdir(parents=True, exist_ok=True)
    files = {name: file_digest(out / name) for name in FINAL_FILES}
    layout.complete_marker.write_text(
        dumps({"fingerprint": config.fingerprint(), "counts": counts, "files": files})
    )
    return counts


FINAL_FILES = ("coco/instances.json",)
"""Files written by :func:`finalize` from the manifests, checked before a build is taken as
complete (rebuilt from the manifests when damaged)."""


def _final_files_sound(layout: Layout) -> bool:
    """Whether the completion marker's files are all there with their recorded checksums."""
    try:
        recorded = json.loads(layout.complete_marker.read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for name in FINAL_FILES:
        path = layout.out / name
        if name not in recorded or not path.is_file() or file_digest(path) != recorded[name]:
            log.warning("%s is missing or damaged; writing it again", path)
            return False
    return True


def run_build(config: BuildConfig, *, progress: bool | None = None) -> BuildSummary:
    """Plan, execute and finalize a build (or only plan it, with ``config.dry_run``).

    The build holds ``OUT``'s lock from its first write to its end: a second builder of the
    same OUT is refused at once, naming the holder.

    Raises:
        BuildError: fatal problems, found before any work starts.
    """
    from samrs.sources import SourceError

    config = resolve_config(config)
    _check_root_and_out(config)
    layout = Layout(config.out)
    existing = _check_existing(config, layout)
    try:
        plan = make_plan(config)
    except (SourceError, ValueError) as exc:
        raise BuildError(str(exc)) from exc
    summary = BuildSummary(
        layout.out, plan.summary(), "dry-run", existing=existing, config=config.to_dict()
    )
    summary.plan["errors_found"] = [e.to_dict() for e in plan.errors]
    if config.dry_run:
        return summary
    try:
        lock = BuildLock(layout.lock).acquire()
    except BuildLockedError as exc:
        raise BuildError(
            f"--out {layout.out} is being built right now: its lock {layout.lock} is {exc}; "
            "wait for that build to end, or use another --out"
        ) from None
    except OSError as exc:
        raise BuildError(_os_error_message(exc, "cannot create the build folder")) from None
    try:
        summary.existing = _check_existing(config, layout)  # again, now that OUT is ours
        return _run_locked(config, layout, plan, summary, progress)
    except OSError as exc:
        raise BuildError(
            _os_error_message(exc, "the build stopped")
            + "; committed shards are kept: fix the cause and re-run the same command"
        ) from None
    finally:
        lock.release()


def _os_error_message(exc: OSError, what: str) -> str:
    """One line naming the path and the system's reason (read-only, disk full, ...)."""
    where = f" {exc.filename}" if exc.filename else ""
    return f"{what}: cannot write{where}: {exc.strerror or exc}"


def _check_inputs(layout: Layout, plan: Plan, resuming: bool) -> InputFiles:
    """Refuse to resume a build whose dataset changed; the plan's input files (recorded by
    the caller once ``samrs.json`` is written)."""
    current = input_files(plan.config.root, plan.images, plan.errors)
    recorded = read_input_files(layout.inputs) if resuming else None
    if recorded is not None:
        changes = describe_changes(recorded, current)
        if changes:
            raise BuildError(
                f"the dataset under --root {plan.config.root} changed since this build "
                f"started ({changes}); resuming would mix outputs of two datasets: restore "
                "it, or start over with --overwrite (or use another --out)"
            )
    elif resuming:
        log.warning("%s: no record of its input files (older samrs); not checked", layout.out)
    return current


def _committed_and_sound(layout: Layout) -> set[int]:
    """Committed shards whose parts and files pass the quick check; the others are
    uncommitted so that they are built again."""
    from samrs.build.checksums import check_shards

    for check in check_shards(layout):
        if not check.ok:
            log.warning(
                "shard %d is damaged (%s); building it again",
                check.shard,
                "; ".join(check.problems),
            )
            layout.uncommit(check.shard)
    return layout.committed_shards()


def _run_locked(
    config: BuildConfig,
    layout: Layout,
    plan: Plan,
    summary: BuildSummary,
    progress: bool | None,
) -> BuildSummary:
    from samrs.outputs.metadata import write_build_metadata

    existing = summary.existing
    resuming = bool(existing.get("exists")) and not existing.get("overwrite")
    if existing.get("overwrite"):
        layout.remove_managed()
    else:
        layout.remove_temporaries()
    inputs = _check_inputs(layout, plan, resuming)  # before anything of the build changes
    metadata = _metadata(config, plan)
    write_build_metadata(layout.out, metadata)
    write_input_files(layout.inputs, inputs)
    committed = _committed_and_sound(layout)
    if existing.get("complete") and layout.complete_marker.is_file() and _final_files_sound(layout):
        from samrs.outputs.metadata import read_build_metadata

        summary.state = "already-complete"
        summary.counts = read_build_metadata(layout.out).get("counts", {})
        return summary
    layout.complete_marker.unlink(missing_ok=True)
    start = time.perf_counter()
    todo = [s for s in plan.shards if s.index not in committed]
    for shard in todo:
        layout.clear_failure(shard.index)
    bar = Progress(
        len(plan.shards),
        len(plan.images),
        plan.n_objects,
        enabled=config.progress if progress is None else progress,
    )
    for shard in plan.shards:
        if shard.index in committed:
            from samrs.build.worker import ShardResult

            bar.shard_done(
                ShardResult(shard.index, skipped=True), len(shard.images), shard.n_objects
            )
    by_index = {s.index: s for s in plan.shards}
    try:
        for outcome in execute(todo, config, plan.classes, on_image=bar.image_done):
            shard = by_index[outcome.index]
            if isinstance(outcome, ShardFailure):
                layout.record_failure(outcome.index, outcome.cause)
                summary.failed_shards.append({"shard": outcome.index, "cause": outcome.cause})
                bar.shard_failed(outcome.index)
            else:
                summary.images_processed += 0 if outcome.skipped else len(shard.images)
                bar.shard_done(outcome, len(shard.images), shard.n_objects)
    except KeyboardInterrupt:
        bar.close()
        n_committed = len(set(layout.committed_shards()) & set(by_index))
        raise BuildInterrupted(n_committed, len(plan.shards)) from None
    finally:
        bar.close()
    summary.failed_shards.sort(key=lambda f: f["shard"])
    summary.workers = dict(sorted(bar.workers.items()))
    if summary.failed_shards:
        summary.state = "failed"
        summary.counts = count_outputs(layout.out)
    else:
        summary.counts = finalize(layout.out, config, metadata)
        summary.state = "complete"
    summary.wall_seconds = time.perf_counter() - start
    return summary
