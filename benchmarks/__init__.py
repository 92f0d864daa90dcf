"""Benchmarks: the SDK against its peers, each against the same loopback server process."""
