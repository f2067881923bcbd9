#!/usr/bin/env bash
# CPU measurements for the README (tiny SAM, random weights).
set -euo pipefail
samrs bench --device cpu --model tiny --images 16 --objects-per-image 20 --json > bench-cpu-w1.json
samrs bench --device cpu --model tiny --images 16 --objects-per-image 20 --workers 2 --skip-reference --json > bench-cpu-w2.json
python bench/memory_scaling.py > bench-memory.json
python bench/dense_tiles.py > bench-dense.json
cat bench-cpu-w1.json bench-cpu-w2.json bench-memory.json bench-dense.json
