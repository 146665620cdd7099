"""Ad-hoc commands (`search`, `catalog`, `tags`, `inspect`, `login`) beside a sync.yaml.

They read the `registries:` entry of the registry they contact and nothing else: a
problem elsewhere in `./sync.yaml` is one warning line, never a failure (issue 17).
`-c FILE` is read strictly for that entry; `sync` and `check` stay strict throughout.
Every command runs against a real registry (or the search index stub of test_search).
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.registryfile import registry_settings
from syncer.config.syncfile import load_config
from syncer.registry.credentials import resolve
from tests.commands.test_search import RECORDED, FakeIndex
from tests.commands.test_search import index as index  # the search index stub fixture
from tests.support.fleet import app_image
from tests.support.images import push
from tests.support.registry import RunningRegistry
from tests.support.syncer_setup import registry_settings as settings_for

REPO_ROOT = Path(__file__).resolve().parents[2]
UNSET = "SYNCER_TEST_NEVER_SET"


def broken_sync_yaml(path: Path, host: str, entry: dict[str, Any]) -> Path:
    """A sync.yaml that `syncer check` rejects five times over, with a valid entry for
    `host` (line 7). JSON is YAML: the entry is written inline."""
    path.write_text(
        "version: 1\n"
        "colour: blue\n"  # an unknown key
        "defaults:\n"
        f"  platforms: ${{{UNSET}}}\n"  # an unset variable
        "registries:\n"
        "  other.example:5000: {tls: sometimes}\n"  # another registry's bad entry
        f"  {json.dumps(host)}: {json.dumps(entry)}\n"
        "sync:\n"
        f"  - {{source: docker.io/library/alpine, destination: '${{{UNSET}_2}}/alpine'}}\n"
        "  - {source: '::not a reference::', destination: x.example/y}\n"  # a bad entry
    )
    return path


def warning_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line]


def the_one_warning(err: str, path: str, host: str) -> None:
    lines = warning_lines(err)
    assert lines == [
        f"syncer: warning: {path} has problems this command does not depend on "
        f'(`syncer check -c {path}` lists them); only its registries["{host}"] entry was used'
    ]


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The folder the command runs in; nothing of the developer's environment applies."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.chdir(folder)
    for var in ("SYNCER_CONFIG", UNSET, f"{UNSET}_2", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return folder


@pytest.fixture
def seeded(basic_registry: RunningRegistry) -> RunningRegistry:
    push(basic_registry.seed_url, "team/web", app_image(0, 0), "1.0")
    return basic_registry


# --- each command, in a folder whose sync.yaml is broken everywhere but its entry -------


@pytest.mark.parametrize("command", ["tags", "catalog", "inspect"])
def test_read_commands_use_their_entry_and_warn_once(
    command: str, seeded: RunningRegistry, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = seeded
    # The htpasswd registry answers 401 without the entry's credentials: exit 0 proves them.
    broken_sync_yaml(here / "sync.yaml", reg.host, settings_for(reg))
    target = {
        "tags": f"{reg.host}/team/web",
        "catalog": reg.host,
        "inspect": f"{reg.host}/team/web:1.0",
    }[command]
    mark = reg.mark()
    assert main([command, target, "--output", "json"]) == 0
    out, err = capsys.readouterr()
    rows = json.loads(out)
    if command == "tags":
        assert rows[0]["tag"] == "1.0" and rows[0]["digest"] == app_image(0, 0).digest
    elif command == "catalog":
        assert rows == [{"repository": "team/web"}]
    else:
        assert rows[0]["digest"] == app_image(0, 0).digest
    the_one_warning(err, "sync.yaml", reg.host)
    assert any(r.status == 200 for r in reg.requests_since(mark))


def test_login_uses_its_entry_and_warns_once(
    basic_registry: RunningRegistry,
    here: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg = basic_registry
    assert reg.password is not None
    # `mirror.test:5000` is reached only through the entry's endpoint (the tests cannot
    # leave loopback), so a login that succeeds used the entry.
    entry = {"endpoint": reg.url, "tls": "disabled"}
    broken_sync_yaml(here / "sync.yaml", "mirror.test:5000", entry)
    monkeypatch.setattr("sys.stdin", io.StringIO(reg.password + "\n"))
    assert main(["login", "mirror.test:5000", "-u", str(reg.username), "--password-stdin"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("Login Succeeded (stored in config file ")
    the_one_warning(err, "sync.yaml", "mirror.test:5000")
    assert reg.requests()[-1].status == 200


def test_search_uses_the_docker_io_entry_and_warns_once(
    index: FakeIndex, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # No --index: the index named by the docker.io entry is the only one reachable.
    broken_sync_yaml(here / "sync.yaml", "docker.io", {"search_endpoint": index.url})
    assert main(["search", "centos", "--limit", "2", "--output", "json"]) == 0
    out, err = capsys.readouterr()
    assert [r["name"] for r in json.loads(out)] == [r["name"] for r in RECORDED[:2]]
    the_one_warning(err, "sync.yaml", "docker.io")
    assert [p for p, _q, _h in index.requests] == ["/v1/search"]


def test_syncer_config_is_read_as_leniently_as_the_local_file(
    seeded: RunningRegistry,
    here: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    reg = seeded
    path = broken_sync_yaml(tmp_path / "elsewhere.yaml", reg.host, settings_for(reg))
    monkeypatch.setenv("SYNCER_CONFIG", str(path))
    assert main(["tags", f"{reg.host}/team/web", "--no-digests", "--output", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"tag": "1.0"}]
    the_one_warning(err, str(path), reg.host)


# --- a bad entry for the contacted registry ---------------------------------------------


def test_a_bad_entry_of_the_contacted_registry_is_ignored_with_one_warning(
    anon_registry: RunningRegistry, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = anon_registry
    push(reg.seed_url, "team/web", app_image(0, 0), "1.0")
    # As the defect report had it: credentials from variables that are not set, and
    # a typo, in the entry of the very registry the command contacts.
    entry = {"credentials": {"username": f"${{{UNSET}}}", "password": "x"}, "tls_mode": "on"}
    broken_sync_yaml(here / "sync.yaml", reg.host, entry)
    mark = reg.mark()
    assert main(["tags", f"{reg.host}/team/web", "--no-digests", "--output", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"tag": "1.0"}]
    assert warning_lines(err) == [
        f'syncer: warning: sync.yaml:7: registries["{reg.host}"].credentials.username: '
        f"environment variable {UNSET} is not set; export {UNSET}, or give a default with "
        f"'${{{UNSET}:-default}}' (and 1 more); the registries[\"{reg.host}\"] entry was ignored"
    ]
    # The defaults applied: plain HTTP to loopback, one listing.
    assert [(r.path, r.status) for r in reg.requests_since(mark)] == [
        ("/v2/team/web/tags/list?n=1000", 200)
    ]


def test_an_explicit_file_is_strict_for_the_contacted_entry(
    seeded: RunningRegistry, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = seeded
    entry = {**settings_for(reg), "tls_mode": "on"}
    path = broken_sync_yaml(here / "explicit.yaml", reg.host, entry)
    mark = reg.mark()
    for argv in (
        ["tags", "-c", str(path), f"{reg.host}/team/web"],
        ["catalog", "-c", str(path), reg.host],
        ["inspect", "-c", str(path), f"{reg.host}/team/web:1.0"],
    ):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.splitlines() == [
            f'syncer: error: {path}:7: registries["{reg.host}"].tls_mode: unknown key '
            "'tls_mode'; allowed keys: tls, endpoint, ca_file, "
            "client_cert, client_key, credentials, max_concurrency, ratelimit, retry, "
            "chunk_upload_threshold, chunk_size, search_endpoint, bandwidth, catalog, "
            "catalog_endpoint"
        ]
    assert reg.requests_since(mark) == []  # nothing was contacted


def test_an_explicit_file_is_strict_for_login_and_search(
    index: FakeIndex, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = broken_sync_yaml(here / "explicit.yaml", "docker.io", {"search_endpoint": "index"})
    assert main(["search", "centos", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'syncer: error: {path}:7: registries["docker.io"].search_endpoint: ')
    assert "must be a URL starting with http:// or https://" in err
    assert index.requests == []
    assert main(["login", "docker.io", "-u", "me", "--password-stdin", "-c", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f'syncer: error: {path}:7: registries["docker.io"].search_endpoint: ')


def test_an_explicit_file_with_problems_elsewhere_warns_once(
    seeded: RunningRegistry, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reg = seeded
    path = broken_sync_yaml(here / "explicit.yaml", reg.host, settings_for(reg))
    assert main(["catalog", "-c", str(path), reg.host, "--output", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == [{"repository": "team/web"}]
    the_one_warning(err, str(path), reg.host)


def test_an_explicit_file_that_is_missing_is_exit_2(
    here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "-c", "nope.yaml", "127.0.0.1:1"]) == 2
    assert capsys.readouterr().err.startswith("syncer: error: nope.yaml: file not found")


def test_an_unreadable_local_file_is_one_warning(
    anon_registry: RunningRegistry, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (here / "sync.yaml").write_text("registries: [unclosed\n")
    assert main(["catalog", anon_registry.host, "--output", "json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out) == []
    lines = warning_lines(err)
    assert len(lines) == 1
    assert lines[0].startswith("syncer: warning: sync.yaml:2: YAML syntax error at line 2")
    assert lines[0].endswith("; the registry settings in it were ignored")


# --- sync and check still need a valid file ---------------------------------------------


@pytest.mark.parametrize("command", ["sync", "check"])
def test_sync_and_check_stay_strict(
    command: str, anon_registry: RunningRegistry, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken_sync_yaml(here / "sync.yaml", anon_registry.host, settings_for(anon_registry))
    for argv in ([command], [command, "-c", "sync.yaml"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("syncer: error: sync.yaml: 5 problems:")
        for key in ("colour", "defaults.platforms", "other.example:5000", "sync[0]", "sync[1]"):
            assert key in err
    assert anon_registry.requests() == []


# --- the repository's own example ---------------------------------------------------------


def test_the_example_sync_yaml_needs_no_docker_hub_credentials(
    index: FakeIndex,
    here: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    for var in ("DOCKERHUB_USER", "DOCKERHUB_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    example = REPO_ROOT / "sync.yaml"
    loaded = load_config(example)  # `syncer check` reads it without a complaint
    creds = loaded.config.registry_config("docker.io").credentials
    assert creds is not None and creds.model_dump(exclude_none=True) == {}
    assert resolve("docker.io", creds) is None  # no docker login either: anonymous
    assert [e.source.repository for e in loaded.entries] == [
        "library/alpine",
        "library/nginx",
        "library/redis",
    ]
    # An ad-hoc command in a folder holding the example: no warning, no credentials sent.
    shutil.copy(example, here / "sync.yaml")
    assert registry_settings(None).entry("docker.io") == loaded.config.registries["docker.io"]
    assert main(["search", "centos", "--index", index.url, "--limit", "1"]) == 0
    out, err = capsys.readouterr()
    assert out.splitlines()[1].startswith("centos ")
    assert err == ""
    assert "Authorization" not in index.requests[0][2]


def test_empty_credentials_send_no_authorization(
    basic_registry: RunningRegistry, here: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `${DOCKERHUB_USER:-}` unset is "": anonymous, so the htpasswd registry says 401
    # to a request that carries no Authorization at all (not `Basic Og==`).
    reg = basic_registry
    entry = {**settings_for(reg, creds=False)}
    entry["credentials"] = {"username": f"${{{UNSET}:-}}", "password": f"${{{UNSET}:-}}"}
    path = broken_sync_yaml(here / "sync.yaml", reg.host, entry)
    assert main(["catalog", "-c", str(path), reg.host]) == 1
    err = capsys.readouterr().err
    assert f"unauthorized at {reg.host}" in err
    # One 401 and no second try: there was no credential to answer the challenge with.
    assert [(r.path, r.status) for r in reg.requests()] == [("/v2/_catalog?n=1000", 401)]


@pytest.mark.parametrize(
    ("credentials", "key"),
    [
        ({"username": f"${{{UNSET}:-}}", "password": "s3cret-pw"}, "username"),
        ({"username": "tester", "password": f"${{{UNSET}:-}}"}, "password"),
    ],
)
def test_half_set_credentials_are_exit_2_before_any_request(
    basic_registry: RunningRegistry,
    here: Path,
    capsys: pytest.CaptureFixture[str],
    credentials: dict[str, str],
    key: str,
) -> None:
    # One of the pair unset would otherwise be dropped silently, and the other sent alone.
    reg = basic_registry
    entry = {**settings_for(reg, creds=False), "credentials": credentials}
    path = here / "creds.yaml"
    path.write_text(f"version: 1\nregistries:\n  {json.dumps(reg.host)}: {json.dumps(entry)}\n")
    assert main(["catalog", "-c", str(path), reg.host]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f'syncer: error: {path}:3: registries["{reg.host}"].credentials.{key}: is empty '
        "(an unset ${VAR:-}?)"
    ), err
    assert "set both username and password, or leave both empty" in err
    assert "s3cret-pw" not in err
    assert reg.requests() == []
