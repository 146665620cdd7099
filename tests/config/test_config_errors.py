"""Invalid sync.yaml files: each problem reported with file, line, key path and fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.config.config_support import DIGEST, VALID_ENTRY, error_of, write

# --- invalid configs: file, line, key path and fix ---------------------------------

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
