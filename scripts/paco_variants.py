"""Short PaCo-FR variant comparison on the CPU: pre-train each variant
for a few steps, then print its diagnostics (summary.json) and a quick ridge probe of frozen
features on SynthFace attributes and expression.

    python scripts/paco_variants.py --config smoke --steps 100 --split val \
        --variant pixel:codebook.space=pixel --variant norm_pix:codebook.space=norm_pix

Every variant gets the same config, steps, seed and data; runs go to --runs (default
/tmp/paco_variants). The probe: mean-pooled final tokens of 1,000 `train` and 500 `--split`
SynthFace faces, closed-form ridge (lambda 1) to +-1 attribute targets / one-hot expressions.
`--split` is required and is `val`: variants are selected on the validation split, never on
`test` (the benchmark's held-out split; tests/test_tuning_on_val.py checks every tuning script).
It ranks variants of a short run only; it is not the benchmark's protocol.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch


@torch.no_grad()
def _features(encoder, images: np.ndarray, batch: int = 128) -> torch.Tensor:
    out = []
    for i in range(0, len(images), batch):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + batch])).permute(0, 3, 1, 2).float() / 255
        f = encoder.forward_features(encoder.normalize(x))
        out.append(f.last_tokens.mean(1))
    return torch.cat(out).double()


def _ridge(xtr, ytr, xte, lam: float = 1.0) -> torch.Tensor:
    mu, sd = xtr.mean(0), xtr.std(0).clamp_min(1e-6)
    a, b = (xtr - mu) / sd, (xte - mu) / sd
    a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype)], 1)
    b = torch.cat([b, torch.ones(len(b), 1, dtype=b.dtype)], 1)
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1], dtype=a.dtype), a.T @ ytr)
    return b @ w


SELECTION_SPLITS = ("val",)  # the only split a variant may be selected on


def probe(encoder_path: Path, img_size: int, split: str) -> dict[str, float]:
    from paco_fr.data.synthface import load_synthface
    from paco_fr.export import load_encoder

    if split not in SELECTION_SPLITS:
        raise ValueError(f"probe split {split!r}: variants are selected on {SELECTION_SPLITS}, never on test")
    enc = load_encoder(encoder_path).eval()
    tr = load_synthface("train", 1000, image_size=img_size, seed=0, progress=False)
    te = load_synthface(split, 500, image_size=img_size, seed=0, progress=False)
    ftr, fte = _features(enc, np.asarray(tr.images)), _features(enc, np.asarray(te.images))
    ya = torch.from_numpy(np.asarray(tr.attributes)).double() * 2 - 1
    pa = _ridge(ftr, ya, fte) > 0
    attr = float((pa == torch.from_numpy(np.asarray(te.attributes)).bool()).double().mean()) * 100
    ye = torch.nn.functional.one_hot(torch.from_numpy(np.asarray(tr.expression)), 7).double()
    pe = _ridge(ftr, ye, fte).argmax(1)
    expr = float((pe == torch.from_numpy(np.asarray(te.expression))).double().mean()) * 100
    return {"attributes_acc": attr, "expression_acc": expr}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="smoke")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--split", required=True, choices=SELECTION_SPLITS,
                    help="the SynthFace split the probe scores on: val (selection never reads test)")
    ap.add_argument("--variant", action="append", required=True,
                    help="name:key=value[,key=value...] (overrides of this variant)")
    ap.add_argument("--set", action="append", default=[], help="key=value for every variant")
    ap.add_argument("--runs", default="/tmp/paco_variants")
    ap.add_argument("--no-probe", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    from paco_fr.config import load_config
    from paco_fr.engine import train

    rows = []
    for spec in args.variant:
        name, _, ov = spec.partition(":")
        overrides = [*args.set, f"train.steps={args.steps}", "train.progress=false", "train.snapshot_every=0",
                     "train.ckpt_every=0", *[o for o in ov.split(",") if o]]
        cfg = load_config(args.config, overrides)
        t0 = time.time()
        run = Path(args.runs) / name
        s = train(cfg, run, resume=False)
        row = {"variant": name, "train_s": round(time.time() - t0, 1), **(s.get("diagnostics") or {})}
        if not args.no_probe:
            row.update(probe(run / "encoder.safetensors", int(cfg["model"]["img_size"]), args.split))
        rows.append(row)
        print(json.dumps(row), flush=True)
    keys = ["variant", "train_s", "rec", "copy_baseline", "belief_top1", "token_patch_mse", "codebook_perplexity",
            "codebook_usage", "spatial", "spatial_grad_share", "attributes_acc", "expression_acc"]
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for r in rows:
        cells = [r.get(k) for k in keys]
        print("| " + " | ".join(f"{c:.4g}" if isinstance(c, float) else str(c) for c in cells) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
