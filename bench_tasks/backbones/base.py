"""What every backbone URI resolves to.

URIs are `scheme:rest` (`paco_fr:runs/x/encoder.safetensors`, `timm:vit_small_patch16_224:w.pth`,
`farl:FaRL-Base-Patch16-LAIONFace20M-ep64.pth`, `mcf:mcf.pth`, `mae:mae.pth`, `random:vit_tiny`).
Each scheme is one module in this package registered with `@BACKBONES.register("scheme")` on a
function `build(rest: str, image_size: int) -> BenchBackbone`. What the plan reads without building
the model (the input size it was made for, the architecture of its ceiling and random-init
control, the weight files and folders it reads) the module attaches to that function as
`build.family = Family(...)` (see `Family`; docs/backbones.md, "Adding a backbone family").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from bench_tasks.contracts import BackboneURI
from bench_tasks.registry import BACKBONES
from paco_fr.backbone import BackboneOutput, default_dense_layers


class BenchBackbone(nn.Module):
    """A backbone plus what the harness needs to know about it.

    forward(x01, layers) takes images in [0, 1], applies the backbone's own mean/std and returns
    `paco_fr.backbone.BackboneOutput` (CLS, patch tokens of `layers`, grid).
    weights_hash identifies the weights (sha256 of the file, or of the init recipe for random)
    and keys the feature cache and results provenance.

    `vit` is the encoder: a `ViTBackbone` (block tokens of a plain ViT, `layers` are block indices)
    or a `bench_tasks.backbones.pyramid.PyramidEncoder` (CNNs and hierarchical transformers:
    `layers` are stage indices, each stage with its own width and stride, `strides`).
    """

    def __init__(self, uri: str, vit: nn.Module, weights_hash: str, source: str | None = None):
        super().__init__()
        self.uri = uri
        self.vit = vit
        self.weights_hash = weights_hash
        self.source = source

    @property
    def encoder(self) -> nn.Module:
        return self.vit

    @property
    def embed_dim(self) -> int:
        """Width of `cls` and of the tokens of `probe_layers()` (a pyramid: its last stage)."""
        return self.vit.embed_dim

    @property
    def depth(self) -> int:
        """Blocks of a ViT; stages of a pyramid."""
        return self.vit.depth

    @property
    def patch_size(self) -> int:
        """A ViT's patch; a pyramid's stride of its last stage."""
        return self.vit.patch_size

    @property
    def strides(self) -> list[int] | None:
        """A pyramid's stride per stage (input pixels per feature-map cell); None for a ViT (every
        block at stride `patch_size`)."""
        return getattr(self.vit, "strides", None)

    def dense_layers(self) -> list[int]:
        """What the dense heads read: FaRL's 4 blocks of a ViT; a pyramid's last 4 stages."""
        own = getattr(self.vit, "dense_layers", None)
        return list(own()) if callable(own) else default_dense_layers(self.depth)

    def probe_layers(self) -> list[int]:
        """What the pooled-feature heads (attributes, expression) read: the dense layers of a ViT
        (FaRL's attribute head), the last stage of a pyramid (its stages differ in width)."""
        own = getattr(self.vit, "probe_layers", None)
        return list(own()) if callable(own) else self.dense_layers()

    def level_channels(self, layers: list[int]) -> list[int]:
        """The width of each of `layers` (a ViT: `embed_dim` for all)."""
        own = getattr(self.vit, "channels", None)
        return [own[i % self.depth] for i in layers] if own is not None else [self.embed_dim] * len(layers)

    def forward(self, x01: torch.Tensor, layers: list[int] | None = None) -> BackboneOutput:
        return self.vit.forward_features(self.vit.normalize(x01), layers)


def weights_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 identifying the weights a file holds.

    For `.safetensors` files the JSON header is hashed in canonical form (sorted keys): the
    safetensors writer emits the `__metadata__` entries in a random order per process, so two
    exports of bit-identical tensors would otherwise get different hashes and every result
    computed from them would look stale. Other files (and unreadable safetensors) are hashed as
    raw bytes.
    """
    path = Path(path)
    if path.is_dir():
        return folder_sha256(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if path.suffix == ".safetensors":
            header = _safetensors_header(f)
            if header is not None:
                h.update(b"safetensors-canonical-v1\0")
                h.update(json.dumps(header, sort_keys=True, separators=(",", ":")).encode())
            else:
                f.seek(0)
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


RECORDED_HASH_KEY = "encoder_sha256"  # summary.json of a finished pre-training run (bench_tasks.run.pretrain)


def recorded_sha256(path: str | Path) -> str | None:
    """The weights hash that the finished pre-training run writing `path` recorded in its
    summary.json (`encoder_sha256`), or None. It stands for the weights when the encoder file is
    not on this machine (a study resumed on another machine keeps its runs' small files, not their
    encoders): rows computed from those weights still count, rows from other weights do not."""
    path = Path(path)
    try:
        data = json.loads((path.parent / "summary.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("status") != "complete" or data.get("encoder") != path.name:
        return None
    value = data.get(RECORDED_HASH_KEY)
    return value if isinstance(value, str) and value else None


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def folder_sha256(folder: Path) -> str:
    """sha256 identifying the weights of a checkpoint folder (`hf:`): its config.json and the hash
    of each weight file in it, by name."""
    h = hashlib.sha256(b"folder-v1\0")
    for f in sorted(folder.iterdir()):
        if f.is_file() and (f.suffix in WEIGHT_SUFFIXES or f.name == "config.json"):
            h.update(f.name.encode() + b"\0")
            h.update(weights_sha256(f).encode())
    return h.hexdigest()


def _safetensors_header(f) -> dict | None:
    """The parsed header of an open safetensors file (position left at the tensor data), or None."""
    raw = f.read(8)
    if len(raw) != 8:
        return None
    n = int.from_bytes(raw, "little")
    if n <= 0 or n > 100_000_000:
        return None
    try:
        header = json.loads(f.read(n))
    except ValueError:
        return None
    return header if isinstance(header, dict) else None


@dataclass
class Family:
    """What a backbone scheme tells without building its model (all optional), attached to its
    registered build function as `build.family`:

    * `native_size(spec)`: the input size the model was made for (None: not known);
    * `reference(spec)`: the architecture spec of `random:` / `supervised:` that matches it (its
      random-init control and ceiling, e.g. `resnet18@224`), None when there is none;
      `reference_reason(spec)` says why not;
    * `random_arch(arch, image_size)`: the encoder module `random:<arch>` builds when `arch` is one
      of this family's architectures (e.g. `iresnet50`), else None;
    * `claims_keys(keys)`: a short name of the family when a weight file's keys are its own (so a
      loader given another family's file names the scheme that reads it);
    * `claims_folder(path)`: what this family reads in a folder (e.g. "a Hugging Face vit model"),
      else None;
    * `resized(spec)`: what running the model at another input size than its own changes (the
      plan's input-size line; default: its position embedding is resampled).
    """

    native_size: Callable[[str], int | None] | None = None
    reference: Callable[[str], str | None] | None = None
    reference_reason: Callable[[str], str | None] | None = None
    random_arch: Callable[[str, int], nn.Module | None] | None = None
    claims_keys: Callable[[set], str | None] | None = None
    claims_folder: Callable[[Path], str | None] | None = None
    resized: Callable[[str], str] | None = None


def family_of(scheme: str) -> Family:
    """The `Family` of a registered scheme (an empty one when it tells nothing)."""
    if scheme not in BACKBONES:
        return Family()
    return getattr(BACKBONES.get(scheme), "family", None) or Family()


def whose_keys(keys) -> list[tuple[str, str]]:
    """[(scheme, family name)] of the registered families that recognise a weight file's keys."""
    keys = set(keys)
    out = []
    for scheme, fn in BACKBONES.items():
        claim = getattr(getattr(fn, "family", None), "claims_keys", None)
        name = claim(keys) if claim else None
        if name:
            out.append((scheme, name))
    return out


def wrong_family(path, keys, expected: str, scheme: str) -> str:
    """The message of a loader given another family's file: what it expected, what the keys look
    like and which scheme reads them."""
    others = [(s, n) for s, n in whose_keys(keys) if s != scheme]
    keys = sorted(keys)
    what = (f"it looks like {others[0][1]}, which `{others[0][0]}:` reads" if others
            else f"first keys: {keys[:8]}")
    return f"{path} is not {expected} ({what})"


def describe_folder(path: str | Path) -> str:
    """What a folder given as a weight file holds and which scheme reads it."""
    path = Path(path)
    try:
        names = sorted(p.name for p in path.iterdir())
    except OSError:
        names = []
    found = []
    for scheme, fn in BACKBONES.items():
        claim = getattr(getattr(fn, "family", None), "claims_folder", None)
        what = claim(path) if claim else None
        if what:
            found.append(f"{what}, read with `{scheme}:{path}`")
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    head = f"{path} is a folder, not a weight file (it holds: {shown or 'nothing'})"
    if found:
        return head + "; it is " + "; or ".join(found)
    weights = [n for n in names if n.endswith((".safetensors", ".pth", ".pt", ".bin", ".ckpt"))]
    if weights:
        return head + f"; name one of its weight files, e.g. {path / weights[0]}"
    return head + "; no scheme reads it"


def build_backbone(uri: str, image_size: int) -> BenchBackbone:
    try:
        parsed = BackboneURI.parse(uri)
    except ValueError:
        raise ValueError(f"backbone URI {uri!r} must look like scheme:spec (schemes: {BACKBONES.names()})") from None
    return BACKBONES.get(parsed.scheme)(parsed.spec, image_size=image_size)


def weights_file(uri: str) -> Path | None:
    """The local weight file (or checkpoint folder) a URI reads (None for `random:` and URIs without one)."""
    try:
        file = BackboneURI.parse(uri).file
    except ValueError:  # no spec: no file
        return None
    return Path(file) if file else None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
