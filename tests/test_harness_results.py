"""Results store: schema, atomic appends, torn-line repair, failed rows superseded, dataframe."""

import json

import pytest

from bench_tasks.contracts import Cell, CellResult
from bench_tasks.store.readers import done_keys, latest_rows, load_rows
from bench_tasks.store.results import ResultsStore, to_dataframe
from bench_tasks.store.rows import ROW_KEYS, make_row


def _row(cell, status="ok", acc=50.0):
    res = CellResult(metrics={"acc": acc}, metrics_last={"acc": acc - 1}, metrics_best_test={"acc": acc + 1},
                     slices={"pose:large": {"acc": 40.0}}, artifacts={"confusion": "artifacts/x/confusion.csv"})
    return make_row(cell, status, "acc", True, res if status == "ok" else None,
                    config={"a": 1}, provenance={"backbone_hash": "h", "versions": {"torch": "x"}},
                    error=None if status == "ok" else "Traceback ...\nValueError: boom")


def test_append_and_schema(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    c = Cell("random:vit_tiny", "expression", "fake", "linear")
    store.append(_row(c))
    rows = load_rows(store.path)
    assert len(rows) == 1 and tuple(rows[0]) == ROW_KEYS
    assert rows[0]["cell"]["fraction"] == 1.0 and rows[0]["key"] == c.key()
    assert done_keys(store.path) == {c.key()}


def test_torn_line_ignored_then_repaired(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    c1, c2 = Cell("b", "t", "d", "linear", seed=1), Cell("b", "t", "d", "linear", seed=2)
    store.append(_row(c1))
    line = json.dumps(_row(c2))
    with open(store.path, "a") as f:
        f.write(line[: len(line) // 2])  # a kill mid-write
    assert [r["key"] for r in load_rows(store.path)] == [c1.key()]
    assert store.repair() is True
    assert store.path.read_text().endswith("\n") and len(store.path.read_text().splitlines()) == 1
    assert store.repair() is False
    # appending after a torn line never glues rows together
    with open(store.path, "a") as f:
        f.write('{"key": "tor')
    store.append(_row(c2))
    assert [r["key"] for r in load_rows(store.path)] == [c1.key(), c2.key()]


def test_failed_row_superseded(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    c = Cell("b", "t", "d", "linear")
    store.append(_row(c, "failed"))
    assert done_keys(store.path) == set()
    store.append(_row(c, "ok"))
    assert latest_rows(store.path)[c.key()]["status"] == "ok"
    store.append(_row(c, "ok", acc=61.0))  # recomputed (e.g. after a settings change)
    assert store.compact() == 2
    rows = load_rows(store.path)
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["metrics"]["acc"] == 61.0
    # nothing is lost: the superseded rows are kept beside the file, in order
    from bench_tasks.store.readers import superseded_path

    old = load_rows(superseded_path(store.path))
    assert [r["status"] for r in old] == ["failed", "ok"]
    assert store.compact() == 0 and len(load_rows(superseded_path(store.path))) == 2


def test_to_dataframe(tmp_path):
    store = ResultsStore(tmp_path / "r.jsonl")
    store.append(_row(Cell("b1", "expression", "d", "linear"), acc=60.0))
    store.append(_row(Cell("b2", "expression", "d", "linear"), "failed"))
    df = to_dataframe([store.path])
    assert set(df["backbone"]) == {"b1", "b2"}
    ok = df[df.status == "ok"].iloc[0]
    assert ok["metric/acc"] == 60.0 and ok["last/acc"] == 59.0 and ok["best_test/acc"] == 61.0
    assert ok["slice/pose:large/acc"] == 40.0 and ok["headline_value"] == 60.0
    assert ok["prov/versions/torch"] == "x"


def test_git_state_ignores_what_runs_write(tmp_path):
    """results/ and reports/ are written by the runs themselves: changing them keeps the checkout
    clean in provenance; changing code makes it dirty."""
    import shutil
    import subprocess

    from bench_tasks.store.provenance import git_state

    if shutil.which("git") is None:
        pytest.skip("git is not installed")

    def git(*args):
        subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)

    git("init", "-q")
    for rel in ("code.py", "results/smoke.jsonl", "reports/smoke/SUMMARY.md"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("v1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    assert git_state(tmp_path)["git_dirty"] is False and len(git_state(tmp_path)["git_commit"]) == 40
    (tmp_path / "results/smoke.jsonl").write_text("v2\n")
    (tmp_path / "reports/smoke/SUMMARY.md").write_text("v2\n")
    assert git_state(tmp_path)["git_dirty"] is False
    (tmp_path / "code.py").write_text("v2\n")
    assert git_state(tmp_path)["git_dirty"] is True
    assert git_state(tmp_path / "nowhere") == {"git_commit": None, "git_dirty": None}


def test_git_override_from_the_environment():
    """A copied working tree (a lent device) names its real commit through PACO_FR_GIT_COMMIT."""
    from bench_tasks.store.provenance import git_override

    assert git_override({}) is None
    assert git_override({"PACO_FR_GIT_COMMIT": "8EEFBCA"}) == {
        "git_commit": "8eefbca", "git_dirty": False, "git_source": "PACO_FR_GIT_COMMIT"}
    assert git_override({"PACO_FR_GIT_COMMIT": "8eefbca", "PACO_FR_GIT_DIRTY": "1"})["git_dirty"] is True
    with pytest.raises(ValueError, match="PACO_FR_GIT_COMMIT='main'"):
        git_override({"PACO_FR_GIT_COMMIT": "main"})
    with pytest.raises(ValueError, match="PACO_FR_GIT_DIRTY='yes'"):
        git_override({"PACO_FR_GIT_COMMIT": "8eefbca", "PACO_FR_GIT_DIRTY": "yes"})
