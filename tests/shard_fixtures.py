"""Small raw-face folders and shard sets for the webdataset / prepare / torchrun tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

TINY_WDS = [
    "model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
    "codebook.num_tokens=64", "belief.hidden=32", "data.source=wds", "data.shuffle_buffer=16",
    "train.log_every=1", "train.snapshot_every=0", "train.ckpt_every=0", "train.progress=false",
    "train.warmup_steps=2", "train.threads=1", "train.deterministic=true", "incubation.steps=2",
]


def raw_faces(root: Path, n: int, size: int = 48, seed: int = 0) -> Path:
    """n raw images (smooth noise, a light square 'face' off-centre) + `landmarks.txt` with 5 points
    each (pixel coordinates); returns the landmarks file."""
    from PIL import Image

    from paco_fr.data.template import CANONICAL_5

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    lines = ["# relpath x1 y1 ... x5 y5"]
    for i in range(n):
        img = (rng.random((6, 6, 3)) * 255).astype(np.uint8)
        im = Image.fromarray(img).resize((size, size), Image.BILINEAR)
        sub = root / f"id{i % 3}"
        sub.mkdir(exist_ok=True)
        rel = f"id{i % 3}/img{i:04d}.{'png' if i % 2 else 'jpg'}"
        im.save(root / rel)
        scale, off = size * rng.uniform(0.6, 0.8), rng.uniform(0, size * 0.15, 2)
        pts = CANONICAL_5 * scale + off
        lines.append(rel + " " + " ".join(f"{v:.2f}" for v in pts.ravel()))
    lm = root / "landmarks.txt"
    lm.write_text("\n".join(lines) + "\n")
    return lm
