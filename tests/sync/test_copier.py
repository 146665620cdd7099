"""The copier alone, over an in-memory registry: what it sends, in which order, how often.

Order is its safety property (blobs, then child manifests, then the tag), and the
ledger's claims make each blob cross the wire once per run per destination registry.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections import Counter
from collections.abc import Callable

import pytest

from syncer.errors import DigestMismatch, NotFound
from syncer.registry.client import FetchedManifest
from syncer.registry.oci import OCI_CONFIG, OCI_INDEX, OCI_LAYER, OCI_MANIFEST
from syncer.registry.reference import Reference
from syncer.sync.copier import BlobLedger, Copier, CopyJob
from syncer.sync.report import Counters, EntryReport
from tests.support.memory_registry import MemoryRegistry, until

SRC, DST = "src.test", "dst.test"


def _json(obj: object) -> bytes:
    return json.dumps(obj, sort_keys=True).encode()


def _desc(media_type: str, data: bytes, digest: str) -> dict[str, object]:
    return {"mediaType": media_type, "size": len(data), "digest": digest}


class Img:
    """An image manifest at the source: its config and layers are seeded as blobs."""

    def __init__(self, reg: MemoryRegistry, repo: str, config: bytes, *layers: bytes) -> None:
        self.blobs = [config, *layers]
        self.digests = [reg.put_blob(SRC, repo, b) for b in self.blobs]
        self.data = _json(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": _desc(OCI_CONFIG, config, self.digests[0]),
                "layers": [
                    _desc(OCI_LAYER, b, d) for b, d in zip(layers, self.digests[1:], strict=True)
                ],
            }
        )
        self.digest = reg.put_manifest(SRC, repo, self.data, OCI_MANIFEST)
        self.fetched = FetchedManifest(self.data, OCI_MANIFEST, self.digest)


def make_index(reg: MemoryRegistry, repo: str, *children: Img) -> FetchedManifest:
    data = _json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_INDEX,
            "manifests": [
                {"mediaType": OCI_MANIFEST, "size": len(c.data), "digest": c.digest}
                for c in children
            ],
        }
    )
    return FetchedManifest(data, OCI_INDEX, reg.put_manifest(SRC, repo, data, OCI_INDEX))


def norm(requests: list[str]) -> list[str]:
    """Upload session ids depend on arrival order; the digest in the query does not."""
    return [re.sub(r"uploads/\d+", "uploads/<id>", r) for r in requests]


def transfer(repo: str, digest: str) -> list[str]:
    """The destination requests of one blob crossing the wire into `repo`."""
    return [
        f"HEAD /v2/{repo}/blobs/{digest}",
        f"POST /v2/{repo}/blobs/uploads/",
        f"PUT /v2/{repo}/blobs/uploads/<id>?digest={digest}",
    ]


def q(digest: str) -> str:
    """A digest as a mount query carries it."""
    return digest.replace(":", "%3A")


def landed(log: list[str], repo: str, digest: str) -> int:
    """Position of the upload PUT that stored `digest` in `repo`."""
    put = f"PUT /v2/{repo}/blobs/uploads/<id>?digest={digest}"
    return log.index(put)


async def copy(copier: Copier, src: str, dst: str, top: FetchedManifest, tag: str) -> Counters:
    report = EntryReport(src, dst)
    await copier.copy(
        CopyJob(
            Reference.parse(f"{SRC}/{src}:{tag}"),
            Reference.parse(f"{DST}/{dst}:{tag}"),
            top,
            tag,
            report,
        )
    )
    return report.counters


async def copy_while_held(
    reg: MemoryRegistry,
    path: str,
    jobs: list[tuple[str, FetchedManifest, str]],
    ready: Callable[[], bool],
    *,
    fail: bool = False,
) -> list[Counters | BaseException]:
    """Run `jobs` (destination repo, manifest, tag) at once, holding the source GET of
    `path` until `ready()`; with `fail`, that held GET then answers 404 (the next works)."""
    release = reg.hold("GET", SRC, path)
    if fail:
        reg.fail("GET", SRC, path, 404)
    async with reg.client() as client:
        copier = Copier(client, BlobLedger())
        task = asyncio.ensure_future(
            asyncio.gather(
                *(copy(copier, "app", dst, top, tag) for dst, top, tag in jobs),
                return_exceptions=True,
            )
        )
        await until(lambda: bool(reg.held) and ready())
        release.set()
        return await task


# -- order -----------------------------------------------------------------------------


async def test_image_blobs_first_then_the_tag_last() -> None:
    reg = MemoryRegistry()
    img = Img(reg, "app", b"config-1", b"layer-a", b"layer-bb")
    async with reg.client() as client:
        c = await copy(Copier(client), "app", "m/app", img.fetched, "1.0")

    log = norm(reg.requests(DST))
    expected = [r for d in img.digests for r in transfer("m/app", d)]
    assert Counter(log) == Counter([*expected, "PUT /v2/m/app/manifests/1.0"])
    assert log[-1] == "PUT /v2/m/app/manifests/1.0"
    assert Counter(reg.requests(SRC)) == Counter(f"GET /v2/app/blobs/{d}" for d in img.digests)
    assert (c.blobs_copied, c.bytes_copied, c.manifests_copied) == (3, 8 + 7 + 8, 1)
    assert reg.tags(DST, "m/app") == {"1.0": img.digest}


async def test_index_children_after_their_blobs_and_the_tag_after_the_children() -> None:
    reg = MemoryRegistry()
    amd = Img(reg, "app", b"config-amd64", b"shared-base", b"amd64-only")
    arm = Img(reg, "app", b"config-arm64", b"shared-base", b"arm64-only")
    top = make_index(reg, "app", amd, arm)
    async with reg.client() as client:
        c = await copy(Copier(client), "app", "m/app", top, "1.0")

    log = norm(reg.requests(DST))
    blobs = sorted({*amd.digests, *arm.digests})  # the shared base crosses once
    assert len(blobs) == 5
    children = [f"PUT /v2/m/app/manifests/{i.digest}" for i in (amd, arm)]
    assert Counter(log) == Counter(
        [f"HEAD /v2/m/app/manifests/{i.digest}" for i in (amd, arm)]
        + [r for d in blobs for r in transfer("m/app", d)]
        + children
        + ["PUT /v2/m/app/manifests/1.0"]
    )
    for child in (amd, arm):
        put = log.index(f"PUT /v2/m/app/manifests/{child.digest}")
        assert all(landed(log, "m/app", d) < put for d in child.digests), child.digest
    assert log[-1] == "PUT /v2/m/app/manifests/1.0"
    assert Counter(reg.requests(SRC)) == Counter(
        [f"GET /v2/app/manifests/{i.digest}" for i in (amd, arm)]
        + [f"GET /v2/app/blobs/{d}" for d in blobs]
    )
    assert (c.blobs_copied, c.manifests_copied) == (5, 3)


async def test_a_child_already_at_the_destination_costs_one_head() -> None:
    reg = MemoryRegistry()
    amd = Img(reg, "app", b"config-amd64", b"amd64-only")
    arm = Img(reg, "app", b"config-arm64", b"arm64-only")
    top = make_index(reg, "app", amd, arm)
    reg.put_manifest(DST, "m/app", amd.data, OCI_MANIFEST)
    async with reg.client() as client:
        c = await copy(Copier(client), "app", "m/app", top, "1.0")

    log = norm(reg.requests(DST))
    assert Counter(log) == Counter(
        [f"HEAD /v2/m/app/manifests/{i.digest}" for i in (amd, arm)]
        + [r for d in arm.digests for r in transfer("m/app", d)]
        + [f"PUT /v2/m/app/manifests/{arm.digest}", "PUT /v2/m/app/manifests/1.0"]
    )
    assert f"GET /v2/app/manifests/{amd.digest}" not in reg.requests(SRC)
    assert (c.blobs_copied, c.manifests_copied) == (2, 2)


@pytest.mark.parametrize("fault", ["missing", "corrupt"])
async def test_a_failed_blob_puts_no_manifest(fault: str) -> None:
    reg = MemoryRegistry()
    img = Img(reg, "app", b"config-1", b"layer-good", b"layer-bad")
    bad = img.digests[2]
    if fault == "missing":
        del reg.repo(SRC, "app").blobs[bad]
    else:
        reg.corrupt.add(bad)
    async with reg.client() as client:
        with pytest.raises(NotFound if fault == "missing" else DigestMismatch):
            await copy(Copier(client), "app", "m/app", img.fetched, "1.0")

    log = norm(reg.requests(DST))
    assert not [r for r in log if "/manifests/" in r]
    # The good blobs still finish (no half-cancelled uploads); the bad one's session is
    # cancelled, and its bytes never complete an upload.
    assert Counter(log) == Counter(
        [r for d in img.digests[:2] for r in transfer("m/app", d)]
        + transfer("m/app", bad)
        + ["DELETE /v2/m/app/blobs/uploads/<id>"]
    )
    assert set(reg.repo(DST, "m/app").blobs) == set(img.digests[:2])
    assert reg.tags(DST, "m/app") == {}


async def test_a_failed_copy_still_reports_what_it_moved() -> None:
    """The copy reports one way, into the job's report as it goes: the blobs that crossed
    before the failure are counted, bytes included, and no manifest is."""
    reg = MemoryRegistry()
    img = Img(reg, "app", b"config-1", b"layer-good", b"layer-bad")
    reg.corrupt.add(img.digests[2])
    report = EntryReport("app", "m/app")
    job = CopyJob(
        Reference.parse(f"{SRC}/app:1.0"),
        Reference.parse(f"{DST}/m/app:1.0"),
        img.fetched,
        "1.0",
        report,
    )
    async with reg.client() as client:
        with pytest.raises(DigestMismatch):
            await Copier(client).copy(job)

    c = report.counters
    assert (c.blobs_copied, c.bytes_copied, c.manifests_copied) == (2, 8 + 10, 0)
    assert report.skipped_foreign_layers == []


async def test_a_failed_blob_of_one_child_puts_neither_that_child_nor_the_tag() -> None:
    reg = MemoryRegistry()
    amd = Img(reg, "app", b"config-amd64", b"amd64-only")
    arm = Img(reg, "app", b"config-arm64", b"arm64-broken")
    top = make_index(reg, "app", amd, arm)
    reg.corrupt.add(arm.digests[1])
    async with reg.client() as client:
        with pytest.raises(DigestMismatch):
            await copy(Copier(client), "app", "m/app", top, "1.0")

    puts = [r for r in reg.requests(DST) if r.startswith("PUT") and "/manifests/" in r]
    # The complete child may stay (it is untagged, by digest); the broken one and the tag never.
    assert puts == [f"PUT /v2/m/app/manifests/{amd.digest}"]
    assert reg.tags(DST, "m/app") == {}


# -- once per run: the ledger's claims ---------------------------------------------------


async def test_a_second_repo_on_the_registry_mounts_what_the_first_transferred() -> None:
    reg = MemoryRegistry()
    img = Img(reg, "app", b"config-1", b"layer-a", b"layer-b")
    async with reg.client() as client:
        copier = Copier(client, BlobLedger())
        first = await copy(copier, "app", "a/app", img.fetched, "1.0")
        mark = len(reg.log)
        second = await copy(copier, "app", "b/app", img.fetched, "1.0")

    after = [f"{s.method} {s.host}{s.path}" for s in reg.log[mark:]]
    mounts = [f"POST {DST}/v2/b/app/blobs/uploads/?mount={q(d)}&from=a%2Fapp" for d in img.digests]
    # No HEAD, no source GET, no upload: only mounts, then the tag.
    assert Counter(after) == Counter([*mounts, f"PUT {DST}/v2/b/app/manifests/1.0"])
    assert after[-1] == f"PUT {DST}/v2/b/app/manifests/1.0"
    assert (first.blobs_copied, first.blobs_mounted) == (3, 0)
    assert (second.blobs_copied, second.blobs_mounted, second.bytes_copied) == (0, 3, 0)


async def test_two_repos_at_once_transfer_each_blob_once_and_mount_it_once() -> None:
    reg = MemoryRegistry()
    img = Img(reg, "app", b"config-1", b"layer-a", b"layer-b")
    async with reg.client() as client:
        copier = Copier(client, BlobLedger())
        a, b = await asyncio.gather(
            copy(copier, "app", "a/app", img.fetched, "1.0"),
            copy(copier, "app", "b/app", img.fetched, "1.0"),
        )

    log = norm(reg.requests(DST))
    for d in img.digests:
        uploads = [r for r in log if r.startswith("PUT") and f"digest={d}" in r]
        mounts = [r for r in log if f"mount={q(d)}" in r]
        assert len(uploads) == 1 and len(mounts) == 1, (d, log)
        assert log.index(uploads[0]) < log.index(mounts[0])
    assert not [r for r in log if r.startswith("DELETE")]  # no declined mount
    assert Counter(reg.requests(SRC)) == Counter(f"GET /v2/app/blobs/{d}" for d in img.digests)
    assert a.blobs_copied + b.blobs_copied == 3
    assert a.blobs_mounted + b.blobs_mounted == 3
    assert reg.tags(DST, "a/app") == reg.tags(DST, "b/app") == {"1.0": img.digest}


def _two_tags_sharing_a_layer(reg: MemoryRegistry) -> tuple[Img, Img, str]:
    one = Img(reg, "app", b"config-1", b"shared-layer")
    two = Img(reg, "app", b"config-2", b"shared-layer")
    return one, two, one.digests[1]


async def test_concurrent_tags_of_one_repo_wait_for_the_claim() -> None:
    reg = MemoryRegistry()
    one, two, shared = _two_tags_sharing_a_layer(reg)
    cfg2 = f"digest={two.digests[0]}"

    def tag_2_waits() -> bool:
        # The shared layer is mid-transfer, tag 2 has placed everything else, yet no tag 2.
        log = reg.requests(DST)
        return any(cfg2 in r for r in log) and "PUT /v2/m/app/manifests/2" not in log

    c1, c2 = await copy_while_held(
        reg,
        f"/v2/app/blobs/{shared}",
        [("m/app", one.fetched, "1"), ("m/app", two.fetched, "2")],
        tag_2_waits,
    )
    assert isinstance(c1, Counters) and isinstance(c2, Counters)

    log = norm(reg.requests(DST))
    assert log.count(f"HEAD /v2/m/app/blobs/{shared}") == 1
    assert Counter(log) == Counter(
        [r for d in sorted({*one.digests, *two.digests}) for r in transfer("m/app", d)]
        + ["PUT /v2/m/app/manifests/1", "PUT /v2/m/app/manifests/2"]
    )
    assert landed(log, "m/app", shared) < log.index("PUT /v2/m/app/manifests/2")
    assert reg.requests(SRC).count(f"GET /v2/app/blobs/{shared}") == 1
    assert c1.blobs_copied + c2.blobs_copied == 3


async def test_a_failed_claim_lets_the_waiting_tag_transfer_itself() -> None:
    reg = MemoryRegistry()
    one, two, shared = _two_tags_sharing_a_layer(reg)
    path = f"/v2/app/blobs/{shared}"
    cfg2 = f"digest={two.digests[0]}"
    first, second = await copy_while_held(
        reg,
        path,
        [("m/app", one.fetched, "1"), ("m/app", two.fetched, "2")],
        lambda: any(cfg2 in r for r in reg.requests(DST)),
        fail=True,
    )

    assert isinstance(first, NotFound)
    assert isinstance(second, Counters)
    assert reg.requests(SRC).count(f"GET {path}") == 2
    log = norm(reg.requests(DST))
    # The failed attempt, its cancelled session, then the waiter's own transfer; no tag 1.
    assert Counter(log) == Counter(
        [
            *transfer("m/app", one.digests[0]),
            *transfer("m/app", two.digests[0]),
            *transfer("m/app", shared),
            "DELETE /v2/m/app/blobs/uploads/<id>",
            *transfer("m/app", shared),
            "PUT /v2/m/app/manifests/2",
        ]
    )
    assert shared in reg.repo(DST, "m/app").blobs
    assert reg.tags(DST, "m/app") == {"2": two.digest}


async def test_a_failed_transfer_lets_the_other_repo_transfer_instead_of_mounting() -> None:
    reg = MemoryRegistry()
    img = Img(reg, "app", b"config-1", b"layer-a")
    layer = img.digests[1]
    path = f"/v2/app/blobs/{layer}"
    a, b = await copy_while_held(
        reg,
        path,
        [("a/app", img.fetched, "1.0"), ("b/app", img.fetched, "1.0")],
        lambda: any("/b/app/" in r for r in reg.requests(DST)),
        fail=True,
    )

    assert isinstance(a, NotFound)
    assert isinstance(b, Counters)
    assert (b.blobs_copied, b.blobs_mounted) == (1, 1)  # the layer itself; the config mounted
    log = norm(reg.requests(DST))
    config = img.digests[0]
    # b waited for a's transfer of the layer; when it failed, b did not try to mount it.
    assert Counter(log) == Counter(
        [
            *transfer("a/app", config),
            *transfer("a/app", layer),
            "DELETE /v2/a/app/blobs/uploads/<id>",
            f"POST /v2/b/app/blobs/uploads/?mount={q(config)}&from=a%2Fapp",
            *transfer("b/app", layer),
            "PUT /v2/b/app/manifests/1.0",
        ]
    )
    assert reg.requests(SRC).count(f"GET {path}") == 2
    assert reg.tags(DST, "a/app") == {}
    assert reg.tags(DST, "b/app") == {"1.0": img.digest}
