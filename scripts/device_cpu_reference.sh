#!/usr/bin/env bash
# The `cpu` profile's reference study (issue 13, item 8) in one call on a lent GPU machine: the same
# plan as `python -m bench_tasks run --all --profile cpu ...` on a 2-core CPU, run as
#   1. SynthFace for every split the study reads, generated on all cores;
#   2. stage 1: the suite's pre-training runs, $JOBS at a time (--pretrain-jobs, --pretrain-only);
#   3. stage 2: $WORKERS evaluation processes on the same plan (--eval-only; each cell claimed once),
#      in passes: seed 0 of every cell first, then the other seeds, then the 10 % label fraction,
#      each pass stopped at the deadline (a stopped cell is simply not done: rerunning resumes);
#   4. the report; 5. $OUT gets the rows, report and run summaries (one tar) and the main encoders
#      (so the study can be finished on a CPU with the same command).
# Numerics: pre-training in fp32 (train.amp=off) as on a CPU; the rows record the device.
#   OUT=... bash scripts/device_cpu_reference.sh            (device tool: carry [".whl"])
#   Prefix PACO_FR_GIT_COMMIT=$(git rev-parse HEAD) (computed here, not on the device: its copy of .git
#   is the session's first commit) so that the rows name the commit that ran.
# Rehearsal on a CPU at toy size: TINY=1 OUT=/tmp/o bash scripts/device_cpu_reference.sh
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
OUT=${OUT:-device_out}; mkdir -p "$OUT"
LIMIT=${LIMIT:-560}            # seconds for everything, packing included
PROFILE=${PROFILE:-cpu}
STEPS=${STEPS:-1000}           # PaCo-FR's steps: the budget every other run is matched to (FLOPs)
JOBS=${JOBS:-8}; WORKERS=${WORKERS:-6}; THREADS=${THREADS:-2}
RUNS=${RUNS:-runs/ref}
RESULTS=${RESULTS:-results/$PROFILE.jsonl}
REPORTS=${REPORTS:-reports}
LOG="$OUT/device_cpu_reference.log"
TAG=ref
. scripts/device_common.sh
DEVICE=${DEVICE:-auto}
PRE=(--pretrain-override "train.steps=$STEPS" --pretrain-override train.amp=off)
EXTRA=()
if [ -n "${TINY:-}" ]; then  # the CPU rehearsal: smoke profile, a few steps, few tasks
  PROFILE=smoke; RESULTS=$OUT/tiny/tiny.jsonl; RUNS=$OUT/tiny/runs; REPORTS=$OUT/tiny/reports; JOBS=3; WORKERS=2
  THREADS=1
  PRE=(--pretrain-override train.steps=3 --pretrain-override data.num_images=64 --pretrain-override train.amp=off)
  EXTRA=(--tasks attributes,landmarks --no-ablations --no-ceilings)
fi
say "env: $($PY -c 'import torch,sys;print(sys.version.split()[0], torch.__version__, torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu")' 2>&1)"
say "mmcv ops: $($PY -c 'from mmcv.ops import point_sample; print("ok")' 2>&1 | tail -1)"
COMMON=(--all --profile "$PROFILE" --runs "$RUNS" --results "$RESULTS" --device "$DEVICE" --no-progress
        --threads "$THREADS" "${PRE[@]}" "${EXTRA[@]}")

touch /tmp/ref_start  # artifacts newer than this are this call's
# 0. mmcv's CPU ops (the dense heads' UPerHead needs them) built from the carried sdist, in the
#    background; the dense cells wait for it (the cheap tasks are evaluated first)
MMCV_RC=/tmp/mmcv_build.rc; rm -f "$MMCV_RC"
if ! $PY -c 'from mmcv.ops import point_sample' >/dev/null 2>&1 && [ -f .whl/src/mmcv-2.1.0.tar.gz ]; then
  ( $PY scripts/ensure_mmcv.py --offline --sdist .whl/src/mmcv-2.1.0.tar.gz --jobs "${MMCV_JOBS:-8}" --cpu-only \
      --install-target /tmp/site >"$OUT/mmcv_build.log" 2>&1; echo $? >"$MMCV_RC" ) &
  say "mmcv: building in the background"
else
  echo 0 >"$MMCV_RC"
fi

# 1. data
if [ -z "${TINY:-}" ]; then
  timeout 200 $PY scripts/device_study.py prepare-data --profile "$PROFILE" --workers "${DATA_WORKERS:-8}" >>"$LOG" 2>&1
  say "data: rc=$?"
fi

# 2. pre-training, $JOBS runs at a time
timeout $(( $(left) - 200 )) $PY -m bench_tasks run "${COMMON[@]}" --pretrain-only --pretrain-jobs "$JOBS" >>"$LOG" 2>&1
say "pre-training: rc=$?"

# 3. evaluation passes, $WORKERS processes each
evaluate() {  # $1: name, rest: options of the pass
  local name=$1; shift
  local budget=$(( $(left) - 45 ))
  if [ "$budget" -lt 15 ]; then say "eval $name: no time left"; return; fi
  local pids=()
  for i in $(seq 1 "$WORKERS"); do
    timeout -s INT -k 10 "$budget" $PY -m bench_tasks run "${COMMON[@]}" --eval-only --no-report "$@" \
      >>"$OUT/eval.log" 2>&1 &
    pids+=($!)
    sleep 1
  done
  wait "${pids[@]}"
  say "eval $name: done ($(grep -c '"status": "ok"' "$RESULTS" 2>/dev/null || true) ok rows in $RESULTS)"
}
evaluate cheap_seed0 --tasks attributes,expression,recognition --seeds 0 --fractions 1.0
while [ ! -f "$MMCV_RC" ] && [ "$(left)" -gt 150 ]; do sleep 3; done
say "mmcv: $(cat "$MMCV_RC" 2>/dev/null || echo 'not built in time') ($($PY -c 'from mmcv.ops import point_sample; print("ops ok")' 2>&1 | tail -1))"
if [ "$(cat "$MMCV_RC" 2>/dev/null)" = 0 ]; then
  evaluate seed0 --seeds 0 --fractions 1.0
  evaluate seeds012 --seeds 0,1,2 --fractions 1.0
  evaluate fractions --seeds 0,1,2
else
  evaluate cheap_seeds012 --tasks attributes,expression,recognition --seeds 0,1,2 --fractions 1.0
fi

# 4. report
timeout $(( $(left) - 15 > 10 ? $(left) - 15 : 10 )) $PY -m bench_tasks report --results "$RESULTS" \
  --out "$REPORTS/$PROFILE" --runs "$RUNS/$PROFILE" --profile "$PROFILE" >>"$LOG" 2>&1
say "report: rc=$?"

# 5. pack: rows + their artifacts + report + run summaries in one tar; the main encoders two per tar
tar czf "$OUT/study.tar.gz" "$RESULTS" $(find "$(dirname "$RESULTS")/artifacts" -newer /tmp/ref_start -type f 2>/dev/null) "$REPORTS/$PROFILE" \
  $(cd . && ls "$RUNS/$PROFILE"/budget.json "$RUNS/$PROFILE"/*/{summary.json,config.yaml,log.jsonl,method.json,stdout.log} 2>/dev/null) \
  2>>"$LOG"
n=0
for pair in "paco mae" "farl mcf" "abl_learned_mask_token abl_belief_ce_only" "abl_no_spatial abl_mask_random"; do
  files=()
  for r in $pair; do [ -f "$RUNS/$PROFILE/$r/encoder.safetensors" ] && files+=("$RUNS/$PROFILE/$r/encoder.safetensors"); done
  [ ${#files[@]} -gt 0 ] && tar cf "$OUT/encoders_$n.tar" "${files[@]}" && n=$((n + 1))
done
say "packed: $(ls "$OUT" | tr '\n' ' ')"
