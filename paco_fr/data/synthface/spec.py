"""SynthFace constants: label spaces, split layout and appearance palettes."""

from __future__ import annotations

GENERATOR_VERSION = "2.1"  # 1.1-1.2: 3x/2x supersampling, float-width strokes (output changed)
# 2.0: strong expressions with an intensity, per-image colour / white balance / hair dye, discrete
# attributes (docs/synthface.md); 2.1: wider identity shape variation
CACHE_LAYOUT = "v" + GENERATOR_VERSION  # cache folder under the root: each generator version has its own

# LaPa's 11 classes, in LaPa's order. left/right are the *subject's* sides (LaPa convention): the
# subject's left eye is on the image's right in a frontal face (iBUG points 42-47).
PARSING_CLASSES: tuple[str, ...] = (
    "background", "skin", "left_eyebrow", "right_eyebrow", "left_eye", "right_eye",
    "nose", "upper_lip", "inner_mouth", "lower_lip", "hair",
)
CLS = {name: i for i, name in enumerate(PARSING_CLASSES)}

EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")

ATTRIBUTES: tuple[str, ...] = (
    "Arched_Eyebrows", "Bald", "Bangs", "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair",
    "Brown_Hair", "Bushy_Eyebrows", "Eyeglasses", "Eyes_Closed", "Goatee", "Gray_Hair",
    "Heavy_Makeup", "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard",
    "Oval_Face", "Pale_Skin", "Smiling", "Wearing_Hat", "Wearing_Lipstick",
)

# `teacher`: images for MCF-style's teacher, disjoint from `pretrain` (and from the evaluation splits)
SPLITS: tuple[str, ...] = ("train", "val", "test", "pretrain", "teacher")
# identity ids of split k live in [k * IDENTITY_STRIDE, (k + 1) * IDENTITY_STRIDE): disjoint splits
IDENTITY_STRIDE = 10_000_000
IMAGES_PER_IDENTITY = (8, 12)  # inclusive range of images per identity

HAIR_STYLES: tuple[str, ...] = ("bald", "buzz", "short", "side", "long", "bob", "curly")
HAIR_COLOURS: dict[str, tuple[int, int, int]] = {
    "black": (28, 24, 24),
    "brown": (96, 62, 38),
    "blond": (214, 178, 108),
    "gray": (160, 158, 156),
    "red": (150, 64, 34),
}
HAIR_COLOUR_NAMES = tuple(HAIR_COLOURS)
# dyes with no attribute (drawn per image, like every hair colour)
HAIR_DYES: dict[str, tuple[int, int, int]] = {
    "blue": (46, 66, 150),
    "purple": (112, 52, 132),
    "pink": (222, 112, 162),
    "teal": (38, 128, 126),
}

# skin tone ramp, from pale to dark (interpolated with a continuous tone in [0, 1])
SKIN_RAMP = ((246, 222, 206), (232, 190, 160), (206, 156, 118), (160, 110, 78), (104, 70, 48))
PALE_SKIN_TONE = 0.16  # tone below this: Pale_Skin
# 2.0: per-image tone drawn from two bands with a margin around PALE_SKIN_TONE (no arbitrary label)
PALE_TONE_RANGE = (0.0, 0.07)
OTHER_TONE_RANGE = (0.30, 1.0)

IRIS_COLOURS = ((70, 45, 25), (110, 75, 40), (60, 100, 150), (80, 120, 80), (100, 100, 110))
LIPSTICK_COLOURS = ((180, 20, 50), (200, 40, 90), (140, 20, 40), (220, 80, 100))
EYESHADOW_COLOURS = ((120, 70, 130), (60, 80, 140), (150, 100, 70), (90, 60, 60))

NUISANCE_KEYS = ("yaw", "pitch", "roll", "occluded", "occlusion_frac", "illum_azimuth",
                 "illum_strength", "blur_sigma", "noise_std", "scale", "shift_x", "shift_y", "expr_intensity")
# expression intensity in [EXPR_INTENSITY_RANGE] for the six expressions, 0 for neutral; slices
# intensity:low / intensity:high split the expressive images at INTENSITY_SPLIT
EXPR_INTENSITY_RANGE = (0.5, 1.0)
INTENSITY_SPLIT = 0.75
