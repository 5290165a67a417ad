"""Time one FaRL-protocol training step on a GPU (the compute a `farl-*` cell needs).

The network is the FaRL protocol's: ViT-B/16 (our backbone, CLIP layout, built at 448), FaRL's
FPN (bench_tasks.heads.dense.SimpleFPN) and a UPerHead. Where mmsegmentation (mmcv with compiled
ops) is importable the UPerHead is mmseg's own (bench_tasks.heads.dense.DenseHead); elsewhere
(`--replica`, or a GPU machine without mmcv) a plain-torch module with exactly mmseg UPerHead's
layers (PPM 1,2,3,6 + bottleneck 3x3, lateral 1x1 and FPN 3x3 ConvModules, fpn_bottleneck 3x3,
dropout, conv_seg), i.e. the same FLOPs and activations, stands in; the output says which.

    python scripts/farl_step_timing.py --batch 40 --steps 5 --out timing.json
"""

from __future__ import annotations

import argparse
import json
import time

import torch
from torch import nn


def conv_bn_relu(cin, cout, k):
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True))


class UPerHeadReplica(nn.Module):
    """mmseg UPerHead's layers (channels C, in_channels [D] * 4, pool scales 1, 2, 3, 6)."""

    def __init__(self, d: int, c: int, k: int, pool_scales=(1, 2, 3, 6)):
        super().__init__()
        self.ppm = nn.ModuleList(nn.Sequential(nn.AdaptiveAvgPool2d(s), conv_bn_relu(d, c, 1)) for s in pool_scales)
        self.bottleneck = conv_bn_relu(d + len(pool_scales) * c, c, 3)
        self.lateral = nn.ModuleList(conv_bn_relu(d, c, 1) for _ in range(3))
        self.fpn = nn.ModuleList(conv_bn_relu(c, c, 3) for _ in range(3))
        self.fpn_bottleneck = conv_bn_relu(4 * c, c, 3)
        self.drop = nn.Dropout2d(0.1)
        self.conv_seg = nn.Conv2d(c, k, 1)

    def forward(self, xs):
        f = nn.functional
        x = xs[-1]
        psp = [x] + [f.interpolate(m(x), size=x.shape[2:], mode="bilinear", align_corners=False) for m in self.ppm]
        lat = [m(xs[i]) for i, m in enumerate(self.lateral)] + [self.bottleneck(torch.cat(psp, 1))]
        for i in range(3, 0, -1):
            lat[i - 1] = lat[i - 1] + f.interpolate(lat[i], size=lat[i - 1].shape[2:], mode="bilinear",
                                                    align_corners=False)
        outs = [self.fpn[i](lat[i]) for i in range(3)] + [lat[3]]
        outs = [outs[0]] + [f.interpolate(o, size=outs[0].shape[2:], mode="bilinear", align_corners=False)
                            for o in outs[1:]]
        return self.conv_seg(self.drop(self.fpn_bottleneck(torch.cat(outs, 1))))


class ReplicaHead(nn.Module):
    def __init__(self, dim, k, channels):
        super().__init__()
        from bench_tasks.heads.dense import SimpleFPN

        self.fpn = SimpleFPN(dim)
        self.uper = UPerHeadReplica(dim, channels, k)

    def forward(self, feats):
        return self.uper(self.fpn(feats.patch_maps()))


def pipeline_timing(n: int = 8) -> list[dict]:
    """CPU milliseconds per item of the FaRL data pipeline (read, align / crop, warp map, remap,
    augmentations) on SynthFace-rendered LaPa / 300W fixtures at 256 px, one process."""
    import sys
    import tempfile
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from farl_fixtures import write_300w, write_lapa

    from bench_tasks.plan.profiles import PROFILES
    from bench_tasks.protocols import farl as P

    tmp = Path(tempfile.mkdtemp())
    out = []
    for ds, root, load in (("lapa", write_lapa(tmp, size=256), P.load_lapa_farl),
                           ("300w", write_300w(tmp, size=256), P.load_300w_farl)):
        st = P.farl_settings(ds, "farl-refine", PROFILES["paper"])
        for split in ("train", "test"):
            sp = load(root, split, st)
            sp[0]
            t = time.perf_counter()
            for i in range(n):
                sp[i % len(sp)]
            out.append({"dataset": ds, "split": split, "ms_per_item": (time.perf_counter() - t) / n * 1000})
            print(json.dumps(out[-1]), flush=True)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[5, 40])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--replica", action="store_true")
    ap.add_argument("--out", default=None)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--arch", default="vit_base_clip", help="random:<arch> backbone (FaRL: ViT-B/16, CLIP layout)")
    ap.add_argument("--size", type=int, default=448, help="network input (FaRL: 448); the warped crop is 512")
    ap.add_argument("--tasks", default="parsing,landmarks")
    ap.add_argument("--protocols", default="farl-frozen,farl-refine")
    ap.add_argument("--pipeline", action="store_true", help="also time the CPU data pipeline per item")
    args = ap.parse_args()
    from bench_tasks.backbones.base import build_backbone
    from bench_tasks.heads.dense import build_dense_head, mmseg_available
    from bench_tasks.plan.profiles import PROFILES
    from bench_tasks.protocols import farl as P

    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    res = {"device": torch.cuda.get_device_name(0) if cuda else "cpu", "torch": torch.__version__,
           "head": "mmseg UPerHead" if (mmseg_available() and not args.replica) else "UPerHead replica (same layers)",
           "runs": []}
    tasks = {"parsing": 11, "landmarks": 68}
    for task in args.tasks.split(","):
        k = tasks[task]
        for proto in args.protocols.split(","):
            for bs in args.batch:
                torch.manual_seed(0)
                bb = build_backbone(f"random:{args.arch}", args.size)
                if res["head"].startswith("mmseg"):
                    head, layers = build_dense_head(bb, k, 768, layers=P.farl_layers(bb))
                else:
                    head, layers = ReplicaHead(bb.embed_dim, k, 768), P.farl_layers(bb)
                frozen = proto == "farl-frozen"
                model = P.FarlNet(bb, head, layers, frozen=frozen, input_size=args.size).to(dev).train()
                params = [p for p in model.parameters() if p.requires_grad]
                opt = torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-5)
                x = torch.rand(bs, 3, 512, 512, device=dev)
                if task == "parsing":
                    y = torch.randint(0, k, (bs, 512, 512), device=dev)
                else:
                    y = torch.rand(bs, k, 2, device=dev) * 400 + 56
                st = P.farl_settings("lapa" if task == "parsing" else "300w", proto, PROFILES["paper"])
                if cuda:
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for i in range(args.steps + 2):
                    sync()
                    t = time.perf_counter()
                    out = model(x)
                    loss = P.parsing_loss(out, y) if task == "parsing" else P.landmark_loss(out, y, st)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    sync()
                    if i >= 2:
                        times.append(time.perf_counter() - t)
                r = {"task": task, "protocol": proto, "batch": bs, "arch": args.arch, "input": args.size, "step_s": sum(times) / len(times),
                     "img_per_s": bs / (sum(times) / len(times)),
                     "peak_mem_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
                print(json.dumps(r), flush=True)
                res["runs"].append(r)
                del model, opt, x, y, out, loss
                if cuda:
                    torch.cuda.empty_cache()
    if args.pipeline:
        torch.set_num_threads(1)
        res["pipeline"] = pipeline_timing()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
