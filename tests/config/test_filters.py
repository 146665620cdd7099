"""Tag selection (`tags:` in sync.yaml): versions, ranges, latest/always/deny, immutable.

Everything here is pure: no registry, no I/O beyond writing a sync.yaml to load.
"""

from __future__ import annotations

import itertools
import re
import textwrap
from pathlib import Path

import pytest

from syncer.config.filters import NOT_SEMVER, PRERELEASE, select_tags
from syncer.config.semver import Range, RangeError, Version, parse_tag, split_tag
from syncer.config.syncfile import TagFilter, load_config
from syncer.errors import ConfigError
from syncer.sync.outcome import Outcome
from syncer.sync.planner import IMMUTABLE_REASON, make_plan, split_immutable

D1 = "sha256:" + "1" * 64


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


# --- per-tag rules and their reasons -------------------------------------------------


def test_semver_reasons() -> None:
    f = TagFilter(semver=">=1.25 <2")
    assert f.reason("1.27") is None
    assert f.reason("v1.25.0") is None
    assert f.reason("1.24") == "outside tags.semver '>=1.25 <2'"
    assert f.reason("2.0") == "outside tags.semver '>=1.25 <2'"
    assert f.reason("latest") == NOT_SEMVER == "not a semantic version"
    assert f.reason("1.27-alpine") == "not a semantic version"
    assert f.reason("1.28.0-rc.1") == PRERELEASE
    assert "tags.semver_prerelease: true" in PRERELEASE
    # An out-of-range pre-release is reported as out of range: the first rule that fails.
    assert f.reason("2.0.0-rc.1") == "outside tags.semver '>=1.25 <2'"


def test_prerelease_included_by_flag_or_by_naming_one() -> None:
    assert TagFilter(semver=">=1.25 <2", semver_prerelease=True).reason("1.28.0-rc.1") is None
    named = TagFilter(semver=">=1.28.0-rc.0 <2")
    assert named.reason("1.28.0-rc.1") is None
    assert named.reason("1.29.0-rc.1") == PRERELEASE


def test_semver_suffix_reasons() -> None:
    f = TagFilter(semver=">=1", semver_suffix="-alpine")
    assert f.reason("1.27-alpine") is None
    assert f.reason("3.19.1-alpine") is None
    assert f.reason("1.27") == (
        "has no suffix, and tags.semver_suffix '-alpine' does not match an empty one"
    )
    assert f.reason("1.27-slim") == "suffix '-slim' does not match tags.semver_suffix '-alpine'"
    assert f.reason("alpine") == NOT_SEMVER
    assert f.reason("0.9-alpine") == "outside tags.semver '>=1'"
    assert f.reason("1.28.0-rc.1-alpine") == PRERELEASE


def test_rule_order_deny_always_allow_version() -> None:
    f = TagFilter(allow=[r"1\..*"], deny=[r"1\.0", "latest"], always=["latest", "edge", r"1\.0"])
    f2 = TagFilter(
        allow=[r"1\..*"],
        deny=[r"1\.0", "latest"],
        always=["latest", "edge", r"1\.0"],
        semver=">=1.5",
    )
    for flt in (f, f2):
        assert flt.reason("latest") == "matched tags.deny 'latest'"  # deny beats always
        assert flt.reason("1.0") == "matched tags.deny '1\\\\.0'"
        assert flt.reason("edge") is None  # always bypasses allow and the version rules
        assert flt.reason("2.0") == "not matched by tags.allow"  # allow before semver
    assert f.reason("1.1") is None
    assert f2.reason("1.1") == "outside tags.semver '>=1.5'"


def test_plain_filters_ignore_versions() -> None:
    f = TagFilter()
    assert f.reason("1.28.0-rc.1") is None and f.reason("edge") is None
    assert f.list_reasons(["1", "2", "3"]) == {}


# --- latest and always over the whole list -------------------------------------------

ALPINE = [
    "3.18", "3.19", "3.19.0", "v3.19.0", "3.20", "3.20.1", "3.21.0-rc.1",
    "latest", "edge", "3.20-alpine",
]  # fmt: skip


def test_latest_keeps_the_n_highest_versions_plus_always() -> None:
    selected, filtered = TagFilter(latest=2, always=["latest"]).select(ALPINE)
    assert selected == ["3.20", "3.20.1", "latest"]
    why = "not among the 2 highest versions (tags.latest: 2)"
    assert filtered == {
        "3.18": why,
        "3.19": why,
        "3.19.0": why,
        "3.20-alpine": "not a semantic version",
        "3.21.0-rc.1": PRERELEASE,
        "edge": "not a semantic version",
        "v3.19.0": why,
    }
    assert list(filtered) == sorted(filtered)  # deterministic order for the report


def test_latest_ties_keep_every_spelling() -> None:
    selected, _ = TagFilter(latest=3).select(ALPINE)
    assert selected == ["3.19", "3.19.0", "3.20", "3.20.1", "v3.19.0"]
    # N counts distinct versions, not tags: the three spellings of 3.19 take one place.
    selected, _ = TagFilter(latest=4).select(ALPINE)
    assert selected == ["3.18", "3.19", "3.19.0", "3.20", "3.20.1", "v3.19.0"]


def test_latest_one_and_reason_wording() -> None:
    selected, filtered = TagFilter(latest=1).select(["1.0", "2.0", "1.5"])
    assert selected == ["2.0"]
    assert filtered == dict.fromkeys(["1.0", "1.5"], "not the highest version (tags.latest: 1)")


def test_latest_applies_after_the_range_and_includes_prereleases_on_request() -> None:
    selected, filtered = TagFilter(semver="<3.20", latest=1).select(ALPINE)
    assert selected == ["3.19", "3.19.0", "v3.19.0"]
    assert filtered["3.18"] == "not the highest version (tags.latest: 1)"
    assert filtered["3.20.1"] == "outside tags.semver '<3.20'"
    pre, _ = TagFilter(latest=1, semver_prerelease=True).select(ALPINE)
    assert pre == ["3.21.0-rc.1"]


def test_always_takes_no_place_among_latest() -> None:
    selected, _ = TagFilter(latest=1, always=[r"3\.18", "latest"]).select(ALPINE)
    assert selected == ["3.18", "3.20.1", "latest"]


def test_deny_beats_always_and_latest() -> None:
    f = TagFilter(latest=1, always=["latest"], deny=["latest", r"3\.20\.1"])
    selected, filtered = f.select(ALPINE)
    assert selected == ["3.20"]  # 3.20.1 is denied before ranking, so 3.20 is the highest
    assert filtered["latest"] == "matched tags.deny 'latest'"
    assert filtered["3.20.1"] == "matched tags.deny '3\\\\.20\\\\.1'"


def test_latest_with_suffix() -> None:
    tags = ["1.27-alpine", "1.27.3-alpine", "1.26-alpine", "1.27.3", "stable-alpine"]
    f = TagFilter(latest=2, semver_suffix="-alpine", always=["stable-alpine"])
    selected, filtered = f.select(tags)
    assert selected == ["1.27-alpine", "1.27.3-alpine", "stable-alpine"]
    assert filtered["1.26-alpine"] == "not among the 2 highest versions (tags.latest: 2)"


def test_selection_depends_only_on_the_set_of_tags() -> None:
    f = TagFilter(latest=2, always=["latest"], semver=">=3.19")
    expected = f.select(ALPINE)
    assert f.select(list(reversed(ALPINE)) + ALPINE) == expected
    assert select_tags(iter(ALPINE), f) == expected  # the runner's call
    assert f.select([]) == ([], {})


# --- immutable tags ------------------------------------------------------------------

SEMVER_FULL = re.compile(r"\d+\.\d+\.\d+")


def test_split_immutable() -> None:
    selected = ["1.0.0", "1.0.1", "1.0", "latest"]
    to_check, skipped = split_immutable(selected, {"1.0.0", "1.0", "latest"}, [SEMVER_FULL])
    assert (to_check, skipped) == (["1.0.1", "1.0", "latest"], ["1.0.0"])


@pytest.mark.parametrize(
    ("dest_tags", "patterns"),
    [
        (None, [SEMVER_FULL]),  # no destination listing: nothing is known present
        (set(), [SEMVER_FULL]),  # nothing present yet: first copy still happens
        ({"1.0.0"}, []),  # no immutable patterns
        ({"1.0.0"}, [re.compile("1")]),  # patterns match the whole tag
    ],
)
def test_split_immutable_skips_nothing(
    dest_tags: set[str] | None, patterns: list[re.Pattern[str]]
) -> None:
    assert split_immutable(["1.0.0"], dest_tags, patterns) == (["1.0.0"], [])


def test_tag_filter_immutable_patterns() -> None:
    f = TagFilter(immutable=[r"\d+\.\d+\.\d+", r"sha-[0-9a-f]+"])
    assert f.is_immutable("1.2.3") and f.is_immutable("sha-abc")
    assert not f.is_immutable("1.2") and not f.is_immutable("latest")
    assert split_immutable(["1.2.3", "1.2"], {"1.2.3", "1.2"}, f.immutable_patterns) == (
        ["1.2"],
        ["1.2.3"],
    )
    assert TagFilter().immutable_patterns == ()


def test_plan_with_immutable_tags() -> None:
    plan = make_plan({"1.1": D1}, {}, filtered={"x": "denied"}, immutable=["1.0.0"])
    assert [(i.tag, i.action) for i in plan.items] == [
        ("1.0.0", Outcome.UP_TO_DATE),
        ("1.1", Outcome.COPY),
        ("x", Outcome.FILTERED),
    ]
    (frozen,) = plan.immutable
    assert frozen == plan.up_to_date[0]
    assert frozen.reason == IMMUTABLE_REASON == "immutable tag present at destination"
    assert frozen.source_digest is None and frozen.dest_digest is None
    with pytest.raises(ValueError, match="both checked and immutable"):
        make_plan({"1.0.0": D1}, {}, immutable=["1.0.0"])


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


# The README example: every key, in an entry and in defaults.
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
