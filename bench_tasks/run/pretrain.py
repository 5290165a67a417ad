"""Stage 1 of `run --all`: the study's pre-training suite (bench_tasks.plan.suite, budgets from
bench_tasks.plan.study.plan_suite), run here one after the other or `--pretrain-jobs` at a time.
A finished run is reused, an interrupted one resumes (paco_fr.engine.pretrain).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import socket
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

import torch

from bench_tasks.backbones.base import RECORDED_HASH_KEY, weights_sha256
from bench_tasks.contracts import Profile
from bench_tasks.errors import cause_line
from bench_tasks.plan.study import PlannedRun, write_budget_plan
from bench_tasks.plan.suite import CONTROL_COMPONENTS, FAILED_NAME, SuiteRun, write_run_identity
from paco_fr.atomic import write_text_atomic
from paco_fr.engine import pretrain


def pretrain_suite(profile: Profile, plan: list[PlannedRun], runs_root: str | Path = "runs", budget_by: str = "flops",
                   log: Callable[[str], None] = print, progress: bool = True, failed: list | None = None,
                   jobs: int = 1, keep: Callable[[PlannedRun], bool] | None = None,
                   after: Callable[[PlannedRun, Path], None] | None = None,
                   claims: RunClaims | None = None) -> dict[str, Path]:
    """Pre-train (or reuse / resume) every run of the suite as `plan` (bench_tasks.plan.study.plan_suite:
    each run at each of its pre-training seeds, its length matched to the reference's budget by
    `budget_by`) lays it out, the plan written to runs/<profile>/budget.json first; returns {run
    name: encoder path}. `jobs` > 1: that many runs at once, each in its own process (one GPU or CPU
    shared; a run whose teacher is in the suite starts when the teacher has finished); the runs and
    their results are the same as one after the other. A run that fails is reported and left out
    (appended to `failed` as (name, cause)); the others go on. `keep(p)` True: the run is left
    alone and not returned (the caller's rule: finished on another machine, nothing left to compute
    from it). `after(p, encoder)`: called once each run is ready, before the next one starts (runs
    one at a time then: a study that evaluates each run before pre-training the next). `claims`:
    this process is one of several pre-training the suite (one at a time each): a run another live
    process is training is left to it (with the runs it teaches) and not returned."""
    write_budget_plan(plan, Path(runs_root) / profile.name / "budget.json", budget_by)
    kept = {p.run.name for p in plan if keep is not None and keep(p)}
    for p in plan:
        if p.run.name in kept:
            log(f"[stage 1: pre-training] {p.run.name}: kept (finished on another machine: its summary is here, "
                "its encoder is not, and every cell of it has a row from its weights)")
    plan = [p for p in plan if p.run.name not in kept]
    if int(jobs) > 1 and len(plan) > 1 and after is None and claims is None:
        return _pretrain_parallel(plan, profile.name, int(jobs), log, failed)
    out: dict[str, Path] = {}
    elsewhere: set[str] = set()  # runs another process is training (and the runs they teach)
    for i, p in enumerate(plan, 1):
        where = f"[stage 1: pre-training {i}/{len(plan)}] {p.run.name}"
        if p.run.teacher in elsewhere:
            log(f"{where}: left to the process that trains its teacher {p.run.teacher}")
            elsewhere.add(p.run.name)
            continue
        claim, holder = claims.take(p.run.name) if claims is not None else (_NoClaim(), None)
        if claim is None:
            log(f"{where}: being pre-trained by another process ({holder}); left to it")
            elsewhere.add(p.run.name)
            continue
        log(f"{where} ({p.steps} steps) -> {p.run_dir}")
        try:
            out[p.run.name] = _pretrain_one(p.run, dict(p.overrides), str(p.run_dir), profile.name, progress)
        except (KeyboardInterrupt, InterruptedError):
            claim.release("stopped before the run finished")
            raise
        except Exception as err:  # one broken objective must not sink the study
            claim.finish("failed", note=cause_line(err))
            _run_failed(p.run.name, cause_line(err), log, failed, run_dir=p.run_dir)
            continue
        claim.finish("done")  # finished: another process reaching it reuses it (and shares its cells)
        if after is not None:
            after(p, out[p.run.name])
    return out


class RunClaims:
    """Which process pre-trains which run of the suite, when several share it (`run --all
    --worker-files` on one machine or several): a claim per run in the results file's claim ledger
    (bench_tasks.run.claims, key `pretrain-<run>`), held with heartbeats while the run trains; a
    claim whose process died or stopped beating is taken over."""

    def __init__(self, book, since: float):
        self.book, self.since = book, since

    def take(self, name: str):
        """(the run's claim, None) when this process may train (or reuse) the run now; (None, who
        holds it) while another live process trains it."""
        got = self.book.acquire(f"pretrain-{name}", name, since=self.since, force=True)
        if got.claim is not None:
            return got.claim.start_heartbeat(), None
        if got.verdict in ("busy", "lost_race"):
            info = got.info or {}
            return None, f"{info.get('host', '?')}, pid {info.get('pid', '?')}"
        return _NoClaim(), None  # finished by another process of this launch: reused here


class _NoClaim:
    """Nothing to hold: this process alone trains the suite, or another process finished the run
    during this launch."""

    def finish(self, state: str, note: str | None = None) -> None:
        pass

    def release(self, note: str = "") -> None:
        pass


def _run_failed(name: str, cause: str, log: Callable[[str], None], failed: list | None, where: str = "",
                run_dir: str | Path | None = None) -> None:
    """A pre-training run that failed: said in the log, appended to `failed` as (name, cause) and,
    given its run directory, written there as failed.json (bench_tasks.plan.suite.run_failure: an
    evaluation process that follows the study stops waiting for it)."""
    log(f"pre-training {name} FAILED: {cause}{where}")
    if failed is not None:
        failed.append((name, cause))
    if run_dir is not None:
        with contextlib.suppress(OSError):
            Path(run_dir).mkdir(parents=True, exist_ok=True)
            write_text_atomic(Path(run_dir) / FAILED_NAME, json.dumps(
                {"cause": cause, "host": socket.gethostname(), "pid": os.getpid(),
                 "time": time.strftime("%Y-%m-%dT%H:%M:%S")}, indent=1) + "\n")


def _pretrain_one(run: SuiteRun, overrides: dict, run_dir: str, profile_name: str, progress: bool = True,
                  threads: int = 0) -> Path:
    """One run of the suite: its method block written before (for the export) and after (into the
    summary of a reused run); returns the encoder's path. Top-level, so a worker process can run it."""
    ov = dict(overrides)
    if not progress:
        ov["train.progress"] = False
    if threads:  # a worker's share of the cores (the profile's train.threads would oversubscribe them)
        torch.set_num_threads(threads)
        ov["train.threads"] = threads
    (Path(run_dir) / FAILED_NAME).unlink(missing_ok=True)  # tried again: no longer failed
    write_run_identity(run, run_dir, profile_name, ov)
    enc = pretrain(profile_name, ov, run_dir=run_dir)
    write_run_identity(run, run_dir, profile_name, ov)  # into the summary.json pretrain wrote
    record_encoder_hash(enc)
    return enc


def record_encoder_hash(enc: str | Path) -> str:
    """Write the encoder's weights hash into its run's summary.json (`encoder_sha256`): the rows of
    this encoder stay checkable on a machine that has the run's small files but not the encoder
    (bench_tasks.backbones.base.recorded_sha256). Returns the hash."""
    enc = Path(enc)
    digest = weights_sha256(enc)
    summary = enc.parent / "summary.json"
    data = json.loads(summary.read_text())
    if data.get(RECORDED_HASH_KEY) != digest:
        data[RECORDED_HASH_KEY] = digest
        write_text_atomic(summary, json.dumps(data, indent=2))
    return digest


def _pretrain_parallel(plan: list[PlannedRun], profile_name: str, jobs: int, log: Callable[[str], None],
                       failed: list | None) -> dict[str, Path]:
    """`jobs` runs at a time in spawned worker processes (CUDA needs spawn, not fork); a run with a
    teacher in the plan is submitted once the teacher's encoder exists. Each worker gets an equal
    share of the CPU cores as its torch threads, and writes its log to <run_dir>/stdout.log."""

    threads = max(1, (os.cpu_count() or 1) // jobs)
    by_name = {p.run.name: p for p in plan}
    # the compared methods (and MCF-style's teacher) first, then the two controls, then the other
    # ablations: a deadline that cuts the stage cuts the least needed runs
    first = {"main": 0, "teacher": 0}
    waiting = sorted(plan, key=lambda p: first.get(p.run.role, 1 if p.run.component in CONTROL_COMPONENTS else 2))
    out: dict[str, Path] = {}
    broken: set[str] = set()
    running: dict = {}
    t0 = {}

    with ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn")) as ex:
        while waiting or running:
            for p in list(waiting):
                teacher = p.run.teacher if p.run.teacher in by_name else None
                if teacher in broken:
                    waiting.remove(p)
                    broken.add(p.run.name)
                    _run_failed(p.run.name, f"its teacher run {teacher} failed", log, failed,
                                run_dir=p.run_dir)
                    continue
                if (teacher is None or teacher in out) and len(running) < jobs:
                    waiting.remove(p)
                    log(f"[stage 1: pre-training, {jobs} at a time] {p.run.name} ({p.steps} steps) -> {p.run_dir}")
                    fut = ex.submit(_pretrain_logged, p.run, dict(p.overrides), str(p.run_dir), profile_name, threads)
                    running[fut], t0[p.run.name] = p, time.time()
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                p = running.pop(fut)
                try:
                    out[p.run.name] = Path(fut.result())
                    log(f"[stage 1] {p.run.name} finished in {time.time() - t0[p.run.name]:.0f}s")
                except Exception as err:  # noqa: BLE001 - one broken objective must not sink the study
                    broken.add(p.run.name)
                    _run_failed(p.run.name, cause_line(err), log, failed,
                                f" (log: {p.run_dir}/stdout.log)", run_dir=p.run_dir)
    return {p.run.name: out[p.run.name] for p in plan if p.run.name in out}  # the plan's order


def _pretrain_logged(run: SuiteRun, overrides: dict, run_dir: str, profile_name: str, threads: int) -> str:
    """A worker process's run, its output to <run_dir>/stdout.log (parallel runs do not interleave)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    with open(Path(run_dir) / "stdout.log", "a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return str(_pretrain_one(run, overrides, run_dir, profile_name, progress=False, threads=threads))
