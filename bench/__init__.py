"""Benchmarks (`make bench`): numbers printed, never asserted."""
