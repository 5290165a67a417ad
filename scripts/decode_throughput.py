"""JPEG -> tensor decode rate per core (PIL and simplejpeg) and the `wds` loader's rate with N
workers, side by side in one run; the numbers of docs/throughput.md ("loader cores per GPU").

    python scripts/decode_throughput.py --work /tmp/decode_bench --seconds 4 --json decode.json

Images: `--num` generated faces per size (multi-scale noise: smooth shading plus mid and fine
texture, so that the JPEGs are about as large as aligned face photos; their mean size is
printed), JPEG quality 95, made once into shards by `python -m paco_fr prepare --aligned`.
Decode: one process, one thread, the same JPEG bytes over and over for `--seconds`, bytes ->
uint8 (3, H, W) tensor. Loader: the engine's loader over those shards (data.source=wds, batch
64, shuffle buffer 2000) with `--workers` 0,1,2 and each decoder, after one warm-up batch.
Every measurement is repeated `--repeats` times, the cases interleaved; the table takes the best
(the run least disturbed by other processes on a shared machine) and the JSON keeps them all.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def faces(n: int, size: int, seed: int = 0) -> list[np.ndarray]:
    from PIL import Image

    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        acc = np.zeros((size, size, 3), dtype=np.float64)
        for grid, amp in ((4, 150.0), (size // 8, 50.0), (size // 2, 18.0)):
            low = (rng.random((grid, grid, 3)) * 255).astype(np.uint8)
            acc += np.asarray(Image.fromarray(low).resize((size, size), Image.BICUBIC), dtype=np.float64) * amp / 255
        out.append(np.clip(acc + 20, 0, 255).astype(np.uint8))
    return out


def jpeg(img: np.ndarray, quality: int = 95) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def decode_pil(b: bytes) -> torch.Tensor:
    from PIL import Image

    with Image.open(io.BytesIO(b)) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"))).permute(2, 0, 1).contiguous()


def decode_simplejpeg(b: bytes) -> torch.Tensor:
    import simplejpeg

    return torch.from_numpy(simplejpeg.decode_jpeg(b, colorspace="RGB")).permute(2, 0, 1).contiguous()


DECODERS = {"pil": decode_pil, "simplejpeg": decode_simplejpeg}


def decode_rate(blobs: list[bytes], fn, seconds: float) -> float:
    for b in blobs[:8]:
        fn(b)
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for b in blobs:
            fn(b)
        n += len(blobs)
    return n / (time.perf_counter() - t0)


def loader_rate(shards: Path, size: int, workers: int, decoder: str, seconds: float, batch: int = 64) -> float:
    from torch.utils.data import DataLoader

    from paco_fr.data.shards import ShardStream

    ds = ShardStream(shards, size, shuffle_buffer=2000, decoder=decoder)
    ds.configure(batch_size=batch, workers=workers)
    it = iter(DataLoader(ds, batch_size=None, num_workers=workers))
    for _ in range(max(1, workers)):
        next(it)  # warm-up: workers started, shuffle buffers filled
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        n += next(it)["image"].shape[0]
    return n / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True)
    ap.add_argument("--num", type=int, default=3000)
    ap.add_argument("--sizes", default="112,224")
    ap.add_argument("--workers", default="0,1,2")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    a = ap.parse_args()
    torch.set_num_threads(1)
    decoders = [d for d in DECODERS if d == "pil" or _importable(d)]
    rows: dict = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                  "load_avg_start": os.getloadavg(), "decode": [], "loader": []}
    for size in (int(s) for s in a.sizes.split(",")):
        imgs = faces(a.num, size, seed=size)
        blobs = [jpeg(im) for im in imgs[:256]]
        kb = float(np.mean([len(b) for b in blobs]) / 1024)
        runs: dict = {d: [] for d in decoders}
        for _ in range(a.repeats):
            for d in decoders:
                runs[d].append(decode_rate(blobs, DECODERS[d], a.seconds))
        for d in decoders:
            r = max(runs[d])
            rows["decode"].append({"size": size, "decoder": d, "img_per_s": r, "all": runs[d], "jpeg_kb": kb})
            print(f"decode {size}px {d}: {r:.0f} img/s per core (JPEG {kb:.1f} KB; runs "
                  f"{', '.join(f'{x:.0f}' for x in runs[d])})", flush=True)
        crops = a.work / f"crops{size}"
        shards = a.work / f"shards{size}"
        if not (shards / "manifest.json").is_file():
            crops.mkdir(parents=True, exist_ok=True)
            for i, im in enumerate(imgs):
                (crops / f"{i:06d}.jpg").write_bytes(jpeg(im))
            subprocess.run([sys.executable, "-m", "paco_fr", "prepare", "--aligned", str(crops), "--out", str(shards),
                            "--size", str(size), "--shard-size", "250", "--workers", "1"], cwd=REPO, check=True,
                           env=dict(os.environ, PYTHONPATH=str(REPO)))
        cases = [(d, int(w)) for d in decoders for w in a.workers.split(",")]
        lr: dict = {c: [] for c in cases}
        for _ in range(a.repeats):
            for d, w in cases:
                lr[(d, w)].append(loader_rate(shards, size, w, d, a.seconds))
        for d, w in cases:
            r = max(lr[(d, w)])
            rows["loader"].append({"size": size, "decoder": d, "workers": w, "img_per_s": r, "all": lr[(d, w)]})
            print(f"loader {size}px {d} workers={w}: {r:.0f} img/s (runs "
                  f"{', '.join(f'{x:.0f}' for x in lr[(d, w)])})", flush=True)
    rows["load_avg_end"] = os.getloadavg()
    if a.json:
        a.json.write_text(json.dumps(rows, indent=2))


def _importable(name: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
