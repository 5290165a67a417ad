"""What makes the pre-training steps compile (measured on an H200 with torch 2.11):
no buffer that the backward may need is modified in place inside the forward, and the token
count of MAE-style encoders is known without a host sync."""

from __future__ import annotations

import torch

from paco_fr.config import load_config
from paco_fr.models import build_model
from paco_fr.models.mae import keep_indices

TINY = ["model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
        "codebook.num_tokens=64", "belief.hidden=32", "incubation.steps=1", "codebook.restart_every=2"]


def _paco():
    torch.manual_seed(0)
    return build_model(load_config("smoke", TINY + ["objective=paco"]), steps_per_epoch=1)


def test_paco_forward_leaves_the_codebook_alone_until_step_end():
    model = _paco().train()
    x = {"image": torch.rand(4, 3, 32, 32)}
    model(x, step=5)  # first call initialises the table from the data (once)
    model.on_step_end(5)
    before = model.codebook.embed.clone()
    version = model.codebook.embed._version
    out = model(x, step=10)
    # the compiled autograd failure was an in-place update of this table inside the forward
    assert torch.equal(model.codebook.embed, before) and model.codebook.embed._version == version
    out["loss"].backward()
    model.on_step_end(10)
    assert not torch.equal(model.codebook.embed, before)  # the EMA update happened, after the backward
    assert model._pending_codebook == []


def test_paco_micro_batches_all_reach_the_ema_update():
    model = _paco().train()
    x = {"image": torch.rand(4, 3, 32, 32)}
    model(x, step=3)
    u0 = model.codebook.usage.sum().item()
    model.on_step_end(3)
    one = model.codebook.usage.sum().item() - u0  # codes counted for one micro-batch
    model(x, step=4)
    model(x, step=4)  # gradient accumulation: two forwards, one optimizer step
    assert len(model._pending_codebook) == 2
    u1 = model.codebook.usage.sum().item()
    model.on_step_end(4)
    assert one > 0 and model.codebook.usage.sum().item() - u1 == 2 * one


def test_keep_indices_with_a_known_count_matches_the_counted_one():
    torch.manual_seed(0)
    mask = torch.rand(5, 16).argsort(1).argsort(1) < 12  # 12 of 16 masked in every row
    assert torch.equal(keep_indices(mask), keep_indices(mask, 4))
