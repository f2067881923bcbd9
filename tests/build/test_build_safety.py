"""Builds that cannot hurt: one builder per OUT, nothing deleted that samrs did not write,
changed datasets and damaged parts detected on resume, clean messages for disk errors, and
the same bytes whatever the number of workers."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from samrs.build import BuildError, run_build
from samrs.build.checksums import verify_build
from samrs.build.layout import Layout
from samrs.build.lock import BuildLock
from samrs.cli import main
from samrs.quality import default_thresholds
from tests.helpers.build import config, output_files


@pytest.fixture(scope="module")
def reference(dota: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "out"
    assert run_build(config(dota, out)).state == "complete"
    return out


def _copy_build(reference: Path, tmp_path: Path) -> Path:
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    (out / ".samrs" / "lock").unlink(missing_ok=True)
    return out


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "samrs.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def _build_args(root: Path, out: Path, *extra: str) -> list[str]:
    return ["build", "--source", "dota", "--root", str(root), "--out", str(out),
            "--segmenter", "grabcut", "--shard-size", "2", "--gpus", "0", *extra]  # fmt: skip


# --- one builder per OUT ------------------------------------------------------------------------


@pytest.mark.slow
def test_second_builder_is_refused_naming_the_holder(dota: Path, tmp_path: Path) -> None:
    out = tmp_path / "locked"
    with BuildLock(Layout(out).lock):
        result = CliRunner().invoke(main, _build_args(dota, out))
        assert result.exit_code == 1
        assert "is being built right now" in result.output
        assert f"pid {os.getpid()}" in result.output
        assert not (out / "samrs.json").exists() and not (out / "manifest").exists()
    assert run_build(config(dota, out)).state == "complete"  # free again once released


@pytest.mark.slow
def test_concurrent_builds_never_mix(dota: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "race"
    first = _cli(*_build_args(dota, out))
    second = _cli(*_build_args(dota, out, "--min-area", "3000"))  # other options
    results = [p.communicate(timeout=300) for p in (first, second)]
    codes = [first.returncode, second.returncode]
    assert sorted(codes) == [0, 1], results
    loser = results[codes.index(1)][1].decode()
    assert "is being built right now" in loser or "another configuration" in loser
    meta = json.loads((out / "samrs.json").read_text())
    default_min_area = default_thresholds("grabcut").min_area
    winner_min_area = default_min_area if codes[0] == 0 else 3000
    assert meta["config"]["min_area"] == winner_min_area
    if winner_min_area == default_min_area:
        assert output_files(out) == output_files(reference)
    assert not list(Layout(out).temporaries())


# --- nothing deleted that samrs did not write -------------------------------------------------------


def test_overwrite_refuses_a_folder_that_is_not_a_build(dota: Path, tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    shutil.copytree(dota, victim)
    before = sorted(p.relative_to(victim) for p in victim.rglob("*"))
    result = CliRunner().invoke(main, _build_args(victim, victim, "--overwrite"))
    assert result.exit_code == 1 and "contains the dataset" in result.output
    other = tmp_path / "other"
    shutil.copytree(dota, other)
    result = CliRunner().invoke(main, _build_args(dota, other, "--overwrite"))
    assert result.exit_code == 1
    assert "is not a samrs build" in result.output and "will not delete" in result.output
    assert "train, val" in result.output and "pass --overwrite" not in result.output
    assert sorted(p.relative_to(victim) for p in victim.rglob("*")) == before
    assert sorted(p.relative_to(other) for p in other.rglob("*")) == before
    only_images = tmp_path / "photos"  # names a build also writes, but no samrs.json
    shutil.copytree(dota / "train" / "images", only_images / "images")
    photos = sorted((only_images / "images").iterdir())
    result = CliRunner().invoke(main, _build_args(dota, only_images, "--overwrite"))
    assert result.exit_code == 1 and "no samrs.json" in result.output
    assert sorted((only_images / "images").iterdir()) == photos


def test_out_inside_root_is_refused(dota: Path, tmp_path: Path) -> None:
    root = tmp_path / "root"
    shutil.copytree(dota, root)
    with pytest.raises(BuildError, match="inside the dataset"):
        run_build(config(root, root / "derived"))
    assert not (root / "derived").exists()


@pytest.mark.slow
def test_overwrite_keeps_files_samrs_did_not_write(
    reference: Path, dota: Path, tmp_path: Path
) -> None:
    out = _copy_build(reference, tmp_path)
    (out / "notes.txt").write_text("mine")
    summary = run_build(config(dota, out, overwrite=True, resume=False, min_area=3000))
    assert summary.state == "complete"
    assert (out / "notes.txt").read_text() == "mine"
    assert json.loads((out / "samrs.json").read_text())["config"]["min_area"] == 3000


# --- resume: changed datasets, damaged parts, leftovers ---------------------------------------------


@pytest.mark.slow
def test_resume_refuses_a_changed_dataset(dota: Path, tmp_path: Path) -> None:
    root = tmp_path / "data"
    shutil.copytree(dota, root)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "samrs.cli", *_build_args(root, out)],
        env={**os.environ, "SAMRS_FAULT_INJECT": "kill:1"},
        capture_output=True,
    )
    assert proc.returncode == 77
    committed = Layout(out).committed_shards()  # shard 0, unless killed while committing
    assert committed <= {0}
    metadata = (out / "samrs.json").read_bytes()
    label = sorted((root / "train" / "labelTxt").glob("*.txt"))[-1]
    with label.open("a") as f:
        f.write("10 10 60 10 60 40 10 40 plane 0\n")
    with pytest.raises(BuildError, match=r"changed since this build started \(1 modified \("):
        run_build(config(root, out))
    with pytest.raises(BuildError, match=label.name):
        run_build(config(root, out))
    (sorted((root / "train" / "labelTxt").glob("*.txt"))[0]).unlink()
    with pytest.raises(BuildError, match="1 removed"):
        run_build(config(root, out))
    assert Layout(out).committed_shards() == committed  # nothing mixed in
    assert (out / "samrs.json").read_bytes() == metadata  # nor described as the new plan
    assert run_build(config(root, out, overwrite=True, resume=False)).state == "complete"


@pytest.mark.slow
def test_resume_of_a_complete_build_checks_the_dataset(
    reference: Path, dota: Path, tmp_path: Path
) -> None:
    root = tmp_path / "data"
    shutil.copytree(dota, root)
    out = tmp_path / "out"
    assert run_build(config(root, out)).state == "complete"
    image = sorted((root / "train" / "images").glob("*.png"))[0]
    image.write_bytes(image.read_bytes() + b"\0")
    with pytest.raises(BuildError, match=image.name):
        run_build(config(root, out))


@pytest.mark.slow
@pytest.mark.parametrize("complete", [True, False])
def test_resume_rebuilds_a_truncated_part(
    reference: Path, dota: Path, tmp_path: Path, complete: bool
) -> None:
    out = _copy_build(reference, tmp_path)
    layout = Layout(out)
    part = layout.part("instances", 1)
    part.write_bytes(part.read_bytes()[: part.stat().st_size // 2])
    if not complete:
        layout.complete_marker.unlink()
    summary = run_build(config(dota, out))
    assert summary.state == "complete"
    assert summary.images_processed == 2  # shard 1 only
    assert output_files(out) == output_files(reference)


def test_resume_rewrites_a_damaged_coco_file(reference: Path, dota: Path, tmp_path: Path) -> None:
    out = _copy_build(reference, tmp_path)
    (out / "coco" / "instances.json").write_text("{}")
    summary = run_build(config(dota, out))
    assert summary.state == "complete" and summary.images_processed == 0
    assert output_files(out) == output_files(reference)


@pytest.mark.slow
def test_verify_finds_damage_and_repair_rebuilds_exactly_it(
    reference: Path, dota: Path, tmp_path: Path
) -> None:
    out = _copy_build(reference, tmp_path)
    assert verify_build(out).ok
    runner = CliRunner()
    assert runner.invoke(main, ["verify", str(out)]).exit_code == 0
    label = sorted((out / "semantic").glob("*.png"))[-1]
    data = bytearray(label.read_bytes())
    data[-20] ^= 0xFF  # same size: only a checksum sees it
    label.write_bytes(bytes(data))
    result = runner.invoke(main, ["verify", str(out), "--json"])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert not report["ok"] and list(report["damaged"]) == ["2"]
    assert "checksum mismatch" in report["damaged"]["2"][0]
    assert run_build(config(dota, out)).state == "already-complete"  # sizes alone look fine
    result = runner.invoke(main, ["verify", str(out), "--repair"])
    assert result.exit_code == 1 and "repaired" in result.output
    summary = run_build(config(dota, out))
    assert summary.state == "complete" and summary.images_processed == 2
    assert output_files(out) == output_files(reference)
    assert verify_build(out).ok


def test_resume_removes_leftover_temporary_files(
    reference: Path, dota: Path, tmp_path: Path
) -> None:
    out = _copy_build(reference, tmp_path)
    layout = Layout(out)
    layout.complete_marker.unlink()
    leftovers = [
        out / "semantic" / ".P0000.png.4242.tmp",
        out / "images" / ".P0001__1024__0___0.png.abc123.tmp",
        out / "coco" / ".ann-xyz",
        out / ".samrs.json.tmp",
        layout.tmp(7) / "images.parquet",
    ]
    for path in leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"partial")
    assert len(list(layout.temporaries())) == len(leftovers)
    assert run_build(config(dota, out)).state == "complete"
    assert not any(p.exists() for p in leftovers)
    assert output_files(out) == output_files(reference)


# --- file-system errors: one line naming the path ----------------------------------------------------


def test_read_only_out_is_one_clear_line(
    dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "ro" / "out"
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if str(self).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = CliRunner().invoke(main, _build_args(dota, out))
    assert result.exit_code == 1
    assert "Read-only file system" in result.output and str(out) in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_disk_full_at_the_end_keeps_the_shards(
    reference: Path, dota: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import samrs.outputs.coco as coco

    out = tmp_path / "full"
    original = coco.assemble_coco  # what writes instances.json at the end of a build

    def full(out_dir: Path, path: Path, fragments: object) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(coco, "assemble_coco", full)
    result = CliRunner().invoke(main, _build_args(dota, out))
    assert result.exit_code == 1, result.output
    line = result.output.strip().splitlines()[-1]
    assert "No space left on device" in line and "instances.json" in line
    assert "committed shards are kept" in line
    assert len(Layout(out).committed_shards()) == 3
    monkeypatch.setattr(coco, "assemble_coco", original)
    assert run_build(config(dota, out)).state == "complete"
    assert output_files(out) == output_files(reference)


def test_export_to_a_read_only_folder_is_one_clear_line(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "ro-export"
    real_mkdir = Path.mkdir

    def read_only(self: Path, *args: object, **kwargs: object) -> None:
        if str(self).startswith(str(target)):
            raise OSError(errno.EROFS, "Read-only file system", str(self))
        real_mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", read_only)
    result = CliRunner().invoke(
        main, ["export", str(reference), "--format", "mmseg", "--to", str(target)]
    )
    assert result.exit_code == 1
    assert "Read-only file system" in result.output and str(target) in result.output


# --- the same bytes whatever --workers, on the SAM path -----------------------------------------------


@pytest.mark.slow
def test_sam_on_cpu_same_bytes_for_one_and_two_workers(dota: Path, tmp_path: Path) -> None:
    sam = {"segmenter": "sam", "model": "tiny", "random_weights": True, "device": "cpu"}
    one = tmp_path / "one"
    two = tmp_path / "two"
    assert run_build(config(dota, one, **sam)).state == "complete"
    assert run_build(config(dota, two, workers=2, **sam)).state == "complete"
    assert output_files(one) == output_files(two)
    recorded = json.loads((one / "samrs.json").read_text())["config"]
    assert recorded["cpu_threads"] == (os.cpu_count() or 1)
    # another thread count is another configuration: resuming with it is refused
    with pytest.raises(BuildError, match="cpu_threads"):
        run_build(config(dota, one, threads=max(1, (os.cpu_count() or 1) + 1), **sam))
