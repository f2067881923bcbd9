#!/usr/bin/env bash
# CPU measurements for the README (tiny SAM, random weights). The CPU targets:
# 8 images, --masks objects and --masks model, repeated 3 times (report the medians).
set -euo pipefail
for i in 1 2 3; do
  for masks in objects model; do
    samrs bench --device cpu --model tiny --images 8 --objects-per-image 20 --masks $masks --json > bench-cpu-8-$masks-$i.json
  done
done
samrs bench --device cpu --model tiny --images 16 --objects-per-image 20 --json > bench-cpu-w1.json
samrs bench --device cpu --model tiny --images 16 --objects-per-image 20 --workers 2 --skip-reference --json > bench-cpu-w2.json
python bench/memory_scaling.py > bench-memory.json
python bench/dense_tiles.py > bench-dense.json
cat bench-cpu-8-*.json bench-cpu-w1.json bench-cpu-w2.json bench-memory.json bench-dense.json
