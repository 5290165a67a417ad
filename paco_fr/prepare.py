"""`python -m paco_fr prepare`: raw images + 5-point landmarks (or a folder of aligned crops) ->
aligned webdataset shards for `data.source=wds` (paco_fr/data/shards.py).

Input, one of:
- `--images DIR --landmarks FILE`: lines `relpath x1 y1 ... x5 y5` (pixel coordinates, paths
  relative to DIR, `#` comments; the format of `data.source=landmarks`); each face is aligned to
  the canonical 5-point template (paco_fr.data.template.align_face) at `--size`.
- `--aligned DIR [--landmarks FILE]`: already aligned crops, resized to `--size`; the optional file
  gives 5 or 68 points per crop in that crop's pixel coordinates.

Output in `--out`: `shard-000000.tar`, ... (N = `--shard-size` input items per shard, in sorted
order; a shard holds fewer samples when some were skipped), each sample `<key>.jpg`,
`<key>.lm.npy` (float32 (K, 2) unit coordinates of the crop; K = 5 or 68) and `<key>.json`
({"src": relpath}); `shard-000000.json` per finished shard (its count, sha256 and skipped inputs);
`manifest.json` (counts, shards with hashes, every skipped input with its reason).

Resumable: a shard whose `.tar` and `.json` exist for the same inputs and settings, and whose
`.tar` still has the size and sha256 its `.json` recorded, is kept; the others are (re)written (a
shard is written to `.tar.tmp` and renamed when complete), a damaged one (truncated, changed) named
in the manifest's `shards_damaged`. So the manifest is true after every run. Skipped inputs
(never a crash): an image that does not decode, a landmarks line without its image, an image
without a landmarks line, a line without face points or with the wrong number of numbers.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing as mp
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from paco_fr.atomic import write_text_atomic
from paco_fr.data.template import align_face, five_from_68, transform_points

IMG_EXT = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class Item:
    rel: str
    points: tuple | None  # flat pixel coordinates, or None
    problem: str | None = None  # a reason to skip, known before reading the image


def _parse_points(path: Path, ln: int, parts: list[str]) -> tuple[tuple | None, str | None]:
    nums = parts[1:]
    if not nums:
        return None, f"{path.name}:{ln}: no face points"
    if len(nums) not in (10, 136):
        return None, f"{path.name}:{ln}: expected 5 or 68 points (10 or 136 numbers), got {len(nums)}"
    try:
        vals = np.array([float(v) for v in nums], dtype=np.float64)
    except ValueError:
        return None, f"{path.name}:{ln}: face points are not numbers"
    if not np.isfinite(vals).all() or (vals < 0).all():
        return None, f"{path.name}:{ln}: no face points (NaN or negative placeholders)"
    pts = vals.reshape(-1, 2)
    if np.ptp(pts, axis=0).max() < 1e-6:
        return None, f"{path.name}:{ln}: degenerate face points (all at one place)"
    return tuple(vals.tolist()), None


def read_points_file(path) -> dict[str, tuple[tuple | None, str | None]]:
    """{relpath: (flat points or None, problem or None)} of a landmarks file (lenient: a bad line
    is kept with its reason so that its image is reported, not silently dropped)."""
    path = Path(path)
    out: dict[str, tuple[tuple | None, str | None]] = {}
    for ln, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        out[parts[0]] = _parse_points(path, ln, parts)
    return out


def list_items(images: Path | None, aligned: Path | None, landmarks: Path | None) -> list[Item]:
    """Every input in sorted order, with a known reason to skip it where there is one."""
    root = images or aligned
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.suffix.lower() in IMG_EXT)
    pts = read_points_file(landmarks) if landmarks else {}
    items = []
    for rel in files:
        if rel in pts:
            p, problem = pts[rel]
            items.append(Item(rel, p, problem))
        elif images is not None:
            items.append(Item(rel, None, f"no line in {landmarks.name} for this image"))
        else:
            items.append(Item(rel, None))
    listed = set(files)
    for rel in sorted(set(pts) - listed):
        items.append(Item(rel, None, "listed in the landmarks file but the image file is not found"))
    return sorted(items, key=lambda it: it.rel)


def _process(root: Path, item: Item, size: int, align: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """-> (aligned uint8 (size, size, 3), (K, 2) unit coordinates or None)."""
    with Image.open(root / item.rel) as im:
        img = np.asarray(im.convert("RGB"))
    if align:
        pts = np.asarray(item.points, dtype=np.float64).reshape(-1, 2)
        if len(pts) != 5:
            pts = five_from_68(pts)
        crop, m = align_face(img, pts, size)
        unit = (transform_points(pts, m) + 0.5) / size
        return crop, unit.astype(np.float32)
    h, w = img.shape[:2]
    if (h, w) != (size, size):
        img = np.asarray(Image.fromarray(img).resize((size, size), Image.BICUBIC))
    if item.points is None:
        return img, None
    pts = np.asarray(item.points, dtype=np.float64).reshape(-1, 2)
    return img, ((pts + 0.5) / np.array([w, h], dtype=np.float64)).astype(np.float32)


def _encode_jpeg(img: np.ndarray, quality: int) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return buf.getvalue()


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a, allow_pickle=False)
    return buf.getvalue()


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _shard_name(i: int) -> str:
    return f"shard-{i:06d}.tar"


def _inputs_digest(items: list[Item], settings: dict) -> str:
    blob = json.dumps([settings, [(it.rel, it.points, it.problem) for it in items]], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_shard(job: tuple) -> dict:
    """Worker: one shard. job = (shard index, first item index, items, root, out, settings)."""
    # lazy: webdataset only when a shard is written
    import webdataset as wds

    idx, first, items, root, out, settings = job
    out = Path(out)
    name = _shard_name(idx)
    tmp = out / (name + ".tmp")
    count, skipped = 0, []
    with wds.TarWriter(str(tmp), encoder=False, mtime=0) as sink:
        for j, item in enumerate(items):
            if item.problem:
                skipped.append({"file": item.rel, "reason": item.problem})
                continue
            try:
                crop, unit = _process(Path(root), item, settings["size"], settings["align"])
            except Exception as e:  # noqa: BLE001 - any failure to read an input means "skip it"
                skipped.append({"file": item.rel, "reason": f"cannot read the image: {type(e).__name__}: {e}"})
                continue
            key = f"{first + j:09d}"
            rec = {"__key__": key, "jpg": _encode_jpeg(crop, settings["quality"]),
                   "json": json.dumps({"src": item.rel}).encode()}
            if unit is not None:
                rec["lm.npy"] = _npy(unit)
            sink.write(rec)
            count += 1
    os.replace(tmp, out / name)
    info = {"name": name, "count": count, "sha256": _sha256(out / name), "bytes": (out / name).stat().st_size,
            "inputs": len(items),
            "skipped": skipped, "digest": _inputs_digest(items, settings)}
    (out / name).with_suffix(".json").write_text(json.dumps(info, indent=1))
    return info


MIN_SIZE = 16  # the smallest crop the 5-point alignment and a ViT patch grid make sense at


def check_numbers(size, shard_size, workers, quality) -> list[str]:
    """Problems of prepare's numbers (all of them, before any image is read)."""
    out = []
    for flag, v, low, high in (("--size", size, MIN_SIZE, None), ("--shard-size", shard_size, 1, None),
                               ("--workers", workers, 1, None), ("--quality", quality, 1, 100)):
        if isinstance(v, bool) or not isinstance(v, int) or v < low or (high is not None and v > high):
            rng = f"{low} to {high}" if high is not None else f">= {low}"
            out.append(f"{flag} {v!r}: expected a whole number {rng}")
    return out


def shard_damage(out: Path, info: dict) -> str | None:
    """Why the finished shard `info` describes no longer matches its record (missing, another size,
    another sha256), or None when it does."""
    path = out / info.get("name", "")
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if info.get("bytes") is not None and int(info["bytes"]) != size:
        return f"{size} bytes, its record says {info['bytes']}"
    if info.get("sha256") != _sha256(path):
        return "its sha256 differs from its record"
    return None


def prepare(out, images=None, landmarks=None, aligned=None, size: int = 112, shard_size: int = 1000,
            workers: int = 1, quality: int = 95, progress: bool | None = None) -> dict:
    """Make (or finish) the shards and manifest in `out`; returns the manifest."""
    problems = check_numbers(size, shard_size, workers, quality)
    if problems:
        raise ValueError("; ".join(problems))
    if (images is None) == (aligned is None):
        raise ValueError("give exactly one of --images DIR (with --landmarks FILE) or --aligned DIR")
    if images is not None and landmarks is None:
        raise ValueError("--images needs --landmarks FILE (lines 'relpath x1 y1 ... x5 y5' in pixel coordinates)")
    root = Path(images or aligned)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: image folder not found")
    if landmarks is not None and not Path(landmarks).is_file():
        raise FileNotFoundError(f"{landmarks}: landmarks file not found")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    items = list_items(Path(images) if images else None, Path(aligned) if aligned else None,
                       Path(landmarks) if landmarks else None)
    if not items:
        raise ValueError(f"{root}: no images ({', '.join(IMG_EXT)})")
    settings = {"size": int(size), "quality": int(quality), "align": images is not None}
    jobs, done, damaged = [], [], []
    for s, first in enumerate(range(0, len(items), shard_size)):
        chunk = items[first:first + shard_size]
        side = out / _shard_name(s).replace(".tar", ".json")
        if side.is_file() and (out / _shard_name(s)).is_file():
            try:
                info = json.loads(side.read_text())
            except ValueError:
                info = {}
            if isinstance(info, dict) and info.get("digest") == _inputs_digest(chunk, settings):
                why = shard_damage(out, info)
                if why is None:
                    done.append(info)
                    continue
                damaged.append({"name": _shard_name(s), "reason": why})
        jobs.append((s, first, chunk, str(root), str(out), settings))
    t0 = time.time()
    bar = tqdm(total=len(items), initial=sum(d["inputs"] for d in done), unit="img", desc="prepare",
               disable=(not sys.stderr.isatty()) if progress is None else not progress)
    results = list(done)
    if workers > 1 and len(jobs) > 1:
        with mp.get_context("spawn").Pool(workers) as pool:
            for info in pool.imap_unordered(write_shard, jobs):
                results.append(info)
                bar.update(info["inputs"])
    else:
        for job in jobs:
            info = write_shard(job)
            results.append(info)
            bar.update(info["inputs"])
    bar.close()
    results.sort(key=lambda r: r["name"])
    manifest = {
        "format": "paco_fr shards v1: <key>.jpg aligned face, <key>.lm.npy (K, 2) unit coords, <key>.json source",
        "size": int(size), "aligned_here": settings["align"], "source": str(root),
        "landmarks_file": str(landmarks) if landmarks else None, "landmarks": landmarks is not None,
        "inputs": len(items), "num_samples": sum(r["count"] for r in results),
        "num_skipped": sum(len(r["skipped"]) for r in results),
        "shards": [{"name": r["name"], "count": r["count"], "sha256": r["sha256"],
                    "bytes": r.get("bytes", (out / r["name"]).stat().st_size)} for r in results],
        "skipped": [sk for r in results for sk in r["skipped"]],
        "shards_reused": len(done), "shards_written": len(jobs), "shards_damaged": damaged,
        "seconds": round(time.time() - t0, 2),
    }
    write_text_atomic(out / MANIFEST, json.dumps(manifest, indent=1))
    return manifest
