# Shared set-up of the device scripts (sourced): the carried wheels on PYTHONPATH, $PY, the
# environment every stage runs with, and the clock helpers. Needs T0, LIMIT, LOG and TAG set.
left() { echo $(( LIMIT - ($(date +%s) - T0) )); }
say() { echo "[$TAG +$(( $(date +%s) - T0 ))s] $*" | tee -a "$LOG"; }
if ls .whl/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
    .whl/*.whl 2>&1 | grep -v "^WARNING: Target directory" || true
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
PY=${PY:-python3}
export PYTHONUNBUFFERED=1 PACO_FR_SPLIT_CACHE=1 PACO_FR_DATA=${PACO_FR_DATA:-/tmp/paco_fr_data}
