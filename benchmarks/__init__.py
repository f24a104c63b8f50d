"""Benchmarks: redkeep against the named peer, side by side in one run (`make bench`)."""
