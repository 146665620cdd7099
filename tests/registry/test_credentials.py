"""docker CLI credential conventions: reading config.json auths, explicit configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from syncer.errors import CredentialsError
from syncer.registry.credentials import Credential, docker_config_dir, resolve, store
from syncer.registry.options import CredentialsConfig
from tests.registry.credentials_support import HUB_KEY, SECRET, Env, b64, secret

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
