"""`python -m bench_tasks.report` (same as `python -m bench_tasks report`)."""

from .build import main

raise SystemExit(main())
