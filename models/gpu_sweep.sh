#!/usr/bin/env bash
# Several gpu_train.sh runs side by side on one GPU machine (the encoders are small: one run leaves the GPU mostly
# idle), each with its own corpus mix, into $OUT/<variant>/.  Variants (environment, space separated):
#   VARIANTS="name:CORPUS_BATCH:CORPUS_WEIGHT:SEED[:HIDDEN[:INIT[:LR]]] ..."   (default: three corpus weights;
#   HIDDEN, INIT and LR as gpu_train.sh, e.g. "ft:32:2.0:0:64:models:0.001" fine-tunes the shipped encoders: with INIT the width is the files')
# Other sizes as gpu_train.sh (RECORDINGS STEPS BATCH HIDDEN HELDOUT VAL BUDGET DEVICE); WORKERS and THREADS are
# split between the variants.  A CPU rehearsal:
#   DEVICE=cpu RECORDINGS=16 STEPS=20 BATCH=4 HELDOUT=4 VAL=8 VARIANTS="a:4:0.5:0 b:4:1.0:0" \
#     OUT=/tmp/sweep bash models/gpu_sweep.sh
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu-out}
VARIANTS=${VARIANTS:-"w025:16:0.25:0 w05:16:0.5:0 w1:16:1.0:0"}
n=$(wc -w <<<"$VARIANTS")
cores=$(nproc)
mkdir -p "$OUT"
pids=()
for v in $VARIANTS; do
  IFS=: read -r name cb cw seed hidden init lr <<<"$v"
  mkdir -p "$OUT/$name"
  OUT="$OUT/$name" CORPUS_BATCH=$cb CORPUS_WEIGHT=$cw SEED=$seed HIDDEN=${hidden:-${HIDDEN:-}} INIT=${init:-} \
    LR=${lr:-${LR:-}} \
    WORKERS=${WORKERS:-$(( cores / n > 1 ? cores / n : 1 ))} THREADS=${THREADS:-$(( cores / n > 1 ? cores / n : 1 ))} \
    SIM_CACHE="${TMPDIR:-/tmp}/synchub-sim-cache-$name" bash models/gpu_train.sh >"$OUT/$name.out" 2>&1 &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=$?; done
for v in $VARIANTS; do
  name=${v%%:*}
  echo "== $name: $(tail -n 3 "$OUT/$name.out" | tr '\n' ' ')"
done
exit $rc
