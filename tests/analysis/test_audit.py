"""``samrs audit``: quality distributions, rankings, contact sheets, suggested thresholds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from samrs.analysis.audit import (
    CELL,
    GAP,
    METRICS,
    TITLE_HEIGHT,
    BadRule,
    compute_audit,
    contact_sheet,
    sheet_size,
    suggest_threshold,
    summary_text,
    write_audit,
)
from samrs.cli import main
from tests.helpers.outputs import make_fake_build
from tests.helpers.quality import BAD_ID, add_bad_image


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("audit") / "OUT"
    make_fake_build(out)
    add_bad_image(out)
    return out


@pytest.fixture(scope="module")
def audit(build: Path) -> dict:
    return compute_audit(build, worst=5)


def _instances(out: Path) -> pd.DataFrame:
    parts = sorted((out / "manifest" / "instances").glob("*.parquet"))
    return pd.concat([pq.read_table(p).to_pandas() for p in parts], ignore_index=True)


def test_bad_instance_ranks_first_on_every_metric(audit: dict) -> None:
    for m in METRICS:
        assert audit["worst"][m][0]["instance_id"] == BAD_ID, m
        values = [r[m] for r in audit["worst"][m]]
        assert values == sorted(values) and len(values) == 5
    bad = audit["worst"]["rbox_iou"][0]
    assert bad["class_name"] == "plane" and bad["image_id"] == "Q0009" and bad["kept"]
    assert bad["rbox_iou"] == pytest.approx(5 / (32 * 32), abs=1e-6)


def test_quantiles_match_numpy(build: Path, audit: dict) -> None:
    inst = _instances(build)
    assert audit["instances"] == len(inst) == 10
    for m in METRICS:
        values = inst[m].astype(float).to_numpy()
        q = audit["metrics"][m]["overall"]
        assert q["q50"] == pytest.approx(np.quantile(values, 0.5), abs=1e-6)
        assert q["q05"] == pytest.approx(np.quantile(values, 0.05), abs=1e-6)
        planes = inst.loc[inst["class_name"] == "plane", m].astype(float)
        pq_ = audit["metrics"][m]["per_class"]["plane"]
        assert pq_["count"] == 3 and pq_["q00"] == pytest.approx(planes.min(), abs=1e-6)
        assert pq_["mean"] == pytest.approx(planes.mean(), abs=1e-6)


def test_rankings_of_classes_and_images(build: Path, audit: dict) -> None:
    inst = _instances(build)
    medians = inst.groupby("class_name")["rbox_iou"].median()
    ranked = [c["class"] for c in audit["classes_by_rbox_iou"]]
    assert ranked == sorted(medians.index, key=lambda c: (round(float(medians[c]), 6), c))
    assert audit["classes_by_rbox_iou"][0]["median_rbox_iou"] == pytest.approx(
        medians.min(), abs=1e-6
    )
    top = audit["images_by_rejections"][0]
    assert top == {"image_id": "Q0009", "rejected": 2, "instances": 4, "reasons": {"low-score": 2}}
    assert [i["image_id"] for i in audit["images_by_rejections"]] == [
        "Q0009",
        "P0001",
        "P0002__20__10",
    ]


def test_bad_rule() -> None:
    rule = BadRule(min_rbox_iou=0.5, max_components=3)
    flags = rule.apply(np.array([0.9, 0.4, 0.9, 0.9, 0.5]), np.array([1, 1, 0, 4, 3]))
    assert flags.tolist() == [False, True, True, True, False]
    assert "rbox_iou < 0.5" in rule.describe()


def test_suggest_threshold_golden() -> None:
    clean = suggest_threshold(
        np.array([0.1, 0.2, 0.8, 0.9, np.nan]), np.array([1, 1, 0, 0, 1], bool)
    )
    assert clean["threshold"] == 0.5 and clean["youden_j"] == 1.0
    assert (clean["flags_bad"], clean["flags_good"], clean["precision"]) == (1.0, 0.0, 1.0)
    assert clean["flagged"] == 2 and clean["bad"] == 2  # the NaN is ignored
    mixed = suggest_threshold(np.array([0.1, 0.3, 0.4, 0.9]), np.array([1, 0, 1, 0], bool))
    assert mixed["threshold"] == 0.2 and mixed["youden_j"] == 0.5
    assert mixed["mostly_bad_below"] == 0.65
    none = suggest_threshold(np.array([0.1, 0.2]), np.array([False, False]))
    assert none["threshold"] is None and none["note"] == "no bad masks"
    inverted = suggest_threshold(np.array([0.1, 0.9]), np.array([False, True]))
    assert inverted["threshold"] is None


def test_files_and_contact_sheets(build: Path, audit: dict) -> None:
    written = write_audit(build, dict(audit))
    for m in METRICS:
        with Image.open(written[f"worst_{m}"]) as im:
            assert im.size == sheet_size(5)
            sheet = np.asarray(im.convert("RGB"))
        # the first cell shows the bad instance's crop with its magenta mask drawn on it
        y, x = TITLE_HEIGHT + GAP, GAP
        cell = sheet[y : y + CELL, x : x + CELL]
        assert ((cell[..., 0] > 200) & (cell[..., 1] < 80) & (cell[..., 2] > 200)).any()
    doc = json.loads(written["json"].read_text())
    assert doc["worst"]["score"][0]["instance_id"] == BAD_ID
    assert doc["sheets"]["score"] == "audit/worst_score.png"
    summary = written["summary"].read_text()
    assert "min_score" in summary and "rbox_iou < 0.5" in summary and "Q0009" in summary
    assert summary == summary_text(doc)
    a = contact_sheet(build, [BAD_ID, 0], "score")
    b = contact_sheet(build, [BAD_ID, 0], "score")
    assert a.shape == (sheet_size(2)[1], sheet_size(2)[0], 3) and np.array_equal(a, b)


def test_suggested_score_threshold_golden(audit: dict) -> None:
    # bad masks: the injected fragment (score 0.05), the ship (0.30, rbox_iou 0.25) and the
    # small vehicle (0.88, rbox_iou 0.08). Sorted scores: 0.05 B, 0.20 G, 0.30 B, 0.40 G,
    # 0.45 G, 0.85 G, 0.88 B, 0.90 G, 0.95 G, 0.97 G -> J is largest (2/3 - 1/7) when the
    # three lowest are flagged, i.e. below 0.35 (midway between 0.30 and 0.40).
    t = audit["thresholds"]["score"]
    assert audit["bad"] == 3 and (t["bad"], t["good"]) == (3, 7)
    assert t["threshold"] == 0.35 and t["flagged"] == 3
    assert t["youden_j"] == pytest.approx(2 / 3 - 1 / 7, abs=1e-6)
    assert t["flags_bad"] == pytest.approx(2 / 3, abs=1e-6)
    assert t["precision"] == pytest.approx(2 / 3, abs=1e-6)


def test_kept_only_scope(build: Path) -> None:
    kept = compute_audit(build, worst=3, kept_only=True)
    assert kept["scope"] == "kept" and kept["instances"] == kept["kept"] == 6
    assert kept["rejected"] == 0
    assert kept["worst"]["score"][0]["instance_id"] == BAD_ID


def test_missing_scores_are_skipped_with_a_note(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    make_fake_build(out)
    for part in sorted((out / "manifest" / "instances").glob("*.parquet")):
        table = pq.read_table(part)
        for name in ("score", "stability"):
            i = table.schema.get_field_index(name)
            table = table.set_column(
                i, table.schema.field(i), pa.nulls(table.num_rows, pa.float32())
            )
        pq.write_table(table, part)
    audit = compute_audit(out, worst=3)
    assert "note" in audit["metrics"]["score"] and "worst" in audit
    assert "score" not in audit["worst"] and "rbox_iou" in audit["worst"]
    assert "score" not in audit["thresholds"]
    written = write_audit(out, audit)
    assert "worst_score" not in written and written["worst_rbox_iou"].is_file()
    summary = written["summary"].read_text()
    assert "min_score: skipped" in summary and "no score values" in summary


def test_cli_audit(build: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(main, ["audit", str(build), "--worst", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    doc = json.loads(result.stdout)
    assert doc["worst"]["rbox_iou"][0]["instance_id"] == BAD_ID and len(doc["worst"]["score"]) == 2
    with Image.open(build / "audit" / "worst_score.png") as im:
        assert im.size == sheet_size(2)
    text = runner.invoke(main, ["audit", str(build), "--kept-only", "--bad-rbox-iou", "0.3"])
    assert text.exit_code == 0, text.output
    assert "rbox_iou < 0.3" in text.stdout and "kept only" in text.stdout


def test_worst_lists_one_instance_per_source_object() -> None:
    from samrs.analysis.audit import _worst

    values = np.array([0.1, 0.2, 0.15, np.nan, 0.3, 0.05])
    ids = np.array([10, 11, 12, 13, 14, 15])
    objects = np.array([0, 1, 0, 2, 3, -16])  # 10 and 12: one object in two tiles
    assert _worst(values, ids, objects, 3) == [15, 10, 11]
    assert _worst(values, ids, objects, 10) == [15, 10, 11, 14]
