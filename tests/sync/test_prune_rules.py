"""prune() alone, over an in-memory registry: its safety rules and what each one costs.

The end-to-end behaviour against real registries is in test_prune.py; here each rule is
held on its own, with the exact requests it may make.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from syncer.config.filters import TagFilter
from syncer.config.syncfile import ResolvedEntry
from syncer.registry.oci import OCI_INDEX, OCI_MANIFEST
from syncer.registry.reference import Reference
from syncer.sync.outcome import Outcome
from syncer.sync.planner import Plan, TagPlan
from syncer.sync.prune import PruneJob, prune
from syncer.sync.report import EntryReport
from tests.support.memory_registry import MemoryRegistry

DST, REPO = "dst.test", "m/app"
M = f"/v2/{REPO}/manifests"


async def slot(work: Callable[[], Awaitable[Any]]) -> Any:
    return await work()


def image(reg: MemoryRegistry, name: str, *tags: str) -> str:
    """An image manifest at the destination (prune never looks at blobs)."""
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "size": 2,
                "digest": "sha256:" + name.encode().hex().ljust(64, "0")[:64],
            },
            "layers": [],
        }
    ).encode()
    return reg.put_manifest(DST, REPO, data, OCI_MANIFEST, *tags)


def index(reg: MemoryRegistry, children: list[str], *tags: str) -> str:
    data = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [{"mediaType": OCI_MANIFEST, "size": 1, "digest": d} for d in children],
        }
    ).encode()
    return reg.put_manifest(DST, REPO, data, OCI_INDEX, *tags)


def entry(*, protect: tuple[str, ...] = ("sha256-.*",), limit: int = 50) -> ResolvedEntry:
    return ResolvedEntry(
        index=0,
        source=Reference.parse("src.test/app"),
        destination=Reference.parse(f"{DST}/{REPO}"),
        tags=TagFilter(),
        platforms="all",
        prune=True,
        prune_protect=protect,
        prune_max=limit,
    )


def up_to_date(*tags: str, digest: str | None = None) -> Plan:
    return Plan(tuple(TagPlan(t, t, Outcome.UP_TO_DATE, source_digest=digest) for t in tags))


async def run(
    reg: MemoryRegistry,
    kept: set[str],
    plan: Plan | None = None,
    *,
    dry_run: bool = False,
    **opts: Any,
) -> EntryReport:
    report = EntryReport("src.test/app", f"{DST}/{REPO}")
    listed = set(reg.tags(DST, REPO))
    async with reg.client() as client:
        await prune(
            PruneJob(
                client,
                slot,
                entry(**opts),
                plan if plan is not None else up_to_date(*kept),
                listed,
                kept,
                report,
                dry_run=dry_run,
            )
        )
    return report


def acts(report: EntryReport) -> dict[str, str]:
    return {t.tag: t.action for t in report.tags}


async def test_an_empty_source_listing_prunes_nothing_and_asks_nothing() -> None:
    reg = MemoryRegistry()
    image(reg, "a", "1.0", "2.0")
    report = await run(reg, set(), Plan())
    assert reg.log == []
    assert report.errors == [
        {"tag": "", "error": "prune refused: the source listed no tags at all"}
    ]
    assert set(reg.tags(DST, REPO)) == {"1.0", "2.0"}


async def test_a_listing_whose_tags_are_all_filtered_is_not_empty() -> None:
    reg = MemoryRegistry()
    old = image(reg, "old", "old")
    plan = Plan((TagPlan("rc1", "rc1", Outcome.FILTERED, reason="deny"),))
    report = await run(reg, set(), plan)
    assert reg.requests() == [f"HEAD {M}/old", f"DELETE {M}/{old}"]
    assert acts(report) == {"old": "pruned"}
    assert report.counters.tags_pruned == 1


async def test_nothing_to_delete_costs_no_request() -> None:
    reg = MemoryRegistry()
    image(reg, "a", "1.0")
    image(reg, "p", "keep-1")
    report = await run(reg, {"1.0"}, protect=("keep-.*",))
    assert reg.log == [] and report.tags == [] and report.errors == []


async def test_prune_max_caps_the_deletions_and_reports_the_rest() -> None:
    reg = MemoryRegistry()
    image(reg, "k", "1.0")
    stale = {t: image(reg, t, t) for t in ("s1", "s2", "s3", "s4")}
    report = await run(reg, {"1.0"}, limit=2)
    # Every candidate is resolved first: a tag over the cap may share a manifest with one
    # under it, and that DELETE would take it along.
    assert reg.requests() == [
        f"HEAD {M}/1.0",
        *(f"HEAD {M}/{t}" for t in ("s1", "s2", "s3", "s4")),
        f"DELETE {M}/{stale['s1']}",
        f"DELETE {M}/{stale['s2']}",
    ]
    assert acts(report) == {
        "s1": "pruned",
        "s2": "pruned",
        "s3": "prune_skipped",
        "s4": "prune_skipped",
    }
    reasons = {t.tag: t.reason for t in report.tags if t.action == "prune_skipped"}
    assert reasons == {"s3": "prune_max 2 reached", "s4": "prune_max 2 reached"}
    assert report.counters.tags_pruned == 2
    assert set(reg.tags(DST, REPO)) == {"1.0", "s3", "s4"}


async def test_protected_tags_are_never_touched() -> None:
    reg = MemoryRegistry()
    image(reg, "k", "1.0")
    image(reg, "p", "keep-1")
    sig = image(reg, "sig", "sha256-" + "a" * 64 + ".sig")  # default protection
    old = image(reg, "old", "old")
    report = await run(reg, {"1.0"}, protect=("sha256-.*", "keep-.*"))
    sig_tag = "sha256-" + "a" * 64 + ".sig"
    # Protected tags are resolved (a HEAD each) so that their manifests are kept, never deleted.
    assert sorted(reg.requests()) == sorted(
        [
            f"HEAD {M}/1.0",
            f"HEAD {M}/keep-1",
            f"HEAD {M}/{sig_tag}",
            f"HEAD {M}/old",
            f"DELETE {M}/{old}",
        ]
    )
    assert reg.requests()[-1] == f"DELETE {M}/{old}"
    assert acts(report) == {"old": "pruned"}
    assert reg.tags(DST, REPO)["sha256-" + "a" * 64 + ".sig"] == sig
    assert "keep-1" in reg.tags(DST, REPO)


async def test_what_a_kept_tag_reaches_survives() -> None:
    reg = MemoryRegistry()
    amd, arm = image(reg, "amd64", "1.0-amd64"), image(reg, "arm64")
    top = index(reg, [amd, arm], "1.0")
    image(reg, "other", "latest", "alias")  # a stale tag on a kept tag's manifest
    old = image(reg, "old", "old")
    report = await run(reg, {"1.0", "latest"})

    # One HEAD per kept tag, one GET for the one index (not for images), one HEAD per candidate.
    assert sorted(reg.requests()) == sorted(
        [
            f"HEAD {M}/1.0",
            f"HEAD {M}/latest",
            f"GET {M}/{top}",
            f"HEAD {M}/1.0-amd64",
            f"HEAD {M}/alias",
            f"HEAD {M}/old",
            f"DELETE {M}/{old}",
        ]
    )
    assert acts(report) == {"1.0-amd64": "prune_skipped", "alias": "prune_skipped", "old": "pruned"}
    assert set(reg.tags(DST, REPO)) == {"1.0", "1.0-amd64", "latest", "alias"}


async def test_a_referrer_tag_of_a_kept_digest_is_kept_whatever_prune_protect_says() -> None:
    reg = MemoryRegistry()
    kept = image(reg, "k", "1.0")
    sig_tag = "sha256-" + kept.removeprefix("sha256:") + ".sig"
    sig = image(reg, "sig", sig_tag, "sig-alias")  # a stale tag on the signature
    orphan = image(reg, "orphan", "sha256-" + "b" * 64 + ".sig")  # signs nothing kept
    report = await run(reg, {"1.0"}, protect=())
    assert acts(report) == {"sig-alias": "prune_skipped", f"sha256-{'b' * 64}.sig": "pruned"}
    assert [r for r in reg.requests() if r.startswith("DELETE")] == [f"DELETE {M}/{orphan}"]
    assert reg.tags(DST, REPO)[sig_tag] == sig


async def test_tags_this_run_copies_and_source_digests_count_as_kept() -> None:
    reg = MemoryRegistry()
    moved = image(reg, "moved")  # the manifest `2.0` points at once copied
    image(reg, "two", "2.0-old-alias")
    image(reg, "twin", "2.0-twin")
    twin = reg.tags(DST, REPO)["2.0-twin"]
    reg.repo(DST, REPO).tags["2.0"] = moved  # copied this run: in no listing yet
    plan = Plan(
        (
            TagPlan("2.0", "2.0", Outcome.COPY, source_digest=moved),
            TagPlan("3.0", "3.0", Outcome.UP_TO_DATE, source_digest=twin),
        )
    )
    report = EntryReport("src.test/app", f"{DST}/{REPO}")
    listed = {"2.0-old-alias", "2.0-twin"}  # listed before the copy
    async with reg.client() as client:
        await prune(PruneJob(client, slot, entry(), plan, listed, {"2.0", "3.0"}, report, False))
    assert acts(report) == {"2.0-old-alias": "pruned", "2.0-twin": "prune_skipped"}
    assert f"HEAD {M}/2.0" in reg.requests()


async def test_a_dry_run_decides_the_same_and_deletes_nothing() -> None:
    def seed(reg: MemoryRegistry) -> None:
        amd = image(reg, "amd64", "x-amd64")
        index(reg, [amd], "1.0")
        for t in ("s1", "s2", "s3"):
            image(reg, t, t)

    dry_reg, real_reg = MemoryRegistry(), MemoryRegistry()
    seed(dry_reg)
    seed(real_reg)
    dry = await run(dry_reg, {"1.0"}, dry_run=True, limit=2)
    real = await run(real_reg, {"1.0"}, limit=2)
    assert not [r for r in dry_reg.requests() if r.startswith("DELETE")]
    assert set(dry_reg.tags(DST, REPO)) == {"1.0", "x-amd64", "s1", "s2", "s3"}
    assert acts(dry) == {
        "s1": "would_prune",
        "s2": "would_prune",
        "s3": "prune_skipped",
        "x-amd64": "prune_skipped",
    }
    renamed = {t: "would_prune" if a == "pruned" else a for t, a in acts(real).items()}
    assert renamed == acts(dry)
    assert [(t.tag, t.reason) for t in real.tags if t.action == "prune_skipped"] == [
        (t.tag, t.reason) for t in dry.tags if t.action == "prune_skipped"
    ]
    assert set(real_reg.tags(DST, REPO)) == {"1.0", "x-amd64", "s3"}


async def test_a_refused_delete_is_a_failed_tag() -> None:
    reg = MemoryRegistry()
    image(reg, "k", "1.0")
    old = image(reg, "old", "old")
    reg.fail("DELETE", DST, f"{M}/{old}", 405)
    report = await run(reg, {"1.0"})
    assert acts(report) == {"old": "failed"}
    assert report.counters.tags_failed == 1 and report.counters.tags_pruned == 0
    assert report.errors[0]["tag"] == "old"
    assert "prune failed" in report.errors[0]["error"]
    assert "old" in reg.tags(DST, REPO)


async def test_an_unreadable_kept_index_prunes_nothing() -> None:
    reg = MemoryRegistry()
    broken = reg.put_manifest(DST, REPO, b"{not json", OCI_INDEX, "1.0")
    image(reg, "old", "old")
    report = await run(reg, {"1.0"})
    assert reg.requests() == [f"HEAD {M}/1.0", f"GET {M}/{broken}"]
    assert report.tags == []
    assert report.errors[0]["error"].startswith("prune skipped: cannot tell what kept tags use")
    assert "old" in reg.tags(DST, REPO)


# A manifest DELETE removes every tag on that manifest (distribution deletes by digest).


async def test_a_protected_tag_survives_a_stale_tag_on_the_same_manifest() -> None:
    reg = MemoryRegistry()
    image(reg, "k", "1.0")
    image(reg, "shared", "keep-prod", "old")
    await run(reg, {"1.0"}, protect=("keep-.*",))
    assert "keep-prod" in reg.tags(DST, REPO)


async def test_a_tag_over_prune_max_survives_when_it_shares_a_manifest() -> None:
    reg = MemoryRegistry()
    image(reg, "k", "1.0")
    image(reg, "shared", "old-a", "old-b")
    report = await run(reg, {"1.0"}, limit=1)
    assert acts(report)["old-b"] == "prune_skipped"
    assert "old-b" in reg.tags(DST, REPO)


async def test_every_tag_a_deletion_removes_is_reported() -> None:
    reg, dry_reg = MemoryRegistry(), MemoryRegistry()
    for r in (reg, dry_reg):
        image(r, "k", "1.0")
        image(r, "shared", "old-a", "old-b")
    dry = await run(dry_reg, {"1.0"}, dry_run=True)
    real = await run(reg, {"1.0"})
    assert acts(dry) == {"old-a": "would_prune", "old-b": "would_prune"}
    assert set(reg.tags(DST, REPO)) == {"1.0"}
    assert acts(real) == {"old-a": "pruned", "old-b": "pruned"}


async def test_prune_max_counts_deletions_not_tags_kept_for_reachability() -> None:
    reg = MemoryRegistry()
    amd = image(reg, "amd64", "1.0-amd64")
    index(reg, [amd], "1.0")
    old = image(reg, "old", "old")
    report = await run(reg, {"1.0"}, limit=1)
    assert acts(report) == {"1.0-amd64": "prune_skipped", "old": "pruned"}
    assert [r for r in reg.requests() if r.startswith("DELETE")] == [f"DELETE {M}/{old}"]


async def test_an_invalid_listed_destination_tag_is_skipped_alone() -> None:
    reg = MemoryRegistry()
    image(reg, "k", "1.0")
    old = image(reg, "old", "old")
    long = "x" * 200  # ECR allows 300 characters; the tag grammar 128
    reg.repo(DST, REPO).tags[long] = image(reg, "odd")
    report = await run(reg, {"1.0"})
    assert acts(report) == {long: "prune_skipped", "old": "pruned"}
    assert next(t.reason for t in report.tags if t.tag == long).startswith("invalid tag:")
    assert [r for r in reg.requests() if r.startswith("DELETE")] == [f"DELETE {M}/{old}"]
