"""`arcface:<file>` — an iResNet state dict of insightface's `arcface_torch` (iResNet-18/34/50/100/200,
`backbone.pth`), at its native 112 px, read as a feature pyramid.

The architecture is arcface_torch's `backbones/iresnet.py`, with its key names: a 3x3 stem
(`conv1`, `bn1`, `prelu`), four stages `layer1..4` of `IBasicBlock`s (BN -> conv3x3 -> BN -> PReLU
-> conv3x3(stride) -> BN, plus a 1x1 conv + BN `downsample` where the shape changes), each stage
halving the resolution (strides 2, 4, 8, 16: 56, 28, 14, 7 cells at 112 px), then `bn2`, the
flattened 7x7 map through `fc` (512 * 49 -> 512) and the BatchNorm1d `features`: the 512-d face
embedding. The blocks per stage are read from the file (50: 3, 4, 14, 3; 100: 3, 13, 30, 3), so
any depth loads. Input normalisation (x - 0.5) / 0.5, as arcface_torch trains.

Stages: `layer1`..`layer3` and the last stage after `bn2`; `cls` is the embedding. At another
input size than 112 px the final map is average-pooled to 7x7 before `fc` (exact at 112 px).
`random:iresnet50` / `supervised:iresnet50@112` build the same architecture from a fixed seed (any
layout: `iresnet-3-4-14-3`).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from bench_tasks.backbones.base import BenchBackbone, Family, weights_sha256, wrong_family
from bench_tasks.backbones.pyramid import PyramidEncoder
from bench_tasks.backbones.timm_file import CheckpointError, read_weights, strip_prefix, unwrap
from bench_tasks.registry import BACKBONES

NATIVE = 112
FACE_MEAN = (0.5, 0.5, 0.5)
FACE_STD = (0.5, 0.5, 0.5)
# arcface_torch's get_model names -> blocks per stage
LAYOUTS = {"iresnet18": (2, 2, 2, 2), "iresnet34": (3, 4, 6, 3), "iresnet50": (3, 4, 14, 3),
           "iresnet100": (3, 13, 30, 3), "iresnet200": (6, 26, 60, 6)}
WIDTHS = (64, 128, 256, 512)


def conv3x3(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, kernel_size=3, stride=stride, padding=1, bias=False)


class IBasicBlock(nn.Module):
    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = conv3x3(inplanes, planes)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = conv3x3(planes, planes, stride)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + (self.downsample(x) if self.downsample is not None else x)


class IResNet(nn.Module):
    """arcface_torch's IResNet (same module names, so its state dicts load as they are)."""

    fc_scale = 7 * 7

    def __init__(self, layers=(3, 4, 14, 3), num_features: int = 512):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        self.layer1 = self._make_layer(64, layers[0])
        self.layer2 = self._make_layer(128, layers[1])
        self.layer3 = self._make_layer(256, layers[2])
        self.layer4 = self._make_layer(512, layers[3])
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(p=0.0)
        self.fc = nn.Linear(512 * self.fc_scale, num_features)
        self.features = nn.BatchNorm1d(num_features, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0, 0.1)
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int) -> nn.Sequential:
        downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=2, bias=False),
                                   nn.BatchNorm2d(planes, eps=1e-05))
        layers = [IBasicBlock(self.inplanes, planes, 2, downsample)]
        self.inplanes = planes
        layers += [IBasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def embedding(self, last: torch.Tensor) -> torch.Tensor:
        """The face embedding of the map after `bn2` (pooled to 7x7 first at another size than 112)."""
        if tuple(last.shape[-2:]) != (7, 7):
            last = F.adaptive_avg_pool2d(last, (7, 7))
        return self.features(self.fc(self.dropout(torch.flatten(last, 1))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.embedding(self.bn2(x))


class IResNetPyramid(PyramidEncoder):
    def __init__(self, model: IResNet, arch: str):
        super().__init__(arch, list(WIDTHS), [2, 4, 8, 16], FACE_MEAN, FACE_STD)
        self.model = model
        # the probes read cls and the last stage at one width: the embedding where it is 512-d (always,
        # in arcface_torch), else the average-pooled last stage
        self.own_embedding = model.fc.out_features == WIDTHS[-1]

    def stage_maps(self, x: torch.Tensor, wanted: list[int]):
        m = self.model
        x = m.prelu(m.bn1(m.conv1(x)))
        maps = {}
        for i, layer in enumerate((m.layer1, m.layer2, m.layer3, m.layer4)):
            x = layer(x)
            maps[i] = x
        last = m.bn2(x)
        maps[3] = last
        return maps, last, (m.embedding(last) if self.own_embedding else last.mean((2, 3)))


_BLOCK = re.compile(r"^layer([1-4])\.(\d+)\.")


def claims_keys(keys: set) -> str | None:
    if "prelu.weight" in keys and "layer1.0.prelu.weight" in keys and "features.running_mean" in keys:
        return "an arcface_torch iResNet state dict"
    return None


def layout_of(sd: dict, path) -> tuple[int, ...]:
    if not claims_keys(set(sd)):
        raise CheckpointError(wrong_family(path, sd.keys(), "an arcface_torch iResNet state dict (keys "
                                           "prelu.weight, layer1.0.prelu.weight, features.*)", "arcface"))
    counts = [0, 0, 0, 0]
    for k in sd:
        m = _BLOCK.match(k)
        if m:
            stage, block = int(m.group(1)) - 1, int(m.group(2))
            counts[stage] = max(counts[stage], block + 1)
    return tuple(counts)


def arch_name(layout: tuple[int, ...]) -> str:
    return next((n for n, lay in LAYOUTS.items() if lay == tuple(layout)), "iresnet-" + "-".join(map(str, layout)))


def _read(rest: str) -> dict:
    sd = strip_prefix(unwrap(read_weights(rest), ("state_dict", "model", "backbone", "module")),
                      ("module.", "backbone."))
    return {k: v for k, v in sd.items() if torch.is_tensor(v)}


@BACKBONES.register("arcface")
def build(rest: str, image_size: int) -> BenchBackbone:
    """rest = an arcface_torch iResNet state dict (`backbone.pth`, any depth)."""
    sd = _read(rest)
    layout = layout_of(sd, rest)
    fc = sd.get("fc.weight")
    model = IResNet(layout, num_features=int(fc.shape[0]) if fc is not None else 512)
    try:
        model.load_state_dict(sd, strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()][:4]
        raise CheckpointError(f"weight file {rest} does not fit arcface_torch's {arch_name(layout)}: "
                              f"{' '.join(lines)}") from None
    return BenchBackbone(f"arcface:{rest}", IResNetPyramid(model, arch_name(layout)), weights_sha256(rest),
                         source=str(rest))


_LAYOUT_NAME = re.compile(r"^iresnet-(\d+)-(\d+)-(\d+)-(\d+)$")


def layout_named(arch: str) -> tuple[int, ...] | None:
    """Blocks per stage of `iresnet50` (arcface_torch's names) or `iresnet-1-1-2-1` (any layout)."""
    m = _LAYOUT_NAME.match(arch)
    return tuple(int(g) for g in m.groups()) if m else LAYOUTS.get(arch)


def random_arch(arch: str, image_size: int) -> nn.Module | None:
    layout = layout_named(arch)
    return IResNetPyramid(IResNet(layout), arch) if layout else None


def reference(rest: str) -> str | None:
    """The same layout at 112 px (`iresnet50@112`), the ceiling's and random-init control's arch."""
    return f"{arch_name(layout_of(_read(rest), rest))}@{NATIVE}"


build.family = Family(native_size=lambda rest: NATIVE, reference=reference, random_arch=random_arch,
                      claims_keys=claims_keys,
                      resized=lambda rest: "its maps scale with the input and the last one is pooled to 7x7 "
                                           "before the embedding layer (exact only at 112 px)")
