"""The canonical aligned-face frame shared by SynthFace, the benchmark and pre-training.

Coordinates
-----------
`CANONICAL_68` is in *unit* coordinates of the aligned square crop: (0, 0) is the top-left corner
of the image, (1, 1) the bottom-right corner. Pixel coordinates used everywhere else in the project
put pixel centres at integers (numpy indexing: `img[round(y), round(x)]`), so for a crop of
`size` pixels: ``px = unit * size - 0.5``.

Points follow the iBUG/300W 68-point order. "Right"/"left" are the *subject's*: the right eye
(36-41) appears on the image's left side in a frontal face.
"""

from __future__ import annotations

import numpy as np

IBUG_GROUPS: dict[str, list[int]] = {
    "jaw": list(range(0, 17)),
    "right_brow": list(range(17, 22)),
    "left_brow": list(range(22, 27)),
    "nose": list(range(27, 36)),
    "right_eye": list(range(36, 42)),
    "left_eye": list(range(42, 48)),
    "outer_lip": list(range(48, 60)),
    "inner_lip": list(range(60, 68)),
}


def _build_canonical_68() -> np.ndarray:
    pts = np.zeros((68, 2), dtype=np.float64)
    # jaw: a rounded (super-elliptic) contour from the face's right temple-level (image left),
    # down around the chin, up to its left side (image right)
    s = np.linspace(0.0, np.pi, 17)
    cx, top, half_w, depth = 0.5, 0.40, 0.40, 0.525
    c, sn = np.cos(s), np.sin(s)
    pts[0:17, 0] = cx - half_w * np.sign(c) * np.abs(c) ** 0.85
    pts[0:17, 1] = top + depth * np.abs(sn) ** 1.15
    # brows (right brow 17-21 from its outer end to its inner end, left brow mirrored)
    right_brow = np.array([[0.18, 0.345], [0.235, 0.315], [0.295, 0.305], [0.355, 0.310], [0.415, 0.325]])
    pts[17:22] = right_brow
    pts[22:27] = np.c_[1.0 - right_brow[::-1, 0], right_brow[::-1, 1]]
    # nose bridge 27-30 (30 = tip) and nostrils 31-35
    pts[27:31] = [[0.5, 0.425], [0.5, 0.490], [0.5, 0.555], [0.5, 0.615]]
    pts[31:36] = [[0.44, 0.650], [0.47, 0.660], [0.5, 0.665], [0.53, 0.660], [0.56, 0.650]]
    # right eye 36-41: outer corner, upper lid (2), inner corner, lower lid (2)
    right_eye = np.array([[0.265, 0.432], [0.305, 0.410], [0.360, 0.408], [0.405, 0.432],
                          [0.360, 0.450], [0.305, 0.452]])
    pts[36:42] = right_eye
    # left eye 42-47: inner corner, upper lid (2), outer corner, lower lid (2) (mirror of the right)
    mirror = [3, 2, 1, 0, 5, 4]
    pts[42:48] = np.c_[1.0 - right_eye[mirror, 0], right_eye[mirror, 1]]
    # outer lip 48-59 (48, 54 = mouth corners), inner lip 60-67
    pts[48:60] = [[0.385, 0.780], [0.420, 0.757], [0.465, 0.745], [0.5, 0.750], [0.535, 0.745],
                  [0.580, 0.757], [0.615, 0.780], [0.580, 0.810], [0.540, 0.826], [0.5, 0.830],
                  [0.460, 0.826], [0.420, 0.810]]
    # inner lip of a closed mouth: upper and lower inner contours (nearly) coincide
    pts[60:68] = [[0.400, 0.780], [0.455, 0.779], [0.5, 0.780], [0.545, 0.779], [0.600, 0.780],
                  [0.545, 0.782], [0.5, 0.783], [0.455, 0.782]]
    return pts


CANONICAL_68: np.ndarray = _build_canonical_68()
CANONICAL_68.setflags(write=False)


def five_from_68(pts: np.ndarray) -> np.ndarray:
    """(..., 68, 2) -> (..., 5, 2): right-eye centre, left-eye centre, nose tip, right and left
    mouth corners (the usual 5-point alignment set, in this order)."""
    pts = np.asarray(pts)
    return np.stack([
        pts[..., 36:42, :].mean(-2),
        pts[..., 42:48, :].mean(-2),
        pts[..., 30, :],
        pts[..., 48, :],
        pts[..., 54, :],
    ], axis=-2)


FIVE_FROM_68 = five_from_68  # alias used in docs/ARCHITECTURE.md
CANONICAL_5: np.ndarray = five_from_68(CANONICAL_68)
CANONICAL_5.setflags(write=False)


def similarity_from_points(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity (rotation, uniform scale, translation; Umeyama 1991) mapping
    `src` (N, 2) onto `dst` (N, 2). Returns the 2x3 matrix M with ``dst ~ M[:, :2] @ p + M[:, 2]``."""
    src = np.asarray(src, dtype=np.float64).reshape(-1, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(-1, 2)
    if src.shape != dst.shape or len(src) < 2:
        raise ValueError(f"need matching point sets of >= 2 points, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s0, d0 = src - mu_s, dst - mu_d
    var_s = (s0 ** 2).sum() / len(src)
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    e = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        e[1, 1] = -1.0
    rot = u @ e @ vt
    scale = float(np.trace(np.diag(sig) @ e) / var_s) if var_s > 0 else 1.0
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - m[:, :2] @ mu_s
    return m


def transform_points(pts: np.ndarray, m: np.ndarray) -> np.ndarray:
    """Apply a 2x3 affine matrix to points (..., 2)."""
    pts = np.asarray(pts, dtype=np.float64)
    m = np.asarray(m, dtype=np.float64)
    return pts @ m[:, :2].T + m[:, 2]


def invert_affine(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    a_inv = np.linalg.inv(m[:, :2])
    return np.c_[a_inv, -a_inv @ m[:, 2]]


def canonical_5_pixels(size: int) -> np.ndarray:
    """CANONICAL_5 in pixel coordinates (pixel centres at integers) of a `size` crop."""
    return CANONICAL_5 * size - 0.5


def align_face(image: np.ndarray, pts5: np.ndarray, size: int, order: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Warp `image` (uint8 HxWxC or HxW) so its 5 points land on `CANONICAL_5` in a `size` crop.

    Returns (aligned uint8 image (size, size[, C]), 2x3 matrix mapping original pixel coords to
    aligned pixel coords). Pixels from outside the source are black.
    """
    # lazy: scipy only when a face is warped; the templates stay numpy-only
    from scipy import ndimage

    img = np.asarray(image)
    m = similarity_from_points(np.asarray(pts5, dtype=np.float64), canonical_5_pixels(size))
    inv = invert_affine(m)  # aligned (x, y) -> original (x, y)
    # scipy works in (row, col) = (y, x) index order
    mat = np.array([[inv[1, 1], inv[1, 0]], [inv[0, 1], inv[0, 0]]])
    offset = np.array([inv[1, 2], inv[0, 2]])
    chans = img[..., None] if img.ndim == 2 else img
    out = np.empty((size, size, chans.shape[2]), dtype=np.float64)
    for c in range(chans.shape[2]):
        out[..., c] = ndimage.affine_transform(chans[..., c].astype(np.float64), mat, offset=offset,
                                               output_shape=(size, size), order=order, mode="constant")
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return (out[..., 0] if img.ndim == 2 else out), m


def landmarks68_from_five(pts5) -> np.ndarray:
    """(5, 2) alignment points (right eye, left eye, nose tip, right / left mouth corner; unit
    coords) -> (68, 2): the least-squares affine map CANONICAL_5 -> pts5 applied to CANONICAL_68."""
    dst = np.asarray(pts5, dtype=np.float64).reshape(5, 2)
    src = np.c_[np.asarray(CANONICAL_5), np.ones(5)]  # (5, 3)
    a, *_ = np.linalg.lstsq(src, dst, rcond=None)  # (3, 2)
    return np.c_[np.asarray(CANONICAL_68), np.ones(68)] @ a
