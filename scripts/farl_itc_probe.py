"""FaRL-style's image-text loss on SynthFace captions, measured two ways (docs/pretraining.md,
"FaRL-style's image-text loss stays at chance"):

    python scripts/farl_itc_probe.py train --pool mean --steps 120   # image-text loss alone
    python scripts/farl_itc_probe.py train --pool eos --steps 120    # end-of-caption token pooling
    python scripts/farl_itc_probe.py train --temperature 0.01 --lr 3e-4   # temperature / lr
    python scripts/farl_itc_probe.py bound                           # what a perfect label reader reaches

`train`: the `cpu` config's FaRL-style model, its image-text loss alone (no masked modelling),
AdamW at the config's lr on fresh random batches of 64 `pretrain` images; prints the loss every
20 steps. `bound`: the symmetric InfoNCE of the score log p(caption_j | labels_i) - log p(caption_j)
under the caption noise model of paco_fr/data/captions.py (generic sentences, gender word,
expression word, named attributes; the "no caption states every label" fix-up ignored), averaged
over 20 batches of 64. Neither selects anything; both read the `pretrain` split only.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _data(mode: str = "noisy"):
    from paco_fr.config import load_config
    from paco_fr.data.pretrain_data import build_pretrain_dataset
    from paco_fr.models.farl import FaRLModel

    cfg = load_config("cpu", {"objective": "farl", "farl.captions.mode": mode})
    ds = build_pretrain_dataset(cfg["data"], int(cfg["model"]["img_size"]), seed=0, captions=cfg["farl"]["captions"])
    return cfg, ds, FaRLModel.prepare_data(cfg, ds, None)


def train(steps: int, pool: str, temperature: float | None = None, lr: float | None = None) -> None:
    from paco_fr.losses import clip_loss
    from paco_fr.models import build_model

    cfg, ds, data = _data()
    torch.manual_seed(0)
    m = build_model(cfg, data=data)
    if temperature is not None:  # the initial temperature (learnable, as in the model)
        m.logit_scale.data.fill_(float(np.log(1 / temperature)))
    opt = torch.optim.AdamW(m.parameters(), lr=float(lr or cfg["train"]["lr"]), weight_decay=0.05)
    g = torch.Generator().manual_seed(1)

    def text(ids):
        t = m.text
        if pool == "mean":
            return t(ids)
        pad = ids == t.pad_id
        x = t.norm(t.blocks(t.tok(ids) + t.pos[:, : ids.shape[1]], src_key_padding_mask=pad))
        return t.proj(x[torch.arange(len(ids)), (~pad).sum(1) - 1])

    t0 = time.time()
    for step in range(1, steps + 1):
        idx = torch.randint(0, len(ds), (64,), generator=g)
        x = torch.stack([ds[int(i)]["image"] for i in idx]).float() / 255
        cls = m.encoder.forward_features(m.encoder.normalize(x)).cls
        loss = clip_loss(m.img_proj(cls), text(data.batch_fields(idx, "cpu")["text"]), m.logit_scale)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 20 == 0:
            print(f"pool={pool} temperature={temperature} lr={lr} step {step} itc {loss.item():.3f} "
                  f"(scale {m.logit_scale.exp().item():.1f}, {time.time() - t0:.0f} s)", flush=True)


def bound(batches: int = 20) -> float:
    from paco_fr.data.captions import DEFAULT_NOISE as n
    from paco_fr.data.captions import GENERIC, build_captions, caption_claims
    from paco_fr.data.synthface import EXPRESSIONS, load_synthface

    s = load_synthface("pretrain", 8000, image_size=64, seed=0, progress=False)
    names = list(s.attribute_names)
    A, E = s.attributes.astype(bool), s.expression
    caps = build_captions(s.attributes, s.expression, None, 0, names, EXPRESSIONS)
    male = A[:, names.index("Male")]
    others = [k for k, a in enumerate(names) if a != "Male"]

    def loglik(c: str, i: int) -> float:
        if c in GENERIC:
            return float(np.log(n["generic_prob"] / len(GENERIC)))
        cl, lp = caption_claims(c, names, EXPRESSIONS), np.log(1 - n["generic_prob"])
        if cl["gender"] is None:
            lp += np.log(n["person_word_prob"])
        else:
            right = (cl["gender"] == "man") == male[i]
            lp += np.log((1 - n["person_word_prob"]) * ((1 - n["gender_wrong_prob"]) if right else n["gender_wrong_prob"]))
        if cl["expression"] is None:
            lp += np.log(n["expression_drop_prob"])
        else:
            ok = EXPRESSIONS.index(cl["expression"]) == E[i]
            lp += np.log((1 - n["expression_drop_prob"]) * ((1 - n["expression_wrong_prob"]) if ok else
                                                           n["expression_wrong_prob"] / (len(EXPRESSIONS) - 1)))
        on = [names[k] for k in others if A[i, k]]
        off = [names[k] for k in others if not A[i, k]]
        lp += np.log(1 / (n["max_attributes"] + 1))
        for a in cl["attributes"]:
            p = (1 - n["wrong_attribute_prob"]) / max(1, len(on)) * (a in on) + \
                n["wrong_attribute_prob"] / max(1, len(off)) * (a in off)
            lp += np.log(p + 1e-6)
        return float(lp)

    rng, losses = np.random.default_rng(0), []
    for _ in range(batches):
        idx = rng.choice(len(caps), 64, replace=False)
        S = torch.tensor([[loglik(caps[j], i) for j in idx] for i in idx])
        S = S - (torch.logsumexp(S, 0, keepdim=True) - np.log(64))  # minus log p(caption) over the batch
        lab = torch.arange(64)
        losses.append(((F.cross_entropy(S, lab) + F.cross_entropy(S.T, lab)) / 2).item())
    out = float(np.mean(losses))
    print(f"distinct captions {len(set(caps))} / {len(caps)}; bound {out:.3f} (ln 64 = {np.log(64):.3f})")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("train", "bound"))
    ap.add_argument("--pool", choices=("mean", "eos"), default="mean")
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--temperature", type=float, default=None, help="initial temperature (model: 0.07)")
    ap.add_argument("--lr", type=float, default=None, help="AdamW lr (default: the config's, 1e-3)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    train(a.steps, a.pool, a.temperature, a.lr) if a.what == "train" else bound()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
