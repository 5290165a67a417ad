"""Issue 11, items 1-2: every row says what it is (its `method` block: study run, encoder metadata,
URI, --label), what ran (protocol_used, head, history, timings) and which task version computed
it; a row of another task version is recomputed, while `Cell.key()` stays what it was."""

import json
import sys

import pytest

from bench_tasks.contracts import Cell
from bench_tasks.store.method import block, derive_from_uri, identity_for, parse_labels
from bench_tasks.store.results import ResultsStore
from bench_tasks.store.rows import make_row, row_task_version

BB = "random:vit_tiny@32/16"


def _stale(cells, store, done, profile=None):
    """Keys of done cells whose rows a plan of `cells` made now (under `profile`, default the
    bundled one) would recompute."""
    from bench_tasks.plan.cell_plan import make_plan

    return make_plan(cells, references=False, profiles=profile).stale_keys(store.latest(), done)


def _status(cells, results):
    from bench_tasks.plan.cell_plan import make_plan
    from bench_tasks.store.results import ResultsStore

    return make_plan(cells, references=False).status(ResultsStore(results).latest())


def test_cell_key_is_unchanged_by_task_versions():
    # pinned (the key before task versions existed): rows in results/ are found by these keys;
    # Task.version is recorded in the row, not keyed
    assert Cell("random:vit_tiny", "attributes", "synthface", "linear").key() == "7e68341df5a7f8d1"


def test_rows_of_another_task_version_are_recomputed(tmp_path, monkeypatch):
    from bench_tasks.registry import TASKS
    from bench_tasks.store.rows import dataset_version

    cell = Cell("random:vit_tiny", "attributes", "synthface", "linear")
    store = ResultsStore(tmp_path / "r.jsonl")
    legacy = make_row(cell, "ok", "mean_acc", data_version=dataset_version("synthface"))
    del legacy["task_version"]  # a row written before task versions: version 1
    assert row_task_version(legacy) == 1
    v = TASKS.get("attributes").version
    store.append(make_row(cell, "ok", "mean_acc", task_version=v, data_version=dataset_version("synthface")))
    done = store.done_keys()
    assert _stale([cell], store, done) == set()
    assert _status([cell], store.path)[cell.key()] == "done"
    monkeypatch.setattr(TASKS.get("attributes"), "version", v + 1)
    assert _stale([cell], store, done) == {cell.key()}
    assert _status([cell], store.path)[cell.key()] == "todo"
    store.append(make_row(cell, "ok", "mean_acc", task_version=v + 1, data_version=dataset_version("synthface")))
    assert _stale([cell], store, store.done_keys()) == set()


def test_rows_of_another_synthface_generator_are_recomputed(tmp_path):
    from bench_tasks.registry import TASKS
    from bench_tasks.store.rows import dataset_version
    from paco_fr.data.synthface import GENERATOR_VERSION

    assert dataset_version("synthface") == GENERATOR_VERSION != "1"
    cell = Cell("random:vit_tiny", "expression", "synthface", "linear")
    store = ResultsStore(tmp_path / "r.jsonl")
    old = make_row(cell, "ok", "acc")
    del old["data_version"]  # a row of SynthFace 1.x, written before data versions were recorded
    store.append(old)
    assert _stale([cell], store, store.done_keys()) == {cell.key()}
    assert _status([cell], store.path)[cell.key()] == "todo"
    store.append(make_row(cell, "ok", "acc", data_version=GENERATOR_VERSION,
                          task_version=TASKS.get("expression").version))
    assert _stale([cell], store, store.done_keys()) == set()


def test_identity_derived_from_the_uri():
    assert derive_from_uri("random:vit_tiny") == block("random", "control", label="Random init", labels_used="none")
    assert derive_from_uri("floor:input-free")["role"] == "floor"
    assert derive_from_uri("supervised:vit_tiny@64/8")["role"] == "ceiling"
    assert derive_from_uri("farl:/w/FaRL-Base-Patch16-LAIONFace20M-ep64.pth")["label"] == \
        "FaRL ckpt (FaRL-Base-Patch16-LAIONFace20M-ep64)"
    # a file in a folder called `paco` is not "PaCo-FR (ours)" unless it recorded so
    assert derive_from_uri("paco_fr:/x/paco/encoder.safetensors")["label"] == "paco_fr:/x/paco/encoder.safetensors"
    with pytest.raises(ValueError, match="role 'method' is not one of"):
        block("paco", "method")


def test_identity_labels_of_the_newer_schemes():
    """timm (any model, CNN pyramids too), hf:, open_clip:, arcface: rows are named by their model and
    file, not by the raw URI; two models read from files of one name keep two labels."""
    assert derive_from_uri("timm:resnet50:/w/resnet50.safetensors")["label"] == "timm resnet50"
    assert derive_from_uri("timm:resnet50")["label"] == "timm resnet50 (pretrained)"
    assert derive_from_uri("timm:vit_small_patch16_224:/w/my.pth")["label"] == "timm vit_small_patch16_224 (my)"
    assert derive_from_uri("timm:convnext_atto:/w/my.pth")["label"] == "timm convnext_atto (my)"
    assert derive_from_uri("hf:/ckpt/dinov2-base/")["label"] == "HF dinov2-base"
    assert derive_from_uri("open_clip:ViT-B-16:/w/epoch_32.pt")["label"] == "OpenCLIP ViT-B-16 (epoch_32)"
    # arcface_torch names every file backbone.pth: the folder names the weights
    assert derive_from_uri("arcface:/w/ms1mv3_arcface_r100/backbone.pth")["label"] == \
        "ArcFace iResNet (ms1mv3_arcface_r100)"
    assert derive_from_uri("arcface:/w/glint360k_r50.pth")["label"] == "ArcFace iResNet (glint360k_r50)"
    for uri in ("hf:/ckpt/dinov2-base", "open_clip:ViT-B-16:/w/e.pt", "arcface:/w/r50.pth", "timm:resnet50"):
        b = derive_from_uri(uri)
        assert b["role"] == "main" and b["method"] == uri.partition(":")[0]


def test_identity_recorded_beside_the_weights_and_label_override(tmp_path):
    run = tmp_path / "paco"
    run.mkdir()
    w = run / "encoder.safetensors"
    w.write_bytes(b"not read")
    ident = block("paco", "ablation", "codebook", "64", "PaCo-FR, codebook 64", run="abl_codebook_64")
    (run / "method.json").write_text(json.dumps(ident))
    (run / "summary.json").write_text(json.dumps({"status": "complete", "compute": {"flops": 3},
                                                  "diagnostics": {"perplexity": 12.5}, "other": 1}))
    got = identity_for(f"paco_fr:{w}")
    assert got == {**ident, "compute": {"flops": 3}, "diagnostics": {"perplexity": 12.5}}
    assert identity_for(f"paco_fr:{w}", label="mine")["label"] == "mine"


def test_identity_from_safetensors_metadata(tmp_path):
    """paco_fr.export copies the run folder's method.json into the encoder's metadata; a file
    copied elsewhere alone still says what it is."""
    from paco_fr.config import load_config
    from paco_fr.export import export_encoder, read_metadata
    from paco_fr.models import build_encoder

    cfg = load_config("smoke", {"model.depth": 1, "model.img_size": 16})
    ident = block("mae", "main", label="MAE", run="mae")
    run = tmp_path / "mae"
    run.mkdir()
    (run / "method.json").write_text(json.dumps(ident))
    out = export_encoder(build_encoder(cfg), cfg, run / "encoder.safetensors")
    assert json.loads(read_metadata(out)["method"]) == ident
    alone = tmp_path / "copied.safetensors"
    alone.write_bytes(out.read_bytes())
    assert identity_for(f"paco_fr:{alone}")["label"] == "MAE"


def test_parse_labels():
    assert parse_labels(["Mine"], ["paco_fr:/a.safetensors"]) == {"paco_fr:/a.safetensors": "Mine"}
    assert parse_labels(["random:vit_tiny=R", "paco_fr:/a.safetensors=A"], ["random:vit_tiny", "paco_fr:/a.safetensors"]) \
        == {"random:vit_tiny": "R", "paco_fr:/a.safetensors": "A"}
    with pytest.raises(ValueError, match="URI=NAME"):
        parse_labels(["Mine"], ["random:vit_tiny", "paco_fr:/a.safetensors"])


def test_suite_identities_one_vocabulary(tmp_path):
    from test_reference_study import smoke_identities

    from bench_tasks.plan.suite import suite_runs, write_run_identity

    ids = smoke_identities()
    assert ids["paco"]["role"] == "main" and ids["paco"]["label"] == "PaCo-FR (ours)"
    assert ids["paco"]["settings"]["codebook"] == "256"  # paco_fr/configs/smoke.yaml
    assert (ids["abl_k1"]["component"], ids["abl_k1"]["setting"], ids["abl_k1"]["label"]) == \
        ("candidates", "1", "PaCo-FR, k = 1")
    assert ids["abl_codebook_512"]["setting"] == "512"
    assert ids["abl_no_spatial"]["setting"] == "off" and ids["abl_no_incubation"]["setting"] == "off"
    assert ids["mcf"]["method"] == "mcf" and ids["mcf"]["role"] == "main"
    run = next(r for r in suite_runs(True, "smoke") if r.name == "abl_mask_block")
    (tmp_path / "summary.json").write_text(json.dumps({"status": "complete"}))
    written = write_run_identity(run, tmp_path, "smoke")
    assert json.loads((tmp_path / "method.json").read_text()) == written
    assert json.loads((tmp_path / "summary.json").read_text())["method"]["setting"] == "block"


def test_run_cell_row_records_method_version_and_what_ran(tmp_path):
    from test_harness_runner import PLUGIN

    (tmp_path / "fake_cls_plugin.py").write_text(PLUGIN)
    sys.path.insert(0, str(tmp_path))
    try:
        import fake_cls_plugin  # noqa: F401

        from bench_tasks.plan.cell_plan import make_plan
        from bench_tasks.run.runner import RunContext, run_cell

        plan = make_plan([Cell(BB, "expression", "fake_cls", "linear", profile="smoke")], references=False)
        (cell, version), = plan.items
        row = run_cell(cell, RunContext(tmp_path / "r.jsonl", tmp_path / "wd", device="cpu", progress=False,
                                        labels={BB: "My random"}), version, plan.profile_of(cell))
    finally:
        sys.path.remove(str(tmp_path))
    assert row["status"] == "ok", row["error"]
    assert row["method"] == block("random", "control", label="My random", labels_used="none")
    assert (row["task_version"], row["protocol_used"], row["head"]) == (2, "linear", "attribute")
    assert row["history"] and "train_loss" in row["history"][0]
    assert row["config"]["task"]["head"] == "attribute" and "features_extract_s" in row["provenance"]["timings"]


def test_rows_of_other_effective_settings_are_recomputed(tmp_path, monkeypatch):
    """A changed setting (a profile file or --set) recomputes exactly the rows it changes."""
    from bench_tasks import api
    from bench_tasks.plan.cell_plan import cell_version
    from bench_tasks.plan.profiles import load_profile

    attr = Cell("random:vit_tiny", "attributes", "synthface", "linear", profile="smoke")
    rec = Cell("random:vit_tiny", "recognition", "synthface", "linear", profile="smoke")
    ceil = Cell("supervised:vit_tiny", "attributes", "synthface", "finetune", profile="smoke")
    store = ResultsStore(tmp_path / "r.jsonl")
    for c in (attr, rec, ceil):
        store.append(make_row(c, "ok", "acc", settings_hash=cell_version(c).settings, task_version=cell_version(c).task))
    legacy = Cell("random:vit_tiny", "expression", "synthface", "linear", profile="smoke")
    old = make_row(legacy, "ok", "acc", task_version=cell_version(legacy).task)
    old.pop("settings_hash")  # a row written before settings were fingerprinted: counts as current
    store.append(old)
    cells = [attr, rec, ceil, legacy]
    assert _stale(cells, store, store.done_keys()) == set()
    bundled = api.PROFILES["smoke"]
    cosface = load_profile("smoke", ["recognition.margin=cosface"])  # the plan carries the changed `smoke`
    assert _stale(cells, store, store.done_keys(), cosface) == {rec.key()}
    both = load_profile("smoke", ["recognition.margin=cosface", "ceiling_lr=0.002"])
    assert _stale(cells, store, store.done_keys(), both) == {rec.key(), ceil.key()}
    back = load_profile("smoke", ["recognition.margin=arcface", "ceiling_lr=null"])  # the bundled values again
    assert _stale(cells, store, store.done_keys(), back) == set()
    assert api.PROFILES["smoke"] is bundled  # nothing registered
