"""cosign 3 signatures under `verify:`: Sigstore bundles signed with a key, found through
the referrers tag schema (`sha256-<hex>`, what cosign 3 writes on distribution 2.8, which
has no referrers API) or through the referrers API (added in front of a real registry by
`ReferrersAPI`, as 2.8 answers /referrers with 404). Bundles are built with real keys by
tests/support/bundles.py."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from syncer.config.syncfile import load_config
from syncer.config.verify import VerifyConfig
from syncer.registry.reference import Reference
from syncer.sync.runner import Runner
from syncer.verify.verifier import Verifier
from tests.support import bundles, cosign
from tests.support.bundles import SLSA_V1
from tests.support.cosign import SigningKey
from tests.support.fleet import app_image, tag_item
from tests.support.http import http_client
from tests.support.images import (
    OCI_INDEX,
    Image,
    Index,
    fetch_manifest,
    fetch_manifest_digest,
    push,
    push_manifest,
)
from tests.support.registry import LoggedRequest, RegistryFactory, RunningRegistry
from tests.support.syncer_setup import make_client, write_sync_yaml
from tests.sync.test_referrers import ReferrersAPI
from tests.sync.test_verify import ECDSA, entry, key_file, outcomes, run

OTHER = SigningKey.generate("ecdsa")
SPDX = "https://spdx.dev/Document"  # cosign attest --type spdxjson


def schema(digest: str) -> str:
    return digest.replace(":", "-")


def listed(reg: RunningRegistry, repo: str, digest: str) -> list[str]:
    """The digests the `sha256-<hex>` index of `digest` lists at `reg`."""
    data, _ = fetch_manifest(reg.url, repo, schema(digest))
    return [d["digest"] for d in json.loads(data)["manifests"]]


def summary(requests: list[LoggedRequest]) -> list[tuple[str, str, int]]:
    """(method, what, status) per request, the digests and hex shortened to their kind."""
    out = []
    for r in requests:
        path = r.path.split("?")[0].removeprefix("/v2/app/").removeprefix("/v2/mirror/app/")
        out.append((r.method, path.split("/")[0] + ("" if "/" not in path else "/…"), r.status))
    return out


def setup(factory: RegistryFactory) -> tuple[RunningRegistry, RunningRegistry, Image]:
    src, dst = factory("anon"), factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "app", image, "v1")
    return src, dst, image


async def test_key_bundle_in_the_tag_schema_verifies_copies_and_verifies_downstream(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, image = setup(registry_factory)
    ref = bundles.sign(src.seed_url, "app", image, ECDSA)
    pub = key_file(tmp_path, ECDSA)
    mark = src.mark()
    report = await run(tmp_path, [entry(src, dst, [pub], tags=["v1"])], src, dst)
    e = report.entries[0]
    assert outcomes(e)["v1"][0] == "copied" and e.counters.tags_rejected == 0
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == image.digest
    assert fetch_manifest_digest(dst.url, "mirror/app", ref.digest) == ref.digest
    assert listed(dst, "mirror/app", image.digest) == [ref.digest]
    new = src.requests_since(mark)
    hexd = schema(image.digest)
    verify = [r for r in new if "referrers" in r.path or hexd in r.path or ref.digest in r.path]
    # Verifying: the referrers API (404 on 2.8), the index, the bundle's manifest and blob.
    assert [(r.method, r.status) for r in verify] == [("GET", 404), ("GET", 200), ("GET", 200)]
    assert [r.path for r in new if r.path.endswith(ref.bundle.digest)] == [
        f"/v2/app/blobs/{ref.bundle.digest}",  # judged
        f"/v2/app/blobs/{ref.bundle.digest}",  # copied
    ]
    assert not [r for r in new if ".sig" in r.path.split("?")[0]]  # no legacy look needed
    puts = [r.path for r in dst.requests() if r.method == "PUT" and "/manifests/" in r.path]
    assert puts == [
        f"/v2/mirror/app/manifests/{ref.digest}",
        f"/v2/mirror/app/manifests/{hexd}",
        "/v2/mirror/app/manifests/v1",
    ]
    # Up to date: the tag's two HEADs (and the listings), nothing about signatures.
    mark, dmark = src.mark(), dst.mark()
    await run(tmp_path, [entry(src, dst, [pub], tags=["v1"])], src, dst)
    assert summary(src.requests_since(mark)) == [
        ("GET", "tags/…", 200),
        ("HEAD", "manifests/…", 200),
    ]
    assert summary(dst.requests_since(dmark)) == [
        ("GET", "tags/…", 200),
        ("HEAD", "manifests/…", 200),
    ]
    # Downstream: the mirror verifies on its own with the same key, through its index.
    policy = VerifyConfig.model_validate({"cosign": {"keys": [str(pub)]}})
    async with make_client(dst) as client:
        repo = Reference.parse(f"{dst.host}/mirror/app")
        signed = await Verifier(client).verify(repo, image.digest, policy)
    assert signed.manifest.digest == ref.digest and signed.tag is None


async def test_key_bundle_through_the_referrers_api(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, image = setup(registry_factory)
    ref = bundles.sign(src.seed_url, "app", image, ECDSA, listed=False)  # untagged
    api = ReferrersAPI({image.digest: [ref.descriptor()]})
    e = entry(src, dst, [key_file(tmp_path, ECDSA)], tags=["v1"])
    cfg = write_sync_yaml(tmp_path / "s.yaml", [e], src, dst)
    mark = src.mark()
    async with make_client(src, dst, http_transport=api) as client:
        report = await Runner(load_config(cfg), client=client).run()
    assert outcomes(report.entries[0])["v1"][0] == "copied", report.to_json()
    assert fetch_manifest_digest(dst.url, "mirror/app", ref.digest) == ref.digest
    # The destination "has" the API too: the registry lists the referrer, no fallback tag.
    assert fetch_manifest_digest(dst.url, "mirror/app", schema(image.digest)) is None
    assert api.calls == 2  # source listing, destination probe
    new = src.requests_since(mark)
    assert not [r for r in new if schema(image.digest) in r.path]  # no tag-schema look
    assert len([r for r in new if r.path == f"/v2/app/manifests/{ref.digest}"]) == 1


def forged(src: RunningRegistry, image: Image) -> str:
    bundles.sign(src.seed_url, "app", image, ECDSA, signer=OTHER)
    return "no key matched"


def other_subject(src: RunningRegistry, image: Image) -> str:
    body = bundles.statement(app_image(3, 0).digest)  # about another image
    data = bundles.bundle(ECDSA, body)
    ref = bundles.referrer(image.digest, image.size, image.media_type, data, bundles.COSIGN_SIGN)
    bundles.push_referrer(src.seed_url, "app", ref)
    return "signature for another digest"


def replayed(src: RunningRegistry, image: Image) -> str:
    """The genuine referrer of another image, listed in this image's index."""
    other = app_image(4, 0, fmt="oci")
    push(src.seed_url, "app", other, None)
    ref = bundles.sign(src.seed_url, "app", other, ECDSA)
    bundles.push_referrer(src.seed_url, "app", ref, listed=False)
    data = bundles.bundle(ECDSA, bundles.statement(other.digest))
    again = bundles.referrer(image.digest, image.size, image.media_type, data, bundles.COSIGN_SIGN)
    bundles.push_referrer(src.seed_url, "app", again)  # its statement names `other`
    return "signature for another digest"


def attestation_only(src: RunningRegistry, image: Image) -> str:
    bundles.sign(src.seed_url, "app", image, ECDSA, predicate_type=SLSA_V1)
    return "wrong predicate type"


def keyless(src: RunningRegistry, image: Image) -> str:
    cert = {"certificate": {"rawBytes": "MIIB"}}
    bundles.sign(src.seed_url, "app", image, ECDSA, material=cert)
    return "keyless signature: no keyless identity configured"


@pytest.mark.parametrize("case", [forged, other_subject, replayed, attestation_only, keyless])
async def test_bad_bundles_are_rejected_with_their_reason(
    registry_factory: RegistryFactory, tmp_path: Path, case: object
) -> None:
    src, dst, image = setup(registry_factory)
    assert callable(case)
    reason = case(src, image)
    report = await run(
        tmp_path, [entry(src, dst, [key_file(tmp_path, ECDSA)], tags=["v1"])], src, dst
    )
    action, why = outcomes(report.entries[0])["v1"]
    assert action == "rejected" and why.startswith(reason + ": " if ":" not in reason else reason)
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") is None
    assert fetch_manifest_digest(dst.url, "mirror/app", schema(image.digest)) is None


@pytest.mark.parametrize("form", ["bundle", "legacy .att", "missing"])
async def test_required_attestation(
    registry_factory: RegistryFactory, tmp_path: Path, form: str
) -> None:
    src, dst, image = setup(registry_factory)
    bundles.sign(src.seed_url, "app", image, ECDSA)
    kind = SLSA_V1 if form == "bundle" else cosign.SLSA_PROVENANCE
    if form == "bundle":
        att = bundles.sign(src.seed_url, "app", image, ECDSA, predicate_type=SLSA_V1).digest
    elif form == "legacy .att":
        att = cosign.attest(src.seed_url, "app", image.digest, ECDSA)
    e = entry(src, dst, [key_file(tmp_path, ECDSA)], tags=["v1"], attestations=[kind])
    report = await run(tmp_path, [e], src, dst)
    action, why = outcomes(report.entries[0])["v1"]
    if form == "missing":
        assert action == "rejected"
        assert why == (
            f"no attestation: no {kind} bundle verified, and "
            f"{src.host}/app:{schema(image.digest)}.att does not exist"
        )
        return
    assert action == "copied", why
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == image.digest
    if form == "bundle":
        assert att in listed(dst, "mirror/app", image.digest)
    else:
        assert fetch_manifest_digest(dst.url, "mirror/app", f"{schema(image.digest)}.att") == att


async def test_fallback_index_is_merged_across_runs(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """Run 1 carries one bundle; the source's index is then replaced by one listing only a
    new bundle; run 2 (recheck) carries that: the destination lists both. The same with
    `referrers: true` copying the `sha256-<hex>` tag itself."""
    src, dst, image = setup(registry_factory)
    first = bundles.sign(src.seed_url, "app", image, ECDSA)
    pub = key_file(tmp_path, ECDSA)
    await run(tmp_path, [entry(src, dst, [pub], tags=["v1"])], src, dst)
    assert listed(dst, "mirror/app", image.digest) == [first.digest]
    second = bundles.referrer(
        image.digest,
        image.size,
        image.media_type,
        bundles.bundle(ECDSA, bundles.statement(image.digest, name="app2")),
        bundles.COSIGN_SIGN,
    )
    bundles.push_referrer(src.seed_url, "app", second, listed=False)
    push_index(src, image.digest, [second])
    report = await run(tmp_path, [entry(src, dst, [pub], tags=["v1"], recheck=True)], src, dst)
    assert outcomes(report.entries[0])["v1"][0] == "up_to_date"
    assert listed(dst, "mirror/app", image.digest) == [first.digest, second.digest]
    # referrers: true copies the source's index tag, listing only `third`: merged too.
    third = bundles.referrer(
        image.digest,
        image.size,
        image.media_type,
        bundles.bundle(ECDSA, bundles.statement(image.digest, name="app3")),
        bundles.COSIGN_SIGN,
    )
    bundles.push_referrer(src.seed_url, "app", third, listed=False)
    push_index(src, image.digest, [third])
    e = entry(src, dst, [pub], tags=["v1"])
    e["referrers"] = True
    report = await run(tmp_path, [e], src, dst)
    assert outcomes(report.entries[0])[schema(image.digest)][0] == "copied"
    assert listed(dst, "mirror/app", image.digest) == [third.digest, first.digest, second.digest]
    # Nothing changed: the merged index stands for the source's, so the next run only
    # HEADs it at the source, reads the destination's once, and writes nothing.
    mark, dmark = src.mark(), dst.mark()
    report = await run(tmp_path, [e], src, dst)
    assert outcomes(report.entries[0])[schema(image.digest)][0] == "up_to_date"
    assert not [
        r for r in src.requests_since(mark) if r.method == "GET" and "/manifests/" in r.path
    ]
    new = dst.requests_since(dmark)
    assert not [r for r in new if r.method in ("PUT", "POST", "PATCH", "DELETE")]
    assert [(r.method, r.path.split("/")[-2]) for r in new if "/manifests/" in r.path] == [
        ("HEAD", "manifests"),
        ("HEAD", "manifests"),
        ("GET", "manifests"),
    ]
    assert listed(dst, "mirror/app", image.digest) == [third.digest, first.digest, second.digest]


def push_index(reg: RunningRegistry, digest: str, refs: list[bundles.Referrer]) -> None:
    index = cosign.go_json(
        {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [r.descriptor() for r in refs]}
    )
    with http_client() as c:
        push_manifest(c, reg.seed_url, "app", index, OCI_INDEX, schema(digest))


async def test_platform_subset_carries_its_childrens_signatures(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    multi = tag_item(0, 2)  # amd64 + arm64 index
    assert isinstance(multi, Index)
    amd64, arm64 = multi.children
    push(src.seed_url, "app", multi, "v1")
    bundles.sign(src.seed_url, "app", multi, ECDSA)  # the index, as cosign signs it
    child_bundle = bundles.sign(src.seed_url, "app", amd64, ECDSA)
    child_sig = cosign.sign(src.seed_url, src.host, "app", amd64.digest, ECDSA)
    cosign.sign(src.seed_url, src.host, "app", arm64.digest, ECDSA)  # not copied
    e = entry(src, dst, [key_file(tmp_path, ECDSA)], tags=["v1"])
    e["platforms"] = ["linux/amd64"]
    report = await run(tmp_path, [e], src, dst)
    v1 = {t.tag: t for t in report.entries[0].tags}["v1"]
    assert v1.action == "copied" and v1.subset_of == multi.digest
    assert v1.destination_digest != multi.digest
    assert fetch_manifest_digest(dst.url, "mirror/app", child_bundle.digest) == child_bundle.digest
    assert listed(dst, "mirror/app", amd64.digest) == [child_bundle.digest]
    assert fetch_manifest_digest(dst.url, "mirror/app", cosign.sig_tag(amd64.digest)) == child_sig
    assert fetch_manifest_digest(dst.url, "mirror/app", cosign.sig_tag(arm64.digest)) is None
    # The mirrored child verifies downstream with the same key; a second run is up to
    # date and still says the index is a subset.
    policy = VerifyConfig.model_validate({"cosign": {"keys": [str(key_file(tmp_path, ECDSA))]}})
    async with make_client(dst) as client:
        repo = Reference.parse(f"{dst.host}/mirror/app")
        assert (await Verifier(client).verify(repo, amd64.digest, policy)).tag is None
    again = await run(tmp_path, [e], src, dst)
    v1 = {t.tag: t for t in again.entries[0].tags}["v1"]
    assert v1.action == "up_to_date" and v1.subset_of == multi.digest


class SourceOnlyAPI(ReferrersAPI):
    """The referrers API at the source only; the destination is plain distribution 2.8."""

    def __init__(self, index: dict[str, list[dict[str, object]]], port: int) -> None:
        super().__init__(index)
        self.port = port

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.port != self.port:
            return await self.real.handle_async_request(request)
        return await super().handle_async_request(request)


async def test_referrers_from_an_api_are_listed_in_the_destinations_index(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """`referrers: true`: an SBOM the source's API lists reaches a destination without the
    API by digest, and is listed in its `sha256-<hex>` index next to the signature."""
    src, dst, image = setup(registry_factory)
    sig = bundles.sign(src.seed_url, "app", image, ECDSA, listed=False)
    sbom = bundles.sign(src.seed_url, "app", image, OTHER, predicate_type=SPDX, listed=False)
    port = int(src.host.rsplit(":", 1)[1])
    api = SourceOnlyAPI({image.digest: [sig.descriptor(), sbom.descriptor()]}, port)
    e = entry(src, dst, [key_file(tmp_path, ECDSA)], tags=["v1"])
    e["referrers"] = True
    cfg = write_sync_yaml(tmp_path / "s.yaml", [e], src, dst)
    async with make_client(src, dst, http_transport=api) as client:
        report = await Runner(load_config(cfg), client=client).run()
    got = outcomes(report.entries[0])
    assert got["v1"][0] == "copied" and got[sbom.digest] == (
        "copied",
        f"referrer of {image.digest}",
    )
    assert sorted(listed(dst, "mirror/app", image.digest)) == sorted([sig.digest, sbom.digest])


async def test_legacy_sig_cost_after_the_bundle_places(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """Two legacy-signed tags: the referrers API is asked once per registry and run (2.8
    answers 404), then per digest the `sha256-<hex>` index (404), `.sig`, its payload."""
    src, dst, image = setup(registry_factory)
    other = app_image(1, 1, fmt="oci")
    push(src.seed_url, "app", other, "v2")
    for d in (image.digest, other.digest):
        cosign.sign(src.seed_url, src.host, "app", d, ECDSA)
    mark = src.mark()
    e = entry(src, dst, [key_file(tmp_path, ECDSA)], tags=["v1", "v2"])
    report = await run(tmp_path, [e], src, dst)
    got = outcomes(report.entries[0])
    assert (got["v1"][0], got["v2"][0]) == ("copied", "copied")
    new = src.requests_since(mark)
    assert [r.status for r in new if "/referrers/" in r.path] == [404]
    for d in (image.digest, other.digest):
        assert [r.status for r in new if r.path.endswith(f"/manifests/{schema(d)}")] == [404]
        assert [r.status for r in new if r.path.endswith(f"/manifests/{schema(d)}.sig")] == [200]
