"""Where a plan's cells run (`run --launcher`): this process, SLURM jobs, or submitit's local jobs."""

LAUNCHERS = ("local", "slurm", "submitit-local")
