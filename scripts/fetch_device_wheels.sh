#!/usr/bin/env bash
# Download, here (with the package registry), what the device study needs that the lent GPU
# machine's image lacks, into .whl/ (git-ignored; the device call carries it: carry [".whl"]).
# The device image has python 3.12, torch 2.11 (CUDA), timm, torchmetrics, pandas, seaborn, tabulate,
# opencv-python-headless, scipy, matplotlib, rich, regex, ninja, g++; it has no mmcv / mmengine /
# mmsegmentation and no network.
#  * pure-python wheels for python 3.12 (mmengine, mmsegmentation and their small deps, timm pinned
#    as in pyproject.toml, setuptools<81 for mmcv's setup.py);
#  * mmcv 2.1.0's sdist in .whl/src/: PyPI has no mmcv wheel for torch 2.11, so the device study
#    compiles it there, CPU ops only, in the background (scripts/ensure_mmcv.py --offline; 259 s with
#    12 jobs on the H200 machine, 2026-11-27). Downloading the sdist runs its setup.py, which imports
#    torch: $PYTHON_WITH_TORCH (default .tox/test/bin/python) must have torch.
#  * if a wheel built for cp312 + torch 2.11 is in the per-machine cache, it is carried too and the
#    device skips the build.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .git/info .whl/src
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
PY=${PYTHON:-python3}
PYT=${PYTHON_WITH_TORCH:-.tox/test/bin/python}
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
      --platform manylinux1_x86_64 --platform any)
pure=(mmengine==0.10.7 mmsegmentation==1.2.2 timm==1.0.31 addict yapf platformdirs termcolor prettytable
      ftfy wcwidth submitit==1.5.4 'setuptools>=77.0.3,<81')
for spec in "${pure[@]}"; do
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl "$spec"
done
ls .whl/src/mmcv-2.1.0.tar.gz >/dev/null 2>&1 || \
  "$PYT" -m pip download -q --no-deps --no-build-isolation --no-binary mmcv mmcv==2.1.0 -d .whl/src
cache=${PACO_FR_WHEEL_CACHE:-$HOME/.cache/paco_fr/wheels}/cp312-torch2.11.0
mmcv=$(ls "$cache"/mmcv-2.1.0-*.whl 2>/dev/null | tail -1 || true)
[ -n "$mmcv" ] && cp "$mmcv" .whl/ && echo "carrying the prebuilt $mmcv"
ls -la .whl .whl/src
du -sh .whl
