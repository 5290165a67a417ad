"""Per-image facial-region maps from landmarks.

The canonical map (`paco_fr.masking.region_map`) labels the patches of the *canonical* aligned
face; on a posed face (SynthFace has |yaw| up to 45 deg) the eyes and mouth sit elsewhere. Here the
same labelling rules run on each image's own 68 landmarks, batched in torch so that a training
step can build its B maps on the device:

- `region_maps_from_landmarks(pts (B, 68, 2) unit coords, grid) -> (B, N) long`: the rules of
  `paco_fr.masking.region_map_from_landmarks` (identical labels on the same points, tested);
  rows whose landmarks are missing (any NaN) get the canonical map (the fallback).
- `landmarks68_from_five(pts5)`: a 68-point estimate from 5 alignment points (eye centres, nose
  tip, mouth corners): the least-squares affine map CANONICAL_5 -> pts5 applied to CANONICAL_68.
  For a face aligned on those 5 points, this moves the canonical eyes / nose / mouth to where the
  5 points are (e.g. a nose tip shifted sideways by yaw shears the nose and mouth).
- `hflip_landmarks(pts)`: the landmarks of the horizontally flipped image (x -> 1 - x and the
  iBUG left/right points swapped), for the engine's h-flip augmentation.

Coordinates are *unit* coordinates of the aligned crop (paco_fr.data.template): a landmark at
pixel (x, y) of a `size` crop (pixel centres at integers) is ((x + 0.5) / size, (y + 0.5) / size).
"""

from __future__ import annotations

import numpy as np
import torch

from paco_fr.data.template import landmarks68_from_five
from paco_fr.masking import REGION_INDEX, region_map

__all__ = ["hflip_landmarks", "landmarks68_from_five", "region_maps_from_landmarks", "unit_from_pixels"]

# iBUG 68 mirror permutation: point i of the flipped face is point HFLIP_68[i] of the original
HFLIP_68 = (
    list(range(16, -1, -1))  # jaw
    + list(range(26, 16, -1))  # brows swap
    + [27, 28, 29, 30]  # nose bridge
    + [35, 34, 33, 32, 31]  # nostrils
    + [45, 44, 43, 42, 47, 46]  # right eye <- left eye
    + [39, 38, 37, 36, 41, 40]  # left eye <- right eye
    + [54, 53, 52, 51, 50, 49, 48]  # outer lip, top
    + [59, 58, 57, 56, 55]  # outer lip, bottom
    + [64, 63, 62, 61, 60]  # inner lip, top
    + [67, 66, 65]  # inner lip, bottom
)
assert sorted(HFLIP_68) == list(range(68))

_GROUPS = {  # landmark index ranges of the components (as masking.region_map_from_landmarks)
    "right_brow": (17, 22), "left_brow": (22, 27), "right_eye": (36, 42), "left_eye": (42, 48),
    "nose": (27, 36), "mouth": (48, 68),
}
_CONTAIN_ORDER = ("nose", "mouth", "right_brow", "left_brow", "right_eye", "left_eye")  # low -> high priority


def hflip_landmarks(pts: torch.Tensor) -> torch.Tensor:
    """(..., 68, 2) unit coords of an image -> those of the image flipped left-right."""
    out = pts[..., HFLIP_68, :].clone()
    out[..., 0] = 1.0 - out[..., 0]
    return out


def _point_in_polygon(px: torch.Tensor, py: torch.Tensor, poly: torch.Tensor) -> torch.Tensor:
    """Even-odd rule over all edges at once; px, py: (N,) patch centres, poly: (B, P, 2) -> (B, N) bool."""
    x1, y1 = poly[..., 0:1], poly[..., 1:2]  # (B, P, 1)
    nxt = poly.roll(-1, dims=1)
    x2, y2 = nxt[..., 0:1], nxt[..., 1:2]
    cond = (y1 > py) != (y2 > py)  # (B, P, N)
    xint = (x2 - x1) * (py - y1) / (y2 - y1 + 1e-12) + x1
    return (cond & (px < xint)).to(torch.int32).sum(1) % 2 == 1


def _maps(pts: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    gh, gw = grid
    dev = pts.device
    ys, xs = torch.meshgrid((torch.arange(gh, device=dev, dtype=pts.dtype) + 0.5) / gh,
                            (torch.arange(gw, device=dev, dtype=pts.dtype) + 0.5) / gw, indexing="ij")
    px, py = xs.reshape(-1), ys.reshape(-1)  # (N,)
    B, N = pts.shape[0], px.shape[0]
    eye_r, eye_l = pts[:, 36:42].mean(1), pts[:, 42:48].mean(1)
    iod = (eye_l - eye_r).norm(dim=-1)  # (B,)
    brows = pts[:, 17:27]
    brow_y = brows[..., 1].mean(1)
    eye_y = (eye_r[:, 1] + eye_l[:, 1]) / 2
    lift = 1.6 * (eye_y - brow_y).clamp_min(0.02)
    forehead = brows.flip(1).clone()
    forehead[..., 1] = forehead[..., 1] - lift[:, None]
    inside = _point_in_polygon(px, py, torch.cat([pts[:, 0:17], forehead], 1))
    labels = torch.full((B, N), REGION_INDEX["background"], dtype=torch.long, device=dev)
    jaw_x = pts[:, 0:17, 0]
    cx = jaw_x.mean(1)
    half_w = (jaw_x.max(1).values - jaw_x.min(1).values) / 2
    top = forehead[..., 1].min(1).values - 0.6 * lift
    hair = (~inside & (py[None] < eye_y[:, None]) & ((px[None] - cx[:, None]).abs() < 1.35 * half_w[:, None])
            & (py[None] > top[:, None]))
    labels = torch.where(hair, torch.full_like(labels, REGION_INDEX["hair"]), labels)
    best_d = torch.full((B, N), float("inf"), dtype=pts.dtype, device=dev)
    best_g = torch.full((B, N), -1, dtype=torch.long, device=dev)
    for name, (a, b) in _GROUPS.items():
        dx = px[None, :, None] - pts[:, None, a:b, 0]  # (B, N, points)
        dy = py[None, :, None] - pts[:, None, a:b, 1]
        d = (dx * dx + dy * dy).min(2).values.sqrt()  # (B, N)
        thr = (0.28 if name == "mouth" else 0.22) * iod[:, None]
        ok = (d < best_d) & (d < thr)
        best_d = torch.where(ok, d, best_d)
        best_g = torch.where(ok, torch.full_like(best_g, REGION_INDEX[name]), best_g)
    face = torch.where(py[None] < brow_y[:, None], REGION_INDEX["forehead"], REGION_INDEX["jaw_cheeks"])
    face = torch.where(best_g >= 0, best_g, face)
    labels = torch.where(inside, face, labels)
    for name in _CONTAIN_ORDER:  # patches that contain a component's landmark get that component
        a, b = _GROUPS[name]
        cols = (pts[:, a:b, 0] * gw).long().clamp(0, gw - 1)  # truncation toward 0, as numpy astype(int)
        rows = (pts[:, a:b, 1] * gh).long().clamp(0, gh - 1)
        labels = labels.scatter(1, rows * gw + cols, REGION_INDEX[name])
    return labels


def region_maps_from_landmarks(pts: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """(B, 68, 2) landmarks in unit coords -> (B, gh*gw) region index per patch. Rows with any
    non-finite landmark get the canonical map."""
    pts = torch.as_tensor(pts)
    if pts.ndim != 3 or pts.shape[1:] != (68, 2):
        raise ValueError(f"region maps need landmarks of shape (B, 68, 2) in unit coordinates, got {tuple(pts.shape)}")
    known = torch.isfinite(pts).all(-1).all(-1)  # (B,)
    canon = region_map(grid).to(pts.device)[None].expand(pts.shape[0], -1)
    safe = torch.where(known[:, None, None], pts, torch.full_like(pts, 0.5)).double()
    maps = _maps(safe, grid)
    return torch.where(known[:, None], maps, canon)


def unit_from_pixels(pts, size: int) -> np.ndarray:
    """Pixel coords of a `size` crop (pixel centres at integers) -> unit coords."""
    return (np.asarray(pts, dtype=np.float64) + 0.5) / float(size)
