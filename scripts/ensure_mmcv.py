"""Make sure mmcv (full, with compiled ops) is importable in the current environment.

mmsegmentation 1.2.2 needs mmcv>=2.0.0rc4,<2.2.0 *with* its compiled ops
(`import mmseg.models` reaches `mmcv.ops.point_sample`), and PyPI ships mmcv
2.1.0 only as source. This script builds that source once per machine and keeps
the wheel in a cache folder, so every later environment installs it in seconds:

    python scripts/ensure_mmcv.py            # install from cache, build if missing
    python scripts/ensure_mmcv.py --check    # exit 1 if mmcv ops (or mmseg's UPerHead) do not import

Build conditions measured on CPU machines (torch 2.14.1, Python 3.11):
  * `--no-build-isolation` with setuptools>=77.0.3,<81 (mmcv's setup.py imports pkg_resources)
    and ninja in the environment;
  * a C++20 compiler: torch 2.14's headers need C++20 while mmcv passes `-std=c++17` last on the
    command line, so CXX points at a small g++ wrapper that rewrites it;
  * MAX_JOBS=2; about 20 minutes on 2 cores, a ~32 MB wheel.

Cache folder: $PACO_FR_WHEEL_CACHE or ~/.cache/paco_fr/wheels/<python>-<torch>/.

On a machine without a package index (the lent GPU machine of the device study), build from a carried
sdist with what is installed, CPU ops only (the study's dense heads run mmseg's UPerHead, whose
import needs mmcv.ops; no CUDA kernel of mmcv is used), on every core:

    python scripts/ensure_mmcv.py --offline --sdist .whl/src/mmcv-2.1.0.tar.gz --jobs 12 --cpu-only --install-target /tmp/site
"""

from __future__ import annotations

import argparse
import glob
import os
import stat
import subprocess
import sys
import tempfile
import time

MMCV_VERSION = "2.1.0"


def mmcv_ops_ok() -> bool:
    code = "import mmcv, mmcv.ops; from mmcv.ops import point_sample; print(mmcv.__version__)"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return res.returncode == 0 and res.stdout.strip() == MMCV_VERSION


def mmseg_ok() -> tuple[bool, str]:
    """Whether what the dense tasks need imports: mmsegmentation's UPerHead (needs mmcv ops)."""
    code = "from mmseg.models.decode_heads import UPerHead; print('ok')"
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return res.returncode == 0, (res.stderr.strip().splitlines() or [""])[-1]


def cache_dir() -> str:
    import torch

    base = os.environ.get("PACO_FR_WHEEL_CACHE", os.path.expanduser("~/.cache/paco_fr/wheels"))
    tag = f"cp{sys.version_info.major}{sys.version_info.minor}-torch{torch.__version__.split('+')[0]}"
    path = os.path.join(base, tag)
    os.makedirs(path, exist_ok=True)
    return path


def pip(*args: str, env: dict | None = None) -> None:
    cmd = [sys.executable, "-m", "pip", *args]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, check=True, env=env)


def build_wheel(out_dir: str, offline: bool = False, sdist: str | None = None, jobs: int | None = None,
                cpu_only: bool = False) -> str:
    if not offline:
        pip("install", "setuptools>=77.0.3,<81", "ninja", "wheel")
    tmp = tempfile.mkdtemp(prefix="mmcv-build-")
    wrapper = os.path.join(tmp, "gxx20")
    real_cxx = os.environ.get("CXX_REAL", "g++")
    with open(wrapper, "w") as f:
        f.write(
            "#!/bin/sh\n"
            "# rewrite mmcv's hard-coded -std=c++17: torch>=2.14 headers need C++20\n"
            'args=""\n'
            'for a in "$@"; do\n'
            '  case "$a" in -std=c++17|-std=c++14) a=-std=c++20;; esac\n'
            '  set -- "$@" "$a"; shift\n'
            "done\n"
            f'exec {real_cxx} "$@"\n'
        )
    os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IEXEC)
    env = dict(os.environ)
    env.update(CXX=wrapper, MAX_JOBS=str(jobs) if jobs else env.get("MAX_JOBS", "2"), MMCV_WITH_OPS="1",
               FORCE_CUDA="0")
    if cpu_only:  # mmcv's setup.py builds CUDA kernels whenever torch sees a GPU
        env["CUDA_VISIBLE_DEVICES"] = ""
    # torch's BuildExtension compiles in parallel only with a `ninja` on PATH (else one file at a
    # time): the environment's own bin folder holds the pip-installed one
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    import shutil

    print(f"compiler: {shutil.which('g++') or 'NO g++ ON PATH'}; ninja: "
          f"{shutil.which('ninja', path=env['PATH']) or 'NO ninja (serial build)'}", flush=True)
    t0 = time.time()
    print(f"building mmcv=={MMCV_VERSION} from source (about 20 min on 2 cores; once per machine), "
          f"MAX_JOBS={env['MAX_JOBS']}", flush=True)
    src = sdist if sdist else f"mmcv=={MMCV_VERSION}"
    extra = ["--no-index"] if offline else ["--no-binary", "mmcv"]
    pip("wheel", "--no-build-isolation", "--no-deps", *extra, src, "-w", out_dir, env=env)
    print(f"mmcv wheel built in {time.time() - t0:.0f}s -> {out_dir}", flush=True)
    return find_wheel(out_dir)


def find_wheel(out_dir: str) -> str | None:
    found = sorted(glob.glob(os.path.join(out_dir, f"mmcv-{MMCV_VERSION}-*.whl")))
    return found[-1] if found else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="only check; exit 1 when mmcv ops are missing")
    ap.add_argument("--offline", action="store_true", help="no package index: build with what is installed")
    ap.add_argument("--sdist", default=None, help="build from this mmcv source archive instead of PyPI's")
    ap.add_argument("--jobs", type=int, default=None, help="parallel compile jobs (default $MAX_JOBS or 2)")
    ap.add_argument("--cpu-only", action="store_true", help="hide GPUs from the build: CPU ops only")
    ap.add_argument("--install-target", default=None,
                    help="pip install --target this folder (on PYTHONPATH) instead of the environment")
    args = ap.parse_args()
    if mmcv_ops_ok():
        print(f"mmcv {MMCV_VERSION} with ops: ok")
        ok, err = mmseg_ok()
        print("mmseg UPerHead: ok" if ok else f"mmseg UPerHead does not import: {err}",
              file=sys.stdout if ok else sys.stderr)
        return 0 if ok else 1
    if args.check:
        print("mmcv with compiled ops is not importable; run scripts/ensure_mmcv.py", file=sys.stderr)
        return 1
    out = cache_dir()
    wheel = find_wheel(out) or build_wheel(out, args.offline, args.sdist, args.jobs, args.cpu_only)
    if wheel is None:
        print(f"mmcv build produced no wheel in {out}", file=sys.stderr)
        return 1
    if args.install_target:
        pip("install", "--no-deps", "--no-index", "--upgrade", "--target", args.install_target, wheel)
    else:
        pip("install", "--no-deps", wheel)
    if not mmcv_ops_ok():
        print(f"installed {wheel} but `from mmcv.ops import point_sample` still fails", file=sys.stderr)
        return 1
    print(f"mmcv {MMCV_VERSION} with ops: installed from {wheel}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
