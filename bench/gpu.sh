#!/usr/bin/env bash
# GPU measurements for the README: CHECKPOINT=/path/sam_vit_h_4b8939.pth bash bench/gpu.sh
set -euo pipefail
weights=${CHECKPOINT:+--checkpoint $CHECKPOINT}
samrs bench --device cuda --model vit_h ${weights:---random-weights} --images 64 --objects-per-image 16 --batch-size 8 --json > bench-gpu-vith.json
samrs bench --device cuda --model vit_h ${weights:---random-weights} --images 64 --objects-per-image 16 --batch-size 8 --compile --skip-reference --json > bench-gpu-vith-compile.json
cat bench-gpu-vith.json bench-gpu-vith-compile.json
