"""`syncer login` / `syncer logout` against real htpasswd and token-auth registries.

Every test runs with DOCKER_CONFIG in a temporary directory and unable to reach anything
but loopback (`loopback_only`, both in conftest), so a test that took a wrong turn
towards a real host fails instead of sending anything there.
"""

from __future__ import annotations

import asyncio
import base64
import getpass
import io
import json
import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from syncer.commands.login import password_from_stdin, registry_name
from syncer.config.syncfile import load_config
from syncer.errors import AuthenticationError
from syncer.registry.client import RegistryClient
from syncer.registry.credentials import resolve
from syncer.registry.reference import Reference
from tests.support.fleet import app_image
from tests.support.images import push
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.syncer_setup import FAST_RETRY, write_sync_yaml

HUB_KEY = "https://index.docker.io/v1/"


def config_file() -> Path:
    return Path(os.environ["DOCKER_CONFIG"]) / "config.json"


def docker_config() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(config_file().read_text())
    return data


def sync_yaml(tmp_path: Path, reg: RunningRegistry, **registries: dict[str, Any]) -> Path:
    """sync.yaml with `reg`'s transport settings but no credentials: those come from login."""
    entry = {"source": f"{reg.host}/team/app", "destination": f"{reg.host}/mirror/app"}
    return write_sync_yaml(tmp_path / "sync.yaml", [entry], reg, creds=False, registries=registries)


def login(monkeypatch: pytest.MonkeyPatch, registry: str, stdin: str, cfg: Path) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    return main(["login", registry, "-u", "tester", "--password-stdin", "-c", str(cfg)])


@pytest.mark.parametrize("variant", ["basic", "token"])
def test_login_verifies_stores_and_logout_removes(
    variant: str,
    registry_factory: RegistryFactory,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg = registry_factory(variant)
    assert reg.password
    cfg = sync_yaml(tmp_path, reg)

    assert login(monkeypatch, reg.host, "wrong-password\n", cfg) == 1
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith(f"syncer: error: login to {reg.host} failed: ")
    assert "username or password rejected" in out.err and out.err.count("\n") == 1
    assert "wrong-password" not in out.err
    assert not config_file().exists()  # nothing stored
    if reg.token_server is not None:
        # The token server judged the password, for no scope: no repository needs to exist.
        assert reg.token_server.requests[-1].username == "tester"
        assert reg.token_server.requests[-1].scopes == ()

    assert login(monkeypatch, reg.host, reg.password + "\n", cfg) == 0
    out = capsys.readouterr()
    assert out.out == f"Login Succeeded (stored in config file {config_file()})\n"
    assert reg.password not in out.out + out.err
    entry = docker_config()["auths"][reg.host]
    assert base64.b64decode(entry["auth"]).decode() == f"tester:{reg.password}"
    assert stat.S_IMODE(config_file().stat().st_mode) == 0o600

    assert main(["logout", reg.host]) == 0
    assert capsys.readouterr().out == f"Removing login credentials for {reg.host}\n"
    assert docker_config()["auths"] == {}
    assert main(["logout", reg.host]) == 0
    assert capsys.readouterr().out == f"Not logged in to {reg.host}\n"


def test_failed_login_leaves_existing_config_untouched(
    basic_registry: RunningRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config_file().write_text('{"auths": {"other.example.com": {"auth": "dTpw"}}, "x": 1}')
    before = config_file().read_bytes()
    assert login(monkeypatch, basic_registry.host, "nope", sync_yaml(tmp_path, basic_registry)) == 1
    assert config_file().read_bytes() == before


def test_syncer_uses_what_login_stored(
    basic_registry: RunningRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    push(basic_registry.seed_url, "team/app", app_image(0, 0), "v1")
    cfg = sync_yaml(tmp_path, basic_registry)
    repo = Reference.parse(f"{basic_registry.host}/team/app")

    async def list_tags() -> list[str]:
        # The default credential lookup: sync.yaml has none, so the docker config is read.
        async with RegistryClient(load_config(cfg).config.registry_config) as client:
            return await client.list_tags(repo)

    with pytest.raises(AuthenticationError):
        asyncio.run(list_tags())
    assert basic_registry.password
    assert login(monkeypatch, basic_registry.host, basic_registry.password, cfg) == 0
    assert asyncio.run(list_tags()) == ["v1"]


def test_password_stdin_drops_exactly_one_newline(
    basic_registry: RunningRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert password_from_stdin("pw\n") == "pw"
    assert password_from_stdin("pw\r\n") == "pw"  # docker: "\n", then "\r"
    assert password_from_stdin("pw\n\n") == "pw\n"
    assert password_from_stdin(" pw \t") == " pw \t"  # other whitespace is password
    password = basic_registry.password
    assert password
    cfg = sync_yaml(tmp_path, basic_registry)
    for stdin, code in [(password, 0), (password + "\r\n", 0), (password + "\n\n", 1)]:
        assert login(monkeypatch, basic_registry.host, stdin, cfg) == code, repr(stdin[-2:])
    auth = docker_config()["auths"][basic_registry.host]["auth"]
    assert base64.b64decode(auth).decode() == f"tester:{password}"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_prompts_without_echo_on_a_terminal(
    basic_registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = basic_registry.password
    assert password
    prompts: list[str] = []

    def ask(prompt: str, answer: str) -> str:
        prompts.append(prompt)
        return answer

    monkeypatch.setattr("sys.stdin", _Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt="": ask(prompt, "tester"))
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": ask(prompt, password))
    cfg = sync_yaml(tmp_path, basic_registry)
    assert main(["login", basic_registry.host, "-c", str(cfg)]) == 0
    assert prompts == ["Username: ", "Password: "]
    out = capsys.readouterr()
    assert "Login Succeeded" in out.out and password not in out.out + out.err


def test_usage_errors_contact_nothing(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    loopback_only: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)  # no sync.yaml: default registry settings
    monkeypatch.setattr("sys.stdin", io.StringIO("secret-pw\n"))
    with pytest.raises(SystemExit) as exc:
        main(["login", "registry.example.com", "-u", "tester", "-p", "secret-pw"])
    assert exc.value.code == 2
    capsys.readouterr()
    with pytest.raises(SystemExit):
        main(["login", "--help"])  # says why -p does not exist
    help_text = " ".join(capsys.readouterr().out.split())
    assert "no -p/--password" in help_text and "visible to every user" in help_text
    assert main(["login", "registry.example.com", "--password-stdin"]) == 2
    assert "--password-stdin needs --username" in capsys.readouterr().err
    assert main(["login", "registry.example.com", "-u", "tester"]) == 2  # stdin: no terminal
    assert "use --password-stdin" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("\n"))
    assert main(["login", "registry.example.com", "-u", "tester", "--password-stdin"]) == 2
    assert "password is empty" in capsys.readouterr().err
    assert main(["login", "myhost", "-u", "tester", "--password-stdin"]) == 2
    assert "not a registry" in capsys.readouterr().err
    assert main(["login", "https://tester:hunter2@registry.example.com", "-u", "tester"]) == 2
    assert "hunter2" not in capsys.readouterr().err
    assert loopback_only == [] and not config_file().exists()


@pytest.mark.parametrize(
    ("text", "name"),
    [
        *((hub, "docker.io") for hub in ("index.docker.io", "Registry-1.Docker.IO", HUB_KEY)),
        ("http://LocalHost:5000/v2/", "localhost:5000"),
        ("127.0.0.1:5000", "127.0.0.1:5000"),
    ],
)
def test_registry_names_like_docker(text: str, name: str) -> None:
    assert registry_name(text) == name


def test_docker_hub_aliases_share_one_entry(
    basic_registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Docker Hub's settings point at the local registry: the real Hub is never contacted.
    hub = {"tls": "disabled", "endpoint": basic_registry.url, "retry": FAST_RETRY.model_dump()}
    cfg = sync_yaml(tmp_path, basic_registry, **{"docker.io": hub})
    assert basic_registry.password
    assert login(monkeypatch, "index.docker.io", basic_registry.password, cfg) == 0
    assert list(docker_config()["auths"]) == [HUB_KEY]
    found = resolve("docker.io", None)
    assert found is not None and found.username == "tester"
    capsys.readouterr()
    assert main(["logout", "registry-1.docker.io"]) == 0
    assert capsys.readouterr().out == f"Removing login credentials for {HUB_KEY}\n"
    assert docker_config()["auths"] == {}


@pytest.mark.parametrize("tls", ["enabled", "disabled", "insecure"])
def test_plain_http_off_loopback_needs_explicit_consent(
    tls: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    loopback_only: list[str],
) -> None:
    host = "example.invalid:5000"
    settings = {"tls": tls, "endpoint": f"http://{host}", "retry": FAST_RETRY.model_dump()}
    entry = {"source": f"{host}/a", "destination": "127.0.0.1:5000/b"}
    cfg = write_sync_yaml(tmp_path / "s.yaml", [entry], registries={host: settings})
    assert login(monkeypatch, host, "secret-pw", cfg) == 1
    out = capsys.readouterr()
    # The last line: the transport may log its retries of the (blocked) connection before it.
    err = out.err.splitlines()[-1]
    assert err.startswith(f"syncer: error: login to {host} failed: ")
    if tls == "enabled":
        assert "refusing to send credentials over plain HTTP" in err
        assert f"registries.{host}.tls: disabled" in err
        assert loopback_only == []  # refused before any connection
    else:
        # Consent given: login went on to connect (and met the test's dead network).
        assert loopback_only and all(u.startswith(f"http://{host}/v2/") for u in loopback_only)
    assert "secret-pw" not in out.out + out.err
    assert not config_file().exists()


def test_registry_without_auth_is_stored_with_a_warning(
    anon_registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert login(monkeypatch, anon_registry.host, "pw", sync_yaml(tmp_path, anon_registry)) == 0
    out = capsys.readouterr()
    assert "Login Succeeded" in out.out and "stored unverified" in out.err
    assert anon_registry.host in docker_config()["auths"]


HELPER = """\
import sys
with open(sys.argv[0] + ".log", "a") as log:
    log.write(sys.argv[1] + " " + sys.stdin.read().strip() + "\\n")
"""


def test_login_uses_the_configured_credential_helper(
    basic_registry: RunningRegistry,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    helper = bindir / "docker-credential-syncertest"
    helper.write_text(f"#!{sys.executable}\n{HELPER}")
    helper.chmod(0o700)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    config_file().write_text('{"credsStore": "syncertest"}')
    password, cfg = basic_registry.password, sync_yaml(tmp_path, basic_registry)
    assert password
    assert login(monkeypatch, basic_registry.host, password, cfg) == 0
    out = capsys.readouterr().out
    assert out == "Login Succeeded (stored in credential helper docker-credential-syncertest)\n"
    action, payload = Path(f"{helper}.log").read_text().splitlines()[0].split(" ", 1)
    assert action == "store"
    assert json.loads(payload) == {
        "ServerURL": basic_registry.host,
        "Username": "tester",
        "Secret": password,
    }
    assert docker_config() == {"credsStore": "syncertest"}  # no plain-text copy
