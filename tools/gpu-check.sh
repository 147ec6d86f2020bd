#!/usr/bin/env bash
# The one prepared check for a lent GPU machine (no Rust there: build here, carry the binary).
#
#   cargo build --release --features cuda,wgpu && strip target/release/treadc
#   TREADC=target/release/treadc bash tools/gpu-check.sh      # on the GPU machine, <= BUDGET s (480)
#
# Prints one JSON object per line (and appends them to $OUT/results.jsonl):
#   devices   what `treadc devices --json` finds (CUDA driver, NVRTC, GPUs, wgpu adapters)
#   bench     `treadc bench` on cuda (and wgpu) for DiT-S/2 b=64 and DiT-XL/2 b=32, dense and
#             routed (the paper's route) in one interleaved run, with the GPU's peak memory
#             (nvidia-smi, sampled every 0.2 s) while it ran
#   torch     ../shared/bench/torch_dit.py beside it: eager fp32, eager bf16, torch.compile bf16
#             (skipped, saying why, where torch with CUDA is missing)
#   train     a 2-minute MNIST-DiT-small run on cuda, then its FD and accuracy (`treadc eval`)
#   bf16      treadc has no --precision bf16 yet: reported as such, not measured
# Each step has its own time limit; a failure is a line with "error", never the end of the run.
set -uo pipefail
cd "$(dirname "$0")/.."
TREADC=${TREADC:-target/release/treadc}
OUT=${OUT:-target/gpu-check}
TORCH_DIT=${TORCH_DIT:-}
for p in shared/bench/torch_dit.py ../shared/bench/torch_dit.py; do
  [[ -z "$TORCH_DIT" && -f "$p" ]] && TORCH_DIT=$p
done
mkdir -p "$OUT"
: >"$OUT/results.jsonl"
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}

emit() { echo "$1" | tee -a "$OUT/results.jsonl"; }
# The whole script stays within BUDGET seconds (default 8 minutes): a step that would start
# later is reported as skipped.
BUDGET=${BUDGET:-480}
in_budget() {
  local need=$1 what=$2
  if ((SECONDS + need > BUDGET)); then
    emit "{\"check\":\"$what\",\"error\":\"skipped: ${SECONDS} s used, this step may take ${need} s of the ${BUDGET} s budget\"}"
    return 1
  fi
}
# A JSON string of free text (quotes, backslashes, newlines escaped).
quote() { python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().strip()[-600:]))'; }

# Peak GPU memory (MiB, all processes) while "$@" runs; the command's stdout goes to $OUT/last.
with_peak_memory() {
  local peak_file="$OUT/peak" pid
  echo 0 >"$peak_file"
  if command -v nvidia-smi >/dev/null; then
    (while :; do
      m=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | sort -n | tail -1)
      [[ -n "$m" && "$m" -gt "$(cat "$peak_file")" ]] && echo "$m" >"$peak_file"
      sleep 0.2
    done) &
    pid=$!
  fi
  "$@" >"$OUT/last" 2>"$OUT/last.err"
  local rc=$?
  [[ $rc == 124 ]] && echo "timed out (the step's limit)" >>"$OUT/last.err"
  [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  PEAK=$(cat "$peak_file")
  return $rc
}

if [[ ! -x "$TREADC" ]]; then
  emit "{\"check\":\"setup\",\"error\":\"no treadc binary at $TREADC (set TREADC=PATH)\"}"
  exit 1
fi

# 1. What the binary can run on.
if d=$(timeout 60 "$TREADC" devices --json 2>/dev/null); then
  emit "{\"check\":\"devices\",\"report\":$d}"
else
  emit "{\"check\":\"devices\",\"error\":$(echo "treadc devices failed" | quote)}"
fi
command -v nvidia-smi >/dev/null &&
  emit "{\"check\":\"nvidia-smi\",\"report\":$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | quote)}"

# 2. treadc's training step on the GPU backends, dense and routed, with peak memory.
for backend in cuda wgpu; do
  for spec in "dit-s2 64" "dit-xl2 32"; do
    set -- $spec
    [[ $backend == wgpu && $1 == dit-xl2 ]] && continue  # wgpu: the small model only
    in_budget 60 bench || continue
    if with_peak_memory timeout 60 "$TREADC" bench "models/$1.json" --backend "$backend" \
      --batch "$2" --route paper --steps 5 --warmup 2 --json; then
      emit "{\"check\":\"bench\",\"backend\":\"$backend\",\"model\":\"$1\",\"batch\":$2,\"peak_gpu_mib\":$PEAK,\"result\":$(tail -1 "$OUT/last")}"
    else
      emit "{\"check\":\"bench\",\"backend\":\"$backend\",\"model\":\"$1\",\"batch\":$2,\"error\":$(quote <"$OUT/last.err")}"
    fi
  done
done

# 3. PyTorch beside it, same shapes, FLOPs and route.
if [[ -z "$TORCH_DIT" ]]; then
  emit '{"check":"torch","error":"torch_dit.py not found (shared/bench/ or ../shared/bench/; set TORCH_DIT=PATH)"}'
elif ! python3 -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  emit '{"check":"torch","error":"python3 has no torch with a usable CUDA device"}'
else
  for spec in "dit-s2 64" "dit-xl2 32"; do
    set -- $spec
    for mode in "--dtype fp32" "--dtype bf16" "--dtype bf16 --compile"; do
      in_budget 60 torch || continue
      # shellcheck disable=SC2086
      if with_peak_memory timeout 60 python3 "$TORCH_DIT" --model "models/$1.json" --batch "$2" \
        --device cuda $mode --steps 5 --warmup 2; then
        emit "{\"check\":\"torch\",\"model\":\"$1\",\"mode\":\"$mode\",\"peak_gpu_mib\":$PEAK,\"result\":$(tail -1 "$OUT/last")}"
      else
        emit "{\"check\":\"torch\",\"model\":\"$1\",\"mode\":\"$mode\",\"error\":$(quote <"$OUT/last.err")}"
      fi
    done
  done
fi

# 4. Up to two minutes of MNIST-DiT-small on the GPU (what the budget leaves, less 100 s for the
#    evaluation), then its FD and accuracy; the run keeps the checkpoint it reached.
run="$OUT/mnist-cuda"
rm -rf "$run"
train_s=$((BUDGET - SECONDS - 100))
((train_s > 120)) && train_s=120
if ((train_s < 20)); then
  emit "{\"check\":\"train\",\"error\":\"skipped: ${SECONDS} s of the ${BUDGET} s budget used\"}"
else
  start=$SECONDS
  timeout "$train_s" "$TREADC" train models/mnist-dit-small.json --data mnist --backend cuda \
    --steps 100000 --out "$run" --ckpt-every 250 --sample-every 0 --eval-every 0 --quiet \
    >"$OUT/last" 2>"$OUT/last.err"
  trained=$((SECONDS - start))
  steps=$(tail -1 "$run/metrics.jsonl" 2>/dev/null |
    python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["step"])' 2>/dev/null || echo 0)
  if [[ -f "$run/checkpoint.safetensors" ]] &&
    e=$(timeout 90 "$TREADC" eval "$run" --backend cuda --n 500 --cfg 1.5 --json 2>"$OUT/last.err"); then
    emit "{\"check\":\"train\",\"model\":\"mnist-dit-small\",\"seconds\":$trained,\"steps_logged\":$steps,\"eval\":$e}"
  else
    emit "{\"check\":\"train\",\"model\":\"mnist-dit-small\",\"seconds\":$trained,\"steps_logged\":$steps,\"error\":$(quote <"$OUT/last.err")}"
  fi
fi

# 5. bf16: not built yet (issue 24, item 3).
emit '{"check":"bf16","error":"treadc has no --precision bf16 yet; nothing to measure"}'
