"""``samrs stats``: numbers equal independent counts over the manifests, plots and report."""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner
from PIL import Image

from samrs.analysis.stats import (
    AREA_EDGES,
    METRIC_EDGES,
    METRICS,
    PLOTS,
    StatsError,
    area_bin,
    compute_stats,
    format_stats,
    label_pixel_counts,
    write_report,
)
from samrs.cli import main
from tests.helpers.outputs import FAKE, make_fake_build
from tests.helpers.quality import add_bad_image


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stats") / "SOTA"
    make_fake_build(out)
    add_bad_image(out)  # a third shard: more classes, rejections, several parts to stream
    return out


@pytest.fixture(scope="module")
def stats(build: Path) -> dict:
    return compute_stats(build)


def _frame(out: Path, table: str) -> pd.DataFrame:
    return pd.concat(
        [
            pq.read_table(p).to_pandas()
            for p in sorted((out / "manifest" / table).glob("*.parquet"))
        ],
        ignore_index=True,
    )


def test_instance_counts_match_direct_count(build: Path, stats: dict) -> None:
    inst = _frame(build, "instances")
    assert stats["instances"]["total"] == len(inst) == FAKE["n_instances"] + 4
    assert stats["instances"]["kept"] == int(inst["kept"].sum())
    assert stats["instances"]["rejected"] == int((~inst["kept"]).sum())
    reasons = inst.loc[~inst["kept"], "reject_reason"].value_counts().to_dict()
    assert stats["instances"]["reject_reasons"] == reasons == {"low-score": 3, "low-rbox-iou": 1}
    assert stats["instances"]["difficult"] == int(inst["difficult"].sum())
    assert stats["instances"]["difficult_kept"] == int((inst["difficult"] & inst["kept"]).sum())
    assert stats["instances"]["truncated"] == int(inst["truncated"].sum())
    assert stats["instances"]["substituted"] == int(inst["substituted"].sum()) == 1
    kept = inst[inst["kept"]]
    per_class = kept["class_name"].value_counts().to_dict()
    rejected = inst[~inst["kept"]]["class_name"].value_counts().to_dict()
    for c in stats["classes"]:
        assert c["instances"] == per_class.get(c["name"], 0), c["name"]
        assert c["rejected"] == rejected.get(c["name"], 0), c["name"]
        assert c["instances_share"] == pytest.approx(per_class.get(c["name"], 0) / len(kept))
        mean = kept.loc[kept["class_name"] == c["name"], "area"].mean()
        assert c["mean_area"] == (None if np.isnan(mean) else pytest.approx(mean))
    assert sum(c["instances_share"] for c in stats["classes"]) == pytest.approx(1.0)


def test_pixel_counts_match_labels(build: Path, stats: dict) -> None:
    totals: dict[int, int] = {}
    for png in sorted((build / "semantic").glob("*.png")):
        values, counts = np.unique(np.asarray(Image.open(png)), return_counts=True)
        for v, n in zip(values.tolist(), counts.tolist(), strict=True):
            totals[v] = totals.get(v, 0) + n
    for c in stats["classes"]:
        assert c["pixels"] == totals.get(c["id"], 0), c["name"]
    assert stats["pixels"]["unlabelled"] == totals[255]
    assert stats["pixels"]["labelled"] == sum(n for v, n in totals.items() if v != 255)
    assert stats["pixels"]["total"] == sum(totals.values())
    assert stats["pixels"]["invalid"] == stats["pixels"]["background"] == 0
    plane = next(c for c in stats["classes"] if c["name"] == "plane")
    # fake build plane: 20x15 box mask, partly under the small vehicle (36 px) -> 264;
    # injected image: fragment (5 px) and an 18x18 box
    assert plane["pixels"] == 264 + 5 + 18 * 18


def test_image_and_error_counts(build: Path, stats: dict) -> None:
    images = _frame(build, "images")
    errors = _frame(build, "errors")
    assert stats["images"]["total"] == len(images) == 4
    assert stats["images"]["by_status"] == images["status"].value_counts().to_dict()
    assert stats["images"]["by_split"] == images["split"].value_counts().to_dict()
    assert stats["images"]["tiles"] == int(images["tile_window"].notna().sum()) == 1
    assert stats["images"]["pixels"] == int((images["width"] * images["height"]).sum())
    assert stats["images"]["with_label"] == 4 and stats["images"]["missing_label"] == 0
    n_obj = {str(k): v for k, v in sorted(images["n_objects"].value_counts().items())}
    n_kept = {str(k): v for k, v in sorted(images["n_kept"].value_counts().items())}
    assert stats["objects_per_image"]["n_objects"] == n_obj == {"0": 1, "3": 2, "4": 1}
    # SAMRS's subset sizes count only images with objects (its scripts skip the others)
    assert stats["images"]["with_objects"] == int((images["n_objects"] > 0).sum()) == 3
    assert "images with objects: 3 (SAMRS's count" in format_stats(stats)
    assert stats["objects_per_image"]["n_kept"] == n_kept
    assert stats["objects_per_image"]["mean_objects"] == pytest.approx(images["n_objects"].mean())
    by_stage = {
        stage: {"rows": len(g), "objects": int(g["n_objects"].sum())}
        for stage, g in errors.groupby("stage")
    }
    assert stats["errors"]["by_stage"] == by_stage == {"read": {"rows": 1, "objects": 1}}


def test_area_and_metric_histograms(build: Path, stats: dict) -> None:
    inst = _frame(build, "instances")
    kept = inst[inst["kept"] & (inst["area"] > 0)]
    expected = np.zeros(len(AREA_EDGES), dtype=int)
    for a in kept["area"]:
        expected[int(np.floor(np.log2(a)))] += 1
    assert stats["mask_area"]["kept"] == expected.tolist()
    assert sum(sum(v) for v in stats["mask_area"]["per_class"].values()) == len(kept)
    plane = [int(np.floor(np.log2(a))) for a in kept.loc[kept["class_name"] == "plane", "area"]]
    assert [
        i for i, n in enumerate(stats["mask_area"]["per_class"]["plane"]) for _ in range(n)
    ] == sorted(plane)
    for m in METRICS:
        for part, rows in (("kept", inst[inst["kept"]]), ("rejected", inst[~inst["kept"]])):
            values = rows[m].dropna().to_numpy(dtype=float)
            hist = np.histogram(np.clip(values, 0, 1), bins=METRIC_EDGES)[0]
            assert stats["metrics"][m][part] == hist.tolist(), (m, part)
        assert stats["metrics"][m]["mean"] == pytest.approx(inst[m].astype(float).mean())
        assert stats["metrics"][m]["missing"] == int(inst[m].isna().sum())


def test_area_bins_are_exact_at_powers_of_two() -> None:
    areas = np.array([1, 2, 3, 4, 7, 8, 1023, 1024, 2**28 - 1, 2**28, 2**40])
    assert area_bin(areas).tolist() == [0, 1, 1, 2, 2, 3, 9, 10, 27, 28, 28]


def test_label_pixel_counts_with_and_without_background() -> None:
    label = np.array([[0, 0, 1, 255], [2, 3, 200, 255]], dtype=np.uint8)
    plain = label_pixel_counts(label, 3, background=False)
    assert plain["classes"].tolist() == [2, 1, 1]
    assert (plain["background"], plain["unlabelled"], plain["invalid"]) == (0, 2, 2)
    shifted = label_pixel_counts(label, 3, background=True)
    assert shifted["classes"].tolist() == [1, 1, 1]  # values 1, 2, 3 are classes 0, 1, 2
    assert (shifted["background"], shifted["unlabelled"], shifted["invalid"]) == (2, 2, 1)


def _decoded_images(html: str) -> list[Image.Image]:
    blobs = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    return [Image.open(io.BytesIO(base64.b64decode(b))) for b in blobs]


@pytest.mark.slow
def test_report_files(build: Path, stats: dict) -> None:
    written = write_report(build, stats)
    assert json.loads(written["stats"].read_text()) == stats
    for stem, _ in PLOTS:
        with Image.open(written[stem]) as im:
            im.load()
            assert im.format == "PNG" and im.width > 300 and im.height > 150
            assert len(np.unique(np.asarray(im.convert("L")))) > 5  # something is drawn
    html = written["report"].read_text()
    images = _decoded_images(html)
    # the plots, then one picture per gallery figure and one contact sheet per worst list
    assert len(images) == len(PLOTS) + html.count("<figure") + html.count("<h3>lowest")
    assert html.count("<figure") >= 2 and html.count("<h3>lowest") >= 1
    assert all(im.width > 300 for im in images[: len(PLOTS)])
    for name in ("plane", "small-vehicle", "storage-tank", "low-score"):
        assert name in html
    assert "src='http" not in html and 'src="http' not in html  # self-contained
    first = {k: p.read_bytes() for k, p in written.items()}
    again = write_report(build, compute_stats(build))
    assert {k: p.read_bytes() for k, p in again.items()} == first  # deterministic


@pytest.mark.slow
def test_compare_puts_builds_side_by_side(build: Path, stats: dict, tmp_path: Path) -> None:
    other = tmp_path / "FAST"
    make_fake_build(other)
    other_stats = compute_stats(other)
    assert other_stats["instances"]["total"] == FAKE["n_instances"]
    written = write_report(build, stats, [("FAST", other_stats)], gallery=0)
    html = written["report"].read_text()
    assert "SOTA" in html and "FAST" in html and "SOTA vs FAST" in html
    assert len(_decoded_images(html)) == len(PLOTS)
    assert "SOTA<br>instances" in html and "FAST<br>instances" in html  # side by side
    # stats.json keeps only the numbers of OUT itself
    assert json.loads(written["stats"].read_text()) == stats


def test_missing_label_and_bad_class_id(tmp_path: Path) -> None:
    out = tmp_path / "OUT"
    make_fake_build(out)
    (out / "semantic" / "P0003.png").unlink()
    s = compute_stats(out)
    assert s["images"]["missing_label"] == 1 and s["images"]["with_label"] == 2
    assert any("P0003" in p for p in s["problems"])
    part = out / "manifest" / "instances" / "part-00000.parquet"
    table = pq.read_table(part)
    ids = pa.array([99] * table.num_rows, type=pa.int32())
    pq.write_table(
        table.set_column(table.schema.get_field_index("class_id"), "class_id", ids), part
    )
    with pytest.raises(StatsError, match="class_id 99"):
        compute_stats(out)


@pytest.mark.slow
def test_cli_stats_json_and_compare(build: Path, tmp_path: Path) -> None:
    other = tmp_path / "SIOR"
    make_fake_build(other)
    runner = CliRunner()
    result = runner.invoke(main, ["stats", str(build), "--compare", str(other), "--json"])
    assert result.exit_code == 0, result.output
    assert result.stderr == ""  # no progress with --json
    doc = json.loads(result.stdout)
    assert doc["instances"]["total"] == 10
    assert [c["name"] for c in doc["compare"]] == ["SIOR"]
    assert doc["compare"][0]["stats"]["instances"]["total"] == FAKE["n_instances"]
    assert (build / "stats" / "report.html").is_file()

    text = runner.invoke(main, ["stats", str(other)])
    assert text.exit_code == 0, text.output
    assert "6 instances: 4 kept" in text.stdout and "report.html" in text.stdout
    assert "semantic labels" in text.stderr

    bad = runner.invoke(main, ["stats", str(tmp_path)])
    assert bad.exit_code == 1 and "samrs.json" in bad.output


@pytest.mark.slow
def test_end_to_end_synthetic_build(tmp_path: Path) -> None:
    """synth -> build (grabcut) -> stats equal counts made directly from the outputs."""
    from samrs.analysis.audit import compute_audit
    from samrs.analysis.show import render_image
    from samrs.build.config import BuildConfig
    from samrs.build.run import run_build
    from samrs.synth import write_synthetic

    synth = write_synthetic("dota", tmp_path / "src", 4, 0)
    out = tmp_path / "out"
    run_build(
        BuildConfig(
            source="dota", root=str(synth.root), out=str(out), segmenter="grabcut", progress=False
        )
    )
    s = compute_stats(out)

    inst = _frame(out, "instances")
    images = _frame(out, "images")
    assert s["instances"]["total"] == len(inst) == synth.n_objects
    assert s["images"]["total"] == len(images) == synth.n_images
    assert s["images"]["by_status"].get("empty", 0) == synth.n_empty
    kept = inst[inst["kept"]]["class_name"].value_counts().to_dict()
    assert {c["name"]: c["instances"] for c in s["classes"] if c["instances"]} == kept
    assert sum(kept.values()) == s["instances"]["kept"]
    pixels = np.zeros(256, dtype=np.int64)
    for png in (out / "semantic").glob("*.png"):
        pixels += np.bincount(np.asarray(Image.open(png)).ravel(), minlength=256)
    assert [c["pixels"] for c in s["classes"]] == pixels[: len(s["classes"])].tolist()
    assert s["pixels"]["unlabelled"] == pixels[255]
    assert s["pixels"]["total"] == int((images["width"] * images["height"]).sum())
    n_obj = {str(k): v for k, v in sorted(images["n_objects"].value_counts().items())}
    assert s["objects_per_image"]["n_objects"] == n_obj
    assert s["metrics"]["score"]["missing"] == len(inst)  # grabcut has no scores

    audit = compute_audit(out, worst=4)
    assert "score" not in audit["worst"] and len(audit["worst"]["rbox_iou"]) == 4
    assert audit["worst"]["rbox_iou"][0]["rbox_iou"] == pytest.approx(
        inst["rbox_iou"].min(), abs=1e-6
    )
    first = images.sort_values("image_id").iloc[0]
    drawn = render_image(out, first["image_id"])
    assert drawn.shape == (first["height"], first["width"], 3)


def test_class_plots_of_different_class_tables_get_a_panel_each() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from samrs.analysis.stats import _class_bars

    def fake(names: list[str]) -> dict:
        return {"classes": [{"name": n, "instances": i + 1} for i, n in enumerate(names)]}

    same = _class_bars(plt, [("a", fake(["x", "y"])), ("b", fake(["x", "y"]))], "instances", "n")
    differ = _class_bars(plt, [("a", fake(["x", "y"])), ("b", fake(["z"]))], "instances", "n")
    assert len(same.axes) == 1 and len(differ.axes) == 2
    assert [t.get_text() for t in differ.axes[1].get_xticklabels()] == ["z"]
    plt.close("all")


def test_class_bars_use_the_palette_largest_first(build: Path, stats: dict) -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    from samrs.analysis.stats import _class_bars

    fig = _class_bars(plt, [("SOTA", stats)], "instances", "instances")
    ax = fig.axes[0]
    names = [t.get_text() for t in ax.get_xticklabels()]
    heights = [p.get_height() for p in ax.patches]
    counts = {c["name"]: c["instances"] for c in stats["classes"]}
    assert heights == [counts[n] for n in names] == sorted(heights, reverse=True)
    palette = {c["name"]: c["color"] for c in stats["classes"]}
    for name, bar in zip(names, ax.patches, strict=True):
        rgb = [round(v * 255) for v in bar.get_facecolor()[:3]]
        assert rgb == list(palette[name]), name
    plt.close(fig)


@pytest.mark.slow
def test_report_gallery_worst_masks_and_empty_tables(build: Path, stats: dict) -> None:
    html = write_report(build, stats)["report"].read_text()
    gallery = html[html.index("<h2 id='gallery'>") : html.index("<h2 id='worst'>")]
    worst = html[html.index("<h2 id='worst'>") :]
    figures = dict(re.findall(r"<figure id='(img-\d+)'>.*?<figcaption>(.*?)<", gallery))
    assert len(figures) >= 2
    # every worst mask links to a gallery figure of its image, which links back to it
    links = re.findall(r"<span id='inst-(\d+)'>\d+</span></td><td class='l'><a href='#(img-\d+)'>(.*?)</a>", worst)  # fmt: skip
    assert links
    for instance, target, image_id in links:
        assert figures[target] == image_id
        fig = re.search(rf"<figure id='{target}'>.*?</figure>", gallery).group(0)
        assert f"href='#inst-{instance}'" in fig
    # a table without rows says so (the fake build has no error rows of stage "tile")
    assert re.search(r"<td class='l none' colspan='\d+'>none</td>", html) or "none" in html
    empty = write_report(build, {**stats, "errors": {**stats["errors"], "by_stage": {}}}, gallery=0)
    text = empty["report"].read_text()
    section = text[text.index("Errors by stage (rows)") : text.index("Errors by stage (objects)")]
    assert "<td class='l none' colspan='2'>none</td>" in section
