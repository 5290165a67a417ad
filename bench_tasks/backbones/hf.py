"""`hf:<folder>` — a Hugging Face `save_pretrained` folder of a ViT, ViT-MAE, DINOv2 or CLIP vision model, read offline.

The folder holds `config.json` and `model.safetensors`; DINOv2 with or without registers; CLIP's
vision tower of a CLIPModel or CLIPVisionModel folder.

Read offline (`local_files_only=True`; nothing is downloaded) with the optional `transformers`
package (`pip install -e .[backbones]`). The blocks' outputs come from the model's own
`output_hidden_states` (before the final norm, as the timm ViT path); `cls` is the model's pooled
embedding (CLIP: `post_layernorm` of the class token; ViT, ViT-MAE, DINOv2: the class token after
the final layer norm). ViT-MAE runs with no masking and its patches in order. The input size it
was made for and its mean / std come from the folder's `preprocessor_config.json` (`crop_size`,
else `size`; `image_mean`, `image_std`), else from `config.json` (`image_size`; CLIP's or
ImageNet's mean / std). Other sizes interpolate the position embedding (`interpolate_pos_encoding`).
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import torch

from bench_tasks.backbones.base import BenchBackbone, Family, weights_sha256, whose_keys
from bench_tasks.backbones.block_tokens import BlockTokenEncoder
from bench_tasks.backbones.timm_file import CheckpointError, read_weights, strip_prefix, unwrap
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD

# model_type of config.json -> (transformers class, pooled embedding: "pooler" or "cls")
KINDS = {
    "vit": ("ViTModel", "cls"),
    "vit_mae": ("ViTMAEModel", "cls"),
    "dinov2": ("Dinov2Model", "cls"),
    "dinov2_with_registers": ("Dinov2WithRegistersModel", "cls"),
    "clip": ("CLIPVisionModel", "pooler"),
    "clip_vision_model": ("CLIPVisionModel", "pooler"),
}
WEIGHT_NAMES = ("model.safetensors", "pytorch_model.bin")


def read_config(folder: Path) -> dict:
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"{folder}/config.json is not a readable JSON file ({err})") from None


def vision_config(cfg: dict) -> dict:
    """The vision part of a config (CLIP's `vision_config`; the config itself otherwise)."""
    return cfg.get("vision_config") or cfg if cfg.get("model_type") == "clip" else cfg


def preprocessor(folder: Path) -> dict:
    p = folder / "preprocessor_config.json"
    try:
        return json.loads(p.read_text()) if p.is_file() else {}
    except (OSError, ValueError):
        return {}


def _size(v) -> int | None:
    if isinstance(v, dict):
        v = v.get("height") or v.get("shortest_edge")
    return int(v) if isinstance(v, (int, float)) and v else None


def native_size_of(folder: Path) -> int | None:
    pre = preprocessor(folder)
    return (_size(pre.get("crop_size")) or _size(pre.get("size"))
            or _size(vision_config(read_config(folder)).get("image_size")))


def mean_std(folder: Path, model_type: str) -> tuple[tuple, tuple]:
    pre = preprocessor(folder)
    if pre.get("image_mean") and pre.get("image_std"):
        return tuple(pre["image_mean"]), tuple(pre["image_std"])
    return (CLIP_MEAN, CLIP_STD) if model_type.startswith("clip") else (IMAGENET_MEAN, IMAGENET_STD)


def check_folder(rest: str) -> tuple[Path, dict]:
    folder = Path(rest).expanduser()
    if folder.is_file():
        try:
            keys = set(strip_prefix(unwrap(read_weights(folder))))
        except Exception:  # noqa: BLE001 - an unreadable file: no family to name
            keys = set()
        found = whose_keys(keys)
        hint = f" (it looks like {found[0][1]}, which `{found[0][0]}:` reads)" if found else ""
        raise CheckpointError(f"hf:{rest}: {folder} is a file; `hf:` reads a Hugging Face folder (config.json "
                              f"and model.safetensors, what save_pretrained writes){hint}")
    if not folder.is_dir():
        raise FileNotFoundError(f"backbone folder not found: {folder} (hf:<folder> reads a save_pretrained folder)")
    if not (folder / "config.json").is_file():
        raise CheckpointError(f"hf:{rest}: {folder} has no config.json (it holds: "
                              f"{', '.join(sorted(p.name for p in folder.iterdir())[:8]) or 'nothing'}); "
                              "`hf:` reads what save_pretrained writes")
    cfg = read_config(folder)
    kind = cfg.get("model_type")
    if kind not in KINDS:
        raise CheckpointError(f"hf:{rest}: model_type {kind!r} of {folder}/config.json is not read here; "
                              f"`hf:` reads {', '.join(sorted(KINDS))}")
    if not any((folder / n).is_file() for n in WEIGHT_NAMES) and not list(folder.glob("model-*.safetensors")):
        raise CheckpointError(f"hf:{rest}: {folder} has a config.json but no weights ({' or '.join(WEIGHT_NAMES)})")
    return folder, cfg


@contextlib.contextmanager
def _quiet_transformers():
    import transformers

    log = transformers.utils.logging
    old, bars = log.get_verbosity(), log.is_progress_bar_enabled()
    log.set_verbosity_error()
    log.disable_progress_bar()  # its "Loading weights" bar: the harness prints its own lines
    try:
        yield
    finally:
        log.set_verbosity(old)
        if bars:
            log.enable_progress_bar()


class HFViTEncoder(BlockTokenEncoder):
    # transformers 4: encoder.layer.<i> (ViT, ViT-MAE, DINOv2), encoder.layers.<i> (CLIP's vision
    # tower); transformers 5: layers.<i> directly under the model
    block_pattern = r"(?:^|\.)layers?\.(\d+)\."
    embedding_names = ("embeddings.", "pre_layrnorm.")  # pre_layrnorm: CLIP's spelling

    def __init__(self, model, kind: str, arch: str, native: int | None, mean, std):
        vcfg = model.config
        prefix = 1 + int(getattr(vcfg, "num_register_tokens", 0) or 0)
        super().__init__(arch, vcfg.hidden_size, vcfg.num_hidden_layers, vcfg.patch_size, prefix, mean, std)
        self.model = model
        self.kind = kind
        self.native = native

    def run_blocks(self, x: torch.Tensor, wanted: list[int]):
        kw = {"output_hidden_states": True}
        if not self.kind.startswith("dinov2"):  # DINOv2 always interpolates
            kw["interpolate_pos_encoding"] = True
        if self.kind == "vit_mae":  # every patch, in order: no masking, an increasing noise
            n = (x.shape[-2] // self.patch_size) * (x.shape[-1] // self.patch_size)
            kw["noise"] = torch.arange(n, device=x.device, dtype=torch.float32).expand(x.shape[0], n)
        out = self.model(pixel_values=x, **kw)
        hidden = out.hidden_states  # embeddings, then each block's output
        blocks = {i: hidden[i + 1] for i in wanted}
        last = out.last_hidden_state
        if KINDS[self.kind][1] == "pooler":
            pooled = out.pooler_output
            last_tokens = last[:, self.num_prefix_tokens:]
        else:
            pooled = last[:, 0]
            last_tokens = last[:, self.num_prefix_tokens:]
        return blocks, pooled, last_tokens


def load_model(folder: Path, cfg: dict):
    try:
        import transformers
    except ImportError:
        raise ImportError("`hf:` backbones need the optional `transformers` package: pip install -e .[backbones]") from None
    kind = cfg["model_type"]
    cls = getattr(transformers, KINDS[kind][0])
    kw = {"local_files_only": True, "output_loading_info": True}
    if kind == "vit":
        kw["add_pooling_layer"] = False
    if kind == "vit_mae":
        kw["mask_ratio"] = 0.0
    with _quiet_transformers():
        try:
            model, info = cls.from_pretrained(str(folder), **kw)
        except Exception as err:  # noqa: BLE001 - unreadable weights, a config that does not fit
            first = (str(err).strip().splitlines() or [""])[0]
            raise CheckpointError(f"hf:{folder}: transformers could not load it as {KINDS[kind][0]} "
                                  f"({type(err).__name__}: {first})") from None
    missing = [k for k in info.get("missing_keys", []) if "pooler" not in k]
    mismatched = info.get("mismatched_keys", [])
    if missing or mismatched:
        raise CheckpointError(f"hf:{folder}: its weights do not fit its config ({KINDS[kind][0]}): missing keys "
                              f"{sorted(missing)[:6]} ({len(missing)}), mismatched {list(mismatched)[:3]}")
    return model.eval()


@BACKBONES.register("hf")
def build(rest: str, image_size: int) -> BenchBackbone:
    """rest = a save_pretrained folder of a ViT, ViT-MAE, DINOv2 or CLIP model (read offline)."""
    folder, cfg = check_folder(rest)
    model = load_model(folder, cfg)
    kind = cfg["model_type"]
    mean, std = mean_std(folder, kind)
    arch = f"hf-{kind}"
    enc = HFViTEncoder(model, kind, arch, native_size_of(folder), mean, std)
    return BenchBackbone(f"hf:{rest}", enc, weights_sha256(folder), source=str(folder))


# ----------------------------------------------------------------------------- what the plan reads

_WIDTHS = {192: "tiny", 384: "small", 768: "base", 1024: "large"}


def _reference(rest: str) -> tuple[str | None, str | None]:
    folder = Path(rest).expanduser()
    try:
        cfg = read_config(folder)
    except CheckpointError as err:
        return None, str(err)
    kind, v = cfg.get("model_type"), vision_config(cfg)
    width, depth, patch = v.get("hidden_size"), v.get("num_hidden_layers"), v.get("patch_size")
    native = native_size_of(folder)
    size = _WIDTHS.get(width)
    if size is None or not depth or not patch or not native:
        return None, f"its width {width} is none of the ViTs `supervised:` builds (192, 384, 768, 1024)"
    if kind in ("vit", "vit_mae"):
        return f"vit_{size}@{native}/{patch}/d{depth}", None
    if kind.startswith("clip") and size == "base":
        return f"vit_base_clip@{native}/{patch}/d{depth}", None
    if kind.startswith("dinov2") and size != "tiny":
        return f"vit_{size}_patch14_dinov2@{native}", None
    return None, f"no `supervised:` architecture matches a {kind} of width {width}"


def claims_folder(path: Path) -> str | None:
    cfg_path = path / "config.json"
    if not cfg_path.is_file():
        return None
    try:
        kind = json.loads(cfg_path.read_text()).get("model_type")
    except (OSError, ValueError):
        return None
    if kind in KINDS:
        return f"a Hugging Face {kind} model (config.json)"
    return None


build.family = Family(native_size=lambda rest: _try(native_size_of, rest), reference=lambda rest: _reference(rest)[0],
                      reference_reason=lambda rest: _reference(rest)[1], claims_folder=claims_folder)


def _try(fn, rest):
    try:
        return fn(Path(rest).expanduser())
    except Exception:  # noqa: BLE001 - a size the plan cannot tell
        return None
