"""Report generation from the small hand-written results fixture (tests/fixtures/results_small.jsonl).

Hand-computed values: PaCo-FR parsing F1 seeds 80, 82 -> 81.00 ± 1.41 (sample std = sqrt(2));
MAE 75, 77 -> 76.00 ± 1.41; PaCo-FR landmarks NME 5, 6 -> 5.50 ± 0.71; MAE 4, 4.5 -> 4.25 ± 0.35
(best: NME is lower-is-better); random init one seed -> 50.00 / 12.00 without std.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench_tasks.report.build import build_report, main
from bench_tasks.report.figures import codebook_figure, recon_error
from bench_tasks.report.load import first_error_line, load_rows
from bench_tasks.report.naming import method_info
from bench_tasks.report.summary import SMOKE_BANNER

FIXTURE = Path(__file__).parent / "fixtures" / "results_small.jsonl"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(p: Path) -> bool:
    return p.is_file() and p.stat().st_size > 1000 and p.read_bytes()[:8] == PNG_MAGIC


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    # the fixture's backbone paths (runs/smoke/...) are relative: build away from the checkout so
    # that a local runs/ from a real study cannot leak its summary.json settings into the tables
    with contextlib.chdir(out):
        res = build_report([FIXTURE], out, runs_dir=None, profile="smoke", reconstruct=False)
    return out, res


def _md_row(md: str, label: str) -> list[str]:
    for line in md.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    raise AssertionError(f"row {label!r} not in table:\n{md}")


def _md_header(md: str) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith("| Method"))
    return [c.strip() for c in line.strip().strip("|").split("|")]


def test_loader_last_row_wins_and_skips_torn(tmp_path):
    loaded = load_rows(FIXTURE)
    assert loaded.skipped_lines == 1
    attr = [r for r in loaded.rows if r["key"] == "fx_attr"]
    assert len(attr) == 1 and attr[0]["status"] == "ok"
    assert load_rows(tmp_path / "nope.jsonl").missing_files


def test_first_error_line():
    tb = 'Traceback (most recent call last):\n  File "x.py", line 1\nValueError: bad'
    assert first_error_line(tb) == "ValueError: bad"
    assert first_error_line("lfw: root missing\nexpected layout") == "lfw: root missing"
    assert first_error_line(None) == "(no error text)"


def _row(uri, method=None, profile="smoke"):
    r = {"cell": {"backbone": uri, "profile": profile}}
    if method is not None:
        r["method"] = method
    return r


def test_method_names_come_from_the_rows_method_block():
    from bench_tasks.store.method import block

    m = method_info(_row("paco_fr:/any/where/encoder.safetensors",
                         block("paco", "ablation", "codebook", "512", "PaCo-FR, codebook 512", run="abl_codebook_512")))
    assert (m.label, m.kind, m.group, m.setting, m.run) == ("PaCo-FR, codebook 512", "ablation", "codebook", "512",
                                                          "abl_codebook_512")
    # a folder called paco does not make a user's checkpoint "PaCo-FR (ours)": the block decides
    m = method_info(_row("paco_fr:runs/smoke/paco/encoder.safetensors", block("paco_fr", "main", label="my ckpt")))
    assert (m.label, m.kind) == ("my ckpt", "main")
    assert method_info(_row("random:vit_tiny", block("random", "control", label="Random init"))).kind == "main"
    assert method_info(_row("floor:input-free", block("floor", "floor", label="Floor"))).order[0] == -1


def test_rows_without_a_method_block_get_the_studys_identity():
    """Rows written before method blocks: the study's own run list (by run name), else the URI."""
    assert method_info(_row("paco_fr:runs/smoke/paco/encoder.safetensors")).label == "PaCo-FR (ours)"
    assert method_info(_row("paco_fr:runs/smoke/mae/encoder.safetensors")).label == "MAE"
    assert method_info(_row("paco_fr:runs/smoke/farl/encoder.safetensors")).label == "FaRL-style"
    assert method_info(_row("paco_fr:runs/smoke/mcf/encoder.safetensors")).label == "MCF-style"
    assert method_info(_row("random:vit_tiny")).label == "Random init"
    m = method_info(_row("paco_fr:runs/smoke/abl_codebook_512/encoder.safetensors"))
    assert (m.kind, m.group, m.setting) == ("ablation", "codebook", "512")
    assert method_info(_row("paco_fr:runs/smoke/abl_k1/encoder.safetensors")).group == "candidates"
    assert method_info(_row("paco_fr:runs/smoke/abl_mask_random/encoder.safetensors")).setting == "random"
    assert method_info(_row("paco_fr:runs/smoke/abl_no_spatial/encoder.safetensors")).setting == "off"
    assert method_info(_row("paco_fr:runs/smoke/abl_no_incubation/encoder.safetensors")).setting == "off"
    assert method_info(_row("paco_fr:runs/smoke/whatever/encoder.safetensors")).label == \
        "paco_fr:runs/smoke/whatever/encoder.safetensors"
    # another profile's folder is not this profile's study run
    assert method_info(_row("paco_fr:runs/other/paco/encoder.safetensors")).kind == "main"
    assert method_info(_row("paco_fr:runs/other/paco/encoder.safetensors")).label != "PaCo-FR (ours)"


def test_main_table_markdown(report):
    out, res = report
    assert (res["n_ok"], res["n_failed"]) == (23, 2)
    md = (out / "main_table.md").read_text()
    header = _md_header(md)
    assert header[1] == "Parsing SynthFace F1 ↑"
    assert "Landmarks SynthFace NME ↓" in header and "Attributes SynthFace mAcc ↑" in header
    assert "Parsing LaPa F1 ↑" in header and "Landmarks WFLW NME ↓" in header  # reported fill real columns
    col = {h: i for i, h in enumerate(header)}
    paco, mae, rnd = _md_row(md, "PaCo-FR (ours)"), _md_row(md, "MAE"), _md_row(md, "Random init")
    assert paco[col["Parsing SynthFace F1 ↑"]] == "**81.00 ± 1.41**"
    assert mae[col["Parsing SynthFace F1 ↑"]] == "76.00 ± 1.41"
    assert rnd[col["Parsing SynthFace F1 ↑"]] == "50.00"  # one seed: no std
    # lower is better: MAE's 4.25 beats PaCo-FR's 5.50 and random's 12
    assert mae[col["Landmarks SynthFace NME ↓"]] == "**4.25 ± 0.35**"
    assert paco[col["Landmarks SynthFace NME ↓"]] == "5.50 ± 0.71"
    assert rnd[col["Landmarks SynthFace NME ↓"]] == "12.00"
    # the attributes cell failed first, then succeeded under the same key: the ok row counts
    assert paco[col["Attributes SynthFace mAcc ↑"]] == "**88.00**"
    # WFLW: only one measured row -> no bold; reported rows never bold
    assert paco[col["Landmarks WFLW NME ↓"]] == "9.50"
    farl = _md_row(md, "FaRL ep64 (reported)")
    assert farl[col["Parsing LaPa F1 ↑"]] == "94.04"
    # WFLW has a measured row that did not run FaRL's protocol: the published number stays apart
    assert farl[col["Landmarks WFLW NME ↓"]] == "–" and farl[col["Landmarks WFLW (reported) NME ↓"]] == "3.88"
    assert _md_row(md, "PaCo-FR (reported)")[col["Parsing LaPa F1 ↑"]] == "97.63 (skin)"
    assert _md_row(md, "MCF (reported)")[col["Landmarks AFLW-19 NME_diag ↓"]] == "0.932"
    assert "**3.88**" not in md and "**94.04**" not in md
    # measured rows come first, then the reported ones; ablations are not in the main table
    labels = [ln.split("|")[1].strip() for ln in md.splitlines() if ln.startswith("| ") and "---" not in ln][1:]
    assert labels[:3] == ["Random init", "MAE", "PaCo-FR (ours)"]
    assert all(lab.endswith("(reported)") for lab in labels[3:])
    assert not any("codebook" in lab for lab in labels)
    assert "never compared" in md  # the footnote on bolding


def test_main_table_latex_and_csv(report):
    out, _ = report
    tex = (out / "main_table.tex").read_text()
    assert r"\toprule" in tex and r"\midrule" in tex and r"\bottomrule" in tex
    assert r"PaCo-FR (ours) & \textbf{81.00 $\pm$ 1.41}" in tex
    assert r"\textbf{4.25 $\pm$ 0.35}" in tex
    assert r"\textbf{94.04}" not in tex and "FaRL ep64 (reported) & -- & 94.04" in tex
    assert r"\multicolumn{3}{c}{Parsing}" in tex
    wide = pd.read_csv(out / "main_table.csv")
    assert list(wide.columns[:2]) == ["Method", "Kind"]
    assert set(wide.loc[wide["Kind"] == "reported", "Method"]) >= {"FaRL ep16 (reported)", "FaRL ep64 (reported)",
                                                                  "MCF (reported)", "PaCo-FR (reported)"}
    row = wide[wide["Method"] == "PaCo-FR (ours)"].iloc[0]
    assert row["Parsing / SynthFace / F1 (higher is better)"] == "81.00 ± 1.41"
    long = pd.read_csv(out / "main_table_long.csv")
    best = long[long["is_best"]]
    assert set(zip(best["method"], best["task"])) == {("PaCo-FR (ours)", "parsing"), ("MAE", "landmarks"),
                                                      ("PaCo-FR (ours)", "attributes")}
    r = long[(long["method"] == "PaCo-FR (ours)") & (long["task"] == "parsing")].iloc[0]
    assert r["mean"] == pytest.approx(81.0) and r["std"] == pytest.approx(2 ** 0.5) and r["n_seeds"] == 2
    assert not long.loc[long["kind"] == "reported", "is_best"].any()


def test_protocol_and_ablation_tables(report):
    out, _ = report
    proto = (out / "protocols.md").read_text()
    assert "Protocol `linear`" in proto and "Protocol `finetune`" in proto
    ft = proto.split("Protocol `finetune`")[1]
    assert "**85.00**" in _md_row(ft, "PaCo-FR (ours)")
    abl = (out / "ablations.md").read_text()
    assert "Ablation: Codebook size" in abl and "Ablation: Incubation stage" in abl
    cb = abl.split("Ablation: Codebook size")[1].split("### ")[0]
    assert _md_row(cb, "PaCo-FR, codebook 2048")[1:3] == ["2048", "**81.50**"]
    assert _md_row(cb, "PaCo-FR (full): 256")[2] == "81.00 ± 1.41"
    assert "**5.20**" in _md_row(cb, "PaCo-FR, codebook 64")  # lower NME wins over the full row's 5.50
    assert (out / "ablations.tex").read_text().count(r"\begin{table}") == 2
    assert len(pd.read_csv(out / "ablations_long.csv")) > 0


def test_figures_written(report):
    out, _ = report
    assert _is_png(out / "figures" / "data_efficiency.png")
    assert _is_png(out / "figures" / "robustness_slices.png")
    sl = pd.read_csv(out / "slices.csv")
    assert {"pose:frontal", "pose:profile", "occlusion:yes", "illumination:hard"} <= set(sl["slice"])


def test_summary(report):
    out, _ = report
    s = (out / "SUMMARY.md").read_text()
    assert SMOKE_BANNER in s
    assert "23 ok, 2 failed" in s
    assert "random:vit_tiny | expression/synthface | linear | frac=1 | seed=0` — RuntimeError: CUDA out of memory" in s
    assert "recognition/lfw" in s and "lfw: root missing (root: None)" in s
    assert "![Data efficiency](figures/data_efficiency.png)" in s
    assert "![Robustness slices](figures/robustness_slices.png)" in s
    assert "git_commit" not in s and "`abc1234def`" in s and "cpu (ci)" in s
    assert "Measured vs reported" in s and "FaRL ep64 (reported)" in s
    # rows without confidence intervals: a difference is reported, never called better / worse
    assert ("PaCo-FR, incubation off vs full (better in 0, worse in 0, the same in 0 of 1 columns, the rest not "
            "shown or untested): Parsing SynthFace F1 -3.00 (untested: no interval)") in s
    # every ablation in one table of differences from the full model, the same comparisons
    assert "Every ablation against the full PaCo-FR in one table" in s
    assert "| Incubation stage | PaCo-FR, incubation off | -3.00 (untested) |" in s
    assert "no ok results for task Recognition" in s and "Masking strategy" in s
    assert "1 torn / unreadable line" in s


def test_codebook_figure_from_synthetic_arrays(tmp_path):
    rng = np.random.default_rng(0)
    orig = rng.random((4, 3, 32, 32)).astype(np.float32)
    data = {}
    for size, noise in [(64, 0.2), (512, 0.1), (2048, 0.05)]:
        corrupted = orig.copy()
        corrupted[:, :, 8:16, 8:24] = 0.5
        data[size] = {"original": orig, "corrupted": corrupted,
                      "reconstructed": np.clip(orig + rng.normal(0, noise, orig.shape), 0, 1)}
    p, note = codebook_figure(data, tmp_path / "cb.png", n_faces=3)
    assert note is None and _is_png(p)
    mse, psnr = recon_error(orig, orig * 0.9)
    assert mse == pytest.approx(float(np.mean((orig * 0.1) ** 2)), rel=1e-5) and psnr > 10
    # channels-last uint8 also accepted
    u8 = {8: {k: (np.transpose(v, (0, 2, 3, 1)) * 255).astype(np.uint8) for k, v in data[64].items()}}
    assert _is_png(codebook_figure(u8, tmp_path / "cb2.png")[0])
    assert codebook_figure({}, tmp_path / "none.png") == (None, "no reconstructions")


def test_method_blocks_label_ablations_and_runs_feed_only_the_codebook_figure(tmp_path):
    """The rows' method blocks give labels and settings; runs/ is read only for the codebook
    figure (reconstructions.npz of the runs the rows name)."""
    from bench_tasks.store.method import block

    runs = tmp_path / "runs"
    rng = np.random.default_rng(1)
    orig = rng.random((2, 3, 16, 16)).astype(np.float32)
    settings = {"masking": "structured", "codebook": "1024", "candidates": "4", "incubation": "on",
                "spatial": "on (w=0.1)"}
    blocks = {"paco": block("paco", "main", label="PaCo-FR (ours)", run="paco", settings=settings),
              "abl_codebook_64": block("paco", "ablation", "codebook", "64", "PaCo-FR, codebook 64",
                                       run="abl_codebook_64", settings={**settings, "codebook": "64"})}
    for name in blocks:
        d = runs / "smoke" / name
        d.mkdir(parents=True)
        np.savez(d / "reconstructions.npz", original=orig, corrupted=orig * 0.5, reconstructed=orig * 0.9)
    rows = [json.loads(ln) for ln in FIXTURE.read_text().splitlines() if ln.endswith("}")]
    for r in rows:
        name = r["cell"]["backbone"].split("/")[-2] if r["cell"]["backbone"].startswith("paco_fr:") else None
        if name in blocks:
            r["method"] = blocks[name]
    res_file = tmp_path / "smoke.jsonl"
    res_file.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "rep"
    res = build_report(res_file, out, runs_dir=runs, profile="smoke")
    abl = (out / "ablations.md").read_text()
    assert "PaCo-FR (full): 1024" in abl and "PaCo-FR, codebook 64" in abl
    assert "PaCo-FR (full): structured" not in abl  # no masking ablation rows
    assert _is_png(out / "figures" / "codebook_reconstruction.png")
    assert "![Reconstruction vs codebook size](figures/codebook_reconstruction.png)" in (out / "SUMMARY.md").read_text()
    assert res["n_failed"] == 2
    # the same rows without runs/: identical tables, only the figure is missing
    out2 = tmp_path / "rep2"
    build_report(res_file, out2, runs_dir=tmp_path / "no_runs", profile="smoke")
    for f in ("main_table.md", "ablations.md", "protocols.md"):
        assert (out2 / f).read_text() == (out / f).read_text(), f
    assert not (out2 / "figures" / "codebook_reconstruction.png").exists()


@pytest.mark.parametrize("case", ["empty", "only_failed", "single", "missing_file"])
def test_partial_results_never_crash(tmp_path, case):
    rows = [json.loads(ln) for ln in FIXTURE.read_text().splitlines() if ln.endswith("}")]
    path = tmp_path / "smoke.jsonl"
    if case == "empty":
        path.write_text("")
    elif case == "only_failed":
        path.write_text("\n".join(json.dumps(r) for r in rows if r["status"] == "failed") + "\n")
    elif case == "single":
        path.write_text(json.dumps(rows[0]) + "\n")
    out = tmp_path / "rep"
    res = build_report(path, out, runs_dir=tmp_path / "no_runs", profile="smoke")
    s = (out / "SUMMARY.md").read_text()
    assert SMOKE_BANNER in s and "## What is missing" in s
    for f in ["main_table.md", "main_table.tex", "main_table.csv", "ablations.md", "protocols.md"]:
        assert (out / f).is_file()
    assert "FaRL ep64 (reported)" in (out / "main_table.md").read_text()
    assert "no runs dir" in s
    if case == "single":
        assert res["n_ok"] == 1 and "a single seed per cell" in s and "no ablation results" in s
        assert "Data efficiency" in s and "Not drawn" in s
    if case == "missing_file":
        assert "does not exist" in s


def test_cli_main(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["report", "--results", str(FIXTURE), "--out", str(out), "--runs", str(tmp_path / "none"),
                 "--profile", "smoke", "--no-reconstruct"]) == 0
    assert "report written to" in capsys.readouterr().out
    s = (out / "SUMMARY.md").read_text()
    assert f"python -m bench_tasks report report --results {FIXTURE}" not in s
    assert f"--results {FIXTURE}" in s
    # `python -m bench_tasks report -- --results ...` (argparse REMAINDER needs the `--`); on the
    # fixture's random-init rows only: the paco_fr rows' study identities cost seconds per report
    small = tmp_path / "random_rows.jsonl"
    small.write_text("".join(line for line in FIXTURE.read_text().splitlines(keepends=True)
                             if '"backbone": "random:' in line))
    assert len(small.read_text().splitlines()) >= 2
    assert main(["--", "--results", str(small), "--out", str(tmp_path / "cli2"), "--runs", "none",
                 "--no-reconstruct"]) == 0
    assert (tmp_path / "cli2" / "SUMMARY.md").is_file()
