"""The runner and CLI: resume after SIGKILL (subprocess), failed cells recorded and retried, the
feature cache hit, `--help`, `list`, `--dry-run`, explicit datasets without a root."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from one_lr import one_lr_profile, one_lr_set

from bench_tasks.store.readers import latest_rows, load_rows

REPO = Path(__file__).resolve().parents[1]
BB = "random:vit_tiny@32/16"

PLUGIN = textwrap.dedent('''
    """Tiny fake datasets for the harness tests (registered on import)."""
    import os

    import numpy as np
    import torch

    from bench_tasks.contracts import DatasetSpec, TaskSplit
    from bench_tasks.registry import DATASETS

    SIZES = {"train": 48, "val": 16, "test": 16}


    class FakeSplit(TaskSplit):
        def __init__(self, task, split, n, seed):
            meta = ({"attribute_names": ["a", "b", "c"]} if task == "attributes"
                    else {"class_names": ["neutral", "happy", "sad"]})
            super().__init__("fake_cls", split, meta=meta, slices={"even": np.arange(n) % 2 == 0})
            g = np.random.default_rng(seed)
            g.integers(0, 3, n) if task == "expression" else None  # (keeps the draws of older versions)
            self.lab = g.integers(0, 3, n)
            # the TaskSplit contract: `targets` are the items' targets, every one (or None)
            self.targets = self.lab if task == "expression" else None
            self.attrs = (g.random((n, 3)) > 0.5).astype(np.uint8)
            self.task = task

        def __len__(self):
            return len(self.lab)

        def __getitem__(self, i):
            c = self.lab[i] if self.task == "expression" else self.attrs[i, 0]
            x = torch.full((3, 32, 32), 0.2 + 0.3 * float(c))
            y = torch.as_tensor(self.attrs[i]) if self.task == "attributes" else int(self.lab[i])
            return x, y


    @DATASETS.register("fake_cls")
    class FakeCls(DatasetSpec):
        name = "fake_cls"
        tasks = ("attributes", "expression")
        needs_root = False

        def load(self, task, split, root, profile, image_size):
            if os.environ.get("FAKE_FAIL_FILE") and os.path.exists(os.environ["FAKE_FAIL_FILE"]) \\
                    and task == "attributes":
                raise RuntimeError("fake dataset failure for the test")
            return FakeSplit(task, split, SIZES[split], {"train": 0, "val": 1, "test": 2}[split])
''')


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    d = tmp_path_factory.mktemp("plugin")
    (d / "fake_cls_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(d))
    import fake_cls_plugin  # noqa: F401  (registers fake_cls in this process)

    yield d
    sys.path.remove(str(d))


def _stale(cells, store, done):
    """Keys of done cells whose rows a plan of `cells` made now would recompute."""
    from bench_tasks.plan.cell_plan import make_plan

    return make_plan(cells, references=False).stale_keys(store.latest(), done)


def _status(cells, results):
    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.store.results import ResultsStore

    return make_plan(cells, references=False).status(ResultsStore(results).latest())


def _env(plugin_dir, **extra):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_dir), str(REPO), env.get("PYTHONPATH", "")])
    env["BENCH_TASKS_PLUGINS"] = "fake_cls_plugin"
    env["OMP_NUM_THREADS"] = "1"
    env.update(extra)
    return env


def _complete_lines(path):
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


@pytest.mark.slow
def test_resume_after_sigkill(tmp_path, plugin):
    res, wd = tmp_path / "results" / "smoke.jsonl", tmp_path / "wd"
    cmd = [sys.executable, "-m", "bench_tasks", "run", "--tasks", "attributes,expression", "--datasets",
           "fake_cls", "--backbones", BB, "--seeds", "0,1", "--fractions", "1", "--results", str(res), "--work-dir", str(wd),
           "--no-progress", "--no-ceilings",  # 4 cells, their 4 concat probes, the 2 floors
           *one_lr_set(("linear.lr_grid", "concat.lr_grid"))]  # resume is tested, not the choice on val
    proc = subprocess.Popen(cmd, env=_env(plugin), cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 150
    while _complete_lines(res) < 1 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stdout.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    first = load_rows(res)
    assert 1 <= len(first) < 10
    with open(res, "ab") as f:  # what a kill in the middle of os.write could leave
        f.write(b'{"key": "torn", "cell": {"backb')
    out = subprocess.run(cmd, env=_env(plugin), cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    assert "1 unreadable line(s)" in out.stdout + out.stderr  # quarantined, not deleted
    assert (res.parent / "smoke.jsonl.rejected").read_text() == '{"key": "torn", "cell": {"backb\n'
    lines = res.read_text().splitlines()
    rows = [json.loads(ln) for ln in lines]  # every line parses: no torn line left
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 10 and all(r["status"] == "ok" for r in rows)
    assert {r["key"] for r in first} <= set(keys)
    # a third run skips everything
    again = subprocess.run(cmd + ["--dry-run"], env=_env(plugin), cwd=tmp_path, capture_output=True, text=True,
                           timeout=120)
    assert "10 already done" in again.stdout
    row = next(r for r in rows if r["cell"]["task"] == "expression" and r["cell"]["backbone"] == BB)
    assert (res.parent / row["artifacts"]["confusion"]).exists()
    assert row["provenance"]["backbone_hash"] and "timings" in row["provenance"]


def test_failed_cell_recorded_then_retried(tmp_path, plugin, monkeypatch):
    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.plan.cells import plan_cells
    from bench_tasks.run.loop import run_plan
    from bench_tasks.run.runner import RunContext

    flag = tmp_path / "fail"
    flag.write_text("1")
    monkeypatch.setenv("FAKE_FAIL_FILE", str(flag))
    cells = plan_cells([BB], {"attributes": ["fake_cls"], "expression": ["fake_cls"]},
                       fractions=[1.0], profile="smoke")
    res = tmp_path / "r.jsonl"
    prof = one_lr_profile()  # the retry is tested, not the choice on val
    ctx = RunContext(res, tmp_path / "wd", device="cpu", progress=False)
    s1 = run_plan(make_plan(cells, profiles=prof), ctx, log=lambda m: None)
    # run_plan adds each task's floor (bench_tasks.plan.floors); the attributes floor fails with its data
    assert (s1.ok, s1.failed) == (2, 2)
    failed = [r for r in load_rows(res) if r["status"] == "failed"]
    assert "fake dataset failure" in failed[0]["error"] and "Traceback" in failed[0]["error"]
    flag.unlink()
    s2 = run_plan(make_plan(cells, profiles=prof), ctx, log=lambda m: None)
    assert (s2.skipped, s2.ok, s2.failed) == (2, 2, 0)
    assert s2.total == 4
    latest = latest_rows(res)
    assert all(r["status"] == "ok" for r in latest.values()) and len(latest) == 4
    # --force recomputes both cells; now their features come from the cache
    s3 = run_plan(make_plan(cells, profiles=prof), dataclasses.replace(ctx, force=True), log=lambda m: None)
    assert s3.ok == 4
    rows = load_rows(res)  # --force appends new rows; readers take the last one per key
    assert rows[-1]["provenance"]["timings"]["features_cache_hit"] is True


def test_feature_cache_hit_skips_backbone(tmp_path, plugin, monkeypatch):
    import fake_cls_plugin

    from bench_tasks.backbones.base import build_backbone
    from bench_tasks.protocols.features import cached_features

    bb = build_backbone(BB, 32)
    split = fake_cls_plugin.FakeSplit("attributes", "val", 16, 1)
    args = (bb, split, [1, 3], 32, 8, torch.device("cpu"), tmp_path / "cache")
    f1, info1 = cached_features(*args, progress=False, key_extra={"task": "attributes"})
    assert not info1["cache_hit"]

    def boom(*a, **k):
        raise AssertionError("the backbone ran on a cache hit")

    monkeypatch.setattr(bb, "forward", boom)
    f2, info2 = cached_features(*args, progress=False, key_extra={"task": "attributes"})
    assert info2["cache_hit"]
    for k in f1:
        assert torch.equal(f1[k], f2[k])
    # the fake expression split draws other images under the same name: not the same cache entry
    split_e = fake_cls_plugin.FakeSplit("expression", "val", 16, 1)
    monkeypatch.undo()
    f3, info3 = cached_features(bb, split_e, [1, 3], 32, 8, torch.device("cpu"), tmp_path / "cache",
                                progress=False)
    assert not info3["cache_hit"]
    assert torch.equal(f3["targets"], torch.as_tensor(split_e.lab))


def test_feature_cache_shared_across_tasks_with_own_targets(tmp_path, plugin, monkeypatch):
    """The same images serve two tasks: one extraction, each task gets its own targets."""
    import fake_cls_plugin

    from bench_tasks.backbones.base import build_backbone
    from bench_tasks.protocols.features import cached_features

    bb = build_backbone(BB, 32)
    split_a = fake_cls_plugin.FakeSplit("attributes", "val", 16, 1)
    split_b = fake_cls_plugin.FakeSplit("attributes", "val", 16, 1)
    f1, info1 = cached_features(bb, split_a, [1, 3], 32, 8, torch.device("cpu"), tmp_path / "c", progress=False)
    assert not info1["cache_hit"]

    class OtherTargets(type(split_b)):
        def __getitem__(self, i):
            x, _ = super().__getitem__(i)
            return x, int(self.lab[i])

    split_b.__class__ = OtherTargets
    monkeypatch.setattr(bb, "forward", lambda *a, **k: (_ for _ in ()).throw(AssertionError("backbone ran")))
    f2, info2 = cached_features(bb, split_b, [1, 3], 32, 8, torch.device("cpu"), tmp_path / "c", progress=False)
    assert info2["cache_hit"]
    assert torch.equal(f1["layer_feats"], f2["layer_feats"])
    assert f1["targets"].shape == (16, 3) and torch.equal(f2["targets"], torch.as_tensor(split_b.lab))


def test_cli_help_list_and_errors(tmp_path, capsys):
    from bench_tasks.cli.app import main

    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0
    assert "run" in capsys.readouterr().out
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("attributes", "expression", "balanced_acc", "celeba", "affectnet7", "farl", "random", "supervised",
                 "smoke", "linear = frozen"):
        assert word in out
    rc = main(["run", "--tasks", "expression", "--datasets", "rafdb", "--results", str(tmp_path / "r.jsonl")])
    err = capsys.readouterr().err
    assert rc == 2 and "EmoLabel/list_patition_label.txt" in err and "expected layout" in err
    # a root without the layout is refused at plan time, also by --dry-run
    rc = main(["run", "--tasks", "expression", "--datasets", "rafdb", "--data-root", f"rafdb={tmp_path}",
               "--dry-run", "--results", str(tmp_path / "r.jsonl")])
    assert rc == 2 and "list_patition_label.txt" in capsys.readouterr().err
    rc = main(["run", "--tasks", "expression", "--datasets", "synthface", "--backbones", "random:vit_tiny@32/16/d1",
               "--dry-run", "--seeds", "0,1", "--fractions", "1", "--protocols", "linear,finetune",
               "--results", str(tmp_path / "r.jsonl")])
    out = capsys.readouterr().out
    # 4 cells + the floor + the supervised:vit_tiny ceiling for seeds 0 and 1 + the concat probe for seeds 0
    # and 1 (next to `linear`; `finetune`'s probe is the same cell)
    assert rc == 0 and "9 cells in the plan" in out and "0 already done" in out and "floor:input-free" in out


def test_data_roots(tmp_path):
    from bench_tasks.plan.cells import DataRoots

    (tmp_path / "celeba").mkdir()
    (tmp_path / "affectnet").mkdir()
    roots = DataRoots.parse([f"{tmp_path}", "rafdb=/x/raf"])
    assert roots.get("celeba") == str(tmp_path / "celeba")
    assert roots.get("affectnet7") == str(tmp_path / "affectnet")
    assert roots.get("rafdb") == "/x/raf" and roots.get("lfwa") is None


def test_rows_of_replaced_weights_are_recomputed(tmp_path):
    """A cell is keyed by its backbone URI (a path): when the file behind it changes (re-trained
    into the same path), its old ok row must not be reused."""
    from bench_tasks.backbones.base import weights_file, weights_sha256
    from bench_tasks.contracts import Cell
    from bench_tasks.registry import TASKS
    from bench_tasks.store.results import ResultsStore
    from bench_tasks.store.rows import make_row

    w = tmp_path / "enc.safetensors"
    w.write_bytes(b"weights v1")
    assert weights_file(f"paco_fr:{w}") == w
    assert weights_file("timm:vit_small_patch16_224:/x/w.pth") == Path("/x/w.pth")
    assert weights_file("random:vit_tiny") is None
    cell = Cell(backbone=f"paco_fr:{w}", task="attributes", dataset="synthface", protocol="linear")
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append(make_row(cell, "ok", "mean_acc", provenance={"backbone_hash": weights_sha256(w)},
                          task_version=TASKS.get("attributes").version))
    done = store.done_keys()
    assert _stale([cell], store, done) == set()
    w.write_bytes(b"weights v2")
    assert _stale([cell], store, done) == {cell.key()}


def test_each_cell_starts_from_its_own_seed(tmp_path):
    """run_cell resets python / numpy / torch global RNGs from the cell's seed: a task that draws
    from them gives the same numbers whatever ran before it, and other seeds give other numbers."""
    import random

    import numpy as np
    import torch

    from bench_tasks.contracts import Cell, CellResult, Task
    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.registry import TASKS
    from bench_tasks.run.runner import RunContext, run_cell

    if "rng_probe" not in TASKS:
        @TASKS.register("rng_probe")
        class _RngProbe(Task):
            name = "rng_probe"
            default_datasets = ("synthface",)
            headline = "draw"

            def run(self, ctx):
                draw = torch.rand(1).item() + np.random.rand() + random.random()
                return CellResult(metrics={"draw": draw})

    def draw(seed, pre):
        torch.manual_seed(pre)
        np.random.seed(pre)
        random.seed(pre)
        plan = make_plan([Cell(BB, "rng_probe", "synthface", "linear", seed=seed)], references=False)
        (cell, version), = plan.items
        row = run_cell(cell, RunContext(tmp_path / "r.jsonl", tmp_path / "wd", device="cpu", progress=False),
                       version, plan.profile_of(cell))
        assert row["status"] == "ok", row.get("error")
        return row["metrics"]["draw"]

    assert draw(0, pre=1) == draw(0, pre=2) != draw(1, pre=1)


@pytest.mark.parametrize("task", ["attributes", "expression"])
def test_linear_probe_same_numbers_from_cache_miss_and_hit(tmp_path, plugin, task):
    """Extracting features draws from the global RNG and loading them does not: the probe head is
    initialised after that, from the cell's seed, so a re-run from the cache trains the same head."""
    from bench_tasks.backbones.base import build_backbone
    from bench_tasks.contracts import Cell, CellContext
    from bench_tasks.registry import TASKS

    cell = Cell(BB, task, "fake_cls", "linear", profile="smoke")
    t = TASKS.get(task)()
    prof = one_lr_profile()  # the same numbers are tested, not the choice on val
    runs = []
    for _ in range(2):  # the first run extracts (cache miss), the second loads (hit)
        bb = build_backbone(BB, t.image_size(prof))
        ctx = CellContext(cell, bb, prof, None, torch.device("cpu"), tmp_path / "wd", progress=False,
                          results_dir=tmp_path)
        torch.manual_seed(0)
        res = t.run(ctx)
        history = json.loads((tmp_path / res.artifacts["history"]).read_text())
        runs.append((res.timings["features_cache_hit"], [h["train_loss"] for h in history]))
    assert [hit for hit, _ in runs] == [False, True]
    assert runs[0][1] == runs[1][1]


def test_artifact_dir_has_the_settings(tmp_path):
    """The same cell computed with other settings into the same results folder keeps its own
    artifacts: the folder is <key>-<settings hash>, not the key alone."""
    import torch

    from bench_tasks.contracts import Cell, CellContext
    from bench_tasks.plan.profiles import get_profile, load_profile, settings_hash

    cell = Cell("random:vit_tiny", "attributes", "synthface", "linear", 1.0, 0, "smoke")
    dirs = []
    for profile in (get_profile("smoke"), load_profile("smoke", ["linear_epochs=3"], register=False)):
        ctx = CellContext(cell, None, profile, None, torch.device("cpu"), tmp_path, results_dir=tmp_path,
                          settings_hash=settings_hash(cell, profile))  # what the runner hands down
        dirs.append(ctx.artifact_dir())
    a, b = dirs
    assert a != b and a.parent == b.parent == tmp_path / "artifacts"
    assert a.name.startswith(cell.key() + "-") and b.name.startswith(cell.key() + "-")
    assert ctx.artifact_relpath(b / "items.npz") == f"artifacts/{b.name}/items.npz"
