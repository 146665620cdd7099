"""Signed-only mirroring (`verify:`): real images signed in real registries with keys made
here, in cosign's exact formats (tests/support/cosign.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from syncer.cli import main
from syncer.config.syncfile import load_config
from syncer.config.verify import VerifyConfig
from syncer.sync.report import EntryReport, RunReport
from syncer.sync.runner import Runner
from syncer.verify.verifier import Verifier
from tests.support import cosign
from tests.support.cosign import SigningKey, sig_tag
from tests.support.fleet import app_image
from tests.support.images import Image, fetch_manifest_digest, make_index, push
from tests.support.registry import LoggedRequest, RegistryFactory, RunningRegistry
from tests.support.syncer_setup import make_client, write_sync_yaml

ECDSA = SigningKey.generate("ecdsa")  # module-wide: RSA key generation is slow


def key_file(tmp_path: Path, key: SigningKey, name: str = "release.pub") -> Path:
    path = tmp_path / name
    path.write_bytes(key.public_pem())
    return path


def entry(
    src: RunningRegistry,
    dst: RunningRegistry,
    keys: list[Path],
    *,
    tags: list[str] | None = None,
    **verify: Any,
) -> dict[str, Any]:
    """The whole repository (signature tags included), or only `tags`."""
    cosign_policy: dict[str, Any] = {"keys": [str(k) for k in keys]}
    if "identity" in verify:
        cosign_policy["identity"] = verify.pop("identity")
    out: dict[str, Any] = {"source": f"{src.host}/app", "destination": f"{dst.host}/mirror/app"}
    if tags is not None:
        out["tags"] = {"allow": tags}
    out["verify"] = {"cosign": cosign_policy, **verify}
    return out


async def run(tmp_path: Path, entries: list[dict[str, Any]], *regs: RunningRegistry) -> RunReport:
    cfg = write_sync_yaml(tmp_path / "sync.yaml", entries, *regs)
    return await Runner(load_config(cfg)).run()


def outcomes(e: EntryReport) -> dict[str, tuple[str, str]]:
    return {t.tag: (t.action, t.reason) for t in e.tags}


def touched(requests: list[LoggedRequest], needle: str) -> list[LoggedRequest]:
    return [r for r in requests if needle in r.path]


def with_v1(factory: RegistryFactory) -> tuple[RunningRegistry, RunningRegistry, Image]:
    """A source holding one image at `app:v1`, and an empty destination."""
    src, dst = factory("anon"), factory("anon")
    image = app_image(0, 0)
    push(src.seed_url, "app", image, "v1")
    return src, dst, image


async def verdict_on_v1(
    tmp_path: Path, src: RunningRegistry, dst: RunningRegistry
) -> tuple[str, str]:
    """(action, reason) for v1 when only ECDSA's public key is trusted."""
    report = await run(tmp_path, [entry(src, dst, [key_file(tmp_path, ECDSA)])], src, dst)
    return outcomes(report.entries[0])["v1"]


@pytest.mark.parametrize("kind", cosign.KINDS)
async def test_signed_tag_is_copied_with_its_signature_and_verifies_downstream(
    registry_factory: RegistryFactory, tmp_path: Path, kind: cosign.KeyKind
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    key = ECDSA if kind == "ecdsa" else SigningKey.generate(kind)
    image = app_image(0, 0)
    push(src.seed_url, "app", image, "v1")
    sig = cosign.sign(src.seed_url, src.host, "app", image.digest, key)
    payload_digest = cosign.signed(key, cosign.payload(f"{src.host}/app", image.digest)).blob.digest
    pub = key_file(tmp_path, key)

    # Only v1 is selected, so its signature tag is not also listed and planned as a tag:
    # the requests below are exactly what verification adds.
    mark = src.mark()
    report = await run(tmp_path, [entry(src, dst, [pub], tags=["v1"])], src, dst)
    e = report.entries[0]
    assert outcomes(e)["v1"][0] == "copied"
    assert report.status == "ok" and e.counters.tags_rejected == 0
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == image.digest
    assert fetch_manifest_digest(dst.url, "mirror/app", sig_tag(image.digest)) == sig
    # At the source: verifying is one GET of the signature manifest and one of the
    # payload; carrying the signature over reuses that manifest and copies its blobs.
    new = src.requests_since(mark)
    assert [(r.method, r.status) for r in touched(new, sig_tag(image.digest))] == [("GET", 200)]
    assert touched(new, f"/manifests/{sig}") == []
    assert [r.method for r in touched(new, payload_digest)] == ["GET", "GET"]
    # The signature lands first, so a mirrored tag never lacks it (even after a killed run).
    puts = [r.path for r in dst.requests() if r.method == "PUT" and "/manifests/" in r.path]
    assert puts == [
        f"/v2/mirror/app/manifests/{sig_tag(image.digest)}",
        "/v2/mirror/app/manifests/v1",
    ]

    # Downstream: the mirror verifies on its own, with the same key.
    policy = VerifyConfig.model_validate(
        {"cosign": {"keys": [str(pub)], "identity": f"{src.host}/app"}}
    )
    async with make_client(dst) as client:
        signed = await Verifier(client).verify(
            load_config(tmp_path / "sync.yaml").entries[0].destination, image.digest, policy
        )
    assert signed.manifest.digest == sig

    # Up to date: verified when copied, so no signature request at all this time.
    mark = src.mark()
    again = await run(tmp_path, [entry(src, dst, [pub], tags=["v1"])], src, dst)
    assert outcomes(again.entries[0])["v1"][0] == "up_to_date"
    assert touched(src.requests_since(mark), ".sig") == []


def test_unsigned_tag_is_rejected_before_anything_is_read(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    signed_img, unsigned = app_image(0, 0), app_image(0, 1)
    push(src.seed_url, "app", signed_img, "v1")
    push(src.seed_url, "app", unsigned, "v2")
    cosign.sign(src.seed_url, src.host, "app", signed_img.digest, ECDSA)
    e = entry(src, dst, [key_file(tmp_path, ECDSA)], tags=["v1", "v2"])
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [e], src, dst)
    assert main(["check", "-c", str(cfg), "-q"]) == 1  # out of sync: both are to copy

    mark = src.mark()
    report_file = tmp_path / "report.json"
    assert main(["sync", "-c", str(cfg), "-q", "--report", str(report_file)]) == 0
    doc = json.loads(report_file.read_text())
    assert doc["status"] == "ok"
    assert doc["totals"]["tags_rejected"] == 1 and doc["totals"]["tags_copied"] == 1
    v2 = next(t for t in doc["entries"][0]["tags"] if t["tag"] == "v2")
    assert v2["action"] == "rejected"
    assert v2["reason"] == f"no signature: {src.host}/app:{sig_tag(unsigned.digest)} does not exist"
    assert fetch_manifest_digest(dst.url, "mirror/app", "v2") is None
    # Nothing of v2 was read: no manifest GET by its digest, none of its own layer blobs.
    new = src.requests_since(mark)
    assert touched(new, f"/manifests/{unsigned.digest}") == []
    assert touched(new, unsigned.layers[-1].digest) == []
    # The signed tag is in sync; the rejected one never is, so `check` keeps saying so.
    assert main(["check", "-c", str(cfg), "-q"]) == 1


async def test_signature_replayed_from_a_sibling_tag_is_for_another_digest(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    good, evil = app_image(0, 0), app_image(0, 1)
    push(src.seed_url, "app", good, "v1")
    push(src.seed_url, "app", evil, "v2")
    cosign.sign(src.seed_url, src.host, "app", good.digest, ECDSA)
    # The attacker copies v1's genuine signature to v2's signature tag.
    replay = cosign.signed(ECDSA, cosign.payload(f"{src.host}/app", good.digest))
    cosign.push_signatures(src.seed_url, "app", evil.digest, [replay])
    report = await run(tmp_path, [entry(src, dst, [key_file(tmp_path, ECDSA)])], src, dst)
    got = outcomes(report.entries[0])
    assert got["v1"][0] == "copied"
    assert got[sig_tag(good.digest)][0] == "copied"  # the whole repository is mirrored
    # What is attached to a rejected digest is rejected with it, for the same reason.
    assert got[sig_tag(evil.digest)] == (
        "rejected",
        f"signature for another digest: its subject {evil.digest}: payload "
        f"{replay.blob.digest} signs {good.digest}, not {evil.digest}",
    )
    assert got["v2"] == (
        "rejected",
        f"signature for another digest: payload {replay.blob.digest} signs {good.digest}, "
        f"not {evil.digest}",
    )
    assert fetch_manifest_digest(dst.url, "mirror/app", "v2") is None
    assert fetch_manifest_digest(dst.url, "mirror/app", sig_tag(evil.digest)) is None


async def test_payload_changed_after_signing(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    """The payload was edited and the old signature kept. Without the signer's key this
    cannot be told from a signature by another key: no trusted key verifies it."""
    src, dst, image = with_v1(registry_factory)
    genuine = cosign.signed(ECDSA, cosign.payload(f"{src.host}/app", image.digest))
    edited = cosign.payload(f"{src.host}/app", image.digest, {"approved": "yes"})
    cosign.push_signatures(
        src.seed_url, "app", image.digest, [cosign.Signature(edited, genuine.signature)]
    )
    action, reason = await verdict_on_v1(tmp_path, src, dst)
    assert action == "rejected"
    assert reason.startswith("no key matched: payload " + cosign.Blob.of(edited, "").digest)
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") is None


async def test_corrupt_signature_is_a_bad_signature(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, image = with_v1(registry_factory)
    body = cosign.payload(f"{src.host}/app", image.digest)
    good = cosign.signed(ECDSA, body)
    mangled = "!" + good.signature[1:]  # no longer base64
    cosign.push_signatures(src.seed_url, "app", image.digest, [cosign.Signature(body, mangled)])
    mark = src.mark()
    assert await verdict_on_v1(tmp_path, src, dst) == (
        "rejected",
        "bad signature: dev.cosignproject.cosign/signature is not base64",
    )
    assert touched(src.requests_since(mark), good.blob.digest) == []  # payload never fetched
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") is None


async def test_wrong_key_and_any_one_key_may_match(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, image = with_v1(registry_factory)
    vendor = SigningKey.generate("ed25519")
    cosign.sign(src.seed_url, src.host, "app", image.digest, vendor)
    ours = key_file(tmp_path, ECDSA)
    report = await run(tmp_path, [entry(src, dst, [ours], tags=["v1"])], src, dst)
    action, reason = outcomes(report.entries[0])["v1"]
    # An Ed25519 signature is not even shaped like an ECDSA one: judged without the payload.
    assert (action, reason) == (
        "rejected",
        f"no key matched: the signature is not in a form any of {ours} makes",
    )
    assert report.entries[0].counters.tags_rejected == 1
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") is None

    # Adding the vendor's key (through ${VAR}, as docs/signatures.md shows) lets it through.
    theirs = key_file(tmp_path, vendor, "vendor.pub")
    e = entry(src, dst, [ours])
    e["verify"]["cosign"]["keys"].append("${VENDOR_KEY_FILE}")
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [e], src, dst)
    loaded = load_config(cfg, env={"VENDOR_KEY_FILE": str(theirs)})
    report = await Runner(loaded).run()
    assert outcomes(report.entries[0])["v1"][0] == "copied"
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == image.digest


async def test_identity_mismatch_regex_is_anchored(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, image = with_v1(registry_factory)
    cosign.sign(src.seed_url, src.host, "app", image.digest, ECDSA)
    pub = key_file(tmp_path, ECDSA)
    prefix = f"{src.host}/ap".replace(".", r"\.")  # matches the start of host/app only
    report = await run(tmp_path, [entry(src, dst, [pub], identity=prefix)], src, dst)
    assert outcomes(report.entries[0])["v1"] == (
        "rejected",
        f"identity mismatch: payload names {src.host}/app, which does not match {prefix}",
    )
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") is None
    report = await run(tmp_path, [entry(src, dst, [pub], identity=prefix + "p")], src, dst)
    assert outcomes(report.entries[0])["v1"][0] == "copied"


async def test_malformed_payload(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    src, dst, image = with_v1(registry_factory)
    body = cosign.go_json({"critical": {"image": {"docker-manifest-digest": image.digest}}})
    cosign.push_signatures(src.seed_url, "app", image.digest, [cosign.signed(ECDSA, body)])
    assert await verdict_on_v1(tmp_path, src, dst) == (
        "rejected",
        "malformed payload: critical.type is None, not 'cosign container image signature'",
    )


async def test_oversized_payload_and_too_many_signatures_are_never_read(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    big, many = app_image(0, 0), app_image(0, 1)
    push(src.seed_url, "app", big, "v1")
    push(src.seed_url, "app", many, "v2")
    huge = cosign.signed(
        ECDSA, cosign.payload(f"{src.host}/app", big.digest, {"pad": "x" * (1024 * 1024)})
    )
    cosign.push_signatures(src.seed_url, "app", big.digest, [huge])
    body = cosign.payload(f"{src.host}/app", many.digest)
    crowd = [cosign.signed(ECDSA, body + b" " * i) for i in range(65)]
    cosign.push_signatures(src.seed_url, "app", many.digest, crowd)
    mark = src.mark()
    report = await run(tmp_path, [entry(src, dst, [key_file(tmp_path, ECDSA)])], src, dst)
    got = outcomes(report.entries[0])
    assert got["v1"] == (
        "rejected",
        f"signature over limits: payload {huge.blob.digest} is {huge.blob.size} bytes, "
        "over the limit of 1048576",
    )
    assert got["v2"] == (
        "rejected",
        f"signature over limits: {sig_tag(many.digest)} holds 65 signatures, over 64",
    )
    new = src.requests_since(mark)
    assert touched(new, huge.blob.digest) == []
    assert all(touched(new, s.blob.digest) == [] for s in crowd)


async def test_oversized_signature_manifest(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, image = with_v1(registry_factory)
    good = cosign.signed(ECDSA, cosign.payload(f"{src.host}/app", image.digest))
    padded = cosign.Signature(good.payload, good.signature + " " * (1024 * 1024))
    cosign.push_signatures(src.seed_url, "app", image.digest, [padded])
    action, reason = await verdict_on_v1(tmp_path, src, dst)
    assert action == "rejected"
    assert reason.startswith("signature over limits: manifest ")
    assert "over the limit of 1048576" in reason


async def test_multi_arch_index_signed_at_the_index_level(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    index = make_index(
        [app_image(0, 0, fmt="oci"), app_image(0, 0, fmt="oci", arch="arm64")], fmt="oci"
    )
    push(src.seed_url, "app", index, "v1")
    sig = cosign.sign(src.seed_url, src.host, "app", index.digest, ECDSA)
    report = await run(tmp_path, [entry(src, dst, [key_file(tmp_path, ECDSA)])], src, dst)
    assert outcomes(report.entries[0])["v1"][0] == "copied"
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == index.digest
    for child in index.children:
        assert fetch_manifest_digest(dst.url, "mirror/app", child.digest) == child.digest
    assert fetch_manifest_digest(dst.url, "mirror/app", sig_tag(index.digest)) == sig


def test_on_failure_fail_fails_the_entry(registry_factory: RegistryFactory, tmp_path: Path) -> None:
    src, dst = registry_factory("anon"), registry_factory("anon")
    push(src.seed_url, "app", app_image(0, 0), "v1")
    e = entry(src, dst, [key_file(tmp_path, ECDSA)], on_failure="fail")
    cfg = write_sync_yaml(tmp_path / "sync.yaml", [e], src, dst)
    report_file = tmp_path / "report.json"
    assert main(["sync", "-c", str(cfg), "-q", "--report", str(report_file)]) == 1
    doc = json.loads(report_file.read_text())
    assert doc["status"] == "failed"
    assert doc["totals"]["tags_rejected"] == 1
    assert doc["entries"][0]["errors"][0]["error"].startswith("v1 rejected (no signature: ")


async def test_recheck_verifies_up_to_date_tags_every_run(
    registry_factory: RegistryFactory, tmp_path: Path
) -> None:
    src, dst, image = with_v1(registry_factory)
    cosign.sign(src.seed_url, src.host, "app", image.digest, ECDSA)
    pub = key_file(tmp_path, ECDSA)
    await run(tmp_path, [entry(src, dst, [pub], tags=["v1"])], src, dst)
    # Re-signed at the source with a second key: recheck carries the new signature over.
    other = SigningKey.generate("ed25519")
    sig2 = cosign.sign(src.seed_url, src.host, "app", image.digest, other, append=True)
    mark = src.mark()
    report = await run(tmp_path, [entry(src, dst, [pub], tags=["v1"], recheck=True)], src, dst)
    assert outcomes(report.entries[0])["v1"][0] == "up_to_date"
    sig_requests = touched(src.requests_since(mark), f"/manifests/{sig_tag(image.digest)}")
    assert [r.method for r in sig_requests] == ["GET"]
    assert fetch_manifest_digest(dst.url, "mirror/app", sig_tag(image.digest)) == sig2
    # The signatures are replaced by one from an untrusted key: recheck reports it.
    cosign.push_signatures(
        src.seed_url,
        "app",
        image.digest,
        [cosign.signed(other, cosign.payload(f"{src.host}/app", image.digest))],
    )
    report = await run(tmp_path, [entry(src, dst, [pub], tags=["v1"], recheck=True)], src, dst)
    e = report.entries[0]
    assert outcomes(e)["v1"][0] == "rejected"
    assert (e.counters.tags_rejected, e.counters.tags_up_to_date) == (1, 0)
    assert report.status == "ok"
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == image.digest  # kept
