"""MeSAM variants side by side: `mesam` (published network) vs `samrs-v1`, tiny model, CPU.

Trains the tiny MeSAM with random weights for 300 steps on a synthetic 128 px build
(24 train / 8 val images of red squares and blue discs, tests/tests.helpers.mesam.py) with three
seeds per variant and prints the validation mIoU. Run from the repository root:

    PYTHONPATH=.:tests python bench/mesam_variants.py /tmp/mesam-variants

About 2 minutes per run on one CPU thread.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from samrs.mesam.train import TrainConfig, train
from tests.helpers.mesam import make_seg_build


def main(root: Path) -> None:
    torch.set_num_threads(1)
    build = root / "build"
    if not build.exists():
        make_seg_build(build, n_train=24, n_val=8, size=128, background=True, seed=1)
    results: dict[str, list[float]] = {}
    for variant in ("mesam", "samrs-v1"):
        for seed in (0, 1, 2):
            cfg = TrainConfig(
                data=str(build), out=str(root / f"run-{variant}-{seed}"), model="tiny",
                random_weights=True, max_steps=300, epochs=1000, batch_size=4, image_size=128,
                warmup_steps=25, val_every=300, log_every=100, seed=seed, device="cpu",
                num_workers=0, variant=variant,
            )  # fmt: skip
            summary = train(cfg)
            results.setdefault(variant, []).append(float(summary["best_miou"]))
    for variant, values in results.items():
        print(variant, [round(v, 3) for v in values], "mean", round(statistics.mean(values), 3))
    (root / "result.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/mesam-variants"))
