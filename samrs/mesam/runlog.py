"""The metrics log of a training run: ``metrics.csv``, ``metrics.json`` and ``curves.png``."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

COLUMNS = (
    "step",
    "epoch",
    "lr",
    "loss",
    "ce",
    "dice",
    "images_per_s",
    "val_miou",
    "val_pixel_accuracy",
)
"""One row per log point; training rows leave the ``val_*`` cells empty and vice versa."""


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_metrics(
    run: str | Path, rows: Sequence[dict[str, Any]], summary: dict[str, Any], plot: bool = True
) -> None:
    """Rewrite the CSV and JSON (and, with ``plot``, the curves) of a run from all rows."""
    run = Path(run)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _cell(row.get(k)) for k in COLUMNS})
    _atomic_write(run / "metrics.csv", buf.getvalue())
    doc = {"summary": summary, "rows": list(rows)}
    _atomic_write(run / "metrics.json", json.dumps(doc, indent=2, sort_keys=True) + "\n")
    if plot:
        plot_curves(rows, run / "curves.png")


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return value


def plot_curves(rows: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Training loss (left) and validation mIoU (right) against the optimizer step."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    train = [r for r in rows if r.get("loss") is not None]
    val = [r for r in rows if r.get("val_miou") is not None]
    fig, (ax_loss, ax_iou) = plt.subplots(1, 2, figsize=(10, 4), dpi=100)
    if train:
        steps = [r["step"] for r in train]
        ax_loss.plot(steps, [r["loss"] for r in train], label="loss")
        ax_loss.plot(steps, [r["ce"] for r in train], label="CE", alpha=0.6)
        ax_loss.plot(steps, [r["dice"] for r in train], label="Dice", alpha=0.6)
        ax_loss.legend()
    ax_loss.set_xlabel("step")
    ax_loss.set_title("training loss")
    if val:
        ax_iou.plot([r["step"] for r in val], [r["val_miou"] for r in val], marker="o")
    ax_iou.set_xlabel("step")
    ax_iou.set_title("validation mIoU")
    ax_iou.set_ylim(0, 1)
    fig.tight_layout()
    tmp = Path(path).with_name(Path(path).name + ".tmp.png")
    fig.savefig(tmp, metadata={"Software": None})
    plt.close(fig)
    os.replace(tmp, path)
