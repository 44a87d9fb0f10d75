"""Benchmarks and real-data runs: scripts that print figures, never timed tests."""
