"""The planner is pure: every decision is checked here without a registry."""

from __future__ import annotations

import re
from collections.abc import Sequence

import pytest

from syncer.config.filters import select_tags
from syncer.sync.outcome import Outcome
from syncer.sync.planner import make_plan, needs_dest_head

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64


class Regex:
    def __init__(self, allow: str, deny: str | None = None) -> None:
        self.allow = re.compile(allow)
        self.deny = re.compile(deny) if deny else None

    def reason(self, tag: str) -> str | None:
        if self.deny and self.deny.fullmatch(tag):
            return "denied"
        return None if self.allow.fullmatch(tag) else "not allowed"


def test_select_sorts_dedupes_and_explains() -> None:
    selected, filtered = select_tags(["b", "a", "a", "x-rc1", "zz"], Regex("[a-z]", ".*-rc.*"))
    assert selected == ["a", "b"]
    assert filtered == {"x-rc1": "denied", "zz": "not allowed"}


def test_select_nothing() -> None:
    assert select_tags([], Regex(".*")) == ([], {})


@pytest.mark.parametrize(
    ("src", "dst", "action"),
    [
        (D1, D1, Outcome.UP_TO_DATE),
        (D1, None, Outcome.COPY),
        (D1, D2, Outcome.COPY),
        (None, D2, Outcome.MISSING),
        (None, None, Outcome.MISSING),
    ],
)
def test_single_tag_decisions(src: str | None, dst: str | None, action: Outcome) -> None:
    plan = make_plan({"t": src}, {"t": dst})
    assert [i.action for i in plan.items] == [action]
    item = plan.items[0]
    assert (item.source_digest, item.dest_digest) == (src, dst)


def test_reasons_name_the_difference() -> None:
    plan = make_plan({"new": D1, "moved": D1}, {"moved": D2})
    reasons = {i.tag: i.reason for i in plan.items}
    assert reasons == {"new": "absent at the destination", "moved": f"destination has {D2}"}


def test_rename_compares_the_destination_tag() -> None:
    plan = make_plan({"1.0": D1}, {"1.0-mirror": D1, "1.0": D2}, dest_tag={"1.0": "1.0-mirror"})
    assert plan.items[0].action is Outcome.UP_TO_DATE
    assert plan.items[0].dest_tag == "1.0-mirror"


def test_mixed_plan_partitions_every_tag_once() -> None:
    plan = make_plan(
        {"a": D1, "b": D1, "c": D2, "d": None},
        {"a": D1, "b": D2},
        filtered={"e": "not allowed", "f": "denied"},
    )
    assert [i.tag for i in plan.up_to_date] == ["a"]
    assert [i.tag for i in plan.to_copy] == ["b", "c"]
    assert [i.tag for i in plan.filtered] == ["e", "f"]
    assert [i.tag for i in plan.by_action(Outcome.MISSING)] == ["d"]
    assert sorted(i.tag for i in plan.items) == list("abcdef")


def test_destination_head_only_when_listed() -> None:
    assert needs_dest_head("a", {"a"})
    assert not needs_dest_head("a", {"b"})
    assert needs_dest_head("a", None)  # no listing: must ask


class KeepHighest:
    """A selector with a list-level rule, like `tags.latest`."""

    def reason(self, tag: str) -> str | None:
        return None if tag.isdigit() else "not a number"

    def list_reasons(self, selected: Sequence[str]) -> dict[str, str]:
        top = max(selected, key=int)
        return {t: "not the highest" for t in selected if t != top}


def test_select_applies_list_rules_after_per_tag_rules() -> None:
    selected, filtered = select_tags(["3", "10", "x", "2", "10"], KeepHighest())
    assert selected == ["10"]
    assert filtered == {"2": "not the highest", "3": "not the highest", "x": "not a number"}
    assert list(filtered) == sorted(filtered)
