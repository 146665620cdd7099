"""Helpers shared by the sync.yaml tests: write a config, read its ConfigError."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncer.config.syncfile import load_config
from syncer.errors import ConfigError

DIGEST = "sha256:" + "a" * 64
VALID_ENTRY = "  - {source: ghcr.io/a/b, destination: registry.example.com/b}\n"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return str(info.value)
