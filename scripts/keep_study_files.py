"""Copy the small files of a study's finished pre-training runs into the repository, so that a
clean clone redraws the report's codebook figure and knows what each run was:

    python scripts/keep_study_files.py --runs runs/cpu_reference --out results/cpu_reference_runs

For every finished run (summary.json and encoder.safetensors present): method.json, summary.json
and config.yaml, and for PaCo-FR runs `reconstructions.npz` (original / corrupted / reconstructed,
the figure's SynthFace faces, float16, ~0.2 MB), which the report's codebook figure reads first
(`report --runs results/cpu_reference_runs`). The weights stay in runs/: encoder.safetensors
(7 MB at the cpu config) and recon.safetensors (1.8-17 MB; useless without the encoder), unless
--with-weights (files up to --max-mb). Prints each run and the total size written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SMALL = ("method.json", "summary.json", "config.yaml")
WEIGHTS = ("encoder.safetensors", "recon.safetensors")


def keep(runs: Path, out: Path, n_faces: int = 4, max_mb: float = 8.0, weights: bool = False) -> int:
    from bench_tasks.report.figures import load_reconstructions

    total = 0
    for rd in sorted(p for p in runs.iterdir() if p.is_dir()):
        if not ((rd / "summary.json").is_file() and (rd / "encoder.safetensors").is_file()):
            continue
        dst = out / rd.name
        dst.mkdir(parents=True, exist_ok=True)
        for name in SMALL + (WEIGHTS if weights else ()):
            f = rd / name
            if f.is_file() and f.stat().st_size <= max_mb * 1e6:
                shutil.copy2(f, dst / name)
            elif f.is_file():
                print(f"  {f}: {f.stat().st_size / 1e6:.1f} MB > --max-mb {max_mb:g}, left in {rd}")
        objective = json.loads((rd / "summary.json").read_text()).get("config", {}).get("objective")
        if objective == "paco" and not (dst / "reconstructions.npz").is_file():
            size = int(json.loads((rd / "summary.json").read_text())["config"]["model"]["img_size"])
            data, notes = load_reconstructions({"run": rd}, size, n_faces)
            if "run" in data:
                np.savez_compressed(dst / "reconstructions.npz",
                                    **{k: np.asarray(v, dtype=np.float16) for k, v in data["run"].items()})
            for n in notes:
                print(f"  {n}")
        size = sum(f.stat().st_size for f in dst.iterdir())
        total += size
        print(f"{rd.name}: {size / 1e6:.2f} MB")
    print(f"total under {out}: {total / 1e6:.2f} MB")
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", required=True, help="runs/<profile> of the study")
    ap.add_argument("--out", required=True, help="e.g. results/<profile>_runs")
    ap.add_argument("--with-weights", action="store_true", help="also copy encoder and recon weights")
    ap.add_argument("--max-mb", type=float, default=8.0, help="larger files stay in --runs (default 8)")
    a = ap.parse_args(argv)
    keep(Path(a.runs), Path(a.out), max_mb=a.max_mb, weights=a.with_weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
