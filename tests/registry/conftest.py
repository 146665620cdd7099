"""Fixtures for tests/registry: `env`, a DOCKER_CONFIG dir with fake credential helpers."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.registry.credentials_support import FAKE_HELPER, Env


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Env:
    bindir, state, config_dir = tmp_path / "bin", tmp_path / "state", tmp_path / "docker"
    bindir.mkdir()
    state.mkdir()
    for name in ("fake", "other"):
        exe = bindir / f"docker-credential-{name}"
        exe.write_text(f"#!{sys.executable}\n{FAKE_HELPER}")
        exe.chmod(0o755)
    monkeypatch.setenv("DOCKER_CONFIG", str(config_dir))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_HELPER_STATE", str(state))
    monkeypatch.delenv("FAKE_HELPER_MODE", raising=False)
    return Env(config_dir, state)
