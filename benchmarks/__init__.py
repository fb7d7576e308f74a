"""The fan-out benchmark of tornadose: ``python -m benchmarks`` (see README.md here)."""
