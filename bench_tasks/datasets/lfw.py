"""`lfw`: Labeled Faces in the Wild with its official `pairs.txt` (view 2, 10 folds).

    <root>/pairs.txt                     first line "10 300" (folds, pairs per kind per fold), then
                                         per fold 300 genuine lines "name n1 n2" followed by 300
                                         impostor lines "name1 n1 name2 n2"
    <root>/lfw/<name>/<name>_<nnnn>.jpg  the image folder (n zero-padded to 4 digits)

The pair list keeps the file's order, so 10-fold accuracy uses LFW's own folds. The original
250x250 LFW images are not aligned: the reader takes a centred square of `CROP_FRAC` of the
side (the face occupies roughly the central 100-120 px) and resizes it to the input size; use a
deep-funneled / aligned copy of LFW in the same layout for better numbers. Test-only (split
"test"); the recognition task trains on `face_folder` or SynthFace (docs/recognition.md).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import EncodedImageSplit
from bench_tasks.registry import DATASETS
from bench_tasks.stats.pairs import Pairs

CROP_FRAC = 0.6

LAYOUT = """<root>/pairs.txt                     "10 300" then per fold 300 lines "name n1 n2" and 300 lines "name1 n1 name2 n2"
<root>/lfw/<name>/<name>_<nnnn>.jpg  e.g. lfw/Aaron_Peirsol/Aaron_Peirsol_0001.jpg"""


def image_path(root: Path, name: str, n: int) -> Path:
    return root / "lfw" / name / f"{name}_{n:04d}.jpg"


def parse_pairs_txt(path: Path, dataset: str = "lfw") -> tuple[list[tuple[str, int, str, int]], int, int]:
    """-> (list of (name1, n1, name2, n2) in file order, n_folds, pairs_per_kind_per_fold)."""
    root = path.parent

    def bad(problem):
        return DatasetLayoutError(dataset, root, f"{path.name}: {problem}", LAYOUT)

    lines = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    if not lines:
        raise bad("empty file")
    try:
        n_folds, per = (int(t) for t in lines[0])
    except ValueError:
        raise bad(f"first line must be '<folds> <pairs per fold>', got {' '.join(lines[0])!r}") from None
    body = lines[1:]
    if len(body) != 2 * n_folds * per:
        raise bad(f"header says {n_folds} folds x {2 * per} pairs = {2 * n_folds * per} lines, found {len(body)}")
    pairs = []
    for k, toks in enumerate(body):
        genuine = (k % (2 * per)) < per
        try:
            if genuine and len(toks) == 3:
                pairs.append((toks[0], int(toks[1]), toks[0], int(toks[2])))
            elif not genuine and len(toks) == 4:
                pairs.append((toks[0], int(toks[1]), toks[2], int(toks[3])))
            else:
                kind = "'name n1 n2'" if genuine else "'name1 n1 name2 n2'"
                raise ValueError(f"expected {kind}")
        except ValueError as err:
            raise bad(f"line {k + 2}: {' '.join(toks)!r}: {err}") from None
    return pairs, n_folds, per


@DATASETS.register("lfw")
class LFW(DatasetSpec):
    name = "lfw"
    tasks = ("recognition",)
    layout = LAYOUT
    test_only = True

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        if task != "recognition":
            raise ValueError(f"lfw serves recognition only, not {task!r}")
        if split != "test":
            raise ValueError(f"lfw is a test-only verification set (split 'test'), not {split!r}")
        if root is None or not Path(root).is_dir():
            raise DatasetLayoutError(self.name, root, "root folder not found", LAYOUT)
        root_p = Path(root)
        if not (root_p / "pairs.txt").is_file():
            raise DatasetLayoutError(self.name, root, "pairs.txt not found", LAYOUT)
        if not (root_p / "lfw").is_dir():
            raise DatasetLayoutError(self.name, root, "image folder lfw/ not found", LAYOUT)
        pairs, n_folds, per = parse_pairs_txt(root_p / "pairs.txt", self.name)
        index: dict[tuple[str, int], int] = {}
        idx1, idx2 = [], []
        for a, na, b, nb in pairs:
            for key, out in (((a, na), idx1), ((b, nb), idx2)):
                if key not in index:
                    index[key] = len(index)
                out.append(index[key])
        keys = list(index)
        missing = [image_path(root_p, *k) for k in keys if not image_path(root_p, *k).is_file()]
        if missing:
            raise DatasetLayoutError(self.name, root, f"{len(missing)} images of pairs.txt missing, e.g. {missing[0]}", LAYOUT)
        names = sorted({k[0] for k in keys})
        name_id = {n: i for i, n in enumerate(names)}
        paths = [image_path(root_p, *k) for k in keys]
        out = EncodedImageSplit(self.name, "test", paths, [name_id[k[0]] for k in keys], [str(p) for p in paths],
                             image_size, crop_frac=CROP_FRAC,
                             meta={"n_folds": n_folds, "pairs_per_fold": per, "transform": f"centre{CROP_FRAC}"})
        issame = np.array([a == b for a, _, b, _ in pairs])
        out.pairs = {"all": Pairs(idx1, idx2, issame, info={"n_folds": n_folds, "source": str(root_p / "pairs.txt")})}
        return out
