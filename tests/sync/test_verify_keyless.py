"""`verify: cosign: keyless:` and `transparency_log:` end to end: cosign 3 bundles from the
tests' private Sigstore (tests/support/sigstore_root.py), pushed as referrers into a real
docker-registry, judged by a run, and carried to the destination when they verify."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import bundles, sigstore_world
from tests.support.fleet import app_image
from tests.support.images import Image, fetch_manifest_digest, push
from tests.support.registry import RegistryFactory, RunningRegistry
from tests.support.sigstore_root import GITHUB_ISSUER, WORKFLOW, statement
from tests.support.sigstore_world import World
from tests.sync.test_verify import outcomes, run
from tests.sync.test_verify_bundles import listed

world = sigstore_world.world


def signed(src: RunningRegistry, image: Image, data: bytes) -> bundles.Referrer:
    ref = bundles.referrer(image.digest, image.size, image.media_type, data, bundles.COSIGN_SIGN)
    bundles.push_referrer(src.seed_url, "app", ref)
    return ref


def entry(src: RunningRegistry, dst: RunningRegistry, cosign: dict[str, Any]) -> dict[str, Any]:
    return {
        "source": f"{src.host}/app",
        "destination": f"{dst.host}/mirror/app",
        "tags": {"allow": ["v1"]},
        "verify": {"cosign": cosign},
    }


def keyless(world: World, **rule: str) -> dict[str, Any]:
    rule = rule or {"subject": WORKFLOW, "issuer": GITHUB_ISSUER}
    return {"keyless": {"trusted_root": str(world.root), "identities": [rule]}}


def with_v1(factory: RegistryFactory) -> tuple[RunningRegistry, RunningRegistry, Image]:
    src, dst = factory("anon"), factory("anon")
    image = app_image(0, 0, fmt="oci")
    push(src.seed_url, "app", image, "v1")
    return src, dst, image


async def test_a_keyless_bundle_for_the_configured_identity_verifies_and_travels(
    registry_factory: RegistryFactory, tmp_path: Path, world: World
) -> None:
    src, dst, image = with_v1(registry_factory)
    ref = signed(src, image, world.sigstore.keyless_bundle(statement(image.digest, "app")))
    report = await run(tmp_path, [entry(src, dst, keyless(world))], src, dst)
    assert outcomes(report.entries[0])["v1"][0] == "copied"
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == image.digest
    assert fetch_manifest_digest(dst.url, "mirror/app", ref.digest) == ref.digest
    assert listed(dst, "mirror/app", image.digest) == [ref.digest]


async def test_keyless_bundles_of_another_identity_issuer_or_image_are_rejected(
    registry_factory: RegistryFactory, tmp_path: Path, world: World
) -> None:
    cases = {
        "wrong identity": keyless(world, subject=WORKFLOW + "x", issuer=GITHUB_ISSUER),
        "wrong issuer": keyless(world, subject=WORKFLOW, issuer="https://accounts.google.com"),
    }
    for reason, policy in cases.items():
        src, dst, image = with_v1(registry_factory)
        signed(src, image, world.sigstore.keyless_bundle(statement(image.digest, "app")))
        report = await run(tmp_path, [entry(src, dst, policy)], src, dst)
        action, why = outcomes(report.entries[0])["v1"]
        assert (action, why.split(":")[0]) == ("rejected", reason), why
        assert fetch_manifest_digest(dst.url, "mirror/app", "v1") is None
    # Replayed: a good bundle about another image, listed under this one's digest.
    src, dst, image = with_v1(registry_factory)
    other = app_image(1, 0, fmt="oci")
    signed(src, image, world.sigstore.keyless_bundle(statement(other.digest, "app")))
    report = await run(tmp_path, [entry(src, dst, keyless(world))], src, dst)
    action, why = outcomes(report.entries[0])["v1"]
    assert (action, why.split(":")[0]) == ("rejected", "signature for another digest"), why


async def test_a_required_transparency_log_entry_is_checked_offline(
    registry_factory: RegistryFactory, tmp_path: Path, world: World
) -> None:
    policy = {"keys": [str(world.signer_pub)], "transparency_log": {"keys": [str(world.rekor_pub)]}}
    body = lambda image: statement(image.digest, "app")  # noqa: E731
    src, dst, image = with_v1(registry_factory)
    signed(src, image, world.sigstore.key_bundle(world.signer, body(image), tlog=False))
    report = await run(tmp_path, [entry(src, dst, policy)], src, dst)
    action, why = outcomes(report.entries[0])["v1"]
    assert (action, why.split(":")[0]) == ("rejected", "bad log proof"), why
    assert "no transparency-log entry" in why
    src, dst, image = with_v1(registry_factory)
    signed(src, image, world.sigstore.key_bundle(world.signer, body(image), tlog=True))
    report = await run(tmp_path, [entry(src, dst, policy)], src, dst)
    assert outcomes(report.entries[0])["v1"][0] == "copied"
    assert fetch_manifest_digest(dst.url, "mirror/app", "v1") == image.digest
