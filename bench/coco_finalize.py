"""Finalize's COCO document: read every manifest part at the end, or assemble shard fragments.

    python bench/coco_finalize.py [--images 32 --objects-per-image 400 --shard-size 4] [--polygons]

Builds synthetic 1024 px images with many objects (``box`` segmenter, so the build is
quick), then times, in this process, for an RLE document (and a ``--polygons`` one):

- ``write_coco``: what finalize did before issue 14 (reads every part, makes every entry);
- ``assemble``: finalize now (``samrs.build.fragments.write_instances``, fragments in place);
- ``regenerate``: finalize when every fragment is missing (older build: all made again);
- ``fragments``: making all the fragments (done by the workers as shards commit).

The documents are checked byte-identical.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

from samrs.benchmarks.process import build_command
from samrs.benchmarks.run import make_bench_dataset
from samrs.build.config import BuildConfig
from samrs.build.fragments import coco_options, fragment_origin, write_instances
from samrs.build.layout import Layout
from samrs.outputs.coco import write_coco, write_fragment


def _timed(fn) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(root: Path, out: Path, shard_size: int, polygons: bool) -> dict[str, object]:
    extra = ["--shard-size", str(shard_size), *(["--polygons"] if polygons else [])]
    subprocess.run(build_command(str(root), str(out), "box", *extra), check=True)
    layout = Layout(out)
    config = BuildConfig(source="dota", root=str(root), out=str(out), polygons=polygons)
    doc = out / "coco" / "instances.json"
    old = out / "old.json"
    report: dict[str, object] = {"polygons": polygons, "bytes": doc.stat().st_size}
    report["write_coco_s"] = _timed(lambda: write_coco(out, old, polygons=polygons))
    report["assemble_s"] = _timed(lambda: write_instances(layout, config))
    assert doc.read_bytes() == old.read_bytes()
    shards = sorted(layout.committed_shards())
    for shard in shards:
        layout.coco_fragment(shard).unlink()
    report["regenerate_s"] = _timed(lambda: write_instances(layout, config))
    assert doc.read_bytes() == old.read_bytes()

    def all_fragments() -> None:
        for shard in shards:
            parts = json.loads(layout.shard_record(shard).read_text())["parts"]
            write_fragment(out / "frag.jsonl", layout.part("images", shard),
                           layout.part("instances", shard), fragment_origin(parts),
                           coco_options(config))  # fmt: skip

    report["fragments_s"] = _timed(all_fragments)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--objects-per-image", type=int, default=400)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--shard-size", type=int, default=4)
    parser.add_argument("--polygons", action="store_true", help="also a --polygons build")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_bench_dataset(root, args.images, args.objects_per_image, args.image_size)
        reports = [
            measure(root, Path(tmp) / f"out-{polygons}", args.shard_size, polygons)
            for polygons in ((False, True) if args.polygons else (False,))
        ]
    print(json.dumps({**vars(args), "runs": reports}, indent=2))


if __name__ == "__main__":
    main()
