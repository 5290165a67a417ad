"""Nothing is selected on `test`: the scripts that compare variants (tuning) read `val`, and the
variant probe takes the split as a required argument that refuses `test`."""

import re
from pathlib import Path

import pytest

from bench_tasks.store.provenance import REPO_DIR as ROOT

# scripts that never choose between variants (with why); every other script in scripts/ is
# treated as a tuning script and must not read the test split
NOT_TUNING = {
    "dense_cell.py": "runs one benchmark cell through the harness (its protocol scores on test by design)",
    "farl_step_timing.py": "times the data loaders of FaRL's protocol (ms per item), scores nothing",
    "ensure_mmcv.py": "installs mmcv",
    "farl_itc_probe.py": "reads the pretrain split only (a loss measurement)",
    "keep_study_files.py": "copies finished runs' small files and the figure's reconstructions",
}
# a SynthFace / dataset split named "test" where a split is chosen
TEST_SPLIT = re.compile(r"""(load_synthface\(\s*["']test["']|\[\s*["']test["']\s*\]|split\s*=\s*["']test["']|"""
                        r"""ev\([^)]*["']test["']\))""")


def tuning_scripts():
    return sorted(p for p in (ROOT / "scripts").glob("*.py") if p.name not in NOT_TUNING)


def test_the_greps_find_a_test_split():  # the pattern must be able to fail
    for bad in ('load_synthface("test", 500)', "d['test']", "split='test'", "ev(head, 'test')"):
        assert TEST_SPLIT.search(bad), bad
    assert not TEST_SPLIT.search('load_synthface(split, 500)')


@pytest.mark.parametrize("script", tuning_scripts(), ids=lambda p: p.name)
def test_no_tuning_script_reads_test(script):
    hits = [ln for ln in script.read_text().splitlines() if TEST_SPLIT.search(ln)]
    assert not hits, f"{script.name} selects on the test split: {hits}"


def test_paco_variants_requires_val():
    import importlib.util

    spec = importlib.util.spec_from_file_location("paco_variants", ROOT / "scripts" / "paco_variants.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.SELECTION_SPLITS == ("val",)
    with pytest.raises(SystemExit):  # --split is required
        mod.main(["--variant", "a:codebook.k=1", "--no-probe"])
    with pytest.raises(SystemExit):  # and test is refused
        mod.main(["--variant", "a:codebook.k=1", "--split", "test"])
    with pytest.raises(ValueError, match="never on test"):
        mod.probe(Path("unused.safetensors"), 64, "test")
