"""Tests of samrs.analysis.ablate: combinations, reports, failures, CLI; end to end on synth data."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

import samrs.build
from samrs.analysis.ablate import AblationError, ablate, ablation_runs
from samrs.build.config import BuildConfig
from samrs.cli import main
from tests.helpers.evaluate import box_mask, write_build, write_coco

H, W = 48, 64
# GT objects: (class, disc centre x, y, radius); the "box" segmenter fills the disc's box
DISCS = [("storage-tank", 14, 14, 8), ("storage-tank", 44, 30, 12), ("plane", 20, 36, 6)]


def disc(cx: int, cy: int, r: int) -> np.ndarray:
    yy, xx = np.mgrid[:H, :W]
    return (xx + 0.5 - cx) ** 2 + (yy + 0.5 - cy) ** 2 <= r * r


def make_gt(tmp_path: Path) -> Path:
    return write_coco(
        tmp_path / "gt.json",
        [{"id": 1, "file_name": "train/images/P0001.png", "width": W, "height": H}],
        [
            {"image_id": 1, "category_id": 1 if name == "plane" else 2, "mask": disc(cx, cy, r),
             "source_file": "train/labelTxt/P0001.txt", "source_line": k + 1}
            for k, (name, cx, cy, r) in enumerate(DISCS)
        ],
        [{"id": 1, "name": "plane"}, {"id": 2, "name": "storage-tank"}],
    )  # fmt: skip


class FakeSummary:
    def __init__(self, out: str, ok: bool = True) -> None:
        self.out, self.ok = Path(out), ok
        self.state = "complete" if ok else "failed"
        self.failed_shards = [] if ok else [{"shard": 0, "cause": "boom"}]


def fake_run_build(config: BuildConfig, **_: Any) -> FakeSummary:
    """Stands in for run_build: grabcut finds the discs, box fills their boxes; a 'point'
    prompt shrinks the disc; min_score 0.9 rejects everything (scores are 0.5)."""
    if config.prompt == "hbox":
        return FakeSummary(config.out, ok=False)
    instances = []
    for k, (name, cx, cy, r) in enumerate(DISCS):
        box = (cx - r, cy - r, cx + r, cy + r)
        if config.segmenter == "box":
            mask = box_mask(H, W, box)
        else:
            mask = disc(cx, cy, r - 2 if config.prompt == "point" else r)
        instances.append(
            {"image_id": "P0001", "class_name": name, "hbox": box, "mask": mask,
             "object_index": k, "source_line": k + 1, "score": 0.5,
             "kept": config.min_score < 0.9,
             "reject_reason": None if config.min_score < 0.9 else "low-score"}
        )  # fmt: skip
    write_build(
        Path(config.out),
        [{"image_id": "P0001", "width": W, "height": H}],
        instances,
        root=config.root,
        config={"segmenter": config.segmenter, "prompt": config.prompt},
    )
    return FakeSummary(config.out)


@pytest.fixture
def fake_build(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(samrs.build, "run_build", fake_run_build)


def base_config() -> BuildConfig:
    return BuildConfig(source="dota", root="/data/dota", out="unused", progress=False)


def test_ablation_runs() -> None:
    runs = ablation_runs(["box", "grabcut"], ["rhbox", "point"], [0.5, 0.8])
    assert [r.name for r in runs][:3] == [
        "box-rhbox-min0.5",
        "box-rhbox-min0.8",
        "box-point-min0.5",
    ]
    assert len(runs) == 8
    assert [r.name for r in ablation_runs()] == ["box-rhbox", "grabcut-rhbox"]
    assert len(ablation_runs(["box", "box"], ["rhbox"])) == 1


def test_sam_needs_weights(tmp_path: Path) -> None:
    with pytest.raises(AblationError, match="--checkpoint"):
        ablate(base_config(), tmp_path / "gt.json", tmp_path / "abl", segmenters=["sam"])
    assert not (tmp_path / "abl").exists()


def test_ablate_compares_runs(tmp_path: Path, fake_build: None) -> None:
    gt = make_gt(tmp_path)
    out = tmp_path / "abl"
    result = ablate(base_config(), gt, out, prompts=["rhbox", "point"])
    rows = {r["name"]: r for r in result.rows}
    assert list(rows) == ["box-rhbox", "box-point", "grabcut-rhbox", "grabcut-point"]
    assert rows["grabcut-rhbox"]["miou"] == pytest.approx(1.0)
    assert rows["grabcut-rhbox"]["miou"] > rows["grabcut-point"]["miou"]
    assert 0.5 < rows["box-rhbox"]["miou"] < 0.9  # a disc fills pi/4 of its box
    assert rows["box-rhbox"]["matched"] == 3
    assert result.best()["name"] == "grabcut-rhbox"
    assert (out / "runs" / "box-rhbox" / "samrs.json").is_file()

    md = (out / "ablation.md").read_text()
    assert "| grabcut-rhbox | grabcut | rhbox |" in md and "**1.000**" in md
    assert "band 2% of the box diagonal" in md and "Note: `box` returns the prompt region" in md
    assert "Best mean IoU: **grabcut-rhbox**" in md
    assert "| storage-tank |" in md
    doc = json.loads((out / "ablation.json").read_text())
    assert doc["best"] == "grabcut-rhbox"
    assert [r["name"] for r in doc["runs"]] == list(rows)
    assert doc["runs"][0]["evaluation"]["pred"] == "runs/box-rhbox"
    png = (out / "ablation.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # same inputs, same reports
    again = ablate(base_config(), gt, tmp_path / "abl2", prompts=["rhbox", "point"])
    assert again.rows[0]["miou"] == rows["box-rhbox"]["miou"]
    assert (tmp_path / "abl2" / "ablation.md").read_bytes() == (out / "ablation.md").read_bytes()
    assert (tmp_path / "abl2" / "ablation.png").read_bytes() == png


def test_failed_run_and_filter_settings(tmp_path: Path, fake_build: None) -> None:
    gt = make_gt(tmp_path)
    result = ablate(
        base_config(), gt, tmp_path / "abl", segmenters=["grabcut"], prompts=["rhbox", "hbox"],
        min_scores=[0.0, 0.9], band_fraction=0.05,
    )  # fmt: skip
    rows = {r["name"]: r for r in result.rows}
    assert rows["grabcut-hbox-min0"]["error"].startswith("build failed")
    assert [r["name"] for r in result.failed] == ["grabcut-hbox-min0", "grabcut-hbox-min0.9"]
    assert rows["grabcut-rhbox-min0"]["kept"] == 3
    assert rows["grabcut-rhbox-min0.9"]["kept"] == 0
    assert rows["grabcut-rhbox-min0.9"]["rejected"] == 3
    assert rows["grabcut-rhbox-min0.9"]["miou"] is None
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "failed: build failed" in md
    assert "band 5% of the box diagonal" in md  # the setting used, not the default
    assert "`min score` filters nothing for `box` and `grabcut`" in md
    assert result.to_dict()["settings"] == {"band_fraction": 0.05, "match_iou": 0.5}
    header = next(line for line in md.splitlines() if line.startswith("| run "))
    failed = next(line for line in md.splitlines() if "failed: build failed" in line)
    assert header.count("|") == failed.count("|")


def test_cli_json(tmp_path: Path, fake_build: None) -> None:
    gt = make_gt(tmp_path)
    args = ["ablate", "--source", "dota", "--root", str(tmp_path), "--gt", str(gt), "--out",
            str(tmp_path / "abl")]  # fmt: skip
    res = CliRunner().invoke(main, [*args, "--json"])
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout)
    assert [r["name"] for r in doc["runs"]] == ["box-rhbox", "grabcut-rhbox"]
    res = CliRunner().invoke(main, [*args, "--segmenters", "box,nope"])
    assert res.exit_code != 0 and "nope" in res.output
    res = CliRunner().invoke(main, [*args, "--segmenters", "sam"])
    assert res.exit_code != 0 and "--checkpoint" in res.output
    res = CliRunner().invoke(main, [*args, "--prompts", "hbox"])
    assert res.exit_code != 0 and "2 run(s) failed" in res.output


def _pipeline_ready() -> bool:
    """synth, the box and grabcut segmenters and the quality filters all exist."""
    try:
        import samrs.segmenters as segmenters
    except ImportError:
        return False
    return (
        hasattr(segmenters, "create_segmenter")
        and importlib.util.find_spec("samrs.synth") is not None
        and importlib.util.find_spec("samrs.quality") is not None
    )


@pytest.mark.slow
@pytest.mark.skipif(not _pipeline_ready(), reason="synth/segmenters/quality not available yet")
def test_grabcut_beats_box_on_synth_data(tmp_path: Path) -> None:
    """End to end: `samrs synth` data, real builds, real evaluation, the table shows it."""
    from samrs.synth import write_synthetic

    data = tmp_path / "synth"
    write_synthetic("dota", data, n_images=2, seed=0)
    res = CliRunner().invoke(
        main,
        ["-q", "ablate", "--source", "dota", "--root", str(data), "--gt", str(data),
         "--out", str(tmp_path / "abl"), "--json"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)["runs"]}
    assert rows["box-rhbox"]["matched"] > 0
    assert rows["box-rhbox"]["unmatched_pred"] == 0
    assert rows["grabcut-rhbox"]["miou"] > rows["box-rhbox"]["miou"]
    md = (tmp_path / "abl" / "ablation.md").read_text()
    assert "Best mean IoU: **grabcut-rhbox**" in md
