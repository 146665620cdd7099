"""syncer: mirror container images between registries."""

__version__ = "0.1.0"
