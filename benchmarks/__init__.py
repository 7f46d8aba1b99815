"""Benchmarks run against a real Temporal dev server; see benchmarks/README.md."""
