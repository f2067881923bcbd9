"""Every mask accounted for: mask_source/mask_note in the manifest, stats and audit."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from samrs.analysis.stats import FALLBACK_FLAG_SHARE, compute_stats, format_stats
from samrs.build import BuildConfig, run_build
from samrs.cli import main
from samrs.core.masks import MaskCrop
from samrs.outputs.manifest import read_table
from samrs.outputs.schema import MASK_SOURCES
from samrs.synth import write_synthetic


@pytest.fixture(scope="module")
def dota(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data") / "dota"
    write_synthetic("dota", root, 2, 3)
    for label in sorted(root.rglob("labelTxt/*.txt")):  # specks GrabCut cannot segment
        with label.open("a") as f:
            f.write("100 100 103 100 103 102 100 102 small-vehicle 0\n")
            f.write("200 40 202 40 202 43 200 43 small-vehicle 0\n")
    return root


def _build(root: Path, out: Path, **options: object) -> Path:
    values: dict[str, object] = {
        "source": "dota", "root": str(root), "out": str(out), "segmenter": "grabcut",
        "progress": False,
    }  # fmt: skip
    values.update(options)
    run_build(BuildConfig(**values))  # type: ignore[arg-type]
    return out


@pytest.mark.slow
def test_grabcut_build_records_fallbacks(dota: Path, tmp_path: Path) -> None:
    out = _build(dota, tmp_path / "gc")
    rows = read_table(out, "instances").to_pylist()
    assert rows and {r["mask_source"] for r in rows} <= set(MASK_SOURCES)
    fallbacks = [r for r in rows if r["mask_source"] == "fallback-box"]
    own = [r for r in rows if r["mask_source"] == "segmenter"]
    assert fallbacks and own  # the specks are below GrabCut's 4 px minimum side
    assert all(r["mask_note"] for r in fallbacks) and all(r["mask_note"] is None for r in own)
    assert {r["mask_note"] for r in fallbacks} >= {"box smaller than 4 px"}
    # a fallback mask is the prompt's (the rhbox box) rasterized: rbox_iou of a box is high
    size = {im["image_id"]: (im["height"], im["width"]) for im in read_table(out, "images").to_pylist()}  # fmt: skip
    from samrs.core import rle

    for r in fallbacks[:5]:
        h, w = size[r["image_id"]]
        mask = rle.decode({"size": [h, w], "counts": r["segmentation"]})
        box = MaskCrop.of_polygon(
            [r["prompt_box"][i] for i in (0, 1, 2, 1, 2, 3, 0, 3)], 0.0, h, w
        ).full()
        np.testing.assert_array_equal(mask, box)
    # the build's defaults are the weight-free gates, recorded in its metadata
    meta = json.loads((out / "samrs.json").read_text())
    assert meta["config"]["min_rbox_iou"] == 0.3 and meta["config"]["min_area"] == 4
    # stats and audit count them per class and flag the build above the threshold
    stats = compute_stats(out)
    src = stats["mask_sources"]
    assert src["by_source"]["fallback-box"] == len(fallbacks)
    assert sum(src["by_source"].values()) == len(rows)
    per_class = {}
    for r in fallbacks:
        per_class[r["class_name"]] = per_class.get(r["class_name"], 0) + 1
    assert {k: v.get("fallback-box", 0) for k, v in src["by_class"].items() if v.get("fallback-box")} == per_class  # fmt: skip
    share = len(fallbacks) / len(rows)
    assert src["not_segmenter_share"] == pytest.approx(share)
    assert share > FALLBACK_FLAG_SHARE and src["flagged"]  # 4 specks of 31 objects
    text = format_stats(stats)
    assert "mask source: " in text and f"fallback-box {len(fallbacks):,}" in text
    result = CliRunner().invoke(main, ["stats", str(out)])
    assert result.exit_code == 0, result.output
    report = (out / "stats" / "report.html").read_text()
    assert "Mask sources" in report and "box smaller than 4 px" in report
    assert json.loads((out / "stats" / "stats.json").read_text())["mask_sources"] == src
    result = CliRunner().invoke(main, ["audit", str(out)])
    assert result.exit_code == 0, result.output
    summary = (out / "audit" / "summary.txt").read_text()
    assert "How the masks were made" in summary and "fallback-box" in summary
    assert "FLAGGED" in summary and "FLAGGED" in text and "FLAGGED" in report


def test_substituted_masks_say_why(dota: Path, tmp_path: Path) -> None:
    out = _build(dota, tmp_path / "sub", segmenter="box", min_area=200, on_reject="box")
    rows = read_table(out, "instances").to_pylist()
    subst = [r for r in rows if r["substituted"]]
    assert subst and all(r["mask_source"] == "substituted-box" for r in subst)
    assert {r["mask_note"] for r in subst} == {"small-area"}
    assert all(r["mask_source"] == "segmenter" for r in rows if not r["substituted"])
    stats = compute_stats(out)
    assert stats["mask_sources"]["by_source"]["substituted-box"] == len(subst)
    assert len(subst) / len(rows) > FALLBACK_FLAG_SHARE and stats["mask_sources"]["flagged"]
    assert any("not the segmenter's own" in p for p in stats["problems"])


def test_sam_defaults_unchanged(dota: Path, tmp_path: Path) -> None:
    """Only the weight-free segmenters get quality gates by default."""
    from samrs.build.config import BuildConfig as Config
    from samrs.build.run import resolve_config

    base = {"source": "dota", "root": str(dota), "out": str(tmp_path / "x")}
    sam = resolve_config(Config(**base, segmenter="sam", random_weights=True))  # type: ignore[arg-type]
    assert (sam.min_rbox_iou, sam.min_area) == (0.0, 1)
    box = resolve_config(Config(**base, segmenter="box"))  # type: ignore[arg-type]
    assert (box.min_rbox_iou, box.min_area) == (0.3, 4)
    explicit = resolve_config(Config(**base, segmenter="grabcut", min_rbox_iou=0.0))  # type: ignore[arg-type]
    assert (explicit.min_rbox_iou, explicit.min_area) == (0.0, 4)
    help_text = CliRunner().invoke(main, ["build", "--help"]).output
    assert "0.3 for box/grabcut" in help_text and "4 for box/grabcut" in help_text
