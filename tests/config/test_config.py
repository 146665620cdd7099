from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncer.config.settings import Settings, default_config_path, load_settings
from syncer.config.syncfile import (
    Defaults,
    SyncConfig,
    TagFilter,
    load_config,
)
from syncer.config.yamlsource import InterpolationError, format_loc, interpolate, interpolate_string
from syncer.errors import ConfigError
from syncer.registry.options import RegistryConfig, TlsMode

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

DIGEST = "sha256:" + "a" * 64


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "sync.yaml"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def error_of(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return str(info.value)


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


# --- invalid configs: file, line, key path and fix ---------------------------------

VALID_ENTRY = "  - {source: ghcr.io/a/b, destination: registry.example.com/b}\n"

INVALID = {
    "unknown key": (
        "version: 1\nsync:\n" + VALID_ENTRY + "  - source: ghcr.io/a/c\n"
        "    destination: registry.example.com/c\n    tagz: {allow: [x]}\n",
        6,
        "sync[1].tagz",
        "did you mean 'tags'?",
    ),
    "invalid regex": (
        "version: 1\nsync:\n" + VALID_ENTRY + "  - source: ghcr.io/a/c\n"
        "    destination: registry.example.com/c\n    tags:\n      allow:\n        - '3.(\\d+'\n",
        8,
        "sync[1].tags.allow[0]",
        "expected a Python regular expression",
    ),
    "missing destination": (
        "version: 1\nsync:\n" + VALID_ENTRY + "  - source: ghcr.io/a/c\n",
        4,
        "sync[1].destination",
        "add e.g. `destination:",
    ),
    "invalid source reference": (
        "version: 1\nsync:\n  - source: ghcr.io/UPPER/Case\n    destination: r.example.com/x\n",
        3,
        "sync[0].source",
        "expected registry/repository[:tag|@sha256:digest]",
    ),
    "destination with digest": (
        "version: 1\nsync:\n  - source: ghcr.io/a/b:1\n"
        f"    destination: r.example.com/x@{DIGEST}\n",
        4,
        "sync[0].destination",
        "cannot be a digest; name a tag",
    ),
    "digest source without destination tag": (
        f"version: 1\nsync:\n  - source: ghcr.io/a/b@{DIGEST}\n    destination: r.example.com/x\n",
        4,
        "sync[0].destination",
        "must name the tag to push it as",
    ),
    "source pinned by an unsupported digest algorithm": (
        "version: 1\nsync:\n  - source: ghcr.io/a/b@blake3:" + "a" * 64 + "\n"
        "    destination: r.example.com/x:1\n",
        3,
        "sync[0].source",
        "digest algorithm 'blake3' is not supported; syncer verifies sha256, sha384, sha512",
    ),
    "destination tag for a repository source": (
        "version: 1\nsync:\n  - source: ghcr.io/a/b\n    destination: r.example.com/x:1\n",
        4,
        "sync[0].destination",
        "remove the tag from the destination",
    ),
    "source equals destination": (
        "version: 1\nsync:\n  - source: ghcr.io/a/b:1\n    destination: ghcr.io/a/b\n",
        4,
        "sync[0].destination",
        "point the destination at another repository",
    ),
    "bad tls value": (
        "version: 1\nregistries:\n  127.0.0.1:5000:\n    tls: off-please\nsync:\n" + VALID_ENTRY,
        4,
        'registries["127.0.0.1:5000"].tls',
        "expected 'enabled', 'insecure' or 'disabled'",
    ),
    "wrong type": (
        "version: 1\nregistries:\n  ghcr.io:\n    max_concurrency: lots\nsync:\n" + VALID_ENTRY,
        4,
        'registries["ghcr.io"].max_concurrency',
        "found 'lots'; expected an integer",
    ),
    "endpoint not a URL": (
        "version: 1\nregistries:\n  ghcr.io:\n    endpoint: ghcr.example\nsync:\n" + VALID_ENTRY,
        4,
        'registries["ghcr.io"].endpoint',
        "found 'ghcr.example'; must be a URL starting with http://",
    ),
    "version 2": (
        "version: 2\nsync:\n" + VALID_ENTRY,
        1,
        "version",
        "found 2; expected `version: 1`",
    ),
    "missing version": (
        "sync:\n" + VALID_ENTRY,
        1,
        "version",
        "add e.g. `version: 1`",
    ),
    "empty sync": ("version: 1\nsync: []\n", 2, "sync", "add at least one entry"),
    "bad platform": (
        "version: 1\nsync:\n  - source: ghcr.io/a/b\n    destination: r.example.com/b\n"
        "    platforms:\n      - linux/amd64\n      - linux\n",
        7,
        "sync[0].platforms[1]",
        "expected os/arch[/variant]",
    ),
    "platform not in a list": (
        "version: 1\ndefaults:\n  platforms: linux/amd64\nsync:\n" + VALID_ENTRY,
        3,
        "defaults.platforms",
        "for one platform write [linux/amd64]",
    ),
    "allow not a list": (
        "version: 1\ndefaults:\n  tags:\n    allow: latest\nsync:\n" + VALID_ENTRY,
        4,
        "defaults.tags.allow",
        "for a single item write [latest]",
    ),
    "empty allow": (
        "version: 1\ndefaults:\n  tags:\n    allow: []\nsync:\n" + VALID_ENTRY,
        4,
        "defaults.tags.allow",
        "remove `allow` to copy every tag",
    ),
    "duplicate registry after normalisation": (
        "version: 1\nregistries:\n  docker.io: {}\n  index.docker.io:\n    max_concurrency: 2\n"
        "sync:\n" + VALID_ENTRY,
        4,
        'registries["index.docker.io"]',
        "merge them into one entry",
    ),
    "missing env variable": (
        "version: 1\nregistries:\n  ghcr.io:\n    credentials:\n      username: ${GHCR_USER}\n"
        "sync:\n" + VALID_ENTRY,
        5,
        'registries["ghcr.io"].credentials.username',
        "environment variable GHCR_USER is not set; export GHCR_USER",
    ),
    "sync not a list": ("version: 1\nsync: {}\n", 2, "sync", "found a mapping; expected a list"),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_config(tmp_path: Path, name: str) -> None:
    text, line, key_path, fix = INVALID[name]
    path = tmp_path / "sync.yaml"
    path.write_text(text, encoding="utf-8")
    message = error_of(path)
    assert f"{path}:{line}: {key_path}: " in message
    assert fix in message


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        registries:
          ghcr.io: {tls: maybe}
        sync:
          - source: ghcr.io/a/b
            destination: registry.example.com/b
            tags: {allow: ["("]}
          - source: ${MISSING}
            destination: registry.example.com/c
          - {source: ghcr.io/a/d}
        """,
    )
    message = error_of(path)
    assert message.startswith(f"{path}: 4 problems:\n")
    lines = message.splitlines()[1:]
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == ["3", "7", "8", "10"]
    assert 'registries["ghcr.io"].tls' in lines[0]
    assert "sync[0].tags.allow[0]" in lines[1]
    # The failed interpolation is reported once, not again as an invalid reference.
    assert "sync[1].source: environment variable MISSING is not set" in lines[2]
    assert "sync[2].destination: missing required key" in lines[3]


# --- file and YAML level errors ----------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    message = error_of(tmp_path / "nope.yaml")
    assert "nope.yaml" in message and "file not found" in message and "SYNCER_CONFIG" in message


def test_directory_and_bad_encoding(tmp_path: Path) -> None:
    assert "is a directory" in error_of(tmp_path)
    path = tmp_path / "sync.yaml"
    path.write_bytes(b"version: 1\nsync: \xff\n")
    assert "not valid UTF-8" in error_of(path)


def test_yaml_syntax_error_has_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "version: 1\nsync:\n  - source: [ghcr.io/a\n    destination: x\n")
    message = error_of(path)
    assert f"{path}:4: YAML syntax error at line 4, column 16" in message
    assert "fix the YAML" in message


@pytest.mark.parametrize(
    ("text", "found"), [("", "an empty file"), ("- a\n- b\n", "a list"), ("hello\n", "'hello'")]
)
def test_top_level_not_a_mapping(tmp_path: Path, text: str, found: str) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(text, encoding="utf-8")
    message = error_of(path)
    assert message.startswith(f"{path}:1: found {found}; expected a mapping with keys version")


# --- interpolation -----------------------------------------------------------------


def test_interpolation_in_values(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        version: 1
        registries:
          mirror.example.com:
            max_concurrency: ${CONC:-3}
            endpoint: https://${HOST}:${PORT:-443}
        sync:
          - source: ghcr.io/${ORG}/app
            destination: registry.example.com/${EMPTY:-fallback}/app
            tags: {allow: ["v1$", "cost-$$5", "a$b"]}
        """,
    )
    env = {"HOST": "mirror.internal", "ORG": "acme", "EMPTY": ""}
    loaded = load_config(path, env=env)
    cfg = loaded.config.registry_config("mirror.example.com")
    assert cfg.max_concurrency == 3
    assert cfg.endpoint == "https://mirror.internal:443"
    (entry,) = loaded.entries
    assert entry.source.repository == "acme/app"
    assert entry.destination.repository == "fallback/app"
    assert entry.tags.allow == ["v1$", "cost-$5", "a$b"]


def test_interpolate_string_rules() -> None:
    env = {"A": "1", "E": ""}
    assert interpolate_string("${A}-${B:-two}-$${A}-$", env) == "1-two-${A}-$"
    assert interpolate_string("${E:-d}${E}", env) == "d"
    assert interpolate_string("${B:-}", env) == ""
    with pytest.raises(InterpolationError, match="variable B is not set"):
        interpolate_string("${B}", env)
    with pytest.raises(InterpolationError, match="unterminated"):
        interpolate_string("${A", env)
    with pytest.raises(InterpolationError, match="invalid variable name '1x'"):
        interpolate_string("${1x}", env)


def test_interpolate_reports_paths_and_skips_keys() -> None:
    data, problems = interpolate({"a": [{"b": "${X}"}], "${Y}": 3}, {})
    assert data == {"a": [{"b": ""}], "${Y}": 3}
    assert [(format_loc(p.loc), "X" in p.message) for p in problems] == [("a[0].b", True)]


# --- secrets -----------------------------------------------------------------------

SECRET = "hunter2-very-secret"


@pytest.mark.parametrize(
    ("registry_yaml", "key_path"),
    [
        (f"credentials: {SECRET}", 'registries["ghcr.io"].credentials'),
        (f"credentials: {{password: [{SECRET}]}}", 'registries["ghcr.io"].credentials.password'),
        ("credentials: {password: 123456789}", 'registries["ghcr.io"].credentials.password'),
        (f"credentials: {{identity_token: {{x: {SECRET}}}}}", "credentials.identity_token"),
        (f"credentials: {{password: '${{{SECRET}'}}", 'registries["ghcr.io"].credentials.password'),
        (f"credentials: {{password: '${{bad {SECRET}}}'}}", "credentials.password"),
    ],
)
def test_secrets_are_not_echoed(tmp_path: Path, registry_yaml: str, key_path: str) -> None:
    path = tmp_path / "sync.yaml"
    text = f"version: 1\nregistries:\n  ghcr.io:\n    {registry_yaml}\nsync:\n{VALID_ENTRY}"
    path.write_text(text, encoding="utf-8")
    message = error_of(path)
    assert f"{path}:4: " in message and key_path in message
    assert SECRET not in message and "123456789" not in message


def test_duplicate_secret_key_not_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""
        version: 1
        registries:
          ghcr.io:
            credentials:
              password: first-{SECRET}
              password: {SECRET}
        sync: []
        """,
    )
    message = error_of(path)
    assert f"{path}:6: " in message and "duplicate key 'password'" in message
    assert SECRET not in message


def test_url_credentials_not_echoed(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"version: 1\nregistries:\n  ghcr.io: {{endpoint: 'ftp://me:{SECRET}@h/?sig=x'}}\n"
        "sync:\n" + VALID_ENTRY,
    )
    message = error_of(path)
    assert f"{path}:3: " in message and "found 'ftp://h/?<redacted>'" in message
    assert SECRET not in message


def test_secret_from_env_not_in_repr(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "version: 1\nregistries:\n  ghcr.io:\n    credentials: {password: '${PW}'}\n"
        "sync:\n" + VALID_ENTRY,
    )
    loaded = load_config(path, env={"PW": SECRET})
    assert SECRET not in repr(loaded.config)


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
