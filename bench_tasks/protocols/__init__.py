"""See bench_tasks/registry.py: modules here register themselves on import."""
