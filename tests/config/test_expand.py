"""The pure helpers behind namespace globs, renames and tag templates (config/patterns.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from syncer.config.patterns import (
    RepoFilter,
    glob_matches,
    has_placeholders,
    is_glob,
    name_below,
    render_destination,
    render_tag,
    split_glob,
)
from syncer.errors import InvalidReference


@pytest.mark.parametrize(
    ("source", "glob"),
    [("reg.io/team/*", True), ("reg.io/team/app?", True), ("reg.io/[ab]pp", True),
     ("reg.io/team/app", False), ("reg.io/team/app:1.0", False)],
)  # fmt: skip
def test_is_glob(source: str, glob: bool) -> None:
    assert is_glob(source) is glob


@pytest.mark.parametrize(
    ("source", "parts"),
    [
        ("reg.io/team/*", ("reg.io", "team", "team/*")),
        ("reg.io/*", ("reg.io", "", "*")),
        ("localhost:5000/a/b/c?", ("localhost:5000", "a/b", "a/b/c?")),
        ("127.0.0.1:5000/team/[ab]*/x", ("127.0.0.1:5000", "team", "team/[ab]*/x")),
        ("localhost/team/*", ("localhost", "team", "team/*")),
    ],
)
def test_split_glob(source: str, parts: tuple[str, str, str]) -> None:
    assert split_glob(source) == parts


@pytest.mark.parametrize(
    ("source", "why"),
    [
        ("team/*", "a repository glob needs a registry host, e.g. reg.io/team/*"),
        ("*", "a repository glob needs a registry host"),
        ("reg.io/Team/*", "must be lowercase"),
        ("reg.io/a//*", "empty path component"),
    ],
)
def test_split_glob_refuses_with_the_reason(source: str, why: str) -> None:
    with pytest.raises(InvalidReference, match="invalid reference") as info:
        split_glob(source)
    assert why in info.value.reason


@pytest.mark.parametrize(
    ("pattern", "repository", "matches"),
    [
        ("team/*", "team/app", True),
        ("team/*", "team/a/b", True),  # `*` crosses '/', like a prefix
        ("team/*", "teamx/app", False),
        ("team/*", "team", False),
        ("team/?", "team/a", True),
        ("team/?", "team/ab", False),
        ("team/[ab]*", "team/beta", True),
        ("team/[ab]*", "team/gamma", False),
        ("Team/*", "team/app", False),  # case-sensitive on every platform
    ],
)
def test_glob_matches(pattern: str, repository: str, matches: bool) -> None:
    assert glob_matches(pattern, repository) is matches


@pytest.mark.parametrize(
    ("repository", "prefix", "name"),
    [("team/app", "team", "app"), ("team/sub/app", "team", "sub/app"),
     ("teamx/app", "team", "teamx/app"), ("team/app", "", "team/app"),
     ("team", "team", "team")],
)  # fmt: skip
def test_name_below(repository: str, prefix: str, name: str) -> None:
    assert name_below(repository, prefix) == name


@pytest.mark.parametrize(
    ("destination", "glob", "expected"),
    [
        ("mirror.io/m/{repo}", True, "mirror.io/m/app"),
        ("mirror.io/m/{name}", True, "mirror.io/m/sub/app"),
        ("mirror.io/{name}/{repo}", True, "mirror.io/sub/app/app"),
        ("mirror.io/m", True, "mirror.io/m/sub/app"),  # a glob's plain destination is a prefix
        ("mirror.io/m/", True, "mirror.io/m/sub/app"),
        ("mirror.io/m/app", False, "mirror.io/m/app"),  # a single repository is taken as is
        ("mirror.io/hub/{repo}", False, "mirror.io/hub/app"),
    ],
)
def test_render_destination(destination: str, glob: bool, expected: str) -> None:
    assert render_destination(destination, "team/sub/app", "team", glob=glob) == expected


def test_has_placeholders() -> None:
    assert has_placeholders("m/{repo}") and has_placeholders("m/{name}")
    assert not has_placeholders("m/app") and not has_placeholders("m/{tag}")


@pytest.mark.parametrize(
    ("template", "tag", "expected"),
    [(None, "3.20", "3.20"), ("{tag}", "3.20", "3.20"), ("{tag}-mirror", "3.20", "3.20-mirror"),
     ("v{tag}", "1.0", "v1.0"), ("{tag}.{tag}", "a", "a.a")],
)  # fmt: skip
def test_render_tag(template: str | None, tag: str, expected: str) -> None:
    assert render_tag(template, tag) == expected


@pytest.mark.parametrize(
    ("template", "tag", "why"),
    [
        ("{tag}/x", "1.0", "must match"),
        ("-{tag}", "1.0", "must match"),
        ("{tag}", "", "must match"),
        ("{tag}-" + "x" * 126, "1.0", "is 130 characters; at most 128 allowed"),
    ],
)
def test_render_tag_refuses_an_invalid_result(template: str, tag: str, why: str) -> None:
    with pytest.raises(InvalidReference) as info:
        render_tag(template, tag)
    assert why in info.value.reason


def test_repo_filter_deny_wins_and_patterns_match_the_whole_path() -> None:
    f = RepoFilter(allow=["team/.*"], deny=[".*/internal-.*"])
    assert f.matches("team/app")
    assert not f.matches("team/internal-tools")  # allowed, but denied
    assert not f.matches("other/team/app")  # fullmatch, not search
    assert RepoFilter().matches("anything/at/all")


def test_repo_filter_names_the_bad_regex() -> None:
    with pytest.raises(ValidationError, match=r"\[1\]: invalid regex '\('"):
        RepoFilter(deny=["ok", "("])
