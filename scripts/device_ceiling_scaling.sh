#!/usr/bin/env bash
# Issue 12: what would it take for the `cpu` profile's supervised ceilings to reach the issue's
# targets? One call on a lent GPU machine trains the ceilings (supervised:<arch>, the same ViT
# trained end to end from random init with the task's labels) of the cheap tasks with 3,000,
# 10,000 and 30,000 labelled SynthFace training images, and the random-init frozen probe with the
# same labels, everything else as the cpu profile (64 px, patch 8, depth 4, ceiling_lr, the test
# and validation splits, 30 epochs); recognition also with the plain normalised softmax (m=0).
# Each cell is an ordinary `python -m bench_tasks run` command (written to $OUT/commands.txt), so
# every number can be reproduced on any machine, e.g.
#   python -m bench_tasks run --profile cpu --backbones supervised:vit_tiny@64/8/d4 \
#     --tasks expression --set ceiling_epochs=30 --set synthface_train=30000 --seeds 0 --fractions 1.0
# The dense tasks are not here: their head needs mmcv's compiled ops, which the device image lacks
# (a build takes ~7 of the 10 minutes a call may run); their 30-epoch ceilings run on the CPU.
#   OUT=... bash scripts/device_ceiling_scaling.sh        (device tool: carry [".whl"])
#   Prefix PACO_FR_GIT_COMMIT=$(git rev-parse HEAD) (computed here, not on the device: its copy of .git
#   is the session's first commit) so that the rows name the commit that ran.
# Second call (the same machine budget's rest): SIZES=30000 EPOCHS=10 ONLY_CEILINGS=1 LIMIT=260 (30,000
# images for 10 epochs: the same optimiser steps as 10,000 for 30).
# Rehearsal on a CPU at toy size: TINY=1 OUT=/tmp/o bash scripts/device_ceiling_scaling.sh
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
OUT=${OUT:-device_out}; mkdir -p "$OUT/rows"
LIMIT=${LIMIT:-540}
THREADS=${THREADS:-2}
SIZES=${SIZES:-"30000 10000 3000"}
EPOCHS=${EPOCHS:-30}
ARCH=supervised:vit_tiny@64/8/d4
RAND=random:vit_tiny@64/8/d4
SETS=()
LOG="$OUT/ceiling_scaling.log"
TAG=scale
. scripts/device_common.sh
VAL=500; TEST=1000
if [ -n "${TINY:-}" ]; then
  SIZES="400 200"; EPOCHS=1; VAL=100; TEST=100; THREADS=1
  SETS=(--set synthface_val=$VAL --set synthface_test=$TEST --set recognition.n_pairs=200
        --set recognition.n_hard_pairs=100)
fi
say "env: $($PY -c 'import torch,sys;print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' 2>&1)"

# 1. data: every training size, the validation and test splits, on all cores
$PY - "$SIZES" "$VAL" "$TEST" >>"$LOG" 2>&1 <<'EOF'
import os, sys, time
from paco_fr.data.synthface import load_synthface
sizes = [int(s) for s in sys.argv[1].split()]
w = max(1, (os.cpu_count() or 2) - 1)
for split, n in [("val", int(sys.argv[2])), ("test", int(sys.argv[3]))] + [("train", n) for n in sizes]:
    t = time.time()
    load_synthface(split, n, image_size=64, seed=0, progress=False, workers=w)
    print(f"synthface {split} n={n} 64px: {time.time() - t:.1f}s", flush=True)
EOF
say "data: rc=$?"

# 2. cells, all at once (the GPU is shared; $THREADS CPU threads each), longest first
pids=()
cell() {  # $1: name, rest: options
  local name=$1; shift
  local cmd=(-m bench_tasks run --profile cpu --seeds 0 --fractions 1.0 --set "ceiling_epochs=$EPOCHS"
             "${SETS[@]}" --results "$OUT/rows/$name.jsonl" --no-progress --threads "$THREADS" "$@")
  echo "python ${cmd[*]}" >>"$OUT/commands.txt"
  timeout -s INT -k 10 $(( $(left) - 40 )) $PY "${cmd[@]}" >"$OUT/rows/$name.log" 2>&1 &
  pids+=($!)
}
for n in $SIZES; do
  for t in expression attributes recognition; do
    cell "ceil_${t}_n$n" --backbones "$ARCH" --tasks "$t" --set "synthface_train=$n"
  done
  cell "ceil_recognition_m0_n$n" --backbones "$ARCH" --tasks recognition --set "synthface_train=$n" \
    --set recognition.m=0.0
  [ -n "${ONLY_CEILINGS:-}" ] || cell "rand_n$n" --backbones "$RAND" --tasks expression,attributes,recognition --set "synthface_train=$n" \
    --no-ceilings
done
say "cells: ${#pids[@]} started"
wait "${pids[@]}"
say "cells: done; ok rows: $(cat "$OUT"/rows/*.jsonl 2>/dev/null | grep -c '"status": "ok"')"
for f in "$OUT"/rows/*.log; do echo "== $f"; grep -E "^(ok|FAIL|fail)|Error" "$f" | tail -5; done >>"$LOG" 2>&1

# 3. pack: rows, logs and commands in one tar
tar czf "$OUT/scaling.tar.gz" -C "$OUT" rows commands.txt 2>>"$LOG"
rm -rf "$OUT/rows"
say "packed: $(ls "$OUT" | tr '\n' ' ')"
