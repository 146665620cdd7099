"""docker-credential-* helpers, and storing/erasing credentials (login/logout)."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncer.errors import CredentialsError
from syncer.registry.credentials import Credential, erase, resolve, store
from tests.registry.credentials_support import HUB_KEY, SECRET, Env, b64, secret

# --- credential helpers ------------------------------------------------------------------


def test_helper_get_uses_docker_server_urls(env: Env) -> None:
    env.write_config({"credsStore": "fake"})
    env.seed("fake", HUB_KEY, "hubuser", "hubpw")
    env.seed("fake", "localhost:5000", "local", "localpw")
    hub, local = resolve("registry-1.docker.io", None), resolve("localhost:5000", None)
    assert hub is not None and (hub.username, secret(hub.password)) == ("hubuser", "hubpw")
    assert local is not None and local.username == "local"
    assert env.urls() == [f"get {HUB_KEY}", "get localhost:5000"]


def test_helper_token_username_means_identity_token(env: Env) -> None:
    env.write_config({"credsStore": "fake"})
    env.seed("fake", "reg.example.com", "<token>", "refresh-tok")
    cred = resolve("reg.example.com", None)
    assert cred == Credential(None, None, SecretStr("refresh-tok"))


def test_precedence_cred_helpers_then_creds_store_then_auths(env: Env) -> None:
    env.write_config(
        {
            "credHelpers": {"reg.example.com": "other"},
            "credsStore": "fake",
            "auths": {"reg.example.com": {"auth": b64("fromfile:pw")}},
        }
    )

    def user() -> str | None:
        cred = resolve("reg.example.com", None)
        return None if cred is None else cred.username

    assert user() == "fromfile"  # neither helper has it ("credentials not found")
    env.seed("fake", "reg.example.com", "fromstore", "pw")
    assert user() == "fromstore"
    env.seed("other", "reg.example.com", "fromhelper", "pw")
    assert user() == "fromhelper"


def test_helper_not_found_means_none(env: Env) -> None:
    env.write_config({"credsStore": "fake"})
    assert resolve("reg.example.com", None) is None


def test_helper_failure_names_helper_without_secret(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    env.write_config({"credsStore": "fake"})
    monkeypatch.setenv("FAKE_HELPER_MODE", "echo-fail")
    with pytest.raises(CredentialsError, match="docker-credential-fake store failed") as err:
        store("reg.example.com", "alice", SECRET)
    assert SECRET not in str(err.value)
    assert "keyring locked, cannot save <redacted>" in str(err.value)
    monkeypatch.setenv("FAKE_HELPER_MODE", "payload-fail")
    with pytest.raises(CredentialsError, match="docker-credential-fake get failed") as err:
        resolve("reg.example.com", None)
    assert "leaked-secret" not in str(err.value)
    monkeypatch.setenv("FAKE_HELPER_MODE", "garbage")
    with pytest.raises(CredentialsError, match="invalid JSON") as err:
        resolve("reg.example.com", None)
    assert "leaked-secret" not in str(err.value)


def test_missing_helper_executable(env: Env) -> None:
    env.write_config({"credHelpers": {"reg.example.com": "nosuchhelper"}})
    with pytest.raises(CredentialsError, match="docker-credential-nosuchhelper not found"):
        resolve("reg.example.com", None)


def test_helper_name_cannot_be_a_path(env: Env) -> None:
    env.write_config({"credsStore": "../../bin/sh"})
    with pytest.raises(CredentialsError, match="invalid credential helper"):
        resolve("reg.example.com", None)


def test_secrets_never_in_process_arguments(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[list[str]] = []
    real_run = subprocess.run

    def spy(args: list[str], **kw: Any) -> Any:
        seen.append(list(args))
        return real_run(args, **kw)

    monkeypatch.setattr(subprocess, "run", spy)  # same module object credentials uses
    env.write_config({"credsStore": "fake"})
    store("reg.example.com", "alice", SECRET)
    assert resolve("reg.example.com", None) is not None
    assert erase("reg.example.com")
    assert seen == [["docker-credential-fake", a] for a in ("store", "get", "erase")]
    assert len(env.argv_log().splitlines()) == 3  # the helper really ran, logging its argv
    assert SECRET not in env.argv_log() and "alice" not in env.argv_log()


# --- store / erase -----------------------------------------------------------------------


def test_store_and_erase_in_config_file(env: Env) -> None:
    env.write_config({"auths": {"keep.example": {"auth": b64("k:k")}}, "psFormat": "{{.ID}}"})
    where = store("index.docker.io", "alice", SECRET)
    assert where == f"config file {env.config_file}"
    data = env.read_config()
    assert data["psFormat"] == "{{.ID}}" and "keep.example" in data["auths"]
    assert data["auths"][HUB_KEY] == {"auth": b64(f"alice:{SECRET}")}
    assert stat.S_IMODE(env.config_file.stat().st_mode) == 0o600
    cred = resolve("docker.io", None)
    assert cred is not None and secret(cred.password) == SECRET
    assert erase("docker.io") is True
    assert erase("docker.io") is False
    assert resolve("docker.io", None) is None
    data = env.read_config()
    assert data["psFormat"] == "{{.ID}}" and list(data["auths"]) == ["keep.example"]
    assert [p.name for p in env.config_dir.iterdir()] == ["config.json"]  # no temp files left


def test_store_creates_private_config_dir(env: Env) -> None:
    store("localhost:5000", "u", "p")
    assert stat.S_IMODE(env.config_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(env.config_file.stat().st_mode) == 0o600
    assert env.read_config() == {"auths": {"localhost:5000": {"auth": b64("u:p")}}}


def test_erase_removes_alias_keys(env: Env) -> None:
    env.write_config({"auths": {"docker.io": {"auth": b64("a:b")}, HUB_KEY: {"auth": b64("c:d")}}})
    assert erase("registry-1.docker.io")
    assert env.read_config() == {"auths": {}}


def test_store_and_erase_via_helpers(env: Env) -> None:
    env.write_config({"credsStore": "fake", "credHelpers": {"special.example": "other"}})
    before = env.config_file.read_text()
    assert store("docker.io", "alice", SECRET) == "credential helper docker-credential-fake"
    assert store("special.example", "bob", "pw") == "credential helper docker-credential-other"
    assert env.helper_db("fake") == {HUB_KEY: ["alice", SECRET]}
    assert env.helper_db("other") == {"special.example": ["bob", "pw"]}
    assert env.config_file.read_text() == before  # nothing written in clear text
    cred = resolve("docker.io", None)
    assert cred is not None and secret(cred.password) == SECRET
    assert erase("docker.io") is True
    assert erase("docker.io") is False
    assert env.helper_db("fake") == {}
    assert resolve("docker.io", None) is None


def test_store_through_symlinked_config(env: Env, tmp_path: Path) -> None:
    real = tmp_path / "dotfiles" / "docker.json"
    real.parent.mkdir()
    real.write_text("{}")
    env.config_dir.mkdir()
    env.config_file.symlink_to(real)
    store("r.example", "u", "p")
    assert env.config_file.is_symlink()
    assert "r.example" in json.loads(real.read_text())["auths"]


def test_username_with_colon_rejected(env: Env) -> None:
    with pytest.raises(CredentialsError, match="':'"):
        store("r.example", "a:b", "p")


def test_store_refuses_to_overwrite_malformed_config(env: Env) -> None:
    env.config_dir.mkdir()
    env.config_file.write_text("{broken")
    with pytest.raises(CredentialsError, match="line 1 column 2"):
        store("r.example", "u", "p")
    assert env.config_file.read_text() == "{broken"
