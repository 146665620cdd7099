"""Tags read as versions and npm-style version ranges (`tags.semver` in sync.yaml)."""

from __future__ import annotations

import itertools
import re

import pytest

from syncer.config.semver import Range, RangeError, Version, parse_tag, split_tag


def version(tag: str) -> Version:
    parsed = parse_tag(tag)
    assert parsed is not None, tag
    return parsed


# --- parsing tags as versions --------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "expected", "suffix"),
    [
        ("3", Version(3), ""),
        ("3.19", Version(3, 19), ""),
        ("1.27.3", Version(1, 27, 3), ""),
        ("v1.27.3", Version(1, 27, 3), ""),
        ("v3", Version(3), ""),
        ("007.01", Version(7, 1), ""),
        ("1.28.0-rc.1", Version(1, 28, 0, (4, 1)), ""),
        ("1.28.0-rc1", Version(1, 28, 0, (4, 1)), ""),
        ("1.28.0-RC1", Version(1, 28, 0, (4, 1)), ""),
        ("1.28-rc-2", Version(1, 28, 0, (4, 2)), ""),
        ("3.13.0rc1", Version(3, 13, 0, (4, 1)), ""),
        ("3.13.0a1", Version(3, 13, 0, (1, 1)), ""),
        ("3.13.0b2", Version(3, 13, 0, (2, 2)), ""),
        ("1.0.0-alpha", Version(1, 0, 0, (1,)), ""),
        ("2.0-beta.3", Version(2, 0, 0, (2, 3)), ""),
        ("1.0-preview.1", Version(1, 0, 0, (3, 1)), ""),
        ("1.0-pre", Version(1, 0, 0, (3,)), ""),
        ("1.0.dev4", Version(1, 0, 0, (0, 4)), ""),
        ("1.27-alpine", Version(1, 27), "-alpine"),
        ("3.19.1-alpine", Version(3, 19, 1), "-alpine"),
        ("3.19.1-alpine3.20", Version(3, 19, 1), "-alpine3.20"),
        ("1.0.0-rc.1-alpine", Version(1, 0, 0, (4, 1)), "-alpine"),
        ("8.0-bookworm", Version(8), "-bookworm"),
        # Words that only start like a pre-release are suffixes.
        ("1.2-develop", Version(1, 2), "-develop"),
        ("1.2-betamax", Version(1, 2), "-betamax"),
        ("1.2-b", Version(1, 2), "-b"),
        ("1.2-alpine", Version(1, 2), "-alpine"),
        ("1.2.3.4", Version(1, 2, 3), ".4"),
        ("1.2_x", Version(1, 2), "_x"),
    ],
)
def test_split_tag(tag: str, expected: Version, suffix: str) -> None:
    assert split_tag(tag) == (expected, suffix)


@pytest.mark.parametrize(
    "tag", ["latest", "edge", "", "v", "vv1", "V1.2", "alpine-3.19", "x1.0", ".1", "-1", "stable"]
)
def test_not_a_version(tag: str) -> None:
    assert split_tag(tag) is None
    assert parse_tag(tag) is None
    assert parse_tag(tag, re.compile(".*")) is None


@pytest.mark.parametrize(
    ("tag", "suffix", "expected"),
    [
        ("1.27", None, Version(1, 27)),
        ("1.27-alpine", None, None),  # a suffix needs semver_suffix
        ("1.2.3.4", None, None),
        ("1.27-alpine", "-alpine", Version(1, 27)),
        ("1.27", "-alpine", None),  # the suffix must be there ...
        ("1.27", "(-alpine)?", Version(1, 27)),  # ... unless the regex allows none
        ("1.27-alpine3.20", "-alpine", None),  # matched in full
        ("1.27-alpine3.20", r"-alpine[\d.]*", Version(1, 27)),
        ("1.0-rc1-alpine", "-alpine", Version(1, 0, 0, (4, 1))),
        ("1.0-rc1", "-.*", None),  # a pre-release is never swallowed by the suffix
    ],
)
def test_parse_tag_with_suffix(tag: str, suffix: str | None, expected: Version | None) -> None:
    assert parse_tag(tag, re.compile(suffix) if suffix is not None else None) == expected


def test_version_order() -> None:
    ascending = [
        "1.0.0-dev",
        "1.0.0-alpha",
        "1.0.0-alpha.1",
        "1.0.0a2",
        "1.0.0-beta",
        "1.0.0-pre",
        "1.0.0-rc.1",
        "1.0.0-rc.2",
        "1.0.0-rc.10",
        "1.0.0",
        "1.0.1",
        "1.1",
        "1.10",
        "2",
        "10",
    ]
    versions = [version(t) for t in ascending]
    assert all(a < b for a, b in itertools.pairwise(versions))
    assert sorted(reversed(versions)) == versions


@pytest.mark.parametrize(
    ("a", "b"),
    [("3.19", "3.19.0"), ("3.19", "v3.19.0"), ("3", "3.0.0"), ("1.0a1", "1.0-alpha.1")],
)
def test_missing_numbers_are_zero(a: str, b: str) -> None:
    assert parse_tag(a) == parse_tag(b)


def test_version_str() -> None:
    assert str(Version(1, 2)) == "1.2.0"
    assert str(Version(1, 2, 3, (4, 1))) == "1.2.3-rc.1"
    assert str(Version(3, 13, 0, (1, 1))) == "3.13.0-alpha.1"


# --- ranges --------------------------------------------------------------------------

RANGES: list[tuple[str, dict[str, bool]]] = [
    (">=1.25 <2", {"1.25": True, "1.25.0": True, "v1.30": True, "1.99.99": True,
                   "1.24.9": False, "2": False, "2.0.0-rc.1": False, "1.26.0-rc.1": False}),
    (">1.2.3", {"1.2.3": False, "1.2.4": True, "1.3": True, "1.2": False}),
    ("<1.2.3", {"1.2.2": True, "1.2.3": False, "1.2.3-rc.1": False, "0.1": True}),
    ("<=1.4", {"1.4": True, "1.4.0": True, "1.4.1": False, "1.3.99": True}),
    (">= 1.2", {"1.2": True, "1.1": False}),
    ("=1.4", {"1.4": True, "1.4.0": True, "v1.4.0": True, "1.4.1": False, "1.3": False}),
    ("1.4", {"1.4": True, "1.4.0": True, "1.4.1": False}),
    ("~1.2", {"1.2": True, "1.2.9": True, "1.1.9": False, "1.3.0": False, "1.3.0-rc.1": False}),
    ("~1.2.3", {"1.2.2": False, "1.2.3": True, "1.2.10": True, "1.3": False}),
    ("~1", {"1": True, "1.9.9": True, "0.9": False, "2.0": False}),
    ("^1.2", {"1.2": True, "1.9": True, "1.1": False, "2": False}),
    ("^1.2.3", {"1.2.2": False, "1.2.3": True, "1.99": True, "2.0.0": False}),
    ("^0.2.3", {"0.2.3": True, "0.2.9": True, "0.2.2": False, "0.3.0": False}),
    ("^0.0.3", {"0.0.3": True, "0.0.4": False}),
    ("^0.0", {"0.0.9": True, "0.1": False}),
    ("^0", {"0.9": True, "1": False}),
    ("1.4 || 1.6", {"1.4": True, "1.5": False, "1.6.0": True}),
    (">=1 <1.2 || >=2", {"1.1": True, "1.5": False, "3": True}),
    ("*", {"0.0.1": True, "99": True, "1.0-rc1": False}),
    ("  >=1   <2  ", {"1.5": True}),
    # npm: a pre-release matches only when the same set names one of that x.y.z.
    (">=1.28.0-rc.0", {"1.28.0-rc.1": True, "1.28.0": True, "1.29.0-rc.1": False, "1.29": True}),
    ("~1.2.3-beta.2", {"1.2.3-beta.4": True, "1.2.3-beta.1": False, "1.2.3": True,
                       "1.2.4-beta": False}),
    ("=1.0.0-rc.1", {"1.0.0-rc1": True, "1.0.0-rc.2": False, "1.0.0": False}),
    (">=1.0.0-rc.1 <2 || >=3", {"1.0.0-rc.2": True, "3.1.0-rc.1": False}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "tag", "expected"), [(r, t, e) for r, table in RANGES for t, e in table.items()]
)
def test_range_matching(text: str, tag: str, expected: bool) -> None:
    assert Range.parse(text).contains(version(tag)) is expected


@pytest.mark.parametrize(
    ("text", "tag", "expected"),
    [
        (">=1.25 <2", "1.30.0-rc.1", True),
        (">=1.25 <2", "2.0.0-rc.1", False),  # `<2` is below the 2 line, pre-releases included
        ("^1.2", "2.0.0-beta", False),
        ("~1.2", "1.2.5-rc.1", True),
        ("*", "0.1-alpha", True),
        (">=1.25", "1.25.0-rc.1", False),  # still below 1.25.0
    ],
)
def test_range_include_prerelease(text: str, tag: str, expected: bool) -> None:
    assert Range.parse(text).contains(version(tag), include_prerelease=True) is expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "the range is empty"),
        ("   ", "the range is empty"),
        ("1.4 ||", "an alternative around '||' is empty"),
        ("|| 1.4", "an alternative around '||' is empty"),
        (">=", "'>=' is not followed by a version"),
        (">=1.25 <", "'<' is not followed by a version"),
        ("~>1.2", "'~' is not followed by a version"),
        ("1.x", "wildcard version '1.x' is not supported; write ~1"),
        ("1.2.*", "wildcard version '1.2.*' is not supported; write ~1.2"),
        ("x", "wildcard version 'x' is not supported; write *"),
        ("1.2 - 1.4", "hyphen ranges are not supported"),
        ("==1.2", "'==' and '!=' are not operators here"),
        ("!=1.2", "'==' and '!=' are not operators here"),
        ("1.2.3.4", "'1.2.3.4' has more than 3 numbers"),
        (">=1.0-alpine", "'-alpine' is neither a number nor a pre-release"),
        ("abc", "'abc' is not a version"),
        (">=1 latest", "'latest' is not a version"),
        (">*", "write '*' alone"),
    ],
)
def test_range_errors(text: str, message: str) -> None:
    with pytest.raises(RangeError, match=re.escape(message)):
        Range.parse(text)
