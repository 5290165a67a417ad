"""Training-step and inference throughput of every objective, side by side in one process.

Two entry points:

* `bench_throughput(...)` (the original `bench-throughput` default): PaCo-FR next to a plain
  SimMIM-like full-sequence step of the same backbone, eager or compiled.
* `bench_suite(...)` (`bench-throughput --suite`): every objective's train step (plain full-sequence
  SimMIM-like, MAE, PaCo-FR, FaRL-style, MCF-style) and feature extraction (inference, no grad), each
  eager and `torch.compile`d, on the same random batch, with img/s, model TFLOP/s, model-FLOP
  utilisation (MFU) against the bf16 matrix-product peak *measured on the same device in the same
  run* (and against the datasheet value where known), and peak memory.

Model FLOPs per step come from `torch.utils.flop_counter.FlopCounterMode` on one eager step
(`paco_fr.flops.count_flops`, which adds the CPU flash-attention kernel torch has no formula for)
(matmul / conv / attention FLOPs, forward + backward; a frozen teacher's and the text tower's
forward included). Step time = median of per-step times (CUDA events on a GPU, host clock on the
CPU) after warm-up; img/s = batch / median step time. Data loading is excluded (the batch is
resident). Ratios are printed against the plain step measured in the same run, never against
numbers from another run.

Compile time is paid outside the timed region. On a shared-time budget (the device study),
`warm_only=True` runs each compiled step twice without timing: a later process compiling the same
graphs hits inductor's on-disk caches and spends seconds instead of a minute per model.
"""

from __future__ import annotations

import contextlib
import json
import platform
import statistics
import time

import timm
import torch
from tabulate import tabulate

from paco_fr.config import load_config
from paco_fr.flops import count_flops
from paco_fr.models import build_encoder, build_model, get_objective, objective_model

# datasheet dense bf16 TFLOP/s (SXM parts), only a second reference: MFU uses the measured peak
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L40": 181.0, "A10": 125.0, "4090": 165.0,
                    "V100": 125.0}
SUITE_STEPS = ("simmim", "mae", "paco", "farl", "mcf", "infer")
STEP_LABELS = {
    "simmim": "plain ViT, full-sequence masked modelling (SimMIM-like)",
    "mae": "MAE (encoder on visible tokens)",
    "paco": "PaCo-FR (codebook + Belief Predictor + spatial)",
    "farl": "FaRL-style (image-text contrast + MIM)",
    "mcf": "MCF-style (perceptual teacher + momentum contrast)",
    "infer": "feature extraction (inference, no grad)",
}


def step_label(kind: str) -> str:
    """The table label of a suite step: STEP_LABELS, else the first docstring line of a registered
    objective's model class (a new objective needs no entry here)."""
    if kind in STEP_LABELS:
        return STEP_LABELS[kind]
    doc = (get_objective(kind).model.__doc__ or kind).strip().splitlines()
    return doc[0].rstrip(".") if doc else kind


def _datasheet_peak(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for k, v in PEAK_BF16_TFLOPS.items():
        if k in name:
            return v * 1e12
    return None


def _peak(device: torch.device, override: float | None) -> float | None:
    if override:
        return float(override) * 1e12
    return _datasheet_peak(device)


def measure_bf16_peak(device: torch.device, n: int = 8192, reps: int = 10) -> float | None:
    """FLOP/s of an n x n x n bf16 matrix product on random data (median of `reps` after 3 warm-ups).
    None on the CPU (no meaningful bf16 matrix peak there)."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        a @ b
        e.record()
        torch.cuda.synchronize()
        times.append(s.elapsed_time(e) / 1e3)
    del a, b
    torch.cuda.empty_cache()
    return 2 * n ** 3 / statistics.median(times)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time_steps(fn, steps: int, device: torch.device) -> list[float]:
    out = []
    for _ in range(steps):
        if device.type == "cuda":
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            fn()
            e.record()
            torch.cuda.synchronize(device)
            out.append(s.elapsed_time(e) / 1e3)
        else:
            t = time.perf_counter()
            fn()
            out.append(time.perf_counter() - t)
    return out


def _resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def _base_config(arch, img_size, patch_size, depth, config, overrides) -> dict:
    base = load_config(config, overrides)
    base["model"].update({"arch": arch, "img_size": img_size, "patch_size": patch_size, "depth": depth})
    return base


def bench_throughput(arch: str = "vit_tiny", img_size: int = 64, patch_size: int | None = None, batch: int = 8,
                     steps: int = 3, warmup: int = 1, compile_: bool = False, depth: int | None = None,
                     config: str | None = None, overrides: list[str] | None = None, device: str = "auto",
                     peak_tflops: float | None = None) -> dict:
    patch_size = patch_size or (8 if img_size <= 64 else 16)
    base = _base_config(arch, img_size, patch_size, depth, config, overrides)
    dev = _resolve_device(device)
    use_amp = dev.type == "cuda"
    res = {"device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
           "arch": arch, "img_size": img_size, "patch_size": patch_size, "batch": batch, "steps": steps,
           "compile": compile_, "amp_bf16": use_amp}
    peak = _peak(dev, peak_tflops)
    for name in ("simmim", "paco"):
        step = _Step(name, base, batch, dev, use_amp, compile_)
        flops = step.count_flops()  # also the first (compiling) step
        for _ in range(warmup):
            step()
        _sync(dev)
        t = time.perf_counter()
        for _ in range(steps):
            step()
        _sync(dev)
        dt = (time.perf_counter() - t) / steps
        res[name] = {"img_per_s": batch / dt, "step_s": dt, "flops_per_step": flops,
                     "mfu": (flops / dt / peak) if peak else None}
        del step
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


# ----------------------------------------------------------------------------- the suite


class _Step:
    """One benchmarked callable: a full train step (forward, backward, AdamW) or an inference pass."""

    def __init__(self, kind: str, base_cfg: dict, batch: int, device: torch.device, use_amp: bool,
                 compile_: bool):
        self.kind, self.device = kind, device
        cfg = json.loads(json.dumps(base_cfg))
        img = int(cfg["model"]["img_size"])
        g = torch.Generator(device="cpu").manual_seed(0)
        x = torch.rand(batch, 3, img, img, generator=g).to(device)
        self.batch = {"image": x}
        self.amp = (lambda: torch.autocast(device.type, dtype=torch.bfloat16)) if use_amp else contextlib.nullcontext
        if kind == "infer":
            self.model = build_encoder(cfg).to(device).eval()
            self.layers = [self.model.depth - 1]
            enc = self.model

            def fwd(xb):
                return enc.forward_features(enc.normalize(xb), self.layers).last_tokens

            self.fn = torch.compile(fwd) if compile_ else fwd
            self.opt = None
        else:
            cfg["objective"] = kind
            objective = objective_model(cfg)
            # throughput only: an upstream encoder (MCF's frozen teacher) of the same arch, randomly
            # initialised (its weights do not change the FLOPs)
            cfg = objective.with_upstream(cfg, "random")
            data = objective.synthetic_data(cfg)  # FaRL: a probe vocabulary and random token ids
            self.batch.update({k: v.to(device) for k, v in data.synthetic_fields(batch, g).items()})
            self.model = build_model(cfg, steps_per_epoch=1, data=data).to(device)
            self.model.train()
            self.opt = torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-4,
                                         fused=device.type == "cuda")
            self.fn = torch.compile(self.model) if compile_ else self.model

    def __call__(self):
        if self.opt is None:
            with torch.no_grad(), self.amp():
                return self.fn(self.batch["image"])
        with self.amp():
            out = self.fn(self.batch, step=10**9)  # past incubation: the steady-state step
        out["loss"].backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.model.on_step_end(10**9)  # codebook EMA / momentum encoders, as the engine does (eager)
        return out

    def count_flops(self) -> int:
        return count_flops(self)


def bench_suite(arch: str = "vit_base", img_size: int = 224, patch_size: int | None = None, batch: int = 256,
                steps: int = 10, warmup: int = 3, objectives: tuple[str, ...] = SUITE_STEPS,
                modes: tuple[str, ...] = ("eager", "compiled"), depth: int | None = None,
                config: str | None = None, overrides: list[str] | None = None, device: str = "auto",
                peak_tflops: float | None = None, measure_peak: bool = True, warm_only: bool = False,
                deadline: float | None = None, log=print, flops: dict | None = None, on_row=None) -> dict:
    """Benchmark every (objective, mode). `deadline` (time.time() value): cases not started before it
    are recorded as skipped. `flops`: FLOP counts from an earlier phase ({objective: flops}) to reuse.
    `on_row(result_so_far)` after every case (the CLI writes the JSON then, so a killed run keeps
    the rows it measured)."""
    patch_size = patch_size or (8 if img_size <= 64 else 16)
    base = _base_config(arch, img_size, patch_size, depth, config, overrides)
    dev = _resolve_device(device)
    use_amp = dev.type == "cuda"
    for o in objectives:
        if o not in SUITE_STEPS:
            raise ValueError(f"unknown throughput step {o!r}; choose from {', '.join(SUITE_STEPS)}")
    for m in modes:
        if m not in ("eager", "compiled"):
            raise ValueError(f"unknown mode {m!r}; choose eager and/or compiled")
    res = {"device": str(dev) + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
           "torch": torch.__version__, "timm": timm.__version__, "python": platform.python_version(),
           "cuda": torch.version.cuda, "arch": arch, "img_size": img_size, "patch_size": patch_size,
           "depth": depth, "batch": batch, "steps": steps, "warmup": warmup, "amp_bf16": use_amp,
           "warm_only": warm_only, "rows": []}
    measured = measure_bf16_peak(dev) if (measure_peak and not warm_only) else None
    res["peak_bf16_tflops_measured"] = measured / 1e12 if measured else None
    sheet = _peak(dev, peak_tflops)
    res["peak_bf16_tflops_datasheet"] = sheet / 1e12 if sheet else None
    flops = dict(flops or {})
    for mode in modes:
        for obj in objectives:
            row = {"objective": obj, "mode": mode, "label": step_label(obj)}
            if deadline is not None and time.time() > deadline:
                row["status"] = "skipped: out of time"
                res["rows"].append(row)
                log(f"  {obj:7s} {mode:8s} skipped (out of time)")
                if on_row is not None:
                    on_row(res)
                continue
            try:
                _run_case(row, obj, mode, base, batch, dev, use_amp, flops, steps, warmup, warm_only, measured, sheet, log)
            except Exception as err:  # one failing step must not lose the others' numbers
                row["status"] = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
                log(f"  {obj:7s} {mode:8s} FAILED {row['status']}")
            res["rows"].append(row)
            if on_row is not None:
                res["flops"], res["ratios"] = dict(flops), suite_ratios(res)
                on_row(res)
    res["flops"] = flops
    res["ratios"] = suite_ratios(res)
    return res


def _run_case(row: dict, obj: str, mode: str, base: dict, batch: int, dev: torch.device, use_amp: bool, flops: dict,
              steps: int, warmup: int, warm_only: bool, measured: float | None, sheet: float | None, log) -> None:
    """One (objective, mode) case of bench_suite: build (and compile) the step, count its FLOPs once
    per objective (into `flops`), warm it up, time it; the results go into `row`."""
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    step = _Step(obj, base, batch, dev, use_amp, mode == "compiled")
    if obj not in flops:
        flops[obj] = step.count_flops() if mode == "eager" else _Step(
            obj, base, batch, dev, use_amp, False).count_flops()
    for _ in range(2 if warm_only else warmup):  # the first compiled call compiles
        step()
    _sync(dev)
    row["setup_s"] = time.perf_counter() - t0
    if warm_only:
        row["status"] = "warmed"
        log(f"  {obj:7s} {mode:8s} warmed in {row['setup_s']:.1f}s")
        return
    times = _time_steps(step, steps, dev)
    st = statistics.median(times)
    row.update(status="ok", step_ms=1e3 * st, step_ms_min=1e3 * min(times),
               step_ms_max=1e3 * max(times), img_per_s=batch / st, flops_per_step=flops[obj],
               model_tflops=flops[obj] / st / 1e12,
               mfu=(flops[obj] / st / measured) if measured else None,
               mfu_datasheet=(flops[obj] / st / sheet) if sheet else None,
               peak_mem_gib=(torch.cuda.max_memory_allocated(dev) / 2**30
                             if dev.type == "cuda" else None))
    log(f"  {obj:7s} {mode:8s} {row['img_per_s']:10.1f} img/s  {row['model_tflops']:8.2f} TFLOP/s"
        f"  setup {row['setup_s']:.1f}s")


def suite_ratios(res: dict) -> dict:
    """img/s of each step over the plain full-sequence step of the same mode, and compiled over eager."""
    by = {(r["objective"], r["mode"]): r for r in res.get("rows", []) if r.get("status") == "ok"}
    out = {}
    for (obj, mode), r in by.items():
        ref = by.get(("simmim", mode))
        if ref and obj != "simmim":
            out[f"{obj}/simmim ({mode})"] = r["img_per_s"] / ref["img_per_s"]
        eager = by.get((obj, "eager"))
        if mode == "compiled" and eager:
            out[f"{obj} compiled/eager"] = r["img_per_s"] / eager["img_per_s"]
    return out


def format_suite_markdown(res: dict) -> str:
    """The throughput table as Markdown (what docs/throughput.md embeds)."""
    peak = res.get("peak_bf16_tflops_measured")
    head = (f"device: {res['device']}; torch {res['torch']} (CUDA {res.get('cuda')}), timm {res['timm']}, "
            f"python {res['python']}; {res['arch']}"
            f"{'/d' + str(res['depth']) if res.get('depth') else ''} at {res['img_size']} px, patch "
            f"{res['patch_size']}, batch {res['batch']}, bf16 autocast {res['amp_bf16']}; median of {res['steps']} "
            f"steps after {res['warmup']} warm-up steps. Measured bf16 matrix peak (8192^3): "
            f"{f'{peak:.0f} TFLOP/s' if peak else 'n/a'}.")
    rows = []
    for r in res["rows"]:
        if r.get("status") != "ok":
            rows.append([r["objective"], r["mode"], r.get("status"), "", "", "", "", "", ""])
            continue
        ref = next((x for x in res["rows"] if x["objective"] == "simmim" and x["mode"] == r["mode"]
                    and x.get("status") == "ok"), None)
        ratio = f"{r['img_per_s'] / ref['img_per_s']:.2f}" if ref and r["objective"] != "infer" else ""
        rows.append([r["objective"], r["mode"], f"{r['img_per_s']:,.0f}", f"{r['step_ms']:.1f}",
                     f"{r['flops_per_step'] / res['batch'] / 1e9:.1f}", f"{r['model_tflops']:.0f}",
                     f"{100 * r['mfu']:.0f} %" if r.get("mfu") is not None else "n/a",
                     f"{r['peak_mem_gib']:.1f}" if r.get("peak_mem_gib") is not None else "n/a", ratio])
    table = tabulate(rows, headers=["step", "mode", "img/s", "ms/step", "GFLOP/img", "model TFLOP/s",
                                    "MFU (measured peak)", "peak mem GiB", "x plain step"], tablefmt="github",
                     disable_numparse=True)
    return head + "\n\n" + table + "\n"
