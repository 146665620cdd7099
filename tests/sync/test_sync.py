"""The sync engine end to end against real registries: full, no-op, incremental, kill-safety."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
from pathlib import Path

import httpx

from syncer.config.syncfile import load_config
from syncer.sync.report import RunReport
from syncer.sync.runner import Runner, RunOptions
from tests.support.fleet import Fleet, assert_no_broken_tags, make_fleet, tag_item
from tests.support.http import http_client
from tests.support.images import (
    Image,
    Index,
    fetch_manifest_digest,
    push,
    push_blob,
    push_manifest,
)
from tests.support.registry import LoggedRequest, RunningRegistry
from tests.support.syncer_setup import write_sync_yaml

WRITES = {"PUT", "POST", "PATCH", "DELETE"}


def entries_for(fleet: Fleet, src: RunningRegistry, dst: RunningRegistry) -> list[dict[str, str]]:
    return [
        {"source": f"{src.host}/{repo}", "destination": f"{dst.host}/mirror/{repo}"}
        for repo in fleet.repos
    ]


async def run_sync(config: Path, **opts: object) -> RunReport:
    return await Runner(load_config(config), RunOptions(**opts)).run()  # type: ignore[arg-type]


def assert_mirrored(fleet: Fleet, dst: RunningRegistry, prefix: str = "mirror/") -> None:
    """Every tag resolves to the source digest and every blob it references exists."""
    with http_client() as c:
        for repo, tag, item in fleet.items():
            assert fetch_manifest_digest(dst.url, prefix + repo, tag) == item.digest, (repo, tag)
            for blob in item.blobs():
                r = c.head(f"{dst.url}/v2/{prefix}{repo}/blobs/{blob.digest}")
                assert r.status_code == 200, (repo, tag, blob.digest)
            if isinstance(item, Index):
                for child in item.children:
                    assert fetch_manifest_digest(dst.url, prefix + repo, child.digest)


def methods(reqs: list[LoggedRequest]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in reqs:
        kind = (
            "manifest"
            if "/manifests/" in r.path
            else "tags"
            if "/tags/" in r.path
            else ("blob" if "/blobs/" in r.path else r.path)
        )
        key = f"{r.method} {kind}"
        out[key] = out.get(key, 0) + 1
    return out


async def test_full_noop_incremental(registry_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(4, 6)  # 24 tags, 8 of them multi-arch indexes
    fleet.push(src.seed_url)
    config = write_sync_yaml(tmp_path / "sync.yaml", entries_for(fleet, src, dst), src, dst)

    report = await run_sync(config)
    t = report.totals
    assert report.status == "ok", report.to_json()
    assert (t.tags_checked, t.tags_copied, t.tags_failed) == (24, 24, 0), report.to_json()
    assert t.bytes_copied == fleet.blob_bytes()
    # Base layers are shared by all repos: each distinct blob crosses the wire once.
    distinct = {b.digest for _, _, i in fleet.items() for b in i.blobs()}
    assert t.blobs_copied == len(distinct)
    assert t.blobs_mounted > 0
    src_blob_gets = [r for r in src.requests() if r.method == "GET" and "/blobs/" in r.path]
    assert len(src_blob_gets) == len(distinct)
    # The mirror's repositories listed no tags: each upload's POST asked whether the blob
    # was there (a same-repository mount, answered 202), so no blob HEAD went before it.
    first = dst.requests()
    assert not [r for r in first if r.method == "HEAD" and "/blobs/" in r.path]
    asked = [r for r in first if r.method == "POST" and r.status == 202 and "mount=" in r.path]
    assert len(asked) == t.blobs_copied
    assert_mirrored(fleet, dst)

    # No-op: listings and HEADs only, no writes, no manifest GETs.
    s0, d0 = src.mark(), dst.mark()
    report = await run_sync(config)
    t = report.totals
    assert (t.tags_up_to_date, t.tags_copied, t.bytes_copied) == (24, 0, 0)
    src_reqs, dst_reqs = src.requests_since(s0), dst.requests_since(d0)
    assert methods(src_reqs) == {"GET tags": 4, "HEAD manifest": 24}
    assert methods(dst_reqs) == {"GET tags": 4, "HEAD manifest": 24}
    assert not any(r.method in WRITES for r in dst_reqs)

    # Incremental: two tags rebuilt at the source; only their new blobs travel.
    changed = {
        ("fleet/app1", "1.0"): tag_item(1, 0, gen=1),
        ("fleet/app2", "1.2"): tag_item(2, 2, gen=1),
    }
    known = {b.digest for _, _, i in fleet.items() for b in i.blobs()}
    new_bytes: dict[str, int] = {}
    for (repo, tag), item in changed.items():
        push(src.seed_url, repo, item, tag)
        fleet.repos[repo][tag] = item
        new_bytes.update({b.digest: b.size for b in item.blobs() if b.digest not in known})
    d1 = dst.mark()
    report = await run_sync(config)
    t = report.totals
    assert (t.tags_copied, t.tags_up_to_date) == (2, 22)
    assert t.bytes_copied == sum(new_bytes.values())
    assert t.blobs_copied == len(new_bytes)
    # Repositories with tags: a HEAD asks, and finds the base layers the new tags share.
    heads = [r for r in dst.requests_since(d1) if r.method == "HEAD" and "/blobs/" in r.path]
    assert t.blobs_existing > 0
    assert len(heads) == t.blobs_copied + t.blobs_existing
    assert_mirrored(fleet, dst)


async def test_a_run_that_died_before_its_first_tag_is_finished_without_resending_blobs(
    registry_factory, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(1, 3)  # an image and a 2-platform index among them
    fleet.push(src.seed_url)
    config = write_sync_yaml(tmp_path / "sync.yaml", entries_for(fleet, src, dst), src, dst)
    blobs = {b.digest: b for _, _, item in fleet.items() for b in item.blobs()}
    repo = next(iter(fleet.repos))
    with http_client() as c:  # what the dead run left: every blob in the mirror, no tag
        for blob in blobs.values():
            start = c.post(f"{dst.seed_url}/v2/mirror/{repo}/blobs/uploads/")
            loc = httpx.URL(dst.seed_url).join(start.headers["Location"])
            put = c.put(loc.copy_add_param("digest", blob.digest), content=blob.data)
            assert put.status_code == 201, put.text
    d0 = dst.mark()
    report = await run_sync(config)
    t = report.totals
    assert report.status == "ok", report.to_json()
    assert (t.tags_copied, t.blobs_copied, t.bytes_copied) == (3, 0, 0)
    assert t.blobs_existing == len(blobs)
    reqs = dst.requests_since(d0)
    # The mirror listed no tags: each blob was asked about by one POST (201), nothing else.
    assert not [r for r in reqs if r.method in ("HEAD", "PUT", "PATCH") and "/blobs/" in r.path]
    found = [r for r in reqs if r.method == "POST" and r.status == 201 and "mount=" in r.path]
    assert len(found) == len(blobs)
    assert not [r for r in src.requests() if r.method == "GET" and "/blobs/" in r.path]
    assert_mirrored(fleet, dst)


async def test_two_destinations_share_one_transfer(registry_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(1, 2)
    fleet.push(src.seed_url)
    repo = next(iter(fleet.repos))
    entries = [
        {"source": f"{src.host}/{repo}", "destination": f"{dst.host}/one/{repo}"},
        {"source": f"{src.host}/{repo}", "destination": f"{dst.host}/two/{repo}"},
    ]
    report = await run_sync(write_sync_yaml(tmp_path / "s.yaml", entries, src, dst))
    distinct = {b.digest for _, _, i in fleet.items() for b in i.blobs()}
    t = report.totals
    assert t.blobs_copied == len(distinct)
    assert t.blobs_mounted == len(distinct)
    assert t.bytes_copied == fleet.blob_bytes()
    gets = [r for r in src.requests() if r.method == "GET" and "/blobs/" in r.path]
    assert len(gets) == len(distinct)
    assert_mirrored(fleet, dst, "one/")
    assert_mirrored(fleet, dst, "two/")


async def test_cancelled_run_leaves_no_broken_tag(registry_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(3, 4, app_size=3 * 1024 * 1024)
    fleet.push(src.seed_url)
    config = write_sync_yaml(tmp_path / "s.yaml", entries_for(fleet, src, dst), src, dst)
    runner = Runner(load_config(config), RunOptions(concurrency=4))
    task = asyncio.create_task(runner.run())
    # Cancel once some (not all) content has landed.
    for _ in range(500):
        await asyncio.sleep(0.01)
        if any(r.method == "PUT" and "/blobs/" in r.path for r in dst.requests()):
            break
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    # Whatever tags exist now must be complete.
    assert assert_no_broken_tags(fleet, dst.url, "mirror/") < fleet.tag_count
    report = await run_sync(config)
    assert report.status == "ok"
    assert report.totals.tags_copied + report.totals.tags_up_to_date == fleet.tag_count
    assert report.totals.tags_copied > 0  # the cancel really interrupted something
    assert_mirrored(fleet, dst)


async def test_dry_run_writes_nothing(registry_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = registry_factory("anon"), registry_factory("anon")
    fleet = make_fleet(2, 2)
    fleet.push(src.seed_url)
    config = write_sync_yaml(tmp_path / "s.yaml", entries_for(fleet, src, dst), src, dst)
    report = await run_sync(config, dry_run=True)
    planned = [t for e in report.entries for t in e.tags if t.action == "planned"]
    assert len(planned) == 4
    assert not any(r.method in WRITES for r in dst.requests())
    assert not any(r.method == "GET" and "/manifests/" in r.path for r in src.requests())


async def test_failure_is_isolated_per_entry_and_tag(registry_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    src, dst = registry_factory("anon"), registry_factory("anon")
    good: Image | Index = tag_item(0, 0)
    push(src.seed_url, "ok/app", good, "v1")
    entries = [
        {"source": f"{src.host}/ok/app", "destination": f"{dst.host}/m/ok"},
        {"source": f"{src.host}/missing/app", "destination": f"{dst.host}/m/missing"},
        {"source": f"{src.host}/ok/app:nope", "destination": f"{dst.host}/m/nope"},
    ]
    report = await run_sync(write_sync_yaml(tmp_path / "s.yaml", entries, src, dst))
    assert report.status == "partial"
    ok, missing, nope = report.entries
    assert ok.counters.tags_copied == 1 and not ok.errors
    assert missing.errors and "NAME_UNKNOWN" in missing.errors[0]["error"]
    assert nope.counters.tags_failed == 1 and "not found" in nope.errors[0]["error"]
    assert fetch_manifest_digest(dst.url, "m/ok", "v1") == good.digest


async def test_foreign_layers_are_skipped_and_reported(registry_factory, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    allow_urls = {"validation": {"manifests": {"urls": {"allow": ["^https?://"]}}}}
    src = registry_factory("anon", extra_config=allow_urls)
    dst = registry_factory("anon", extra_config=allow_urls)
    img = tag_item(0, 0)
    assert isinstance(img, Image)
    manifest = json.loads(img.manifest)
    foreign = "sha256:" + "ab" * 32
    manifest["layers"].append(
        {
            "mediaType": "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
            "size": 1234,
            "digest": foreign,
            "urls": ["https://example.invalid/layer.tar.gz"],
        }
    )
    raw = json.dumps(manifest).encode()
    with http_client() as c:
        for blob in img.blobs():
            push_blob(c, src.seed_url, "win/app", blob)
        push_manifest(c, src.seed_url, "win/app", raw, img.media_type, "v1")
    entries = [{"source": f"{src.host}/win/app", "destination": f"{dst.host}/m/win"}]
    report = await run_sync(write_sync_yaml(tmp_path / "s.yaml", entries, src, dst))
    assert report.status == "ok", report.to_json()
    assert report.entries[0].skipped_foreign_layers == [foreign]
    assert (
        fetch_manifest_digest(dst.url, "m/win", "v1") == "sha256:" + hashlib.sha256(raw).hexdigest()
    )
    assert not any(foreign in r.path for r in src.requests())
