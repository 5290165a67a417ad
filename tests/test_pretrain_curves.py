"""Pre-training curves: TensorBoard event files beside log.jsonl (loss per term, lr, codebook
usage, reconstructions), nothing broken without the `tensorboard` package, and a redirected log
with plain progress lines instead of a progress bar (none with --no-progress)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from paco_fr.cli import main
from paco_fr.engine.curves import Progress

TINY = [
    "model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
    "codebook.num_tokens=64", "belief.hidden=32", "data.source=random", "data.num_images=64",
    "train.batch_size=8", "train.log_every=1", "train.snapshot_every=3", "train.ckpt_every=0",
    "train.warmup_steps=2", "train.threads=1", "incubation.steps=2", "train.steps=6",
]
needs_tensorboard = pytest.mark.skipif(importlib.util.find_spec("tensorboard") is None,
                                       reason="optional package tensorboard is not installed (pip install -e .[tensorboard])")


def _pretrain(run: Path, *extra: str) -> None:
    assert main(["pretrain", "--config", "smoke", "--run-dir", str(run), *extra, *TINY]) == 0


@needs_tensorboard
def test_redirected_pretraining_writes_lines_and_tensorboard_curves(tmp_path, capfd):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    _pretrain(run)
    out, err = capfd.readouterr()  # pytest's capture is not a terminal: a redirected log
    assert "\r" not in out + err and "it/s]" not in out + err  # no progress bar
    lines = [ln for ln in err.splitlines() if ln.startswith("pretrain paco: step ")]
    assert lines and lines[-1].startswith("pretrain paco: step 6/6 loss ")
    events = list(run.glob("events.out.tfevents.*"))
    assert len(events) == 1 and (run / "log.jsonl").is_file()
    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    log = [json.loads(ln) for ln in (run / "log.jsonl").read_text().splitlines()]
    assert {"rec", "ce", "spatial"} <= set(log[-1])  # PaCo-FR's loss terms, in log.jsonl
    assert {"loss/total", "loss/rec", "loss/ce", "loss/spatial", "train/lr", "codebook/usage",
            "grad/gnorm_rec"} <= tags, tags
    total = acc.Scalars("loss/total")
    assert [e.step for e in total] == [1, 2, 3, 4, 5, 6]
    by_step = {r["step"]: r["loss"] for r in log if "loss" in r}
    assert all(abs(e.value - by_step[e.step]) < 1e-5 * max(1.0, abs(by_step[e.step])) for e in total)
    assert [e.step for e in acc.Images("reconstructions")] == [3, 6]


def test_no_progress_and_no_tensorboard_package(tmp_path, capfd, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were not installed
    run = tmp_path / "run"
    _pretrain(run, "--no-progress")
    out, err = capfd.readouterr()
    assert "pretrain paco: step" not in out + err and "\r" not in out + err
    assert "no TensorBoard event files" in out and not list(run.glob("events.out.tfevents.*"))
    assert (run / "encoder.safetensors").is_file()


def test_progress_lines_every_few_log_steps():
    class Log:
        def __init__(self):
            self.text = ""

        def isatty(self):
            return False

        def write(self, s):
            self.text += s

        def flush(self):
            pass

    log = Log()
    p = Progress(True, total=150, start=0, desc="pretrain mae", log_every=5, stream=log)
    for step in range(1, 151):
        p.update(step, 1.0, 1e-3)
    p.close()
    lines = log.text.splitlines()
    assert len(lines) == 15 and lines[-1].startswith("pretrain mae: step 150/150")  # every 10 steps
