"""Private services and child processes for development, tests and benchmarks."""
