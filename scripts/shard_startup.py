"""Start-up time and index memory of the `wds` and `tar` pre-training sources on a large shard set.

    python scripts/shard_startup.py make --out /tmp/faces200k --num 200000          # generate + prepare
    python scripts/shard_startup.py measure --shards /tmp/faces200k/shards --json startup.json

`make`: a folder of `--num` aligned-face files made cheaply -- `--distinct` different generated
faces (smooth noise) written once as JPEG and hard-linked under new names -- then
`python -m paco_fr prepare --aligned` turns them into shards (re-encoded, `--shard-size` each).
`measure`: each source in a fresh process (so one does not warm the other): import time, the
time to build the dataset (the index), to the first batch through the engine's loader, and the
resident memory (VmRSS) those add. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def make(out: Path, num: int, distinct: int, size: int, shard_size: int, workers: int) -> None:
    import numpy as np
    from PIL import Image

    crops = out / "crops"
    crops.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    t0 = time.time()
    base = []
    for i in range(distinct):
        low = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        p = crops / f"base{i:03d}.jpg"
        Image.fromarray(low).resize((size, size), Image.BICUBIC).save(p, quality=95)
        base.append(p)
    for i in range(num - distinct):
        sub = crops / f"d{i // 10000:03d}"
        if i % 10000 == 0:
            sub.mkdir(exist_ok=True)
        dst = sub / f"f{i:07d}.jpg"
        if not dst.exists():
            os.link(base[i % distinct], dst)
    print(f"{num} files ({distinct} distinct) in {time.time() - t0:.1f} s", flush=True)
    cmd = [sys.executable, "-m", "paco_fr", "prepare", "--aligned", str(crops), "--out", str(out / "shards"),
           "--size", str(size), "--shard-size", str(shard_size), "--workers", str(workers)]
    print("$", " ".join(cmd), flush=True)
    t0 = time.time()
    subprocess.run(cmd, cwd=REPO, check=True)
    print(f"prepare: {time.time() - t0:.1f} s", flush=True)


def measure_one(source: str, shards: Path, size: int, batch: int) -> dict:
    """In this process: import, build the source, take the first batch through the engine's loader."""
    t0 = time.perf_counter()
    rss0 = _rss_mb()
    import torch  # noqa: F401
    import webdataset  # noqa: F401

    from paco_fr.data.pretrain_data import ResumableBatchSampler, build_pretrain_dataset, collate

    torch.set_num_threads(1)
    t_import = time.perf_counter() - t0
    rss1 = _rss_mb()
    t1 = time.perf_counter()
    path = str(shards / "*.tar") if source == "tar" else str(shards)
    ds = build_pretrain_dataset({"source": source, "path": path, "shuffle_buffer": 2000}, size, seed=0)
    t_index = time.perf_counter() - t1
    rss2 = _rss_mb()
    from torch.utils.data import DataLoader

    if source == "wds":
        ds.configure(batch_size=batch)
        loader = DataLoader(ds, batch_size=None, num_workers=0)
    else:
        sampler = ResumableBatchSampler(len(ds), batch, 0, 0, 10, 0, 1)
        loader = DataLoader(ds, batch_sampler=sampler, num_workers=0, collate_fn=collate)
    b = next(iter(loader))
    t_first = time.perf_counter() - t1
    return {"source": source, "images": len(ds), "batch": int(b["image"].shape[0]), "import_s": t_import,
            "index_s": t_index, "first_batch_s": t_first, "index_rss_mb": rss2 - rss1,
            "first_batch_rss_mb": _rss_mb() - rss1, "rss_after_import_mb": rss1, "rss_start_mb": rss0}


def measure(shards: Path, size: int, batch: int, out_json: Path | None) -> list[dict]:
    rows = []
    for source in ("wds", "tar"):
        res = subprocess.run([sys.executable, __file__, "_one", "--source", source, "--shards", str(shards),
                              "--size", str(size), "--batch", str(batch)], cwd=REPO, capture_output=True, text=True,
                             env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO)))
        if res.returncode != 0:
            raise SystemExit(res.stderr[-3000:])
        rows.append(json.loads(res.stdout.strip().splitlines()[-1]))
    print("| source | images | import (s) | index built (s) | first batch of "
          f"{batch} (s, from the index) | RSS of the index (MB) | RSS after the first batch (MB) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| `{r['source']}` | {r['images']:,} | {r['import_s']:.2f} | {r['index_s']:.2f} | "
              f"{r['first_batch_s']:.2f} | {r['index_rss_mb']:.1f} | {r['first_batch_rss_mb']:.1f} |")
    if out_json:
        out_json.write_text(json.dumps(rows, indent=2))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("--out", type=Path, required=True)
    m.add_argument("--num", type=int, default=200_000)
    m.add_argument("--distinct", type=int, default=64)
    m.add_argument("--size", type=int, default=64)
    m.add_argument("--shard-size", type=int, default=5000)
    m.add_argument("--workers", type=int, default=2)
    s = sub.add_parser("measure")
    s.add_argument("--shards", type=Path, required=True)
    s.add_argument("--size", type=int, default=64)
    s.add_argument("--batch", type=int, default=64)
    s.add_argument("--json", type=Path, default=None)
    o = sub.add_parser("_one")
    o.add_argument("--source", required=True)
    o.add_argument("--shards", type=Path, required=True)
    o.add_argument("--size", type=int, default=64)
    o.add_argument("--batch", type=int, default=64)
    a = ap.parse_args()
    if a.cmd == "make":
        make(a.out, a.num, a.distinct, a.size, a.shard_size, a.workers)
    elif a.cmd == "measure":
        measure(a.shards, a.size, a.batch, a.json)
    else:
        print(json.dumps(measure_one(a.source, a.shards, a.size, a.batch)))


if __name__ == "__main__":
    main()
