"""Mask quality audit of a build: per-class metric distributions, suspicious classes and
images, contact sheets of the worst masks, and suggested filter thresholds.

The per-mask metrics are the instances manifest's ``score`` (SAM's predicted IoU),
``stability``, ``rbox_iou`` (IoU of the mask with its rasterized rotated box) and
``inside_fraction`` (share of the mask inside its box). ``score`` and ``stability`` are null
for segmenters without them (``box``, ``grabcut``): such metrics are skipped with a note.

Suggested thresholds (see :func:`suggest_threshold`) separate *bad* masks from good ones,
where *bad* is defined from geometry alone by :class:`BadRule`: a mask that is empty, falls
apart into many pieces, or covers little of its rotated box.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
from PIL import Image

from samrs.analysis.render import (
    Canvas,
    RenderError,
    blend,
    decode_mask,
    font,
    mask_contours,
    read_region,
    save_png,
)
from samrs.analysis.stats import build_name, mask_source_stats
from samrs.outputs.manifest import iter_batches, read_table
from samrs.outputs.metadata import build_class_table, build_config, read_build_metadata
from samrs.quality import UNIT_METRICS

AUDIT_DIR = "audit"
METRICS = UNIT_METRICS
"""Audited per-mask metrics (:data:`samrs.quality.UNIT_METRICS`); low values are bad for all."""

THRESHOLD_METRICS = ("score", "stability", "inside_fraction")
"""Metrics that get a suggested threshold (``rbox_iou`` defines the bad rule itself)."""

QUANTILES = (0.0, 0.05, 0.25, 0.5, 0.75, 0.95, 1.0)

# contact sheet layout (pixels)
CELL = 224
LABEL_HEIGHT = 72
TITLE_HEIGHT = 44
GAP = 6
COLUMNS = 4
_LINE = 13

MASK_COLOR = (255, 0, 255)
MASK_OUTLINE = (255, 150, 255)
RBOX_COLOR = (255, 230, 0)
PROMPT_COLOR = (0, 230, 255)
POINT_COLOR = (255, 40, 40)


@dataclass(frozen=True)
class BadRule:
    """When a mask counts as *bad* (used to suggest thresholds for the other metrics).

    A mask is bad when it is empty (``n_components == 0``), covers its rotated box poorly
    (``rbox_iou < min_rbox_iou``: a fragment of the object, or a mask spilling far beyond
    it), or falls apart (``n_components > max_components``).
    """

    min_rbox_iou: float = 0.5
    max_components: int = 3

    def apply(self, rbox_iou: np.ndarray, n_components: np.ndarray) -> np.ndarray:
        """Boolean array: which masks are bad."""
        return (
            (n_components <= 0)
            | (rbox_iou < self.min_rbox_iou)
            | (n_components > self.max_components)
        )

    def describe(self) -> str:
        """One sentence for reports."""
        return (
            "a mask is bad when it is empty (n_components == 0), covers its rotated box poorly "
            f"(rbox_iou < {self.min_rbox_iou:g}: a fragment, or a spill), or falls apart "
            f"(n_components > {self.max_components})"
        )


THRESHOLD_RULE = (
    "for each metric, masks with a value below the threshold t are flagged; t maximises "
    "Youden's J = (share of bad masks flagged) - (share of good masks flagged), and lies "
    "midway between the two observed values it separates. 'mostly bad below' is the largest "
    "such t at which at least half of the flagged masks are bad."
)


def _round(v: float | None, digits: int = 6) -> float | None:
    return None if v is None or not math.isfinite(v) else float(round(float(v), digits))


def suggest_threshold(values: np.ndarray, bad: np.ndarray) -> dict[str, Any]:
    """The threshold on ``values`` that best separates ``bad`` masks (flag ``values < t``).

    Args:
        values: one metric per mask (NaN = no value, ignored).
        bad: which masks are bad (same length).

    Returns:
        ``threshold`` (None when nothing separates), ``youden_j``, ``flags_bad`` and
        ``flags_good`` (shares flagged), ``precision`` (bad share among flagged), ``flagged``,
        ``mostly_bad_below`` and a ``note``.
    """
    values = np.asarray(values, dtype=np.float64)
    bad = np.asarray(bad, dtype=bool)
    finite = np.isfinite(values)
    v, b = values[finite], bad[finite]
    n_bad, n_good = int(b.sum()), int((~b).sum())
    result: dict[str, Any] = {
        "threshold": None, "youden_j": None, "flags_bad": None, "flags_good": None,
        "precision": None, "flagged": 0, "mostly_bad_below": None, "bad": n_bad, "good": n_good,
        "note": None,
    }  # fmt: skip
    if n_bad == 0 or n_good == 0:
        result["note"] = "no bad masks" if n_bad == 0 else "no good masks"
        return result
    order = np.argsort(v, kind="stable")
    v, b = v[order], b[order]
    uniq, first = np.unique(v, return_index=True)
    cum_bad = np.concatenate([[0], np.cumsum(b)])[first]  # masks with value < uniq[i]
    cum_all = first
    cum_good = cum_all - cum_bad
    j = cum_bad / n_bad - cum_good / n_good
    i = int(np.argmax(j))  # first maximum: the smallest such threshold
    if j[i] <= 0:
        result["note"] = "no threshold flags more bad masks than good ones"
        return result
    lo, hi = float(uniq[i - 1]), float(uniq[i])
    t = round((lo + hi) / 2, 3)
    if not lo < t <= hi:
        t = hi
    flagged = int(cum_all[i])
    result.update(
        threshold=_round(t),
        youden_j=_round(float(j[i])),
        flags_bad=_round(cum_bad[i] / n_bad),
        flags_good=_round(cum_good[i] / n_good),
        precision=_round(cum_bad[i] / flagged),
        flagged=flagged,
    )
    mostly = [k for k in range(1, len(uniq)) if cum_all[k] and cum_bad[k] * 2 >= cum_all[k]]
    if mostly:
        k = mostly[-1]
        lo_k, hi_k = float(uniq[k - 1]), float(uniq[k])
        m = round((lo_k + hi_k) / 2, 3)
        result["mostly_bad_below"] = _round(m if lo_k < m <= hi_k else hi_k)
    if j[i] < 0.2:
        result["note"] = "weak separation: this metric says little about bad masks here"
    return result


def _quantiles(v: np.ndarray) -> dict[str, Any]:
    if v.size == 0:
        return {"count": 0}
    q = np.quantile(v.astype(np.float64), QUANTILES)
    out: dict[str, Any] = {"count": int(v.size), "mean": _round(float(v.mean()))}
    for p, x in zip(QUANTILES, q, strict=True):
        out[f"q{round(p * 100):02d}"] = _round(float(x))
    return out


def _numbers(
    out: Path,
) -> tuple[dict[str, np.ndarray], Counter[str], Counter[str], dict[str, Counter[str]]]:
    """The numeric instance columns (no masks), and per-image rejection tallies."""
    cols = [
        "instance_id",
        "image_id",
        "class_id",
        "kept",
        "reject_reason",
        "n_components",
        "area",
        "source_file",
        "source_line",
        *METRICS,
    ]
    parts: dict[str, list[np.ndarray]] = {
        c: [] for c in ("instance_id", "class_id", "kept", "n_components", "area", *METRICS)
    }
    source_objects: list[np.ndarray] = []
    objects: dict[tuple[str, int], int] = {}
    rejected: Counter[str] = Counter()
    total: Counter[str] = Counter()
    reasons: dict[str, Counter[str]] = {}
    for batch in iter_batches(out, "instances", columns=cols, batch_size=65536):
        kept = np.asarray(batch.column("kept").to_numpy(zero_copy_only=False), dtype=bool)
        for name in parts:
            if name == "kept":
                parts[name].append(kept)
            elif name in METRICS:
                parts[name].append(
                    np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.float64)
                )
            else:
                parts[name].append(
                    np.asarray(batch.column(name).to_numpy(zero_copy_only=False), dtype=np.int64)
                )
        # one key per source object: the copies of an object in overlapping tiles share it
        lines = batch.column("source_line").to_pylist()
        keys = [
            -1 - iid if line is None else objects.setdefault((file, int(line)), len(objects))
            for iid, file, line in zip(
                batch.column("instance_id").to_pylist(),
                batch.column("source_file").to_pylist(),
                lines,
                strict=True,
            )
        ]
        source_objects.append(np.asarray(keys, dtype=np.int64))
        ids = batch.column("image_id").to_pylist()
        why = batch.column("reject_reason").to_pylist()
        total.update(ids)
        for image_id, k, r in zip(ids, kept, why, strict=True):
            if not k:
                rejected[image_id] += 1
                reasons.setdefault(image_id, Counter())[r or "(no reason)"] += 1
    empty = {"kept": np.zeros(0, bool)}
    arrays = {
        name: np.concatenate(p)
        if p
        else empty.get(name, np.zeros(0, np.float64 if name in METRICS else np.int64))
        for name, p in parts.items()
    }
    arrays["source_object"] = (
        np.concatenate(source_objects) if source_objects else np.zeros(0, np.int64)
    )
    return arrays, rejected, total, reasons


def _worst(values: np.ndarray, ids: np.ndarray, objects: np.ndarray, n: int) -> list[int]:
    """Ids of the ``n`` lowest finite values (ties by id), one per source object.

    The copies of an object in overlapping tiles would otherwise fill a contact sheet with
    the same object; the worst copy stands for them.
    """
    idx = np.flatnonzero(np.isfinite(values))
    idx = idx[np.lexsort((ids[idx], values[idx]))]
    chosen: list[int] = []
    seen: set[int] = set()
    for i in idx:
        key = int(objects[i])
        if key in seen:
            continue
        seen.add(key)
        chosen.append(int(ids[i]))
        if len(chosen) == n:
            break
    return chosen


def compute_audit(
    out: str | Path,
    worst: int = 16,
    kept_only: bool = False,
    rule: BadRule | None = None,
    top: int = 20,
) -> dict[str, Any]:
    """Quality numbers of a build (JSON-ready); no files are written.

    Args:
        out: the build folder.
        worst: how many worst instances to list per metric (one per source object: the
            copies of an object in overlapping tiles count once, by their worst copy).
        kept_only: audit only kept masks (default: kept and rejected, labelled as such).
        rule: what counts as a bad mask (default :class:`BadRule`).
        top: how many classes / images to list in rankings.
    """
    out = Path(out)
    rule = rule or BadRule()
    meta = read_build_metadata(out)
    table = build_class_table(meta)
    config = build_config(meta)
    cols, rejected, per_image, reasons = _numbers(out)
    scope = cols["kept"] if kept_only else np.ones(len(cols["kept"]), dtype=bool)
    sel = {name: arr[scope] for name, arr in cols.items()}
    bad = rule.apply(sel["rbox_iou"], sel["n_components"])
    n = int(scope.sum())
    notes: list[str] = []

    metrics: dict[str, Any] = {}
    worst_lists: dict[str, list[int]] = {}
    for m in METRICS:
        v = sel[m]
        finite = np.isfinite(v)
        entry: dict[str, Any] = {"values": int(finite.sum()), "missing": int((~finite).sum())}
        if not finite.any():
            entry["note"] = (
                f"no {m} values (segmenter {config.get('segmenter')!r} gives none)"
                if n
                else "no instances"
            )
            if n:
                notes.append(f"{m}: skipped, {entry['note']}")
            metrics[m] = entry
            continue
        if entry["missing"]:
            notes.append(f"{m}: {entry['missing']} masks without a value are left out")
        entry["overall"] = _quantiles(v[finite])
        entry["kept"] = _quantiles(v[finite & sel["kept"]])
        entry["rejected"] = _quantiles(v[finite & ~sel["kept"]])
        per_class = {}
        for cid in np.unique(sel["class_id"][finite]):
            per_class[table.names[int(cid)] if 0 <= cid < len(table) else str(int(cid))] = (
                _quantiles(v[finite & (sel["class_id"] == cid)])
            )
        entry["per_class"] = per_class
        worst_lists[m] = _worst(v, sel["instance_id"], sel["source_object"], worst)
        metrics[m] = entry

    thresholds: dict[str, Any] = {}
    for m in THRESHOLD_METRICS:
        if metrics[m].get("values"):
            thresholds[m] = suggest_threshold(sel[m], bad)

    classes = []
    for cid in np.unique(sel["class_id"]):
        mask = sel["class_id"] == cid
        riou = sel["rbox_iou"][mask]
        inside = sel["inside_fraction"][mask]
        classes.append(
            {
                "class": table.names[int(cid)] if 0 <= cid < len(table) else str(int(cid)),
                "instances": int(mask.sum()),
                "median_rbox_iou": _round(float(np.median(riou))),
                "mean_inside_fraction": _round(float(np.nanmean(inside)))
                if np.isfinite(inside).any()
                else None,
                "bad_fraction": _round(float(bad[mask].mean())),
                "rejected_fraction": _round(float((~sel["kept"][mask]).mean())),
            }
        )
    classes.sort(key=lambda c: (c["median_rbox_iou"], c["class"]))

    images = [
        {
            "image_id": image_id,
            "rejected": count,
            "instances": per_image[image_id],
            "reasons": dict(sorted(reasons[image_id].items())),
        }
        for image_id, count in sorted(rejected.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    ]

    details = _instance_details(out, sorted({i for ids in worst_lists.values() for i in ids}))
    worst_rows = {m: [details[i] for i in ids] for m, ids in worst_lists.items()}
    return {
        "build": {
            "name": build_name(out),
            "source": table.source,
            "version": table.version,
            "segmenter": config.get("segmenter"),
            "filters": {
                k: config.get(k)
                for k in (
                    "min_score",
                    "min_stability",
                    "min_rbox_iou",
                    "min_inside_fraction",
                    "min_area",
                )
            },
        },
        "scope": "kept" if kept_only else "all",
        "instances": n,
        "kept": int(sel["kept"].sum()),
        "rejected": int((~sel["kept"]).sum()),
        "bad_rule": {**asdict(rule), "text": rule.describe()},
        "bad": int(bad.sum()),
        "bad_fraction": _round(float(bad.mean())) if n else None,
        "threshold_rule": THRESHOLD_RULE,
        "thresholds": thresholds,
        "metrics": metrics,
        "classes_by_rbox_iou": classes[:top] if top else classes,
        "images_by_rejections": images,
        "worst": worst_rows,
        "mask_sources": mask_source_stats(out, table.names),
        "notes": notes,
    }


_DETAIL_COLUMNS = [
    "instance_id", "image_id", "class_name", "kept", "reject_reason", "substituted",
    "n_components", "area", *METRICS,
]  # fmt: skip


def _instance_details(out: Path, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
    if not ids:
        return {}
    rows = read_table(
        out, "instances", columns=_DETAIL_COLUMNS, filter=pc.field("instance_id").isin(list(ids))
    )
    result = {}
    for row in rows.to_pylist():
        for m in METRICS:
            v = row[m]
            row[m] = None if v is None or not math.isfinite(v) else _round(v)
        result[int(row["instance_id"])] = row
    return result


# --- contact sheets --------------------------------------------------------------------


def sheet_size(n: int) -> tuple[int, int]:
    """``(width, height)`` in pixels of a contact sheet of ``n`` instances."""
    cols = max(min(n, COLUMNS), 1)
    rows = max(math.ceil(n / cols), 1)
    return cols * CELL + (cols + 1) * GAP, TITLE_HEIGHT + rows * (CELL + LABEL_HEIGHT) + (
        rows + 1
    ) * GAP


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _crop_box(row: dict[str, Any], width: int, height: int) -> tuple[int, int, int, int]:
    xs = [row["hbox"][0], row["hbox"][2]]
    ys = [row["hbox"][1], row["hbox"][3]]
    if row.get("prompt_box"):
        xs += [row["prompt_box"][0], row["prompt_box"][2]]
        ys += [row["prompt_box"][1], row["prompt_box"][3]]
    if row.get("bbox") and row["area"] > 0:
        bx, by, bw, bh = row["bbox"]
        xs += [bx, bx + bw]
        ys += [by, by + bh]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    half = max(x1 - x0, y1 - y0, 8.0) * 0.65 + 4
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (
        max(math.floor(cx - half), 0),
        max(math.floor(cy - half), 0),
        min(math.ceil(cx + half), width),
        min(math.ceil(cy + half), height),
    )


def _cell(
    out: Path, row: dict[str, Any], image: dict[str, Any] | None, root: str | None
) -> np.ndarray:
    """One CELL x CELL tile: crop, mask, rotated box, prompt."""
    tile = np.full((CELL, CELL, 3), 40, dtype=np.uint8)
    if image is None:
        canvas = Canvas(tile)
        canvas.label((4, 20), "image row missing", (255, 120, 120))
        return canvas.array()
    width, height = int(image["width"]), int(image["height"])
    x0, y0, x1, y1 = _crop_box(row, width, height)
    try:
        pixels = read_region(out, image, (x0, y0, x1, y1), root)
    except RenderError as exc:
        canvas = Canvas(tile)
        canvas.label((4, 20), "image unreadable", (255, 120, 120))
        canvas.label((4, 36), str(exc)[-34:], (255, 120, 120), size=9)
        return canvas.array()
    mask = decode_mask(row["segmentation"], height, width, (x0, y0, x1, y1))
    ch, cw = pixels.shape[:2]
    scale = CELL / max(cw, ch, 1)
    size = (max(round(cw * scale), 1), max(round(ch * scale), 1))
    resample = Image.Resampling.NEAREST if scale >= 2 else Image.Resampling.BILINEAR
    resized = np.asarray(Image.fromarray(pixels).resize(size, resample))
    small = (
        np.asarray(
            Image.fromarray(mask.astype(np.uint8) * 255).resize(size, Image.Resampling.NEAREST)
        )
        > 127
    )
    resized = resized.copy()
    blend(resized, small, MASK_COLOR)
    canvas = Canvas(resized, scale=scale, origin=(x0, y0))
    canvas.contours([c + np.array([x0, y0]) for c in mask_contours(mask)], MASK_OUTLINE, 1)
    canvas.polygon(row["polygon"], RBOX_COLOR, 2, halo=True)
    if row.get("prompt_box"):
        canvas.box(row["prompt_box"], PROMPT_COLOR, 1, dash=5)
    if row.get("prompt_point"):
        canvas.point(row["prompt_point"], POINT_COLOR, 3)
    tile[: size[1], : size[0]] = canvas.array()
    return tile


def contact_sheet(
    out: str | Path,
    instance_ids: Sequence[int],
    metric: str,
    title: str | None = None,
) -> np.ndarray:
    """A contact sheet (RGB array, :func:`sheet_size`) of instances, in the given order.

    Each cell shows the image crop around the instance with its mask (magenta), rotated box
    (yellow) and prompt box (dashed cyan) / point (red), above its class, ids and metrics;
    the line of ``metric`` is highlighted.
    """
    out = Path(out)
    config = build_config(read_build_metadata(out))
    root = config.get("root")
    ids = [int(i) for i in instance_ids]
    rows = {}
    if ids:
        table = read_table(out, "instances", filter=pc.field("instance_id").isin(ids))
        rows = {int(r["instance_id"]): r for r in table.to_pylist()}
    image_ids = sorted({r["image_id"] for r in rows.values()})
    images = {}
    if image_ids:
        img_table = read_table(out, "images", filter=pc.field("image_id").isin(image_ids))
        images = {r["image_id"]: r for r in img_table.to_pylist()}
    width, height = sheet_size(len(ids))
    sheet = Canvas(np.full((height, width, 3), 24, dtype=np.uint8))
    sheet.draw.text(
        (GAP, 6), title or f"worst {len(ids)} by {metric}", fill=(255, 255, 255), font=font(15)
    )
    sheet.draw.text(
        (GAP, 26),
        "magenta: mask   yellow: rotated box   cyan dashed: prompt box   red: prompt point",
        fill=(190, 190, 190),
        font=font(11),
    )
    cols = max(min(len(ids), COLUMNS), 1)
    for k, iid in enumerate(ids):
        r, c = divmod(k, cols)
        x = GAP + c * (CELL + GAP)
        y = TITLE_HEIGHT + GAP + r * (CELL + LABEL_HEIGHT + GAP)
        row = rows.get(iid)
        if row is None:
            sheet.draw.text(
                (x, y), f"instance {iid} not found", fill=(255, 120, 120), font=font(11)
            )
            continue
        sheet.image.paste(
            Image.fromarray(_cell(out, row, images.get(row["image_id"]), root)), (x, y)
        )
        status = "kept" if row["kept"] else f"rejected: {row['reject_reason']}"
        lines = [
            (f"{k + 1}. {row['class_name']}  #{iid}", None),
            (str(row["image_id"])[:36], None),
            (
                f"score {_fmt(row['score'])}  stability {_fmt(row['stability'])}",
                ("score", "stability"),
            ),
            (
                f"rbox_iou {_fmt(row['rbox_iou'])}  inside {_fmt(row['inside_fraction'])}",
                ("rbox_iou", "inside_fraction"),
            ),
            (f"parts {row['n_components']}  area {row['area']}  {status}"[:40], None),
        ]
        for j, (text, keys) in enumerate(lines):
            color = (255, 230, 0) if keys and metric in keys else (230, 230, 230)
            sheet.draw.text((x + 2, y + CELL + 3 + j * _LINE), text, fill=color, font=font(11))
    return sheet.array()


# --- text summary and files --------------------------------------------------------------


def summary_text(audit: dict[str, Any]) -> str:
    """The human summary written to ``OUT/audit/summary.txt``."""
    b = audit["build"]
    lines = [
        f"samrs audit: {b['name']} ({b['source']} {b['version']}, segmenter {b['segmenter']})",
        f"instances audited: {audit['instances']:,} ({'kept only' if audit['scope'] == 'kept' else 'kept and rejected'}); "
        f"kept {audit['kept']:,}, rejected {audit['rejected']:,}",
        "",
        f"Bad masks: {audit['bad']:,}"
        + (f" ({100 * audit['bad_fraction']:.1f}%)" if audit["bad_fraction"] is not None else ""),
        f"  rule: {audit['bad_rule']['text']}.",
        f"  thresholds: {audit['threshold_rule']}",
        "",
        "Suggested thresholds (build options):",
    ]
    for m in THRESHOLD_METRICS:
        t = audit["thresholds"].get(m)
        if t is None:
            lines.append(f"  min_{m}: skipped ({audit['metrics'][m].get('note', 'no values')})")
        elif t["threshold"] is None:
            lines.append(f"  min_{m}: none ({t['note']})")
        else:
            text = (
                f"  min_{m} = {t['threshold']:g}: flags {100 * t['flags_bad']:.1f}% of bad masks and "
                f"{100 * t['flags_good']:.1f}% of good ones; {100 * t['precision']:.1f}% of the "
                f"{t['flagged']:,} flagged are bad (J = {t['youden_j']:.2f})"
            )
            if t["mostly_bad_below"] is not None:
                text += f"; mostly bad below {t['mostly_bad_below']:g}"
            if t["note"]:
                text += f" [{t['note']}]"
            lines.append(text)
    lines.append(
        f"  min_rbox_iou: defines the bad rule ({audit['bad_rule']['min_rbox_iou']:g}); set it directly"
    )
    current = {k: v for k, v in b["filters"].items() if v}
    if current:
        lines.append(
            "  (this build used: " + ", ".join(f"{k} = {v:g}" for k, v in current.items()) + ")"
        )

    sources = audit.get("mask_sources")
    if sources and sources["total"]:
        lines += [
            "",
            "How the masks were made (mask_source; flag above "
            f"{100 * sources['flag_threshold']:g}% not the segmenter's own):",
            "  " + ", ".join(f"{k} {v:,}" for k, v in sources["by_source"].items()),
        ]
        if sources["flagged"]:
            lines.append(f"  FLAGGED: {sources['flag']}")
        lines += [f"  {k}: {v:,}" for k, v in list(sources["notes"].items())[:10]]
        for cname, counts in sources["by_class"].items():
            if set(counts) != {"segmenter"}:
                lines.append(f"  {cname}: " + ", ".join(f"{k} {v:,}" for k, v in counts.items()))
    lines += ["", "Classes whose masks disagree most with their boxes (lowest median rbox_iou):"]
    width = max((len(c["class"]) for c in audit["classes_by_rbox_iou"]), default=5)
    for c in audit["classes_by_rbox_iou"][:10]:
        lines.append(
            f"  {c['class']:<{width}}  median rbox_iou {c['median_rbox_iou']:.3f}  n={c['instances']:,}  "
            f"bad {100 * c['bad_fraction']:.1f}%  rejected {100 * c['rejected_fraction']:.1f}%"
        )
    lines += ["", "Images with the most rejections:"]
    if not audit["images_by_rejections"]:
        lines.append("  none")
    for im in audit["images_by_rejections"][:10]:
        why = ", ".join(f"{k} {v}" for k, v in im["reasons"].items())
        lines.append(f"  {im['image_id']}: {im['rejected']} of {im['instances']} rejected ({why})")
    lines += ["", "Per-metric quantiles (all classes):"]
    for m in METRICS:
        q = audit["metrics"][m].get("overall")
        if q:
            lines.append(
                f"  {m:<16} q05 {q['q05']:.3f}  q25 {q['q25']:.3f}  median {q['q50']:.3f}  "
                f"q75 {q['q75']:.3f}  (n={q['count']:,})"
            )
        else:
            lines.append(f"  {m:<16} skipped ({audit['metrics'][m].get('note', 'no values')})")
    lines.append("  per class: see audit.json")
    if audit.get("sheets"):
        lines += ["", "Contact sheets of the worst masks:"]
        lines += [f"  {m}: {p}" for m, p in audit["sheets"].items()]
    if audit["notes"]:
        lines += ["", "Notes:"] + [f"  - {n}" for n in audit["notes"]]
    return "\n".join(lines) + "\n"


def write_audit(
    out: str | Path, audit: dict[str, Any], progress: Callable[[str], None] | None = None
) -> dict[str, Path]:
    """Write contact sheets ``OUT/audit/worst_<metric>.png``, ``audit.json`` and ``summary.txt``.

    Adds ``sheets`` (metric -> path relative to OUT) to ``audit``.

    Returns:
        Written files: ``json``, ``summary`` and ``worst_<metric>`` for each sheet.
    """
    out = Path(out)
    folder = out / AUDIT_DIR
    folder.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    sheets: dict[str, str] = {}
    for m, rows in audit["worst"].items():
        if not rows:
            continue
        if progress is not None:
            progress(f"contact sheet of the worst {len(rows)} by {m}")
        ids = [r["instance_id"] for r in rows]
        scope = "kept" if audit["scope"] == "kept" else "all"
        title = (
            f"{audit['build']['name']}: worst {len(ids)} by {m} "
            f"({scope} masks, one per source object)"
        )
        path = save_png(contact_sheet(out, ids, m, title), folder / f"worst_{m}.png")
        written[f"worst_{m}"] = path
        sheets[m] = str(path.relative_to(out))
    audit["sheets"] = sheets
    written["json"] = folder / "audit.json"
    written["json"].write_text(
        json.dumps(audit, indent=2, ensure_ascii=False, allow_nan=False) + "\n", encoding="utf-8"
    )
    written["summary"] = folder / "summary.txt"
    written["summary"].write_text(summary_text(audit), encoding="utf-8")
    return written
