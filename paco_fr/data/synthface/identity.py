"""Sampling of identity parameters (fixed per person) and per-image parameters.

An identity is a fixed set of shape/appearance parameters (face shape, skin tone, eye/nose/mouth
geometry, iris colour, default hair, beard, glasses/make-up habits). Every image of the identity
re-uses them and draws its own expression, pose, lighting, accessories and nuisances.
"""

from __future__ import annotations

import numpy as np

from .spec import (
    EXPRESSIONS,
    EYESHADOW_COLOURS,
    HAIR_COLOUR_NAMES,
    IRIS_COLOURS,
    LIPSTICK_COLOURS,
    SKIN_RAMP,
)

_MALE_STYLES = (("bald", 0.08), ("buzz", 0.27), ("short", 0.35), ("side", 0.18), ("curly", 0.12))
_FEMALE_STYLES = (("long", 0.42), ("bob", 0.22), ("side", 0.1), ("curly", 0.16), ("short", 0.1))
_HAIR_COLOUR_P = (0.32, 0.30, 0.16, 0.11, 0.11)  # black, brown, blond, gray, red


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


def sample_identity(seed: int, identity_id: int) -> dict:
    rng = identity_rng(seed, identity_id)
    male = bool(rng.random() < 0.5)
    tone = float(np.clip(rng.beta(1.6, 2.2), 0, 1))
    styles = _MALE_STYLES if male else _FEMALE_STYLES
    hair_style = _choice(rng, styles)
    alt_style = _choice(rng, styles)
    hair_colour = HAIR_COLOUR_NAMES[int(rng.choice(5, p=_HAIR_COLOUR_P))]
    hair_rgb = np.array({"black": (28, 24, 24), "brown": (96, 62, 38), "blond": (214, 178, 108),
                         "gray": (160, 158, 156), "red": (150, 64, 34)}[hair_colour], dtype=np.float64)
    hair_rgb = np.clip(hair_rgb * rng.uniform(0.85, 1.12) + rng.normal(0, 6, 3), 0, 255)
    beard = _choice(rng, (("none", 0.5), ("mustache", 0.15), ("goatee", 0.15), ("full", 0.2))) if male else "none"
    skin = skin_colour(tone) + rng.normal(0, 5, 3) + np.array([4, 0, -4]) * rng.normal(0, 1)
    lip = np.clip(skin * np.array([0.86, 0.62, 0.62]) + np.array([18, 0, 4]) + rng.normal(0, 5, 3), 0, 255)
    brow_rgb = hair_rgb * rng.uniform(0.55, 0.85) if hair_colour not in ("gray", "blond") else \
        hair_rgb * rng.uniform(0.45, 0.7)
    return {
        "id": int(identity_id),
        "male": male,
        "tone": tone,
        "skin": np.clip(skin, 0, 255),
        "lip": lip,
        "face_width": float(rng.normal(1.0 + (0.025 if male else -0.025), 0.045)),
        "face_length": float(rng.normal(1.0, 0.045)),
        "jaw_round": float(rng.uniform(-1, 1)),  # -1 square .. +1 oval
        "chin": float(rng.uniform(-1, 1)),  # -1 broad .. +1 pointed
        "eye_width": float(rng.normal(1.0, 0.07)),
        "eye_height": float(np.clip(rng.normal(1.0, 0.16), 0.6, 1.45)),
        "eye_spacing": float(rng.normal(0.0, 0.012)),
        "eye_y": float(rng.normal(0.0, 0.008)),
        "eye_tilt": float(rng.normal(0.0, 0.006)),
        "iris": np.array(IRIS_COLOURS[int(rng.integers(len(IRIS_COLOURS)))], dtype=np.float64)
        + rng.normal(0, 8, 3),
        "iris_size": float(rng.normal(1.0, 0.06)),
        "brow_thick": float(np.clip(rng.normal(1.15 if male else 0.85, 0.22), 0.45, 1.8)),
        "brow_arch": float(rng.uniform(0, 1)),
        "brow_y": float(rng.normal(0.0, 0.01)),
        "brow_rgb": np.clip(brow_rgb, 0, 255),
        "nose_length": float(rng.normal(1.0, 0.07)),
        "nose_width": float(rng.normal(1.0 + (0.04 if male else -0.04), 0.1)),
        "mouth_width": float(rng.normal(1.0, 0.06)),
        "lip_thick": float(np.clip(rng.normal(1.0 + (-0.06 if male else 0.06), 0.17), 0.55, 1.6)),
        "ear_size": float(rng.normal(1.0, 0.08)),
        "hair_style": hair_style,
        "alt_style": alt_style,
        "hair_colour": hair_colour,
        "hair_rgb": hair_rgb,
        "hairline": float(rng.normal(0.0, 0.015)),
        "bangs": bool(rng.random() < (0.18 if male else 0.38)),
        "beard": beard,
        "glasses_habit": float(0.65 if rng.random() < 0.22 else 0.04),
        "makeup_habit": float(0.0 if male else (0.7 if rng.random() < 0.45 else 0.08)),
        "lipstick_rgb": np.array(LIPSTICK_COLOURS[int(rng.integers(len(LIPSTICK_COLOURS)))], dtype=np.float64),
        "shadow_rgb": np.array(EYESHADOW_COLOURS[int(rng.integers(len(EYESHADOW_COLOURS)))], dtype=np.float64),
        "glasses_rgb": np.array(rng.choice([[20, 20, 20], [90, 60, 30], [150, 150, 160], [120, 20, 30]]),
                                dtype=np.float64),
    }


# expression -> geometric deltas at full intensity (unit coords, +y is down)
EXPRESSION_DELTAS: dict[str, dict[str, float]] = {
    "neutral": {},
    "happy": {"corner_dy": -0.024, "mouth_w": 0.10, "eye_open": -0.16, "mouth_open": 0.010, "cheek": 1.0},
    "sad": {"brow_in": -0.020, "brow_out": 0.009, "eye_open": -0.10, "corner_dy": 0.017, "mouth_w": -0.04,
            "lower_lip": 0.006},
    "surprise": {"brow_in": -0.030, "brow_out": -0.028, "eye_open": 0.36, "mouth_open": 0.050,
                 "mouth_w": -0.15},
    "fear": {"brow_in": -0.025, "brow_out": -0.006, "brow_dx": 0.010, "eye_open": 0.30, "mouth_open": 0.020,
             "mouth_w": 0.12, "corner_dy": 0.006},
    "disgust": {"brow_in": 0.013, "brow_out": 0.004, "eye_open": -0.24, "upper_lip": -0.012,
                "corner_dy": 0.010, "mouth_w": -0.05, "nose_up": -0.007},
    "anger": {"brow_in": 0.026, "brow_out": -0.005, "brow_dx": 0.013, "eye_open": -0.10, "lip_press": -0.45,
              "mouth_w": -0.07, "corner_dy": 0.004},
}


def sample_image(rng: np.random.Generator, ident: dict, image_size: int) -> dict:
    """Per-image parameters (expression, pose, accessories, nuisances) for one identity."""
    expr = int(rng.integers(len(EXPRESSIONS)))
    name = EXPRESSIONS[expr]
    intensity = float(rng.uniform(0.55, 1.0))
    d = {k: v * intensity for k, v in EXPRESSION_DELTAS[name].items()}
    # resting-face jitter, so expressions are not a pure function of a few coordinates
    d["corner_dy"] = d.get("corner_dy", 0.0) + float(rng.normal(0, 0.003))
    d["brow_in"] = d.get("brow_in", 0.0) + float(rng.normal(0, 0.003))
    d["eye_open"] = d.get("eye_open", 0.0) + float(rng.normal(0, 0.05))
    extra_open = float(rng.uniform(0.012, 0.03)) if rng.random() < 0.12 else 0.0
    d["mouth_open"] = d.get("mouth_open", 0.0) * (1.0 if name != "happy" or rng.random() < 0.6 else 0.0) + extra_open
    eyes_closed = bool(rng.random() < 0.07 and name not in ("surprise", "fear"))

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

    hard = rng.random() < 0.25
    occluded = bool(rng.random() < 0.2)
    blur = rng.random() < 0.2
    return {
        "expression": expr,
        "intensity": intensity,
        "deltas": d,
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
        "illum_azimuth": float(rng.uniform(0, 360)),
        "illum_strength": float(rng.uniform(0.5, 0.85) if hard else rng.uniform(0.0, 0.35)),
        "ambient": float(rng.uniform(0.82, 1.12)),
        "tint": rng.normal(0, 0.04, 3),
        "occluded": occluded,
        "occluder_kind": int(rng.integers(4)),
        "blur_sigma": float(rng.uniform(0.4, 1.1) * image_size / 64.0 if blur else 0.0),
        "noise_std": float(rng.uniform(6, 14) if rng.random() < 0.25 else rng.uniform(0, 5)),
    }
