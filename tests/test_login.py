"""`syncer login` / `logout` against real htpasswd and token-auth registries."""

from __future__ import annotations

import base64
import io
import json
import os
import stat
from pathlib import Path

import pytest

from syncer.cli import main
from syncer.client import RegistryClient
from syncer.config import load_config
from syncer.reference import Reference
from tests.support.fleet import app_image
from tests.support.images import push
from tests.support.registry import RunningRegistry
from tests.support.syncer_setup import write_sync_yaml


def login(
    reg: RunningRegistry,
    password: str,
    monkeypatch: pytest.MonkeyPatch,
    cfg: Path,
    user: str = "tester",
) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(password + "\n"))
    return main(["login", reg.host, "-u", user, "--password-stdin", "-c", str(cfg)])


def docker_config() -> dict[str, object]:
    path = Path(os.environ["DOCKER_CONFIG"]) / "config.json"
    return json.loads(path.read_text()) if path.exists() else {}


@pytest.mark.parametrize("variant", ["basic", "token"])
def test_login_verifies_then_stores_and_logout_removes(
    variant: str,
    registry_factory: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg: RunningRegistry = registry_factory(variant)  # type: ignore[operator]
    assert reg.password
    # sync.yaml without credentials: only the registry's transport settings.
    cfg = write_sync_yaml(
        tmp_path / "s.yaml",
        [{"source": f"{reg.host}/a", "destination": "h.io/b"}],
        reg,
        creds=False,
    )
    assert login(reg, "not-the-password", monkeypatch, cfg) == 1
    out = capsys.readouterr()
    assert "login to" in out.err and "failed" in out.err
    assert docker_config() == {}  # nothing stored

    assert login(reg, reg.password, monkeypatch, cfg) == 0
    out = capsys.readouterr()
    assert "Login Succeeded" in out.out
    assert reg.password not in out.out + out.err
    entry = docker_config()["auths"][reg.host]  # type: ignore[index]
    assert base64.b64decode(entry["auth"]).decode() == f"tester:{reg.password}"
    mode = (Path(os.environ["DOCKER_CONFIG"]) / "config.json").stat().st_mode
    assert stat.S_IMODE(mode) == 0o600

    assert main(["logout", reg.host]) == 0
    assert f"Removing login credentials for {reg.host}" in capsys.readouterr().out
    assert docker_config()["auths"] == {}  # type: ignore[index]
    assert main(["logout", reg.host]) == 0
    assert f"Not logged in to {reg.host}" in capsys.readouterr().out


async def test_syncer_uses_what_login_stored(
    basic_registry: RunningRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    push(basic_registry.seed_url, "team/app", app_image(0, 0), "v1")
    cfg = write_sync_yaml(
        tmp_path / "s.yaml",
        [{"source": f"{basic_registry.host}/team/app", "destination": "h.io/b"}],
        basic_registry,
        creds=False,
    )
    assert basic_registry.password
    monkeypatch.setattr("sys.stdin", io.StringIO(basic_registry.password))
    args = ["login", basic_registry.host, "-u", "tester", "--password-stdin", "-c", str(cfg)]
    # main() runs its own event loop: run it in a thread from this async test.
    import asyncio

    assert await asyncio.to_thread(main, args) == 0
    # The default credential lookup (no credentials in sync.yaml) finds the stored login.
    async with RegistryClient(load_config(cfg).config.registry_config) as client:
        tags = await client.list_tags(Reference.parse(f"{basic_registry.host}/team/app"))
    assert tags == ["v1"]
