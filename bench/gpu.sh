#!/usr/bin/env bash
# The GPU measurements of the README in one run, one JSON per run in OUTDIR (bench-gpu/):
#   bash bench/gpu.sh [OUTDIR]          (CHECKPOINT=/path/sam_vit_h_4b8939.pth for real weights)
# vit_h, bf16, batch 8. Budget, from the per-step costs measured on an H200 (init ~10 s,
# compile ~50 s, model ~30 images/s, reference ~4 images/s): about 6 minutes on one
# H100/H200 (estimated; each run's wall time is printed on stderr). The reference loop is
# timed once (model masks, 20 objects); host_ms_per_mask comes from two short runs.
set -euo pipefail
out=${1:-bench-gpu}
mkdir -p "$out"
weights=${CHECKPOINT:+--checkpoint $CHECKPOINT}
common=(--device cuda --model vit_h ${weights:---random-weights} --batch-size 8 --json)
run() {  # NAME ARGS...: one samrs bench run, its JSON in $out/NAME.json, its wall time logged
  local name=$1
  shift
  local start=$SECONDS
  samrs bench "${common[@]}" "$@" > "$out/$name.json"
  echo "$name: $((SECONDS - start)) s" >&2
}
# the device path on this GPU first: device RLE bytes == host bytes, bf16 vs fp32 masks
python -m pytest -q -p no:cacheprovider tests/build/test_cuda.py >&2
# ratios on 96 images (the reference timed once; no replays: they are timed below)
run model-20-ref --masks model --images 96 --objects-per-image 20 --no-host-cost --workdir "$out/work"
run objects-20 --masks objects --images 96 --objects-per-image 20 --skip-reference --no-host-cost
run objects-100 --masks objects --images 96 --objects-per-image 100 --skip-reference --no-host-cost
run objects-300 --masks objects --images 32 --objects-per-image 300 --skip-reference --no-host-cost
run objects-100-writers0 --masks objects --images 48 --objects-per-image 100 --writers 0 \
  --skip-reference --no-host-cost
run objects-100-decoders0 --masks objects --images 48 --objects-per-image 100 --decoders 0 \
  --skip-reference --no-host-cost
run objects-100-compile --masks objects --images 96 --objects-per-image 100 --compile \
  --skip-reference --no-host-cost
# host_ms_per_mask, pipeline and reference on the same masks (16 images are enough)
run host-model-20 --masks model --images 16 --objects-per-image 20 --skip-reference
run host-objects-100 --masks objects --images 16 --objects-per-image 100 --skip-reference
# --gpus 1: a plain build from the files of the first run's dataset (worker process, cold model)
start=$(date +%s.%N)
samrs build --source dota --root "$out/work/data" --out "$out/work/gpus1" --overwrite \
  --segmenter sam --model vit_h ${weights:---random-weights} --batch-size 8 --gpus 1 \
  --json > "$out/build-gpus1.log" 2>&1
end=$(date +%s.%N)
python -c "import json, sys; s = float(sys.argv[2]) - float(sys.argv[1]); \
print(json.dumps({'command': 'samrs build --gpus 1', 'images': 96, 'seconds': s, \
'images_per_s': 96 / s}))" "$start" "$end" > "$out/build-gpus1.json"
python - "$out" <<'PY'
import json, pathlib, sys
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    r = json.loads(path.read_text())
    keys = ("pipeline_over_model_only", "pipeline_over_reference", "host_ms_per_mask_over_reference")
    row = {k: round(r[k], 3) for k in keys if k in r}
    for part in ("model_only", "pipeline", "reference"):
        if part in r:
            row[part] = {k: round(v, 2) for k, v in r[part].items() if k != "masks_per_s"}
    if "mask_agreement" in r:
        row["agreement_median"] = round(r["mask_agreement"]["median"], 4)
    print(path.stem, json.dumps(row if "images_per_s" not in r else r))
PY
