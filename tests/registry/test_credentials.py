"""docker CLI credential conventions: config.json, credential helpers, login/logout."""

from __future__ import annotations

import base64
import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from syncer.errors import CredentialsError
from syncer.registry.credentials import Credential, docker_config_dir, erase, resolve, store
from syncer.registry.options import CredentialsConfig

HUB_KEY = "https://index.docker.io/v1/"
SECRET = "s3cr3t:with:colons"

# A docker-credential-* helper speaking the real protocol, backed by a JSON file per
# helper name. It logs its argv so tests can prove no secret was passed there.
FAKE_HELPER = """\
import json, os, sys
name = os.path.basename(sys.argv[0])
state = os.environ["FAKE_HELPER_STATE"]
data = sys.stdin.read()
with open(os.path.join(state, "calls.log"), "a") as log:
    log.write(json.dumps({"helper": name, "argv": sys.argv}) + "\\n")
mode = os.environ.get("FAKE_HELPER_MODE", "")
if mode == "echo-fail":  # a careless helper repeating the secret in an error
    print("keyring locked, cannot save " + json.loads(data)["Secret"])
    sys.exit(3)
if mode == "payload-fail":  # prints something credential-shaped, then fails
    print(json.dumps({"ServerURL": "x", "Username": "u", "Secret": "leaked-secret"}))
    sys.exit(1)
if mode == "garbage":
    print("not json leaked-secret")
    sys.exit(0)
db_path = os.path.join(state, name + ".json")
db = json.load(open(db_path)) if os.path.exists(db_path) else {}
action = sys.argv[1]
url = json.loads(data)["ServerURL"] if action == "store" else data.strip()
with open(os.path.join(state, "urls.log"), "a") as log:
    log.write(action + " " + url + "\\n")
if action == "store":
    req = json.loads(data)
    db[url] = [req["Username"], req["Secret"]]
elif url not in db:
    print("credentials not found in native keychain")
    sys.exit(1)
elif action == "get":
    print(json.dumps({"ServerURL": url, "Username": db[url][0], "Secret": db[url][1]}))
else:
    del db[url]
json.dump(db, open(db_path, "w"))
"""


@dataclass
class Env:
    config_dir: Path
    state: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"

    def write_config(self, data: dict[str, Any]) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.config_file.write_text(json.dumps(data), encoding="utf-8")

    def read_config(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.config_file.read_text(encoding="utf-8"))
        return data

    def seed(self, helper: str, url: str, username: str, secret: str) -> None:
        path = self.state / f"docker-credential-{helper}.json"
        db = json.loads(path.read_text()) if path.exists() else {}
        db[url] = [username, secret]
        path.write_text(json.dumps(db))

    def helper_db(self, helper: str) -> dict[str, list[str]]:
        path = self.state / f"docker-credential-{helper}.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def urls(self) -> list[str]:
        log = self.state / "urls.log"
        return log.read_text().splitlines() if log.exists() else []

    def argv_log(self) -> str:
        log = self.state / "calls.log"
        return log.read_text() if log.exists() else ""


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


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(value: SecretStr | None) -> str | None:
    return None if value is None else value.get_secret_value()


# --- reading auths -----------------------------------------------------------------------


def test_auth_base64_with_colon_in_password(env: Env) -> None:
    env.write_config({"auths": {"reg.example.com": {"auth": b64(f"alice:{SECRET}")}}})
    cred = resolve("reg.example.com", None)
    assert cred is not None
    assert cred.username == "alice"
    assert secret(cred.password) == SECRET
    assert cred.identity_token is None


def test_auth_without_padding_and_separate_fields(env: Env) -> None:
    unpadded = b64("bob:pw").rstrip("=")
    env.write_config(
        {
            "auths": {
                "a.example": {"auth": unpadded},
                "b.example": {"username": "u", "password": "p"},
            }
        }
    )
    a, b = resolve("a.example", None), resolve("b.example", None)
    assert a is not None and (a.username, secret(a.password)) == ("bob", "pw")
    assert b is not None and (b.username, secret(b.password)) == ("u", "p")


@pytest.mark.parametrize(
    "key",
    [
        HUB_KEY,
        "https://index.docker.io/v1",
        "index.docker.io",
        "docker.io",
        "https://docker.io/v1/",
        "registry-1.docker.io",
        "https://registry-1.docker.io",
        "http://INDEX.docker.io/v1/",
    ],
)
@pytest.mark.parametrize("registry", ["docker.io", "index.docker.io", "registry-1.docker.io"])
def test_docker_hub_key_aliases(env: Env, key: str, registry: str) -> None:
    env.write_config({"auths": {key: {"auth": b64("hubuser:pw")}}})
    cred = resolve(registry, None)
    assert cred is not None and cred.username == "hubuser"


def test_docker_hub_canonical_key_preferred_over_alias(env: Env) -> None:
    env.write_config(
        {"auths": {"docker.io": {"auth": b64("old:pw")}, HUB_KEY: {"auth": b64("new:pw")}}}
    )
    cred = resolve("docker.io", None)
    assert cred is not None and cred.username == "new"


def test_host_with_port_must_match_exactly(env: Env) -> None:
    env.write_config({"auths": {"localhost:5000": {"auth": b64("u:p")}}})
    assert resolve("localhost:5000", None) is not None
    assert resolve("localhost", None) is None
    assert resolve("localhost:5001", None) is None


@pytest.mark.parametrize(
    "key", ["https://reg.example.com", "http://reg.example.com/v2/", "https://Reg.Example.com/"]
)
def test_url_form_keys(env: Env, key: str) -> None:
    env.write_config({"auths": {key: {"auth": b64("u:p")}}})
    assert resolve("reg.example.com", None) is not None


@pytest.mark.parametrize("key", ["https://reg.example.com.evil.io", "evil.io/reg.example.com"])
def test_lookalike_keys_do_not_match(env: Env, key: str) -> None:
    env.write_config({"auths": {key: {"auth": b64("u:p")}}})
    assert resolve("reg.example.com", None) is None


def test_identitytoken_entry(env: Env) -> None:
    env.write_config(
        {"auths": {"reg.example.com": {"auth": b64("<token>:"), "identitytoken": "refresh-tok"}}}
    )
    cred = resolve("reg.example.com", None)
    assert cred is not None
    assert cred.username is None and cred.password is None
    assert secret(cred.identity_token) == "refresh-tok"


def test_nothing_configured(env: Env) -> None:
    assert resolve("reg.example.com", None) is None  # no config.json at all
    env.write_config({"auths": {"reg.example.com": {}}, "credsStore": ""})
    assert resolve("reg.example.com", None) is None  # empty entry, as docker writes


def test_malformed_config_names_file_and_position_not_content(env: Env) -> None:
    env.config_dir.mkdir()
    bad = '{\n  "auths": {"r": {"auth": "AUTH"}}\n  oops\n}'.replace("AUTH", b64(SECRET))
    env.config_file.write_text(bad)
    with pytest.raises(CredentialsError) as err:
        resolve("r", None)
    message = str(err.value)
    assert str(env.config_file) in message and "line 3 column 3" in message
    assert b64(SECRET) not in message and "oops" not in message


def test_bad_base64_auth_hides_value(env: Env) -> None:
    env.write_config({"auths": {"r.example": {"auth": "not*base64"}}})
    with pytest.raises(CredentialsError, match=r"r\.example") as err:
        resolve("r.example", None)
    assert "not*base64" not in str(err.value)


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


# --- explicit configuration --------------------------------------------------------------


def test_explicit_config_wins_over_docker_config(env: Env) -> None:
    env.write_config({"auths": {"r.example": {"auth": b64("docker:pw")}}})
    explicit = CredentialsConfig(username="yaml", password=SecretStr("yamlpw"))
    assert resolve("r.example", explicit) == Credential("yaml", SecretStr("yamlpw"))
    # An empty credentials block configures nothing: docker's credentials still apply.
    cred = resolve("r.example", CredentialsConfig())
    assert cred is not None and cred.username == "docker"


def test_empty_strings_configure_nothing(env: Env) -> None:
    # `${DOCKERHUB_USER:-}` with the variable unset: as if no credentials were written.
    empty = CredentialsConfig.model_validate(
        {"username": "", "password": "", "identity_token": "", "password_file": ""}
    )
    assert empty.model_dump(exclude_none=True) == {}
    assert resolve("r.example", empty) is None  # no docker login either: anonymous
    env.write_config({"auths": {"r.example": {"auth": b64("docker:pw")}}})
    cred = resolve("r.example", empty)
    assert cred is not None and cred.username == "docker"


def test_explicit_password_file(env: Env, tmp_path: Path) -> None:
    pwfile = tmp_path / "pw"
    pwfile.write_text(" pass word \n")
    cred = resolve("r.example", CredentialsConfig(username="u", password_file=pwfile))
    assert cred is not None and secret(cred.password) == " pass word "
    token = CredentialsConfig(identity_token=SecretStr("tok"))
    assert resolve("r.example", token) == Credential(None, None, SecretStr("tok"))


@pytest.mark.parametrize("kind", ["missing", "directory"])
def test_unreadable_password_file(env: Env, tmp_path: Path, kind: str) -> None:
    pwfile = tmp_path / "pw"
    if kind == "directory":
        pwfile.mkdir()
    with pytest.raises(CredentialsError, match="password_file") as err:
        resolve("r.example", CredentialsConfig(username="u", password_file=pwfile))
    assert str(pwfile) in str(err.value)


# --- misc --------------------------------------------------------------------------------


def test_repr_hides_secrets() -> None:
    cred = Credential("alice", SecretStr(SECRET), SecretStr("refresh-tok"))
    for text in (repr(cred), str(cred), f"{cred}", f"{cred!r}"):
        assert SECRET not in text and "refresh-tok" not in text
        assert "alice" in text


def test_docker_config_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "cfg"))
    assert docker_config_dir() == tmp_path / "cfg"
    monkeypatch.delenv("DOCKER_CONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert docker_config_dir() == tmp_path / ".docker"


def test_config_dir_argument_overrides_env(env: Env, tmp_path: Path) -> None:
    other = tmp_path / "elsewhere"
    store("r.example", "u", "p", config_dir=other)
    assert not env.config_file.exists()
    assert resolve("r.example", None, config_dir=other) is not None
    assert resolve("r.example", None) is None
