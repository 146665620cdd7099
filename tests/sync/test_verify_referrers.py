"""`verify:` and referrer tags: what is carried beside a verified tag is an artifact about
it (signature, attestation, SBOM, referrers index), never an image someone pushed under a
referrer-shaped name. Real registries; cosign's formats from tests/support/cosign.py."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.sync.runner import Runner
from tests.support import cosign
from tests.support.cosign import SigningKey, attach_tag, sig_tag
from tests.support.fleet import app_image
from tests.support.http import http_client
from tests.support.images import (
    DOCKER_LAYER,
    OCI_INDEX,
    OCI_LAYER,
    OCI_MANIFEST,
    Blob,
    Image,
    fetch_manifest_digest,
    push,
    push_blob,
    push_manifest,
    random_layer,
)
from tests.support.registry import LoggedRequest, RegistryFactory, RunningRegistry
from tests.support.syncer_setup import make_client, write_sync_yaml
from tests.sync.test_referrers import ReferrersAPI

ECDSA = SigningKey.generate("ecdsa")
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
BUNDLE = "application/vnd.dev.sigstore.bundle.v0.3+json"
SPDX = "text/spdx+json"
BIG = 8 * 1024 * 1024

# The whole repository; or only v* tags, their referrer tags brought in by `referrers: true`.
SELECTIONS: dict[str, dict[str, Any]] = {
    "all-tags": {},
    "v-tags-and-referrers": {"tags": {"allow": ["v.*"]}, "referrers": True},
}


def referrer_tag(digest: str) -> str:
    return digest.replace(":", "-")


def entry(
    src: RunningRegistry, dst: RunningRegistry, key: Path, selection: str, **verify: Any
) -> dict[str, Any]:
    return {
        "source": f"{src.host}/app",
        "destination": f"{dst.host}/mirror/app",
        **SELECTIONS[selection],
        "verify": {"cosign": {"keys": [str(key)]}, **verify},
    }


def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "release.pub"
    path.write_bytes(ECDSA.public_pem())
    return path


def artifact(
    reg: RunningRegistry,
    ref: str | None,
    body: Blob,
    *,
    subject: Image | None = None,
    artifact_type: str | None = None,
) -> tuple[str, bytes]:
    """An OCI 1.1 artifact (empty config, one layer, `subject`) at tag `ref`, else by its
    digest only; returns (digest, manifest bytes)."""
    config = Blob.of(b"{}", OCI_EMPTY)
    doc: dict[str, Any] = {"schemaVersion": 2, "mediaType": OCI_MANIFEST}
    if artifact_type:
        doc["artifactType"] = artifact_type
    doc["config"] = config.descriptor()
    doc["layers"] = [body.descriptor()]
    if subject is not None:
        doc["subject"] = {"mediaType": subject.media_type, "digest": subject.digest, "size": 1}
    manifest = json.dumps(doc).encode()
    digest = Blob.of(manifest, OCI_MANIFEST).digest
    with http_client() as c:
        push_blob(c, reg.seed_url, "app", config)
        push_blob(c, reg.seed_url, "app", body)
        push_manifest(c, reg.seed_url, "app", manifest, OCI_MANIFEST, ref or digest)
    return digest, manifest


def referrers_index(reg: RunningRegistry, subject: str, children: list[dict[str, Any]]) -> str:
    """The referrers tag schema: an OCI index at `sha256-<hex>` listing `children`."""
    index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": children}).encode()
    with http_client() as c:
        push_manifest(c, reg.seed_url, "app", index, OCI_INDEX, referrer_tag(subject))
    return Blob.of(index, OCI_INDEX).digest


def dest_tags(dst: RunningRegistry) -> list[str]:
    resp = httpx.get(f"{dst.url}/v2/mirror/app/tags/list", trust_env=False)
    resp.raise_for_status()
    return sorted(resp.json()["tags"] or [])


def gets(requests: list[LoggedRequest], needle: str) -> list[LoggedRequest]:
    return [r for r in requests if r.method == "GET" and needle in r.path]


@dataclass(frozen=True)
class Attack:
    """A source where someone with push rights but no key put images beside signed ones."""

    signed: Image  # v1, signed
    other: Image  # v3, signed
    unsigned: Image  # v2
    padded: Image  # v4, signed, its .sig padded with an 8 MiB filesystem layer
    at_att: Image  # runnable, at sha256-<v1>.att
    at_index: Image  # runnable, at sha256-<v1>
    in_index: Image  # runnable, the child of a referrers index at sha256-<v3>
    big: Blob
    stray_sbom: str  # an SBOM about v1, at sha256-<v3>.sbom


def seed_attack(src: RunningRegistry) -> Attack:
    signed, unsigned, other, padded = (app_image(0, i, fmt="oci") for i in range(4))
    for tag, image in [("v1", signed), ("v2", unsigned), ("v3", other), ("v4", padded)]:
        push(src.seed_url, "app", image, tag)
    for image in (signed, other):
        cosign.sign(src.seed_url, src.host, "app", image.digest, ECDSA)
    genuine = cosign.signed(ECDSA, cosign.payload(f"{src.host}/app", padded.digest))
    big, _ = random_layer(BIG, 7)
    cosign.push_cosign_image(
        src.seed_url,
        "app",
        sig_tag(padded.digest),
        [genuine.blob, big],
        [genuine.layer(), big.descriptor()],
    )
    at_att, at_index = app_image(1, 0), app_image(1, 1, fmt="oci")  # docker, OCI
    in_index = app_image(1, 2, fmt="oci")
    push(src.seed_url, "app", at_att, attach_tag(signed.digest, "att"))
    push(src.seed_url, "app", at_index, referrer_tag(signed.digest))
    push(src.seed_url, "app", in_index, None)
    child = {
        "mediaType": OCI_MANIFEST,
        "digest": in_index.digest,
        "size": in_index.size,
        "artifactType": BUNDLE,
    }
    referrers_index(src, other.digest, [child])
    sbom, _ = artifact(
        src,
        attach_tag(other.digest, "sbom"),
        Blob.of(b'{"spdxVersion":"SPDX-2.3"}', SPDX),
        subject=signed,
    )
    return Attack(signed, other, unsigned, padded, at_att, at_index, in_index, big, sbom)


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_images_under_referrer_names_and_padded_signatures_are_rejected(
    registry_factory: RegistryFactory, tmp_path: Path, selection: str
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    a = seed_attack(src)
    cfg = write_sync_yaml(
        tmp_path / "s.yaml", [entry(src, dst, key_file(tmp_path), selection)], src, dst
    )
    mark = src.mark()
    report_file = tmp_path / "report.json"
    assert main(["sync", "-c", str(cfg), "-q", "--report", str(report_file)]) == 0
    doc = json.loads(report_file.read_text())
    got = {t["tag"]: (t["action"], t["reason"]) for t in doc["entries"][0]["tags"]}
    v1, v3, v4 = a.signed.digest, a.other.digest, a.padded.digest
    runnable = "a runnable image (layer {})"
    assert {t: r for t, r in got.items() if r[0] == "rejected"} == {
        "v2": (
            "rejected",
            f"no signature: {src.host}/app:{sig_tag(a.unsigned.digest)} does not exist",
        ),
        "v4": (
            "rejected",
            f"not a pure signature: {sig_tag(v4)}: {runnable.format(OCI_LAYER)}, "
            f"not a signature of {v4}",
        ),
        sig_tag(v4): (
            "rejected",
            f"not a pure signature: its subject {v4}: {sig_tag(v4)}: "
            f"{runnable.format(OCI_LAYER)}, not a signature of {v4}",
        ),
        attach_tag(v1, "att"): (
            "rejected",
            f"not a referrer: {attach_tag(v1, 'att')}: {runnable.format(DOCKER_LAYER)}, "
            f"not an attestation of {v1}",
        ),
        referrer_tag(v1): (
            "rejected",
            f"not a referrer: {referrer_tag(v1)}: {runnable.format(OCI_LAYER)}, "
            f"not the referrers of {v1}",
        ),
        referrer_tag(v3): (
            "rejected",
            f"not a referrer: {referrer_tag(v3)}: an index whose referrer {a.in_index.digest} "
            f"is {runnable.format(OCI_LAYER)}, not the referrers of {v3}",
        ),
        attach_tag(v3, "sbom"): (
            "rejected",
            f"not a referrer: {attach_tag(v3, 'sbom')}: an artifact about {v1}, "
            f"not an SBOM of {v3}",
        ),
    }
    assert doc["status"] == "ok" and doc["totals"]["tags_rejected"] == 7
    assert doc["totals"]["tags_copied"] == 4
    # Exactly the signed tags and their genuine signatures reached the mirror.
    assert dest_tags(dst) == sorted(["v1", "v3", sig_tag(v1), sig_tag(v3)])
    for image in (a.signed, a.other):
        assert fetch_manifest_digest(dst.url, "mirror/app", image.digest) == image.digest
    for image in (a.at_att, a.at_index, a.in_index, a.padded, a.unsigned):
        assert fetch_manifest_digest(dst.url, "mirror/app", image.digest) is None
    assert fetch_manifest_digest(dst.url, "mirror/app", a.stray_sbom) is None
    new = src.requests_since(mark)
    # Each rejected referrer was judged on the one GET that fetches it for copying, and
    # nothing it references was read; the padding was never read either.
    for image in (a.at_att, a.at_index, a.in_index):
        assert len(gets(new, f"/manifests/{image.digest}")) == 1
        assert all(gets(new, layer.digest) == [] for layer in image.layers)
    assert gets(new, a.big.digest) == []
    assert dst.requests() and not [r for r in dst.requests() if a.big.digest in r.path]

    # on_failure: fail makes the same rejections fail the run.
    e = entry(src, dst, key_file(tmp_path), selection, on_failure="fail")
    cfg = write_sync_yaml(tmp_path / "s.yaml", [e], src, dst)
    assert main(["sync", "-c", str(cfg), "-q", "--report", str(report_file)]) == 1
    doc = json.loads(report_file.read_text())
    assert doc["status"] == "partial" and doc["totals"]["tags_rejected"] == 7
    assert dest_tags(dst) == sorted(["v1", "v3", sig_tag(v1), sig_tag(v3)])


@pytest.mark.parametrize("selection", list(SELECTIONS))
async def test_genuine_signature_attestation_sbom_and_referrers_index_are_carried(
    registry_factory: RegistryFactory, tmp_path: Path, selection: str
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "app", image, "v1")
    sig = cosign.sign(src.seed_url, src.host, "app", image.digest, ECDSA)
    att = cosign.attest(src.seed_url, "app", image.digest, ECDSA)
    sbom = cosign.attach_sbom(src.seed_url, "app", image.digest)
    bundle, body = artifact(
        src,
        None,  # untagged: only the referrers index reaches it
        Blob.of(b'{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json"}', BUNDLE),
        subject=image,
        artifact_type=BUNDLE,
    )
    child = {"mediaType": OCI_MANIFEST, "digest": bundle, "size": len(body), "artifactType": BUNDLE}
    index = referrers_index(src, image.digest, [child])
    e = entry(src, dst, key_file(tmp_path), selection)
    cfg = write_sync_yaml(tmp_path / "s.yaml", [e], src, dst)
    mark = src.mark()
    report = await Runner(load_config(cfg)).run()
    got = {t.tag: (t.action, t.reason) for t in report.entries[0].tags}
    hexd = referrer_tag(image.digest)
    carried = {"v1": image.digest, sig_tag(image.digest): sig}
    carried |= {f"{hexd}.att": att, f"{hexd}.sbom": sbom, hexd: index}
    assert {t: a for t, (a, _) in got.items() if a != "filtered"} == dict.fromkeys(
        carried, "copied"
    )
    assert report.status == "ok" and report.entries[0].counters.tags_rejected == 0
    assert dest_tags(dst) == sorted(carried)
    for tag, digest in carried.items():
        assert fetch_manifest_digest(dst.url, "mirror/app", tag) == digest
    assert fetch_manifest_digest(dst.url, "mirror/app", bundle) == bundle
    # Judging costs no GET beyond the copy's: each referrer manifest is fetched once, and
    # the index's child once (judged, then reused by the copy).
    new = src.requests_since(mark)
    for digest in (att, sbom, index, bundle):
        assert len(gets(new, f"/manifests/{digest}")) == 1, digest


async def test_recheck_judges_referrers_already_mirrored(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """A mirror made before referrers were judged may hold an image under `.att`: with
    `recheck: true` it is reported (and kept, as recheck never deletes)."""
    src, dst = registry_factory("anon"), registry_factory("anon")
    image, intruder = app_image(0, 0, fmt="oci"), app_image(1, 0)
    push(src.seed_url, "app", image, "v1")
    cosign.sign(src.seed_url, src.host, "app", image.digest, ECDSA)
    att = attach_tag(image.digest, "att")
    push(src.seed_url, "app", intruder, att)
    push(dst.seed_url, "mirror/app", intruder, att)
    e = entry(src, dst, key_file(tmp_path), "all-tags", recheck=True)
    report = await Runner(load_config(write_sync_yaml(tmp_path / "s.yaml", [e], src, dst))).run()
    got = {t.tag: (t.action, t.reason) for t in report.entries[0].tags}
    assert got[att] == (
        "rejected",
        f"not a referrer: {att}: a runnable image (layer {DOCKER_LAYER}), "
        f"not an attestation of {image.digest}",
    )
    assert got["v1"][0] == "copied"
    c = report.entries[0].counters
    assert (c.tags_rejected, c.tags_up_to_date) == (1, 0)


async def test_referrers_api_lists_an_image(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    image, intruder = app_image(0, 0, fmt="oci"), app_image(1, 0, fmt="oci")
    push(src.seed_url, "app", image, "v1")
    cosign.sign(src.seed_url, src.host, "app", image.digest, ECDSA)
    push(src.seed_url, "app", intruder, None)
    bundle, body = artifact(src, None, Blob.of(b"{}", BUNDLE), subject=image, artifact_type=BUNDLE)
    api = ReferrersAPI(
        {
            image.digest: [
                {"mediaType": OCI_MANIFEST, "digest": intruder.digest, "size": intruder.size},
                {"mediaType": OCI_MANIFEST, "digest": bundle, "size": len(body)},
            ]
        }
    )
    e = entry(src, dst, key_file(tmp_path), "all-tags")
    e["source"] += ":v1"
    e["referrers"] = True
    cfg = write_sync_yaml(tmp_path / "s.yaml", [e], src, dst)
    async with make_client(src, dst, http_transport=api) as client:
        report = await Runner(load_config(cfg), client=client).run()
    got = {t.tag: (t.action, t.reason) for t in report.entries[0].tags}
    assert got[intruder.digest] == (
        "rejected",
        f"not a referrer: {intruder.digest}: a runnable image (layer {OCI_LAYER}), "
        f"not the referrers of {image.digest}",
    )
    assert got[bundle] == ("copied", f"referrer of {image.digest}")
    assert fetch_manifest_digest(dst.url, "mirror/app", intruder.digest) is None
    assert fetch_manifest_digest(dst.url, "mirror/app", bundle) == bundle
