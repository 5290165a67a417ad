#!/usr/bin/env bash
# The GPU study in one device call (issue 17). On the lent machine, from the repository root:
#     bash scripts/device_study.sh [options of python scripts/device_study.py]
# with the wheels of scripts/fetch_device_wheels.sh carried in .whl/ (device tool: carry [".whl"]).
# Writes to $OUT (default ./device_out): the rows, the report, the throughput table, env and log.
# The same code path runs on a CPU at toy size: python scripts/device_study.py --tiny --out DIR
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-device_out}
mkdir -p "$OUT"
t0=$(date +%s)
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl 2>&1 | grep -v "^WARNING: Target directory" || true
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
echo "[device_study.sh] wheels installed in $(( $(date +%s) - t0 ))s; nvidia-smi:"
nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/nvidia_smi.txt"
export PACO_FR_DATA=${PACO_FR_DATA:-/tmp/paco_fr_data}
export PACO_FR_SITE=/tmp/site   # where the mmcv built there is installed (on PYTHONPATH)
export PYTHONUNBUFFERED=1
python3 scripts/device_study.py --out "$OUT" "$@"
rc=$?
echo "[device_study.sh] finished rc=$rc after $(( $(date +%s) - t0 ))s"
exit $rc
