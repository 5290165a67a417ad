"""How far the probe-only cell estimates (bench_tasks.plan.cell_costs.probe_cell_seconds) are from
the wall times recorded in results files: an offline calibration, no cell runs (seconds).

Each ok row of the files has its cell, the profile values it ran with (`config.profile`) and its
wall time (`provenance.wall_time_s`, with `timings.features_cache_hit` telling whether a frozen
cell extracted its features or read them). This script estimates every row as a new user's first
run would be estimated, at a given speed (the probe's FLOP/s at widths 192 and 768 on the machine
the rows were measured on), and prints measured / estimated per profile, kind, task and protocol.

    python scripts/fit_estimates.py                          # results/*.jsonl at 108 / 131 GFLOP/s
    python scripts/fit_estimates.py results/paper_cpu.jsonl --speed 108,131 --rows

The rows were measured on a 2-core CPU, mostly with two workers of one thread each (a study), so
their wall times include that machine's load; only the kinds of cells the current settings still
run the same way are comparable (a row computed with another learning-rate grid, or before a
grid was chosen on val, is marked `old`).
"""

from __future__ import annotations

import argparse
import glob
import json
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def profile_of(d: dict):
    from bench_tasks.contracts import Profile

    known = set(Profile.__dataclass_fields__)
    kw = {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items() if k in known}
    return Profile(**kw)


def row_kind(cell) -> str:
    """scripts/bench_estimates.py's kind of cell, fine-tuning of an encoder apart."""
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_estimates import cell_kind

    kind = cell_kind(cell)
    return "finetune" if kind in ("linear", "recognition") and cell.protocol == "finetune" else kind


def estimate_rows(paths, speed) -> list[dict]:
    """One dict per ok row: file, kind, cell, features cached, measured s, estimated s, `old`."""
    from bench_tasks.contracts import Cell
    from bench_tasks.plan.cell_costs import backbone_shape, probe_cell_seconds, training_runs
    from bench_tasks.plan.suite import random_control

    out = []
    for path in paths:
        for line in Path(path).read_text().splitlines():
            if not line.strip():
                continue
            r = json.loads(line)
            prov = r.get("provenance") or {}
            wall = prov.get("wall_time_s")
            conf = r.get("config") or {}
            if r.get("status") != "ok" or wall is None or not conf.get("profile"):
                continue
            cell = Cell(**r["cell"])
            try:
                prof = profile_of(conf["profile"])
                arch = random_control(prof.name)
            except Exception:  # noqa: BLE001 - a profile of an older version
                continue
            shape = backbone_shape(cell.backbone, arch)
            timings = prov.get("timings") or {}
            # recognition records no cache hit: its features took well under a second when read
            cached = bool(timings.get("features_cache_hit")) or (
                cell.task == "recognition" and float(timings.get("feature_seconds", 1e9)) < 0.5)
            est = probe_cell_seconds(cell, prof, shape, speed, cached)
            if est is None:
                continue
            task = conf.get("task") or {}
            grid = (task.get("selection") or {}).get("grid")
            runs = training_runs(cell, prof)
            old = runs > 1 and grid is None and row_kind(cell) in ("linear", "recognition")
            out.append(dict(file=Path(path).stem, kind=row_kind(cell), cell=cell, profile=prof.name, cached=cached,
                            took=float(wall), est=est, old=old, timings=timings))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="*", help="results files (default: results/*.jsonl)")
    ap.add_argument("--speed", default="108,131", help="GFLOP/s at widths 192 and 768")
    ap.add_argument("--rows", action="store_true", help="one line per row too")
    ap.add_argument("--old", action="store_true", help="keep the rows computed with other settings")
    args = ap.parse_args(argv)
    from bench_tasks.plan.cell_costs import Speed
    from bench_tasks.registry import load_registries

    load_registries()
    small, large = (float(x) * 1e9 for x in args.speed.split(","))
    paths = args.files or sorted(glob.glob(str(ROOT / "results" / "*.jsonl")))
    rows = [r for r in estimate_rows(paths, Speed(small, large)) if args.old or not r["old"]]
    groups: dict[tuple, list] = defaultdict(list)
    for r in rows:
        c = r["cell"]
        groups[(r["file"], r["kind"], c.task, c.protocol, c.fraction, r["cached"])].append(r)
        if args.rows:
            print(f"{r['file']:18} {r['kind']:11} {c.task:11} {c.protocol:8} f={c.fraction:<4g} "
                  f"cached={int(r['cached'])} est {r['est']:7.1f} took {r['took']:7.1f} "
                  f"ratio {r['took'] / r['est']:5.2f} {c.backbone[:40]}")
    print(f"{'file':18} {'kind':11} {'task':11} {'protocol':8} {'frac':>4} cached {'n':>3} "
          f"{'est s':>7} {'took s':>7} {'ratio':>5} {'min':>5} {'max':>5}")
    for (f, kind, task, proto, frac, cached), rs in sorted(groups.items(), key=lambda kv: kv[0]):
        est = sum(r["est"] for r in rs) / len(rs)
        took = sum(r["took"] for r in rs) / len(rs)
        ratios = [r["took"] / r["est"] for r in rs]
        flag = "" if 0.67 <= took / est <= 1.5 else "  <-"
        print(f"{f:18} {kind:11} {task:11} {proto:8} {frac:4g} {int(cached):6d} {len(rs):3d} {est:7.1f} "
              f"{took:7.1f} {took / est:5.2f} {min(ratios):5.2f} {max(ratios):5.2f}{flag}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
