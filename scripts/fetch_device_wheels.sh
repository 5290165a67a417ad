#!/usr/bin/env bash
# Download, here (with the package registry), every wheel the device study needs that the lent GPU
# machine's image lacks, into .whl/ (ignored by git, carried with the device call: carry [".whl"]).
# The device image has python 3.12, torch 2.11 (CUDA), timm, torchmetrics, pandas, seaborn, tabulate,
# opencv-python-headless, scipy, matplotlib, rich, regex; it has no mmcv / mmengine / mmsegmentation
# and no network. mmcv (with compiled CPU ops) has no wheel for torch 2.11 on PyPI: build it here once,
# for python 3.12 + torch 2.11, with scripts/ensure_mmcv.py run by a python 3.12 that has torch 2.11:
#     python3.12 -m venv /tmp/py312 && /tmp/py312/bin/pip install torch==2.11.0 numpy
#     /tmp/py312/bin/python scripts/ensure_mmcv.py      # ~20-45 min on 2 cores; cached per machine
# This script then copies that cached wheel into .whl/.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
mkdir -p .whl
PY=${PYTHON:-python3}
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64 --platform any)
pure=(mmengine==0.10.7 mmsegmentation==1.2.2 timm==1.0.31 addict yapf platformdirs termcolor prettytable
      ftfy wcwidth submitit)
for spec in "${pure[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl "$spec"
done
cache=${PACO_FR_WHEEL_CACHE:-$HOME/.cache/paco_fr/wheels}/cp312-torch2.11.0
mmcv=$(ls "$cache"/mmcv-2.1.0-*.whl 2>/dev/null | tail -1 || true)
if [ -z "$mmcv" ]; then
  echo "no mmcv wheel for cp312 + torch 2.11 in $cache: build it first (see the header of this script)" >&2
  exit 1
fi
cp "$mmcv" .whl/
ls -la .whl
du -sh .whl
