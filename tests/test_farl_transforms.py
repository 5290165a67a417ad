"""FaRL's warp / crop / augmentation formulas (bench_tasks.protocols.farl.transforms) against values
computed by hand on small inputs, forward and inverse."""

import math

import numpy as np
import pytest
import torch

from bench_tasks.protocols.farl import transforms as T


def test_crop_resize_matrix_maps_box_edges_to_image_edges():
    # FaRL box order y1, x1, y2, x2; align_corners False: x -> (x - x1) / (x2 - x1) * w - 0.5
    m = T.crop_resize_matrix([10, 20, 110, 220], (512, 512))
    assert m[0, 0] == pytest.approx(512 / 200) and m[1, 1] == pytest.approx(512 / 100)
    pts = T._apply([[20, 10], [220, 110], [120, 60]], m)
    np.testing.assert_allclose(pts, [[-0.5, -0.5], [511.5, 511.5], [255.5, 255.5]], atol=1e-9)
    # align_corners True: x1 -> 0, x2 -> w - 1
    m2 = T.crop_resize_matrix([10, 20, 110, 220], (512, 512), align_corners=True)
    np.testing.assert_allclose(T._apply([[20, 10], [220, 110]], m2), [[0, 0], [511, 511]], atol=1e-9)


def test_rotate_scale_matrix_by_hand():
    # 90 degrees, scale 2 about (1, 1), moved to (3, 3) + shift (0.5, 0): (2, 1) = centre + (1, 0)
    # -> rotated (0, 1) * 2 -> (3.5, 5)
    m = T.rotate_scale_matrix(math.pi / 2, 2.0, (0.5, 0.0), (1.0, 1.0), (3.0, 3.0))
    np.testing.assert_allclose(T._apply([[2.0, 1.0], [1.0, 1.0]], m), [[3.5, 5.0], [3.5, 3.0]], atol=1e-12)


def test_update_transform_matrix_scale_mu_about_centre():
    # 300W / WFLW test: scale_mu 0.8 about (255.5, 255.5)
    m = T.update_transform_matrix(np.eye(3), scale_mu=0.8)
    np.testing.assert_allclose(T._apply([[255.5, 255.5], [0.0, 0.0]], m),
                               [[255.5, 255.5], [255.5 - 0.8 * 255.5, 255.5 - 0.8 * 255.5]], atol=1e-9)


def test_random_transform_matrix_draws_in_farls_order():
    # face_alignment train.yaml: shift U(+-0.05) * 512, rot U(+-0.174), scale U(0.8 +- 0.1)
    m, p = T.random_transform_matrix(np.eye(3), np.random.default_rng(3), shift_sigma=0.05, rot_sigma=0.174,
                                     scale_sigma=0.1, scale_mu=0.8, shift_normal=False, rot_normal=False,
                                     scale_normal=False, return_params=True)
    r = np.random.default_rng(3)
    shift = r.uniform(-0.05, 0.05, size=2) * 512
    angle = r.uniform(-0.174, 0.174)
    scale = r.uniform(0.7, 0.9)
    np.testing.assert_allclose(p["shift"], shift)
    assert p["angle"] == pytest.approx(angle) and p["scale"] == pytest.approx(scale)
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    want = np.array([[c, -s, 255.5 - c * 255.5 + s * 255.5 + shift[0]],
                     [s, c, 255.5 - s * 255.5 - c * 255.5 + shift[1]], [0, 0, 1]])
    np.testing.assert_allclose(m, want, atol=1e-9)
    # parsing train.yaml: rot / scale normal, shift uniform
    m2, p2 = T.random_transform_matrix(np.eye(3), np.random.default_rng(5), shift_sigma=0.01, rot_sigma=0.314,
                                       scale_sigma=0.1, shift_normal=False, return_params=True)
    r = np.random.default_rng(5)
    r.uniform(-0.01, 0.01, size=2)
    assert p2["angle"] == pytest.approx(r.normal(0, 0.314)) and p2["scale"] == pytest.approx(r.normal(1, 0.1))


def test_tanh_forward_by_hand_and_inverse():
    # w = h = 10, warp factor 0.8: c = 9 -> n = 0.8 > 0.2 -> tanh(0.6 / 0.8) * 0.8 + 0.2
    n = math.tanh((0.8 - 0.2) / 0.8) * 0.8 + 0.2
    out = T.tanh_forward([[9.0, 5.0], [1.0, 2.0]], 0.8, (10, 10))
    n_lo = math.tanh((-0.8 + 0.2) / 0.8) * 0.8 - 0.2  # c = 1 -> n = -0.8
    n_y2 = math.tanh((-0.6 + 0.2) / 0.8) * 0.8 - 0.2  # c = 2 -> n = -0.6
    np.testing.assert_allclose(out, [[(n + 1) * 5, 5.0], [(n_lo + 1) * 5, (n_y2 + 1) * 5]], atol=1e-12)
    np.testing.assert_allclose(T.tanh_inverse(out, 0.8, (10, 10)), [[9.0, 5.0], [1.0, 2.0]], atol=1e-9)
    # the linear centre band is untouched; warp factor 0 is the identity
    np.testing.assert_allclose(T.tanh_forward([[4.5, 5.5]], 0.8, (10, 10)), [[4.5, 5.5]])
    np.testing.assert_allclose(T.tanh_forward([[9.0, 1.0]], 0.0, (10, 10)), [[9.0, 1.0]])


def test_face_align_matrix_recovers_a_known_similarity():
    std = T.standard_face_points((512, 512))
    np.testing.assert_allclose(std[0], [(196 / 256 - 1 + 1) * 511 / 2, (226 / 256 - 1 + 1) * 511 / 2])
    a = T.rotate_scale_matrix(0.3, 0.5, (7.0, -3.0), (255.5, 255.5), (100.0, 80.0))
    pts = T._apply(std, np.linalg.inv(a))  # a face whose 5 points map exactly onto the standard ones
    m = T.face_align_matrix(pts)
    np.testing.assert_allclose(m, a, atol=1e-9)


def test_points_round_trip_through_lapa_warp_in_px():
    # LaPa: a similarity then the 0.8 tanh warp at 512; original -> warped -> original
    m = T.rotate_scale_matrix(0.2, 1.7, (3.0, -4.0), (150.0, 120.0), (255.5, 255.5))
    rng = np.random.default_rng(0)
    pts = rng.uniform(20, 280, size=(200, 2))
    back = T.unwarp_points(T.warp_points(pts, m, 0.8), m, 0.8)
    err = np.abs(back - pts).max()
    assert err < 1e-6  # px (exact up to float64 rounding where the arctanh clamp is not reached)


def test_remap_bilinear_by_hand_and_constant_border():
    img = torch.arange(12, dtype=torch.float64).reshape(1, 3, 4)  # value = 4 y + x
    mp = np.array([[[0.5, 0.0], [1.25, 1.5], [-0.5, 0.0], [3.0, 2.0]]])  # (1, 4, 2)
    out = T.remap(img, mp)[0, 0].numpy()
    # inside: bilinear = 4 y + x; x = -0.5 blends pixel 0 (value 0) with the 0 border -> 0;
    np.testing.assert_allclose(out, [0.5, 4 * 1.5 + 1.25, 0.0, 11.0], atol=1e-12)
    mp2 = np.array([[[-0.5, 1.0], [3.5, 1.0]]])
    np.testing.assert_allclose(T.remap(img, mp2)[0, 0].numpy(), [0.5 * 4, 0.5 * 7], atol=1e-12)
    lab = torch.tensor([[[1, 2], [3, 4]]], dtype=torch.uint8)
    out = T.remap(lab, np.array([[[1.2, 0.1], [5.0, 0.0]]]), mode="nearest")
    assert out.dtype == torch.uint8 and out[0, 0].tolist() == [2, 0]  # outside -> outlier value 0


def test_warp_then_unwarp_label_map_round_trip():
    # a label map warped with the LaPa tanh warp (nearest) and warped back: the labels return
    # everywhere except within ~1 px of the class boundaries
    h = w = 64
    yy, xx = np.mgrid[0:h, 0:w]
    lab = ((xx // 16) + 4 * (yy // 16)).astype(np.int64)
    m = T.rotate_scale_matrix(0.1, 512 / 64 * 0.9, (0.0, 0.0), (31.5, 31.5), (255.5, 255.5))
    warped = T.remap(torch.from_numpy(lab)[None], T.warp_map(m, 0.8), mode="nearest")
    back = T.remap(warped, T.unwarp_map(m, 0.8, (h, w)), mode="nearest")[0].numpy()
    interior = np.ones_like(lab, bool)
    for k in range(1, 4):
        interior[:, 16 * k - 1:16 * k + 1] = False
        interior[16 * k - 1:16 * k + 1, :] = False
    assert (back[interior] == lab[interior]).mean() == 1.0


def test_box_blur_and_remap_match_cv2():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(1)
    img = rng.random((9, 11, 3)).astype(np.float32)
    t = torch.from_numpy(img).permute(2, 0, 1)
    for k in (2, 3, 4):
        np.testing.assert_allclose(T.box_blur(t, k).permute(1, 2, 0).numpy(), cv2.blur(img, (k, k)), atol=1e-5)
    mp = rng.uniform(-1, 11, size=(5, 6, 2)).astype(np.float32)
    ours = T.remap(t, mp).permute(1, 2, 0).numpy()
    ref = cv2.remap(img, mp[..., 0], mp[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    np.testing.assert_allclose(ours, ref, atol=1 / 32 + 1e-3)  # cv2 quantises map coordinates to 1/32 px


def test_colour_augmentations_by_hand():
    img = torch.tensor([0.25, 0.5, 1.0]).view(3, 1, 1).expand(3, 2, 2).clone()

    class FixedRng:
        def __init__(self, u, c=0):
            self.u, self.c = u, c

        def uniform(self, low=0.0, high=1.0):
            return low + self.u * (high - low)

        def choice(self, options):
            return self.c

    g = T.random_gray(img, FixedRng(0.05))
    assert torch.allclose(g, torch.full_like(img, 0.299 * 0.25 + 0.587 * 0.5 + 0.114))
    assert torch.equal(T.random_gray(img, FixedRng(0.5)), img)
    assert torch.allclose(T.random_gamma(img, FixedRng(0, -1)), img.sqrt())
    assert torch.allclose(T.random_gamma(img, FixedRng(0, 1)), img ** 2)
    # blur: k = int((H + W) / 2 * u * 0.01) -> at 512, u = 0.5 gives int(2.56) = 2
    big = torch.rand(3, 512, 512)
    assert torch.allclose(T.random_blur(big, FixedRng(0.5)), T.box_blur(big, 2))
    assert torch.equal(T.random_blur(big, FixedRng(0.1)), big)  # k = 0: untouched
    # occlusion: u = 0.5 everywhere -> rh = 0.5, rw = 0.5, centre (255, 255), half sizes 64
    occ = T.random_occlusion(torch.ones(3, 512, 512), FixedRng(0.5))
    zero = (occ[0] == 0).nonzero()
    assert zero[:, 0].min() == 255 - 64 and zero[:, 0].max() == 255 + 64
    assert zero[:, 1].min() == 255 - 64 and zero[:, 1].max() == 255 + 64


def test_awing_heatmap_and_heatmap_to_points_by_hand():
    size, radius = 16, 5.0
    pt = torch.tensor([[[7.5 / size, 8.5 / size]]])  # pixel (7, 8)
    hm = T.awing_heatmaps(pt, size, radius)[0, 0]
    assert hm[8, 7] == 1.0
    assert hm[8, 8].item() == pytest.approx(math.exp(-16 / (2 * 25)))
    assert hm[8, 12].item() == pytest.approx(math.exp(-16 * 25 / (2 * 25)))  # r = 5: still inside
    assert hm[8, 13] == 0.0  # r = 6 > radius
    one = torch.zeros(1, 1, 8, 8)
    one[0, 0, 5, 3] = 1.0
    torch.testing.assert_close(T.heatmap_to_points(one)[0, 0], torch.tensor([3.5 / 8, 5.5 / 8]))
    # the centre of mass of the target is the point itself (symmetric kernel, away from the edges)
    torch.testing.assert_close(T.heatmap_to_points(hm[None, None])[0, 0], pt[0, 0])
