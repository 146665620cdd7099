"""The `tags:` block of sync.yaml: validation messages and the manual's example."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from syncer.config.filters import PRERELEASE
from syncer.config.syncfile import load_config
from syncer.errors import ConfigError

# --- sync.yaml validation ------------------------------------------------------------


def tags_yaml(*lines: str, where: str = "entry") -> str:
    """A config with `lines` under `tags:`; they start on line 6 (entry) or 4 (defaults)."""
    if where == "defaults":
        body = "".join(f"    {line}\n" for line in lines)
        return (
            "version: 1\ndefaults:\n  tags:\n" + body + "sync:\n"
            "  - {source: ghcr.io/a/b, destination: r.example.com/b}\n"
        )
    body = "".join(f"      {line}\n" for line in lines)
    return (
        "version: 1\nsync:\n  - source: ghcr.io/a/b\n    destination: r.example.com/b\n"
        "    tags:\n" + body
    )


INVALID: dict[str, tuple[str, int, str, str]] = {
    "bad range": (
        tags_yaml('semver: ">=1.25 <"'),
        6,
        "sync[0].tags.semver",
        "invalid range '>=1.25 <': '<' is not followed by a version; expected comparators",
    ),
    "range shows an example": (
        tags_yaml("allow: [x]", 'semver: "1.x"'),
        7,
        "sync[0].tags.semver",
        "write ~1; expected comparators separated by spaces (all must hold) and `||` between "
        "alternatives, e.g. '>=1.25 <2', '~1.27', '^3.19', '1.4 || 1.6' or '*'",
    ),
    "range in defaults": (
        tags_yaml("latest: 2", "semver: '=>1'", where="defaults"),
        5,
        "defaults.tags.semver",
        "invalid range '=>1'",
    ),
    "range as a float": (
        tags_yaml("semver: 1.10"),
        6,
        "sync[0].tags.semver",
        "found the number 1.1 (YAML reads an unquoted 1.10 as 1.1); quote the range",
    ),
    "range as a list": (
        tags_yaml("semver: ['>=1']"),
        6,
        "sync[0].tags.semver",
        "found a list; expected a version range in quotes",
    ),
    "empty range": (tags_yaml("semver: ''"), 6, "sync[0].tags.semver", "the range is empty"),
    "latest zero": (
        tags_yaml("latest: 0"),
        6,
        "sync[0].tags.latest",
        "found 0; expected at least 1, e.g. `latest: 3`",
    ),
    "latest negative": (
        tags_yaml("latest: -2"),
        6,
        "sync[0].tags.latest",
        "found -2; expected at least 1",
    ),
    "latest string": (
        tags_yaml("latest: '2'"),
        6,
        "sync[0].tags.latest",
        "found '2'; expected a whole number, e.g. `latest: 3`",
    ),
    "latest word": (tags_yaml("latest: all"), 6, "sync[0].tags.latest", "found 'all'; expected"),
    "latest float": (tags_yaml("latest: 2.5"), 6, "sync[0].tags.latest", "found 2.5; expected"),
    "latest bool": (tags_yaml("latest: true"), 6, "sync[0].tags.latest", "found true; expected"),
    "bad always regex": (
        tags_yaml("latest: 1", 'always: ["latest", "("]'),
        7,
        "sync[0].tags.always[1]",
        "invalid regex '(': missing ), unterminated subpattern",
    ),
    "bad immutable regex": (
        tags_yaml("immutable:", "  - '\\d+'", "  - '[a-'"),
        8,
        "sync[0].tags.immutable[1]",
        "invalid regex '[a-'",
    ),
    "bad suffix regex": (
        tags_yaml("latest: 1", "semver_suffix: '-alpine('"),
        7,
        "sync[0].tags.semver_suffix",
        "matched against the whole text after the version, e.g. -alpine",
    ),
    "prerelease not a bool": (
        tags_yaml("semver: '>=1'", "semver_prerelease: 'yes'"),
        7,
        "sync[0].tags.semver_prerelease",
        "found 'yes'; expected true or false",
    ),
    "suffix without semver or latest": (
        tags_yaml("allow: ['.*']", "semver_suffix: -alpine"),
        7,
        "sync[0].tags.semver_suffix",
        "has no effect without tags.semver or tags.latest",
    ),
    "prerelease without semver or latest": (
        tags_yaml("semver_prerelease: true", where="defaults"),
        4,
        "defaults.tags.semver_prerelease",
        'add e.g. `semver: ">=1"` or `latest: 3`, or remove it',
    ),
    "unknown key latests": (
        tags_yaml("latests: 3"),
        6,
        "sync[0].tags.latests",
        "unknown key 'latests'; did you mean 'latest'? allowed keys: allow, deny, always, "
        "semver, semver_suffix, semver_prerelease, latest, immutable",
    ),
    "unknown key semver_sufix": (
        tags_yaml("semver: '>=1'", "semver_sufix: -alpine"),
        7,
        "sync[0].tags.semver_sufix",
        "did you mean 'semver_suffix'?",
    ),
}


@pytest.mark.parametrize("name", sorted(INVALID))
def test_invalid_tag_config(tmp_path: Path, name: str) -> None:
    text, line, key_path, fix = INVALID[name]
    path = tmp_path / "sync.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    message = str(info.value)
    assert f"{path}:{line}: {key_path}: " in message
    assert fix in message


def test_every_tag_problem_reported_at_once(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    text = tags_yaml("semver: '>>1'", "latest: 0", "always: ['(']", "immutable: ['[']")
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path, env={})
    lines = str(info.value).splitlines()
    assert lines[0].endswith("4 problems:")
    assert [ln.split(": ")[1] for ln in lines[1:]] == [
        "sync[0].tags.semver",
        "sync[0].tags.latest",
        "sync[0].tags.always[0]",
        "sync[0].tags.immutable[0]",
    ]
    assert [ln.split(": ")[0].rsplit(":", 1)[1] for ln in lines[1:]] == ["6", "7", "8", "9"]


# The example of docs/configuration.md (Choosing tags): every key, in an entry and in defaults.
EXAMPLE = r"""
version: 1
defaults:
  tags:
    semver: ">=1"
    latest: 3
    always: ["latest"]
sync:
  - source: docker.io/library/nginx
    destination: registry.example.com/mirror/nginx
    tags:
      allow: [".*-alpine"]                 # regexes, anchored at both ends
      deny: ["1\\.25\\..*"]                # deny wins over everything, `always` included
      always: ["stable-alpine"]            # kept whatever the version rules say
      semver: ">=1.22 <2 || ~1.20"         # npm-style range
      semver_suffix: "-alpine"             # the text after the version, matched in full
      latest: 3                            # the 3 highest versions that pass
      immutable: ["\\d+\\.\\d+\\.\\d+-alpine"]   # x.y.z tags never move: copy once
  - source: docker.io/library/python
    destination: registry.example.com/mirror/python
    tags:
      semver: "^3.12"
      semver_prerelease: true
  - source: docker.io/library/redis
    destination: registry.example.com/mirror/redis
"""


def test_example_with_every_key_loads(tmp_path: Path) -> None:
    path = tmp_path / "sync.yaml"
    path.write_text(textwrap.dedent(EXAMPLE).lstrip("\n"), encoding="utf-8")
    nginx, python, redis = load_config(path, env={}).entries

    selected, filtered = nginx.tags.select(
        [
            "1.27.3-alpine", "1.27.2-alpine", "1.27-alpine", "1.26.2-alpine", "1.25.5-alpine",
            "1.20.2-alpine", "1.27.3", "1.28.0-rc.1-alpine", "stable-alpine", "latest",
            "mainline-alpine",
        ]
    )  # fmt: skip
    assert selected == ["1.27-alpine", "1.27.2-alpine", "1.27.3-alpine", "stable-alpine"]
    assert filtered == {
        "1.20.2-alpine": "not among the 3 highest versions (tags.latest: 3)",
        "1.25.5-alpine": "matched tags.deny '1\\\\.25\\\\..*'",
        "1.26.2-alpine": "not among the 3 highest versions (tags.latest: 3)",
        "1.27.3": "not matched by tags.allow",
        "1.28.0-rc.1-alpine": PRERELEASE,
        "latest": "not matched by tags.allow",  # the entry's tags replace the defaults
        "mainline-alpine": "not a semantic version",
    }
    assert nginx.tags.is_immutable("1.27.3-alpine") and not nginx.tags.is_immutable("1.27-alpine")

    selected, _ = python.tags.select(["3.11", "3.12.1", "3.13.0rc1", "3.13.0", "4.0", "2.7"])
    assert selected == ["3.12.1", "3.13.0", "3.13.0rc1"]

    # No `tags:` of its own: the defaults apply.
    selected, filtered = redis.tags.select(["6", "7.0", "7.2", "7.4", "latest", "alpine", "0.9"])
    assert selected == ["7.0", "7.2", "7.4", "latest"]
    assert filtered["6"] == "not among the 3 highest versions (tags.latest: 3)"
    assert filtered["0.9"] == "outside tags.semver '>=1'"
    assert filtered["alpine"] == "not a semantic version"
