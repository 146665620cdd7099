"""Loading a valid sync.yaml: the example, defaults, registries and SYNCER_* settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.config.settings import Settings, default_config_path, load_settings
from syncer.config.syncfile import (
    Defaults,
    SyncConfig,
    TagFilter,
    load_config,
)
from syncer.errors import ConfigError
from syncer.registry.options import RegistryConfig, TlsMode
from tests.config.config_support import DIGEST, VALID_ENTRY, error_of, write

EXAMPLE = r"""
version: 1
defaults:                      # inherited by every entry of `sync`
  tags: {allow: [".*"]}
  platforms: all
registries:                    # keyed by the registry host exactly as written in references
  docker.io:
    credentials: {username: "${DOCKERHUB_USER}", password: "${DOCKERHUB_TOKEN}"}
  127.0.0.1:5000:
    tls: disabled              # enabled (default) | insecure | disabled
    endpoint: http://127.0.0.1:5000   # optional: the URL actually contacted
    max_concurrency: 8
sync:
  - source: docker.io/library/alpine          # a repository: all tags that pass the filters
    destination: 127.0.0.1:5000/mirror/alpine
    tags:
      allow: ["3\\.\\d+", "latest"]           # regexes, anchored at both ends
      deny: [".*-rc.*"]
  - source: docker.io/library/nginx:1.27      # a single tag (or @sha256:... digest)
    destination: 127.0.0.1:5000/mirror/nginx  # destination tag defaults to the source tag
"""


# --- the example and resolution ---------------------------------------------------


def test_example_loads_and_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKERHUB_USER", "someone")
    monkeypatch.setenv("DOCKERHUB_TOKEN", "tok-123")
    loaded = load_config(write(tmp_path, EXAMPLE))

    assert loaded.path == tmp_path / "sync.yaml"
    alpine, nginx = loaded.entries
    assert alpine.index == 0
    assert (alpine.source.registry, alpine.source.repository) == ("docker.io", "library/alpine")
    assert alpine.source.tag is None and alpine.destination.tag is None
    assert alpine.destination.registry == "127.0.0.1:5000"
    assert alpine.destination.repository == "mirror/alpine"
    assert alpine.platforms == "all"
    assert [
        t
        for t in ["3.19", "3.20", "latest", "3.20-rc1", "edge", "3.19.1"]
        if alpine.tags.matches(t)
    ] == [
        "3.19",
        "3.20",
        "latest",
    ]
    assert alpine.tags.reason("3.20-rc1") == "matched tags.deny '.*-rc.*'"
    assert alpine.tags.reason("edge") == "not matched by tags.allow"

    assert nginx.index == 1
    assert nginx.source.tag == "1.27"
    assert nginx.destination.tag == "1.27"  # defaulted from the source tag
    assert nginx.tags.allow == [".*"]

    cfg = loaded.config
    hub = cfg.registry_config("docker.io")
    assert hub.credentials is not None and hub.credentials.username == "someone"
    assert hub.credentials.password is not None
    assert hub.credentials.password.get_secret_value() == "tok-123"
    assert cfg.registry_config("index.docker.io") is hub
    local = cfg.registry_config("127.0.0.1:5000")
    assert local.tls is TlsMode.DISABLED
    assert local.endpoint == "http://127.0.0.1:5000"
    assert local.max_concurrency == 8
    assert cfg.registry_config("ghcr.io") == RegistryConfig()


def test_defaults_merge_per_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        defaults:
          tags: {allow: ["v.*"], deny: [".*-dev"]}
          platforms: [linux/amd64, linux/arm/v7]
        sync:
          - {source: ghcr.io/a/one, destination: registry.example.com/one}
          - source: ghcr.io/a/two
            destination: registry.example.com/two
            tags: {allow: ["x.*"]}
          - source: ghcr.io/a/three
            destination: registry.example.com/three
            platforms: all
        """,
    )
    one, two, three = load_config(path, env={}).entries
    assert one.tags.allow == ["v.*"] and one.tags.deny == [".*-dev"]
    assert one.platforms == ("linux/amd64", "linux/arm/v7")
    # `tags` replaces the default wholesale: the default deny list does not carry over.
    assert two.tags.allow == ["x.*"] and two.tags.deny == []
    assert two.tags.matches("x-dev")
    assert two.platforms == ("linux/amd64", "linux/arm/v7")
    assert three.tags.allow == ["v.*"]
    assert three.platforms == "all"


def test_digest_source_with_destination_tag(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        version: 1
        sync:
          - source: docker.io/library/alpine@{DIGEST}
            destination: registry.example.com/alpine:pinned
        """,
    )
    (entry,) = load_config(path, env={}).entries
    assert entry.source.digest == DIGEST and entry.source.tag is None
    assert entry.destination.tag == "pinned" and entry.destination.digest is None


def test_tag_filter_defaults_and_deny_wins() -> None:
    everything = TagFilter()
    assert everything.matches("anything") and everything.reason("x") is None
    f = TagFilter(allow=["1\\..*"], deny=["1\\.0"])
    assert f.matches("1.1") and not f.matches("1.0") and not f.matches("2.0")
    assert f.reason("1.0") == "matched tags.deny '1\\\\.0'"
    assert not f.matches("x1.1")  # anchored at both ends
    assert Defaults().platforms == "all"


# --- registries --------------------------------------------------------------------


def test_registry_keys_are_normalised(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nregistries:\n  index.docker.io:\n    max_concurrency: 3\n  ghcr.io:\n"
        "sync:\n" + VALID_ENTRY,
    )
    cfg = load_config(path, env={}).config
    assert set(cfg.registries) == {"docker.io", "ghcr.io"}
    assert cfg.registry_config("docker.io").max_concurrency == 3
    assert cfg.registry_config("index.docker.io").max_concurrency == 3
    assert cfg.registry_config("ghcr.io") == RegistryConfig()  # empty entry: all defaults


def test_registry_key_that_is_not_a_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nregistries:\n  ghcr.io: {}\n  https://ghcr.io: {}\nsync:\n" + VALID_ENTRY,
    )
    message = error_of(path)
    assert f'{path}:4: registries["https://ghcr.io"]: ' in message
    assert "put URLs in `endpoint:`" in message


def test_registry_key_without_dot_or_port(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nregistries:\n  myhost: {}\nsync:\n" + VALID_ENTRY)
    message = error_of(path)
    assert f"{path}:3: registries.myhost: 'myhost' is not a registry host" in message
    assert "e.g. docker.io, ghcr.io or 127.0.0.1:5000" in message


def test_sync_config_direct_validation() -> None:
    cfg = SyncConfig.model_validate(
        {"version": 1, "sync": [{"source": "ghcr.io/a/b:1", "destination": "r.example.com/b"}]}
    )
    (entry,) = cfg.resolve()
    assert entry.destination.tag == "1" and entry.tags == TagFilter()


# --- settings ----------------------------------------------------------------------


def test_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNCER_CONFIG", "/etc/syncer/sync.yaml")
    monkeypatch.setenv("SYNCER_LOG_FORMAT", "json")
    monkeypatch.setenv("SYNCER_LOG_LEVEL", "WARN")
    monkeypatch.setenv("SYNCER_CONCURRENCY", "4")
    settings = Settings()
    assert settings.config == Path("/etc/syncer/sync.yaml")
    assert (settings.log_format, settings.log_level, settings.concurrency) == ("json", "warning", 4)
    assert default_config_path(settings) == Path("/etc/syncer/sync.yaml")


def test_settings_defaults_and_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CONFIG", "LOG_FORMAT", "LOG_LEVEL", "CONCURRENCY", "REPORT"):
        monkeypatch.delenv(f"SYNCER_{name}", raising=False)
    settings = Settings()
    assert default_config_path(settings) == Path("sync.yaml")
    assert (settings.log_format, settings.concurrency, settings.report) == ("auto", 16, None)
    monkeypatch.setenv("SYNCER_CONCURRENCY", "0")
    with pytest.raises(ConfigError) as info:
        load_settings(log_level="loud", report=None)
    message = str(info.value)
    assert (
        "SYNCER_CONCURRENCY / --concurrency: found '0'; expected a number greater than" in message
    )
    assert "SYNCER_LOG_LEVEL / --log-level: found 'loud'; expected one of: debug, info" in message
    assert load_settings(concurrency=3, config=None).concurrency == 3
