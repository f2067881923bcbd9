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
import tempfile
from pathlib import Path

from samrs.benchmarks.process import build_command, measure_command
from samrs.benchmarks.run import make_bench_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=200)
    parser.add_argument("--large", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--objects-per-image", type=int, default=10)
    parser.add_argument("--segmenter", default="box")
    parser.add_argument("--shard-size", type=int, default=64)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for n in (args.small, args.large):
            root = Path(tmp) / f"data{n}"
            make_bench_dataset(root, n, args.objects_per_image, args.image_size)
            out = str(Path(tmp) / f"out{n}")
            cmd = build_command(
                str(root), out, args.segmenter, "--shard-size", str(args.shard_size)
            )
            results[n] = measure_command(cmd)[1]
    report = {
        "images": [args.small, args.large],
        "peak_rss_mb": [results[args.small], results[args.large]],
        "ratio_large_over_small": results[args.large] / results[args.small],
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
