"""Benchmarks that print figures; run them with ``clarion bench <scenario>``."""
