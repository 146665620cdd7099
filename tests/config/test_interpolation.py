"""`${VAR}` interpolation in sync.yaml, and secrets kept out of errors and reprs."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.config.syncfile import load_config
from syncer.config.yamlsource import InterpolationError, format_loc, interpolate, interpolate_string
from tests.config.config_support import VALID_ENTRY, error_of, write

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
