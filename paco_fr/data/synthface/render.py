"""Drawing one SynthFace image: PIL polygons at 2-4x supersampling for the RGB image and the LaPa
label map (same geometry), then a box-filter downsample for the image and a centre-sample for the
mask (hard labels), then lighting, texture, blur and noise at the output size."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from . import geometry as G
from .canvas import Canvas, clamp_rgb, smooth_closed, smooth_open, stroke_polygon, supersampling
from .identity import skin_colour
from .spec import CLS

BG, SKIN, L_BROW, R_BROW, L_EYE, R_EYE, NOSE, U_LIP, MOUTH, D_LIP, HAIR = range(11)
assert CLS["hair"] == HAIR and CLS["left_eye"] == L_EYE


def _field(rng: np.random.Generator, size: int, shape=(6, 6)) -> np.ndarray:
    """Smooth random field in [-1, 1] of (size, size)."""
    small = Image.fromarray(rng.uniform(-1, 1, shape).astype(np.float32), mode="F")
    return np.asarray(small.resize((size, size), Image.BICUBIC), dtype=np.float32)


def draw_creases(cv: Canvas, img: dict, pts: np.ndarray, P, skin: np.ndarray):
    """Expression creases on the skin (labelled skin): nasolabial folds, forehead lines, frown lines
    between the brows, nose-bridge wrinkles, chin-boss wrinkle. Strength = cue x intensity; drawn
    before hair, beard and glasses, which cover them."""
    d = img["deltas"]
    col = skin * 0.62
    naso = d.get("naso", 0.0)
    if naso > 0:
        for s_, wing, corner in ((-1, 31, 48), (1, 35, 54)):
            a = pts[wing] + [s_ * 0.035, -0.012]
            c = pts[corner] + [s_ * 0.03, 0.02]
            b = 0.5 * (a + c) + [s_ * 0.035, 0.0]
            cv.line(smooth_open(P(np.array([a, b, c]), 0.004), 3), col, 0.006 + 0.006 * naso)
    fh = d.get("forehead", 0.0)
    if fh > 0:
        top = min(pts[17:27, 1].min(), pts[19, 1], pts[24, 1])
        for k in range(3):
            y = top - 0.04 - 0.028 * k
            half = (0.13 + 0.03 * k) * (1.0 if fh > 0.7 else 0.6)
            xs = np.linspace(-half, half, 5)
            line = np.column_stack((xs, y - 0.012 * np.cos(xs / half * 1.4)))
            cv.line(smooth_open(P(line, 0.004), 3), col, 0.004 + 0.005 * fh)
    fr = d.get("frown", 0.0)
    if fr > 0:
        x_in = 0.5 * (pts[21, 0] - pts[22, 0])
        y0 = 0.5 * (pts[21, 1] + pts[22, 1])
        for s_ in (-1, 1):
            x = s_ * max(abs(x_in) * 0.35, 0.012)
            line = np.array([[x, y0 - 0.035], [x * 0.8, y0 + 0.01]])
            cv.line(P(line, 0.008), col, 0.004 + 0.006 * fr)
    nw = d.get("nose_wrinkle", 0.0)
    if nw > 0:
        y_br = pts[28, 1]
        for k in range(3):
            y = y_br - 0.02 + 0.016 * k
            line = np.array([[-0.03, y + 0.004], [0.0, y - 0.002], [0.03, y + 0.004]])
            cv.line(P(line, 0.05), col, 0.004 + 0.005 * nw)
    ch = d.get("chin", 0.0)
    if ch > 0:
        y = 0.5 * (pts[57, 1] + pts[8, 1])
        line = np.array([[-0.045, y + 0.006], [0.0, y - 0.006], [0.045, y + 0.006]])
        cv.line(smooth_open(P(line, 0.01), 3), col, 0.004 + 0.006 * ch)


def draw_background(cv: Canvas, rng: np.random.Generator):
    base = rng.uniform(0, 255, (2, 2, 3))
    # the gradient is rendered at the output size and upscaled by pixel replication: the box
    # downsample gives back exactly the output-size gradient, at a fraction of the cost. It becomes the
    # canvas itself (no blank canvas + paste).
    grad = Image.fromarray(base.astype(np.uint8), "RGB").resize((cv.size, cv.size), Image.BILINEAR)
    cv.rgb = grad.resize((cv.S, cv.S), Image.NEAREST) if cv.ss > 1 else grad
    cv.dr = ImageDraw.Draw(cv.rgb)
    for _ in range(int(rng.integers(2, 9))):
        c = clamp_rgb(rng.uniform(0, 255, 3))
        x, y = rng.uniform(-0.1, 1.1, 2) * cv.S
        w, h = rng.uniform(0.05, 0.45, 2) * cv.S
        kind = rng.integers(3)
        if kind == 0:
            cv.dr.ellipse([x - w, y - h, x + w, y + h], fill=c)
        elif kind == 1:
            cv.dr.rectangle([x - w, y - h, x + w, y + h], fill=c)
        else:
            x2, y2 = rng.uniform(-0.1, 1.1, 2) * cv.S
            cv.dr.line([(x, y), (x2, y2)], fill=c, width=int(rng.uniform(0.01, 0.05) * cv.S))


_LOWER_INNER = np.r_[0, 23:11:-1]


_GRID: dict = {}


def _grid(size: int):
    g = _GRID.get(size)
    if g is None:
        g = _GRID[size] = np.mgrid[0:size, 0:size].astype(np.float32)
    return g


def _ellipse_pts(cx, cy, rx, ry, n=16):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.column_stack((cx + rx * np.cos(t), cy + ry * np.sin(t)))


def _hair_shapes(ident: dict, img: dict, hw: float):
    """(back_hair_xy or None, front_hair_xy or None) in centred frontal coords."""
    style = img["hair_style"]
    if style == "bald":
        return None, None, 0
    th = np.linspace(0, np.pi, 15)
    pad = {"buzz": 0.012, "short": 0.04, "side": 0.045, "curly": 0.075, "long": 0.05, "bob": 0.055}[style]
    rx = hw + pad
    outer = np.column_stack((rx * np.cos(th), -0.10 - (0.37 + pad * 0.9) * np.sin(th) ** 0.9))
    if style == "curly":
        wob = 0.018 * np.sin(th * 11)
        outer = outer + np.column_stack((np.cos(th), -np.sin(th))) * wob[:, None]
    side_y = {"buzz": -0.06, "short": -0.02, "side": 0.0, "curly": 0.04, "long": 0.06, "bob": 0.05}[style]
    hl = -0.30 + ident["hairline"] + (0.03 if style == "buzz" else 0.0)
    part = 0.12 if style == "side" else 0.0
    hairline = np.array([
        [hw - 0.012, side_y], [hw - 0.03, -0.10], [hw - 0.07, -0.20], [0.17, hl + 0.025],
        [part, hl], [-0.17, hl + 0.03], [-(hw - 0.07), -0.20], [-(hw - 0.03), -0.10], [-(hw - 0.012), side_y]])
    if img["bangs"]:
        n = 9
        xs = np.linspace(hw - 0.06, -(hw - 0.06), n)
        ys = -0.215 + 0.012 * (np.arange(n) % 2) + 0.008 * np.cos(np.linspace(-1.3, 1.3, n))
        hairline = np.vstack([hairline[:2], np.column_stack((xs, ys)), hairline[-2:]])
    front = np.vstack([[[rx, side_y]], outer, [[-rx, side_y]], hairline[::-1]])
    back = None
    if style in ("long", "bob", "curly"):
        bottom = {"long": 0.50, "bob": 0.22, "curly": 0.28}[style]
        rb = rx + (0.04 if style != "bob" else 0.03)
        arc = np.column_stack((rb * np.cos(th), -0.10 - (0.37 + pad) * np.sin(th) ** 0.9))
        back = np.vstack([[[rb + 0.02, bottom]], arc, [[-rb - 0.02, bottom]], [[0.0, bottom - 0.05]]])
        if style == "curly":
            back = smooth_closed(back, 2)
            c = back.mean(0)
            ang = np.arctan2(back[:, 1] - c[1], back[:, 0] - c[0])
            back = back + 0.015 * np.sin(ang * 14)[:, None] * (back - c) / np.linalg.norm(back - c, axis=1,
                                                                                             keepdims=True)
    return back, front, len(hairline)


def render(ident: dict, img: dict, size: int, rng: np.random.Generator):
    """-> image uint8 (size, size, 3), mask uint8 (size, size), landmarks float32 (68, 2) in pixels,
    info dict (occlusion_frac, ...)."""
    ss = supersampling(size)
    cv = Canvas(size, ss)
    geo = G.build(ident, img)
    proj, pts, hw, lm = geo["proj"], geo["shape2d"], geo["hw"], geo["lm"]
    yaw = img["yaw"]
    skin = np.asarray(img["skin"], np.float64)
    draw_background(cv, rng)

    def P(xy, dz=0.0):  # frontal surface points -> image
        return proj(G.with_z(xy, dz))

    def PC(xy, z0=None, ratio=0.9):  # outline points -> image
        return proj(G.contour3d(xy, yaw, z0, ratio))

    # clothes + neck (background class, LaPa has no neck/cloth class)
    cloth = rng.uniform(10, 240, 3)
    sh = np.array([[-0.62, 0.95], [-0.45, 0.56], [-0.12, 0.47], [0.12, 0.47], [0.45, 0.56], [0.62, 0.95],
                   [0.62, 0.9], [-0.62, 0.9]])
    cv.poly(proj(np.column_stack((sh, np.full(len(sh), -0.25)))), cloth)
    neck = np.array([[-0.16, 0.2], [0.16, 0.2], [0.18, 0.58], [-0.18, 0.58]])
    cv.poly(proj(np.column_stack((neck, np.full(4, -0.12)))), skin * 0.78)

    back, front, n_hairline = _hair_shapes(ident, img, hw)
    hair_rgb = img["hair_rgb"]
    if back is not None:
        cv.poly(PC(back, z0=-0.12, ratio=1.0), hair_rgb * 0.85, HAIR)
    # ears (skin)
    for side in (-1, 1):
        e = _ellipse_pts(side * (hw + 0.01), 0.02, 0.04 * ident["ear_size"], 0.085 * ident["ear_size"], 12)
        e3 = np.column_stack((e, np.full(len(e), -0.02)))
        cv.poly(proj(e3), skin * 0.93, SKIN)
        inner = _ellipse_pts(side * (hw + 0.012), 0.025, 0.02 * ident["ear_size"], 0.05 * ident["ear_size"], 10)
        cv.line(proj(np.column_stack((inner, np.full(len(inner), -0.015)))), skin * 0.75, 0.006, closed=True)
    # face
    face = np.vstack([lm[0:17], geo["skull"]])  # jaw 0 -> 16, then over the skull back to 0
    cv.poly(smooth_closed(face, 3), skin, SKIN)
    draw_creases(cv, img, pts, P, skin)
    # beard (drawn on skin, labelled skin)
    beard_rgb = hair_rgb * 0.8
    if ident["beard"] in ("full", "goatee"):
        j = pts[0:17]
        if ident["beard"] == "full":
            outer = j[3:14]
            inner = np.array([pts[54] + [0.05, -0.01], pts[54] + [0.02, 0.05], pts[57] + [0, 0.035],
                              pts[48] + [-0.02, 0.05], pts[48] + [-0.05, -0.01]])
            b = np.vstack([outer, inner])
        else:
            b = np.vstack([j[6:11], pts[55] + [0.0, 0.015], pts[57] + [0, 0.012], pts[59] + [0.0, 0.015]])
        b3 = G.with_z(b, 0.005)
        b3[: (11 if ident["beard"] == "full" else 5)] = G.contour3d(b[: (11 if ident["beard"] == "full" else 5)], yaw)
        cv.poly(smooth_closed(proj(b3), 2), beard_rgb, None)
    if ident["beard"] in ("full", "mustache"):
        m = np.array([pts[48] + [-0.015, 0.005], pts[49] + [0, -0.012], pts[51] + [0, -0.014], pts[53] + [0, -0.012],
                      pts[54] + [0.015, 0.005], pts[53] + [0.0, -0.030], pts[33] + [0, 0.008],
                      pts[49] + [0.0, -0.030]])
        cv.poly(smooth_closed(P(m, 0.01), 2), beard_rgb, None)
    # front hair
    if front is not None:
        f3 = G.contour3d(front, yaw, z0=-0.02, ratio=1.0)
        f3[-n_hairline:] = G.with_z(front[-n_hairline:], 0.012)
        cv.poly(proj(f3), hair_rgb, HAIR)
    # eyes
    lid_col = skin * 0.9
    for sl, label in ((slice(36, 42), R_EYE), (slice(42, 48), L_EYE)):
        e = lm[sl]
        e2 = pts[sl]
        eye = smooth_closed(e, 4)
        if img["makeup"]:
            shadow = np.vstack([e2[[0, 1, 2, 3]], e2[[3, 2, 1, 0]] + [[0.0, -0.035]] * 4])
            shadow[4:, 1] -= 0.005
            cv.poly(smooth_closed(P(shadow, -0.005), 2), 0.55 * img["shadow_rgb"] + 0.45 * skin, None)
        if img["eyes_closed"]:
            cv.poly(eye, skin * 0.8, label)
            cv.line(smooth_open(e[[0, 5, 4, 3]], 3), (40, 30, 30), 0.008)
            continue
        cv.poly(eye, (232, 228, 222), label)
        c2 = e2.mean(0)
        hwid = (e2[:, 0].max() - e2[:, 0].min()) / 2
        ic2 = c2 + img["gaze"] * np.array([hwid * 0.5, 0.01])
        ic = P(ic2[None], -0.005)[0]
        fx, fy = proj.foreshorten
        r = 0.024 * ident["iris_size"]

        def draw_iris(d, to_px, ic=ic, fx=fx, fy=fy, r=r, e=e):
            (cx, cy), = to_px(ic)
            rx, ry = r * fx * cv.S, r * fy * cv.S
            d.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=clamp_rgb(img["iris"]))
            d.ellipse([cx - rx * 0.45, cy - ry * 0.45, cx + rx * 0.45, cy + ry * 0.45], fill=(15, 12, 12))
            d.ellipse([cx - rx * 0.35 + rx * 0.3, cy - ry * 0.55, cx - rx * 0.05 + rx * 0.3, cy - ry * 0.25],
                      fill=(245, 245, 245))
            upper = to_px(smooth_open(e[[0, 1, 2, 3]], 4))
            d.polygon(stroke_polygon(upper, max(0.006 * cv.S, 1.0), False), fill=(90, 70, 65))

        cv.clipped(eye, draw_iris)
        cv.line(smooth_open(e[[0, 1, 2, 3]], 4), (35, 25, 25), 0.007)
        cv.line(smooth_open(e[[3, 4, 5, 0]], 3), lid_col * 0.85, 0.003)
    # brows
    for sl, label, prof in ((slice(17, 22), R_BROW, [0.6, 0.85, 1.0, 1.0, 0.95]),
                            (slice(22, 27), L_BROW, [0.95, 1.0, 1.0, 0.85, 0.6])):
        b = pts[sl]
        t = 0.017 * ident["brow_thick"] * np.asarray(prof)[:, None]
        poly = np.vstack([b - [0, 1] * t * 0.55, (b + [0, 1] * t * 0.45)[::-1]])
        cv.poly(smooth_closed(P(poly, 0.006), 2), img["brow_rgb"], label)
    # nose
    n = pts[27:36]
    nose_poly = np.array([n[0] + [-0.03, 0.0], n[2] + [-0.034, 0], n[4] + [-0.028, -0.025],
                          n[4] + [-0.022, 0.0], n[5] + [0, 0.008], n[6] + [0, 0.008], n[7] + [0, 0.008],
                          n[8] + [0.022, 0.0], n[8] + [0.028, -0.025], n[2] + [0.034, 0], n[0] + [0.03, 0]])
    nz = np.array([0.012, 0.07, 0.03, 0.025, 0.04, 0.05, 0.04, 0.025, 0.03, 0.07, 0.012])
    n3 = G.with_z(nose_poly)
    n3[:, 2] += nz
    cv.poly(smooth_closed(proj(n3), 2), skin * 0.97, NOSE)
    az = np.deg2rad(img["illum_azimuth"])
    side_dark = 1 if math.cos(az) > 0 else -1
    ridge = G.with_z(np.array([n[1] + [side_dark * 0.022, 0], n[3] + [side_dark * 0.03, -0.02],
                               n[4 if side_dark < 0 else 8] + [side_dark * 0.005, 0.0]]))
    ridge[:, 2] += np.array([0.06, 0.07, 0.035])
    cv.line(proj(ridge), skin * 0.8, 0.006)
    tip = lm[30]
    fx, fy = proj.foreshorten
    for a, b in ((31, 32), (35, 34)):
        c = 0.5 * (lm[a] + lm[b]) + np.array([0, 0.002])
        cv.ellipse(c, 0.012 * fx * ident["nose_width"] * (1 + img["deltas"].get("nose_w", 0.0)), 0.006 * fy, skin * 0.42)
    cv.ellipse(tip, 0.012 * fx, 0.008 * fy, np.minimum(skin * 1.06, 255))
    # mouth
    lip = img["lip"]
    if img["lipstick"]:
        lip = 0.8 * img["lipstick_rgb"] + 0.2 * lip
    out_s = smooth_closed(lm[48:60], 3)  # 36 samples, 0 = corner 48, 18 = corner 54
    in_s = smooth_closed(lm[60:68], 3)  # 24 samples, 0 = corner 60, 12 = corner 64
    upper = np.vstack([out_s[0:19], in_s[0:13][::-1]])
    lower = np.vstack([out_s[18:], out_s[:1], in_s[_LOWER_INNER]])
    cv.poly(upper, lip * 0.92, U_LIP)
    cv.poly(lower, lip, D_LIP)
    gap = float(np.mean(lm[65:68, 1] - lm[61:64, 1][::-1]))
    if gap > 0.004:
        cv.poly(in_s, (70, 18, 24), MOUTH)
        rows = img.get("teeth", 1)
        if rows:
            teeth_h = min(gap * 0.5, 0.022)

            def draw_teeth(d, to_px, top=in_s[0:13], bottom=in_s[_LOWER_INNER[::-1]], teeth_h=teeth_h, rows=rows):
                t = np.vstack([top, top[::-1] + [0, teeth_h]])
                d.polygon([tuple(p) for p in to_px(t)], fill=(238, 234, 224))
                if rows > 1:  # lower row too
                    b = np.vstack([bottom, bottom[::-1] - [0, teeth_h * 0.7]])
                    d.polygon([tuple(p) for p in to_px(b)], fill=(226, 222, 212))

            cv.clipped(in_s, draw_teeth)
    cv.line(in_s[0:13], lip * 0.45, 0.004)
    # glasses (frames only; the mask keeps what is behind the thin frame)
    if img["glasses"]:
        gcol = img["glasses_rgb"]
        frames = []
        for sl in (slice(36, 42), slice(42, 48)):
            c2 = pts[sl].mean(0)
            if img["glasses_round"]:
                f = _ellipse_pts(c2[0], c2[1] + 0.005, 0.075, 0.058, 16)
            else:
                t = np.linspace(0, 2 * np.pi, 16, endpoint=False)
                f = np.column_stack((c2[0] + 0.082 * np.sign(np.cos(t)) * np.abs(np.cos(t)) ** 0.45,
                          c2[1] + 0.008 + 0.052 * np.sign(np.sin(t)) * np.abs(np.sin(t)) ** 0.45))
            f3 = G.with_z(f, 0.06)
            frames.append(proj(f3))
            cv.line(frames[-1], gcol, 0.011, closed=True)
        br = G.with_z(np.array([pts[39] + [0.035, -0.01], [0, pts[27, 1] - 0.008], pts[42] + [-0.035, -0.01]]), 0.07)
        cv.line(proj(br), gcol, 0.01)
        for side, sl in ((-1, slice(36, 42)), (1, slice(42, 48))):
            c2 = pts[sl].mean(0)
            arm = np.array([[c2[0] + side * 0.08, c2[1] - 0.01, G.zsurf(np.array([c2[0]]), np.array([c2[1]]))[0] + 0.05],
                            [side * (hw + 0.01), -0.02, -0.02]])
            cv.line(proj(arm), gcol, 0.009)
    # hat (background class)
    if img["hat"]:
        th = np.linspace(0, np.pi, 13)
        rx = hw + 0.07
        crown = np.column_stack((rx * np.cos(th), -0.2 - 0.32 * np.sin(th) ** 0.8))
        c3 = G.contour3d(np.vstack([[[rx, -0.17]], crown, [[-rx, -0.17]]]), yaw, z0=0.0, ratio=1.0)
        cv.poly(proj(c3), img["hat_rgb"], BG)
        band = np.array([[rx + 0.005, -0.15], [rx, -0.22], [-rx, -0.22], [-rx - 0.005, -0.15]])
        b3 = G.contour3d(band, yaw, z0=0.02, ratio=1.0)
        if img["hat_kind"] == 0:  # cap with a brim towards the viewer
            brim = np.array([[-0.30, -0.19, 0.22], [0.30, -0.19, 0.22], [0.24, -0.12, 0.42], [-0.24, -0.12, 0.42]])
            cv.poly(proj(b3), img["hat_rgb"] * 0.8, BG)
            cv.poly(proj(brim), img["hat_rgb"] * 0.7, BG)
        else:
            cv.poly(proj(b3), img["hat_rgb"] * 0.65, BG)
    # occluder: covers the face; LaPa labels what is visible -> background
    occ_frac = 0.0
    if img["occluded"]:
        before = np.asarray(cv.lab)
        occ = Image.new("L", (cv.S, cv.S), 0)
        do = ImageDraw.Draw(occ)
        anchors = [lm[36:48].mean(0), lm[48:68].mean(0), lm[30], lm[2], lm[14], lm[8], lm[17:27].mean(0)]
        c = anchors[int(rng.integers(len(anchors)))] + rng.normal(0, 0.04, 2)
        sz = rng.uniform(0.12, 0.26)
        kind = img["occluder_kind"]
        colour = rng.uniform(20, 235, 3)
        if kind == 0:  # hand-like blob: palm + fingers
            colour = skin_colour(rng.uniform(0, 1))
            ang = rng.uniform(0, 2 * np.pi)
            cpx = np.asarray(cv.px(c[None]))[0]
            r = sz * cv.S
            do.ellipse([cpx[0] - r * 0.55, cpx[1] - r * 0.5, cpx[0] + r * 0.55, cpx[1] + r * 0.5], fill=255)
            for k in range(4):
                a = ang + (k - 1.5) * 0.32
                tip_ = cpx + r * 1.25 * np.array([math.cos(a), math.sin(a)])
                base = cpx + r * 0.3 * np.array([math.cos(a), math.sin(a)])
                do.line([tuple(base), tuple(tip_)], fill=255, width=int(r * 0.28))
                do.ellipse([tip_[0] - r * 0.14, tip_[1] - r * 0.14, tip_[0] + r * 0.14, tip_[1] + r * 0.14], fill=255)
        elif kind == 1:  # rotated rectangle (phone, card)
            a = rng.uniform(0, np.pi)
            w, h = sz * rng.uniform(0.6, 1.2), sz * rng.uniform(0.3, 0.7)
            rot = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
            q = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) @ rot.T + c
            do.polygon(cv.px(q), fill=255)
        elif kind == 2:  # round object
            cpx = np.asarray(cv.px(c[None]))[0]
            r = sz * cv.S * 0.8
            do.ellipse([cpx[0] - r, cpx[1] - r * 0.8, cpx[0] + r, cpx[1] + r * 0.8], fill=255)
        else:  # band across the face (scarf, microphone, arm)
            a = rng.uniform(-0.5, 0.5)
            d_ = np.array([math.cos(a), math.sin(a)])
            do.line(cv.px(np.array([c - d_ * 0.6, c + d_ * 0.6])), fill=255, width=int(sz * 0.7 * cv.S))
        cv.rgb.paste(clamp_rgb(colour), (0, 0), occ)
        cv.lab.paste(BG, (0, 0), occ)
        occm = np.asarray(occ) > 0
        face_px = (before > 0) & (before != HAIR)
        occ_frac = float((face_px & occm).sum() / max(1, face_px.sum()))

    # ---- downsample: box filter for the image, centre sample for hard labels
    s = cv.ss
    rgb = np.asarray(cv.rgb.reduce(s), dtype=np.float32)  # exact s x s block mean
    lab = np.asarray(cv.lab)[s // 2::s, s // 2::s].copy()
    # ---- texture (skin mottling, hair strands) and illumination, as one per-pixel gain
    skin_m = lab == SKIN
    tex = _field(rng, size, (8, 8)) * 0.05 + rng.normal(0, 0.015, (size, size)).astype(np.float32)
    gain = 1 + tex * skin_m
    hair_m = lab == HAIR
    if hair_m.any():
        strands = np.asarray(Image.fromarray(rng.uniform(-1, 1, (6, 40)).astype(np.float32), "F")
                             .resize((size, size), Image.BILINEAR), dtype=np.float32)
        gain *= 1 + (0.22 * strands) * hair_m
    # directional shading across the head + ambient level and colour tint
    yy, xx = _grid(size)
    cen = lm[27:36].mean(0) * size
    rx_ = max(hw * size * 1.1, 1.0)
    dx, dy = (xx - np.float32(cen[0])) / np.float32(rx_), (yy - np.float32(cen[1])) / np.float32(rx_ * 1.3)
    az = np.deg2rad(img["illum_azimuth"])
    g = np.clip(dx * np.float32(math.cos(az)) + dy * np.float32(math.sin(az)), -1.2, 1.2)
    near = np.exp(-(dx * dx + dy * dy) / np.float32(1.5))
    fg = (lab > 0) * np.float32(0.7) + np.float32(0.3)
    st = np.float32(img["illum_strength"])
    shade = 1.0 - st * np.maximum(g, 0) * (0.4 + 0.6 * near) * fg + (0.25 * st) * np.maximum(-g, 0) * near
    gain *= shade * np.float32(img["ambient"])
    rgb *= gain[..., None]
    rgb *= np.asarray(img["wb"], np.float32)  # camera white balance
    np.clip(rgb, 0, 255, out=rgb)
    if abs(img["gamma"] - 1.0) > 1e-3:  # camera tone curve
        rgb = np.float32(255.0) * (rgb * np.float32(1 / 255.0)) ** np.float32(img["gamma"])
    if img["blur_sigma"] > 0:
        out = Image.fromarray(rgb.astype(np.uint8), "RGB").filter(ImageFilter.GaussianBlur(img["blur_sigma"]))
        image = np.asarray(out)
    else:
        image = rgb.astype(np.uint8)
    if img["noise_std"] > 0:
        arr = image + rng.normal(0, img["noise_std"], image.shape).astype(np.float32)
        image = np.clip(np.rint(arr), 0, 255).astype(np.uint8)
    landmarks = (lm * size - 0.5).astype(np.float32)
    # frontal inner-lip gap (crop units, pose-free): the Mouth_Slightly_Open label
    mouth_gap = float(np.mean(pts[65:68, 1] - pts[61:64, 1][::-1]))
    return image, lab.astype(np.uint8), landmarks, {"occlusion_frac": occ_frac, "mouth_gap": mouth_gap}
