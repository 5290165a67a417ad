"""Metrics (torchmetrics-based where a library metric exists; hand-written ones are tested against hand-worked values)."""
