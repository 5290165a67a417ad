"""Visual checks of the data as the benchmark reads it: SynthFace samples (image, parsing overlay,
landmarks + labels) and a grid of items of any registered dataset with their labels drawn."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bench_tasks.contracts import DatasetLayoutError
from bench_tasks.plan.cells import DataRoots, missing_root_error
from bench_tasks.plan.profiles import get_profile
from bench_tasks.registry import DATASETS, load_registries
from paco_fr.data.synthface import EXPRESSIONS, generate_one, identities_for
from paco_fr.data.synthface.spec import ATTRIBUTES
from paco_fr.data.template import five_from_68

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


# ----------------------------------------------------------------------------- any registered dataset

TEXT_H = 13  # pixels per text line under a tile


def class_colours(n: int) -> np.ndarray:
    """PARSING_PALETTE for the first classes, then distinct seeded colours."""
    extra = np.random.default_rng(0).integers(40, 256, (max(0, n - len(PARSING_PALETTE)), 3)).astype(np.float32)
    return np.concatenate([PARSING_PALETTE, extra])[:max(n, len(PARSING_PALETTE))]


def tensor_image(x) -> np.ndarray:
    """(3, H, W) float in [0, 1] -> uint8 (H, W, 3)."""
    a = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x, dtype=np.float32)
    return (np.clip(a, 0, 1).transpose(1, 2, 0) * 255 + 0.5).astype(np.uint8)


def mask_overlay(image: np.ndarray, mask: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    mask = np.asarray(mask, dtype=np.int64)
    col = class_colours(int(mask.max()) + 1)[mask]
    out = image.astype(np.float32)
    fg = mask > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * col[fg]
    return np.clip(out, 0, 255).astype(np.uint8)


def points_image(image: np.ndarray, pts: np.ndarray) -> Image.Image:
    """Every point as a green dot (pixel centres at integer coordinates); with 68 points the 5
    alignment points are circled in red."""
    im = Image.fromarray(image)
    d = ImageDraw.Draw(im)
    r = max(1.0, image.shape[0] / 100)
    for x, y in np.asarray(pts, np.float64):
        d.ellipse([x - r, y - r, x + r, y + r], fill=(0, 255, 0))
    if len(pts) == 68:
        for x, y in five_from_68(np.asarray(pts, np.float64)):
            d.ellipse([x - 2 * r, y - 2 * r, x + 2 * r, y + 2 * r], outline=(255, 0, 0), width=1)
    return im


def wrap(words: list[str], width_px: int) -> list[str]:
    """Greedy line wrap for PIL's default font (about 6 px per character)."""
    per = max(8, width_px // 6)
    lines, cur = [], ""
    for w in words:
        if cur and len(cur) + 1 + len(w) > per:
            lines.append(cur)
            cur = w
        else:
            cur = f"{cur} {w}".strip()
    return lines + ([cur] if cur else [])


def preview_cells(task: str, data, n: int) -> list[tuple[list[Image.Image], list[str]]]:
    """(tiles, text lines) for the first n items (pairs for a verification set) of a split."""
    cells = []
    if task == "recognition" and getattr(data, "pairs", None):
        name, pairs = next(iter(data.pairs.items()))
        # alternate genuine and impostor pairs so that both kinds show
        same, diff = np.flatnonzero(pairs.issame), np.flatnonzero(~pairs.issame)
        order = [i for ab in zip(same, diff) for i in ab] + list(same[len(diff):]) + list(diff[len(same):])
        for p in order[:n]:
            a, b = int(pairs.idx1[p]), int(pairs.idx2[p])
            tiles = [Image.fromarray(tensor_image(data[a][0])), Image.fromarray(tensor_image(data[b][0]))]
            cells.append((tiles, [f"pair {p} ({name})", "same identity" if pairs.issame[p] else "different"]))
        return cells
    for i in range(min(n, len(data))):
        x, y = data[i]
        img = tensor_image(x)
        src = Path(str((getattr(data, "paths", None) or getattr(data, "images", None) or getattr(data, "names", None)
                        or [""] * len(data))[i]))
        stem = f"{src.parent.name}/{src.name}" if src.parent.name else src.name
        if task == "parsing":
            classes = data.meta.get("classes") or []
            present = [classes[c] if c < len(classes) else str(c) for c in np.unique(y.numpy()) if c > 0]
            cells.append(([Image.fromarray(img), Image.fromarray(mask_overlay(img, y.numpy()))],
                          [stem, *wrap(present, 2 * img.shape[1])]))
        elif task == "landmarks":
            cells.append(([points_image(img, y.numpy())], [stem, f"{len(y)} points"]))
        elif task == "attributes":
            names = data.meta.get("attribute_names") or []
            on = [names[j] if j < len(names) else str(j) for j in np.flatnonzero(np.asarray(y) > 0)]
            cells.append(([Image.fromarray(img)], [stem, *wrap(on or ["(no attribute set)"], img.shape[1])]))
        elif task == "expression":
            names = data.meta.get("class_names") or []
            k = int(y)
            cells.append(([Image.fromarray(img)], [stem, names[k] if k < len(names) else f"class {k}"]))
        else:  # recognition without pairs: identities
            ids = data.meta.get("identities")
            k = int(y)
            cells.append(([Image.fromarray(img)], [stem, f"identity {ids[k] if ids and k < len(ids) else k}"]))
    return cells


def draw_grid(cells: list[tuple[list[Image.Image], list[str]]], title: str, cols: int = 4) -> Image.Image:
    tile_w = max(t.width for tiles, _ in cells for t in tiles)
    tile_h = max(t.height for tiles, _ in cells for t in tiles)
    per = max(len(tiles) for tiles, _ in cells)
    n_text = max(len(text) for _, text in cells)
    cell_w, cell_h = per * tile_w + 8, tile_h + n_text * TEXT_H + 6
    cols = min(cols, len(cells))
    rows = (len(cells) + cols - 1) // cols
    canvas = Image.new("RGB", (max(cols * cell_w, 6 * len(title) + 8), rows * cell_h + 16), (255, 255, 255))
    d = ImageDraw.Draw(canvas)
    d.text((4, 2), title, fill=(0, 0, 0))
    for k, (tiles, text) in enumerate(cells):
        x0, y0 = (k % cols) * cell_w, 16 + (k // cols) * cell_h
        for j, t in enumerate(tiles):
            canvas.paste(t, (x0 + j * tile_w, y0))
        for j, line in enumerate(text):
            d.text((x0 + 2, y0 + tile_h + 2 + j * TEXT_H), line, fill=(0, 0, 0) if j == 0 else (40, 40, 160))
    return canvas


def draw_dataset_preview(dataset: str, root, out_path, n: int = 8, split: str = "test", image_size: int = 128,
                         task: str | None = None, cols: int = 4) -> tuple[Path, str]:
    """Read `n` items of a registered dataset the way the benchmark reads them (the same reader,
    crop and resize) and draw them with their labels to a PNG grid: parsing masks as an overlay,
    landmarks as points, attributes / expression as text, verification pairs side by side.
    Returns (the PNG's path, a one-line description of what was drawn)."""
    spec = DATASETS.get(dataset)()
    task = task or spec.tasks[0]
    if task not in spec.tasks:
        raise ValueError(f"{dataset} serves {', '.join(spec.tasks)}, not {task!r}")
    data = spec.load(task, split, None if root is None else str(root), get_profile("smoke"), image_size)
    cells = preview_cells(task, data, n)
    if not cells:
        raise ValueError(f"{dataset} {split} split has no items to draw (root {root})")
    what = "pairs" if task == "recognition" and getattr(data, "pairs", None) else "items"
    title = f"{dataset} / {task} / {split}: {len(cells)} {what} of {len(data)} images, {image_size} px ({root})"
    canvas = draw_grid(cells, title, cols)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(out_path, optimize=True)
    return out_path, title


def cmd_preview(args) -> int:
    """`python -m bench_tasks preview --datasets X,Y --data-root R` (or `preview synthface`)."""
    load_registries()
    names = [x.strip() for x in (args.datasets or args.dataset or "synthface").split(",") if x.strip()]
    unknown = [x for x in names if x not in DATASETS.names()]
    if unknown:
        print(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(sorted(DATASETS.names()))}",
              file=sys.stderr)
        return 2
    roots = DataRoots.parse(args.data_root)
    status = 0
    for name in names:
        out = Path(args.out or f"{name}_preview.png")
        if len(names) > 1 and args.out:
            out = out.with_name(f"{out.stem}_{name}{out.suffix or '.png'}")
        if name == "synthface":
            path = draw_synthface_preview(out, n=args.n or 16, image_size=args.size, seed=args.seed)
            print(f"synthface: {args.n or 16} generated samples, {args.size} px -> {path}")
            continue
        root = roots.get(name)
        if root is None and len(roots.parents) == 1 and not roots.pairs and len(names) == 1:
            root = roots.parents[0]  # `--data-root <the dataset's own folder>`
        try:
            if root is None:
                raise missing_root_error(name, roots)
            path, title = draw_dataset_preview(name, root, out, n=args.n or 8, split=args.split, image_size=args.size,
                                               task=args.task)
        except (DatasetLayoutError, ValueError, OSError) as err:
            print(f"{name}: cannot preview: {err}", file=sys.stderr)
            status = 1
            continue
        print(f"{title} -> {path}")
    return status
