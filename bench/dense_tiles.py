"""Dense tiles: how fast a build finishes images holding hundreds of small objects.

    python bench/dense_tiles.py [--images 16 --objects-per-image 400 --segmenter box]

Runs ``samrs build`` on synthetic 1024 px images with many objects (12 to 170 px ellipses)
in a fresh process and prints wall seconds, images/s, objects/s and peak memory. With the
``box`` segmenter the model costs nothing, so this measures everything after it: quality
metrics, run-length encoding, painting, writing.
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
    parser.add_argument("--images", type=int, default=16)
    parser.add_argument("--objects-per-image", type=int, default=400)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--segmenter", default="box")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "data"
        make_bench_dataset(root, args.images, args.objects_per_image, args.image_size)
        cmd = build_command(str(root), str(Path(tmp) / "out"), args.segmenter)
        seconds, peak_mb = measure_command(cmd)
    objects = args.images * args.objects_per_image
    report = {
        "images": args.images,
        "objects_per_image": args.objects_per_image,
        "image_size": args.image_size,
        "segmenter": args.segmenter,
        "seconds": seconds,
        "images_per_s": args.images / seconds,
        "objects_per_s": objects / seconds,
        "peak_rss_mb": peak_mb,
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
