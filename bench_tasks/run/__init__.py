"""Running a plan: the one loop over its cells (loop: run_plan behind a writer), one cell -> one
row (runner), the claim-taking writer of workers that share a results file (worker, claims), the
cluster launchers, the pre-training stage and the status of a run in flight. Imports the plan, the
store and the plug-ins, never bench_tasks.report or cli."""
