"""Patch masking strategies (a small registry) and the facial-region map of the aligned grid.

Every strategy returns a bool mask (B, N) (True = selected/masked patch, row-major over the
(gh, gw) patch grid) with *exactly* round(ratio * N) True per sample, so that every objective
(MAE drops a fixed number of tokens per sample) can use any strategy.

- `random`: uniform random patches (SimMIM / MAE).
- `block`: BEiT blockwise masking: random rectangles (area >= 4 patches, aspect ratio in
  [0.3, 1/0.3]) until the target count; capped so it never overshoots, then topped up.
- `region`: structured facial-region masking on the canonical aligned-face grid. Regions
  (`REGIONS`) are derived from `paco_fr.data.template.CANONICAL_68` for any grid size
  (`region_map`). Rule `whole_then_fill` (default): visit the regions present on the grid in
  random order and mask a region whole whenever it still fits under the target count; then fill
  to the target with patches 4-adjacent to the chosen patches (fill=`adjacent`; random among
  them, random anywhere if none is left) or uniformly at random (fill=`random`). Rule
  `partial_last`: like whole_then_fill, but the first region that does not fit is masked
  partially (its patches in random order) before filling. With `regions=` (B, N) every sample
  uses its own map (paco_fr.region_maps: from that face's landmarks), so the masked regions
  follow posed faces.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from paco_fr.data.template import CANONICAL_68

REGIONS = (
    "background",
    "hair",
    "forehead",
    "right_brow",
    "left_brow",
    "right_eye",
    "left_eye",
    "nose",
    "mouth",
    "jaw_cheeks",
)
REGION_INDEX = {r: i for i, r in enumerate(REGIONS)}


def _point_in_polygon(px: np.ndarray, py: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd rule, vectorised over points."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(poly)
    for i in range(n):
        x1, y1 = poly[i]
        x2, y2 = poly[(i + 1) % n]
        cond = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            xint = (x2 - x1) * (py - y1) / (y2 - y1 + 1e-12) + x1
        inside ^= cond & (px < xint)
    return inside


def region_map_from_landmarks(pts68: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """Label every patch of a (gh, gw) grid over the unit square with a region index.

    pts68: (68, 2) landmarks in unit coordinates [0, 1] (iBUG order). Rules (in order):
    1. a face polygon = jaw line (0-16) closed over a forehead line (the brows raised by 1.6x the
       brow-to-eye distance); outside it: `hair` above the eye line within 1.35x the face
       half-width of the face centre and below the top margin, else `background`;
    2. inside the face: the nearest landmark group among brows, eyes, nose, mouth if its
       distance is below 0.22 x inter-ocular distance (0.28 for the mouth), otherwise
       `forehead` above the brow line and `jaw_cheeks` below;
    3. every patch that contains a landmark of eyes / brows / mouth / nose gets that group
       (priority eyes > brows > mouth > nose), so region masks always cover their landmarks.
    """
    gh, gw = grid
    pts = np.asarray(pts68, dtype=np.float64)
    ys, xs = np.meshgrid((np.arange(gh) + 0.5) / gh, (np.arange(gw) + 0.5) / gw, indexing="ij")
    px, py = xs.ravel(), ys.ravel()
    groups = {
        "right_brow": pts[17:22],
        "left_brow": pts[22:27],
        "right_eye": pts[36:42],
        "left_eye": pts[42:48],
        "nose": pts[27:36],
        "mouth": pts[48:68],
    }
    eye_r, eye_l = pts[36:42].mean(0), pts[42:48].mean(0)
    iod = float(np.linalg.norm(eye_l - eye_r))
    brows = pts[17:27]
    brow_y = brows[:, 1].mean()
    eye_y = (eye_r[1] + eye_l[1]) / 2
    lift = 1.6 * max(eye_y - brow_y, 0.02)
    forehead = brows[::-1].copy()
    forehead[:, 1] -= lift
    face_poly = np.concatenate([pts[0:17], forehead], 0)
    inside = _point_in_polygon(px, py, face_poly)
    labels = np.full(px.shape, REGION_INDEX["background"], dtype=np.int64)
    cx = pts[0:17, 0].mean()
    half_w = (pts[0:17, 0].max() - pts[0:17, 0].min()) / 2
    top = forehead[:, 1].min() - 0.6 * lift
    hair = (~inside) & (py < eye_y) & (np.abs(px - cx) < 1.35 * half_w) & (py > top)
    labels[hair] = REGION_INDEX["hair"]
    # nearest facial component inside the face
    best_d = np.full(px.shape, np.inf)
    best_g = np.full(px.shape, -1, dtype=np.int64)
    for name, gp in groups.items():
        d = np.sqrt(((np.stack([px, py], 1)[:, None, :] - gp[None]) ** 2).sum(-1)).min(1)
        thr = (0.28 if name == "mouth" else 0.22) * iod
        ok = (d < best_d) & (d < thr)
        best_d = np.where(ok, d, best_d)
        best_g = np.where(ok, REGION_INDEX[name], best_g)
    face_lbl = np.where(py < brow_y, REGION_INDEX["forehead"], REGION_INDEX["jaw_cheeks"])
    face_lbl = np.where(best_g >= 0, best_g, face_lbl)
    labels[inside] = face_lbl[inside]
    # landmark-containing patches (lowest priority first, so higher priority overwrites)
    for name in ("nose", "mouth", "right_brow", "left_brow", "right_eye", "left_eye"):
        gp = groups[name]
        cols = np.clip((gp[:, 0] * gw).astype(int), 0, gw - 1)
        rows = np.clip((gp[:, 1] * gh).astype(int), 0, gh - 1)
        labels[rows * gw + cols] = REGION_INDEX[name]
    return labels


@lru_cache(maxsize=64)
def _region_map_cached(gh: int, gw: int) -> np.ndarray:
    return region_map_from_landmarks(np.asarray(CANONICAL_68), (gh, gw))


def region_map(grid: tuple[int, int]) -> torch.Tensor:
    """(N,) long tensor: region index of every patch of the canonical aligned-face grid."""
    return torch.from_numpy(_region_map_cached(int(grid[0]), int(grid[1])).copy())


def num_to_mask(n: int, ratio: float) -> int:
    return int(min(n, max(0, round(ratio * n))))


def _neighbours(mask: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """4-adjacency dilation of (B, N) bool masks, minus the mask itself."""
    gh, gw = grid
    m = mask.view(-1, gh, gw)
    d = torch.zeros_like(m)
    d[:, 1:] |= m[:, :-1]
    d[:, :-1] |= m[:, 1:]
    d[:, :, 1:] |= m[:, :, :-1]
    d[:, :, :-1] |= m[:, :, 1:]
    return (d & ~m).view(mask.shape)


def fill_to_count(mask: torch.Tensor, target: int, grid: tuple[int, int], fill: str = "adjacent",
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """Top up (or trim at random) every row of `mask` to exactly `target` True entries.
    fill=adjacent prefers patches 4-adjacent to the current mask (random among them)."""
    mask = mask.clone()
    B, N = mask.shape
    count = mask.sum(1)
    # trim overshoot (never happens for the built-in rules, kept for safety)
    if (count > target).any():
        score = torch.rand(B, N, generator=generator, device=mask.device)
        score = score.masked_fill(~mask, 2.0)
        rank = score.argsort(1).argsort(1)
        drop = (rank < (count - target).clamp(min=0)[:, None]) & mask
        mask &= ~drop
        count = mask.sum(1)
    need = (target - count).clamp(min=0)
    if int(need.max()) == 0:
        return mask
    if fill == "adjacent":
        # grow ring by ring so that the fill stays connected to the chosen regions
        for _ in range(max(grid)):
            need = (target - mask.sum(1)).clamp(min=0)
            if int(need.max()) == 0:
                break
            ring = _neighbours(mask, grid)
            if not ring.any():
                break
            score = torch.rand(B, N, generator=generator, device=mask.device)
            score = score.masked_fill(~ring, -1.0)
            rank = (-score).argsort(1).argsort(1)
            mask |= (rank < need[:, None]) & ring
    need = (target - mask.sum(1)).clamp(min=0)
    if int(need.max()) > 0:
        score = torch.rand(B, N, generator=generator, device=mask.device).masked_fill(mask, -1.0)
        rank = (-score).argsort(1).argsort(1)
        mask |= (rank < need[:, None]) & ~mask
    return mask


def random_mask(batch: int, grid: tuple[int, int], ratio: float, device=None, generator=None, **_) -> torch.Tensor:
    n = grid[0] * grid[1]
    k = num_to_mask(n, ratio)
    noise = torch.rand(batch, n, generator=generator, device=device)
    rank = noise.argsort(1).argsort(1)
    return rank < k


def block_mask(batch: int, grid: tuple[int, int], ratio: float, device=None, generator=None,
               fill: str = "adjacent", min_block: int = 4, **_) -> torch.Tensor:
    gh, gw = grid
    n = gh * gw
    target = num_to_mask(n, ratio)
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator).item())
    rng = np.random.default_rng(seed)
    out = np.zeros((batch, gh, gw), dtype=bool)
    log_r = (np.log(0.3), np.log(1 / 0.3))
    for b in range(batch):
        m = out[b]
        count = 0
        tries = 0
        while count < target and tries < 200:
            tries += 1
            remaining = target - count
            if remaining < min_block:
                break
            area = rng.uniform(min_block, remaining)
            aspect = np.exp(rng.uniform(*log_r))
            h = int(round(np.sqrt(area * aspect)))
            w = int(round(np.sqrt(area / aspect)))
            if h < 1 or w < 1 or h > gh or w > gw:
                continue
            top = rng.integers(0, gh - h + 1)
            left = rng.integers(0, gw - w + 1)
            new = (~m[top:top + h, left:left + w]).sum()
            if 0 < new <= remaining:
                m[top:top + h, left:left + w] = True
                count += int(new)
    mask = torch.from_numpy(out.reshape(batch, n)).to(device)
    return fill_to_count(mask, target, grid, fill=fill, generator=generator)


def region_mask(batch: int, grid: tuple[int, int], ratio: float, device=None, generator=None,
                fill: str = "adjacent", region_rule: str = "whole_then_fill", regions: torch.Tensor | None = None,
                **_) -> torch.Tensor:
    """`regions`: None (the canonical map), one (N,) map for every sample, or (B, N) per-image maps
    (paco_fr.region_maps: each face's own landmarks)."""
    n = grid[0] * grid[1]
    target = num_to_mask(n, ratio)
    if regions is not None and regions.ndim == 2:
        return _region_mask_per_image(regions.to(device), target, grid, fill, region_rule, generator)
    rmap = (region_map(grid) if regions is None else regions).to(device)
    present = torch.unique(rmap)
    onehot = rmap[None, :] == present[:, None]  # (R, N)
    sizes = onehot.sum(1)  # (R,)
    R = len(present)
    order = torch.rand(batch, R, generator=generator, device=device).argsort(1)  # (B, R)
    mask = torch.zeros(batch, n, dtype=torch.bool, device=device)
    count = torch.zeros(batch, dtype=torch.long, device=device)
    blocked = torch.zeros(batch, dtype=torch.bool, device=device)
    for j in range(R):
        r = order[:, j]
        size = sizes[r]
        fits = (count + size <= target) & ~blocked
        mask |= onehot[r] & fits[:, None]
        count = count + size * fits
        if region_rule == "partial_last":
            partial = ~fits & ~blocked & (count < target)
            if partial.any():
                sc = torch.rand(batch, n, generator=generator, device=device).masked_fill(~onehot[r], -1.0)
                rank = (-sc).argsort(1).argsort(1)
                add = (rank < (target - count)[:, None]) & onehot[r] & partial[:, None]
                mask |= add
                count = mask.sum(1)
                blocked |= partial
        elif region_rule != "whole_then_fill":
            raise ValueError(f"unknown region_rule {region_rule!r}")
    return fill_to_count(mask, target, grid, fill=fill, generator=generator)


def _region_mask_per_image(regions: torch.Tensor, target: int, grid: tuple[int, int], fill: str, region_rule: str,
                           generator=None) -> torch.Tensor:
    """region_mask's rules with one map per sample: regions (B, N) -> bool (B, N). Every sample
    visits the region ids 0..len(REGIONS)-1 in its own random order (absent ones add nothing)."""
    if region_rule not in ("whole_then_fill", "partial_last"):
        raise ValueError(f"unknown region_rule {region_rule!r}")
    B, n = regions.shape
    dev = regions.device
    R = len(REGIONS)
    onehot = regions[:, None, :] == torch.arange(R, device=dev)[None, :, None]  # (B, R, N)
    sizes = onehot.sum(2)  # (B, R)
    order = torch.rand(B, R, generator=generator, device=dev).argsort(1)
    mask = torch.zeros(B, n, dtype=torch.bool, device=dev)
    count = torch.zeros(B, dtype=torch.long, device=dev)
    blocked = torch.zeros(B, dtype=torch.bool, device=dev)
    rows = torch.arange(B, device=dev)
    for j in range(R):
        r = order[:, j]
        oh, size = onehot[rows, r], sizes[rows, r]
        fits = (count + size <= target) & ~blocked
        mask |= oh & fits[:, None]
        count = count + size * fits
        if region_rule == "partial_last":
            partial = ~fits & ~blocked & (count < target)
            if partial.any():
                sc = torch.rand(B, n, generator=generator, device=dev).masked_fill(~oh, -1.0)
                rank = (-sc).argsort(1).argsort(1)
                mask |= (rank < (target - count)[:, None]) & oh & partial[:, None]
                count = mask.sum(1)
                blocked |= partial
    return fill_to_count(mask, target, grid, fill=fill, generator=generator)


MASKERS = {"random": random_mask, "block": block_mask, "region": region_mask}


def make_mask(strategy: str, batch: int, grid: tuple[int, int], ratio: float, device=None, generator=None,
              **options) -> torch.Tensor:
    """Dispatch to a registered strategy; returns bool (B, N) with exactly round(ratio*N) True."""
    if strategy not in MASKERS:
        raise ValueError(f"unknown mask strategy {strategy!r}; known: {sorted(MASKERS)}")
    return MASKERS[strategy](batch, grid, ratio, device=device, generator=generator, **options)


def region_pool_matrix(grid: tuple[int, int], device=None) -> tuple[torch.Tensor, list[str]]:
    """(N, R') averaging matrix over the regions present on the grid, and their names."""
    rmap = region_map(grid)
    present = torch.unique(rmap)
    onehot = (rmap[:, None] == present[None, :]).float()
    onehot = onehot / onehot.sum(0, keepdim=True)
    return onehot.to(device), [REGIONS[i] for i in present.tolist()]


def region_pool_weights(regions: torch.Tensor, num_regions: int = len(REGIONS)) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image region averaging: regions (B, N) (or (N,), the same map for all) -> weights
    (B, N, R) whose columns average the patches of each region, and present (B, R) bool."""
    onehot = (regions[..., None] == torch.arange(num_regions, device=regions.device)).float()  # (B?, N, R)
    counts = onehot.sum(-2, keepdim=True)
    return onehot / counts.clamp_min(1.0), counts.squeeze(-2) > 0
