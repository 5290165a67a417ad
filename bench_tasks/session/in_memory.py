"""An in-memory model as a run's backbone (bench_tasks.api.evaluate): a timm ViT-family module
(VisionTransformer, EVA, DeiT, BEiT, ...), any timm model read stage by stage (ResNet, ConvNeXt,
Swin, ...: bench_tasks.backbones.timm_pyramid), a `paco_fr.backbone.ViTBackbone` or a
`bench_tasks.backbones.base.BenchBackbone`. Its cells are keyed by `memory:<name>@<hash of its
weights>`, so a changed model never reuses old rows. Each cell gets its own copy (fine-tuning
never changes the object passed), resized to the task's input size with timm's `set_input_size`.

    source = InMemoryBackbones(wrap_module(vit))   # a BackboneCache: run_plan(plan, backbones=source)
"""

from __future__ import annotations

import copy
import hashlib

import torch
from torch import nn

from bench_tasks.backbones.base import BenchBackbone
from bench_tasks.backbones.timm_file import TimmViTBackbone, _mean_std, missing_vit_parts
from bench_tasks.backbones.timm_pyramid import TimmPyramid, supports_pyramid
from bench_tasks.errors import cause_line
from bench_tasks.registry import TASKS
from bench_tasks.run.runner import BackboneCache
from paco_fr.backbone import ViTBackbone


def _weights_hash(module: nn.Module, mean_std: tuple | None = None) -> str:
    """The model's class, weights and (a timm model) the input normalisation it is fed with: the same
    weights with another mean / std make other features, so another key."""
    h = hashlib.sha256(type(module).__name__.encode())
    if mean_std is not None:
        h.update(repr(mean_std).encode())
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def wrap_module(model: nn.Module | BenchBackbone, name: str | None = None) -> BenchBackbone:
    """An in-memory model as a BenchBackbone keyed `memory:<name>@<weights hash>`."""
    if isinstance(model, BenchBackbone):
        return model
    if isinstance(model, ViTBackbone):
        h = _weights_hash(model)
        vit_bb = model
        label = name or model.arch
    else:
        missing = missing_vit_parts(model)
        lacks = supports_pyramid(model) if missing else []
        if lacks:
            raise TypeError(f"evaluate(): a {type(model).__name__} is neither a timm ViT-family model (it has no "
                            f"{', '.join(missing)}) nor a timm model read stage by stage (it has no "
                            f"{', '.join(lacks)}); pass a timm model, a paco_fr ViTBackbone, or a backbone URI "
                            "string such as 'timm:<model>:<file>'")
        mean, std = _mean_std(model)
        h = _weights_hash(model, (mean, std))
        label = name or getattr(model, "default_cfg", {}).get("architecture") or type(model).__name__
        vit_bb = (TimmPyramid(model, arch=label, mean=mean, std=std) if missing
                  else TimmViTBackbone(model, arch=label, mean=mean, std=std))
    return BenchBackbone(f"memory:{label}@{h[:12]}", vit_bb, h, source=f"in-memory {type(model).__name__}")


def at_size(bb: BenchBackbone, size: int) -> BenchBackbone:
    """A copy of `bb` that takes `size` x `size` inputs."""
    bb = copy.deepcopy(bb)
    if isinstance(bb.vit, TimmPyramid):  # convolutional stages take any size; a windowed one is resized
        model = bb.vit.pyramid
        cur = getattr(getattr(model, "patch_embed", None), "img_size", None)
        if cur is not None and tuple(cur) != (size, size) and hasattr(model, "set_input_size"):
            model.set_input_size(img_size=(size, size))
        return bb
    vit = bb.vit.vit
    cur = tuple(getattr(vit.patch_embed, "img_size", None) or ())
    dynamic = getattr(vit, "dynamic_img_size", False)
    if cur and cur != (size, size) and not dynamic:
        if not hasattr(vit, "set_input_size"):
            raise ValueError(f"{bb.uri}: the model takes {cur} inputs, the task needs {size}x{size}; create it "
                             "with dynamic_img_size=True or img_size=" + str(size))
        vit.set_input_size(img_size=(size, size))
        bb.vit.img_size = size
    return bb


class InMemoryBackbones(BackboneCache):
    """The cells of an in-memory model get a copy of it at their input size (one resized copy kept
    per size); any other URI of the plan is built as usual."""

    def __init__(self, model: BenchBackbone):
        super().__init__()
        self.model = model
        self.sized: dict[int, BenchBackbone] = {}

    def serves(self, uri: str) -> bool:
        return uri == self.model.uri

    def build(self, uri: str, size: int) -> BenchBackbone:
        if not self.serves(uri):
            return super().build(uri, size)
        if size not in self.sized:
            self.sized[size] = at_size(self.model, size)
        return self.sized[size]

    def problems(self, tasks, profile) -> list[str]:
        """Why the model cannot run the tasks' input sizes (one forward pass at each), [] when it can."""
        try:
            for size in sorted({TASKS.get(t)().image_size(profile) for t in tasks}):
                m = at_size(self.model, size).eval()
                with torch.no_grad():
                    m(torch.zeros(1, 3, size, size), m.dense_layers())
        except (TypeError, ValueError, RuntimeError, AssertionError) as err:
            return [f"evaluate(): the in-memory backbone cannot be used: {cause_line(err, limit=2000)}"]
        return []
