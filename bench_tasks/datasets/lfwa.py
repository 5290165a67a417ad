"""LFWA attributes: the LFW images with the attribute scores of Kumar et al.
(`lfw_attributes.txt`, 73 real-valued attribute classifier outputs per image, binarised at 0).

Splits: an optional `splits.txt` ('<Person_Name>_0001.jpg train|val|test', or
'<Person_Name> <imagenum> train|val|test'); without it, identity-disjoint seeded splits (every
image of a person in the same split): about 50% train, 10% val, 40% test of the identities (the
LFWA protocol of Liu et al. uses 6263 train / 6970 test images). The 250x250 LFW images are centre-
cropped to 150x150 around the face and resized.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec
from bench_tasks.datasets._readers import ImageListSplit, check_root
from bench_tasks.registry import DATASETS

LAYOUT = """lfwa/
  lfw/<Person_Name>/<Person_Name>_0001.jpg ...   the LFW images (250x250)
  lfw_attributes.txt     line 1 '# <count>'; line 2 '#<TAB>person<TAB>imagenum<TAB><attribute names, TAB-separated>';
                         then 'Aaron Eckhart<TAB>1<TAB>1.568<TAB>-1.889 ...' (scores, > 0 means yes)
  splits.txt             (optional) '<Person_Name>_0001.jpg train|val|test'"""

SPLIT_FRACS = (0.5, 0.1, 0.4)


def parse_lfw_attributes(path: Path):
    lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
    header = None
    rows = []
    for ln in lines:
        if ln.startswith("#"):
            cols = [c.strip() for c in ln.lstrip("#").split("\t") if c.strip()]
            if len(cols) > 2 and cols[0].lower() == "person":
                header = cols
            continue
        rows.append(ln.rstrip("\n").split("\t"))
    if header is None:
        raise ValueError("no '#\\tperson\\timagenum\\t...' header line")
    names = header[2:]
    people, nums, scores = [], [], []
    for r in rows:
        if len(r) != len(header):
            raise ValueError(f"row {r[:2]} has {len(r)} columns, header has {len(header)}")
        people.append(r[0].strip())
        nums.append(int(r[1]))
        scores.append([float(v) for v in r[2:]])
    return people, nums, names, np.array(scores, dtype=np.float32)


def identity_split(person: str, seed: int = 0) -> str:
    h = int(hashlib.sha1(f"{seed}:{person}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    if h < SPLIT_FRACS[0]:
        return "train"
    return "val" if h < SPLIT_FRACS[0] + SPLIT_FRACS[1] else "test"


@DATASETS.register("lfwa")
class LFWA(DatasetSpec):
    name = "lfwa"
    tasks = ("attributes",)
    needs_root = True
    layout = LAYOUT

    def load(self, task, split, root, profile, image_size):
        root = check_root(self.name, root, LAYOUT, ["lfw", "lfw_attributes.txt"])
        try:
            people, nums, names, scores = parse_lfw_attributes(root / "lfw_attributes.txt")
        except ValueError as err:
            raise DatasetLayoutError(self.name, root, f"malformed lfw_attributes.txt: {err}", LAYOUT) from None
        files = [f"{p.replace(' ', '_')}_{n:04d}.jpg" for p, n in zip(people, nums)]
        assigned: dict[str, str] = {}
        if (root / "splits.txt").exists():
            for ln in (root / "splits.txt").read_text().splitlines():
                parts = ln.split()
                if len(parts) == 2:
                    assigned[parts[0]] = parts[1]
                elif len(parts) >= 3 and parts[-2].isdigit():
                    assigned[f"{'_'.join(parts[:-2])}_{int(parts[-2]):04d}.jpg"] = parts[-1]
        idx = [i for i, (f, p) in enumerate(zip(files, people))
               if assigned.get(f, identity_split(p.replace(" ", "_"))) == split]
        paths = [str(root / "lfw" / people[i].replace(" ", "_") / files[i]) for i in idx]
        # 250x250 LFW: the face occupies the central ~150 px
        boxes = np.tile(np.array([[50.0, 50.0, 150.0, 150.0]]), (len(idx), 1))
        return ImageListSplit(self.name, split, paths, (scores[idx] > 0).astype(np.uint8), image_size,
                              meta={"attribute_names": names, "task": task}, crop="lfw_center150",
                              boxes=boxes)
