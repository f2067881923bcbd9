"""``samrs inspect`` through Click's test runner, on the source fixtures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from samrs.cli import main

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sources"


def run(*args: str):
    return CliRunner().invoke(main, ["inspect", *args])


def test_json_document_with_counts_classes_and_errors():
    result = run("--source", "dota", "--root", str(FIXTURES / "dota"), "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)  # stdout holds the JSON document and nothing else
    assert (doc["images"], doc["objects"]) == (8, 7)
    assert doc["splits"] == {"train": 5, "val": 1, "test": 2}
    assert doc["classes"]["small-vehicle"] == 2 and doc["classes"]["helicopter"] == 0
    assert list(doc["classes"])[:2] == ["plane", "baseball-diamond"]  # table order
    assert (doc["truncated"], doc["difficult"], doc["clipped"]) == (2, 1, 1)
    assert doc["images_without_objects"] == 4
    assert len(doc["errors"]) == 8 and doc["objects_in_errors"] == 8
    first = doc["errors"][0]
    assert first["file"].endswith("P0002.txt") and first["line"] == 5
    assert first["stage"] == "read" and "malformed" in first["message"]
    assert "reading" not in result.stdout


def test_human_report_lists_every_error_with_file_and_line():
    result = run("--source", "dota", "--root", str(FIXTURES / "dota"))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "images:  8 (train 5, val 1, test 2); 4 without objects" in out
    assert "objects: 7 (truncated 2, difficult 1, clipped to the image 1)" in out
    assert "errors:  8 (objects not read: 8)" in out
    assert "P0002.txt:7: unknown class 'spaceship'" in out
    assert "P0004.png: missing label file" in out
    error_lines = [line for line in out.splitlines() if line.startswith(f"  {FIXTURES}")]
    assert len(error_lines) == 8
    assert (
        sum(".txt:" in line and line.split(".txt:")[1][:1].isdigit() for line in error_lines) == 6
    )


@pytest.mark.parametrize(
    ("args", "images", "objects", "errors"),
    [
        (["--source", "dior", "--root", "dior", "--version", "hbb"], 5, 4, 6),
        (["--source", "dior", "--root", "dior", "--split", "test"], 2, 1, 0),
        (["--source", "fair1m", "--root", "fair1m/validation"], 1, 1, 0),
        (["--source", "hrsc", "--root", "hrsc"], 3, 4, 3),
        (["--source", "isaid", "--root", "isaid"], 4, 6, 5),
    ],
)
def test_every_source(args, images, objects, errors):
    args[3] = str(FIXTURES / args[3])
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.stdout)
    assert (doc["images"], doc["objects"], len(doc["errors"])) == (images, objects, errors)


def test_skip_policy_and_samrs_order():
    result = run(
        "--source", "dota", "--root", str(FIXTURES / "dota"), "--version", "2.0",
        "--class-order", "samrs", "--on-unknown-class", "skip", "--json",
    )  # fmt: skip
    doc = json.loads(result.stdout)
    assert next(iter(doc["classes"])) == "large-vehicle" and len(doc["classes"]) == 18
    assert [e["stage"] for e in doc["errors"] if "spaceship" in e["message"]] == ["skip"]
    human = run(
        "--source", "dota", "--root", str(FIXTURES / "dota"), "--on-unknown-class", "skip"
    ).stdout
    assert "P0002.txt:7: [skip] unknown class 'spaceship'" in human


def test_missing_root_fails_with_one_line(tmp_path):
    result = run("--source", "dota", "--root", str(tmp_path / "nowhere"), "--json")
    assert result.exit_code != 0
    assert result.stdout == ""
    assert result.stderr.strip() == f"Error: dataset root not found: {tmp_path / 'nowhere'}"
    result = run("--source", "dota", "--root", str(FIXTURES / "dota"), "--version", "9")
    assert result.exit_code != 0 and "unknown dota version '9'" in result.stderr


def test_json_stdout_of_a_real_process_is_one_document():
    # a dataset whose reading logs a warning (a renamed duplicate id): it goes to stderr
    command = [sys.executable, "-m", "samrs.cli", "inspect", "--source", "dota",
               "--root", str(FIXTURES / "dota_dup"), "--json"]  # fmt: skip
    proc = subprocess.run(command, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["images"] == 3 and [e["line"] for e in doc["errors"]] == [None]
    assert set(doc["errors"][0]) >= {"file", "line", "message"}
    assert "not unique" in proc.stderr
