"""Benchmarks: measurements that tests must not make (speed, quality against an optimum)."""
