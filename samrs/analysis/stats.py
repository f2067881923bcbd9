"""Statistics of a build: classes, pixels, mask sizes, objects per image, rejections, errors.

Everything is computed by streaming the Parquet manifests in record batches and reading the
semantic label PNGs one at a time, so memory does not grow with the corpus (only with the
number of distinct images that appear in per-image tallies). All counts are exact.

:func:`compute_stats` returns a JSON-ready dict; :func:`write_report` writes
``OUT/stats/stats.json``, PNG plots and a self-contained ``OUT/stats/report.html``, optionally
with other builds side by side.
"""

from __future__ import annotations

import base64
import html
import json
import logging
import math
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from samrs.analysis.render import resolve_path
from samrs.core.classes import UNLABELLED
from samrs.errors import SamrsError
from samrs.outputs.manifest import iter_batches
from samrs.outputs.metadata import build_class_table, build_config, read_build_metadata
from samrs.outputs.semantic import read_semantic_png
from samrs.quality import UNIT_METRICS

logger = logging.getLogger(__name__)

STATS_VERSION = 1
STATS_DIR = "stats"

AREA_EDGES: tuple[int, ...] = tuple(2**k for k in range(29))
"""Mask-area bins (pixels): bin ``k`` holds areas in ``[2**k, 2**(k+1))``; the last bin also
holds anything larger, empty masks are counted apart. Fixed, so builds compare bin by bin."""

METRIC_EDGES: tuple[float, ...] = tuple(round(i / 20, 2) for i in range(21))
"""Bins of the per-mask quality metrics on [0, 1] (values outside are put in the end bins)."""

METRICS = UNIT_METRICS
"""Per-mask quality columns of the instances manifest (:data:`samrs.quality.UNIT_METRICS`)."""

MAX_PROBLEMS = 20

GALLERY_SAMPLES = 6
"""Sample images in the report's gallery (spread evenly over the manifest order)."""

GALLERY_WORST = 4
"""Worst masks per audit metric in the report (their images join the gallery)."""

THUMBNAIL = 384
"""Longest side, in pixels, of a gallery image."""

FALLBACK_FLAG_SHARE = 0.05
"""A build is flagged when more than this share of its instances' masks are not the
segmenter's own (``mask_source`` other than ``segmenter``: fallbacks and substitutions)."""

ProgressCallback = Callable[[int, int], None]


class _MetricAcc(TypedDict):
    """Running tallies of one per-mask quality metric over the instances manifest."""

    kept: npt.NDArray[np.int64]
    rejected: npt.NDArray[np.int64]
    missing: int
    sum: float
    count: int
    min: float
    max: float


class StatsError(SamrsError, ValueError):
    """A build output whose manifests contradict its metadata (the message names the file)."""


def area_bin(areas: np.ndarray) -> np.ndarray:
    """Index into :data:`AREA_EDGES` of positive areas (exact for integers, via frexp)."""
    _, exponent = np.frexp(np.asarray(areas, dtype=np.float64))
    return np.clip(exponent.astype(np.int64) - 1, 0, len(AREA_EDGES) - 1)


def metric_histogram(values: np.ndarray) -> np.ndarray:
    """Counts of finite values in the :data:`METRIC_EDGES` bins (clipped to [0, 1])."""
    v = np.clip(np.asarray(values, dtype=np.float64), 0.0, 1.0)
    return np.histogram(v, bins=np.asarray(METRIC_EDGES))[0].astype(np.int64)


def label_pixel_counts(
    label: np.ndarray, n_classes: int, background: bool = False
) -> dict[str, Any]:
    """Pixel counts of one label map.

    Returns:
        ``classes`` (int array of length ``n_classes``), ``background``, ``unlabelled`` and
        ``invalid`` (values that are none of these).
    """
    counts = np.bincount(np.asarray(label, dtype=np.uint8).ravel(), minlength=256)
    shift = 1 if background else 0
    classes = counts[shift : shift + n_classes].astype(np.int64)
    bg = int(counts[0]) if background else 0
    unlabelled = int(counts[UNLABELLED])
    invalid = int(counts.sum()) - int(classes.sum()) - bg - unlabelled
    return {"classes": classes, "background": bg, "unlabelled": unlabelled, "invalid": invalid}


def _sorted_counter(counter: Counter, numeric: bool = False) -> dict[str, int]:
    keys = sorted(counter, key=(lambda k: int(k)) if numeric else (lambda k: str(k)))
    return {str(k): int(counter[k]) for k in keys}


def _column(batch: Any, name: str) -> np.ndarray:
    """A numeric column as numpy, nulls as NaN (floats) or False (bools)."""
    col = batch.column(name)
    if pa.types.is_boolean(col.type):
        return np.asarray(col.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64)


def _problem(problems: list[str], text: str) -> None:
    if len(problems) < MAX_PROBLEMS:
        problems.append(text)
    elif len(problems) == MAX_PROBLEMS:
        problems.append("... (more problems not listed)")
    logger.warning(text)


def build_name(out: str | Path) -> str:
    """The label of a build in reports: its folder name."""
    return Path(out).resolve().name or str(out)


def compute_stats(out: str | Path, progress: ProgressCallback | None = None) -> dict[str, Any]:
    """All statistics of a build, as a JSON-ready dict (see ``stats.json`` in the README).

    Args:
        out: the build folder (with ``samrs.json`` and ``manifest/``).
        progress: called as ``progress(done, total)`` while semantic labels are read.

    Raises:
        samrs.outputs.metadata.BuildMetadataError: ``samrs.json`` missing or malformed.
        StatsError: a manifest row refers to a class id the class table does not have.
    """
    out = Path(out)
    meta = read_build_metadata(out)
    table = build_class_table(meta)
    config = build_config(meta)
    background = bool(config.get("background", False))
    k = len(table)
    problems: list[str] = []

    # --- instances --------------------------------------------------------------------
    kept_per_class = np.zeros(k, dtype=np.int64)
    rejected_per_class = np.zeros(k, dtype=np.int64)
    area_hist_kept = np.zeros((k, len(AREA_EDGES)), dtype=np.int64)
    area_hist_rejected = np.zeros(len(AREA_EDGES), dtype=np.int64)
    area_sum = np.zeros(k, dtype=np.float64)
    empty_kept = empty_rejected = 0
    reasons: Counter[str] = Counter()
    n_inst = n_kept = n_trunc = n_trunc_kept = n_diff = n_diff_kept = n_subst = 0
    metric_acc: dict[str, _MetricAcc] = {
        m: {
            "kept": np.zeros(len(METRIC_EDGES) - 1, dtype=np.int64),
            "rejected": np.zeros(len(METRIC_EDGES) - 1, dtype=np.int64),
            "missing": 0,
            "sum": 0.0,
            "count": 0,
            "min": math.inf,
            "max": -math.inf,
        }
        for m in METRICS
    }
    columns = [
        "class_id",
        "kept",
        "reject_reason",
        "area",
        "truncated",
        "difficult",
        "substituted",
        *METRICS,
    ]
    for batch in iter_batches(out, "instances", columns=columns, batch_size=65536):
        cid = batch.column("class_id").to_numpy(zero_copy_only=False).astype(np.int64)
        if cid.size and (cid.min() < 0 or cid.max() >= k):
            bad = int(cid[(cid < 0) | (cid >= k)][0])
            raise StatsError(
                f"{out / 'manifest' / 'instances'}: class_id {bad} is not in the class table of "
                f"{out / 'samrs.json'} ({k} classes)"
            )
        kept = _column(batch, "kept")
        area = batch.column("area").to_numpy(zero_copy_only=False).astype(np.int64)
        truncated, difficult = _column(batch, "truncated"), _column(batch, "difficult")
        n_inst += len(cid)
        n_kept += int(kept.sum())
        n_trunc += int(truncated.sum())
        n_trunc_kept += int((truncated & kept).sum())
        n_diff += int(difficult.sum())
        n_diff_kept += int((difficult & kept).sum())
        n_subst += int(_column(batch, "substituted").sum())
        kept_per_class += np.bincount(cid[kept], minlength=k)
        rejected_per_class += np.bincount(cid[~kept], minlength=k)
        np.add.at(area_sum, cid[kept], area[kept])
        pos = area > 0
        sel = kept & pos
        np.add.at(area_hist_kept, (cid[sel], area_bin(area[sel])), 1)
        sel = ~kept & pos
        area_hist_rejected += np.bincount(area_bin(area[sel]), minlength=len(AREA_EDGES))
        empty_kept += int((kept & ~pos).sum())
        empty_rejected += int((~kept & ~pos).sum())
        for reason, is_kept in zip(batch.column("reject_reason").to_pylist(), kept, strict=True):
            if not is_kept:
                reasons[reason if reason is not None else "(no reason)"] += 1
        for m in METRICS:
            v = _column(batch, m)
            finite = np.isfinite(v)
            acc = metric_acc[m]
            acc["missing"] += int((~finite).sum())
            acc["kept"] += metric_histogram(v[finite & kept])
            acc["rejected"] += metric_histogram(v[finite & ~kept])
            if finite.any():
                acc["sum"] += float(v[finite].sum())
                acc["count"] += int(finite.sum())
                acc["min"] = min(acc["min"], float(v[finite].min()))
                acc["max"] = max(acc["max"], float(v[finite].max()))

    # --- images and semantic labels ----------------------------------------------------
    status: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    n_objects_hist: Counter[int] = Counter()
    n_kept_hist: Counter[int] = Counter()
    n_images = n_tiles = image_pixels = sum_objects = sum_kept = with_objects = 0
    px_classes = np.zeros(k, dtype=np.int64)
    px = {"background": 0, "unlabelled": 0, "invalid": 0}
    n_labels = missing_labels = no_label = 0
    image_columns = [
        "image_id",
        "split",
        "status",
        "tile_window",
        "width",
        "height",
        "n_objects",
        "n_kept",
        "semantic_file",
    ]
    total_images = _row_count(out, "images")
    for batch in iter_batches(out, "images", columns=image_columns, batch_size=4096):
        for row in batch.to_pylist():
            n_images += 1
            status[row["status"]] += 1
            splits[row["split"] if row["split"] is not None else "(none)"] += 1
            n_tiles += row["tile_window"] is not None
            n_objects_hist[int(row["n_objects"])] += 1
            n_kept_hist[int(row["n_kept"])] += 1
            sum_objects += int(row["n_objects"])
            sum_kept += int(row["n_kept"])
            with_objects += int(row["n_objects"]) > 0
            if row["width"] is not None and row["height"] is not None:
                image_pixels += int(row["width"]) * int(row["height"])
            if row["semantic_file"] is None:
                no_label += 1
            else:
                path = resolve_path(out, row["semantic_file"])
                if not path.is_file():
                    missing_labels += 1
                    _problem(problems, f"{path}: semantic label of {row['image_id']} is missing")
                else:
                    label = read_semantic_png(path)
                    if row["width"] is not None and label.shape != (row["height"], row["width"]):
                        _problem(
                            problems,
                            f"{path}: label is {label.shape[1]}x{label.shape[0]}, the image "
                            f"{row['image_id']} is {row['width']}x{row['height']}",
                        )
                    counts = label_pixel_counts(label, k, background)
                    px_classes += counts["classes"]
                    for key in px:
                        px[key] += counts[key]
                    if counts["invalid"]:
                        _problem(
                            problems,
                            f"{path}: {counts['invalid']} pixels with values that are no class",
                        )
                    n_labels += 1
            if progress is not None and (n_images % 500 == 0 or n_images == total_images):
                progress(n_images, total_images)

    # --- errors ------------------------------------------------------------------------
    stages: dict[str, dict[str, int]] = {}
    n_err = n_err_objects = 0
    for batch in iter_batches(out, "errors", columns=["stage", "n_objects"], batch_size=65536):
        for stage, n_obj in zip(
            batch.column("stage").to_pylist(), batch.column("n_objects").to_pylist(), strict=True
        ):
            entry = stages.setdefault(stage, {"rows": 0, "objects": 0})
            entry["rows"] += 1
            entry["objects"] += int(n_obj)
            n_err += 1
            n_err_objects += int(n_obj)

    sources = mask_source_stats(out, table.names)
    if sources["flagged"]:
        _problem(problems, sources["flag"])
    cross_tile = cross_tile_stats(out) if n_tiles else None
    labelled = int(px_classes.sum())
    classes = []
    for i, name in enumerate(table.names):
        classes.append(
            {
                "id": i,
                "name": name,
                "color": list(table.palette[i]),
                "instances": int(kept_per_class[i]),
                "instances_share": _share(kept_per_class[i], n_kept),
                "rejected": int(rejected_per_class[i]),
                "pixels": int(px_classes[i]),
                "pixels_share": _share(px_classes[i], labelled),
                "mean_area": float(area_sum[i] / kept_per_class[i]) if kept_per_class[i] else None,
            }
        )
    metrics = {}
    for m, acc in metric_acc.items():
        metrics[m] = {
            "bin_edges": list(METRIC_EDGES),
            "kept": acc["kept"].tolist(),
            "rejected": acc["rejected"].tolist(),
            "count": acc["count"],
            "missing": acc["missing"],
            "mean": acc["sum"] / acc["count"] if acc["count"] else None,
            "min": acc["min"] if acc["count"] else None,
            "max": acc["max"] if acc["count"] else None,
        }
    segmenter = meta.get("segmenter") or {}
    return {
        "samrs_stats_version": STATS_VERSION,
        "build": {
            "name": build_name(out),
            "source": table.source,
            "version": table.version,
            "class_order": table.order,
            "segmenter": segmenter.get("name", config.get("segmenter"))
            if isinstance(segmenter, dict)
            else config.get("segmenter"),
            "model": segmenter.get("model", config.get("model"))
            if isinstance(segmenter, dict)
            else config.get("model"),
            "prompt": config.get("prompt"),
            "background": background,
            "config_fingerprint": meta.get("fingerprint", meta.get("config_fingerprint")),
        },
        "images": {
            "total": n_images,
            "by_status": _sorted_counter(status),
            "by_split": _sorted_counter(splits),
            "tiles": n_tiles,
            # SAMRS's scripts skip images without objects: its subset sizes count these
            "with_objects": with_objects,
            "pixels": image_pixels,
            "objects": sum_objects,
            "kept": sum_kept,
            "with_label": n_labels,
            "without_label": no_label,
            "missing_label": missing_labels,
        },
        "instances": {
            "total": n_inst,
            "kept": n_kept,
            "rejected": n_inst - n_kept,
            "reject_reasons": _sorted_counter(reasons),
            "substituted": n_subst,
            "truncated": n_trunc,
            "truncated_kept": n_trunc_kept,
            "difficult": n_diff,
            "difficult_kept": n_diff_kept,
        },
        "errors": {
            "rows": n_err,
            "objects": n_err_objects,
            "by_stage": dict(sorted(stages.items())),
        },
        "pixels": {
            "total": labelled + px["background"] + px["unlabelled"] + px["invalid"],
            "labelled": labelled,
            "background": px["background"],
            "unlabelled": px["unlabelled"],
            "invalid": px["invalid"],
        },
        "classes": classes,
        "objects_per_image": {
            "n_objects": _sorted_counter(n_objects_hist, numeric=True),
            "n_kept": _sorted_counter(n_kept_hist, numeric=True),
            "mean_objects": sum_objects / n_images if n_images else None,
            "mean_kept": sum_kept / n_images if n_images else None,
        },
        "mask_area": {
            "bin_edges": list(AREA_EDGES),
            "kept": area_hist_kept.sum(axis=0).tolist(),
            "rejected": area_hist_rejected.tolist(),
            "empty_kept": empty_kept,
            "empty_rejected": empty_rejected,
            "per_class": {name: area_hist_kept[i].tolist() for i, name in enumerate(table.names)},
        },
        "metrics": metrics,
        "mask_sources": sources,
        "cross_tile": cross_tile,
        "problems": problems,
    }


def mask_source_stats(out: Path, class_names: Sequence[str]) -> dict[str, Any]:
    """How the masks were made: instances per ``mask_source``, overall and per class, the
    fallback reasons (``mask_note``), and the flag (more than :data:`FALLBACK_FLAG_SHARE` of
    the masks not the segmenter's own). Builds written before the column count as
    ``(unknown)``."""
    by_source: Counter[str] = Counter()
    by_class: dict[str, Counter[str]] = {}
    notes: Counter[str] = Counter()
    columns = ["class_id", "mask_source", "mask_note"]
    for batch in iter_batches(out, "instances", columns=columns, batch_size=65536):
        cids = batch.column("class_id").to_pylist()
        srcs = batch.column("mask_source").to_pylist()
        for cid, src, note in zip(cids, srcs, batch.column("mask_note").to_pylist(), strict=True):
            src = src or "(unknown)"
            by_source[src] += 1
            by_class.setdefault(class_names[cid], Counter())[src] += 1
            if src != "segmenter":
                notes[f"{src}: {note or '(no reason)'}"] += 1
    total = sum(by_source.values())
    own = by_source.get("segmenter", 0) + by_source.get("(unknown)", 0)
    share = _share(total - own, total)
    flagged = share > FALLBACK_FLAG_SHARE
    return {
        "total": total,
        "by_source": _sorted_counter(by_source),
        "by_class": {name: _sorted_counter(by_class[name]) for name in sorted(by_class)},
        "notes": _sorted_counter(notes),
        "not_segmenter_share": share,
        "flag_threshold": FALLBACK_FLAG_SHARE,
        "flagged": flagged,
        "flag": (
            f"{100 * share:.1f}% of the masks are not the segmenter's own (fallbacks or "
            f"substitutions, above {100 * FALLBACK_FLAG_SHARE:g}%): "
            + ", ".join(f"{k} {v:,}" for k, v in by_source.items() if k != "segmenter")
        )
        if flagged
        else None,
    }


def cross_tile_stats(out: Path) -> dict[str, Any]:
    """Cross-tile agreement of a tiled build
    (:func:`samrs.outputs.objects.cross_tile_agreement`)."""
    from samrs.outputs.objects import cross_tile_agreement

    try:
        return cross_tile_agreement(out)
    except ValueError as exc:  # a build made before the source columns
        return {"objects": 0, "pairs": 0, "note": str(exc)}


def _share(part: float, total: float) -> float:
    return float(part) / float(total) if total else 0.0


def _row_count(out: Path, table_name: str) -> int:
    """Rows of a manifest table from the Parquet footers (no data read)."""
    import pyarrow.parquet as pq

    from samrs.outputs.manifest import part_paths

    return sum(pq.ParquetFile(p).metadata.num_rows for p in part_paths(out, table_name))


def format_stats(stats: dict[str, Any], top: int = 10) -> str:
    """A short plain-text summary of :func:`compute_stats` results."""
    im, ins, err, px = stats["images"], stats["instances"], stats["errors"], stats["pixels"]
    lines = [
        f"{stats['build']['name']}: {im['total']:,} images ({im['tiles']:,} tiles), "
        f"{ins['total']:,} instances: {ins['kept']:,} kept, {ins['rejected']:,} rejected, "
        f"{ins['substituted']:,} substituted; {err['rows']:,} error rows ({err['objects']:,} objects)",
        f"images with objects: {im['with_objects']:,} (SAMRS's count: it skips the others)",
        f"labelled pixels: {px['labelled']:,} of {px['total']:,} "
        f"({100 * _share(px['labelled'], px['total']):.1f}%)",
    ]
    if ins["reject_reasons"]:
        lines.append(
            "rejected: " + ", ".join(f"{k} {v:,}" for k, v in ins["reject_reasons"].items())
        )
    sources = stats.get("mask_sources")
    if sources and sources["total"]:
        lines.append(
            "mask source: "
            + ", ".join(f"{k} {v:,}" for k, v in sources["by_source"].items())
            + f" ({100 * sources['not_segmenter_share']:.1f}% not the segmenter's own; "
            f"flag above {100 * sources['flag_threshold']:g}%"
            + (": FLAGGED)" if sources["flagged"] else ")")
        )
    cross = stats.get("cross_tile")
    if cross and cross.get("pairs"):
        lines.append(
            f"cross-tile agreement: {cross['objects']:,} objects in 2+ tiles, "
            f"{cross['pairs']:,} pairs, IoU median {cross['median_iou']:.3f}, "
            f"5% {cross['p05_iou']:.3f}, min {cross['min_iou']:.3f}"
        )
    classes = sorted(stats["classes"], key=lambda c: (-c["instances"], c["id"]))
    lines.append(f"top classes (instances, share, pixel share), of {len(classes)}:")
    width = max((len(c["name"]) for c in classes[:top]), default=0)
    for c in classes[:top]:
        if c["instances"] or c["pixels"]:
            lines.append(
                f"  {c['name']:<{width}}  {c['instances']:>9,}  {100 * c['instances_share']:5.1f}%"
                f"  {100 * c['pixels_share']:5.1f}%"
            )
    lines += [f"problem: {p}" for p in stats.get("problems", [])]
    return "\n".join(lines)


def dumps(stats: dict[str, Any]) -> str:
    """Canonical JSON text of statistics (stable key order, no NaN)."""
    return json.dumps(stats, indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# ======================================================================================
# Report: plots and HTML
# ======================================================================================

PLOTS = (
    ("classes_instances", "Instances per class"),
    ("classes_pixels", "Pixels per class"),
    ("mask_area", "Mask areas"),
    ("mask_area_per_class", "Mask areas per class"),
    ("objects_per_image", "Objects per image"),
    ("metrics", "Mask quality scores"),
)
"""File stem and title of every plot of the report, in report order."""


def unique_names(names: Sequence[str]) -> list[str]:
    """Build labels made unique by numbering repeats (``SOTA``, ``SOTA (2)``)."""
    seen: Counter[str] = Counter()
    result = []
    for n in names:
        seen[n] += 1
        result.append(n if seen[n] == 1 else f"{n} ({seen[n]})")
    return result


def write_report(
    out: str | Path,
    stats: dict[str, Any],
    compare: Sequence[tuple[str, dict[str, Any]]] | None = None,
    gallery: int = GALLERY_SAMPLES,
) -> dict[str, Path]:
    """Write ``OUT/stats/stats.json``, the plots and ``OUT/stats/report.html``.

    Args:
        out: the build folder the report belongs to.
        stats: its :func:`compute_stats` result (written to ``stats.json`` as is).
        compare: other builds ``(label, stats)`` drawn side by side in plots and tables.
        gallery: sample images of ``out`` drawn with their labels in the report, besides
            the worst masks of ``samrs audit`` and their images (0: no gallery).

    Returns:
        Written files by name: ``stats``, ``report`` and each plot stem of :data:`PLOTS`.
    """
    folder = Path(out) / STATS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    written["stats"] = _write_text(folder / "stats.json", dumps(stats))
    names = unique_names([stats["build"]["name"], *(name for name, _ in compare or [])])
    builds = list(zip(names, [stats, *(s for _, s in compare or [])], strict=True))
    pngs: dict[str, bytes] = _plots(builds)
    for stem, data in pngs.items():
        path = folder / f"{stem}.png"
        path.write_bytes(data)
        written[stem] = path
    extra = _gallery_html(Path(out), gallery) if gallery > 0 else ""
    written["report"] = _write_text(folder / "report.html", _html(builds, pngs, extra))
    return written


def _png_data(rgb: np.ndarray, longest: int | None = None) -> str:
    """A ``data:`` URI of an RGB array as PNG, shrunk to ``longest`` pixels if larger."""
    import io

    from PIL import Image

    img = Image.fromarray(rgb)
    if longest is not None and max(img.size) > longest:
        scale = longest / max(img.size)
        size = (max(round(img.width * scale), 1), max(round(img.height * scale), 1))
        img = img.resize(size, Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _sample_images(out: Path, n: int) -> list[str]:
    """``n`` images with objects, spread evenly over the manifest order (deterministic)."""
    ids = [
        row["image_id"]
        for batch in iter_batches(out, "images", columns=["image_id", "status"])
        for row in batch.to_pylist()
        if row["status"] == "ok"
    ]
    if not ids or n <= 0:
        return []
    picks = np.unique(np.linspace(0, len(ids) - 1, min(n, len(ids))).round().astype(int))
    return [ids[int(i)] for i in picks]


def _gallery_html(out: Path, samples: int, worst: int = GALLERY_WORST) -> str:
    """The report's "Gallery" and "Worst masks" sections, linked both ways.

    Gallery figures (``#img-K``) draw each image with its label and outlines (as
    ``samrs show``); the worst masks per metric (``#inst-ID``, from :func:`samrs.analysis.audit.
    compute_audit`) come as a contact sheet and a table linking to their image, whose
    caption links back to them.
    """
    from samrs.analysis.audit import compute_audit, contact_sheet
    from samrs.analysis.render import RenderError
    from samrs.analysis.show import render_image

    esc = html.escape
    audit = compute_audit(out, worst=worst)
    worst_rows = {m: rows for m, rows in audit["worst"].items() if rows}
    images = _sample_images(out, samples)
    for rows in worst_rows.values():
        images += [r["image_id"] for r in rows if r["image_id"] not in images]
    anchor = {image_id: f"img-{k}" for k, image_id in enumerate(images)}
    flagged: dict[str, list[int]] = {}
    for rows in worst_rows.values():
        for r in rows:
            ids = flagged.setdefault(r["image_id"], [])
            if r["instance_id"] not in ids:
                ids.append(int(r["instance_id"]))

    parts = ["<h2 id='gallery'>Gallery</h2>"]
    if not images:
        parts.append("<p class='none'>none (no image with objects)</p>")
    for image_id in images:
        try:
            src = _png_data(render_image(out, image_id), THUMBNAIL)
            img = f"<img alt='{esc(image_id)}' src='{src}'>"
        except (RenderError, OSError, ValueError) as exc:
            img = f"<p class='p'>{esc(str(exc))}</p>"
        links = ", ".join(f"<a href='#inst-{i}'>#{i}</a>" for i in flagged.get(image_id, []))
        caption = esc(image_id) + (f"<br>worst masks: {links}" if links else "")
        parts.append(
            f"<figure id='{anchor[image_id]}'>{img}<figcaption>{caption}</figcaption></figure>"
        )

    parts.append("<h2 id='worst'>Worst masks (samrs audit)</h2>")
    if not worst_rows:
        parts.append("<p class='none'>none</p>")
    for metric, rows in worst_rows.items():
        ids = [int(r["instance_id"]) for r in rows]
        sheet = _png_data(contact_sheet(out, ids, metric))
        parts.append(f"<h3>lowest {esc(metric)}</h3><img alt='worst {esc(metric)}' src='{sheet}'>")
        table_rows = [
            [
                f"<span id='inst-{r['instance_id']}'>{r['instance_id']}</span>",
                f"<a href='#{anchor[r['image_id']]}'>{esc(r['image_id'])}</a>",
                esc(r["class_name"]),
                _fmt(r[metric]),
                "kept" if r["kept"] else esc(f"rejected: {r['reject_reason']}"),
            ]
            for r in rows
        ]
        parts.append(_table(["instance", "image", "class", metric, "verdict"], table_rows, 3))
    return "\n".join(parts)


def _write_text(path: Path, text: str) -> Path:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def _class_names(builds: Sequence[tuple[str, dict[str, Any]]]) -> list[str]:
    names: list[str] = []
    for _, s in builds:
        for c in s["classes"]:
            if c["name"] not in names:
                names.append(c["name"])
    return names


def _by_class(stats: dict[str, Any], key: str) -> dict[str, float]:
    return {c["name"]: c[key] for c in stats["classes"]}


def _human(n: float) -> str:
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= div:
            v = n / div
            return f"{v:.0f}{unit}" if v >= 10 or v == int(v) else f"{v:.1f}{unit}"
    return f"{n:g}"


def _plots(builds: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, bytes]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    plots: dict[str, bytes] = {}
    with (
        plt.style.context("default"),
        matplotlib.rc_context(
            {
                "font.size": 9,
                "axes.titlesize": 11,
                "axes.grid": True,
                "grid.alpha": 0.3,
                "svg.hashsalt": "samrs",
            }
        ),
    ):
        plots["classes_instances"] = _fig_bytes(
            _class_bars(plt, builds, "instances", "instances (kept masks)")
        )
        plots["classes_pixels"] = _fig_bytes(_class_bars(plt, builds, "pixels", "labelled pixels"))
        plots["mask_area"] = _fig_bytes(_area_plot(plt, builds))
        plots["mask_area_per_class"] = _fig_bytes(_area_heatmap(plt, builds[0]))
        plots["objects_per_image"] = _fig_bytes(_objects_plot(plt, builds))
        plots["metrics"] = _fig_bytes(_metrics_plot(plt, builds))
    return plots


def _fig_bytes(fig: Any) -> bytes:
    import io

    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


HATCHES = ("", "//", "..", "xx", "\\\\", "++")
"""Hatch of each build's bars when several share a plot (bars keep their class colours)."""


def _grouped_bars(
    ax: Any,
    n_groups: int,
    series: Sequence[tuple[str, Sequence[float] | npt.NDArray[np.floating[Any]]]],
    colors: Sequence[Sequence[int]] | None = None,
) -> None:
    """Bars of each series side by side; ``colors``: one RGB per group (the class palette),
    builds told apart by hatching; without, one colour per series."""
    n = max(len(series), 1)
    width = 0.8 / n
    x = np.arange(n_groups)
    rgb = [tuple(v / 255 for v in c) for c in colors] if colors is not None else None
    for j, (name, values) in enumerate(series):
        ax.bar(
            x - 0.4 + width * (j + 0.5),
            values,
            width=width,
            label=name,
            color=rgb if rgb is not None else f"C{j}",
            hatch=HATCHES[j % len(HATCHES)] if rgb is not None else None,
            edgecolor="#333" if rgb is not None else None,
            linewidth=0.4 if rgb is not None else 0,
        )
    if len(series) > 1:
        if rgb is not None:
            from matplotlib.patches import Patch

            handles = [
                Patch(facecolor="white", edgecolor="#333", hatch=HATCHES[j % len(HATCHES)],
                      label=name)
                for j, (name, _) in enumerate(series)
            ]  # fmt: skip
            ax.legend(handles=handles, fontsize=8)
        else:
            ax.legend(fontsize=8)
    from matplotlib.ticker import MaxNLocator

    ax.yaxis.set_major_locator(MaxNLocator(integer=True))


def _class_colors(builds: Sequence[tuple[str, dict[str, Any]]]) -> dict[str, Sequence[int]]:
    """Each class's palette colour (the first build that has the class wins; grey when
    the statistics carry none)."""
    return {
        c["name"]: c.get("color") or (128, 128, 128)
        for _, s in reversed(builds)
        for c in s["classes"]
    }


def _class_bars(
    plt: Any, builds: Sequence[tuple[str, dict[str, Any]]], key: str, ylabel: str
) -> Any:
    """Bars per class in the build's palette colours, largest first: builds side by side
    (hatched) when they share a class table, else one panel per build (SOTA, SIOR and FAST
    have different classes: grouping them leaves gaps)."""
    title = f"{'Instances' if key == 'instances' else 'Pixels'} per class"
    tables = [[c["name"] for c in s["classes"]] for _, s in builds]
    shared = all(t == tables[0] for t in tables)
    panels = [(None, builds)] if shared else [(b[0], [b]) for b in builds]
    widest = max(len(_class_names(group)) for _, group in panels)
    groups = len(builds) if shared else 1
    colors = _class_colors(builds)
    fig, axes = plt.subplots(
        len(panels),
        1,
        figsize=(max(6.0, 0.32 * widest * max(1, groups * 0.7) + 2), 4.2 + 3.4 * (len(panels) - 1)),
        squeeze=False,
    )
    for row, (name, group) in enumerate(panels):
        ax = axes[row][0]
        first = _by_class(group[0][1], key)
        # largest first (by the first build), ties in class-table order
        names = sorted(_class_names(group), key=lambda n: -first.get(n, 0))
        series = [(b, [_by_class(s, key).get(n, 0) for n in names]) for b, s in group]
        _grouped_bars(ax, len(names), series, [colors[n] for n in names])
        ax.set_xticks(np.arange(len(names)))
        ax.set_xticklabels(names, rotation=55, ha="right")
        values = [v for _, vs in series for v in vs if v > 0]
        if values and max(values) / max(min(values), 1) > 100:
            ax.set_yscale("log")
        ax.set_ylabel(ylabel)
        ax.set_title(title if name is None else f"{title}: {name}")
        ax.grid(axis="x", visible=False)
    axes[-1][0].set_xlabel("class")
    fig.tight_layout()
    return fig


def _nonzero_range(rows: Sequence[Sequence[float]]) -> tuple[int, int]:
    nz = [i for r in rows for i, v in enumerate(r) if v]
    return (min(nz), max(nz)) if nz else (0, 0)


def _area_plot(plt: Any, builds: Sequence[tuple[str, dict[str, Any]]]) -> Any:
    fig, ax = plt.subplots(figsize=(8, 4))
    rows = [s["mask_area"]["kept"] for _, s in builds]
    lo, hi = _nonzero_range(rows)
    edges = builds[0][1]["mask_area"]["bin_edges"]
    compare = len(builds) > 1
    series = []
    for b, s in builds:
        counts = np.asarray(s["mask_area"]["kept"][lo : hi + 1], dtype=np.float64)
        total = max(float(sum(s["mask_area"]["kept"])), 1.0)
        series.append((b, counts / total * 100 if compare else counts))
    _grouped_bars(ax, hi - lo + 1, series)
    ax.set_xticks(np.arange(hi - lo + 1))
    ax.set_xticklabels(
        [f"{_human(edges[i])}–{_human(2 * edges[i])}" for i in range(lo, hi + 1)],
        rotation=45,
        ha="right",
    )
    ax.set_xlabel("mask area (pixels, log2 bins)")
    ax.set_ylabel("share of kept masks (%)" if compare else "kept masks")
    ax.set_title("Mask area distribution")
    ax.grid(axis="x", visible=False)
    return fig


def _area_heatmap(plt: Any, build: tuple[str, dict[str, Any]]) -> Any:
    name, s = build
    per_class = s["mask_area"]["per_class"]
    classes = [c for c in per_class if sum(per_class[c])] or list(per_class)[:1]
    rows = (
        np.asarray([per_class[c] for c in classes], dtype=np.float64)
        if classes
        else np.zeros((1, 1))
    )
    lo, hi = _nonzero_range(rows.tolist())
    rows = rows[:, lo : hi + 1]
    frac = rows / np.maximum(rows.sum(axis=1, keepdims=True), 1) * 100
    edges = s["mask_area"]["bin_edges"]
    fig, ax = plt.subplots(
        figsize=(max(6.0, 0.5 * (hi - lo + 1) + 3), max(2.5, 0.28 * len(classes) + 1.5))
    )
    im = ax.imshow(frac, aspect="auto", cmap="viridis", vmin=0, interpolation="nearest")
    ax.set_yticks(np.arange(len(classes)))
    ax.set_yticklabels(classes)
    ax.set_xticks(np.arange(hi - lo + 1))
    ax.set_xticklabels([_human(edges[i]) for i in range(lo, hi + 1)], rotation=45, ha="right")
    ax.set_xlabel("mask area (pixels, lower bin edge, log2 bins)")
    ax.set_title(f"Mask area per class ({name}; % of the class's kept masks)")
    ax.grid(False)
    fig.colorbar(im, ax=ax, label="% of class")
    return fig


def _objects_plot(plt: Any, builds: Sequence[tuple[str, dict[str, Any]]]) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    compare = len(builds) > 1
    for ax, key, title in zip(
        axes, ("n_objects", "n_kept"), ("objects read", "kept masks"), strict=True
    ):
        dists = [{int(v): c for v, c in s["objects_per_image"][key].items()} for _, s in builds]
        top = max((max(d) for d in dists if d), default=0)
        step = max(1, math.ceil((top + 1) / 40))
        n_bins = top // step + 1
        series = []
        for (b, _), d in zip(builds, dists, strict=True):
            counts = np.zeros(n_bins)
            for v, c in d.items():
                counts[v // step] += c
            total = max(counts.sum(), 1.0)
            series.append((b, counts / total * 100 if compare else counts))
        _grouped_bars(ax, n_bins, series)
        ticks = np.arange(0, n_bins, max(1, n_bins // 12))
        ax.set_xticks(ticks)
        ax.set_xticklabels(
            [str(t * step) if step == 1 else f"{t * step}–{t * step + step - 1}" for t in ticks],
            rotation=45,
            ha="right",
        )
        ax.set_xlabel(f"{title} per image")
        ax.set_ylabel("share of images (%)" if compare else "images")
        ax.set_title(f"Objects per image ({title})")
        ax.grid(axis="x", visible=False)
    fig.tight_layout()
    return fig


def _metrics_plot(plt: Any, builds: Sequence[tuple[str, dict[str, Any]]]) -> Any:
    fig, axes = plt.subplots(2, 2, figsize=(10, 6.5))
    compare = len(builds) > 1
    for ax, m in zip(axes.ravel(), METRICS, strict=True):
        edges = np.asarray(METRIC_EDGES)
        centres = (edges[:-1] + edges[1:]) / 2
        width = edges[1] - edges[0]
        any_values = False
        for j, (b, s) in enumerate(builds):
            d = s["metrics"][m]
            kept, rej = np.asarray(d["kept"], float), np.asarray(d["rejected"], float)
            if kept.sum() + rej.sum() == 0:
                continue
            any_values = True
            if compare:
                total = kept + rej
                ax.step(
                    edges,
                    np.append(total, total[-1]) / total.sum() * 100,
                    where="post",
                    label=b,
                    color=f"C{j}",
                )
            else:
                ax.bar(centres, kept, width=width * 0.95, label="kept", color="C0")
                ax.bar(centres, rej, width=width * 0.95, bottom=kept, label="rejected", color="C3")
        if not any_values:
            ax.text(
                0.5,
                0.5,
                "no values\n(segmenter without this score)",
                ha="center",
                va="center",
                transform=ax.transAxes,
            )
        else:
            ax.legend(fontsize=8)
        ax.set_xlim(0, 1)
        ax.set_xlabel(m)
        ax.set_ylabel("share of masks (%)" if compare else "masks")
        ax.set_title(f"{m} distribution")
    fig.tight_layout()
    return fig


# --- HTML --------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2em auto;max-width:1200px;color:#222}
h1{font-size:1.6em}h2{font-size:1.25em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}th{background:#f3f3f3}
td.l,th.l{text-align:left}img{max-width:100%;border:1px solid #eee;margin:.5em 0}
.sw{display:inline-block;width:.9em;height:.9em;border:1px solid #888;vertical-align:middle;margin-right:4px}
.p{color:#a40}.none{color:#777;font-style:italic}
figure{display:inline-block;margin:.4em;vertical-align:top;max-width:400px}figure img{max-width:384px}
figcaption{font-size:.85em}:target{outline:3px solid #f80}
"""


def _fmt(v: Any) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, int):
        return f"{v:,}"
    return html.escape(str(v))


def _pct(v: float) -> str:
    return f"{100 * v:.2f}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], left: int = 1) -> str:
    """An HTML table; cells are already escaped; the first ``left`` columns align left."""
    h = "".join(
        f"<th class='l'>{c}</th>" if i < left else f"<th>{c}</th>" for i, c in enumerate(header)
    )
    body = "".join(
        "<tr>"
        + "".join(
            f"<td class='l'>{c}</td>" if i < left else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    if not rows:
        body = f"<tr><td class='l none' colspan='{len(header)}'>none</td></tr>"
    return f"<table><tr>{h}</tr>{body}</table>"


def _keyed_rows(
    builds: Sequence[tuple[str, dict[str, Any]]], get: Callable[[dict[str, Any]], dict[str, Any]]
) -> list[list[str]]:
    keys: list[str] = []
    for _, s in builds:
        for key in get(s):
            if key not in keys:
                keys.append(key)
    return [[html.escape(key)] + [_fmt(get(s).get(key, 0)) for _, s in builds] for key in keys]


def _html(
    builds: Sequence[tuple[str, dict[str, Any]]], pngs: dict[str, bytes], gallery: str = ""
) -> str:
    esc = html.escape
    names = [esc(b) for b, _ in builds]
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>samrs stats: {' vs '.join(names)}</title><style>{_CSS}</style></head><body>",
        f"<h1>samrs statistics: {' vs '.join(names)}</h1>",
    ]
    if gallery:
        parts.append("<p><a href='#gallery'>gallery</a> · <a href='#worst'>worst masks</a></p>")
    summary_rows: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
        (
            "source",
            lambda s: (
                f"{s['build']['source']} {s['build']['version']} ({s['build']['class_order']})"
            ),
        ),
        ("segmenter", lambda s: s["build"]["segmenter"]),
        ("model", lambda s: s["build"]["model"]),
        ("prompt", lambda s: s["build"]["prompt"]),
        ("images", lambda s: s["images"]["total"]),
        ("tiles", lambda s: s["images"]["tiles"]),
        ("objects read (images)", lambda s: s["images"]["objects"]),
        ("instances", lambda s: s["instances"]["total"]),
        ("kept", lambda s: s["instances"]["kept"]),
        ("rejected", lambda s: s["instances"]["rejected"]),
        ("substituted", lambda s: s["instances"]["substituted"]),
        (
            "truncated (kept)",
            lambda s: f"{s['instances']['truncated']:,} ({s['instances']['truncated_kept']:,})",
        ),
        (
            "difficult (kept)",
            lambda s: f"{s['instances']['difficult']:,} ({s['instances']['difficult_kept']:,})",
        ),
        ("error rows (objects)", lambda s: f"{s['errors']['rows']:,} ({s['errors']['objects']:,})"),
        ("mean objects / image", lambda s: s["objects_per_image"]["mean_objects"]),
        ("mean kept / image", lambda s: s["objects_per_image"]["mean_kept"]),
        (
            "labelled pixels",
            lambda s: (
                f"{s['pixels']['labelled']:,} ({_pct(_share(s['pixels']['labelled'], s['pixels']['total']))})"
            ),
        ),
        ("unlabelled pixels", lambda s: s["pixels"]["unlabelled"]),
        ("background pixels", lambda s: s["pixels"]["background"]),
    ]
    parts.append("<h2>Summary</h2>")
    parts.append(
        _table(
            ["", *names],
            [[esc(label)] + [_fmt(f(s)) for _, s in builds] for label, f in summary_rows],
        )
    )

    parts.append("<h2>Classes</h2>")
    class_names = _class_names(builds)
    colors = {c["name"]: c["color"] for _, s in reversed(builds) for c in s["classes"]}
    header = ["class"]
    for b in names:
        header += [f"{b}<br>instances", "share", "pixels", "share", "rejected"]
    rows = []
    for n in class_names:
        r, g, bl = colors[n]
        row = [f"<span class='sw' style='background:rgb({r},{g},{bl})'></span>{esc(n)}"]
        for _, s in builds:
            c = next((c for c in s["classes"] if c["name"] == n), None)
            if c is None:
                row += ["–"] * 5
            else:
                row += [
                    _fmt(c["instances"]),
                    _pct(c["instances_share"]),
                    _fmt(c["pixels"]),
                    _pct(c["pixels_share"]),
                    _fmt(c["rejected"]),
                ]
        rows.append(row)
    parts.append(_table(header, rows))

    parts.append("<h2>Rejected masks by reason</h2>")
    parts.append(
        _table(["reason", *names], _keyed_rows(builds, lambda s: s["instances"]["reject_reasons"]))
    )
    parts.append(
        f"<h2>Mask sources (flag above {100 * FALLBACK_FLAG_SHARE:g}% not the segmenter's)</h2>"
    )
    parts.append(
        _table(
            ["mask source", *names],
            [
                *_keyed_rows(builds, lambda s: (s.get("mask_sources") or {}).get("by_source", {})),
                [
                    "not the segmenter's own",
                    *(
                        _pct((s.get("mask_sources") or {}).get("not_segmenter_share", 0.0))
                        + (" FLAGGED" if (s.get("mask_sources") or {}).get("flagged") else "")
                        for _, s in builds
                    ),
                ],
            ],
        )
    )
    parts.append(
        _table(
            ["fallback / substitution reason", *names],
            _keyed_rows(builds, lambda s: (s.get("mask_sources") or {}).get("notes", {})),
        )
    )
    class_rows = []
    for b, s in builds:
        for cname, counts in (s.get("mask_sources") or {}).get("by_class", {}).items():
            class_rows.append(
                [esc(cname), esc(b), ", ".join(f"{k} {v:,}" for k, v in counts.items())]
            )
    parts.append(_table(["class", "build", "mask sources"], class_rows, left=3))
    if any(s.get("cross_tile") for _, s in builds):
        parts.append(
            "<h2>Cross-tile agreement (IoU of one object's masks in overlapping tiles)</h2>"
        )
        cross_rows = []
        for b, s in builds:
            c = s.get("cross_tile") or {}
            cross_rows.append(
                [
                    esc(b),
                    *(
                        _fmt(c.get(k))
                        for k in ("objects", "pairs", "median_iou", "p05_iou", "min_iou")
                    ),
                ]
            )
        parts.append(
            _table(["build", "objects in 2+ tiles", "pairs", "median", "5%", "min"], cross_rows)
        )
    parts.append("<h2>Errors by stage (rows)</h2>")
    parts.append(
        _table(
            ["stage", *names],
            _keyed_rows(
                builds, lambda s: {k: v["rows"] for k, v in s["errors"]["by_stage"].items()}
            ),
        )
    )
    parts.append("<h2>Errors by stage (objects)</h2>")
    parts.append(
        _table(
            ["stage", *names],
            _keyed_rows(
                builds, lambda s: {k: v["objects"] for k, v in s["errors"]["by_stage"].items()}
            ),
        )
    )
    parts.append("<h2>Images by status and split</h2>")
    parts.append(
        _table(["status", *names], _keyed_rows(builds, lambda s: s["images"]["by_status"]))
    )
    parts.append(_table(["split", *names], _keyed_rows(builds, lambda s: s["images"]["by_split"])))

    parts.append("<h2>Mask quality metrics</h2>")
    metric_rows = []
    for m in METRICS:
        for b, s in builds:
            d = s["metrics"][m]
            metric_rows.append(
                [
                    esc(m),
                    esc(b),
                    _fmt(d["count"]),
                    _fmt(d["missing"]),
                    _fmt(d["mean"]),
                    _fmt(d["min"]),
                    _fmt(d["max"]),
                ]
            )
    parts.append(
        _table(["metric", "build", "values", "missing", "mean", "min", "max"], metric_rows, left=2)
    )

    for stem, title in PLOTS:
        data = base64.b64encode(pngs[stem]).decode("ascii")
        parts.append(
            f"<h2>{esc(title)}</h2><img alt='{esc(title)}' src='data:image/png;base64,{data}'>"
        )

    if gallery:
        parts.append(gallery)
    problems = [(b, p) for b, s in builds for p in s.get("problems", [])]
    if problems:
        parts.append("<h2>Problems</h2><ul>")
        parts += [f"<li class='p'>{esc(b)}: {esc(p)}</li>" for b, p in problems]
        parts.append("</ul>")
    parts.append("</body></html>\n")
    return "\n".join(parts)
