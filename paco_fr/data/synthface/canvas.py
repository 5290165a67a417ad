"""SynthFace's drawing surface: `Canvas` draws polygons, lines and ellipses into the RGB image and
the label map at once (same geometry, supersampled), with the closed / open B-spline smoothing and
the stroke polygons the face parts are drawn with."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw


def supersampling(size: int) -> int:
    """Supersampling factor: 3x at 64 px (192 px canvas), 2x from 96 px up, 4x only below 48 px."""
    return int(min(4, max(2, math.ceil(192 / size))))


_SPLINE_T: dict = {}


def _spline_t(k: int):
    t = _SPLINE_T.get(k)
    if t is None:
        t = np.linspace(0, 1, k, endpoint=False)[:, None, None]
        t = _SPLINE_T[k] = (t, t * t, t * t * t)
    return t


_SPLINE_M: dict = {}


def _closed_basis(n: int, k: int) -> np.ndarray:
    """(n * k, n) matrix: closed Catmull-Rom samples (k per segment) as weights of the n points."""
    m = _SPLINE_M.get((n, k))
    if m is None:
        t = np.linspace(0, 1, k, endpoint=False)
        w = 0.5 * np.stack([-t + 2 * t ** 2 - t ** 3, 2 - 5 * t ** 2 + 3 * t ** 3,
                            t + 4 * t ** 2 - 3 * t ** 3, -t ** 2 + t ** 3], 1)  # (k, 4): p0 p1 p2 p3
        m = np.zeros((n, k, n))
        for j in range(n):
            for c, off in enumerate((-1, 0, 1, 2)):
                m[j, :, (j + off) % n] += w[:, c]
        m = _SPLINE_M[(n, k)] = m.reshape(n * k, n)
    return m


def smooth_closed(p: np.ndarray, k: int = 4) -> np.ndarray:
    """Closed Catmull-Rom spline through p (n, 2), k samples per segment."""
    p = np.asarray(p, np.float64)
    return _closed_basis(len(p), k) @ p


def _open_basis(n: int, k: int) -> np.ndarray:
    """(k * (n - 1) + 1, n) matrix: open Catmull-Rom samples (ends extended linearly) + the last point."""
    m = _SPLINE_M.get((n, k, "open"))
    if m is None:
        ext = np.zeros((n + 2, n))  # ext = [2 p0 - p1, p..., 2 p[-1] - p[-2]] as weights of p
        ext[1:-1] = np.eye(n)
        ext[0, :2] = (2, -1)
        ext[-1, -2:] = (-1, 2)
        t = np.linspace(0, 1, k, endpoint=False)
        w = 0.5 * np.stack([-t + 2 * t ** 2 - t ** 3, 2 - 5 * t ** 2 + 3 * t ** 3,
                            t + 4 * t ** 2 - 3 * t ** 3, -t ** 2 + t ** 3], 1)
        m = np.zeros((n - 1, k, n + 2))
        for j in range(n - 1):
            m[j, :, j:j + 4] = w
        m = np.vstack([m.reshape(-1, n + 2) @ ext, np.eye(n)[-1:]])
        _SPLINE_M[(n, k, "open")] = m
    return m


def smooth_open(p: np.ndarray, k: int = 4) -> np.ndarray:
    p = np.asarray(p, np.float64)
    return _open_basis(len(p), k) @ p


def clamp_rgb(c) -> tuple[int, int, int]:
    r, g, b = c
    return int(min(255.0, max(0.0, r))), int(min(255.0, max(0.0, g))), int(min(255.0, max(0.0, b)))


def stroke_polygon(q: np.ndarray, w: float, closed: bool) -> list[float]:
    """Polygon (flat PIL coordinates) of a polyline q (n, 2) in pixels, width w: the points offset by
    +-w/2 along the mitred vertex normals (miter length capped at 2x). A closed line gives a ring:
    outer loop, bridge, inner loop back (PIL fills even-odd, so the bridge cancels)."""
    seg = (np.roll(q, -1, 0) if closed else q[1:]) - (q if closed else q[:-1])
    un = seg[:, ::-1] / np.maximum(np.hypot(seg[:, 0], seg[:, 1]), 1e-9)[:, None]
    un[:, 0] *= -1  # unit normal (-dy, dx) of each segment
    if closed:
        n_prev, n_next = np.roll(un, 1, 0), un
    else:
        n_prev, n_next = np.concatenate([un[:1], un]), np.concatenate([un, un[-1:]])
    m = n_prev + n_next
    off = m * ((0.5 * w) / np.maximum(1.0 + (n_prev * n_next).sum(1), 0.5))[:, None]
    a, b = q + off, q - off
    if closed:
        return np.concatenate([a, a[:1], b[:1], b[::-1]]).reshape(-1).tolist()
    return np.concatenate([a, b[::-1]]).reshape(-1).tolist()


class Canvas:
    def __init__(self, size: int, ss: int, rgb: Image.Image | None = None):
        self.size, self.ss, self.S = size, ss, size * ss
        self.rgb = rgb if rgb is not None else Image.new("RGB", (self.S, self.S))
        self.lab = Image.new("L", (self.S, self.S), 0)
        self.dr = ImageDraw.Draw(self.rgb)
        self.dl = ImageDraw.Draw(self.lab)

    def px(self, u: np.ndarray) -> list[tuple[float, float]]:
        q = np.asarray(u, np.float64).reshape(-1, 2) * self.S - 0.5
        return [tuple(r) for r in q.tolist()]

    def flat(self, u: np.ndarray) -> list[float]:
        """Pixel coordinates as a flat [x0, y0, x1, y1, ...] list (PIL accepts both forms)."""
        return (np.asarray(u, np.float64).reshape(-1) * self.S - 0.5).tolist()

    def poly(self, u, colour, label: int | None = None):
        pts = self.flat(u)
        if len(pts) < 6:
            return
        self.dr.polygon(pts, fill=clamp_rgb(colour))
        if label is not None:
            self.dl.polygon(pts, fill=label)

    def line(self, u, colour, width_u: float, closed: bool = False):
        """Polyline of width width_u (crop units), filled as one polygon so the width does not depend
        on the supersampling factor (PIL's wide lines take integer widths)."""
        q = np.asarray(u, np.float64).reshape(-1, 2) * self.S - 0.5
        self.dr.polygon(stroke_polygon(q, max(width_u * self.S, 1.0), closed), fill=clamp_rgb(colour))

    def ellipse(self, centre_u, rx_u, ry_u, colour, label: int | None = None):
        (cx, cy), = self.px(centre_u)
        rx, ry = max(rx_u * self.S, 0.5), max(ry_u * self.S, 0.5)
        box = [cx - rx, cy - ry, cx + rx, cy + ry]
        self.dr.ellipse(box, fill=clamp_rgb(colour))
        if label is not None:
            self.dl.ellipse(box, fill=label)

    def clipped(self, clip_u, draw_fn):
        """Run draw_fn(draw, to_px) on a crop of the RGB image, pasted back only inside clip_u."""
        pts = np.asarray(self.px(clip_u))
        x0, y0 = np.floor(pts.min(0)).astype(int) - 2
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 2
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, self.S), min(y1, self.S)
        if x1 - x0 < 2 or y1 - y0 < 2:
            return
        crop = self.rgb.crop((x0, y0, x1, y1))
        mask = Image.new("L", crop.size, 0)
        ImageDraw.Draw(mask).polygon([(x - x0, y - y0) for x, y in pts], fill=255)
        off = np.array([x0, y0], np.float64)

        def to_px(u):
            return np.asarray(u, np.float64).reshape(-1, 2) * self.S - 0.5 - off

        draw_fn(ImageDraw.Draw(crop), to_px)
        self.rgb.paste(crop, (x0, y0), mask)
