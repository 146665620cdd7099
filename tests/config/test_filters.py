"""Tag selection (`tags:` in sync.yaml): per-tag reasons, latest/always/deny, immutable.

Everything here is pure: no registry, no I/O.
"""

from __future__ import annotations

import re

import pytest

from syncer.config.filters import NOT_SEMVER, PRERELEASE, select_tags
from syncer.config.syncfile import TagFilter
from syncer.sync.outcome import Outcome
from syncer.sync.planner import IMMUTABLE_REASON, make_plan, split_immutable

D1 = "sha256:" + "1" * 64


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
