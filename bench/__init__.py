"""Benchmark syncer against `skopeo sync` on real loopback registries (see bench/README.md)."""
