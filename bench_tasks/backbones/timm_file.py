"""`timm:<model>[:<file>]` — any timm model, with a local weight file or timm's own pretrained weights.

ViT-family models (VisionTransformer, EVA, DeiT, BEiT, CLIP/SigLIP/DINOv2 ViTs) are read block by
block (`TimmViTBackbone`); every other model (ResNet, ConvNeXt, EfficientNet, RegNet, Swin, ...)
stage by stage, as a feature pyramid (bench_tasks.backbones.timm_pyramid). Mean and std come from
the model's pretrained config (ImageNet's where timm has none).

Also the loading helpers the other file-based schemes (paco_fr, mcf, mae) share.

Untrusted files are read with `safetensors` or `torch.load(weights_only=True)` only. A file whose
keys do not fit the model raises an error naming the file and the missing / unexpected keys.
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file

from bench_tasks.backbones.base import BenchBackbone, Family, describe_folder, weights_sha256, whose_keys
from bench_tasks.backbones.timm_pyramid import TimmPyramid, claims_keys, classifier_prefixes, supports_pyramid
from bench_tasks.contracts import BackboneURI
from bench_tasks.errors import BackboneError, closest
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    BackboneOutput,
    ViTBackbone,
    create_vit,
    load_vit_state_dict,
)


class CheckpointError(BackboneError, KeyError):
    """A weight file that does not fit the backbone (message names the file and keys)."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


def read_weights(path: str | Path) -> dict:
    """Load a .safetensors file or a torch pickle with weights_only=True (never arbitrary code)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise CheckpointError(describe_folder(path))
    if not path.is_file():
        raise FileNotFoundError(f"backbone weight file not found: {path}")
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise CheckpointError(describe_load_error(path, err)) from err
    if not isinstance(obj, dict):
        raise CheckpointError(f"weight file {path} holds a {type(obj).__name__}, not a state dict")
    return obj


def read_safetensors(path: str | Path) -> dict:
    try:
        return load_file(str(path), device="cpu")
    except Exception as err:  # SafetensorError, a header that is not JSON, a truncated file
        raise CheckpointError(
            f"weight file {path} is not a readable .safetensors file "
            f"({type(err).__name__}: {_first(err)}); expected a file written by safetensors.torch.save_file "
            "(e.g. `python -m paco_fr export`)") from err


def _first(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else ""


def describe_load_error(path: Path, err: BaseException) -> str:
    """One clear sentence for a torch.load(weights_only=True) failure (torch's own text is a page of
    documentation that ends by suggesting weights_only=False, which would run the file's code)."""
    text = str(err)
    m = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if m:
        return (f"weight file {path} holds Python objects besides tensors (it references {m.group(1)}), "
                "which are never unpickled here (weights_only=True); re-save only the tensors, e.g. "
                "torch.save(model.state_dict(), 'weights.pth') or safetensors.torch.save_file")
    m = re.search(r"WeightsUnpickler error:\s*(.+?)\s*(?:\n\n|$)", text, flags=re.S)
    detail = " ".join(m.group(1).split()) if m else f"{type(err).__name__}: {_first(err)}"
    return (f"weight file {path} is not a readable PyTorch checkpoint ({detail}); "
            "expected a state dict saved with torch.save, or a .safetensors file")


def unwrap(obj: dict, keys=("model", "state_dict", "module", "encoder")) -> dict[str, torch.Tensor]:
    """The tensor dict inside a training checkpoint ({'model': sd}, {'state_dict': sd}, ...)."""
    for k in keys:
        if k in obj and isinstance(obj[k], dict):
            return unwrap(obj[k], keys)
    return obj


def strip_prefix(sd: dict, prefixes=("module.", "encoder.", "backbone.", "vit.")) -> dict:
    changed = True
    while changed:
        changed = False
        for p in prefixes:
            if sd and all(k.startswith(p) for k in sd):
                sd = {k[len(p):]: v for k, v in sd.items()}
                changed = True
    return sd


def infer_vit_kwargs(sd: dict[str, torch.Tensor], path) -> dict:
    """embed_dim, depth, num_heads (dim // 64, the ViT convention), mlp_ratio, patch_size and
    the checkpoint's image size from a timm-keyed ViT state dict."""
    needed = ("patch_embed.proj.weight", "pos_embed", "blocks.0.mlp.fc1.weight")
    missing = [k for k in needed if k not in sd]
    if missing:
        raise CheckpointError(
            f"{path}: not a timm-style ViT state dict: missing keys {missing}; "
            f"first keys present: {sorted(sd)[:12]}")
    w = sd["patch_embed.proj.weight"]
    dim, patch = int(w.shape[0]), int(w.shape[-1])
    depth = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
    n_tokens = sd["pos_embed"].shape[1] - (1 if "cls_token" in sd else 0)
    grid = int(round(math.sqrt(n_tokens)))
    return {"embed_dim": dim, "depth": depth, "num_heads": max(1, dim // 64),
            "mlp_ratio": sd["blocks.0.mlp.fc1.weight"].shape[0] / dim, "patch_size": patch,
            "ckpt_img_size": grid * patch}


def load_into(vit: torch.nn.Module, sd: dict, path) -> None:
    try:
        load_vit_state_dict(vit, sd, strict=True)
    except KeyError as err:
        msg = err.args[0] if err.args else str(err)
        raise CheckpointError(f"weight file {path} does not fit the backbone: {msg}") from None
    except RuntimeError as err:  # shape mismatches: torch lists every tensor, keep the first few
        lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln]
        detail = "; ".join(lines[:3]) + (f"; ... (+{len(lines) - 3} more)" if len(lines) > 3 else "")
        raise CheckpointError(f"weight file {path} does not fit the backbone: {detail or _first(err)}") from None


def build_vit_from_sd(uri: str, path, sd: dict, image_size: int, mean, std,
                      arch_name: str = "vit_base", weights_hash: str | None = None) -> BenchBackbone:
    """A timm-keyed ViT (MAE/MCF/timm style) with its shape inferred from the state dict."""
    kw = infer_vit_kwargs(sd, path)
    kw.pop("ckpt_img_size")
    patch = kw.pop("patch_size")
    vit = create_vit(arch_name, img_size=image_size, patch_size=patch, **kw)
    load_into(vit, sd, path)
    bb = ViTBackbone(vit, arch=arch_name, mean=mean, std=std)
    return BenchBackbone(uri, bb, weights_hash or weights_sha256(path), source=str(path))


def _mean_std(model) -> tuple:
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("mean", IMAGENET_MEAN)), tuple(cfg.get("std", IMAGENET_STD))


class TimmViTBackbone(ViTBackbone):
    """Any timm ViT-family model (VisionTransformer, EVA/EVA-02, DeiT, BEiT, CLIP/SigLIP towers,
    DINOv2, ...): block outputs come from timm's own `forward_intermediates` (so rotary embeddings,
    register tokens, patch dropout and the like follow the model's code), the pooled embedding
    from `forward_head(pre_logits=True)` (CLS or average pool, fc_norm, as the model defines)."""

    def grid_size(self, h: int, w: int) -> tuple[int, int]:
        if getattr(self.vit.patch_embed, "dynamic_img_pad", False):  # input padded to a multiple of the patch
            return math.ceil(h / self.patch_size), math.ceil(w / self.patch_size)
        return h // self.patch_size, w // self.patch_size

    def forward_features(self, x: torch.Tensor, layers: list[int] | None = None) -> BackboneOutput:
        grid = self.grid_size(x.shape[-2], x.shape[-1])
        wanted = sorted({i % self.depth for i in (layers or [])})
        take = wanted or [self.depth - 1]
        final, inter = self.vit.forward_intermediates(x, indices=take, return_prefix_tokens=True, norm=False,
                                                      output_fmt="NLC")
        by_index = dict(zip(take, inter))
        patch, cls_tokens = [], []
        for i in wanted:
            sp, prefix = by_index[i] if isinstance(by_index[i], tuple) else (by_index[i], None)
            patch.append(sp)
            cls_tokens.append(prefix[:, 0] if prefix is not None and prefix.shape[1] else sp.mean(1))
        cls = self.vit.forward_head(final, pre_logits=True)
        return BackboneOutput(cls=cls, patch_tokens=patch, grid=grid, last_tokens=final[:, self.num_prefix_tokens:],
                              cls_tokens=cls_tokens)


def create_timm_vit(model_name: str, image_size: int, uri: str, pretrained: bool = False) -> torch.nn.Module:
    """A timm ViT-family model without classifier, at `image_size` (dynamic size when supported)."""
    vit = create_timm_model(model_name, image_size, uri, pretrained)
    missing = missing_vit_parts(vit)
    if missing:
        raise ValueError(f"{uri}: timm model {model_name!r} ({type(vit).__name__}) is not a ViT-family model "
                         f"(it has no {', '.join(missing)}); the harness reads block tokens of plain-patch "
                         "transformers (VisionTransformer, EVA, DeiT, BEiT, CLIP/SigLIP/DINOv2 ViTs)")
    return vit


def create_timm_model(model_name: str, image_size: int, uri: str, pretrained: bool = False) -> torch.nn.Module:
    """Any timm model without classifier, at `image_size` where it takes one (dynamic size when
    supported); a CNN takes any size anyway."""
    if not timm.is_model(model_name):
        base = model_name.split(".")[0]
        names = timm.list_models()
        hint = closest(base, names) or closest(base, [n for n in names if n.startswith(base.split("_")[0])])
        raise ValueError(f"{uri}: timm has no model {model_name!r}{hint} (timm {timm.__version__}; "
                         "see timm.list_models('vit_*'))")
    kw = {"pretrained": pretrained, "num_classes": 0}
    # any input size: dynamic size (and padding to a multiple of the patch, e.g. 14 at 64 px) where the
    # model supports it; else the model built at the task's size; else its default size
    for extra in ({"img_size": image_size, "dynamic_img_size": True, "dynamic_img_pad": True},
                  {"img_size": image_size, "dynamic_img_size": True}, {"img_size": image_size}, {}):
        try:
            vit = timm.create_model(model_name, **extra, **kw)
            break
        except TypeError:
            continue
    return vit


def timm_encoder(model: torch.nn.Module, model_name: str, uri: str) -> torch.nn.Module:
    """The encoder that reads `model`: block tokens of a ViT-family model, else its stages."""
    mean, std = _mean_std(model)
    if not missing_vit_parts(model):
        return TimmViTBackbone(model, arch=model_name, mean=mean, std=std)
    lacks = supports_pyramid(model)
    if lacks:
        raise ValueError(f"{uri}: timm model {model_name!r} ({type(model).__name__}) is neither a ViT-family "
                         f"model nor one read stage by stage (it has no {', '.join(lacks)}; timm "
                         f"{timm.__version__})")
    return TimmPyramid(model, arch=model_name, mean=mean, std=std)


def missing_vit_parts(model: torch.nn.Module) -> list[str]:
    """What a timm model lacks of the ViT family the harness reads (block tokens of a plain-patch
    transformer through `forward_intermediates`); empty when it is one."""
    return [a for a in ("blocks", "patch_embed", "forward_intermediates", "num_prefix_tokens")
            if not hasattr(model, a)]


def timm_filter(vit: torch.nn.Module, sd: dict) -> dict:
    """timm's own checkpoint conversion for the model's family (`checkpoint_filter_fn` of its module:
    original EVA / CLIP / DINOv2 / BEiT key layouts, position-embedding resampling)."""
    fn = getattr(sys.modules.get(type(vit).__module__), "checkpoint_filter_fn", None)
    if fn is None:
        return sd
    try:
        return fn(sd, vit)
    except TypeError:
        return fn(sd)


def _tensor_hash(vit: torch.nn.Module, recipe: str) -> str:
    h = hashlib.sha256(recipe.encode())
    for k, v in vit.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def load_timm_file(model: torch.nn.Module, file: str) -> None:
    """A local weight file into a timm model: timm's checkpoint filter of the model's family, its
    classifier dropped; a file of another family is refused naming the scheme that reads it."""
    sd = strip_prefix(unwrap(read_weights(file)))
    if missing_vit_parts(model):  # a CNN / hierarchical model: no position embeddings to resample
        drop = classifier_prefixes(model)
        own = model.state_dict()
        sd = {k: v for k, v in timm_filter(model, sd).items() if k in own or not k.startswith(drop)}
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        if missing or unexpected:
            others = [f"{name}, which `{sch}:` reads" for sch, name in whose_keys(sd)]
            hint = f"; it looks like {others[0]}" if others else ""
            raise CheckpointError(
                f"weight file {file} does not fit timm model {type(model).__name__}: missing keys "
                f"{missing[:6]}{' ...' if len(missing) > 6 else ''} ({len(missing)}), unexpected keys "
                f"{unexpected[:6]}{' ...' if len(unexpected) > 6 else ''} ({len(unexpected)}){hint}")
        try:
            model.load_state_dict(sd, strict=True)
        except RuntimeError as err:
            lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln]
            raise CheckpointError(f"weight file {file} does not fit timm model {type(model).__name__}: "
                                  f"{'; '.join(lines[:3]) or _first(err)}") from None
        return
    load_into(model, timm_filter(model, sd), file)


@BACKBONES.register("timm")
def build(rest: str, image_size: int) -> BenchBackbone:
    """rest = '<timm model name>[:<weight file>]': any timm model (ViTs block by block, CNNs and
    hierarchical models stage by stage). With a file, the file's tensors (safetensors or
    torch.load(weights_only=True)) go through timm's checkpoint filter of the model's family;
    without one, timm's pretrained weights (downloaded by timm to its cache, or found there when
    offline)."""
    parsed = BackboneURI("timm", rest)
    model_name, file, uri = parsed.name, parsed.file, str(parsed)
    if not file:
        try:
            model = create_timm_model(model_name, image_size, uri, pretrained=True)
        except (ValueError, TypeError):
            raise
        except Exception as err:  # no network, no cached weights, no pretrained tag
            first = (str(err).strip().splitlines() or [""])[0]
            raise CheckpointError(
                f"{uri}: timm could not load pretrained weights for {model_name!r} ({type(err).__name__}: {first}); "
                f"pass a local file as timm:{model_name}:<weights.safetensors|.pth>, or use a tag with weights "
                "(timm.list_pretrained('" + model_name.split(".")[0] + "*'))") from None
        return BenchBackbone(uri, timm_encoder(model, model_name, uri),
                             _tensor_hash(model, f"timm-pretrained:{model_name}"), source=f"timm:{model_name}")
    model = create_timm_model(model_name, image_size, uri)
    encoder = timm_encoder(model, model_name, uri)
    load_timm_file(model, file)
    return BenchBackbone(uri, encoder, weights_sha256(file), source=str(file))


def _meta_model(name: str) -> torch.nn.Module:
    """timm model `name` on the meta device (its definition and pretrained config, no weights)."""
    with torch.device("meta"):
        return timm.create_model(name, pretrained=False, num_classes=0)


def timm_native_size(spec: str) -> int | None:
    """timm's pretrained input size of the model (the last field of its `input_size`)."""
    name = spec.partition(":")[0]
    if not timm.is_model(name):
        return None
    size = ((getattr(_meta_model(name), "pretrained_cfg", None) or {}).get("input_size") or [None])[-1]
    return int(size) if size else None


def is_timm_vit(name: str) -> bool:
    """Whether timm model `name` is a ViT-family model."""
    return not missing_vit_parts(_meta_model(name))


def timm_reference(spec: str) -> str | None:
    """The ceiling / random-init architecture of a timm model that is not a ViT: the same timm
    model at its pretrained input size (`resnet18@224`); ViTs are handled by their shape."""
    name = spec.partition(":")[0]
    if not timm.is_model(name) or is_timm_vit(name):
        return None
    native = timm_native_size(spec)
    return f"{name}@{native}" if native else name


def timm_random_arch(arch: str, image_size: int) -> torch.nn.Module | None:
    """`random:<timm model>`: any timm model at random init (its encoder)."""
    if not timm.is_model(arch):
        return None
    model = create_timm_model(arch, image_size, f"random:{arch}")
    return timm_encoder(model, arch, f"random:{arch}")


def timm_resized(spec: str) -> str:
    name = spec.partition(":")[0]
    if timm.is_model(name) and not is_timm_vit(name):
        return "its stages' feature maps scale with the input (no position embedding)"
    return "position embedding resampled"


build.family = Family(native_size=timm_native_size, reference=timm_reference, random_arch=timm_random_arch,
                      claims_keys=claims_keys, resized=timm_resized)
