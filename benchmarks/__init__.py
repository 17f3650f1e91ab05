"""Benchmarks: medians and ratios against dcmtk measured in the same run (not tests)."""
