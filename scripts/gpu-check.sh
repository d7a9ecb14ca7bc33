#!/usr/bin/env bash
# The GPU check of issue 18: build the GPU environment, then run `streamlabel bench
# throughput` with the shared embedder actor (one bf16/fp16 model on the GPU, the
# workers tokenizing) and several stream workers, sampling GPU memory as it runs.
#
#   scripts/gpu-check.sh [--dry-run] [--items N] [--workers N] [--out DIR]
#
# On a machine with an NVIDIA GPU (nvidia-smi answers) it creates .venv-gpu (torch's
# default CUDA wheel from PyPI, then the project with the `gpu` extra) unless
# VENV names one that exists, and writes DIR/throughput.json (the bench's JSON),
# DIR/gpu-memory.csv (used MiB once a second) and DIR/nvidia-smi.txt. Budget: under
# 10 minutes with a warm pip cache.
#
# --dry-run, or no GPU: the same path on CPU with the project's .venv and a small
# stream (the embedder actor without a GPU), so `make test` proves the script runs.
set -euo pipefail
cd "$(dirname "$0")/.."

dry=0 items=20000 workers=4 out=gpu-check
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --items) items="$2"; shift ;;
    --workers) workers="$2"; shift ;;
    --out) out="$2"; shift ;;
    -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

if [[ $dry == 0 ]] && ! { command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; }; then
  echo "gpu-check: no GPU answers nvidia-smi: dry run on CPU" >&2
  dry=1
fi
mkdir -p "$out"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export STREAMLABEL_SUPERVISOR__EMBEDDER=actor

if [[ $dry == 1 ]]; then
  py=${VENV:-.venv}/bin/python
  [[ -x $py ]] || { echo "gpu-check: $py missing (make install)" >&2; exit 2; }
  export STREAMLABEL_RAY__EMBEDDER_NUM_GPUS=0
  [[ $items == 20000 ]] && items=300
  [[ $workers == 4 ]] && workers=2
  paced=3 loads=0.5
else
  # model.batch_size 32 is the CPU default (less padding for one thread); a GPU
  # wants its batches large
  export STREAMLABEL_MODEL__BATCH_SIZE=${STREAMLABEL_MODEL__BATCH_SIZE:-256}
  venv=${VENV:-.venv-gpu}
  if [[ ! -x $venv/bin/python ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q --upgrade pip
    "$venv/bin/pip" install -q torch            # the default (CUDA) wheel
    "$venv/bin/pip" install -q -e '.[gpu]'
  fi
  py=$venv/bin/python
  nvidia-smi > "$out/nvidia-smi.txt"
  "$py" -c 'import torch, faiss; assert torch.cuda.is_available(), "torch sees no GPU"; print("torch", torch.__version__, torch.cuda.get_device_name(0), "faiss GPUs", faiss.get_num_gpus())' \
    | tee -a "$out/nvidia-smi.txt"
  (while sleep 1; do nvidia-smi --query-gpu=timestamp,memory.used,utilization.gpu --format=csv,noheader,nounits; done) \
    > "$out/gpu-memory.csv" &
  sampler=$!
  trap 'kill $sampler 2>/dev/null || true' EXIT
  paced=20 loads=0.1,0.5,0.9
fi

"$py" -m streamlabel.cli bench throughput --items "$items" --workers "$workers" \
  --paced-s "$paced" --loads "$loads" --json | tee "$out/bench.log"
tail -n 1 "$out/bench.log" > "$out/throughput.json"
"$py" - "$out/throughput.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print("gpu-check:", {k: r[k] for k in r if not isinstance(r[k], (dict, list))})
PY
