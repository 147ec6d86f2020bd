#!/usr/bin/env bash
# Reruns docs/experiments/tread-claim-deep.md: MNIST-DiT-deep trained dense (--route none) and
# routed (the paper's placement, 0.5:2-10) for the same training wall time, several seeds per
# arm, evaluated along the way, on the bundled digits and on Fashion-MNIST; then draws FD and
# accuracy against wall time, one mean curve and range per arm, and prints the arms' final
# values and times to dense's final FD.
#
#   tools/experiments/tread-claim-deep.sh               # both data sets, seeds 0 1 2, 240 s a run
#   tools/experiments/tread-claim-deep.sh mnist         # or: fashion
#   SEEDS="0 1 2 3 4" BUDGET=480 tools/experiments/tread-claim-deep.sh
#
# Fashion-MNIST is read from FASHION (default: Debian's dataset-fashion-mnist package,
# /usr/share/datasets/fashion-mnist); its classifier is trained first with
# `treadc train-classifier --data idx:DIR` and scores the evaluations against the test set.
# Runs already finished (a checkpoint in their folder) are kept, so an interrupted sweep goes on
# where it stopped; with a larger BUDGET they are resumed up to it. Dense and routed runs of a seed follow each other, so that a slow drift of
# the machine's speed falls on both arms alike. Run it on an otherwise idle machine: the
# comparison is of wall time.
set -euo pipefail
cd "$(dirname "$0")/../.."
WHICH=${1:-all}
SEEDS=${SEEDS:-"0 1 2"}
BUDGET=${BUDGET:-240}
OUT=${OUT:-runs/claim-deep}
FIGS=${FIGS:-$OUT}
FASHION=${FASHION:-/usr/share/datasets/fashion-mnist}
if [ -z "${TREADC:-}" ]; then
  cargo build --release --quiet
  TREADC=target/release/treadc
fi

# sweep NAME DATA [train flags...]: the runs of both arms, then the figures and summary.
sweep() {
  local name=$1 data=$2
  shift 2
  local dir="$OUT/$name"
  mkdir -p "$dir" "$FIGS"
  for seed in $SEEDS; do
    for route in none paper; do
      local run="$dir/$route-s$seed"
      if [ -f "$run/checkpoint.safetensors" ]; then
        # A finished run is kept, or extended to a larger BUDGET (resuming is bit-exact).
        local done_s
        done_s=$(tail -n 1 "$run/metrics.jsonl" | sed -n 's/.*"elapsed_s":\([0-9.]*\).*/\1/p')
        if awk "BEGIN { exit !(${done_s:-0} + 1 >= $BUDGET) }"; then
          echo "kept $run"
        else
          echo "extending $run to $BUDGET s"
          "$TREADC" train --resume "$run" --steps 1000000 --time-budget "$BUDGET" --quiet
        fi
        continue
      fi
      rm -rf "$run"
      echo "training $run"
      "$TREADC" train models/mnist-dit-deep.json --data "$data" --route "$route" \
        --seed "$seed" --steps 1000000 --time-budget "$BUDGET" --eval-every 300 --eval-n 250 \
        --cfg 1.5 --sample-every 0 --ckpt-every 0 --out "$run" --quiet "$@"
    done
  done
  "$TREADC" plot "$dir"/*-s* --arms --x wall --y fd --reach dense \
    -o "$FIGS/tread-claim-deep-$name-fd.png" | tee "$dir/summary.txt"
  "$TREADC" plot "$dir"/*-s* --arms --x wall --y accuracy --reach dense \
    -o "$FIGS/tread-claim-deep-$name-accuracy.png" | tee -a "$dir/summary.txt"
}

if [ "$WHICH" = all ] || [ "$WHICH" = mnist ]; then
  sweep mnist mnist
fi
if [ "$WHICH" = all ] || [ "$WHICH" = fashion ]; then
  if [ ! -d "$FASHION" ]; then
    echo "no Fashion-MNIST at $FASHION: apt-get install dataset-fashion-mnist, or set FASHION" >&2
    exit 2
  fi
  cnn="$OUT/fashion-cnn.safetensors"
  [ -f "$cnn" ] || "$TREADC" train-classifier --data "idx:$FASHION" -o "$cnn"
  sweep fashion "idx:$FASHION" --eval-classifier "$cnn"
fi
