"""The GPU machine check: ``bash benchmarks/gpu/run.sh OUT_DIR [--cpu-dry-run]``."""
