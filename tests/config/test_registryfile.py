"""syncer.config.registryfile: one registry's entry, read leniently or strictly."""

from __future__ import annotations

from pathlib import Path

import pytest

from syncer.config.registryfile import RegistrySettings
from syncer.errors import ConfigError
from syncer.registry.options import RegistryConfig, TlsMode


def settings(path: Path, *, strict: bool = False, **env: str) -> tuple[RegistrySettings, list[str]]:
    said: list[str] = []
    return RegistrySettings(path, strict=strict, env=env, warn=said.append), said


def test_variables_are_expanded_inside_the_entry_alone(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        "version: 1\n"
        "registries:\n"
        "  index.docker.io:\n"  # an alias: the key is normalised as references are
        "    credentials: {username: '${HUB_USER}', password: '${HUB_TOKEN:-x}'}\n"
        "  reg.example:5000: {tls: '${NOT_SET}'}\n"
        "sync: []\n"
    )
    lookup, said = settings(path, HUB_USER="me")
    hub = lookup("docker.io")
    assert hub.credentials is not None and hub.credentials.username == "me"
    assert hub.credentials.password is not None
    assert hub.credentials.password.get_secret_value() == "x"  # the default applied
    assert lookup("ghcr.io") == RegistryConfig()  # no entry: the defaults
    assert lookup.entry("ghcr.io") is None
    # `sync: []` and the other entry's unset variable: one warning, once.
    assert said == [
        f"{path} has problems this command does not depend on (`syncer check -c {path}` "
        """lists them); only its registries["index.docker.io"] entry was used"""
    ]
    lookup("quay.io")
    assert len(said) == 1


def test_the_contacted_entry_is_strict_only_when_asked_for(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text("registries:\n  reg.example:5000:\n    tls: sometimes\n")
    lenient, said = settings(path)
    assert lenient("reg.example:5000") == RegistryConfig()
    assert said == [
        f"{path}:3: registries[\"reg.example:5000\"].tls: found 'sometimes'; expected "
        "'enabled', 'insecure' or 'disabled'; the registries[\"reg.example:5000\"] entry was "
        "ignored"
    ]
    strict, said = settings(path, strict=True)
    with pytest.raises(ConfigError) as caught:
        strict("reg.example:5000")
    assert str(caught.value) == (
        f"{path}:3: registries[\"reg.example:5000\"].tls: found 'sometimes'; expected "
        "'enabled', 'insecure' or 'disabled'"
    )
    # Another registry's entry is not the command's: at most a warning, also when strict.
    assert strict("ghcr.io") == RegistryConfig()
    assert len(said) == 1 and "has problems this command does not depend on" in said[0]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("registries: [a, b]\n", "registries: expected a mapping of hosts"),
        (
            "registries:\n  docker.io: {}\n  registry-1.docker.io: {tls: insecure}\n",
            "'docker.io' and 'registry-1.docker.io' are the same registry (docker.io)",
        ),
        ("- just a list\n", "expected a mapping at the top level"),
    ],
)
def test_shape_problems(tmp_path: Path, text: str, problem: str) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(text)
    lenient, said = settings(path)
    assert lenient("docker.io") == RegistryConfig()
    assert len(said) == 1 and problem in said[0]
    assert said[0].endswith("; the registry settings in it were ignored")
    strict, _ = settings(path, strict=True)
    with pytest.raises(ConfigError, match=problem.replace("(", r"\(").replace(")", r"\)")):
        strict("docker.io")


def test_no_file_means_defaults_and_silence() -> None:
    said: list[str] = []
    lookup = RegistrySettings(None, warn=said.append)
    assert lookup("docker.io") == RegistryConfig() and said == []


def test_an_empty_entry_is_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(
        "version: 1\nregistries:\n  127.0.0.1:5000:\n  ghcr.io: {tls: insecure}\n"
        "sync: [{source: ghcr.io/a/b, destination: 127.0.0.1:5000/b}]\n"
    )
    lookup, said = settings(path)
    assert lookup("127.0.0.1:5000") == RegistryConfig()
    assert lookup("ghcr.io").tls == TlsMode.INSECURE
    assert said == []  # a valid file: not a word
