"""Pseudo-3-D face geometry: identity shape + expression -> 3-D points -> pose -> 2-D projection.

Points live in *centred unit* coordinates of the aligned crop (x, y) - 0.5 with a depth z (towards
the viewer). A frontal, neutral, mean identity reproduces `CANONICAL_68` exactly. Outline points
(jaw, skull, hair, hat) are treated as contours of a round head: on the side turning away from the
camera they slide to the silhouette, so a turned face shows the far cheek's outline. Everything is
rotated in 3-D (yaw, pitch, roll) and projected orthographically; landmarks and every drawn region
come from the same projected geometry.
"""

from __future__ import annotations

import numpy as np

from ..template import CANONICAL_68

C68 = CANONICAL_68 - 0.5
EYE_LEVEL = -0.07  # centred y of the eyes
ROT_CENTRE = np.array([0.0, 0.05, -0.12])


def zsurf(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Depth of the face surface (a flattened ellipsoid)."""
    return 0.30 * np.sqrt(np.clip(1.0 - (x / 0.42) ** 2 - (y / 0.62) ** 2, 0.0, None))


def with_z(xy: np.ndarray, dz: float | np.ndarray = 0.0) -> np.ndarray:
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    return np.column_stack((xy, zsurf(xy[:, 0], xy[:, 1]) + dz))


def contour3d(xy: np.ndarray, yaw_deg: float, z0: np.ndarray | float | None = None,
              ratio: float = 0.9) -> np.ndarray:
    """Outline points: on the far side of a yawed head, slide to the cross-section's silhouette."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    z0 = zsurf(xy[:, 0], xy[:, 1]) if z0 is None else np.broadcast_to(np.asarray(z0, np.float64), (len(xy),))
    psi = np.deg2rad(yaw_deg)
    s = np.sign(xy[:, 0])
    w = np.abs(xy[:, 0])
    d = ratio * w
    far = s * np.sin(psi) > 0
    t = np.where(far, np.arctan2(s * d * np.sin(psi), w * np.cos(psi)), 0.0)
    return np.column_stack((s * w * np.cos(t), xy[:, 1], z0 + d * np.sin(t)))


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, c = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rz @ rx @ ry


class Projector:
    """Centred 3-D points -> unit image coords of the crop."""

    def __init__(self, img: dict):
        self.r = rotation(img["yaw"], img["pitch"], img["roll"])
        self.scale = img["scale"]
        self.shift = np.asarray(img["shift"], dtype=np.float64)

    def __call__(self, p3: np.ndarray) -> np.ndarray:
        q = (np.asarray(p3, np.float64) - ROT_CENTRE) @ self.r.T + ROT_CENTRE
        return 0.5 + self.scale * q[:, :2] + self.shift

    def depth(self, p3: np.ndarray) -> np.ndarray:
        return ((np.asarray(p3, np.float64) - ROT_CENTRE) @ self.r.T + ROT_CENTRE)[:, 2]

    @property
    def foreshorten(self) -> np.ndarray:
        """Approximate x/y scale of a small frontal disc after rotation."""
        return self.scale * np.abs(np.array([self.r[0, 0], self.r[1, 1]]))


def jaw_xy(ident: dict, mouth_open: float) -> np.ndarray:
    s = np.linspace(0.0, np.pi, 17)
    jr, chin = ident["jaw_round"], ident["chin"]
    px, py = 0.85 + 0.2 * jr, 1.15 + 0.35 * jr
    half_w, depth = 0.40 * ident["face_width"], 0.525 * ident["face_length"]
    c, sn = np.cos(s), np.abs(np.sin(s))
    x = -half_w * np.sign(c) * np.abs(c) ** px * (1.0 - 0.12 * chin * sn ** 4)
    y = -0.10 + depth * sn ** py + 0.7 * mouth_open * sn ** 2
    return np.column_stack((x, y))


def shape_2d(ident: dict, img: dict) -> dict[str, np.ndarray]:
    """Frontal 2-D layout (centred unit coords) of landmarks and helper points."""
    d = img["deltas"]
    fl = ident["face_length"]
    pts = C68.copy()
    mouth_open = max(0.0, d.get("mouth_open", 0.0))
    pts[0:17] = jaw_xy(ident, mouth_open)
    # vertical stretch below the eyes
    low = slice(27, 68)
    pts[low, 1] = EYE_LEVEL + (pts[low, 1] - EYE_LEVEL) * fl
    # eyes
    open_f = max(0.05, ident["eye_height"] * (1.0 + d.get("eye_open", 0.0)))
    if img["eyes_closed"]:
        open_f = 0.06
    for sl, side in ((slice(36, 42), -1.0), (slice(42, 48), 1.0)):
        e = pts[sl]
        cen = e.mean(0)
        rel = e - cen
        half = np.abs(rel[:, 0]).max()
        rel[:, 0] *= ident["eye_width"]
        rel[:, 1] *= open_f
        rel[:, 1] += -ident["eye_tilt"] * (side * rel[:, 0] / half)
        if img["eyes_closed"]:
            rel[:, 1] += 0.006
        else:  # lower-lid raise (points 4, 5 of the eye), never above the upper lid
            rel[4:6, 1] = np.maximum(rel[4:6, 1] - d.get("lower_lid", 0.0), rel[[2, 1], 1] + 0.004)
        pts[sl] = cen + rel + np.array([side * ident["eye_spacing"], ident["eye_y"]])
    # brows: arch, height, expression (inner / outer ends)
    for sl, side in ((slice(17, 22), -1.0), (slice(22, 27), 1.0)):
        b = pts[sl]
        w_in = np.linspace(0, 1, 5) if side < 0 else np.linspace(1, 0, 5)  # 1 at the inner end
        arch = (ident["brow_arch"] - 0.5) * 0.03 * np.sin(np.pi * np.linspace(0.1, 0.9, 5))
        b[:, 1] += ident["brow_y"] - arch + d.get("brow_in", 0.0) * w_in + d.get("brow_out", 0.0) * (1 - w_in)
        b[:, 0] += side * ident["eye_spacing"] * 0.8 - side * d.get("brow_dx", 0.0) * w_in
        if img["eyes_closed"]:
            b[:, 1] += 0.004
        pts[sl] = b
    # nose
    n = pts[27:36]
    top = n[0].copy()
    n[:, 1] = top[1] + (n[:, 1] - top[1]) * ident["nose_length"]
    n[4:, 0] *= ident["nose_width"] * (1.0 + d.get("nose_w", 0.0))
    n[4:, 1] += d.get("nose_up", 0.0)
    n[3, 1] += d.get("nose_up", 0.0) * 0.5
    pts[27:36] = n
    # mouth
    m_out, m_in = pts[48:60].copy(), pts[60:68].copy()
    m_out[:, 1] += ident.get("mouth_y", 0.0)
    m_in[:, 1] += ident.get("mouth_y", 0.0)
    cen = np.array([0.0, m_out[:, 1].mean()])
    widen = ident["mouth_width"] * (1.0 + d.get("mouth_w", 0.0))
    half = np.abs(m_out[:, 0]).max()
    for arr in (m_out, m_in):
        arr[:, 0] = arr[:, 0] * widen
        arr[:, 1] += d.get("corner_dy", 0.0) * (np.abs(arr[:, 0]) / (half * widen)) ** 2
    thick = ident["lip_thick"] * (1.0 + d.get("lip_press", 0.0))
    up_in = np.interp(m_out[1:6, 0], m_in[[0, 1, 2, 3, 4], 0], m_in[[0, 1, 2, 3, 4], 1])
    m_out[1:6, 1] = up_in - (up_in - m_out[1:6, 1]) * thick
    lo_idx = [4, 5, 6, 7, 0]
    lo_in = np.interp(m_out[6:11, 0], m_in[lo_idx, 0][::-1], m_in[lo_idx, 1][::-1])
    m_out[6:11, 1] = lo_in + (m_out[6:11, 1] - lo_in) * thick * (1.0 + d.get("lower_lip", 0.0))
    ul = d.get("upper_lip", 0.0)
    m_out[1:6, 1] += ul
    m_in[1:4, 1] += ul * 0.8
    # opening: lower lip (inner 65-67, outer 55-59) drops
    m_in[5:8, 1] += mouth_open * np.array([0.7, 1.0, 0.7])
    m_out[6:11, 1] += mouth_open * np.array([0.6, 0.85, 1.0, 0.85, 0.6])
    m_out += cen * 0
    pts[48:60], pts[60:68] = m_out, m_in
    # forehead / skull arc from jaw 16 over the top to jaw 0 (exclusive)
    hw = abs(pts[0, 0])
    th = np.linspace(0, np.pi, 11)[1:-1]
    skull = np.column_stack((hw * np.cos(th), -0.10 - 0.37 * np.sin(th) ** 0.9))
    return {"pts": pts, "skull": skull, "hw": hw}


def build(ident: dict, img: dict) -> dict:
    """All projected geometry for one image (unit coords) + the 68 landmarks."""
    s2 = shape_2d(ident, img)
    pts, hw = s2["pts"], s2["hw"]
    yaw = img["yaw"]
    proj = Projector(img)
    p3 = with_z(pts)
    # depth offsets of features relative to the surface
    p3[27:31, 2] += np.array([0.015, 0.045, 0.075, 0.10])
    p3[31:36, 2] += np.array([0.03, 0.05, 0.06, 0.05, 0.03])
    p3[36:48, 2] -= 0.01
    p3[48:68, 2] += 0.015
    p3[0:17] = contour3d(pts[0:17], yaw)
    out = {"proj": proj, "p3": p3, "hw": hw, "shape2d": pts}
    out["lm"] = proj(p3)
    out["skull"] = proj(contour3d(s2["skull"], yaw))
    out["skull3"] = contour3d(s2["skull"], yaw)
    return out
