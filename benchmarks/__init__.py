"""Speed benchmarks: each script prints its figures beside a baseline measured in the same run
(see BENCHMARKS.md); ``python -m benchmarks.run --quick`` runs them all."""
