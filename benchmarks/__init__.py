"""edgekit's benchmark suite (`make bench`): not installed, not a test. See benchmarks/run.py."""
