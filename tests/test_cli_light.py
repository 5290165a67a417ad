"""`--help`, `status` of a results file, `list` (from its cached catalogue) and reading a RunSpec (a
spec's errors included) load no torch (nor timm, torchmetrics, matplotlib, pandas), so they answer
in well under a second; bare `status` reads no study's file; `status` takes `run`'s plan flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "timm", "torchmetrics", "matplotlib", "pandas")
PROBE = """
import json, runpy, sys
sys.argv = ["bench_tasks", *json.loads(sys.argv[1])]
try:
    runpy.run_module("bench_tasks", run_name="__main__")
except SystemExit:
    pass
print("LOADED=" + json.dumps([m for m in HEAVY if m in sys.modules]))
""".replace("HEAVY", repr(HEAVY))


def loaded_by(argv: list[str], cwd: Path, **env_vars: str) -> tuple[list[str], str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **env_vars}
    env.pop("BENCH_TASKS_PLUGINS", None)
    out = subprocess.run([sys.executable, "-c", PROBE, json.dumps(argv)], cwd=cwd, env=env, capture_output=True,
                         text=True, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LOADED=")]
    assert line, out.stdout + out.stderr
    return json.loads(line[-1].removeprefix("LOADED=")), out.stdout + out.stderr


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["status", "--help"], ["report", "--help"],
                                  ["status", "--results", "none.jsonl"], ["status"]])
def test_help_and_status_load_no_torch(argv, tmp_path):
    loaded, text = loaded_by(argv, tmp_path)
    assert loaded == [], f"{argv} imported {loaded}"
    if argv == ["--help"]:  # the backbone schemes still end every --help, read from their source
        assert "backbone URIs" in text and "timm:" in text.replace("timm:<", "timm:")


@pytest.mark.parametrize("argv", [["status", "--spec", "no_such_spec"], ["run", "--spec", "no_such_spec"]])
def test_a_spec_is_read_and_refused_without_torch(argv, tmp_path):
    """A RunSpec is read (a bundled spec, a file, the flags over it) and its errors are answered
    before the session layer loads: no torch. Planning itself loads the registries (the settings
    hash reads each task's settings section, defined in the task's module, which imports torch)."""
    loaded, text = loaded_by(argv, tmp_path)
    assert loaded == [], f"{argv} imported {loaded}"
    assert "spec file no_such_spec not found" in text


def test_reading_every_bundled_spec_loads_no_torch(tmp_path):
    probe = ("import json, sys\n"
             "from bench_tasks.run.spec import STUDIES_DIR, RunSpec\n"
             "specs = [RunSpec.from_yaml(p.stem) for p in sorted(STUDIES_DIR.glob('*.yaml'))]\n"
             "[s.overrides for s in specs]\n"
             f"print('LOADED=' + json.dumps([m for m in {HEAVY!r} if m in sys.modules]), len(specs))\n")
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("LOADED=")]
    assert line, out.stdout + out.stderr
    loaded, n = line[-1].removeprefix("LOADED=").rsplit(" ", 1)
    assert json.loads(loaded) == [] and int(n) >= 3


def test_list_prints_a_current_catalogue_without_torch(tmp_path, monkeypatch):
    """A cached catalogue under the current key is printed as it is, with no heavy module loaded."""
    from bench_tasks.cli import list_cmd

    cache = tmp_path / "cache"
    monkeypatch.setenv("PACO_FR_CACHE", str(cache))
    monkeypatch.delenv("BENCH_TASKS_PLUGINS", raising=False)
    cat = {"tasks": [["head_pose", "synthface", "linear", "mae_deg (lower is better)"]], "datasets": [],
           "schemes": [], "heads": [], "profiles": [], "layouts": []}
    cache.mkdir()
    list_cmd.catalogue_path().write_text(json.dumps({"key": list_cmd.catalogue_key(), "catalogue": cat}))
    loaded, text = loaded_by(["list"], tmp_path, PACO_FR_CACHE=str(cache))
    assert loaded == [] and "head_pose" in text and "mae_deg (lower is better)" in text


@pytest.mark.slow  # ~15 s: the first `list` reads every registry module (torch)
def test_list_answers_from_its_catalogue_without_torch(tmp_path):
    """The first `list` reads the registries (torch) and caches what it prints; the next one prints
    the same from the cache, loading none of the heavy modules; a changed source file rebuilds it."""
    cache = str(tmp_path / "cache")
    _, first = loaded_by(["list"], tmp_path, PACO_FR_CACHE=cache)
    loaded, second = loaded_by(["list"], tmp_path, PACO_FR_CACHE=cache)
    assert loaded == [], f"list imported {loaded}"
    def printed(text):
        return [ln for ln in text.splitlines() if not ln.startswith("LOADED=")]

    assert printed(second) == printed(first)
    assert "landmarks" in second and "farl-refine" in second and "smoke" in second


def test_the_catalogue_key_follows_the_source_files(tmp_path, monkeypatch):
    from bench_tasks.cli import list_cmd

    plugin = tmp_path / "my_plugin.py"
    plugin.write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCH_TASKS_PLUGINS", "my_plugin")
    before = list_cmd.catalogue_key()
    assert plugin in list_cmd.source_files()
    plugin.write_text("X = 22\n")  # another size: another key
    assert list_cmd.catalogue_key() != before


def test_bare_status_reads_no_study_file(tmp_path, capsys):
    """`status` without a plan or a results file names none, and reads none (not results/smoke.jsonl)."""
    from bench_tasks.cli.app import main

    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "smoke.jsonl").write_text('{"key": "k", "status": "ok", "cell": {}}\n')
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        assert main(["status"]) == 2
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert "which plan?" in err and "--spec" in err


def test_status_takes_runs_plan_flags(tmp_path, capsys, monkeypatch):
    """`status --tasks ... --backbones ...` is `run ... --status`: the plan's cells, none of another plan."""
    from bench_tasks.cli.app import main
    from bench_tasks.plan import estimate as E

    monkeypatch.setattr(E, "machine_speed", lambda device="cpu", refresh=None: E.Speed(50e9, 80e9, cached=True))
    res = tmp_path / "r.jsonl"
    assert main(["status", "--tasks", "expression", "--datasets", "synthface", "--backbones",
                 "random:vit_tiny@32/16/d1", "--results", str(res), "--no-ceilings", "--no-probes"]) == 0
    out = capsys.readouterr().out
    table = [ln.split() for ln in out.splitlines() if ln.startswith(("random:", "floor:", "all "))]
    assert [r[0] for r in table] == ["floor:input-free", "random:vit_tiny@32/16/d1", "all"], out
    assert int(table[-1][-1]) == int(table[0][-1]) + int(table[1][-1]) >= 2  # every cell to do
    assert not res.exists()  # status writes nothing


def test_status_of_a_plan_loads_the_plugins(tmp_path, capsys, monkeypatch):
    """`status` with plan flags plans as `run` does: the BENCH_TASKS_PLUGINS modules are imported first."""
    from bench_tasks.cli.app import main
    from bench_tasks.plan import estimate as E

    (tmp_path / "status_probe_plugin.py").write_text("IMPORTED = True\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCH_TASKS_PLUGINS", "status_probe_plugin")
    monkeypatch.delitem(sys.modules, "status_probe_plugin", raising=False)
    monkeypatch.setattr(E, "machine_speed", lambda device="cpu", refresh=None: E.Speed(50e9, 80e9, cached=True))
    assert main(["status", "--tasks", "expression", "--datasets", "synthface", "--backbones",
                 "random:vit_tiny@32/16/d1", "--results", str(tmp_path / "r.jsonl"), "--no-ceilings",
                 "--no-probes"]) == 0
    assert sys.modules["status_probe_plugin"].IMPORTED
    monkeypatch.delitem(sys.modules, "status_probe_plugin")


def test_list_piped_into_a_reader_that_stops_early_is_not_an_error():
    """`python -m bench_tasks list | head -2`: exit 0, no traceback when the reader closes the pipe."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "bench_tasks", "list"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader goes away before the first line is written (as `head -0` would)
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert "Traceback" not in err
