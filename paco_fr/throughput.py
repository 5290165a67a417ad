"""Training-step throughput of PaCo-FR next to a plain SimMIM-like step of the same backbone.

Both steps (forward + backward + AdamW) run in the same process on the same random batch
(data loading excluded). FLOPs per step come from torch.utils.flop_counter (matmul/conv/attention
FLOPs, forward + backward); model-FLOP utilisation = achieved FLOP/s / peak (peak from a small
table of GPUs at bf16 dense, or --peak-tflops; unknown on CPU -> null). The printed ratio is
PaCo img/s / SimMIM img/s; the PaCo-FR overhead target (<= 15%) is checked on a GPU with
ViT-B/16 at 224 (`--arch vit_base --img-size 224 --batch 256 --steps 20 --compile`).
"""

from __future__ import annotations

import contextlib
import json
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from paco_fr.config import load_config
from paco_fr.models import build_model

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40": 181.0, "A10": 125.0, "4090": 165.0,
                    "V100": 125.0}


def _peak(device: torch.device, override: float | None) -> float | None:
    if override:
        return float(override) * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for k, v in PEAK_BF16_TFLOPS.items():
        if k in name:
            return v * 1e12
    return None


def _bench_one(model, batch, steps: int, warmup: int, device, use_amp: bool, compile_: bool) -> dict:
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    fwd = torch.compile(model) if compile_ else model
    amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext

    def step(i):
        with amp():
            out = fwd(batch, step=10**9)  # past incubation: the steady-state step
        out["loss"].backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return out

    with FlopCounterMode(display=False) as fc:
        step(0)
    flops = fc.get_total_flops()
    for i in range(warmup):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(steps):
        step(i)
    if device.type == "cuda":
        torch.cuda.synchronize()
    dt = time.perf_counter() - t
    B = batch["image"].shape[0]
    return {"img_per_s": B * steps / dt, "step_s": dt / steps, "flops_per_step": flops}


def bench_throughput(arch: str = "vit_tiny", img_size: int = 64, patch_size: int | None = None, batch: int = 8,
                     steps: int = 3, warmup: int = 1, compile_: bool = False, depth: int | None = None,
                     config: str | None = None, overrides: list[str] | None = None, device: str = "auto",
                     peak_tflops: float | None = None) -> dict:
    patch_size = patch_size or (8 if img_size <= 64 else 16)
    base = load_config(config, overrides)
    base["model"].update({"arch": arch, "img_size": img_size, "patch_size": patch_size, "depth": depth})
    dev = torch.device("cuda" if (device == "auto" and torch.cuda.is_available()) else
                       ("cpu" if device == "auto" else device))
    use_amp = dev.type == "cuda"
    torch.manual_seed(0)
    x = torch.rand(batch, 3, img_size, img_size, device=dev)
    res = {"device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
           "arch": arch, "img_size": img_size, "patch_size": patch_size, "batch": batch, "steps": steps,
           "compile": compile_, "amp_bf16": use_amp}
    peak = _peak(dev, peak_tflops)
    for name, obj in (("simmim", "simmim"), ("paco", "paco")):
        cfg = json.loads(json.dumps(base))
        cfg["objective"] = obj
        model = build_model(cfg, steps_per_epoch=1).to(dev)
        r = _bench_one(model, {"image": x}, steps, warmup, dev, use_amp, compile_)
        r["mfu"] = (r["flops_per_step"] / r["step_s"] / peak) if peak else None
        res[name] = r
        del model
    res["paco_over_simmim_img_per_s"] = res["paco"]["img_per_s"] / res["simmim"]["img_per_s"]
    res["paco_overhead_pct"] = 100 * (res["simmim"]["img_per_s"] / res["paco"]["img_per_s"] - 1)
    return res


def format_result(r: dict) -> str:
    lines = [f"device {r['device']}  arch {r['arch']}  {r['img_size']}px/p{r['patch_size']}  batch {r['batch']}  "
             f"steps {r['steps']}  compile {r['compile']}  bf16 {r['amp_bf16']}"]
    for k in ("simmim", "paco"):
        v = r[k]
        mfu = f"{100 * v['mfu']:.1f}%" if v["mfu"] is not None else "n/a (no peak FLOP/s known)"
        lines.append(f"  {k:7s} {v['img_per_s']:10.1f} img/s  {v['flops_per_step'] / 1e9:10.2f} GFLOP/step  MFU {mfu}")
    lines.append(f"  ratio paco/simmim img/s = {r['paco_over_simmim_img_per_s']:.3f}  "
                 f"(PaCo-FR step overhead {r['paco_overhead_pct']:.1f}%)")
    return "\n".join(lines)
