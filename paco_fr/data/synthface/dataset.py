"""`load_synthface`: deterministic generation of a split + its on-disk cache.

Cache layout (one folder per (generator version, size, seed, split, N)):

    <root>/v{GENERATOR_VERSION}/size{S}-seed{seed}/{split}-{N}/    (e.g. <root>/v2.1/size64-seed0/train-1200)
        images/000000.png ...   RGB uint8
        masks/000000.png ...    L uint8, LaPa class indices 0..10
        labels.npz              landmarks, attributes, expression, identity, nuisance_<key>
        meta.json               class / attribute / expression names, generator version, params

Caches of other generator versions (1.x lived in `<root>/v1/`) are left alone. A cache in this
version's folder whose meta.json names another version (a development build) is regenerated.

A split is generated into `<dir>.tmp-<pid>` and renamed into place when complete, so an interrupted
generation never leaves a half cache. Image i of a split is a pure function of (seed, split, i).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from paco_fr.data.captions import oracle_caption

from .identity import NARROW_EYES_BAND, OPEN_GAP_MIN, sample_identity, sample_image
from .render import render
from .spec import (
    ATTRIBUTES,
    CACHE_LAYOUT,
    EXPRESSIONS,
    GENERATOR_VERSION,
    IDENTITY_STRIDE,
    IMAGES_PER_IDENTITY,
    NUISANCE_KEYS,
    PARSING_CLASSES,
    SPLITS,
)


@dataclass
class SynthFaceSplit:
    images: np.ndarray  # uint8 (N, H, W, 3)
    masks: np.ndarray  # uint8 (N, H, W)
    landmarks: np.ndarray  # float32 (N, 68, 2), pixels, pixel centres at integers
    attributes: np.ndarray  # uint8 (N, A)
    attribute_names: list[str]
    expression: np.ndarray  # int64 (N,)
    identity: np.ndarray  # int64 (N,)
    nuisance: dict[str, np.ndarray]
    split: str = ""
    image_size: int = 0
    seed: int = 0
    path: str | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def oracle_captions(self) -> list[str]:
        """Every true label as a sentence: supervision, an upper bound only. FaRL-style pre-training
        uses partial, noisy captions (paco_fr.data.captions.build_captions)."""
        return [oracle_caption(a, e, self.attribute_names, EXPRESSIONS) for a, e in zip(self.attributes, self.expression)]


def default_root() -> Path:
    env = os.environ.get("PACO_FR_DATA")
    return Path(env) if env else Path.home() / ".cache" / "paco_fr" / "synthface"


def split_index(split: str) -> int:
    if split not in SPLITS:
        raise ValueError(f"unknown SynthFace split {split!r}; choose from {SPLITS}")
    return SPLITS.index(split)


def identities_for(split: str, n: int, seed: int) -> np.ndarray:
    """Identity id of images 0..n-1: consecutive blocks of 8-12 images; the block sizes are drawn from
    (seed, split) only, so a longer split extends a shorter one."""
    k = split_index(split)
    rng = np.random.default_rng([int(seed), 104729, k])
    lo, hi = IMAGES_PER_IDENTITY
    sizes = rng.integers(lo, hi + 1, n // lo + 2)
    ids = np.repeat(np.arange(len(sizes)), sizes)[:n]
    return (k * IDENTITY_STRIDE + ids).astype(np.int64)


def attributes_of(ident: dict, img: dict, geo_info: dict) -> np.ndarray:
    """The 24 CelebA-style labels of one image. Every label is a discrete choice of the generator
    (identity classes: big nose / lips, bushy / arched brows, oval face; per image: hair colour,
    pale skin, accessories, expression) or a rendered quantity sampled away from its threshold (eye
    opening outside NARROW_EYES_BAND, inner-lip gap 0 or >= OPEN_GAP_MIN)."""
    d = img["deltas"]
    style = img["hair_style"]
    hair_visible = style != "bald"
    eye_open = ident["eye_height"] * (1 + d.get("eye_open", 0.0))
    vals = {
        "Arched_Eyebrows": ident["arched_brows"],
        "Bald": style == "bald",
        "Bangs": img["bangs"] and hair_visible and not img["hat"],
        "Big_Lips": ident["big_lips"],
        "Big_Nose": ident["big_nose"],
        "Black_Hair": hair_visible and img["hair_colour"] == "black",
        "Blond_Hair": hair_visible and img["hair_colour"] == "blond",
        "Brown_Hair": hair_visible and img["hair_colour"] == "brown",
        "Bushy_Eyebrows": ident["bushy_brows"],
        "Eyeglasses": img["glasses"],
        "Eyes_Closed": img["eyes_closed"],
        "Goatee": ident["beard"] in ("goatee", "full"),
        "Gray_Hair": hair_visible and img["hair_colour"] == "gray",
        "Heavy_Makeup": img["makeup"],
        "Male": ident["male"],
        "Mouth_Slightly_Open": geo_info["mouth_gap"] >= 0.5 * OPEN_GAP_MIN,
        "Mustache": ident["beard"] in ("mustache", "full"),
        "Narrow_Eyes": (not img["eyes_closed"]) and eye_open < NARROW_EYES_BAND[0],
        "No_Beard": ident["beard"] == "none",
        "Oval_Face": ident["oval"],
        "Pale_Skin": img["pale"],
        "Smiling": EXPRESSIONS[img["expression"]] == "happy",
        "Wearing_Hat": img["hat"],
        "Wearing_Lipstick": img["lipstick"],
    }
    return np.array([bool(vals[a]) for a in ATTRIBUTES], dtype=np.uint8)


_IDENT_CACHE: dict = {}


def generate_one(seed: int, split: str, i: int, identity_id: int, image_size: int):
    """Image i of a split -> (image, mask, landmarks, attributes, expression, nuisance dict)."""
    key = (int(seed), int(identity_id))
    ident = _IDENT_CACHE.get(key)
    if ident is None:  # consecutive images share identities; parameters are read-only
        if len(_IDENT_CACHE) > 256:
            _IDENT_CACHE.clear()
        ident = _IDENT_CACHE[key] = sample_identity(seed, identity_id)
    rng = np.random.default_rng([int(seed), split_index(split), int(i)])
    img = sample_image(rng, ident, image_size)
    image, mask, lm, info = render(ident, img, image_size, rng)
    attrs = attributes_of(ident, img, info)
    occ_frac = info["occlusion_frac"]
    nuis = {
        "yaw": img["yaw"], "pitch": img["pitch"], "roll": img["roll"],
        "occluded": occ_frac >= 0.02, "occlusion_frac": occ_frac,
        "illum_azimuth": img["illum_azimuth"], "illum_strength": img["illum_strength"],
        "blur_sigma": img["blur_sigma"], "noise_std": img["noise_std"],
        "scale": img["scale"], "shift_x": float(img["shift"][0]), "shift_y": float(img["shift"][1]),
        "expr_intensity": img["intensity"],
    }
    return image, mask, lm, attrs, img["expression"], nuis


def _work(args):
    seed, split, i, identity_id, size, out_dir = args
    image, mask, lm, attrs, expr, nuis = generate_one(seed, split, i, identity_id, size)
    if out_dir is not None:
        Image.fromarray(image, "RGB").save(os.path.join(out_dir, "images", f"{i:06d}.png"), compress_level=1)
        Image.fromarray(mask, "L").save(os.path.join(out_dir, "masks", f"{i:06d}.png"), compress_level=1)
        image = mask = None
    return i, image, mask, lm, attrs, expr, nuis


def generate_arrays(split: str, num_images: int, image_size: int = 64, seed: int = 0, workers: int = 2,
                    out_dir: str | None = None, progress: bool = False) -> dict:
    """Render a split in memory (out_dir None) or to PNGs under out_dir. Returns the label arrays
    (and images/masks when in memory)."""
    ids = identities_for(split, num_images, seed)
    jobs = [(seed, split, i, int(ids[i]), image_size, out_dir) for i in range(num_images)]
    n = num_images
    lms = np.zeros((n, 68, 2), np.float32)
    attrs = np.zeros((n, len(ATTRIBUTES)), np.uint8)
    expr = np.zeros(n, np.int64)
    nuis = {k: np.zeros(n, bool if k == "occluded" else np.float32) for k in NUISANCE_KEYS}
    images = masks = None
    if out_dir is None:
        images = np.zeros((n, image_size, image_size, 3), np.uint8)
        masks = np.zeros((n, image_size, image_size), np.uint8)
    bar = None
    if progress:
        bar = tqdm(total=n, desc=f"SynthFace {split} {image_size}px", unit="img")

    def consume(res):
        i, im, mk, lm, at, ex, nu = res
        lms[i], attrs[i], expr[i] = lm, at, ex
        for k, v in nu.items():
            nuis[k][i] = v
        if images is not None:
            images[i], masks[i] = im, mk
        if bar is not None:
            bar.update(1)

    if workers > 1 and n >= 32:
        with mp.get_context("fork").Pool(workers) as pool:
            for res in pool.imap_unordered(_work, jobs, chunksize=16):
                consume(res)
    else:
        for j in jobs:
            consume(_work(j))
    if bar is not None:
        bar.close()
    return {"images": images, "masks": masks, "landmarks": lms, "attributes": attrs, "expression": expr,
            "identity": ids, "nuisance": nuis}


def cache_dir(root: str | Path | None, split: str, num_images: int, image_size: int, seed: int) -> Path:
    """`<root>/v<GENERATOR_VERSION>/size{S}-seed{seed}/{split}-{N}`: every generator version has its
    own folder, so processes running different versions share a root without overwriting each other."""
    root = Path(root) if root is not None else default_root()
    return root / CACHE_LAYOUT / f"size{image_size}-seed{seed}" / f"{split}-{num_images}"


def _write_cache(path: Path, split: str, num_images: int, image_size: int, seed: int, workers: int,
                 progress: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    (tmp / "images").mkdir(parents=True)
    (tmp / "masks").mkdir()
    try:
        arr = generate_arrays(split, num_images, image_size, seed, workers, str(tmp), progress)
        np.savez(tmp / "labels.npz", landmarks=arr["landmarks"], attributes=arr["attributes"],
                 expression=arr["expression"], identity=arr["identity"],
                 **{f"nuisance_{k}": v for k, v in arr["nuisance"].items()})
        meta = {
            "generator": "SynthFace", "generator_version": GENERATOR_VERSION, "layout": CACHE_LAYOUT,
            "split": split, "num_images": num_images, "image_size": image_size, "seed": seed,
            "parsing_classes": list(PARSING_CLASSES), "parsing_convention": "LaPa; left/right = subject's",
            "attribute_names": list(ATTRIBUTES), "expressions": list(EXPRESSIONS),
            "nuisance_keys": list(NUISANCE_KEYS),
            "landmarks": "iBUG 68, (x, y) pixels, pixel centres at integer coordinates",
        }
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        if path.exists() and _cached_version(path) == GENERATOR_VERSION:
            # a concurrent writer finished this split first: keep its cache (readers may be using it)
            shutil.rmtree(tmp, ignore_errors=True)
            return
        if path.exists():  # a cache written by another generator version: replace it
            stale = path.parent / f".{path.name}.stale-{os.getpid()}"
            os.rename(path, stale)
            shutil.rmtree(stale, ignore_errors=True)
        try:
            os.rename(tmp, path)
        except OSError:
            if not (path / "meta.json").exists():  # lost a race with a concurrent writer
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _cached_version(path: Path) -> str | None:
    try:
        return json.loads((path / "meta.json").read_text()).get("generator_version")
    except (OSError, ValueError):
        return None


def _read_png(path: Path, mode: str) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode != mode:
                raise ValueError(f"mode {im.mode}, expected {mode}")
            return np.asarray(im)
    except FileNotFoundError as e:
        raise FileNotFoundError(f"SynthFace cache is missing {path}; delete {path.parent.parent} to "
                                f"regenerate") from e
    except Exception as e:  # noqa: BLE001 - any decoding problem means a corrupt file
        raise OSError(f"SynthFace cache file {path} is corrupt ({e}); delete {path.parent.parent} to "
                      f"regenerate") from e


def read_cache(path: Path) -> SynthFaceSplit:
    meta = json.loads((path / "meta.json").read_text())
    n, s = meta["num_images"], meta["image_size"]
    images = np.zeros((n, s, s, 3), np.uint8)
    masks = np.zeros((n, s, s), np.uint8)

    def read(i: int) -> None:
        images[i] = _read_png(path / "images" / f"{i:06d}.png", "RGB")
        masks[i] = _read_png(path / "masks" / f"{i:06d}.png", "L")

    # PNG decoding releases the GIL: threads read a 30k-image split in ~1 s instead of ~10 s
    threads = min(16, os.cpu_count() or 1, max(1, n // 256))
    if threads > 1:
        with ThreadPoolExecutor(threads) as ex:
            list(ex.map(read, range(n)))
    else:
        for i in range(n):
            read(i)
    with np.load(path / "labels.npz") as z:
        lab = {k: z[k] for k in z.files}
    nuis = {k[len("nuisance_"):]: v for k, v in lab.items() if k.startswith("nuisance_")}
    attrs = lab["attributes"]
    expr = lab["expression"].astype(np.int64)
    return SynthFaceSplit(
        images=images, masks=masks, landmarks=lab["landmarks"].astype(np.float32), attributes=attrs,
        attribute_names=list(meta["attribute_names"]), expression=expr,
        identity=lab["identity"].astype(np.int64), nuisance=nuis,
        split=meta["split"], image_size=s, seed=meta["seed"], path=str(path), meta=meta,
    )


def load_synthface(split: str, num_images: int, image_size: int = 64, seed: int = 0, root=None,
                   progress: bool = True, workers: int = 2) -> SynthFaceSplit:
    """Load (generating and caching on first use) `num_images` SynthFace images of `split`."""
    split_index(split)
    if num_images <= 0:
        raise ValueError("num_images must be positive")
    path = cache_dir(root, split, num_images, image_size, seed)
    if not _is_current(path):
        with _generation_lock(path):
            if not _is_current(path):  # another process may have written it while this one waited
                _write_cache(path, split, num_images, image_size, seed, workers, progress)
    if os.environ.get("PACO_FR_SPLIT_CACHE") == "1":
        return _memory_cached(path)
    return read_cache(path)


def _is_current(path: Path) -> bool:
    return (path / "meta.json").exists() and _cached_version(path) == GENERATOR_VERSION


@contextlib.contextmanager
def _generation_lock(path: Path):
    """One process at a time generates a split: a concurrent loader of the same split (pytest-xdist
    workers, the device study's data stage beside a run) waits, then reads what the first one wrote
    instead of generating it again. Without fcntl (Windows) there is no lock; the atomic rename of
    _write_cache still keeps the cache whole."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    # beside the size folder (`<root>/<layout>/.size64-seed0-val-600.lock`), which holds caches only
    path.parent.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent.parent / f".{path.parent.name}-{path.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


_MEMORY: dict[tuple[str, float], SynthFaceSplit] = {}


def _memory_cached(path: Path) -> SynthFaceSplit:
    """Opt-in (PACO_FR_SPLIT_CACHE=1, set by the device study): a split read once per process and
    shared by every later load of it (pre-training runs and evaluation cells of one process read the
    same splits again and again). Callers must not modify the arrays. Keyed by the cache folder and
    its meta.json's mtime, so a regenerated cache is read again."""
    key = (str(path), (path / "meta.json").stat().st_mtime)
    if key not in _MEMORY:
        _MEMORY[key] = read_cache(path)
    return _MEMORY[key]
