#!/usr/bin/env bash
# One GPU training run of the encoders, on a machine with torch (CUDA), onnx and onnxruntime but without synchub
# installed, the corpus's Debian packages or a network: the simulator is rendered there (numpy, in parallel), the
# real-signal corpus is loaded from .cache/train-data/ (made here with `synchub train --prepare-corpus`).
#
#   bash models/gpu_train.sh            # from the repository root; results in $OUT (default ./gpu-out)
#
# Writes to $OUT: train.log (everything printed), metrics.json (held-out metrics: simulator and corpus, the
# validation history, how the run was made), models.tar (the six .onnx files, reference_outputs.npz,
# checkpoint.pt, metrics.json: unpack over models/ to ship them).
# Sizes (environment): RECORDINGS STEPS BATCH CORPUS_BATCH CORPUS_WEIGHT SEED HIDDEN LR WORKERS THREADS HELDOUT VAL BUDGET
# (training seconds: the run is shortened to fit if its first steps are slower than planned), DEVICE (cuda), PY
# (python3), DATA (corpus files), SIM_CACHE (simulator sets); CORPUS_WEIGHT, HIDDEN and LR unset: `synchub train`'s
# defaults (the shipped recipe); INIT (a folder of exported encoders to start from, absolute or
# relative to the repository root: `models` fine-tunes the shipped set; empty: from scratch).  A CPU rehearsal with tiny sizes:
#   DEVICE=cpu RECORDINGS=32 STEPS=70 BATCH=4 CORPUS_BATCH=4 HELDOUT=4 VAL=8 WORKERS=2 THREADS=2 \
#     OUT=/tmp/gpu-out bash models/gpu_train.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
OUT=${OUT:-$ROOT/gpu-out}
PY=${PY:-python3}
DATA=${DATA:-$ROOT/.cache/train-data}  # corpus.npz, corpus-heldout.npz (carried)
SIM_CACHE=${SIM_CACHE:-${TMPDIR:-/tmp}/synchub-sim-cache}  # rendered simulator sets (not carried back)
mkdir -p "$OUT"

main() {
echo "gpu_train.sh: $(date -u +%FT%TZ) on $(hostname), $(nproc) cores"

# synchub without installing it: pyproject's package-dir mapping (synchub.models = models/, ...) as symlinks
PKG=$(mktemp -d)
mkdir "$PKG/synchub"
for f in "$ROOT"/synchub/*; do ln -s "$f" "$PKG/synchub/"; done
for d in agent drivers models bench firmware systemd; do ln -s "$ROOT/$d" "$PKG/synchub/$d"; done
export PYTHONPATH="$PKG${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
cd "$PKG"  # python puts the current folder first on its path: the checkout's synchub/ lacks the mapped packages

"$PY" - <<'EOF'
import numpy, onnx, onnxruntime, torch
import synchub, synchub.models.train  # noqa: F401  (the package shim works)
print(f"synchub from {synchub.__file__}")
print(f"python ok: numpy {numpy.__version__}, torch {torch.__version__} (cuda {torch.cuda.is_available()}"
      f"{', ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}), onnx {onnx.__version__}, "
      f"onnxruntime {onnxruntime.__version__}")
EOF
ls -l "$DATA"/corpus.npz "$DATA"/corpus-heldout.npz

case "${INIT:-}" in /*) INIT_DIR=$INIT ;; *) INIT_DIR=$ROOT/${INIT:-} ;; esac  # relative: to the repository root
T0=$(date +%s)
rc=0
"$PY" -c 'import sys; from synchub.cli import main; sys.exit(main())' train --device "${DEVICE:-cuda}" \
  --workers "${WORKERS:-16}" --threads "${THREADS:-4}" --data "$SIM_CACHE" --corpus "$DATA/corpus.npz" \
  --recordings "${RECORDINGS:-4000}" --steps "${STEPS:-4000}" --batch "${BATCH:-32}" \
  --corpus-batch "${CORPUS_BATCH:-32}" --seed "${SEED:-0}" --heldout "${HELDOUT:-48}" \
  --val-recordings "${VAL:-128}" --time-budget "${BUDGET:-240}" \
  ${CORPUS_WEIGHT:+--corpus-weight "$CORPUS_WEIGHT"} ${HIDDEN:+--hidden "$HIDDEN"} ${LR:+--lr "$LR"} \
  ${INIT:+--init "$INIT_DIR"} --out "$OUT/models" || rc=$?
echo "gpu_train.sh: synchub train took $(( $(date +%s) - T0 )) s, exit status $rc"

# whatever was written (the checkpoint comes first) travels back as one file
cd "$ROOT"
[ -f "$OUT/models/metrics.json" ] && cp "$OUT/models/metrics.json" "$OUT/metrics.json"
[ -d "$OUT/models" ] && tar -C "$OUT" -cf "$OUT/models.tar" models && rm -rf "$OUT/models"
rm -rf "$PKG"
echo "gpu_train.sh: done in $SECONDS s"
return $rc
}

rc=0
main 2>&1 | tee -a "$OUT/train.log" || rc=$?
ls -l "$OUT"
exit $rc
