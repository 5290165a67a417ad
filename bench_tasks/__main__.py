"""`python -m bench_tasks ...` (see bench_tasks/cli/)."""

import sys

from bench_tasks.cli.app import main

sys.exit(main())
