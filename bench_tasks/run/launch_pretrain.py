"""A pre-training run on SLURM across nodes x GPUs, from shards made by `python -m paco_fr prepare`.

    python -m bench_tasks.run.launch_pretrain --data /data/faces224 --nodes 4 --gpus-per-node 8 --dry-run
    python -m bench_tasks.run.launch_pretrain --data /data/faces224 --nodes 4 --gpus-per-node 8 \\
        --partition gpu --account faces [key=value overrides of the pre-training config]

One submitit job of `--nodes` nodes with one task per GPU: each task is one process of a torchrun
world (submitit's TorchDistributedEnvironment exports RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR
/ MASTER_PORT, as torchrun does), running `paco_fr.engine.pretrain(<config>, overrides, run_dir)`
with `data.source=wds data.path=<--data>`. The global batch of the config (the `paper` profile:
2,048) is kept: per-GPU batch = min(config's, global / world), the rest by `train.grad_accum`.
On preemption or time-out submitit requeues the job (`checkpoint`) and the engine resumes from the
run's checkpoint (the shard stream resumes exactly for the same world size and workers).

`--dry-run` prints the sbatch script submitit would submit (rendered by submitit), the overrides
and the equivalent plain `sbatch` + `torchrun` script, and submits nothing. Without `sbatch` on
the machine the launcher stops with that advice.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

from bench_tasks.run.jobs import JobOptions, _checkpointable, sbatch_script
from paco_fr.config import load_config

DEFAULTS = {"config": "paper", "cpus_per_gpu": 10, "mem_per_node": 480, "time": 72 * 60, "global_batch": 2048}


class ShardPretrainJob(_checkpointable()):
    """One task of the job (one GPU): the torch.distributed environment, then the engine."""

    def __init__(self, config: str, overrides: list[str], run_dir: str, cwd: str):
        self.config, self.overrides, self.run_dir, self.cwd = config, overrides, run_dir, cwd

    def __call__(self) -> str:
        os.chdir(self.cwd)
        # lazy: submitit and paco_fr's training engine load in the job, not on the login node that submits it
        import submitit

        if submitit.JobEnvironment().num_tasks > 1:
            submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        from paco_fr.engine import pretrain

        return str(pretrain(self.config, list(self.overrides), run_dir=self.run_dir))


def batch_plan(config_batch: int, global_batch: int, world: int) -> tuple[int, int]:
    """(per-GPU batch, grad_accum) with per-GPU x accum x world == global_batch."""
    per = min(int(config_batch), global_batch // world)
    if per < 1 or global_batch % (per * world):
        raise ValueError(f"a global batch of {global_batch} does not split over {world} GPUs "
                         f"(per-GPU batch {per}); pick --global-batch divisible by the GPU count")
    return per, global_batch // (per * world)


def plan(a) -> tuple[JobOptions, list[str], Path]:
    world = a.nodes * a.gpus_per_node
    cfg = load_config(a.config, a.overrides)
    per, accum = batch_plan(int(cfg["train"]["batch_size"]), a.global_batch, world)
    overrides = ["data.source=wds", f"data.path={a.data}", f"train.batch_size={per}", f"train.grad_accum={accum}",
                 f"data.num_workers={a.workers}", *a.overrides]
    load_config(a.config, overrides)  # the overrides are valid keys
    opts = JobOptions(gpus=a.gpus_per_node, cpus=a.cpus_per_gpu, time=a.time, mem=a.mem_per_node, nodes=a.nodes,
                      tasks_per_node=a.gpus_per_node, partition=a.partition, account=a.account, qos=a.qos,
                      constraint=a.constraint, name=f"pretrain-{cfg.get('name') or a.config}")
    run_dir = Path(a.run_dir or Path("runs") / f"{cfg.get('name') or a.config}_{a.nodes}x{a.gpus_per_node}").absolute()
    return opts, overrides, run_dir


def torchrun_script(a, overrides: list[str], run_dir: Path) -> str:
    """The same run as a plain sbatch script that starts torchrun once per node."""
    q = " ".join(f"'{o}'" for o in overrides)
    return "\n".join([
        "#!/bin/bash",
        f"#SBATCH --job-name=pretrain-{a.config}",
        f"#SBATCH --nodes={a.nodes}",
        "#SBATCH --ntasks-per-node=1",
        f"#SBATCH --gpus-per-node={a.gpus_per_node}",
        f"#SBATCH --cpus-per-task={a.cpus_per_gpu * a.gpus_per_node}",
        f"#SBATCH --mem={a.mem_per_node}GB",
        f"#SBATCH --time={a.time}",
        *([f"#SBATCH --partition={a.partition}"] if a.partition else []),
        *([f"#SBATCH --account={a.account}"] if a.account else []),
        "#SBATCH --signal=TERM@120  # the engine checkpoints on SIGTERM; re-submit to resume",
        "head=$(scontrol show hostnames \"$SLURM_JOB_NODELIST\" | head -n 1)",
        f"srun torchrun --nnodes={a.nodes} --nproc_per_node={a.gpus_per_node} --rdzv_id=$SLURM_JOB_ID \\",
        "    --rdzv_backend=c10d --rdzv_endpoint=$head:29500 \\",
        f"    -m paco_fr pretrain --config {a.config} --run-dir {run_dir} {q}",
    ])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench_tasks.run.launch_pretrain", description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="the shard folder (manifest.json) as the nodes see it")
    ap.add_argument("--nodes", type=int, default=1)
    ap.add_argument("--gpus-per-node", type=int, default=8)
    ap.add_argument("--config", default=DEFAULTS["config"], help="pre-training config (default: paper)")
    ap.add_argument("--global-batch", type=int, default=DEFAULTS["global_batch"])
    ap.add_argument("--workers", type=int, default=6, help="loader workers per GPU (docs/throughput.md)")
    ap.add_argument("--cpus-per-gpu", type=int, default=DEFAULTS["cpus_per_gpu"])
    ap.add_argument("--mem-per-node", type=int, default=DEFAULTS["mem_per_node"], help="GB")
    ap.add_argument("--time", type=int, default=DEFAULTS["time"], help="minutes")
    ap.add_argument("--partition")
    ap.add_argument("--account")
    ap.add_argument("--qos")
    ap.add_argument("--constraint")
    ap.add_argument("--run-dir", default=None, help="default runs/<config>_<nodes>x<gpus> (on shared storage)")
    ap.add_argument("--jobs-dir", default=None, help="submitit's folder (default <run dir>/jobs)")
    ap.add_argument("--dry-run", action="store_true", help="print the job scripts, submit nothing")
    ap.add_argument("overrides", nargs="*", help="key=value overrides of the pre-training config")
    a = ap.parse_args(argv)
    if a.nodes < 1 or a.gpus_per_node < 1:
        ap.error("--nodes and --gpus-per-node must be >= 1")
    try:
        opts, overrides, run_dir = plan(a)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    folder = Path(a.jobs_dir or run_dir / "jobs").absolute()
    if not (Path(a.data) / "manifest.json").is_file():
        print(f"note: {a.data}/manifest.json is not visible from here (fine if the path exists on the nodes; "
              "make it with `python -m paco_fr prepare`)", file=sys.stderr)
    if a.dry_run:
        print(f"# {a.nodes} node(s) x {a.gpus_per_node} GPU(s) = {a.nodes * a.gpus_per_node} processes; "
              f"config {a.config}; run dir {run_dir}")
        print(f"# overrides: {' '.join(overrides)}")
        print("# submitit job (one task per GPU, torch.distributed environment exported by submitit):")
        print(sbatch_script(opts, folder, 1))
        print("\n# the same run as plain sbatch + torchrun (one torchrun per node):")
        print(torchrun_script(a, overrides, run_dir))
        return 0
    if shutil.which("sbatch") is None:
        print("error: no `sbatch` on this machine: run this on a SLURM login node (or --dry-run to see the job)",
              file=sys.stderr)
        return 2
    # lazy: submitit only when a job is submitted (not for --dry-run)
    import submitit

    ex = submitit.SlurmExecutor(folder=folder)
    ex.update_parameters(**opts.slurm())
    job = ex.submit(ShardPretrainJob(a.config, overrides, str(run_dir), os.getcwd()))
    print(f"submitted job {job.job_id}: {a.nodes} x {a.gpus_per_node} GPUs, run dir {run_dir}, logs in {folder}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
