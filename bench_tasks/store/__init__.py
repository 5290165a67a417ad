"""The results store: what a row is (`rows`), reading results files (`readers`), the append-only
store (`results`), the union of the workers' files (`rowfiles`), provenance, and what a backbone
is (`method`, the row's method block). Imports the plug-in registries only."""
