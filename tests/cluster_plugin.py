"""A tiny plug-in dataset for the cluster tests (registered on import, also in worker processes
through BENCH_TASKS_PLUGINS=cluster_plugin): `cluster_cls` serves the real `attributes` and
`expression` tasks with 48/16/16 images of 32 px, so a cell takes about a second on one core.

Slow mode for the kill tests: while the file $CLUSTER_SLOW_DIR/slow exists, loading a train split
writes $CLUSTER_SLOW_DIR/started-<pid> (the worker is now mid-cell) and sleeps until the file is
removed (at most 120 s).
"""

import os
import time

import numpy as np
import torch

from bench_tasks.contracts import DatasetSpec, TaskSplit
from bench_tasks.registry import DATASETS

SIZES = {"train": 48, "val": 16, "test": 16}


class ClusterSplit(TaskSplit):
    def __init__(self, task, split, n, seed):
        meta = ({"attribute_names": ["a", "b", "c"]} if task == "attributes"
                else {"class_names": ["neutral", "happy", "sad"]})
        super().__init__("cluster_cls", split, meta=meta, slices={"even": np.arange(n) % 2 == 0})
        g = np.random.default_rng(seed)
        self.lab = g.integers(0, 3, n)
        self.attrs = (g.random((n, 3)) > 0.5).astype(np.uint8)
        self.task = task

    def __len__(self):
        return len(self.lab)

    def __getitem__(self, i):
        c = self.lab[i] if self.task == "expression" else self.attrs[i, 0]
        x = torch.full((3, 32, 32), 0.2 + 0.3 * float(c))
        x[:, : 4 + int(c) * 8] += 0.1
        y = torch.as_tensor(self.attrs[i]) if self.task == "attributes" else int(self.lab[i])
        return x, y


def _maybe_stall(split):
    d = os.environ.get("CLUSTER_SLOW_DIR")
    if not d or split != "train":
        return
    flag = os.path.join(d, "slow")
    if not os.path.exists(flag):
        return
    with open(os.path.join(d, f"started-{os.getpid()}"), "w") as f:
        f.write(str(time.time()))
    deadline = time.time() + 120
    while os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.05)


if "cluster_cls" not in DATASETS:
    @DATASETS.register("cluster_cls")
    class ClusterCls(DatasetSpec):
        name = "cluster_cls"
        tasks = ("attributes", "expression")
        needs_root = False

        def load(self, task, split, root, profile, image_size):
            _maybe_stall(split)
            return ClusterSplit(task, split, SIZES[split], {"train": 0, "val": 1, "test": 2}[split])
