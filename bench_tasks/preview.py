"""Visual check of the embedded SynthFace data: image, parsing overlay, landmarks + labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

# one colour per LaPa class (background transparent)
PARSING_PALETTE = np.array([
    [0, 0, 0], [255, 200, 150], [0, 160, 255], [0, 90, 200], [60, 255, 60], [0, 150, 0],
    [255, 255, 0], [255, 0, 90], [130, 0, 40], [255, 110, 0], [170, 60, 255]], dtype=np.float32)


def overlay_mask(image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    col = PARSING_PALETTE[mask]
    out = image.astype(np.float32)
    fg = mask > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * col[fg]
    return np.clip(out, 0, 255).astype(np.uint8)


def draw_landmarks(image: np.ndarray, lm: np.ndarray, scale: int = 1) -> Image.Image:
    from paco_fr.data.template import five_from_68

    im = Image.fromarray(image).resize((image.shape[1] * scale, image.shape[0] * scale), Image.NEAREST)
    d = ImageDraw.Draw(im)
    p = (np.asarray(lm, np.float64) + 0.5) * scale - 0.5
    r = max(1.0, scale * 0.6)
    for x, y in p:
        d.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0))
    for x, y in (five_from_68(lm) + 0.5) * scale - 0.5:
        d.ellipse([x - 2 * r, y - 2 * r, x + 2 * r, y + 2 * r], outline=(255, 0, 0), width=max(1, scale // 2))
    return im


def draw_synthface_preview(out_path, n: int = 16, image_size: int = 112, seed: int = 0, split: str = "val",
                           cols: int = 4) -> Path:
    """Render n SynthFace samples (generated in memory, no cache) to a grid PNG at out_path: per sample
    the image, the parsing overlay and the landmarks (5 alignment points circled in red), with the
    expression, pose and a few attributes as text."""
    from paco_fr.data.synthface import EXPRESSIONS, generate_one, identities_for
    from paco_fr.data.synthface.spec import ATTRIBUTES

    # every 7th image of the split: many identities, poses and accessories in one grid
    idx = np.arange(n) * 7
    ids = identities_for(split, int(idx[-1]) + 1, seed)
    samples = [generate_one(seed, split, int(i), int(ids[i]), image_size) for i in idx]
    arr = {"images": [s[0] for s in samples], "masks": [s[1] for s in samples],
           "landmarks": [s[2] for s in samples], "attributes": [s[3] for s in samples],
           "expression": [s[4] for s in samples], "identity": ids[idx],
           "nuisance": {k: np.array([s[5][k] for s in samples]) for k in samples[0][5]}}
    scale = max(1, 224 // image_size)
    tile = image_size * scale
    text_h = 34
    cell_w, cell_h = 3 * tile + 8, tile + text_h
    cols = min(cols, n)
    rows = (n + cols - 1) // cols
    canvas = Image.new("RGB", (cols * cell_w, rows * cell_h), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    show = ("Male", "Smiling", "Eyeglasses", "Bangs", "Wearing_Hat", "Heavy_Makeup", "Mouth_Slightly_Open",
            "Eyes_Closed", "Black_Hair", "Blond_Hair", "Brown_Hair", "Gray_Hair", "No_Beard")
    for k in range(n):
        img, mask, lm = arr["images"][k], arr["masks"][k], arr["landmarks"][k]
        x0, y0 = (k % cols) * cell_w, (k // cols) * cell_h
        big = Image.fromarray(img).resize((tile, tile), Image.NEAREST)
        canvas.paste(big, (x0, y0))
        ov = Image.fromarray(overlay_mask(img, mask)).resize((tile, tile), Image.NEAREST)
        canvas.paste(ov, (x0 + tile, y0))
        canvas.paste(draw_landmarks(img, lm, scale), (x0 + 2 * tile, y0))
        nu = arr["nuisance"]
        on = [a for a, v in zip(ATTRIBUTES, arr["attributes"][k]) if v and a in show]
        inten = nu["expr_intensity"][k] if "expr_intensity" in nu else 0.0
        line1 = (f"#{k} id{arr['identity'][k] % 10_000_000} {EXPRESSIONS[arr['expression'][k]]}"
                 + (f"({inten:.1f}) " if inten > 0 else " ") +
                 f"yaw{nu['yaw'][k]:+.0f} pit{nu['pitch'][k]:+.0f}"
                 + (f" occ{nu['occlusion_frac'][k]:.2f}" if nu["occluded"][k] else ""))
        d.text((x0 + 2, y0 + tile + 1), line1, fill=(0, 0, 0))
        d.text((x0 + 2, y0 + tile + 12), " ".join(a.replace("_", "") for a in on[:5]), fill=(60, 60, 160))
        d.text((x0 + 2, y0 + tile + 22), " ".join(a.replace("_", "") for a in on[5:]), fill=(60, 60, 160))
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.quantize(256, method=Image.Quantize.MEDIANCUT).save(out_path, optimize=True)
    return out_path
