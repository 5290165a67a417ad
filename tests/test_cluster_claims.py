"""Claims (bench_tasks.run.claims) and the union of row files (bench_tasks.store.rowfiles), in-process:
exclusive creation, staleness (heartbeat timeout, dead local pid, requeued job), takeover races,
failed / forced / orphaned cells, the per-file vs across-file "last row wins" rule, and the
report reading the union."""

import json
import os
import threading
import time
from pathlib import Path

import pytest

from bench_tasks.run.claims import ClaimBook, Identity
from bench_tasks.store.rowfiles import UnionReader, row_time, union_latest, worker_dir


def who(host="node-a", pid=101, job=None, worker=None):
    return Identity(host=host, pid=pid, job_id=job, worker=worker or f"{host}-{pid}")


def book(tmp_path, me, timeout=60.0, hb=1.0):
    return ClaimBook(tmp_path / "claims", timeout_s=timeout, heartbeat_s=hb, me=me)


def test_exclusive_claim_then_busy(tmp_path):
    a, b = book(tmp_path, who("node-a")), book(tmp_path, who("node-b"))
    oa = a.acquire("k1", "cell 1")
    assert oa.verdict == "claimed" and oa.claim is not None
    ob = b.acquire("k1", "cell 1")
    assert ob.verdict == "busy" and ob.claim is None and ob.info["host"] == "node-a"
    info = json.loads(a.path("k1", 0).read_text())
    assert info["state"] == "running" and info["host"] == "node-a" and info["pid"] == 101
    assert {"job_id", "heartbeat", "claimed_at", "worker", "cell"} <= set(info)
    oa.claim.finish("done", rows="results/x.jsonl")
    assert b.acquire("k1", have_row=True).verdict == "done"
    assert json.loads(a.path("k1", 0).read_text())["rows"] == "results/x.jsonl"


def test_heartbeat_keeps_claim_fresh_then_stale_after_timeout(tmp_path):
    a = book(tmp_path, who("node-a"), timeout=0.6, hb=0.1)
    b = book(tmp_path, who("node-b"), timeout=0.6, hb=0.1)
    claim = a.acquire("k", "c").claim.start_heartbeat()
    time.sleep(1.0)  # longer than the timeout: only the heartbeat keeps it fresh
    assert b.acquire("k").verdict == "busy"
    claim.stop_heartbeat()  # the worker freezes (or its node drops off the network)
    time.sleep(0.9)
    out = b.acquire("k", "c")
    assert out.verdict == "took_over" and out.claim.gen == 1
    assert out.claim.info["took_over"]["host"] == "node-a"
    assert claim.lost()  # the frozen owner learns it must not write its row
    assert a.acquire("k").verdict == "busy"  # b's claim is fresh


def test_dead_local_pid_is_stale_at_once(tmp_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()  # reaped: the pid no longer exists
    import socket

    host = socket.gethostname()
    dead = book(tmp_path, who(host, p.pid), timeout=3600)
    dead.acquire("k", "c")
    me = book(tmp_path, who(host, os.getpid()), timeout=3600)
    assert me.acquire("k").verdict == "took_over"
    # a claim of a live local process is not
    alive = book(tmp_path, who(host, os.getppid()), timeout=3600)
    alive.acquire("k2", "c")
    assert me.acquire("k2").verdict == "busy"


def test_requeued_job_takes_back_its_own_claims(tmp_path):
    first = book(tmp_path, who("node-a", 1, job="777_3"))
    first.acquire("k", "c")
    again = book(tmp_path, who("node-b", 2, job="777_3"))  # same array task, restarted elsewhere
    assert again.acquire("k").verdict == "took_over"
    other = book(tmp_path, who("node-c", 3, job="778_0"))
    other_claim = other.acquire("k2").claim
    assert again.acquire("k2").verdict == "busy" and other_claim is not None


def test_one_winner_when_many_take_over_a_stale_claim(tmp_path):
    old = book(tmp_path, who("node-x"), timeout=0.2, hb=0.05)
    old.acquire("k", "c")
    time.sleep(0.4)
    results, barrier = [], threading.Barrier(8)

    def contender(i):
        b = book(tmp_path, who(f"node-{i}"), timeout=0.2, hb=0.05)
        barrier.wait()
        results.append(b.acquire("k", "c").verdict)

    ts = [threading.Thread(target=contender, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert results.count("took_over") == 1, results
    assert set(results) <= {"took_over", "lost_race", "busy"}
    assert sorted(p.name for p in (tmp_path / "claims").iterdir()) == ["k.0.claim", "k.1.claim"]


def test_failed_forced_and_orphaned_cells(tmp_path):
    a, b = book(tmp_path, who("node-a")), book(tmp_path, who("node-b"))
    a.acquire("f", "c").claim.finish("failed")
    t_after = time.time() + 1
    assert b.acquire("f", since=0.0).verdict == "failed"  # failed in this launch: not retried twice
    assert b.acquire("f", since=t_after).verdict == "took_over"  # failed before this launch: retried
    a.acquire("d", "c").claim.finish("done")
    assert b.acquire("d", since=t_after, have_row=True).verdict == "done"
    assert b.acquire("d", since=t_after, force=True, have_row=True).verdict == "took_over"
    # a done claim whose row nobody sees: trusted while fresh, recomputed once old
    c = a.acquire("o", "c").claim
    c.finish("done")
    assert b.acquire("o", have_row=False).verdict == "done"
    c.info["finished"] = time.time() - 10 * b.visibility_s
    c._write()
    assert b.acquire("o", have_row=False).verdict == "took_over"
    # released claims are free
    a.acquire("r", "c").claim.release()
    assert b.acquire("r").verdict == "took_over"


def test_unparseable_claim_counts_as_running_until_old(tmp_path):
    b = book(tmp_path, who("node-b"), timeout=0.3, hb=0.1)
    (tmp_path / "claims").mkdir()
    (tmp_path / "claims" / "k.0.claim").write_bytes(b"")  # created, content not written yet
    assert b.acquire("k").verdict == "busy"
    time.sleep(0.5)
    assert b.acquire("k").verdict == "took_over"


def test_timeout_must_exceed_heartbeat(tmp_path):
    with pytest.raises(ValueError, match="timeout"):
        ClaimBook(tmp_path, timeout_s=10, heartbeat_s=30)


def _row(key, status, finished=None, started=None, wall=0.0, v=0.0):
    prov = {}
    if finished:
        prov["finished"] = finished
    if started:
        prov["started"], prov["wall_time_s"] = started, wall
    return {"key": key, "cell": {"backbone": "b", "task": "t", "profile": "smoke"}, "status": status,
            "metrics": {"v": v}, "provenance": prov}


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_union_last_row_by_time_across_files_file_order_within(tmp_path):
    res = tmp_path / "results" / "smoke.jsonl"
    d = worker_dir(res)
    assert d == tmp_path / "results" / "smoke.d"
    _write(res, [_row("a", "failed", started="2026-01-01T00:00:00+00:00", wall=5),
                 _row("b", "ok", started="2026-01-01T00:00:00+00:00", v=1)])
    _write(d / "w1.jsonl", [_row("a", "ok", finished="2026-01-01T00:01:00+00:00", v=2),
                            _row("b", "ok", finished="2025-12-31T00:00:00+00:00", v=3)])
    # within one file: the later line wins even with an earlier time
    _write(d / "w2.jsonl", [_row("c", "ok", finished="2026-01-02T00:00:00+00:00", v=4),
                            _row("c", "failed", finished="2026-01-01T00:00:00+00:00", v=5)])
    latest = union_latest(res)
    assert latest["a"]["metrics"]["v"] == 2  # the worker's ok row is newer than the failed one
    assert latest["b"]["metrics"]["v"] == 1  # the older worker row does not supersede
    assert latest["c"]["status"] == "failed"
    assert row_time(_row("x", "ok")) == 0.0
    from bench_tasks.store.results import ResultsStore

    assert ResultsStore(res).done_keys() == {"a", "b"}
    # the report reads the same union
    from bench_tasks.report.load import load_rows

    loaded = load_rows([res])
    assert {r["key"]: r["metrics"]["v"] for r in loaded.rows} == {"a": 2, "b": 1, "c": 5}
    assert len(loaded.files) == 3


def test_union_reader_reads_appended_bytes_and_new_files(tmp_path):
    res = tmp_path / "r.jsonl"
    d = worker_dir(res)
    reader = UnionReader(res)
    assert reader.refresh() == {}
    _write(d / "w1.jsonl", [_row("a", "ok", finished="2026-01-01T00:00:00+00:00")])
    assert set(reader.refresh()) == {"a"}
    with open(d / "w1.jsonl", "a") as f:
        f.write(json.dumps(_row("b", "ok", finished="2026-01-01T00:00:01+00:00")) + "\n")
        f.write('{"key": "torn", "sta')  # a writer in the middle of a line
    assert set(reader.refresh()) == {"a", "b"}
    with open(d / "w1.jsonl", "a") as f:
        f.write('tus": "ok", "provenance": {}}\n')
    assert set(reader.refresh()) == {"a", "b", "torn"}
    _write(res, [_row("m", "ok")])  # the main file appears / is rewritten by compaction
    assert set(reader.refresh()) == {"a", "b", "torn", "m"}
    _write(res, [])
    assert set(reader.refresh()) == {"a", "b", "torn"}
    assert Path(d).is_dir()
