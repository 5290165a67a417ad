"""Training curves where researchers look for them: TensorBoard event files beside log.jsonl, and
the progress shown while training.

* `open_tensorboard(run)`: a `torch.utils.tensorboard.SummaryWriter` writing into the run directory
  (`events.out.tfevents.*` beside log.jsonl; `tensorboard --logdir runs/` shows every run), or None
  when the optional `tensorboard` package is not installed (one line says so; log.jsonl has the
  same numbers). Each log record becomes scalars: `loss/total`, `loss/<term>` per loss term,
  `train/lr`, `train/img_per_s`, `codebook/usage` and `codebook/perplexity` (PaCo-FR), `diag/*`
  and `grad/gnorm_*`, `grad/gshare_*` (the gradient diagnostics); each snapshot grid (original / corrupted /
  reconstructed faces) an image `reconstructions`.
* `Progress`: a tqdm bar on a terminal only; in a redirected log one plain line every `every` steps
  (about 20 lines a run, on the log steps); nothing with `train.progress=false` (`--no-progress`).
"""

from __future__ import annotations

import math
import sys
import time

from tqdm import tqdm

# log-record keys that are not curves
_NOT_SCALARS = {"step", "epoch", "event"}


def open_tensorboard(run):
    """The run's SummaryWriter (main process), or None without the `tensorboard` package."""
    if not run.is_main:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter  # needs the optional `tensorboard` package
    except ImportError:
        print("pretrain: no TensorBoard event files (the optional `tensorboard` package is not installed: "
              "pip install -e .[tensorboard]); log.jsonl has the same curves", flush=True)
        return None
    return SummaryWriter(log_dir=str(run.run_dir), purge_step=run.start_step + 1 if run.start_step else None)


def scalar_tag(key: str, terms: set[str]) -> str:
    """Where a log-record key goes in TensorBoard."""
    if key == "loss":
        return "loss/total"
    if key in terms or key.startswith("loss_"):
        return f"loss/{key.removeprefix('loss_') if key != 'loss_avg' else 'total_window_mean'}"
    if key.startswith("codebook_"):
        return f"codebook/{key.removeprefix('codebook_')}"
    if key.startswith("diag_"):
        return f"diag/{key.removeprefix('diag_')}"
    if key.startswith(("gnorm_", "gshare_")):
        return f"grad/{key}"
    return f"train/{key}"


def write_record(writer, rec: dict, terms: set[str]) -> None:
    if writer is None:
        return
    step = int(rec["step"])
    for k, v in rec.items():
        if k in _NOT_SCALARS or isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            continue
        writer.add_scalar(scalar_tag(k, terms), float(v), step)
    writer.flush()


def write_image(writer, tag: str, grid, step: int) -> None:
    """A (3, H, W) image in [0, 1] (a snapshot grid)."""
    if writer is not None:
        writer.add_image(tag, grid.float().clamp(0, 1).cpu(), step)
        writer.flush()


class Progress:
    """A bar on a terminal, plain lines every `every` steps otherwise, nothing when off."""

    def __init__(self, enabled: bool, total: int, start: int, desc: str, log_every: int, stream=None):
        self.stream = stream or sys.stderr
        self.total, self.desc = total, desc
        self.bar = None
        self.lines = False
        if not enabled:
            return
        if self.stream.isatty():
            self.bar = tqdm(total=total, initial=start, desc=desc, dynamic_ncols=True, file=self.stream)
        else:  # about 20 lines a run, on the log steps
            self.lines = True
            self.every = max(log_every, math.ceil(max(total - start, 1) / 20 / log_every) * log_every)
            self.t0, self.start = time.time(), start

    def update(self, step: int, loss: float, lr: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}")
        elif self.lines and (step % self.every == 0 or step == self.total):
            done = step - self.start
            rate = done / max(time.time() - self.t0, 1e-9)
            eta = (self.total - step) / rate if rate > 0 else float("nan")
            print(f"{self.desc}: step {step}/{self.total} loss {loss:.4f} lr {lr:.2e} "
                  f"{rate:.2f} steps/s eta {eta:.0f} s", file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
