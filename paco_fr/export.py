"""Export a pre-training checkpoint's encoder as timm-keyed safetensors, and load it back.

`export_checkpoint(ckpt, out)` writes the `.vit` state dict of the ViTBackbone (timm
VisionTransformer key names: patch_embed.proj.weight, cls_token, pos_embed, blocks.N.*, norm.*)
with string metadata: arch, timm_name, img_size, patch_size, depth, embed_dim, mean, std (JSON
lists), objective, step, timm_kwargs (JSON of the kwargs timm.create_model needs), and `method`
(the text of a `method.json` in the output folder, when one is there: what the run is, written by
bench_tasks.plan.suite before pre-training; bench_tasks.store.method reads it back).

Load into timm (offline):
    timm.create_model("vit_tiny_patch16_224", pretrained=True, num_classes=0, img_size=64,
                      patch_size=8, pretrained_cfg_overlay=dict(file=path))
plus `depth=<depth>` when the run overrode the arch's depth (metadata `timm_kwargs` lists it).
Or `load_encoder(path) -> ViTBackbone` (our wrapper, mean/std from the metadata). The file's format
and its reader live in paco_fr.encoder_file.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from safetensors.torch import load_file

from paco_fr.atomic import save_safetensors_atomic
from paco_fr.backbone import encoder_from_config
from paco_fr.checkpoint_file import read_checkpoint
from paco_fr.config import load_config
from paco_fr.encoder_file import export_encoder, load_encoder, read_metadata
from paco_fr.models import build_model, objective_model

__all__ = ["RECON_NAME", "export_checkpoint", "export_encoder", "export_recon", "load_encoder", "load_recon_model",
           "read_metadata"]


def export_checkpoint(ckpt_path, out, use_ema: bool = True) -> Path:
    """Checkpoint (ckpt/last.pt of a run, its config.yaml beside ckpt/) -> encoder safetensors."""
    ckpt_path = Path(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    cfg_path = ckpt_path.parent.parent / "config.yaml"
    cfg = load_config(cfg_path)
    encoder = encoder_from_config(cfg)
    if use_ema and ckpt.get("ema"):
        enc_sd = ckpt["ema"]
    else:
        enc_sd = {k[len("encoder."):]: v for k, v in ckpt["model"].items() if k.startswith("encoder.")}
    vit_sd = {k[len("vit."):]: v for k, v in enc_sd.items() if k.startswith("vit.")}
    return export_encoder(encoder, cfg, out, step=int(ckpt.get("step", -1)), vit_state=vit_sd)


RECON_NAME = "recon.safetensors"


def export_recon(ckpt_path, out) -> Path:
    """The weights besides the encoder that reconstructions need (PaCo-FR: codebook, Belief
    Predictor, decoder; MAE: decoder, ...): every `model` entry of the checkpoint not under
    `encoder.`, float32, no optimizer or RNG state. With the run's encoder.safetensors and
    config.yaml, `load_recon_model(run_dir)` rebuilds the model for the codebook figure. Metadata:
    objective, step, and the checkpoint's saved vocabulary (FaRL-style) as JSON."""
    ckpt_path = Path(ckpt_path)
    ckpt = read_checkpoint(ckpt_path)
    sd = {k: v.detach().float().contiguous().cpu() if v.is_floating_point() else v.contiguous().cpu()
          for k, v in ckpt["model"].items() if not k.startswith("encoder.")}
    meta = {"format": "pt", "step": str(int(ckpt.get("step", -1))), "objective": str(ckpt.get("objective", ""))}
    if ckpt.get("vocab"):
        meta["vocab"] = json.dumps(list(ckpt["vocab"]))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    return save_safetensors_atomic(sd, out, meta)


def load_recon_model(run_dir, device="cpu"):
    """A finished run's model rebuilt from config.yaml, encoder.safetensors (the exported encoder:
    the EMA weights where the run kept an EMA) and recon.safetensors, in eval mode: what
    paco_fr.engine.reconstruct needs when ckpt/last.pt is gone. Raises FileNotFoundError naming
    the missing file."""
    run_dir = Path(run_dir)
    for name in ("config.yaml", "encoder.safetensors", RECON_NAME):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir / name}: not found (a finished run keeps config.yaml, "
                                    f"encoder.safetensors and {RECON_NAME})")
    cfg = load_config(run_dir / "config.yaml")
    meta = read_metadata(run_dir / RECON_NAME)
    saved = {"vocab": json.loads(meta["vocab"])} if meta.get("vocab") else None
    data = objective_model(cfg).prepare_data(cfg, None, saved)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = build_model(cfg, data=data)
    rest = load_file(str(run_dir / RECON_NAME))
    enc = {f"encoder.vit.{k}": v for k, v in load_file(str(run_dir / "encoder.safetensors")).items()}
    own = model.state_dict()
    state = {**{k: v for k, v in own.items() if k.startswith("encoder.")}, **enc, **rest}
    missing = sorted(k for k in own if k not in state)
    if missing:
        raise KeyError(f"{run_dir / RECON_NAME}: {len(missing)} weight(s) missing, e.g. {missing[:3]}")
    model.load_state_dict({k: state[k].to(own[k].dtype) for k in own})
    return model.to(device).eval()
