"""Running a plan: the runner (one cell -> one row), claim-taking workers, the cluster launchers,
the pre-training stage and the status of a run in flight. Imports the plan, the store and the
plug-ins, never bench_tasks.report or cli."""
