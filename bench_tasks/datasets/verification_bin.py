"""The binary verification sets distributed with face-recognition training code (insightface):
`lfw.bin`, `cfp_fp.bin`, `agedb_30.bin`.

Each file is a pickle of `(bins, issame_list)`: `bins` a list of encoded JPEG/PNG images (bytes;
Python-2 `str` pickles are read with encoding="bytes"), `issame_list` a list of bools; pair i is
images 2i and 2i+1 (so len(bins) == 2 * len(issame_list)). The pair list is in the order of
the distributed protocol, so 10-fold accuracy uses contiguous blocks of it, as insightface does.

Unpickling can run arbitrary code, so `read_bin` uses `SafeUnpickler`, whose `find_class`
refuses every global: bytes, str, lists, tuples, bools and ints need no class lookup, while
anything that would import or call a function (REDUCE/GLOBAL/INST/OBJ/NEWOBJ, extension codes,
persistent ids) fails with `UnsafePickleError` naming the file before anything runs. The single
exception is `_codecs.encode`, which Python 3 uses for bytes at pickle protocol <= 2; it is
replaced by a stand-in that only accepts (str, "latin1") and returns bytes. numpy
arrays (which need `numpy.core.multiarray._reconstruct`) are refused too: no distributed file
we know of contains them; convert such a file with trusted code first.

Registered datasets (root = the folder that contains the .bin; split "test" only, these are
test-only sets; the recognition task trains on `face_folder` or SynthFace, see
docs/recognition.md): `lfw_bin` (lfw.bin), `cfp_fp` (cfp_fp.bin), `agedb_30` (agedb_30.bin).
"""

from __future__ import annotations

import functools
import io
import pickle
from pathlib import Path

import numpy as np

from bench_tasks.contracts import DatasetLayoutError, DatasetSpec, Profile, TaskSplit
from bench_tasks.datasets._readers import EncodedImageSplit
from bench_tasks.errors import DataError
from bench_tasks.registry import DATASETS
from bench_tasks.stats.pairs import Pairs


class UnsafePickleError(DataError, pickle.UnpicklingError):
    pass


def _latin1_encode(text, encoding="latin1", *rest, path: str = "<pickle>"):
    """The one global allowed: Python 3 pickles bytes at protocol <= 2 as
    `_codecs.encode(str, "latin1")`; this stand-in only turns a str into bytes."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1") or rest:
        raise UnsafePickleError(
            f"{path}: refusing _codecs.encode with unexpected arguments (a verification .bin may use it "
            "only to turn latin-1 text into image bytes)")
    return text.encode("latin1")


class SafeUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str):
        super().__init__(file, encoding="bytes")
        self.path = path

    def find_class(self, module, name):
        if (module, name) == ("_codecs", "encode"):
            return functools.partial(_latin1_encode, path=self.path)
        raise UnsafePickleError(
            f"{self.path}: refusing to unpickle a reference to {module}.{name} (verification .bin "
            "files must hold only a (list of image bytes, list of bools) pair; objects that import "
            "or call code are never loaded)")

    def persistent_load(self, pid):
        raise UnsafePickleError(f"{self.path}: refusing a pickle with persistent ids")


def _is_image(b: bytes) -> bool:
    return b[:3] == b"\xff\xd8\xff" or b[:8] == b"\x89PNG\r\n\x1a\n"


def read_bin(path: str | Path) -> tuple[list[bytes], np.ndarray]:
    """-> (list of encoded images, bool array of is-same flags, one per consecutive image pair)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            obj = SafeUnpickler(io.BufferedReader(f), str(path)).load()
    except UnsafePickleError:
        raise
    except Exception as err:  # truncated / not a pickle
        raise ValueError(f"{path}: not a readable verification .bin pickle ({type(err).__name__}: {err})") from err
    if not (isinstance(obj, (tuple, list)) and len(obj) == 2):
        raise ValueError(f"{path}: expected a pickled (bins, issame_list) pair, got {type(obj).__name__}")
    bins, issame = obj
    if not isinstance(bins, (list, tuple)) or not all(isinstance(b, (bytes, bytearray)) for b in bins):
        raise ValueError(f"{path}: the first element must be a list of encoded images (bytes)")
    if not isinstance(issame, (list, tuple)) or not all(isinstance(s, (bool, int)) for s in issame):
        raise ValueError(f"{path}: the second element must be a list of bools")
    if len(bins) != 2 * len(issame):
        raise ValueError(f"{path}: {len(bins)} images for {len(issame)} pairs (expected 2 per pair)")
    for i, b in enumerate(bins):
        if not _is_image(b):
            raise ValueError(f"{path}: image {i} (pair {i // 2}) is not a JPEG/PNG (corrupt image)")
    return [bytes(b) for b in bins], np.asarray(issame, dtype=bool)


class VerificationBin(DatasetSpec):
    tasks = ("recognition",)
    bin_name: str = ""
    test_only = True

    @classmethod
    def _layout(cls) -> str:
        return f"<root>/{cls.bin_name}    pickle of (list of JPEG/PNG bytes, list of is-same bools); pair i = images 2i, 2i+1"

    def load(self, task: str, split: str, root: str | None, profile: Profile, image_size: int) -> TaskSplit:
        if task != "recognition":
            raise ValueError(f"{self.name} serves recognition only, not {task!r}")
        if split != "test":
            raise ValueError(f"{self.name} is a test-only verification set (split 'test'), not {split!r}")
        path = Path(root) / self.bin_name if root is not None else None
        if path is None or not path.is_file():
            raise DatasetLayoutError(self.name, root, f"{self.bin_name} not found", self._layout())
        bins, issame = read_bin(path)
        n = len(bins)
        out = EncodedImageSplit(self.name, "test", bins, np.full(n, -1), [f"{path} image {i} (pair {i // 2})" for i in range(n)],
                             image_size, meta={"file": str(path)})
        out.identity = None  # identities are unknown: only the shipped pairs exist
        out.pairs = {"all": Pairs(np.arange(0, n, 2), np.arange(1, n, 2), issame, info={"source": str(path)})}
        return out


def _register(name: str, bin_name: str):
    cls = type(f"VerificationBin_{name}", (VerificationBin,), {"name": name, "bin_name": bin_name})
    cls.layout = cls._layout()
    return DATASETS.register(name)(cls)


LfwBin = _register("lfw_bin", "lfw.bin")
CfpFp = _register("cfp_fp", "cfp_fp.bin")
AgeDb30 = _register("agedb_30", "agedb_30.bin")
