"""Build helpers shared by the build tests: a weight-free BuildConfig and a build's data files."""

from __future__ import annotations

from pathlib import Path

from samrs.build import BuildConfig


def config(root: Path, out: Path, **options: object) -> BuildConfig:
    values: dict[str, object] = {
        "source": "dota",
        "root": str(root),
        "out": str(out),
        "segmenter": "grabcut",
        "shard_size": 2,
        "progress": False,
    }
    values.update(options)
    return BuildConfig(**values)  # type: ignore[arg-type]


def output_files(out: Path) -> dict[str, bytes]:
    """Every data file of a build (what must be byte-identical between equal builds)."""
    files = {}
    for sub in ("manifest", "semantic", "images", "coco"):
        for path in sorted((out / sub).rglob("*")):
            if path.is_file():
                files[str(path.relative_to(out))] = path.read_bytes()
    return files
