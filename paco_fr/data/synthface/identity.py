"""Sampling of identity parameters (fixed per person) and per-image parameters.

An identity is a fixed set of *shape* parameters (face shape, eye / brow / nose / mouth geometry and
their classes, hair style, beard, glasses / make-up habits). Every image of the identity re-uses them
and draws its own expression (and intensity), pose, lighting, accessories, nuisances and - since
generator 2.0 - its own *colours*: skin tone, hair colour (dye), iris, lips, make-up, plus a
white-balance / gamma jitter, so that identity can only be read from shape, never from colour.

Attributes that were thresholds on continuous parameters are drawn as discrete classes, each class
sampled from a range that keeps a margin around the threshold (`attributes_of` in dataset.py).
"""

from __future__ import annotations

import numpy as np

from .spec import (
    EXPR_INTENSITY_RANGE,
    EXPRESSIONS,
    EYESHADOW_COLOURS,
    HAIR_COLOURS,
    HAIR_DYES,
    IRIS_COLOURS,
    LIPSTICK_COLOURS,
    OTHER_TONE_RANGE,
    PALE_TONE_RANGE,
    SKIN_RAMP,
)

_MALE_STYLES = (("bald", 0.08), ("buzz", 0.27), ("short", 0.35), ("side", 0.18), ("curly", 0.12))
_FEMALE_STYLES = (("long", 0.42), ("bob", 0.22), ("side", 0.1), ("curly", 0.16), ("short", 0.1))
# per image: black, brown, blond, gray, red (labelled or not) and unlabelled dyes
_HAIR_P = {"black": 0.27, "brown": 0.25, "blond": 0.17, "gray": 0.11, "red": 0.10,
           "blue": 0.025, "purple": 0.025, "pink": 0.025, "teal": 0.025}
_HAIR_RGB = {**HAIR_COLOURS, **HAIR_DYES}

# attribute classes: (probability of the "on" class, on range, off range); the ranges leave a margin
# around the 1.x threshold, so no label sits on a boundary
BIG_NOSE_W, BIG_NOSE_L = (1.25, 1.45), (1.06, 1.2)  # product >= 1.33 (1.x threshold 1.12)
SMALL_NOSE_W, SMALL_NOSE_L = (0.78, 1.04), (0.86, 1.04)  # product <= 1.08
BIG_LIPS, SMALL_LIPS = (1.32, 1.6), (0.6, 1.02)  # threshold 1.15
BUSHY_BROWS, THIN_BROWS = (1.45, 1.85), (0.5, 1.08)  # threshold 1.25
ARCHED, FLAT = (0.85, 1.0), (0.0, 0.55)  # threshold 0.72
OVAL, SQUARE = (0.55, 1.0), (-1.0, 0.15)  # threshold 0.35
NARROW_EYES_BAND = (0.72, 0.88)  # effective eye opening: Narrow_Eyes below, never inside the band
MOUTH_OPEN_MIN = 0.02  # a mouth that opens opens at least this much (crop units); closed = 0
OPEN_GAP_MIN = 0.015  # frontal inner-lip gap of an open mouth (Mouth_Slightly_Open) is >= this


def _choice(rng: np.random.Generator, items):
    names, p = zip(*items)
    p = np.asarray(p, dtype=np.float64)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def skin_colour(tone: float) -> np.ndarray:
    ramp = np.asarray(SKIN_RAMP, dtype=np.float64)
    pos = np.clip(tone, 0, 1) * (len(ramp) - 1)
    i = min(int(pos), len(ramp) - 2)
    f = pos - i
    return ramp[i] * (1 - f) + ramp[i + 1] * f


def identity_rng(seed: int, identity_id: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), 7919, int(identity_id)])


def _u(rng, r) -> float:
    return float(rng.uniform(*r))


def sample_identity(seed: int, identity_id: int) -> dict:
    """Shape of one person (no colours: those are per image, see `sample_colours`)."""
    rng = identity_rng(seed, identity_id)
    male = bool(rng.random() < 0.5)
    styles = _MALE_STYLES if male else _FEMALE_STYLES
    hair_style = _choice(rng, styles)
    alt_style = _choice(rng, styles)
    beard = _choice(rng, (("none", 0.5), ("mustache", 0.15), ("goatee", 0.15), ("full", 0.2))) if male else "none"
    big_nose = bool(rng.random() < (0.3 if male else 0.18))
    big_lips = bool(rng.random() < (0.18 if male else 0.32))
    bushy = bool(rng.random() < (0.3 if male else 0.12))
    arched = bool(rng.random() < (0.15 if male else 0.4))
    oval = bool(rng.random() < (0.3 if male else 0.45))
    return {
        "id": int(identity_id),
        "male": male,
        "face_width": float(np.clip(rng.normal(1.0 + (0.03 if male else -0.03), 0.09), 0.8, 1.2)),
        "face_length": float(np.clip(rng.normal(1.0, 0.08), 0.84, 1.16)),
        "oval": oval,
        "jaw_round": _u(rng, OVAL if oval else SQUARE),  # -1 square .. +1 oval
        "chin": float(rng.uniform(-1, 1)),  # -1 broad .. +1 pointed
        "eye_width": float(np.clip(rng.normal(1.0, 0.12), 0.75, 1.25)),
        "eye_height": float(np.clip(rng.normal(1.0, 0.16), 0.65, 1.4)),
        "eye_spacing": float(np.clip(rng.normal(0.0, 0.026), -0.05, 0.05)),
        "eye_y": float(np.clip(rng.normal(0.0, 0.018), -0.035, 0.035)),
        "eye_tilt": float(np.clip(rng.normal(0.0, 0.012), -0.025, 0.025)),
        "iris_size": float(rng.normal(1.0, 0.08)),
        "bushy_brows": bushy,
        "brow_thick": _u(rng, BUSHY_BROWS if bushy else THIN_BROWS),
        "arched_brows": arched,
        "brow_arch": _u(rng, ARCHED if arched else FLAT),
        "brow_y": float(np.clip(rng.normal(0.0, 0.014), -0.03, 0.03)),
        "big_nose": big_nose,
        "nose_length": _u(rng, BIG_NOSE_L if big_nose else SMALL_NOSE_L),
        "nose_width": _u(rng, BIG_NOSE_W if big_nose else SMALL_NOSE_W),
        "mouth_width": float(np.clip(rng.normal(1.0, 0.11), 0.78, 1.22)),
        "mouth_y": float(np.clip(rng.normal(0.0, 0.016), -0.03, 0.03)),
        "big_lips": big_lips,
        "lip_thick": _u(rng, BIG_LIPS if big_lips else SMALL_LIPS),
        "ear_size": float(rng.normal(1.0, 0.1)),
        "hair_style": hair_style,
        "alt_style": alt_style,
        "hairline": float(rng.normal(0.0, 0.02)),
        "bangs": bool(rng.random() < (0.18 if male else 0.38)),
        "beard": beard,
        "glasses_habit": float(0.65 if rng.random() < 0.22 else 0.04),
        "makeup_habit": float(0.0 if male else (0.7 if rng.random() < 0.45 else 0.08)),
    }


def sample_colours(rng: np.random.Generator) -> dict:
    """Per-image colours: skin tone (pale or not, with a margin), hair colour or dye, brows, lips,
    iris, make-up, glasses, and the camera's white balance / gamma."""
    pale = bool(rng.random() < 0.18)
    tone = _u(rng, PALE_TONE_RANGE if pale else OTHER_TONE_RANGE)
    skin = skin_colour(tone) + rng.normal(0, 5, 3) + np.array([6, 0, -6]) * rng.normal(0, 1)
    names = list(_HAIR_P)
    p = np.array([_HAIR_P[k] for k in names])
    hair_colour = names[int(rng.choice(len(names), p=p / p.sum()))]
    hair_rgb = np.clip(np.array(_HAIR_RGB[hair_colour], np.float64) * rng.uniform(0.85, 1.12)
                       + rng.normal(0, 6, 3), 0, 255)
    lip = np.clip(skin * np.array([0.86, 0.62, 0.62]) + np.array([18, 0, 4]) + rng.normal(0, 5, 3), 0, 255)
    brow_rgb = hair_rgb * (rng.uniform(0.45, 0.7) if hair_colour in ("gray", "blond", "pink") else
                           rng.uniform(0.55, 0.85))
    return {
        "tone": tone,
        "pale": pale,
        "skin": np.clip(skin, 0, 255),
        "lip": lip,
        "hair_colour": hair_colour,
        "hair_rgb": hair_rgb,
        "brow_rgb": np.clip(brow_rgb, 0, 255),
        "iris": np.array(IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], np.float64) + rng.normal(0, 8, 3),
        "lipstick_rgb": np.array(LIPSTICK_COLOURS[int(rng.integers(len(LIPSTICK_COLOURS)))], np.float64),
        "shadow_rgb": np.array(EYESHADOW_COLOURS[int(rng.integers(len(EYESHADOW_COLOURS)))], np.float64),
        "glasses_rgb": np.array(rng.choice([[20, 20, 20], [90, 60, 30], [150, 150, 160], [120, 20, 30]]),
                                np.float64),
        # camera white balance (per-channel gain, mean 1) and gamma
        "wb": np.exp(rng.normal(0, 0.07, 3)),
        "gamma": float(np.exp(rng.normal(0, 0.12))),
    }


# expression -> geometric deltas and appearance cues at full intensity (unit coords, +y is down).
# Geometry: brow_in / brow_out (height of the inner / outer brow ends), brow_dx (inner ends towards
# the midline), eye_open (relative lid opening), lower_lid (lower lid raise, crop units), mouth_open,
# mouth_w (relative width), corner_dy (mouth corners, + is down), upper_lip (raise, -), lower_lip
# (relative lower-lip thickness), lip_press (relative lip thickness), nose_up (nose wings, -),
# nose_w (relative nostril width). Appearance (drawn creases, 0..1): naso (nasolabial folds),
# forehead (horizontal lines), frown (vertical lines between the brows), nose_wrinkle, chin (chin
# boss wrinkle), teeth (1: upper teeth show in an open mouth, 2: both rows).
EXPRESSION_DELTAS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"corner_dy": -0.075, "mouth_w": 0.32, "eye_open": -0.45, "lower_lid": 0.012, "mouth_open": 0.045,
              "naso": 1.0, "teeth": 1},
    "sad": {"brow_in": -0.070, "brow_out": 0.026, "brow_dx": 0.008, "eye_open": -0.32, "corner_dy": 0.070,
            "mouth_w": -0.12, "lower_lip": 0.4, "chin": 1.0, "frown": 0.4},
    "surprise": {"brow_in": -0.065, "brow_out": -0.062, "eye_open": 0.70, "mouth_open": 0.115, "mouth_w": -0.26,
                 "forehead": 1.0, "teeth": 1},
    "fear": {"brow_in": -0.068, "brow_out": -0.015, "brow_dx": 0.024, "eye_open": 0.55, "mouth_open": 0.060,
             "mouth_w": 0.30, "corner_dy": 0.035, "forehead": 0.6, "frown": 0.4, "teeth": 2},
    "disgust": {"brow_in": 0.045, "brow_out": 0.014, "brow_dx": 0.012, "eye_open": -0.45, "lower_lid": 0.010,
                "upper_lip": -0.068, "nose_up": -0.040, "corner_dy": 0.030, "mouth_w": -0.12,
                "naso": 0.8, "nose_wrinkle": 1.0, "teeth": 1},
    "anger": {"brow_in": 0.066, "brow_out": -0.016, "brow_dx": 0.032, "eye_open": -0.32, "lower_lid": 0.010,
              "lip_press": -0.65, "mouth_w": -0.16, "corner_dy": 0.012, "nose_w": 0.18, "frown": 1.0,
              "chin": 0.6},
}
APPEARANCE_CUES = ("naso", "forehead", "frown", "nose_wrinkle", "chin")


def sample_image(rng: np.random.Generator, ident: dict, image_size: int) -> dict:
    """Per-image parameters (expression, colours, pose, accessories, nuisances) for one identity."""
    expr = int(rng.integers(len(EXPRESSIONS)))
    name = EXPRESSIONS[expr]
    intensity = 0.0 if name == "neutral" else float(rng.uniform(*EXPR_INTENSITY_RANGE))
    base = EXPRESSION_DELTAS[name]
    d = {k: v * intensity for k, v in base.items() if k != "teeth"}
    teeth = int(base.get("teeth", 0))
    # resting-face jitter, so expressions are not a pure function of a few coordinates
    d["corner_dy"] = d.get("corner_dy", 0.0) + float(rng.normal(0, 0.004))
    d["brow_in"] = d.get("brow_in", 0.0) + float(rng.normal(0, 0.004))
    d["eye_open"] = d.get("eye_open", 0.0) + float(rng.normal(0, 0.05))
    # a mouth is closed (0) or open by >= MOUTH_OPEN_MIN: no label sits on the open / closed boundary
    opening = d.get("mouth_open", 0.0)
    if name == "happy" and rng.random() < 0.25:  # closed-mouth smile
        opening, teeth = 0.0, 0
    elif opening == 0.0 and name in ("neutral", "sad", "disgust") and rng.random() < 0.12:
        opening, teeth = float(rng.uniform(0.022, 0.035)), 1  # resting open mouth
    d["mouth_open"] = max(opening, MOUTH_OPEN_MIN) if opening > 0 else 0.0
    eyes_closed = bool(rng.random() < 0.07 and name not in ("surprise", "fear"))
    # Narrow_Eyes has a margin: the effective opening never falls inside NARROW_EYES_BAND
    eff = ident["eye_height"] * (1.0 + d["eye_open"])
    lo, hi = NARROW_EYES_BAND
    if lo <= eff < hi:
        eff = lo - 1e-3 if eff - lo < hi - eff else hi + 1e-3
        d["eye_open"] = eff / ident["eye_height"] - 1.0

    frontalish = rng.random() < 0.55
    yaw = float(rng.normal(0, 7) if frontalish else rng.uniform(-45, 45))
    pitch = float(np.clip(rng.normal(0, 8), -25, 25))
    roll = float(np.clip(rng.normal(0, 5), -15, 15))

    style = ident["alt_style"] if rng.random() < 0.1 else ident["hair_style"]
    bangs = ident["bangs"] if rng.random() > 0.1 else not ident["bangs"]
    if style in ("bald", "buzz"):
        bangs = False
    makeup = bool(rng.random() < ident["makeup_habit"])
    lipstick = makeup or bool(not ident["male"] and rng.random() < 0.15)
    hat = bool(rng.random() < 0.1)
    glasses = bool(rng.random() < ident["glasses_habit"])
    colours = sample_colours(rng)

    hard = rng.random() < 0.25
    occluded = bool(rng.random() < 0.2)
    blur = rng.random() < 0.2
    return {
        "expression": expr,
        "intensity": intensity,
        "deltas": d,
        "teeth": teeth,
        "eyes_closed": eyes_closed,
        "gaze": rng.uniform(-1, 1, 2) * np.array([0.35, 0.2]),
        "yaw": yaw, "pitch": pitch, "roll": roll,
        "scale": float(rng.uniform(0.96, 1.04)),
        "shift": rng.normal(0, 0.01, 2),
        "hair_style": style,
        "bangs": bool(bangs),
        "makeup": makeup,
        "lipstick": lipstick,
        "hat": hat,
        "hat_rgb": rng.uniform(20, 235, 3),
        "hat_kind": int(rng.integers(2)),
        "glasses": glasses,
        "glasses_round": bool(rng.random() < 0.4),
        **colours,
        "illum_azimuth": float(rng.uniform(0, 360)),
        "illum_strength": float(rng.uniform(0.5, 0.85) if hard else rng.uniform(0.0, 0.35)),
        "ambient": float(rng.uniform(0.82, 1.12)),
        "occluded": occluded,
        "occluder_kind": int(rng.integers(4)),
        "blur_sigma": float(rng.uniform(0.4, 1.1) * image_size / 64.0 if blur else 0.0),
        "noise_std": float(rng.uniform(6, 14) if rng.random() < 0.25 else rng.uniform(0, 5)),
    }
