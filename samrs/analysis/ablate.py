"""The SAMRS prompt study on any dataset with masks (``samrs ablate``).

One build per combination of segmenter, prompt mode and (optionally) minimum SAM score, each
into ``OUT/runs/<segmenter>-<prompt>[-min<score>]/``, each scored with
:func:`samrs.analysis.evaluate.evaluate` against the same ground truth, then compared in
``OUT/ablation.md`` (Markdown table), ``OUT/ablation.json`` (every evaluation in full) and
``OUT/ablation.png`` (bar plot). Re-running continues: finished runs with the same
configuration are not built again.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from samrs.analysis.evaluate import (
    DEFAULT_BAND_FRACTION,
    DEFAULT_MATCH_IOU,
    EvaluationError,
    evaluate,
)
from samrs.build.config import BuildConfig
from samrs.errors import SamrsError
from samrs.segmenters import needs_weights

__all__ = [
    "DEFAULT_PROMPTS",
    "DEFAULT_SEGMENTERS",
    "METRICS",
    "AblationError",
    "AblationResult",
    "AblationRun",
    "ablate",
    "ablation_runs",
    "format_markdown",
    "write_reports",
]

DEFAULT_SEGMENTERS = ("box", "grabcut")
DEFAULT_PROMPTS = ("rhbox",)

METRICS = (
    ("miou", "mIoU"),
    ("area_iou", "area IoU"),
    ("boundary_iou", "boundary IoU"),
    ("mask_ap", "mask AP"),
)
"""Metrics compared (key in the evaluation document, label)."""

RUNS_DIR = "runs"


class AblationError(SamrsError, ValueError):
    """An ablation that cannot start (bad combination, missing weights)."""


@dataclass(frozen=True)
class AblationRun:
    """One combination: a build setting to evaluate."""

    segmenter: str
    prompt: str
    min_score: float | None = None

    @property
    def name(self) -> str:
        """Folder name under ``OUT/runs``: ``<segmenter>-<prompt>[-min<score>]``."""
        suffix = "" if self.min_score is None else f"-min{self.min_score:g}"
        return f"{self.segmenter}-{self.prompt}{suffix}"


def ablation_runs(
    segmenters: Sequence[str] = DEFAULT_SEGMENTERS,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    min_scores: Sequence[float] | None = None,
) -> list[AblationRun]:
    """Every combination, segmenters outermost, in the order given (duplicates dropped)."""
    scores: Sequence[float | None] = list(min_scores) if min_scores else [None]
    runs = [AblationRun(s, p, m) for s in segmenters for p in prompts for m in scores]
    return list(dict.fromkeys(runs))


@dataclass
class AblationResult:
    """The runs and their evaluations.

    Attributes:
        out: the ablation folder.
        gt: the ground truth used.
        base: the build configuration shared by all runs (segmenter/prompt/min_score vary).
        rows: one dict per run: ``name``, ``segmenter``, ``prompt``, ``min_score``, ``out``,
            ``state`` (build state, or ``failed``), ``error`` (None or the cause), the
            headline metrics and ``evaluation`` (the full ``samrs evaluate`` document).
    """

    out: Path
    gt: str
    base: BuildConfig
    rows: list[dict[str, Any]] = field(default_factory=list)
    band_fraction: float = DEFAULT_BAND_FRACTION
    match_iou: float = DEFAULT_MATCH_IOU

    @property
    def failed(self) -> list[dict[str, Any]]:
        """Rows whose build or evaluation failed."""
        return [r for r in self.rows if r["error"] is not None]

    def best(self, metric: str = "miou") -> dict[str, Any] | None:
        """The run with the highest value of ``metric`` (first one on ties)."""
        scored = [r for r in self.rows if r.get(metric) is not None]
        return max(scored, key=lambda r: r[metric]) if scored else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready document (``ablation.json``)."""
        base = self.base.output_affecting()
        for key in ("segmenter", "prompt", "min_score"):
            base.pop(key, None)
        best = self.best()
        return {
            "gt": self.gt,
            "source": self.base.source,
            "root": self.base.root,
            "base_config": base,
            "metrics": [key for key, _ in METRICS],
            "settings": {"band_fraction": self.band_fraction, "match_iou": self.match_iou},
            "best": None if best is None else best["name"],
            "runs": self.rows,
        }


def _check(base: BuildConfig, runs: list[AblationRun]) -> None:
    if not runs:
        raise AblationError("nothing to compare: give at least one segmenter and one prompt")
    weighted = sorted({r.segmenter for r in runs if needs_weights(r.segmenter)})
    if weighted and not (base.checkpoint or base.random_weights):
        raise AblationError(
            f"segmenter {', '.join(weighted)} needs --checkpoint FILE (or --random-weights for "
            "a weight-free trial); the weight-free segmenters are box and grabcut"
        )


def ablate(
    base: BuildConfig,
    gt: str | Path,
    out: str | Path,
    *,
    segmenters: Sequence[str] = DEFAULT_SEGMENTERS,
    prompts: Sequence[str] = DEFAULT_PROMPTS,
    min_scores: Sequence[float] | None = None,
    band_fraction: float = DEFAULT_BAND_FRACTION,
    match_iou: float = DEFAULT_MATCH_IOU,
    log: Callable[[str], None] | None = None,
) -> AblationResult:
    """Build, evaluate and compare every combination; write the reports into ``out``.

    Args:
        base: build options shared by all runs (``source``, ``root``, model, tiling...);
            its ``out``, ``segmenter``, ``prompt`` (and ``min_score`` when ``min_scores``
            is given) are replaced per run.
        gt: ground truth for :func:`samrs.analysis.evaluate.evaluate`.
        out: ablation folder; builds go to ``out/runs/<name>``.
        segmenters, prompts, min_scores: the combinations (see :func:`ablation_runs`).
        band_fraction, match_iou: evaluation settings.
        log: called with one line per step (progress; None for silence).

    A run whose build fails or cannot be evaluated becomes a row with its ``error``; the
    other runs go on. Raises :class:`AblationError` before any work for impossible requests.
    """
    from samrs import build as build_api

    runs = ablation_runs(segmenters, prompts, min_scores)
    _check(base, runs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result = AblationResult(out, str(gt), base, band_fraction=band_fraction, match_iou=match_iou)
    for i, run in enumerate(runs, 1):
        run_out = out / RUNS_DIR / run.name
        config = replace(base, out=str(run_out), segmenter=run.segmenter, prompt=run.prompt)
        if run.min_score is not None:
            config = replace(config, min_score=run.min_score)
        if log:
            log(f"[{i}/{len(runs)}] {run.name}: building into {run_out}")
        row: dict[str, Any] = {
            "name": run.name,
            "segmenter": run.segmenter,
            "prompt": run.prompt,
            "min_score": config.min_score,
            "out": str(Path(RUNS_DIR) / run.name),
            "state": None,
            "error": None,
        }
        row |= {key: None for key, _ in METRICS}
        try:
            summary = build_api.run_build(config)
            row["state"] = summary.state
            if not summary.ok:
                causes = "; ".join(
                    f"shard {f['shard']}: {f['cause']}" for f in summary.failed_shards
                )
                raise RuntimeError(f"build failed ({causes})")
            if log:
                log(f"[{i}/{len(runs)}] {run.name}: evaluating")
            doc = evaluate(run_out, gt, band_fraction=band_fraction, match_iou=match_iou).to_dict()
        except (build_api.BuildError, EvaluationError, RuntimeError, ValueError) as exc:
            row["state"] = row["state"] or "failed"
            row["error"] = str(exc)
            if log:
                log(f"[{i}/{len(runs)}] {run.name}: FAILED: {exc}")
            result.rows.append(row)
            continue
        doc["pred"] = row["out"]  # relative: the reports do not depend on where OUT lives
        row |= {key: doc.get(key) for key, _ in METRICS}
        row |= {
            "mask_ap50": doc.get("mask_ap50"),
            "matched": doc["matched"],
            "kept": doc["n_kept"],
            "rejected": doc["rejected"]["count"],
            "unmatched_gt": doc["unmatched_gt"],
            "unmatched_pred": doc["unmatched_pred"],
            "evaluation": doc,
        }
        result.rows.append(row)
        if log:
            log(f"[{i}/{len(runs)}] {run.name}: mIoU {_num(row['miou'])}")
    write_reports(result)
    return result


def _num(value: float | None, digits: int = 3) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def format_markdown(result: AblationResult) -> str:
    """The comparison table (``ablation.md``); the best mean IoU in bold."""
    best = result.best()
    lines = [
        "# samrs ablation",
        "",
        f"Source `{result.base.source}` (`{result.base.root}`), ground truth `{result.gt}`. "
        "Metrics over kept instances matched to their ground-truth object (`samrs evaluate`): "
        "mean IoU, area-weighted IoU, boundary IoU "
        f"(band {100 * result.band_fraction:g}% of the box diagonal, at least 1 px) and COCO "
        "mask AP.",
        "",
        "| run | segmenter | prompt | min score | matched | kept | mIoU | area IoU "
        "| boundary IoU | mask AP | AP50 | unmatched GT | unmatched pred |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result.rows:
        if row["error"] is not None:
            cells = [row["name"], row["segmenter"], row["prompt"], f"{row['min_score']:g}"]
            cells += ["failed: " + row["error"][:120].replace("|", "/")] + [""] * 8
            lines.append("| " + " | ".join(cells) + " |")
            continue
        metrics = [_num(row[key]) for key, _ in METRICS] + [_num(row["mask_ap50"])]
        if row is best:
            metrics[0] = f"**{metrics[0]}**"
        lines.append(
            f"| {row['name']} | {row['segmenter']} | {row['prompt']} | {row['min_score']:g} "
            f"| {row['matched']} | {row['kept']} | "
            + " | ".join(metrics)
            + f" | {row['unmatched_gt']} | {row['unmatched_pred']} |"
        )
    if best is not None:
        lines += ["", f"Best mean IoU: **{best['name']}** ({_num(best['miou'])})."]
    notes = []
    if any(r["segmenter"] == "box" for r in result.rows):
        notes.append(
            "`box` returns the prompt region itself: the box, or the rotated polygon for "
            "`rbox-mask` and `point` prompts (it has no other region for a point)."
        )
    if any(r["segmenter"] in ("box", "grabcut") for r in result.rows) and any(
        r["min_score"] for r in result.rows
    ):
        notes.append("`min score` filters nothing for `box` and `grabcut`: they give no score.")
    if notes:
        lines += ["", *(f"Note: {n}" for n in notes)]
    classes = sorted({c for r in result.rows if r["error"] is None
                      for c in r["evaluation"]["per_class"]})  # fmt: skip
    ok = [r for r in result.rows if r["error"] is None]
    if classes and ok:
        lines += ["", "## Mean IoU per class", "",
                  "| class | " + " | ".join(r["name"] for r in ok) + " |",
                  "|---|" + "---:|" * len(ok)]  # fmt: skip
        for name in classes:
            values = [_num(r["evaluation"]["per_class"].get(name, {}).get("miou")) for r in ok]
            lines.append(f"| {name} | " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def _plot(result: AblationResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rows = result.rows
    width = 0.8 / len(METRICS)
    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.0), dpi=100)
    for k, (key, label) in enumerate(METRICS):
        values = [r[key] if r[key] is not None else 0.0 for r in rows]
        ax.bar(x + (k - (len(METRICS) - 1) / 2) * width, values, width, label=label)
    ax.set_xticks(x, [r["name"] + (" (failed)" if r["error"] else "") for r in rows])
    ax.set_ylim(0.0, 1.15)
    ax.set_yticks(np.linspace(0.0, 1.0, 6))
    ax.set_ylabel("score")
    ax.set_title(f"samrs ablation: {result.base.source}")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper center", ncols=len(METRICS), fontsize="small", frameon=False)
    fig.tight_layout()
    fig.savefig(path, format="png", metadata={"Software": None})
    plt.close(fig)


def write_reports(result: AblationResult) -> dict[str, Path]:
    """Write ``ablation.md``, ``ablation.json`` and ``ablation.png`` into ``result.out``."""
    out = result.out
    paths = {"md": out / "ablation.md", "json": out / "ablation.json", "png": out / "ablation.png"}
    paths["md"].write_text(format_markdown(result), encoding="utf-8")
    paths["json"].write_text(
        json.dumps(result.to_dict(), indent=2, sort_keys=True, default=str) + "\n",
        encoding="utf-8",
    )
    _plot(result, paths["png"])
    return paths
