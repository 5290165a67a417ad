"""Prototype of docs/dense.md ("Why the heads did not learn"): a plain conv head on cached frozen
random ViT-Ti/8 (2 blocks) token maps of SynthFace at 64 px, to isolate the target encoding, the
position input and the budget from mmseg's UPerHead. One run per call, appends a JSON line to
dense_prototype.jsonl. Variants are compared on `val` (the runs docs/dense.md lists reported the
`test` split; selection never reads it now). Example:
  OMP_NUM_THREADS=1 python scripts/dense_prototype.py --task lm --loss ce --coord 1 --epochs 8
"""
# ruff: noqa  (an experiment script kept as it was run, see docs/dense.md)
import sys, time, json, numpy as np, torch, torch.nn as nn, torch.nn.functional as F
sys.path.insert(0, str(__import__('pathlib').Path(__file__).resolve().parents[1]))
from paco_fr.data.synthface import load_synthface
from bench_tasks.backbones.random_init import build as build_random
from bench_tasks.metrics import landmarks as LM
from bench_tasks.metrics.parsing import confusion_matrix, scores_from_confusion

def data(size=64, n=(1200,300,300)):
    return {s: load_synthface(s, k, image_size=size, progress=False) for s, k in zip(("train","val"), n)}

def floors(d):
    tr, te = d["train"], d["val"]
    mean = tr.landmarks.mean(0)
    pred = np.broadcast_to(mean, te.landmarks.shape)
    nme = LM.nme_per_image(pred, te.landmarks, LM.inter_ocular(te.landmarks, 36, 45)).mean()
    k = 11
    counts = np.stack([(tr.masks == c).sum(0) for c in range(k)])
    prior = counts.argmax(0)
    cm = sum(confusion_matrix(torch.from_numpy(prior), torch.from_numpy(m.astype(np.int64)), k) for m in te.masks)
    f1 = scores_from_confusion(cm)["f1_mean"]
    return float(nme), float(f1)

def imgs(split):
    return torch.from_numpy(split.images).permute(0,3,1,2).float()/255.

@torch.no_grad()
def features(bb, x, layers, bs=100):
    outs = [[] for _ in layers]
    for i in range(0, len(x), bs):
        o = bb(x[i:i+bs], layers).patch_maps()
        for j, m in enumerate(o): outs[j].append(m)
    return [torch.cat(o) for o in outs]

def lm_nme(pred_px, gt_px):
    return float(LM.nme_per_image(pred_px, gt_px, LM.inter_ocular(gt_px, 36, 45)).mean())

def parse_f1(logits_list, masks):
    cm = 0
    for lg, m in zip(logits_list, masks):
        cm = cm + confusion_matrix(lg.argmax(0), torch.from_numpy(m.astype(np.int64)), 11)
    return scores_from_confusion(cm)["f1_mean"]
from common import *
p = argparse.ArgumentParser()
p.add_argument('--task', default='lm'); p.add_argument('--loss', default='farl')
p.add_argument('--lr', type=float, default=5e-3); p.add_argument('--epochs', type=int, default=2)
p.add_argument('--ntrain', type=int, default=600); p.add_argument('--bs', type=int, default=64)
p.add_argument('--ema', type=float, default=0.9); p.add_argument('--res', type=int, default=32)
p.add_argument('--C', type=int, default=64); p.add_argument('--sigma', type=float, default=1.0)
p.add_argument('--tag', default=''); p.add_argument('--prior', type=int, default=0); p.add_argument('--coord', type=int, default=0); p.add_argument('--evals', type=int, default=3); p.add_argument('--shuffle', type=int, default=1)
a = p.parse_args()
torch.manual_seed(0)
d = data()
bb = build_random('vit_tiny@64/8/d2', 64).eval()
layers = [0, 1]
feats = {s: features(bb, imgs(d[s][:0] if False else d[s]) if False else imgs(d[s]), layers) for s in d}
ntr = a.ntrain
class Head(nn.Module):
    def __init__(s, D, C, K, res):
        super().__init__(); s.res = res
        s.lat = nn.ModuleList([nn.Sequential(nn.Conv2d(D, C*16, 1), nn.PixelShuffle(4)), nn.Sequential(nn.Conv2d(D, C*4, 1), nn.PixelShuffle(2))]) if a.shuffle else nn.ModuleList([nn.Conv2d(D, C, 1) for _ in layers])
        s.coord = nn.Conv2d(2, C, 1) if a.coord else None
        s.prior = nn.Parameter(torch.zeros(K, res, res)) if a.prior else None
        s.body = nn.Sequential(nn.Conv2d(C, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU(),
                               nn.Conv2d(C, C, 3, padding=1), nn.BatchNorm2d(C), nn.ReLU())
        s.out = nn.Conv2d(C, K, 1)
    def forward(s, maps):
        x = sum(F.interpolate(l(m), size=(s.res, s.res), mode='bilinear', align_corners=False) for l, m in zip(s.lat, maps))
        if s.coord is not None:
            ys, xs = torch.meshgrid(torch.linspace(-1,1,s.res), torch.linspace(-1,1,s.res), indexing='ij')
            x = x + s.coord(torch.stack([xs, ys])[None])
        o = s.out(s.body(x))
        return o + s.prior if s.prior is not None else o
K = 68 if a.task == 'lm' else 11
head = Head(192, a.C, K, a.res)
S = 64
def soft_argmax(lg):
    b,k,h,w = lg.shape; pr = lg.flatten(2).softmax(-1).view(b,k,h,w)
    xs=(torch.arange(w)+.5)/w; ys=(torch.arange(h)+.5)/h
    return torch.stack([(pr.sum(2)*xs).sum(-1),(pr.sum(3)*ys).sum(-1)],-1)
def local_soft_argmax(lg, r=2):
    b,k,h,w = lg.shape; f = lg.flatten(2); i = f.argmax(-1); iy, ix = i // w, i % w
    ys = torch.arange(h).view(1,1,h,1); xs = torch.arange(w).view(1,1,1,w)
    win = ((ys - iy[...,None,None]).abs() <= r) & ((xs - ix[...,None,None]).abs() <= r)
    pr = lg.masked_fill(~win, float('-inf')).flatten(2).softmax(-1).view(b,k,h,w)
    x = (pr.sum(2)*((torch.arange(w)+.5)/w)).sum(-1); y = (pr.sum(3)*((torch.arange(h)+.5)/h)).sum(-1)
    return torch.stack([x,y],-1)
DECODE = {'soft': soft_argmax, 'local': local_soft_argmax}
decode = soft_argmax
def gauss(unit,h,w,sig):
    px=unit[...,0:1]*w-.5; py=unit[...,1:2]*h-.5
    gx=torch.exp(-((torch.arange(w)-px)**2)/(2*sig**2)); gy=torch.exp(-((torch.arange(h)-py)**2)/(2*sig**2))
    return gy[...,:,None]*gx[...,None,:]
def loss_fn(lg, tgt):
    if a.task == 'seg':
        lg = F.interpolate(lg, size=(S,S), mode='bilinear', align_corners=False)
        return F.cross_entropy(lg, tgt)
    gt = (tgt + .5)/S
    if a.loss == 'farl':
        return (soft_argmax(lg)-gt).abs().mean() + F.binary_cross_entropy_with_logits(lg, gauss(gt, *lg.shape[-2:], a.sigma))
    if a.loss == 'l1':
        return (soft_argmax(lg)-gt).abs().mean()
    if a.loss == 'bce':
        return F.binary_cross_entropy_with_logits(lg, gauss(gt, *lg.shape[-2:], a.sigma))
    if a.loss == 'ce':  # softmax CE against the normalised Gaussian
        t = gauss(gt, *lg.shape[-2:], a.sigma).flatten(2); t = t/t.sum(-1,keepdim=True)
        return -(t*lg.flatten(2).log_softmax(-1)).sum(-1).mean()
    if a.loss == 'ce+l1':
        t = gauss(gt, *lg.shape[-2:], a.sigma).flatten(2); t = t/t.sum(-1,keepdim=True)
        return -(t*lg.flatten(2).log_softmax(-1)).sum(-1).mean() + (soft_argmax(lg)-gt).abs().mean()*10
    raise ValueError(a.loss)
ytr = torch.from_numpy(d['train'].landmarks[:ntr]) if a.task=='lm' else torch.from_numpy(d['train'].masks[:ntr].astype(np.int64))
ftr = [f[:ntr] for f in feats['train']]
opt = torch.optim.AdamW(head.parameters(), lr=a.lr, weight_decay=1e-5)
spe = ntr // a.bs; total = spe*a.epochs; warm = int(.05*total)
ema = torch.optim.swa_utils.AveragedModel(head, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(a.ema), use_buffers=True) if a.ema else None
import math
def ev(model, split):
    model.eval(); f = feats[split]
    with torch.no_grad():
        lg = torch.cat([model([m[i:i+100] for m in f]) for i in range(0, len(f[0]), 100)])
    if a.task=='lm':
        return 100*lm_nme((decode(lg)*S-.5).numpy(), d[split].landmarks)
    lg = F.interpolate(lg, size=(S,S), mode='bilinear', align_corners=False)
    return parse_f1(lg, d[split].masks)
g = torch.Generator().manual_seed(0); step = 0; t0 = time.time(); hist = []
for ep in range(a.epochs):
    head.train(); perm = torch.randperm(ntr, generator=g)
    for b in range(spe):
        idx = perm[b*a.bs:(b+1)*a.bs]
        sc = (step+1)/warm if step < warm else .5*(1+math.cos(math.pi*(step-warm)/max(1,total-warm)))
        for gr in opt.param_groups: gr['lr'] = a.lr*sc
        loss = loss_fn(head([f[idx] for f in ftr]), ytr[idx])
        opt.zero_grad(); loss.backward(); torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0); opt.step()
        if ema: ema.update_parameters(head)
        step += 1
    if ep == a.epochs-1 or (ep+1) % max(1, a.epochs//a.evals) == 0:
        hist.append((ep, round(loss.item(),4), round(ev(ema.module if ema else head, 'val'),2)))
extra = {}
if a.task == 'lm':
    for nm, fn in DECODE.items():
        decode = fn; extra['val_'+nm] = round(ev(ema.module if ema else head, 'val'), 2)
    decode = soft_argmax
res = dict(vars(a), **extra, steps=total, val=round(ev(ema.module if ema else head, 'val'),2), val_noema=round(ev(head,'val'),2), hist=hist, sec=round(time.time()-t0,1))
print(json.dumps(res)); open('dense_prototype.jsonl','a').write(json.dumps(res)+'\n')
