"""Measure a command in a fresh process: wall time and peak resident memory."""

from __future__ import annotations

import subprocess
import sys

from samrs.segmenters import needs_weights

_RUNNER = (
    "import resource, subprocess, sys, time; "
    "t = time.perf_counter(); "
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
    "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


def measure_command(args: list[str]) -> tuple[float, float]:
    """Run ``args`` in a child process; return its wall seconds and peak resident MB
    (``ru_maxrss`` of the child, KiB on Linux)."""
    out = subprocess.run(
        [sys.executable, "-c", _RUNNER, *args], check=True, capture_output=True, text=True
    )
    seconds, peak_kib = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), int(peak_kib) / 1024.0


def build_command(root: str, out: str, segmenter: str, *extra: str) -> list[str]:
    """``samrs build`` of a synthetic DOTA-layout dataset on the CPU (tiny SAM on seeded
    random weights for ``sam``/``sam-hq``)."""
    cmd = [sys.executable, "-m", "samrs.cli", "-q", "build", "--source", "dota",
           "--root", root, "--out", out, "--segmenter", segmenter, "--gpus", "0", *extra]  # fmt: skip
    if needs_weights(segmenter):
        cmd += ["--random-weights", "--model", "tiny", "--device", "cpu"]
    return cmd
