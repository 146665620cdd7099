"""Reads sync.yaml and SYNCER_* settings into validated, resolved entries.

May import `syncer.registry` (references, per-registry options), never the engine.
"""

from syncer.config.filters import TagFilter, select_tags
from syncer.config.settings import Settings
from syncer.config.syncfile import LoadedConfig, ResolvedEntry, SyncConfig, load_config

__all__ = [
    "LoadedConfig",
    "ResolvedEntry",
    "Settings",
    "SyncConfig",
    "TagFilter",
    "load_config",
    "select_tags",
]
