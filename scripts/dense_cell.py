"""One dense cell (SynthFace) through the real task with profile overrides, timed; prints and
appends a JSON line. docs/dense.md lists the runs. Example:
  OMP_NUM_THREADS=1 python scripts/dense_cell.py --task parsing --protocol frozen \
      --set '{"dense_class_weight": "none"}'
"""
# ruff: noqa  (an experiment script kept as it was run, see docs/dense.md)
import argparse, dataclasses, json, sys, time, os
from pathlib import Path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import torch
torch.set_num_threads(1)
from pathlib import Path
from bench_tasks.plan.profiles import PROFILES
from bench_tasks.contracts import Cell, CellContext
from bench_tasks.backbones.base import build_backbone
from bench_tasks.registry import TASKS
import bench_tasks.tasks.landmarks, bench_tasks.tasks.parsing, bench_tasks.datasets.synthface  # noqa
p = argparse.ArgumentParser()
p.add_argument('--task', default='landmarks'); p.add_argument('--backbone', default='random:vit_tiny@64/8/d2')
p.add_argument('--protocol', default='frozen'); p.add_argument('--profile', default='smoke')
p.add_argument('--fraction', type=float, default=1.0); p.add_argument('--seed', type=int, default=0)
p.add_argument('--set', default='{}', help='JSON: Profile fields and/or extra keys (extra.*)')
p.add_argument('--tag', default=''); p.add_argument('--work-dir', default='work_dirs/dense_cell'); p.add_argument('--log', default='dense_cell.jsonl')
a = p.parse_args()
prof = PROFILES[a.profile]
over = json.loads(a.set)
fields = {k: v for k, v in over.items() if k in {f.name for f in dataclasses.fields(prof)}}
extra = {**(prof.extra or {}), **{k: v for k, v in over.items() if k not in fields}}
prof = dataclasses.replace(prof, **fields, extra=extra)
task = TASKS.get(a.task)()
cell = Cell(a.backbone, a.task, 'synthface', a.protocol, a.fraction, a.seed, profile=a.profile)
torch.manual_seed(a.seed)
bb = build_backbone(a.backbone, task.image_size(prof))
wd = Path(a.work_dir); wd.mkdir(exist_ok=True, parents=True)
ctx = CellContext(cell, bb, prof, None, torch.device('cpu'), wd, progress=False, results_dir=wd)
t = time.time()
res = task.run(ctx)
dt = time.time() - t
m = res.metrics
h = res.extra.get('history', [])
key = 'nme' if a.task == 'landmarks' else 'f1_mean'
out = dict(tag=a.tag, task=a.task, backbone=a.backbone, protocol=a.protocol, profile=a.profile, set=over,
           fraction=a.fraction, seed=a.seed, test=round(m[key], 2), last=round(res.metrics_last[key], 2),
           sel_epoch=m.get('selected_epoch'), val_hist=[round(x.get(f'val/{key}', float('nan')), 2) for x in h],
           sec=round(dt, 1), loss_hist=[round(x['train_loss'], 3) for x in h], f1=({k.split('/')[1][:6]: round(v) for k, v in m.items() if k.startswith('f1/')} if a.task == 'parsing' else None))
print(json.dumps(out)); open(a.log, 'a').write(json.dumps(out) + '\n')
