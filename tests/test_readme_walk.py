"""The README's walk at toy size: the commands are read from README.md itself (so the README and
this test cannot drift apart) and run in a fresh folder holding what a user would have:

  * `my_vit.safetensors`: random weights of timm's vit_tiny_patch16_224 (224 px), written here;
  * `data/300w/`: a 300W folder in the original `.pts` layout, reached by a relative data root;
  * `my_faces/`: a folder of face JPEGs, pre-trained on for a few steps and evaluated.

Toy size: `--profile smoke` / `profile="smoke"` become a copy of the smoke profile with 200 / 60 / 60
SynthFace images and one training fraction, and the pre-training gets `train.steps=4`. Nothing
downloads (HF_HUB_OFFLINE=1). Each command must exit 0 without a traceback and say what it did. The
`python -m` commands run one after the other in one interpreter (tests/readme_walker.py: the imports
are paid once), the Python blocks each in a fresh one."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from format_fixtures import face_image, write_300w_pts
from one_lr import one_lr_extra

REPO = Path(__file__).resolve().parents[1]
WALKER = Path(__file__).resolve().parent / "readme_walker.py"
README = REPO / "README.md"
SECTIONS = ("## Evaluate your checkpoint", "## Your data", "## Pre-train on your folder of faces")


def section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    body = text[start:end if end > 0 else None]
    return body.split("\n### ", 1)[0]  # the cluster sub-section is not part of the walk


def blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", text, flags=re.S)


def commands(block: str) -> list[str]:
    """`python -m ...` lines of a bash block, continuations joined, trailing comments dropped."""
    out, cur = [], ""
    for line in block.splitlines():
        cur += line.rstrip()
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        cmd = cur.split("  #", 1)[0].strip()
        if cmd.startswith("python -m "):
            out.append(cmd)
        cur = ""
    return out


def readme_walk() -> tuple[list[str], list[str]]:
    text = README.read_text()
    cmds, py = [], []
    for heading in SECTIONS:
        body = section(text, heading)
        for b in blocks(body, "bash"):
            cmds += commands(b)
        py += blocks(body, "python")
    return cmds, py


def test_the_walk_is_in_the_readme():
    cmds, py = readme_walk()
    joined = "\n".join(cmds)
    assert "timm:vit_tiny_patch16_224:my_vit.safetensors" in joined and "--tasks attributes,expression" in joined
    assert "--datasets 300w --data-root data" in joined and "preview --datasets 300w" in joined
    assert "paco_fr pretrain --config smoke --run-dir runs/my_faces data.source=folder data.path=my_faces" in joined
    assert "paco_fr:runs/my_faces/encoder.safetensors" in joined
    assert any("bench_tasks.evaluate(" in b for b in py)
    assert len(README.read_text().splitlines()) <= 220


def _tiny_profile(path: Path) -> Path:
    prof = yaml.safe_load((REPO / "bench_tasks" / "configs" / "smoke.yaml").read_text())
    # the walk checks that every command runs and says what it did, not the scores: the fewest epochs
    prof.update(name="readme_walk", synthface_train=200, synthface_val=60, synthface_test=60, fractions=[1.0],
                linear_epochs=2, finetune_epochs=1, dense_epochs=1, recognition_epochs=1)
    prof["extra"]["dense_min_steps"] = 20
    prof["extra"] = one_lr_extra(prof["extra"])  # the walk checks the commands, not the choice on val
    path.write_text(yaml.safe_dump(prof))
    return path


def _user_folder(d: Path) -> None:
    import timm
    from safetensors.torch import save_file

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, str(d / "my_vit.safetensors"))
    write_300w_pts(d / "data" / "300w", n_train=6, n_common=3, n_chall=2, h=64, w=56)
    for i in range(40):
        face_image(d / "my_faces" / f"{i:03d}.jpg", 80, 80, seed=i)


def _toy(cmd: str, profile: Path) -> list[str]:
    """The README command at toy size, without its `python`: ["-m", module, args...]."""
    argv = shlex.split(cmd.replace("--profile smoke", f"--profile {profile}"))
    if argv[2:4] == ["paco_fr", "pretrain"]:
        argv += ["train.steps=4"]
    return argv[1:]


# what each step must say it did (a fragment of its standard output)
SAYS = [("bench_tasks list", "Dataset layouts"), ("--dry-run", "cells in the plan"),
        ("bench_tasks preview", "300w / landmarks / train"), ("paco_fr pretrain", "runs/my_faces/encoder.safetensors"),
        ("bench_tasks report", "report written to reports/mine"), ("bench_tasks run", " ok, 0 failed")]


@pytest.mark.slow
def test_readme_walk_runs_at_toy_size(tmp_path):
    cmds, py = readme_walk()
    _user_folder(tmp_path)
    profile = _tiny_profile(tmp_path / "tiny.yaml")
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1",
           "TIMM_OFFLINE": "1"}
    # the commands one after the other in one interpreter (tests/readme_walker.py: torch and the
    # packages imported once), in the user's folder, each with its own output and exit status
    (tmp_path / "walk.json").write_text(json.dumps([_toy(cmd, profile) for cmd in cmds]))
    w = subprocess.run([sys.executable, str(WALKER), "walk.json", "walked.json"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert w.returncode == 0 and "Traceback" not in w.stderr, w.stdout[-2000:] + w.stderr[-3000:]
    walked = json.loads((tmp_path / "walked.json").read_text())
    for cmd, r in zip(cmds, walked, strict=False):
        out = r["stdout"] + r["stderr"]
        assert r["code"] == 0, f"{cmd}\n{out[-3000:]}"
        assert "Traceback" not in out, f"{cmd}\n{out[-3000:]}"
        says = next(s for k, s in SAYS if k in cmd)
        assert says in r["stdout"], f"{cmd} did not say {says!r}:\n{r['stdout'][-2000:]}"
    assert len(walked) == len(cmds)
    for code in py:
        code = code.replace('profile="smoke"', f'profile="{profile}"')
        r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=900)
        assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-3000:]
        assert "attributes" in r.stdout and "expression" in r.stdout
    assert (tmp_path / "300w_preview.png").is_file()
    summary = (tmp_path / "reports" / "mine" / "SUMMARY.md").read_text()
    for what in ("## Your backbones", "PaCo-FR on my faces", "vit_tiny_patch16_224", "Landmarks · 300W",
                 "Attributes · SynthFace", "Expression · SynthFace", "figures/headline.png"):
        assert what in summary, what
