"""What to run: profiles and their settings, the study's pre-training suite, the cells of a plan
with their reference cells (floors, ceilings, probes), the budget and the time estimate, and the
checks that refuse a bad plan before anything runs. Imports the plug-ins and the store, never
bench_tasks.run, report or cli."""
