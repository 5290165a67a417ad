"""`python -m bench_tasks.run.launch_pretrain --dry-run`: the paper profile's pre-training as one
multi-node SLURM job over webdataset shards, shown and not submitted."""

import pytest

from bench_tasks.run.launch_pretrain import batch_plan, main


def test_dry_run_shows_a_multi_node_job_on_the_shards(capsys, tmp_path):
    rc = main(["--data", "/data/faces224", "--nodes", "4", "--gpus-per-node", "8", "--partition", "gpu",
               "--run-dir", str(tmp_path / "run"), "--dry-run", "train.epochs=2"])
    out = capsys.readouterr().out
    assert rc == 0
    for line in ("#SBATCH --nodes=4", "#SBATCH --ntasks-per-node=8", "#SBATCH --gpus-per-node=8",
                 "#SBATCH --partition=gpu", "submitit.core._submit", "torchrun --nnodes=4 --nproc_per_node=8"):
        assert line in out, line
    # the global batch of the paper config (2048) over 32 GPUs; the shard source; user overrides last
    assert "data.source=wds data.path=/data/faces224 train.batch_size=64 train.grad_accum=1" in out
    assert out.index("train.grad_accum=1") < out.index("train.epochs=2")
    assert not (tmp_path / "run").exists()  # nothing written, nothing submitted


def test_batch_plan_keeps_the_global_batch():
    assert batch_plan(256, 2048, 8) == (256, 1)
    assert batch_plan(256, 2048, 2) == (256, 4)
    assert batch_plan(256, 2048, 64) == (32, 1)
    with pytest.raises(ValueError, match="does not split over 3 GPUs"):
        batch_plan(256, 2048, 3)


def test_bad_override_is_refused(capsys):
    assert main(["--data", "/x", "--dry-run", "trian.steps=3"]) == 2
    assert "unknown config key 'trian'" in capsys.readouterr().err
