"""`data.source=wds`: streaming tar shards (webdataset) for pre-training at scale.

The shards are the output of `python -m paco_fr prepare` (paco_fr/prepare.py): per sample
`<key>.jpg` (an aligned face), `<key>.lm.npy` (float32 (K, 2), K = 5 or 68 points in unit
coordinates of the crop; absent when unknown) and `<key>.json` (where it came from), plus a
`manifest.json` holding every shard's sample count. The manifest is the whole index: start-up
reads one JSON file, never a shard, so it costs the same at 2,000 or 2 million faces.

The stream (`ShardStream`, an IterableDataset that yields whole collated batches):
- epoch e of rank r, loader worker w: the shards permuted with (seed, e), then `[r::world]`, then
  `[w::workers]` -- each epoch every shard is read exactly once by exactly one (rank, worker): no
  overlap, no gap. Each worker's stream runs epoch after epoch without a break, so a batch may
  join an epoch's last samples with the next epoch's first ones (nothing is dropped), and every
  rank can produce as many batches as the run needs (DDP ranks must step together).
- a shuffle buffer of `data.shuffle_buffer` samples (per worker, refilled each epoch, seeded by
  (seed, epoch, rank, worker)) over the undecoded records.
- batches of `train.batch_size` records are formed before decoding; a record that does not decode
  (corrupt JPEG, bad landmarks, missing image) is skipped -- reported as `shard:key` in the batch's
  "skipped" list, which the engine counts and logs -- and its slot is filled by a copy of another
  face of the same batch, so every batch stays full.
- a damaged shard (truncated, or its size differs from the manifest's `bytes`) is read as far as
  it goes: the samples it lost are skipped and counted (`shard:#position` in the batch's
  "skipped" list) and the shard is named once in the batch's "damaged_shards" list; when no
  listed shard is readable, start-up stops with an error naming them.
- resume is exact for the same world size, `data.num_workers`, batch size and shards: worker w's
  position is a number of records, its epoch follows from the manifest's counts and the records of
  the interrupted epoch before that position are read again but not decoded (so the shuffle
  buffer is rebuilt exactly; a damaged shard counts the records it still holds, read once at
  start-up). With another world size or worker count the run continues at the same step, over a
  different sample order.

`DataLoader(stream, batch_size=None, num_workers=W)` takes batches from the workers in turn, so
the rank's batch j is worker (j mod W)'s batch (j div W); `configure()` fixes rank, world, batch
size, workers and the first micro-batch before the loader starts.
"""

from __future__ import annotations

import glob
import io
import json
import logging
import random
from itertools import count
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import IterableDataset, get_worker_info

from paco_fr.data.template import landmarks68_from_five

log = logging.getLogger(__name__)
MANIFEST = "manifest.json"


def _resolve_shards(spec) -> tuple[Path, list[Path]]:
    """data.path (a folder with manifest.json, the manifest itself, or a glob of .tar next to one)
    -> (manifest path, the shards it lists that the spec selects)."""
    p = Path(str(spec)).expanduser()
    if p.is_dir():
        return p / MANIFEST, []
    if p.name == MANIFEST or p.suffix == ".json":
        return p, []
    shards = [Path(s) for s in sorted(glob.glob(str(p)))]
    if not shards:
        raise FileNotFoundError(f"data.path {spec!r}: no shard matches (data.source=wds)")
    return shards[0].parent / MANIFEST, shards


def read_manifest(spec) -> tuple[list[Path], list[int], dict]:
    """(shard paths, sample counts, the manifest) for data.path `spec` (see _resolve_shards)."""
    mpath, selected = _resolve_shards(spec)
    if not mpath.is_file():
        raise FileNotFoundError(
            f"{mpath}: no manifest.json next to the shards (data.source=wds needs the sample counts it holds; "
            "make the shards with `python -m paco_fr prepare`, or write {\"shards\": [{\"name\": ..., \"count\": ...}]})")
    man = json.loads(mpath.read_text())
    entries = man.get("shards")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{mpath}: expected a non-empty list `shards` of {{name, count}}")
    by_name = {}
    for e in entries:
        if not isinstance(e, dict) or "name" not in e or "count" not in e:
            raise ValueError(f"{mpath}: every entry of `shards` needs `name` and `count`, got {e!r}")
        by_name[e["name"]] = int(e["count"])
    if selected:
        missing = [s.name for s in selected if s.name not in by_name]
        if missing:
            raise ValueError(f"{mpath}: shards {missing[:5]} matched by data.path are not in the manifest")
        names = [s.name for s in selected]
    else:
        names = list(by_name)
    names = [n for n in names if by_name[n] > 0]  # a shard whose every input was skipped holds nothing
    paths = [mpath.parent / n for n in names]
    absent = [str(q) for q in paths if not q.is_file()]
    if absent:
        raise FileNotFoundError(f"{mpath}: {len(absent)} shard(s) listed but not found, e.g. {absent[0]}")
    damaged = damaged_by_size(paths, man)
    if paths and len(damaged) == len(paths):
        raise ValueError(f"{mpath}: none of the {len(paths)} shard(s) is readable: "
                         + "; ".join(f"{n}: {why}" for n, why in list(damaged.items())[:5])
                         + ("; ..." if len(damaged) > 5 else "")
                         + ". Run `python -m paco_fr prepare` again with the same inputs: it rewrites damaged shards")
    return paths, [by_name[n] for n in names], man


def damaged_by_size(paths: list[Path], manifest: dict) -> dict[str, str]:
    """{shard name: why} for shards whose file is empty or whose size differs from the manifest's
    `bytes` (a cut copy, a truncated file); a stat per shard, no shard is read."""
    sizes = {e.get("name"): e.get("bytes") for e in manifest.get("shards", []) if isinstance(e, dict)}
    out = {}
    for p in paths:
        size = p.stat().st_size
        want = sizes.get(p.name)
        if size == 0:
            out[p.name] = "empty file (0 bytes)"
        elif want is not None and int(want) != size:
            out[p.name] = f"{size} bytes, the manifest says {int(want)} (truncated or changed)"
    return out


def epoch_shards(n_shards: int, seed: int, epoch: int, rank: int, world: int, worker: int, workers: int) -> list[int]:
    """Shard indices read in `epoch` by (rank, worker): a permutation of all shards fixed by
    (seed, epoch), split rank-wise then worker-wise (disjoint; their union is every shard)."""
    perm = list(range(n_shards))
    random.Random(f"shards:{seed}:{epoch}").shuffle(perm)
    return perm[rank::world][worker::workers]


def default_decoder() -> str:
    """`simplejpeg` when installed (faster JPEG decoding, docs/throughput.md), else `pil`."""
    try:
        # kept in the try: simplejpeg is optional (PIL decodes without it)
        import simplejpeg  # noqa: F401
    except ImportError:
        return "pil"
    return "simplejpeg"


def _decode_image(data: bytes, jpeg: bool, img_size: int, decoder: str) -> np.ndarray:
    if decoder == "simplejpeg" and jpeg:
        # lazy: simplejpeg is optional; only the simplejpeg decoder imports it
        import simplejpeg

        img = simplejpeg.decode_jpeg(data, colorspace="RGB")
        if img.shape[0] == img_size and img.shape[1] == img_size:
            return img
        return np.asarray(Image.fromarray(img).resize((img_size, img_size), Image.BICUBIC))
    with Image.open(io.BytesIO(data)) as im:
        im = im.convert("RGB")
        if im.size != (img_size, img_size):
            im = im.resize((img_size, img_size), Image.BICUBIC)
        return np.asarray(im)


def _decode_sample(rec: dict, img_size: int, decoder: str = "pil") -> tuple[np.ndarray, np.ndarray | None]:
    data = rec.get("jpg") or rec.get("jpeg") or rec.get("png") or rec.get("webp")
    if data is None:
        raise ValueError(f"no image member (got {sorted(k for k in rec if not k.startswith('__'))})")
    img = _decode_image(data, "jpg" in rec or "jpeg" in rec, img_size, decoder)
    lm = None
    if "lm.npy" in rec:
        pts = np.load(io.BytesIO(rec["lm.npy"]), allow_pickle=False).astype(np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2 or pts.shape[0] not in (5, 68):
            raise ValueError(f"lm.npy: expected (5, 2) or (68, 2) unit coordinates, got {pts.shape}")
        if len(pts) == 5:
            pts = landmarks68_from_five(pts)
        lm = pts.astype(np.float32)
    return img, lm


class ShardStream(IterableDataset):
    """See the module docstring. `len()` is the manifest's sample count."""

    captions = None

    def __init__(self, spec, img_size: int, seed: int = 0, shuffle_buffer: int = 2000, decoder: str | None = None):
        self.shards, self.counts, self.manifest = read_manifest(spec)
        self.img_size, self.seed, self.shuffle_buffer = int(img_size), int(seed), int(shuffle_buffer)
        self.n = int(sum(self.counts))
        if self.n == 0:
            raise ValueError(f"{spec}: the manifest counts no samples")
        self.has_landmarks = bool(self.manifest.get("landmarks", True))
        self.decoder = decoder or default_decoder()
        self.bad: set[str] = set()
        self.damaged: dict[str, str] = damaged_by_size(self.shards, self.manifest)  # name -> why
        for name, why in self.damaged.items():
            log.warning("damaged shard %s (%s): its readable samples are used, the others skipped and counted",
                        name, why)
        self._readable: dict[str, int] = {}  # records a damaged shard still holds (read once, for resume)
        self._pending_skipped: list[str] = []  # lost samples / damaged shards not yet reported in a batch
        self._pending_damaged: list[str] = []
        self._reported_damaged: set[str] = set()
        self.configure()

    def __len__(self) -> int:
        return self.n

    def configure(self, rank: int = 0, world: int = 1, batch_size: int = 1, start_micro: int = 0,
                  workers: int = 0) -> None:
        self.rank, self.world, self.batch_size = int(rank), int(world), int(batch_size)
        self.start_micro, self.workers = int(start_micro), max(1, int(workers))
        if len(self.shards) < self.world * self.workers:
            raise ValueError(f"{len(self.shards)} shard(s) cannot feed {self.world} rank(s) x {self.workers} loader "
                             "worker(s) (each needs at least one shard per epoch): make smaller shards "
                             "(prepare --shard-size) or lower data.num_workers")

    def shards_of(self, epoch: int, rank: int | None = None, worker: int = 0, workers: int | None = None) -> list[Path]:
        idx = epoch_shards(len(self.shards), self.seed, epoch, self.rank if rank is None else rank, self.world,
                           worker, self.workers if workers is None else workers)
        return [self.shards[i] for i in idx]

    # ------------------------------------------------------------------ the stream of one worker
    def _records(self, worker: int, skip: int):
        """Undecoded records of `worker`, epoch after epoch, shuffled; the first `skip` are dropped
        (whole epochs by the manifest's counts, the rest by reading)."""
        # lazy: webdataset only when shards are streamed
        import webdataset as wds

        epoch = 0
        while True:
            n_epoch = sum(self._records_in(i) for i in epoch_shards(len(self.shards), self.seed, epoch, self.rank,
                                                                     self.world, worker, self.workers))
            if n_epoch == 0 and not self._any_readable():  # skipping could never end: _indexed says why
                break
            if skip < n_epoch:
                break
            skip -= n_epoch
            epoch += 1
        for e in count(epoch):
            urls = [str(s) for s in self.shards_of(e, worker=worker)]
            src = wds.tarfile_samples([{"url": u} for u in urls], handler=self._tar_error)
            offsets = self._offsets()
            stream = self._indexed(src, offsets, urls)
            rng = random.Random(f"buffer:{self.seed}:{e}:{self.rank}:{worker}")
            buf = max(1, self.shuffle_buffer)
            for rec in wds.filters._shuffle(stream, bufsize=buf, initial=buf, rng=rng):
                if skip:
                    skip -= 1
                    continue
                yield rec

    def _offsets(self) -> dict[str, int]:
        out, acc = {}, 0
        for s, c in zip(self.shards, self.counts):
            out[str(s)] = acc
            acc += c
        return out

    def _indexed(self, src, offsets: dict[str, int], urls: list[str]):
        """Add `__index__`: the sample's global row (shard's first row + its position in the shard).
        At the end of the epoch's shards, a shard that gave fewer records than the manifest counts
        is damaged: its lost positions are queued as skipped samples, its name for the next batch."""
        pos: dict[str, int] = {}
        for rec in src:
            url = rec["__url__"]
            i = pos.get(url, 0)
            pos[url] = i + 1
            rec["__index__"] = offsets.get(url, 0) + i
            yield rec
        counts = {str(s): c for s, c in zip(self.shards, self.counts)}
        for url in urls:
            got, want = pos.get(url, 0), counts.get(url, 0)
            if got < want:
                name = Path(url).name
                self._pending_skipped += [f"{name}:#{j}" for j in range(got, want)]
                if name not in self._reported_damaged:
                    self._reported_damaged.add(name)
                    self._pending_damaged.append(name)
                    log.warning("damaged shard %s: %d of its %d samples could not be read (skipped and counted)",
                                name, want - got, want)
                self.damaged.setdefault(name, f"{got} of {want} samples readable")
                self._readable.setdefault(name, got)
        if urls and not pos and not self._any_readable():
            raise RuntimeError(f"no readable sample in the shards {[Path(u).name for u in urls][:5]} (damaged: "
                               f"{sorted(self.damaged) or 'unknown'}); run `python -m paco_fr prepare` again with the "
                               "same inputs: it rewrites damaged shards")

    def mark_damaged(self, names) -> None:
        """Shards found damaged while read before a resume (the checkpoint lists them): their
        readable records are counted at start-up, so the resumed positions are exact."""
        for n in names:
            self.damaged.setdefault(str(n), "found damaged while read before the resume")

    def _any_readable(self) -> bool:
        return any(self._records_in(i) for i in range(len(self.shards)))

    def _records_in(self, i: int) -> int:
        """The records shard i yields: the manifest's count, or for a damaged shard the records it
        still holds (read once; resume positions count records)."""
        name = self.shards[i].name
        if name not in self.damaged:
            return self.counts[i]
        if name not in self._readable:
            # lazy: webdataset only when shards are streamed
            import webdataset as wds

            self._readable[name] = sum(1 for _ in wds.tarfile_samples([{"url": str(self.shards[i])}],
                                                                      handler=lambda exn: True))
        return self._readable[name]

    def _tar_error(self, exn: Exception) -> bool:
        log.warning("skipping a damaged part of a shard: %s", exn)
        return True

    def _batch(self, recs: list[dict]) -> dict:
        good, skipped = [], self._pending_skipped
        damaged, self._pending_skipped, self._pending_damaged = self._pending_damaged, [], []
        for rec in recs:
            name = f"{Path(str(rec.get('__url__'))).name}:{rec.get('__key__')}"
            try:
                good.append((rec["__index__"], *_decode_sample(rec, self.img_size, self.decoder)))
            except Exception as e:  # noqa: BLE001 - any decoding failure means "skip this sample"
                if name not in self.bad:
                    log.warning("skipping unreadable sample %s: %s", name, e)
                self.bad.add(name)
                skipped.append(name)
        if not good:
            raise RuntimeError(f"no readable sample in a batch of {len(recs)} (e.g. {skipped[:3]})")
        good = [good[i % len(good)] for i in range(len(recs))]  # corrupt slots: copies of good faces
        out = {"image": torch.from_numpy(np.stack([g[1] for g in good])).permute(0, 3, 1, 2).contiguous(),
               "index": torch.tensor([g[0] for g in good]), "skipped": skipped, "damaged_shards": damaged}
        if self.has_landmarks:
            nan = np.full((68, 2), np.nan, dtype=np.float32)
            out["landmarks"] = torch.from_numpy(np.stack([nan if g[2] is None else g[2] for g in good]))
        return out

    def __iter__(self):
        info = get_worker_info()
        nw = info.num_workers if info is not None else 1
        if nw != self.workers:
            raise RuntimeError(f"ShardStream configured for {self.workers} loader worker(s) but runs in {nw}")
        bs, start = self.batch_size, self.start_micro
        # the rank's micro-batch g is stream (g mod W)'s batch (g div W). The loader asks its workers in
        # turn from worker 0, so after a resume at `start` loader worker i plays stream (start + i) mod W,
        # from that stream's first batch at or after `start`
        worker = ((info.id if info is not None else 0) + start) % nw
        first = -(-(start - worker) // nw) if start > worker else 0
        recs = []
        for rec in self._records(worker, first * bs):
            recs.append(rec)
            if len(recs) == bs:
                yield self._batch(recs)
                recs = []

    def fixed_images(self, n: int) -> torch.Tensor:
        """The first n readable faces of the first shard (uint8 (n, 3, H, W)), for snapshots."""
        # lazy: webdataset only when shards are streamed
        import webdataset as wds

        imgs = []
        for rec in wds.tarfile_samples([{"url": str(s)} for s in self.shards[:4]], handler=self._tar_error):
            try:
                imgs.append(_decode_sample(rec, self.img_size, self.decoder)[0])
            except Exception:  # noqa: BLE001 - snapshots use readable faces only
                continue
            if len(imgs) == n:
                break
        if not imgs:
            names = [s.name for s in self.shards[:4]]
            raise ValueError(f"no readable face in the shards {names} (damaged: {sorted(self.damaged) or 'unknown'}); "
                             "run `python -m paco_fr prepare` again with the same inputs: it rewrites damaged shards")
        return torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
