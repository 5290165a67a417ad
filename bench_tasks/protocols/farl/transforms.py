"""FaRL's downstream geometry and augmentations, written from the formulas of FaRL's
configuration files and of the `blueprint.ml.augmenters` they name (FaRL repository
`farl/experiments/face_{parsing,alignment}/augmenters/*.yaml`, `farl/datasets/*.py`,
`farl/network/geometry.py`; facer's `transform.py` holds the same functions).

Conventions (FaRL's): 3x3 matrices map *original* pixel coordinates to the *aligned, not yet
warped* frame of `warped_shape` (512 x 512 in every FaRL file); coordinates are (x, y) with pixel
centres at integers (pixel i covers [i - 0.5, i + 0.5]).

The "tanh warp" FaRL applies (warp_factor 0.8 for LaPa, 0 = a plain crop for every other data
set) is the separable ROI-tanh warp of Lin et al. (CVPR 2019): each coordinate of the aligned
frame is normalised to [-1, 1] by ``c / size * 2 - 1``; the band |c| > 1 - f is compressed by
``tanh((c - (1 - f)) / f) * f + (1 - f)`` (and its mirror), the centre |c| <= 1 - f stays
linear. It is *not* the tanh-polar warp of the later RTNet paper.

Function names say the direction:
  * `warp_points`   original -> warped   (FaRL's `TransformPoints2D`, `_inverted_tanh_warp_transform`)
  * `unwarp_points` warped -> original   (FaRL's `TransformPoints2DInverted`, `_tanh_warp_transform`)
  * `warp_map(matrix, f, shape)` for every warped pixel, the original coordinate it samples
    (FaRL's `GetTransformMap`); `unwarp_map(..., orig_shape)` for every original pixel, the warped
    coordinate it samples (FaRL's `GetInvertedTransformMap`, used on the logits before scoring).
  * `remap(image, map)` samples an image at a map (FaRL's `TransformByMap`: cv2.remap with a
    constant-0 border). We use `torch.nn.functional.grid_sample`, which interpolates bilinearly in
    float (cv2.remap quantises map coordinates to 1/32 px).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from paco_fr.data.template import similarity_from_points

WARPED_SHAPE = (512, 512)
# FaRL/facer's standard 5 points (eye centres, nose tip, mouth corners) on a 512 canvas, in [-1, 1]
_STD_FACE_PTS = np.array([196.0, 226.0, 316.0, 226.0, 256.0, 286.0, 220.0, 360.4, 292.0, 360.4]
                         ).reshape(5, 2) / 256.0 - 1.0
SAFE_ARCTANH = 0.999  # blueprint clamps the arctanh argument to +-0.999


# ----------------------------------------------------------------------------- matrices


def to3x3(m) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    if m.shape == (3, 3):
        return m
    return np.concatenate([m.reshape(2, 3), [[0.0, 0.0, 1.0]]], axis=0)


def standard_face_points(shape=WARPED_SHAPE, face_scale: float = 1.0) -> np.ndarray:
    """FaRL's target 5 points: (std * face_scale + 1) * (w - 1, h - 1) / 2."""
    h, w = shape[:2]
    return (_STD_FACE_PTS * face_scale + 1.0) * np.array([w - 1, h - 1], dtype=np.float64) / 2.0


def face_align_matrix(pts5, shape=WARPED_SHAPE, face_scale: float = 1.0) -> np.ndarray:
    """LaPa's `align_matrix` (FaRL `prepare.py`: `GetFaceAlignMatrix(target_shape=(512, 512))`):
    least-squares similarity (Umeyama, as skimage's SimilarityTransform.estimate) of the 5 points
    onto `standard_face_points`."""
    return to3x3(similarity_from_points(np.asarray(pts5, dtype=np.float64),
                                        standard_face_points(shape, face_scale)))


def crop_resize_matrix(box_y1x1y2x2, shape=WARPED_SHAPE, align_corners: bool = False,
                       offset_box_coords: bool = False) -> np.ndarray:
    """FaRL's `UpdateCropAndResizeMatrix` (box in FaRL's y1, x1, y2, x2 order). With
    align_corners False: x -> (x - x1) / (x2 - x1) * w - 0.5."""
    y1, x1, y2, x2 = (float(v) for v in box_y1x1y2x2)
    h, w = shape[:2]
    if align_corners:
        ax, ay = (w - 1) / (x2 - x1), (h - 1) / (y2 - y1)
        return np.array([[ax, 0, -x1 * ax], [0, ay, -y1 * ay], [0, 0, 1]], dtype=np.float64)
    if offset_box_coords:
        x1, x2, y1, y2 = x1 - 0.5, x2 - 0.5, y1 - 0.5, y2 - 0.5
    ax, ay = w / (x2 - x1), h / (y2 - y1)
    return np.array([[ax, 0, -x1 * ax - 0.5], [0, ay, -y1 * ay - 0.5], [0, 0, 1]], dtype=np.float64)


def rotate_scale_matrix(angle: float, scale: float, shift_xy, from_center, to_center) -> np.ndarray:
    """blueprint's `_compose_rotate_and_scale`: rotate by `angle` (radians) and scale about
    `from_center`, move it to `to_center` + shift."""
    c, s = math.cos(angle), math.sin(angle)
    fx, fy = from_center
    tx, ty = to_center
    a, b = scale * c, scale * s
    return np.array([[a, -b, tx - a * fx + b * fy + shift_xy[0]],
                     [b, a, ty - b * fx - a * fy + shift_xy[1]],
                     [0.0, 0.0, 1.0]], dtype=np.float64)


def _centres(from_shape, to_shape):
    fh, fw = from_shape[:2]
    th, tw = to_shape[:2]
    return ((fw - 1) / 2.0, (fh - 1) / 2.0), ((tw - 1) / 2.0, (th - 1) / 2.0)


def update_transform_matrix(matrix, from_shape=WARPED_SHAPE, to_shape=WARPED_SHAPE,
                            scale_mu: float = 1.0, rot_mu: float = 0.0, shift_xy=(0.0, 0.0)) -> np.ndarray:
    """FaRL's test-time `UpdateTransformMatrix` (e.g. scale_mu 0.8 for 300W / WFLW)."""
    fc, tc = _centres(from_shape, to_shape)
    return rotate_scale_matrix(rot_mu, scale_mu, shift_xy, fc, tc) @ to3x3(matrix)


def _draw(rng: np.random.Generator, mu: float, sigma: float, normal: bool, size=None):
    if normal:
        return rng.normal(mu, sigma, size=size)
    return rng.uniform(mu - sigma, mu + sigma, size=size)


def random_transform_matrix(matrix, rng: np.random.Generator, from_shape=WARPED_SHAPE, to_shape=WARPED_SHAPE,
                            shift_sigma: float = 0.1, rot_sigma: float = math.radians(18), scale_sigma: float = 0.1,
                            shift_mu: float = 0.0, rot_mu: float = 0.0, scale_mu: float = 1.0,
                            shift_normal: bool = True, rot_normal: bool = True, scale_normal: bool = True,
                            return_params: bool = False):
    """FaRL's train-time `UpdateRandomTransformMatrix`: shift (2 draws, times min(h, w) of the
    target), rotation (radians), scale, each normal(mu, sigma) or uniform(mu - sigma, mu + sigma),
    drawn in that order, composed about the centres on top of `matrix`."""
    th, tw = to_shape[:2]
    shift = _draw(rng, shift_mu, shift_sigma, shift_normal, size=2) * min(th, tw)
    angle = float(_draw(rng, rot_mu, rot_sigma, rot_normal))
    scale = float(_draw(rng, scale_mu, scale_sigma, scale_normal))
    fc, tc = _centres(from_shape, to_shape)
    out = rotate_scale_matrix(angle, scale, shift, fc, tc) @ to3x3(matrix)
    if return_params:
        return out, {"shift": shift, "angle": angle, "scale": scale}
    return out


# ----------------------------------------------------------------------------- tanh warp


def _apply(points, m):
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    h = np.concatenate([p, np.ones((len(p), 1))], axis=1) @ np.asarray(m, dtype=np.float64).T
    return h[:, :2] / h[:, 2:3]


def _tanh_band(coords, warp_factor: float, warped_shape, band_fn) -> np.ndarray:
    """Apply `band_fn` to the outer band (|n| > 1 - f) of coordinates normalised to [-1, 1]; the
    inner part is unchanged. tanh compresses the band (forward), arctanh expands it (inverse)."""
    c = np.array(coords, dtype=np.float64)
    if warp_factor <= 0:
        return c
    h, w = warped_shape[:2]
    wh = np.array([w, h], dtype=np.float64)
    n = c / wh * 2 - 1
    f = warp_factor
    hi, lo = n > 1 - f, n < -1 + f
    n[hi] = band_fn((n[hi] - 1 + f) / f) * f + 1 - f
    n[lo] = band_fn((n[lo] + 1 - f) / f) * f - 1 + f
    return (n + 1) / 2 * wh


def tanh_forward(coords, warp_factor: float, warped_shape=WARPED_SHAPE) -> np.ndarray:
    """Aligned-frame coordinates -> warped coordinates (the tanh compression of the outer band)."""
    return _tanh_band(coords, warp_factor, warped_shape, np.tanh)


def tanh_inverse(coords, warp_factor: float, warped_shape=WARPED_SHAPE) -> np.ndarray:
    """Warped coordinates -> aligned-frame coordinates (arctanh, argument clamped to +-0.999)."""
    return _tanh_band(coords, warp_factor, warped_shape,
                      lambda t: np.arctanh(np.clip(t, -SAFE_ARCTANH, SAFE_ARCTANH)))


def warp_points(points, matrix, warp_factor: float, warped_shape=WARPED_SHAPE) -> np.ndarray:
    """Original pixel coordinates (N, 2) -> warped pixel coordinates."""
    return tanh_forward(_apply(points, to3x3(matrix)), warp_factor, warped_shape)


def unwarp_points(points, matrix, warp_factor: float, warped_shape=WARPED_SHAPE) -> np.ndarray:
    """Warped pixel coordinates (N, 2) -> original pixel coordinates."""
    return _apply(tanh_inverse(points, warp_factor, warped_shape), np.linalg.inv(to3x3(matrix)))


def _pixel_grid(shape) -> np.ndarray:
    h, w = shape[:2]
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    return np.stack([xx, yy], -1).reshape(-1, 2)


def warp_map(matrix, warp_factor: float, warped_shape=WARPED_SHAPE) -> np.ndarray:
    """(H, W, 2): for each pixel of the warped image, the original (x, y) it samples."""
    h, w = warped_shape[:2]
    return unwarp_points(_pixel_grid(warped_shape), matrix, warp_factor, warped_shape).reshape(h, w, 2)


def unwarp_map(matrix, warp_factor: float, orig_shape, warped_shape=WARPED_SHAPE) -> np.ndarray:
    """(H0, W0, 2): for each pixel of the original image, the warped (x, y) it samples."""
    h, w = orig_shape[:2]
    return warp_points(_pixel_grid(orig_shape), matrix, warp_factor, warped_shape).reshape(h, w, 2)


def remap(src: torch.Tensor, map_xy, mode: str = "bilinear", fill: float = 0.0) -> torch.Tensor:
    """Sample src (C, H, W) (or (B, C, H, W) with one map) at map_xy (H', W', 2) pixel
    coordinates; outside the image: `fill` (blended bilinearly at the border, as cv2's constant
    border). Integer inputs are sampled as floats and rounded back."""
    squeeze = src.ndim == 3
    x = src[None] if squeeze else src
    is_float = x.is_floating_point()
    xf = x if is_float else x.float()
    h, w = xf.shape[-2:]
    m = torch.as_tensor(np.asarray(map_xy), dtype=torch.float64)
    g = torch.stack([(m[..., 0] + 0.5) / w * 2 - 1, (m[..., 1] + 0.5) / h * 2 - 1], -1)
    g = g[None].expand(xf.shape[0], -1, -1, -1).to(device=xf.device, dtype=xf.dtype)
    if fill:
        xf = xf - fill
    out = F.grid_sample(xf, g, mode=mode, padding_mode="zeros", align_corners=False)
    if fill:
        out = out + fill
    if not is_float:
        out = out.round().to(src.dtype)
    return out[0] if squeeze else out


# ----------------------------------------------------------------------------- colour augmentations
# all on float images (3, H, W) in [0, 1]; `rng` a numpy Generator


def random_gray(img: torch.Tensor, rng: np.random.Generator, gray_ratio: float = 0.1) -> torch.Tensor:
    """blueprint `RandomGray`: with probability 0.1, cv2's RGB -> gray (0.299, 0.587, 0.114), 3x."""
    if rng.uniform() < gray_ratio:
        g = 0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2]
        return g[None].expand(3, -1, -1).clone()
    return img


def random_gamma(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """blueprint `RandomGamma`: clamp to [0, 1], then one of sqrt / identity / square (uniform)."""
    img = img.clamp(0, 1)
    g = int(rng.choice([-1, 0, 1]))
    if g == -1:
        return img.sqrt()
    if g == 1:
        return img.square()
    return img


def box_blur(img: torch.Tensor, k: int) -> torch.Tensor:
    """cv2.blur(img, (k, k)): mean over a k x k box, anchor at k // 2, BORDER_REFLECT_101."""
    left = k // 2
    right = k - 1 - left
    x = F.pad(img[None], (left, right, left, right), mode="reflect")
    return F.avg_pool2d(x, k, stride=1)[0]


def random_blur(img: torch.Tensor, rng: np.random.Generator, scale: float = 0.01) -> torch.Tensor:
    """blueprint `RandomBlur`: k = int((H + W) / 2 * U(0, 0.01)); box blur when k > 1."""
    k = int((img.shape[-2] + img.shape[-1]) / 2 * rng.uniform(0.0, scale))
    if k > 1:
        return box_blur(img.clamp(0, 1), k)
    return img


def random_occlusion(img: torch.Tensor, rng: np.random.Generator, h_min: float = 0.2, h_max: float = 0.8,
                     w_delta: float = 0.2) -> torch.Tensor:
    """blueprint `RandomOcclusion`: one black rectangle (its centre draws x from (h - 1) and y
    from (w - 1), as FaRL's code does; equal on FaRL's square crops)."""
    _, h, w = img.shape
    rh = rng.uniform() * (h_max - h_min) + h_min
    rw = rh - w_delta + 2 * w_delta * rng.uniform()
    cx = int((h - 1) * rng.uniform())
    cy = int((w - 1) * rng.uniform())
    dh, dw = int(h / 2 * rh), int(w / 2 * rw)
    x0, y0 = max(0, cx - dw // 2), max(0, cy - dh // 2)
    x1, y1 = min(w - 1, cx + dw // 2), min(h - 1, cy + dh // 2)
    out = img.clone()
    out[:, y0:y1 + 1, x0:x1 + 1] = 0
    return out


def noise_fusion(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """blueprint `NoiseFusion`: (1 - a) * img + a * U(0, 1) noise, a ~ U(0, 0.5)."""
    noise = torch.from_numpy(rng.random(tuple(img.shape[1:]) + (img.shape[0],))).permute(2, 0, 1).to(img.dtype)
    a = 0.5 * rng.uniform()
    return (1 - a) * img + a * noise


def parsing_colour_augment(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """FaRL parsing train.yaml: RandomGray, RandomGamma, RandomBlur."""
    return random_blur(random_gamma(random_gray(img, rng), rng), rng)


def alignment_colour_augment(img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """FaRL face_alignment train.yaml: RandomOcclusion, Maybe(0.5, NoiseFusion), RandomGray,
    RandomGamma, RandomBlur."""
    img = random_occlusion(img, rng)
    if rng.uniform() < 0.5:
        img = noise_fusion(img, rng)
    return parsing_colour_augment(img, rng)


# ----------------------------------------------------------------------------- heatmaps


def normalize_points(points: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """FaRL: pixel coordinates -> [0, 1] ((p + 0.5) / size)."""
    return (points + 0.5) / torch.tensor([w, h], dtype=points.dtype, device=points.device)


def denormalize_points(points: torch.Tensor, h: int, w: int) -> torch.Tensor:
    return points * torch.tensor([w, h], dtype=points.dtype, device=points.device) - 0.5


def awing_heatmaps(norm_points: torch.Tensor, size: int, radius: float) -> torch.Tensor:
    """FaRL's `points2heatmap` (p2i, kernel 'gaussian_awing', reduce max): (B, K, 2) points in
    [0, 1] -> (B, K, size, size); pixel (x, y) at distance r <= radius of the point gets
    exp(-16 r^2 / (2 radius^2)) (a Gaussian of sigma radius / 4), 0 beyond."""
    p = denormalize_points(norm_points.float(), size, size)
    ar = torch.arange(size, dtype=torch.float32, device=p.device)
    dx2 = (ar - p[..., 0:1]) ** 2  # (B, K, W)
    dy2 = (ar - p[..., 1:2]) ** 2  # (B, K, H)
    r2 = dy2[..., :, None] + dx2[..., None, :]
    hm = torch.exp(-r2 * 16 / 2 / radius ** 2)
    return torch.where(r2 <= radius ** 2, hm, torch.zeros_like(hm))


def heatmap_to_points(heatmap: torch.Tensor) -> torch.Tensor:
    """FaRL's `heatmap2points` on activated heatmaps (B, K, h, w): the weighted mean of the pixel
    indices (weights = activations, sum clamped at 1e-6), normalised with (p + 0.5) / size."""
    b, k, h, w = heatmap.shape
    hm = heatmap.float()
    s = hm.sum((2, 3)).clamp(min=1e-6)
    xs = torch.arange(w, dtype=torch.float32, device=hm.device)
    ys = torch.arange(h, dtype=torch.float32, device=hm.device)
    x = (hm.sum(2) * xs).sum(-1) / s
    y = (hm.sum(3) * ys).sum(-1) / s
    return normalize_points(torch.stack([x, y], -1), h, w)
