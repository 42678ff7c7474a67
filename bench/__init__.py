"""Benchmarks: each result is a ratio of two servers measured in one run on one machine."""
