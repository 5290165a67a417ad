"""`python -m paco_fr {pretrain,prepare,export,bench-throughput}`."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    a, extra = parser.parse_known_args(argv)
    # dotted key=value overrides may sit on either side of the options (`--run-dir R a=1 --fresh b=2`)
    if extra and hasattr(a, "overrides") and all("=" in x and not x.startswith("-") for x in extra):
        a.overrides = list(a.overrides or []) + extra
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if a.cmd == "bench-throughput" and a.suite:
        return _bench_suite(a)
    return COMMANDS[a.cmd](a)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m paco_fr")
    sub = ap.add_subparsers(dest="cmd", required=True)
    _add_pretrain(sub)
    _add_prepare(sub)
    _add_export(sub)
    _add_bench_throughput(sub)
    return ap


def _add_pretrain(sub) -> None:
    """`pretrain`: a config, its run directory and how an existing one is treated."""
    p = sub.add_parser("pretrain", help="pre-train (PaCo-FR / MAE / FaRL / MCF) from a config")
    p.add_argument("--config", default="smoke", help="YAML path or bundled config name (smoke, small, paper, ...)")
    p.add_argument("--run-dir", default=None, help="default runs/<name>")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true",
                      help="require a checkpoint in the run dir and continue from it (an error when there is "
                           "none). Without --resume / --fresh, an interrupted run with the same config resumes, "
                           "a finished one is left as it is, and a run made with another config is refused")
    mode.add_argument("--fresh", action="store_true",
                      help="start the run dir over (its checkpoint, log and summary are replaced)")
    p.add_argument("--extend", action="store_true",
                   help="allow a larger train.steps / train.epochs than the run dir's run: training continues "
                        "from its checkpoint to the new length")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar and no progress lines (train.progress=false); a bar is drawn on a "
                        "terminal only, a redirected log gets one line every few log steps")
    p.add_argument("overrides", nargs="*", help="dotted key=value overrides, e.g. codebook.num_tokens=256")


def _add_prepare(sub) -> None:
    """`prepare`: raw images + landmarks (or aligned crops) -> aligned shards."""
    pp = sub.add_parser("prepare", help="raw images + 5-point landmarks (or aligned crops) -> aligned shards "
                        "for data.source=wds (resumable; see docs/pretraining.md)")
    src = pp.add_mutually_exclusive_group(required=True)
    src.add_argument("--images", help="folder of raw images (needs --landmarks)")
    src.add_argument("--aligned", help="folder of already aligned crops")
    pp.add_argument("--landmarks", help="lines 'relpath x1 y1 ... x5 y5' (pixel coordinates; 68 points allowed)")
    pp.add_argument("--out", required=True, help="output folder: shard-XXXXXX.tar + manifest.json")
    pp.add_argument("--size", type=int, default=112, help="crop size in pixels (default 112)")
    pp.add_argument("--shard-size", type=int, default=1000, help="input images per shard (default 1000)")
    pp.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1),
                    help="processes (default: cores - 1)")
    pp.add_argument("--quality", type=int, default=95, help="JPEG quality (default 95)")
    pp.add_argument("--no-progress", action="store_true", help="no progress bar (none anyway when not a terminal)")


def _add_export(sub) -> None:
    """`export`: a checkpoint -> the encoder's safetensors."""
    e = sub.add_parser("export", help="checkpoint -> timm-keyed encoder safetensors")
    e.add_argument("ckpt")
    e.add_argument("out")
    e.add_argument("--no-ema", action="store_true")


def _add_bench_throughput(sub) -> None:
    """`bench-throughput`: one step's speed, or `--suite` of every objective."""
    b = sub.add_parser("bench-throughput", help="PaCo-FR step vs plain SimMIM step, img/s and MFU; --suite: "
                       "every objective and inference, eager and compiled")
    b.add_argument("--arch", default="vit_tiny")
    b.add_argument("--img-size", type=int, default=64)
    b.add_argument("--patch-size", type=int, default=None)
    b.add_argument("--depth", type=int, default=None)
    b.add_argument("--batch", type=int, default=8)
    b.add_argument("--steps", type=int, default=3)
    b.add_argument("--warmup", type=int, default=1)
    b.add_argument("--compile", action="store_true")
    b.add_argument("--config", default=None)
    b.add_argument("--device", default="auto")
    b.add_argument("--peak-tflops", type=float, default=None)
    b.add_argument("--json", default=None, help="also write the result here")
    b.add_argument("--suite", action="store_true",
                   help="every objective's train step + inference, --modes eager,compiled, MFU vs measured peak")
    b.add_argument("--objectives", default="simmim,mae,paco,farl,mcf,infer", help="--suite: steps to measure")
    b.add_argument("--modes", default="eager,compiled", help="--suite: eager and/or compiled")
    b.add_argument("--warm-only", action="store_true",
                   help="--suite: compile and run each step twice, no timing (fills inductor's caches)")
    b.add_argument("--time-limit", type=float, default=None,
                   help="--suite: seconds; cases not started by then are recorded as skipped")
    b.add_argument("--markdown", default=None, help="--suite: also write the Markdown table here")
    b.add_argument("overrides", nargs="*")


def _pretrain(a) -> int:
    # lazy: `python -m paco_fr --help` stays torch-free; each command loads what it runs
    from paco_fr.checkpoint_file import CheckpointUnreadable
    from paco_fr.config import ConfigError, check_data_config, load_config
    from paco_fr.engine import run_name, train
    from paco_fr.rundir import check_run_dir

    overrides = list(a.overrides) + (["train.progress=false"] if a.no_progress else [])
    try:
        cfg = load_config(a.config, overrides)
        check_data_config(cfg)
        run_dir = Path(a.run_dir) if a.run_dir else Path("runs") / run_name(a.config, cfg)
        state = check_run_dir(cfg, run_dir, fresh=a.fresh, resume_required=a.resume, extend=a.extend)
    except (ConfigError, FileNotFoundError, CheckpointUnreadable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if state == "complete":
        print(f"done (already complete with this config, nothing retrained): {run_dir / 'encoder.safetensors'}")
        return 0
    try:
        summary = train(cfg, run_dir, resume=not a.fresh, extend=a.extend)
    except CheckpointUnreadable as err:  # damaged inside although its zip directory reads
        print(f"error: {err}", file=sys.stderr)
        return 2
    if int(os.environ.get("RANK", "0")) != 0:
        return 0 if summary["status"] == "complete" else 1
    if summary["status"] == "complete":
        print(f"done: {run_dir / 'encoder.safetensors'}")
        return 0
    print(f"interrupted at step {summary['step']}; checkpoint saved in {run_dir / 'ckpt'} "
          f"(rerun the same command to resume)", file=sys.stderr)
    return 1


def _prepare(a) -> int:
    # lazy: `python -m paco_fr --help` stays torch-free; each command loads what it runs
    from paco_fr.prepare import prepare

    try:
        m = prepare(a.out, images=a.images, landmarks=a.landmarks, aligned=a.aligned, size=a.size,
                    shard_size=a.shard_size, workers=a.workers, quality=a.quality,
                    progress=False if a.no_progress else None)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"prepare: {m['num_samples']} faces in {len(m['shards'])} shard(s) ({m['shards_reused']} kept from "
          f"an earlier run, their size and sha256 checked), {m['num_skipped']} input(s) skipped -> "
          f"{Path(a.out) / 'manifest.json'}")
    for d in m["shards_damaged"]:
        print(f"  rewrote damaged shard {d['name']} ({d['reason']})")
    for sk in m["skipped"]:
        print(f"  skipped {sk['file']}: {sk['reason']}")
    print(f"train with: python -m paco_fr pretrain data.source=wds data.path={a.out} model.img_size={a.size}")
    return 0


def _export(a) -> int:
    # lazy: `python -m paco_fr --help` stays torch-free; each command loads what it runs
    from paco_fr.checkpoint_file import CheckpointUnreadable
    from paco_fr.export import export_checkpoint

    try:
        out = export_checkpoint(a.ckpt, a.out, use_ema=not a.no_ema)
    except CheckpointUnreadable as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out)
    return 0


def _bench_suite(a) -> int:
    # lazy: `python -m paco_fr --help` stays torch-free; each command loads what it runs
    from paco_fr.throughput import bench_suite, format_suite_markdown

    r = bench_suite(a.arch, a.img_size, a.patch_size, a.batch, a.steps, a.warmup,
                    tuple(x for x in a.objectives.split(",") if x), tuple(x for x in a.modes.split(",") if x),
                    a.depth, a.config, a.overrides, a.device, a.peak_tflops, warm_only=a.warm_only,
                    deadline=(time.time() + a.time_limit) if a.time_limit else None,
                    on_row=(lambda res: Path(a.json).write_text(json.dumps({**res, "partial": True}, indent=2)))
                    if a.json else None)
    md = format_suite_markdown(r) if not a.warm_only else ""
    print(md)
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))
    if a.markdown and md:
        Path(a.markdown).write_text(md)
    return 0 if all(x.get("status") in ("ok", "warmed") for x in r["rows"]) else 1


def _bench_throughput(a) -> int:
    # lazy: `python -m paco_fr --help` stays torch-free; each command loads what it runs
    from paco_fr.throughput import bench_throughput, format_result

    r = bench_throughput(a.arch, a.img_size, a.patch_size, a.batch, a.steps, a.warmup, a.compile, a.depth,
                         a.config, a.overrides, a.device, a.peak_tflops)
    print(format_result(r))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2))
    return 0


COMMANDS = {"pretrain": _pretrain, "prepare": _prepare, "export": _export, "bench-throughput": _bench_throughput}


if __name__ == "__main__":
    raise SystemExit(main())
