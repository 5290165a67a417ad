"""timm models that are not plain ViTs (ResNet, ConvNeXt, EfficientNet, RegNet, Swin, ...) as
feature pyramids: the stages of the model's `feature_info` read through timm's own
`forward_intermediates`, the pooled embedding from `forward_head(pre_logits=True)`.

The stages are those `timm.create_model(name, features_only=True)` would return (ResNet: the stem
at stride 2, then strides 4, 8, 16, 32); the last one is the model's final feature map (after its
final norm or head convolution where it has one: Swin's norm, EfficientNet's 1x1 `conv_head`).
A model whose pooled embedding is wider than its final map (MobileNetV3's `conv_head` after the
pool) gets the average-pooled final map as `cls` instead, so the probes read one width.
"""

from __future__ import annotations

import torch
from torch import nn

from bench_tasks.backbones.pyramid import PyramidEncoder, to_nchw


def pyramid_stages(model: nn.Module) -> tuple[list[int], list[int]]:
    """(widths, strides) of a timm model's stages; the last width is its final map's."""
    info = getattr(model, "feature_info", None)
    if not info:
        raise ValueError(f"timm model {type(model).__name__} has no feature_info (stage widths and strides)")
    info = list(info)
    channels = [int(f["num_chs"]) for f in info]
    strides = [int(f["reduction"]) for f in info]
    channels[-1] = int(getattr(model, "num_features", channels[-1]))
    return channels, strides


class TimmPyramid(PyramidEncoder):
    """A timm model read stage by stage (`forward_intermediates`)."""

    def __init__(self, model: nn.Module, arch: str, mean, std):
        channels, strides = pyramid_stages(model)
        super().__init__(arch, channels, strides, mean, std)
        self.pyramid = model  # the attribute name keeps its parameters out of the ViT layer decay
        self.own_pool = int(getattr(model, "head_hidden_size", channels[-1]) or channels[-1]) == channels[-1]

    def stage_maps(self, x: torch.Tensor, wanted: list[int]):
        last_i = self.depth - 1
        take = sorted(set(wanted) | {last_i})
        final, inter = self.pyramid.forward_intermediates(x, indices=take, norm=False, output_fmt="NCHW",
                                                        intermediates_only=False)
        maps = dict(zip(take, inter))
        last = to_nchw(final, self.channels[-1])
        maps[last_i] = last
        if self.own_pool:
            pooled = self.pyramid.forward_head(final, pre_logits=True)
        else:
            pooled = last.mean((2, 3))
        return maps, last, pooled


def supports_pyramid(model: nn.Module) -> list[str]:
    """What a timm model lacks to be read as a pyramid (empty when it can be)."""
    return [a for a in ("forward_intermediates", "feature_info", "forward_head") if not hasattr(model, a)]


def classifier_prefixes(model: nn.Module) -> tuple[str, ...]:
    """The key prefixes of the model's classifier (`fc.`, `head.fc.`, `classifier.`), from its
    pretrained config: a file's classifier weights are dropped (the harness reads features)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    names = cfg.get("classifier") or ()
    names = [names] if isinstance(names, str) else list(names)
    return tuple(f"{n}." for n in names) + ("head.fc.", "fc.", "classifier.")


# keys that tell a state dict's family (for `timm:` and for other loaders' wrong-family messages)
def claims_keys(keys: set) -> str | None:
    if "patch_embed.proj.weight" in keys and any(k.startswith("blocks.0.") for k in keys):
        return "a timm-style ViT state dict"
    if any(".prelu." in k or k == "prelu.weight" for k in keys):
        return None  # insightface's iResNet (arcface:)
    if any(k.startswith("conv1.") for k in keys) and "layer1.0.conv1.weight" in keys:
        return "a ResNet state dict (timm / torchvision keys)"
    if any(k.startswith("stages.0.blocks.0.conv_dw") for k in keys):
        return "a timm ConvNeXt state dict"
    if any(k.startswith("conv_stem.") for k in keys) and any(k.startswith("blocks.0.0.") for k in keys):
        return "a timm EfficientNet / MobileNet state dict"
    if any(k.startswith("layers.0.blocks.0.attn.") for k in keys):
        return "a timm Swin Transformer state dict"
    return None
