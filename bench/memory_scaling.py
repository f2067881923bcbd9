"""Peak memory of `samrs build` for 200 vs 2,000 images: it must not grow with the dataset.

    python bench/memory_scaling.py [--small 200 --large 2000 --segmenter box]
    python bench/memory_scaling.py --small 50 --large 200 --segmenter sam   # tiny SAM, CPU

Each build runs in its own process; its peak resident memory (ru_maxrss of the child) is
printed, with the ratio large / small. Uses small images so the run takes about a minute
with ``box`` (tiny SAM: about 0.3 s per image on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from samrs.benchmarks.run import make_bench_dataset


def peak_rss_mb(args: list[str]) -> float:
    """Run a command in a fresh process and return its peak resident memory in MB."""
    code = (
        "import resource, subprocess, sys; "
        "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, *args], check=True, capture_output=True, text=True
    )
    return int(out.stdout.strip().splitlines()[-1]) / 1024.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--objects-per-image", type=int, default=10)
    parser.add_argument("--segmenter", default="box")
    parser.add_argument("--shard-size", type=int, default=64)
    args = parser.parse_args()
    _ = resource  # documented: ru_maxrss is in KiB on Linux
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            root = Path(tmp) / f"data{n}"
            make_bench_dataset(root, n, args.objects_per_image, args.image_size)
            cmd = [sys.executable, "-m", "samrs.cli", "-q", "build", "--source", "dota",
                   "--root", str(root), "--out", str(Path(tmp) / f"out{n}"),
                   "--segmenter", args.segmenter, "--gpus", "0", "--shard-size", str(args.shard_size)]  # fmt: skip
            if args.segmenter in ("sam", "sam-hq"):  # the tiny model on seeded random weights
                cmd += ["--random-weights", "--model", "tiny", "--device", "cpu"]
            results[n] = peak_rss_mb(cmd)
    report = {
        "images": [args.small, args.large],
        "peak_rss_mb": [results[args.small], results[args.large]],
        "ratio_large_over_small": results[args.large] / results[args.small],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
