"""Developer tools that are not part of the tutorial's package (the benchmark harness)."""
