"""The results store as a union of files: `results/<profile>.jsonl` plus one file per worker.

Layout next to a results file `R = results/<profile>.jsonl` (see docs/cluster.md):
    results/<profile>.jsonl              rows of one-process runs (`--launcher local`, the default)
    results/<profile>.d/<worker>.jsonl   rows of one worker (a SLURM / submitit job, a --num-shards
                                         process): only that worker appends to it
    results/<profile>.d/claims/          the claim ledger (bench_tasks.run.claims)
    results/<profile>.d/launches/        one record per launch: its plan's cells, its jobs (`status`)

Readers take the union: every complete row of every file; per key the row that finished LAST
wins. Within one file the file order decides (one writer, or writers serialised by the file's
lock); across files the row's finish time (`provenance.finished`, else `started` +
`wall_time_s`). `ResultsStore.latest()` / `.done_keys()`, `run --dry-run`, `status` and `report`
all read this union.

    worker_dir(results) -> Path              results/<profile>.d
    record_launch(results, record) -> Path   results/<profile>.d/launches/<time>-<pid>.json
    union_files(results) -> [Path]           the main file first, then the worker files (sorted)
    row_time(row) -> float                   seconds since the epoch when the row was finished
    union_latest(results) -> {key: row}      the last row per key over the union
    UnionReader(results).refresh() -> {key: row}   the same, re-reading only bytes appended since
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path

from bench_tasks.store.readers import bad_metrics, latest_rows, load_rows
from paco_fr.atomic import write_text_atomic

WORKER_SUFFIX = ".d"


def worker_dir(results: str | Path) -> Path:
    """`results/<stem>.d` for the results file `results/<stem>.jsonl`."""
    p = Path(results)
    return p.with_name(p.stem + WORKER_SUFFIX)


def launch_dir(results: str | Path) -> Path:
    """`results/<stem>.d/launches`: the launch records `status` reads."""
    return worker_dir(results) / "launches"


def record_launch(results: str | Path, record: dict, path: Path | None = None) -> Path:
    """results/<profile>.d/launches/<time>-<pid>.json: the plan's keys and the jobs (for `status`),
    written whole (a temporary file, then renamed)."""
    d = launch_dir(results)
    d.mkdir(parents=True, exist_ok=True)
    path = path or d / f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}.json"
    write_text_atomic(path, json.dumps(record, indent=1))
    return path


def worker_file(results: str | Path, worker: str) -> Path:
    return worker_dir(results) / f"{safe_name(worker)}.jsonl"


def safe_name(s: str) -> str:
    """A file-name-safe version of a worker id (host names, SLURM array ids)."""
    out = "".join(ch if ch.isalnum() or ch in "-_.=" else "_" for ch in str(s))
    return out.strip(".") or "worker"


def union_files(results: str | Path) -> list[Path]:
    """The main results file (whether it exists or not) followed by the worker files, sorted."""
    p = Path(results)
    d = worker_dir(p)
    extra = sorted(f for f in d.glob("*.jsonl") if f.is_file()) if d.is_dir() else []
    return [p, *extra]


def _iso_seconds(s) -> float | None:
    if not s:
        return None
    try:
        return datetime.fromisoformat(str(s)).timestamp()
    except ValueError:
        return None


def row_time(row: dict) -> float:
    """When the row was finished (epoch seconds): `provenance.finished`, else `started` + wall
    time, else 0 (a row without provenance loses against any timed row)."""
    prov = row.get("provenance") or {}
    t = _iso_seconds(prov.get("finished"))
    if t is not None:
        return t
    t = _iso_seconds(prov.get("started"))
    if t is not None:
        return t + float(prov.get("wall_time_s") or 0.0)
    return 0.0


def merge_latest(per_file: list[dict[str, dict]]) -> dict[str, dict]:
    """Combine {key: last row in that file} dicts (in union_files order): the row finished last
    wins; on equal times the later file in the list wins."""
    out: dict[str, dict] = {}
    for latest in per_file:
        for k, r in latest.items():
            old = out.get(k)
            if old is None or row_time(r) >= row_time(old):
                out[k] = r
    return out


def union_latest(results: str | Path) -> dict[str, dict]:
    """The last row per key over the main file and every worker file."""
    return merge_latest([latest_rows(load_rows(f)) for f in union_files(results)])


def _complete_rows(data: bytes):
    """Rows of complete lines; unreadable lines are skipped here (the store's own reader,
    bench_tasks.store.results, reports and repairs them)."""
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict) and "key" in row and "status" in row and not bad_metrics(row):
            yield row


class UnionReader:
    """Incremental union reader for workers that re-check the store before every cell: each
    refresh re-lists the worker folder, re-opens every file (on NFS a fresh open revalidates the
    client's cache: close-to-open consistency) and parses only the bytes appended since the last
    refresh. A file that shrank or was replaced (compaction of the main file) is re-read whole."""

    def __init__(self, results: str | Path):
        self.results = Path(results)
        self._state: dict[Path, tuple[int, int, bytes, dict[str, dict]]] = {}  # ino, offset, partial, latest

    def refresh(self) -> dict[str, dict]:
        per_file = []
        for f in union_files(self.results):
            try:
                fd = os.open(f, os.O_RDONLY)
            except FileNotFoundError:
                self._state.pop(f, None)
                continue
            try:
                st = os.fstat(fd)
                ino, off, partial, latest = self._state.get(f, (st.st_ino, 0, b"", {}))
                if ino != st.st_ino or st.st_size < off:
                    ino, off, partial, latest = st.st_ino, 0, b"", {}
                chunks = []
                while True:
                    b = os.pread(fd, 1 << 20, off)
                    if not b:
                        break
                    chunks.append(b)
                    off += len(b)
            finally:
                os.close(fd)
            data = partial + b"".join(chunks)
            cut = data.rfind(b"\n") + 1
            latest = dict(latest)
            for r in _complete_rows(data[:cut]):
                latest.pop(r["key"], None)
                latest[r["key"]] = r
            self._state[f] = (ino, off, data[cut:], latest)
            per_file.append(latest)
        return merge_latest(per_file)
