"""The session layer, below the CLI and the Python API: an experiment resolved once
(`experiment.resolve(RunSpec) -> Experiment`), then executed (`execute.execute(experiment)`:
pretrain -> evaluate -> report). `bench_tasks.cli` and `bench_tasks.api` are thin callers of it."""
