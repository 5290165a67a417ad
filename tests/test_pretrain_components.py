"""Shapes / gradients of the pre-training components (tiny, CPU)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from paco_fr.belief import BeliefPredictor, select_tokens
from paco_fr.codebook import PatchCodebook
from paco_fr.config import load_config
from paco_fr.losses import (
    clip_loss,
    moco_loss,
    perceptual_loss,
    pixel_loss,
    relation_consistency,
    relation_matrix,
)
from paco_fr.masking import REGIONS, make_mask, region_map, region_map_from_landmarks, region_pool_matrix
from paco_fr.models import build_model
from paco_fr.models.common import patchify, unpatchify
from paco_fr.models.decoder import PixelDecoder

TINY = {"model.img_size": 32, "model.patch_size": 8, "model.depth": 1, "decoder.dim": 32, "decoder.depth": 1,
        "codebook.num_tokens": 64, "belief.hidden": 32, "farl.embed_dim": 32, "farl.text_width": 32,
        "farl.text_depth": 1, "farl.text_heads": 2, "mcf.teacher": "random", "mcf.proj_dim": 32,
        "mcf.proj_hidden": 64}


@pytest.mark.parametrize("strategy", ["random", "block", "region"])
@pytest.mark.parametrize("grid", [(4, 4), (8, 8), (14, 14)])
def test_masks_exact_count(strategy, grid):
    torch.manual_seed(0)
    for ratio in (0.25, 0.5, 0.75):
        m = make_mask(strategy, 6, grid, ratio)
        assert m.dtype == torch.bool and m.shape == (6, grid[0] * grid[1])
        assert (m.sum(1) == round(ratio * grid[0] * grid[1])).all()


def test_region_mask_masks_whole_regions():
    torch.manual_seed(0)
    grid = (8, 8)
    rmap = region_map(grid)
    m = make_mask("region", 16, grid, 0.5, fill="adjacent")
    # at least one region is fully masked in every sample, and fill patches touch the mask
    full = [(m[b][rmap == r].all()) for b in range(16) for r in torch.unique(rmap)]
    assert sum(bool(f) for f in full) >= 16


def test_region_map_covers_canonical_landmarks():
    from paco_fr.data.template import CANONICAL_68, IBUG_GROUPS

    for g in (8, 14, 28):
        rmap = region_map((g, g)).numpy()
        for group, region in (("right_eye", "right_eye"), ("left_eye", "left_eye")):
            for x, y in np.asarray(CANONICAL_68)[IBUG_GROUPS[group]]:
                idx = min(int(y * g), g - 1) * g + min(int(x * g), g - 1)
                assert REGIONS[rmap[idx]] == region, (g, group)
        present = {REGIONS[i] for i in np.unique(rmap)}
        assert {"background", "hair", "nose", "mouth", "jaw_cheeks", "left_eye", "right_eye"} <= present


def test_region_map_on_synthface_landmarks(tmp_path):
    sf = pytest.importorskip("paco_fr.data.synthface")
    s = sf.load_synthface("pretrain", 32, image_size=64, seed=0, root=tmp_path, progress=False)
    lm = np.asarray(s.landmarks) / 64.0
    g = 8
    rmap = region_map((g, g)).numpy()
    # the mean SynthFace face: its eye / mouth landmarks fall in the matching regions
    mean = lm.mean(0)
    for sl, name in ((slice(36, 42), "right_eye"), (slice(42, 48), "left_eye"), (slice(48, 68), "mouth")):
        c = mean[sl].mean(0)
        assert REGIONS[rmap[int(c[1] * g) * g + int(c[0] * g)]] == name
    # a per-face map from its own landmarks contains its eye landmarks
    for pts in lm[:8]:
        r = region_map_from_landmarks(pts, (g, g))
        for x, y in pts[42:48]:
            assert REGIONS[r[min(int(y * g), g - 1) * g + min(int(x * g), g - 1)]] == "left_eye"


@pytest.mark.parametrize("num_tokens,chunk", [(64, 16), (512, 100), (8192, 1024)])
def test_codebook_nearest_matches_bruteforce(num_tokens, chunk):
    torch.manual_seed(0)
    cb = PatchCodebook(num_tokens, 48, k=3, chunk_size=chunk)
    x = torch.randn(300, 48)
    d, idx = cb.topk(x, 3)
    ref = torch.cdist(x, cb.embed)
    assert torch.equal(idx[:, 0], ref.argmin(1))
    assert torch.allclose(d[:, 0], ref.min(1).values ** 2, rtol=1e-3, atol=1e-3)
    assert torch.equal(idx, ref.topk(3, largest=False).indices)


def test_codebook_ema_restart_stats():
    torch.manual_seed(0)
    cb = PatchCodebook(32, 12, k=2, dead_threshold=0.5, decay=0.5)
    x = torch.randn(200, 12)
    cb.init_from(x)
    assert bool(cb.initted)
    before = cb.embed.clone()
    idx = cb.nearest(x)
    cb.ema_update(x, idx)
    assert not torch.equal(before, cb.embed)
    s = cb.stats()
    assert 1 <= s["perplexity"] <= 32 and 0 < s["usage"] <= 1
    cb.cluster_size[:5] = 0
    assert cb.restart_dead(x) >= 5


@pytest.mark.parametrize("selection", ["mix", "hard", "gumbel"])
@pytest.mark.parametrize("candidates", ["belief", "nearest"])
def test_belief_selection_gradients(selection, candidates):
    torch.manual_seed(0)
    cb = PatchCodebook(64, 48, k=4)
    bp = BeliefPredictor(48, 64, hidden=32, pos_dim=8)
    x = torch.randn(20, 48)
    logits = bp(x, torch.randn(20, 8))
    assert logits.shape == (20, 64)
    tok, cand, w = select_tokens(logits, x, cb, 4, candidates=candidates, selection=selection)
    assert tok.shape == (20, 48) and cand.shape == (20, 4)
    assert torch.allclose(w.sum(1), torch.ones(20), atol=1e-5)
    tok.pow(2).sum().backward()
    assert bp.head.weight.grad is not None and bp.head.weight.grad.abs().sum() > 0


def test_patchify_roundtrip_decoder_and_losses():
    x = torch.randn(2, 3, 32, 32)
    p = patchify(x, 8)
    assert p.shape == (2, 16, 192)
    assert torch.equal(unpatchify(p, 8, (4, 4)), x)
    dec = PixelDecoder(40, 192, dim=32, depth=1, heads=2)
    tok = torch.randn(2, 16, 40, requires_grad=True)
    pred = dec(tok, (4, 4))
    assert pred.shape == (2, 16, 192)
    keep = torch.tensor([[0, 3, 5, 9]] * 2)
    assert dec(tok[:, :4], (4, 4), keep_idx=keep).shape == (2, 16, 192)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    mask[:, :8] = True
    loss = pixel_loss(pred, p, mask) + pixel_loss(pred, p, None, norm_pix_loss=False, kind="l1")
    loss.backward()
    assert tok.grad.abs().sum() > 0
    pool, names = region_pool_matrix((4, 4))
    rel = relation_matrix(torch.randn(4, 16, 8), pool)
    assert rel.shape == (4, len(names), len(names))
    assert relation_consistency(rel, rel).item() == pytest.approx(0.0)
    a, b = torch.randn(6, 8, requires_grad=True), torch.randn(6, 8)
    assert torch.isfinite(clip_loss(a, b, torch.tensor(2.0)) + moco_loss(a, b))
    assert perceptual_loss([a[None]], [a[None].detach()]).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize("objective", ["paco", "mae", "farl", "mcf", "simmim"])
def test_objective_step_backprops_to_encoder(objective):
    torch.manual_seed(0)
    cfg = load_config(None, {**TINY, "objective": objective})
    model = build_model(cfg, steps_per_epoch=2)  # FaRL: the 64-word probe vocabulary
    batch = {"image": torch.rand(4, 3, 32, 32), "text": torch.randint(4, 12, (4, 6))}
    for step in (0, 5):  # incubation and after
        model.zero_grad()
        out = model(batch, step=step)
        assert torch.isfinite(out["loss"])
        out["loss"].backward()
        g = model.encoder.vit.patch_embed.proj.weight.grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0
    if objective == "paco":
        assert model.belief.head.weight.grad.abs().sum() > 0
    if objective != "simmim":
        rec = model.reconstruct(batch["image"])
        assert rec["reconstructed"].shape == (4, 3, 32, 32)


def test_paco_ablation_overrides_build():
    for ov in (["mask.strategy=random"], ["codebook.num_tokens=256", "codebook.k=1"], ["incubation.epochs=0"],
               ["spatial.weight=0"], ["codebook.selection=gumbel", "codebook.candidates=nearest"]):
        cfg = load_config(None, [*[f"{k}={v}" for k, v in TINY.items()], *ov])
        model = build_model(cfg, steps_per_epoch=1)
        out = model({"image": torch.rand(4, 3, 32, 32)}, step=3)
        assert torch.isfinite(out["loss"])
    with pytest.raises(KeyError):
        load_config("smoke", ["codebook.nonsense=1"])
