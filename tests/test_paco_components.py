"""PaCo-FR components: the spatial term cannot collapse, region maps follow posed
faces, the controls (CE-only, learned mask token, no spatial) isolate one component each at the
same number of distinct images per step, and the codebook lives in the target's space."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from paco_fr.config import load_config
from paco_fr.data.template import CANONICAL_5, CANONICAL_68
from paco_fr.losses import norm_pix, spatial_correspondence
from paco_fr.masking import REGION_INDEX, REGIONS, make_mask, region_map, region_map_from_landmarks
from paco_fr.models import build_model
from paco_fr.region_maps import hflip_landmarks, landmarks68_from_five, region_maps_from_landmarks

TINY = ["model.img_size=32", "model.patch_size=8", "model.depth=1", "decoder.dim=32", "decoder.depth=1",
        "codebook.num_tokens=32", "belief.hidden=32", "incubation.steps=1"]


# ---------------------------------------------------------------------------- spatial term
def test_spatial_term_is_not_zero_and_has_a_gradient_for_parallel_features():
    torch.manual_seed(0)
    v = torch.randn(16)
    scales = torch.linspace(0.5, 2.0, 10)
    f1 = (scales[:, None] * v)[None].repeat(2, 1, 1).requires_grad_(True)  # 10 parallel region features
    f2 = (scales[:, None] * v)[None].repeat(2, 1, 1)
    present = torch.ones(2, 10, dtype=torch.bool)
    loss = spatial_correspondence(f1, f2, present)
    loss.backward()
    assert loss.item() > 0.1 and f1.grad.abs().sum() > 1e-4
    # fully collapsed (identical) features: log R, never 0
    same = torch.ones(2, 10, 16)
    assert spatial_correspondence(same, same, present).item() == pytest.approx(math.log(10), rel=1e-5)
    # distinct, matching features score far lower than collapsed ones; mismatched ones higher
    f = torch.randn(2, 10, 16) * 3
    assert spatial_correspondence(f, f, present).item() < 0.5
    assert spatial_correspondence(f, f[:, torch.randperm(10)], present).item() > math.log(10)


def test_spatial_term_ignores_absent_regions():
    f = torch.randn(1, 10, 8)
    present = torch.zeros(1, 10, dtype=torch.bool)
    present[0, :4] = True
    g = f.clone()
    g[0, 4:] = 1e3 * torch.randn(6, 8)  # absent regions: any value
    a = spatial_correspondence(f, f, present)
    assert a.item() == pytest.approx(spatial_correspondence(f[:, :4], g[:, :4], present[:, :4]).item(), rel=1e-5)
    assert a.item() == pytest.approx(spatial_correspondence(f, g, present).item(), rel=1e-5)


def test_spatial_gradient_share_is_material_in_a_model_step():
    torch.manual_seed(0)
    model = build_model(load_config("smoke", TINY)).train()
    out = model({"image": torch.rand(8, 3, 32, 32)}, step=5)
    g = model.gradient_diagnostics(out)
    assert 0.05 < g["gshare_spatial"] < 0.95, g


# ---------------------------------------------------------------------------- region maps
def _rotate(pts: np.ndarray, deg: float, centre=(0.5, 0.5)) -> np.ndarray:
    a = math.radians(deg)
    rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    return (pts - centre) @ rot.T + centre


def _cell(pt, g: int) -> int:
    return min(int(pt[1] * g), g - 1) * g + min(int(pt[0] * g), g - 1)


def test_region_map_follows_a_rotated_face():
    g = 14
    canon = region_map((g, g)).numpy()
    pts = _rotate(np.asarray(CANONICAL_68), 30.0, centre=(0.5, 0.9))  # the head rolls about the chin
    maps = region_maps_from_landmarks(torch.tensor(np.stack([np.asarray(CANONICAL_68), pts])), (g, g)).numpy()
    assert np.array_equal(maps[0], canon)  # same rules as the canonical map
    assert np.array_equal(maps[1], region_map_from_landmarks(pts, (g, g)))  # same rules as the numpy version
    for name, sl in (("right_eye", slice(36, 42)), ("left_eye", slice(42, 48)), ("mouth", slice(48, 68))):
        c_rot, c_can = pts[sl].mean(0), np.asarray(CANONICAL_68)[sl].mean(0)
        assert REGIONS[maps[1][_cell(c_rot, g)]] == name  # the region sits on the rotated component
        if name != "mouth":  # the eyes moved by more than a region's width
            assert REGIONS[canon[_cell(c_rot, g)]] != name  # where the canonical map has something else
            assert REGIONS[maps[1][_cell(c_can, g)]] != name  # and left the canonical position
    # the eye region moved the way the face turned: its centroid rotated with the landmarks
    ys, xs = np.divmod(np.flatnonzero(maps[1] == REGION_INDEX["right_eye"]), g)
    centroid = np.array([(xs.mean() + 0.5) / g, (ys.mean() + 0.5) / g])
    assert np.linalg.norm(centroid - pts[36:42].mean(0)) < 1.0 / g


def test_region_maps_fallback_flip_and_five_points():
    pts = torch.tensor(np.stack([np.asarray(CANONICAL_68)] * 2))
    pts[1, 3] = float("nan")  # unknown landmarks -> canonical map
    maps = region_maps_from_landmarks(pts, (8, 8))
    assert torch.equal(maps[1], region_map((8, 8)))
    # the canonical face is symmetric: its mirror (x -> 1-x, left/right swapped) is itself
    assert torch.allclose(hflip_landmarks(pts[0]), pts[0], atol=1e-9)
    shifted = pts[0].clone()
    shifted[:, 0] += 0.1
    assert torch.allclose(hflip_landmarks(shifted)[36:42, 0], 1 - shifted[42:48, 0][[3, 2, 1, 0, 5, 4]])
    # 5 points: the affine fit reproduces the canonical 68 from the canonical 5, and follows a shift
    assert np.allclose(landmarks68_from_five(CANONICAL_5), CANONICAL_68, atol=1e-9)
    assert np.allclose(landmarks68_from_five(np.asarray(CANONICAL_5) + [0.05, -0.02]),
                       np.asarray(CANONICAL_68) + [0.05, -0.02], atol=1e-9)


def test_region_mask_per_face_masks_that_faces_regions():
    torch.manual_seed(0)
    g = 8
    pts = np.stack([np.asarray(CANONICAL_68), _rotate(np.asarray(CANONICAL_68), 25.0)] * 4)
    regions = region_maps_from_landmarks(torch.tensor(pts), (g, g))
    m = make_mask("region", 8, (g, g), 0.5, regions=regions)
    assert (m.sum(1) == 32).all()
    for b in range(8):  # every face has at least one of its own regions masked whole
        whole = [bool(m[b][regions[b] == r].all()) for r in torch.unique(regions[b])]
        assert any(whole)


def test_synthface_items_carry_unit_landmarks(tmp_path):
    from paco_fr.data.pretrain_data import build_pretrain_dataset, collate

    ds = build_pretrain_dataset({"source": "synthface", "split": "pretrain", "num_images": 8, "root": str(tmp_path)}, 32)
    batch = collate([ds[i] for i in range(4)])
    lm = batch["landmarks"]
    assert lm.shape == (4, 68, 2) and lm.dtype == torch.float32 and (lm > -0.2).all() and (lm < 1.2).all()
    # the eyes of the first face are in its own right/left-eye regions
    maps = region_maps_from_landmarks(lm.double(), (8, 8))
    c = lm[0, 36:42].mean(0).tolist()
    assert REGIONS[maps[0][_cell(c, 8)]] == "right_eye"


# ---------------------------------------------------------------------------- controls
def _model(*ov):
    torch.manual_seed(0)
    return build_model(load_config("smoke", [*TINY, *ov])).train()


def test_ce_only_control_gets_no_reconstruction_gradient_in_the_belief_predictor():
    x = {"image": torch.rand(4, 3, 32, 32)}
    for detach, expect in ((True, False), (False, True)):
        model = _model(f"belief.detach_weights={str(detach).lower()}")
        out = model(x, step=5)  # after incubation: the full model trains the predictor end to end
        params = list(model.belief.parameters())
        grads = torch.autograd.grad(out["parts"]["rec"], params, retain_graph=True, allow_unused=True)
        reached = any(gr is not None and gr.abs().sum() > 0 for gr in grads)
        assert reached is expect
        out["loss"].backward()  # the CE term still trains it
        assert model.belief.head.weight.grad.abs().sum() > 0


def test_mask_token_control_has_no_codebook():
    model = _model("mask.replace=mask_token")
    assert model.codebook is None and model.belief is None
    assert not any(k.startswith(("codebook.", "belief.")) for k in model.state_dict())
    out = model({"image": torch.rand(4, 3, 32, 32)}, step=5)
    out["loss"].backward()
    assert "ce" not in out["terms"] and model.mask_token.grad.abs().sum() > 0
    assert model.encoder.vit.patch_embed.proj.weight.grad.abs().sum() > 0


def _distinct_images_per_step(cfg: dict) -> float:
    model = build_model(cfg)
    B = int(cfg["train"]["batch_size"])
    idx = model._view_index(B, "cpu")
    return float(B if idx is None else len(set(idx.tolist())))


def test_no_spatial_control_keeps_the_images_per_step():
    main = load_config("smoke", TINY)
    off = load_config("smoke", [*TINY, "spatial.weight=0", "spatial.keep_views=true"])
    assert _distinct_images_per_step(off) == _distinct_images_per_step(main) == 8  # batch 16, split pairing
    model = build_model(off).train()
    out = model({"image": torch.rand(4, 3, 32, 32)}, step=5)
    assert "spatial" in out["terms"] and "spatial" not in out["parts"]  # measured, not trained


def test_suite_controls_match_the_main_runs_images_per_step():
    from bench_tasks.plan.suite import suite_runs

    runs = [r for r in suite_runs(True, "smoke") if r.overrides.get("objective") == "paco"]
    names = {r.name for r in runs}
    assert {"abl_learned_mask_token", "abl_belief_ce_only", "abl_no_spatial", "abl_mask_random"} <= names
    per_step = {r.name: _distinct_images_per_step(load_config("smoke", [*TINY, *(f"{k}={v}" for k, v in
                                                                                  r.overrides.items())]))
                for r in runs}
    assert len(set(per_step.values())) == 1, per_step
    # and the accounting the budget matching and the compute block use says the same
    from paco_fr.models.paco import PaCoModel

    for r in runs:
        cfg = load_config("smoke", [*TINY, *(f"{k}={v}" for k, v in r.overrides.items())])
        assert PaCoModel.distinct_images(cfg, int(cfg["train"]["batch_size"])) == per_step[r.name], r.name


# ---------------------------------------------------------------------------- codebook space
def test_norm_pix_codebook_pastes_with_the_patchs_own_statistics():
    model = _model("codebook.space=norm_pix")
    sel = torch.rand(6, model.patch_dim) * 3 + 1
    assert torch.allclose(model.paste(model.to_code_space(sel), sel), sel, atol=1e-4)
    c = model.corrupt(model.encoder.normalize(torch.rand(4, 3, 32, 32)), step=5)
    emb = model.codebook.embed  # initialised from normalised patches: zero mean, unit variance rows
    assert emb.mean(1).abs().max() < 0.05 and (emb.var(1) - 1).abs().max() < 0.1
    pasted, patch = c["pasted"].detach(), c["sel"]
    # a pasted token has the patch's own mean and standard deviation, and the token's shape
    assert torch.allclose(pasted.mean(1), patch.mean(1), atol=1e-4)
    assert torch.allclose(pasted.std(1), patch.std(1), rtol=1e-3)
    assert not torch.allclose(norm_pix(pasted), norm_pix(patch), atol=0.1)
    pixel = _model("codebook.space=pixel")
    assert torch.equal(pixel.to_code_space(sel), sel) and torch.equal(pixel.paste(sel, sel * 0), sel)


def test_folder_landmarks_file_gives_per_face_landmarks(tmp_path):
    from PIL import Image

    from paco_fr.data.pretrain_data import build_pretrain_dataset

    for name in ("a.png", "b.png"):
        Image.fromarray(np.zeros((40, 40, 3), np.uint8)).save(tmp_path / name)
    five = np.asarray(CANONICAL_5) * 40 - 0.5  # the canonical 5 points in a.png's pixels
    (tmp_path / "lm.txt").write_text("# relpath x1 y1 ... x5 y5\na.png " + " ".join(f"{v:.6f}" for v in five.ravel()) + "\n")
    ds = build_pretrain_dataset({"source": "folder", "path": str(tmp_path), "landmarks_file": str(tmp_path / "lm.txt")}, 32)
    a, b = ds[0], ds[1]
    assert torch.allclose(a["landmarks"].double(), torch.tensor(np.asarray(CANONICAL_68)), atol=1e-5)
    assert torch.isnan(b["landmarks"]).all()  # no line: the canonical map (fallback)
    (tmp_path / "bad.txt").write_text("a.png 1 2 3\n")
    with pytest.raises(ValueError, match="5 or 68 points"):
        build_pretrain_dataset({"source": "folder", "path": str(tmp_path), "landmarks_file": str(tmp_path / "bad.txt")}, 32)
