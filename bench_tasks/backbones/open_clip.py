"""`open_clip:<arch>:<file>` — an OpenCLIP checkpoint of architecture <arch>, its image tower read block by block.

The file is `open_clip.create_model(<arch>)`'s state dict as OpenCLIP's training writes it (under
`state_dict`, with or without `module.`).

Needs the optional `open-clip-torch` package (`pip install -e .[backbones]`); nothing is downloaded
(the model is built from its config, the weights come from the file). ViT image towers
(`ViT-B-16`, `ViT-L-14`, ...): the blocks' outputs before `ln_post`, `cls` the tower's pooled
embedding before the projection (`ln_post` of the class token, or its mean pool where the arch
says so). The model is built at the task's input size and the file's position embedding
resampled (OpenCLIP's own `resize_pos_embed`). Mean and std: the model's (`preprocess_cfg`,
OpenAI's CLIP values by default); the input size it was made for: its `image_size`.

The activation comes from <arch> alone (`ViT-B-16` GELU, `ViT-B-16-quickgelu` QuickGELU): a file in
FaRL's release layout (QuickGELU weights) is refused under a GELU arch, naming `farl:` and the
`-quickgelu` arch (`refuse_gelu_for_quickgelu_file`), as `farl:` refuses OpenCLIP's layouts.
"""

from __future__ import annotations

import logging

import torch

from bench_tasks.backbones.base import BenchBackbone, Family, weights_sha256, wrong_family
from bench_tasks.backbones.block_tokens import BlockTokenEncoder
from bench_tasks.backbones.timm_file import CheckpointError, read_weights, strip_prefix, unwrap
from bench_tasks.contracts import BackboneURI
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import CLIP_MEAN, CLIP_STD


def _open_clip():
    try:
        import open_clip
    except ImportError:
        raise ImportError("`open_clip:` backbones need the optional `open-clip-torch` package: "
                          "pip install -e .[backbones]") from None
    return open_clip


class OpenClipViTEncoder(BlockTokenEncoder):
    block_pattern = r"(?:^|\.)transformer\.resblocks\.(\d+)\."
    embedding_names = ("conv1.", "class_embedding", "positional_embedding", "ln_pre.")

    def __init__(self, visual, arch: str, mean, std):
        width = int(visual.conv1.weight.shape[0])
        depth = len(visual.transformer.resblocks)
        patch = int(visual.conv1.weight.shape[-1])
        super().__init__(arch, width, depth, patch, 1, mean, std)
        self.visual = visual

    def run_blocks(self, x: torch.Tensor, wanted: list[int]):
        v = self.visual
        tokens = v._embeds(x)
        take = wanted or [self.depth - 1]
        tokens, inter = v.transformer.forward_intermediates(tokens, indices=take)
        blocks = dict(zip(take, inter))
        pooled, last = v._pool(tokens)
        return blocks, pooled, last


def parse_spec(rest: str) -> tuple[str, str]:
    parsed = BackboneURI("open_clip", rest)
    arch, _, file = rest.partition(":")
    if not arch or not file:
        raise ValueError(f"{parsed}: expected open_clip:<arch>:<weight file>, e.g. open_clip:ViT-B-16:model.pt")
    return arch, file


def model_config(arch: str) -> dict:
    cfg = _open_clip().get_model_config(arch)
    if cfg is None:
        known = ", ".join(m for m in _open_clip().list_models() if m.startswith("ViT-"))[:300]
        raise ValueError(f"open_clip:{arch}: OpenCLIP has no model config {arch!r} (ViT ones: {known} ...)")
    return cfg


def claims_keys(keys: set) -> str | None:
    if any(k.startswith("visual.") for k in keys) and "logit_scale" in keys and "token_embedding.weight" in keys:
        return "a CLIP / OpenCLIP checkpoint (visual.* and a text tower)"
    return None


def refuse_gelu_for_quickgelu_file(arch: str, file, raw) -> str | None:
    """Why a GELU arch must not read this file (None when it may): FaRL's release layout (a CLIP
    state dict alone under `state_dict`, as `farl:` reads) holds weights trained with QuickGELU, and
    no weight tells the activation, so a GELU tower would load them without error and compute other
    features."""
    if not (isinstance(raw, dict) and set(raw) == {"state_dict"} and isinstance(raw["state_dict"], dict)):
        return None
    if model_config(arch).get("quick_gelu"):
        return None
    quick = f"{arch}-quickgelu"
    try:
        model_config(quick)
        alt = f"`open_clip:{quick}:{file}`"
    except ValueError:
        alt = "an OpenCLIP arch with `quick_gelu: true`"
    return (f"weight file {file} has FaRL's release layout (a CLIP state dict alone under `state_dict`); "
            f"FaRL, like OpenAI's CLIP, was trained with QuickGELU and OpenCLIP's {arch} computes GELU, which "
            f"would load it without error and give other features: use `farl:{file}` or {alt}. A GELU "
            "model saved this way by hand: save its state dict bare (keys visual.* at the top level)")


@BACKBONES.register("open_clip")
def build(rest: str, image_size: int) -> BenchBackbone:
    """rest = '<arch>:<weight file>': an OpenCLIP checkpoint of architecture <arch> (ViT image towers)."""
    arch, file = parse_spec(rest)
    oc = _open_clip()
    model_config(arch)
    raw = read_weights(file)
    quick = refuse_gelu_for_quickgelu_file(arch, file, raw)
    if quick:
        raise CheckpointError(quick)
    sd = strip_prefix(unwrap(raw, ("state_dict", "model")), ("module.",))
    if not claims_keys(set(sd)):
        raise CheckpointError(wrong_family(file, sd.keys(), "an OpenCLIP checkpoint (keys visual.*, "
                                           "token_embedding.weight, logit_scale)", "open_clip"))
    logging.disable(logging.WARNING)  # "No pretrained weights loaded": they come from the file, below
    try:
        model = oc.create_model(arch, pretrained=None, force_image_size=image_size, device="cpu")
    finally:
        logging.disable(logging.NOTSET)
    if not hasattr(model.visual, "transformer") or not hasattr(model.visual, "conv1"):
        raise ValueError(f"open_clip:{arch}: its image tower is a {type(model.visual).__name__}; `open_clip:` "
                         "reads ViT image towers (timm towers: export the trunk and use `timm:`)")
    oc.model.resize_pos_embed(sd, model)  # the file's grid -> the task's grid (in place)
    own = model.state_dict()
    missing, unexpected = sorted(set(own) - set(sd)), sorted(set(sd) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"weight file {file} does not fit OpenCLIP {arch}: missing keys {missing[:6]} "
                              f"({len(missing)}), unexpected keys {unexpected[:6]} ({len(unexpected)})")
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if "size mismatch" in ln]
        raise CheckpointError(f"weight file {file} does not fit OpenCLIP {arch}: {'; '.join(lines[:3])}") from None
    pre = getattr(model.visual, "preprocess_cfg", None) or {}
    mean, std = tuple(pre.get("mean") or CLIP_MEAN), tuple(pre.get("std") or CLIP_STD)
    enc = OpenClipViTEncoder(model.visual.eval(), f"open_clip-{arch}", mean, std)
    return BenchBackbone(f"open_clip:{rest}", enc, weights_sha256(file), source=str(file))


def native_size(rest: str) -> int | None:
    try:
        size = model_config(rest.partition(":")[0]).get("vision_cfg", {}).get("image_size")
    except Exception:  # noqa: BLE001 - a size the plan cannot tell
        return None
    size = size[0] if isinstance(size, (list, tuple)) else size
    return int(size) if size else None


def reference(rest: str) -> str | None:
    """ViT-B image towers of OpenAI's layout map onto paco_fr's CLIP ViT-B (`vit_base_clip`)."""
    try:
        v = model_config(rest.partition(":")[0]).get("vision_cfg", {})
    except Exception:  # noqa: BLE001
        return None
    size = native_size(rest)
    if v.get("width") == 768 and v.get("layers") and v.get("patch_size") and size and not v.get("timm_model_name"):
        return f"vit_base_clip@{size}/{v['patch_size']}/d{v['layers']}"
    return None


build.family = Family(native_size=native_size, reference=reference,
                      reference_reason=lambda rest: None if reference(rest) else
                      "only ViT-B image towers (width 768) have a `supervised:` architecture (vit_base_clip)",
                      claims_keys=claims_keys)
