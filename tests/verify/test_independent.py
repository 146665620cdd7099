"""Every kind of bundle the tests build is judged by @sigstore/verify too (issue 27 §5):
what syncer accepts, it accepts; what syncer rejects, it rejects. A bundle that only
syncer accepts would be a fixture bug."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from syncer.config.keys import load_key
from syncer.errors import Rejected
from syncer.verify.keyless import KeylessReason, verify_keyless
from syncer.verify.tlog import tlog_flaw
from tests.support import bundles, independent, sigstore_world
from tests.support.cosign import KeyKind, SigningKey
from tests.support.sigstore_root import GITHUB_ISSUER, IN_TOTO, WORKFLOW, Flaws, pae
from tests.support.sigstore_world import World

world = sigstore_world.world
KEYLESS_FLAWS = [
    "integrated_after_expiry",
    "tampered_proof",
    "tampered_checkpoint",
    "forged_set",
    "forged_signature",
    "other_payload_in_log",
]
LOG_FLAWS = ["tampered_proof", "tampered_checkpoint", "forged_set", "other_payload_in_log"]


@pytest.fixture(autouse=True)
def _node() -> None:
    independent.node()  # skips, saying why, where node or the npm install is missing


def keyless_verdict(world: World, bundle: bytes, **policy: str) -> independent.Verdict:
    return independent.verify(
        world.write("bundle.json", bundle),
        trusted_root=world.root,
        identity=policy.get("identity", WORKFLOW),
        issuer=policy.get("issuer", GITHUB_ISSUER),
    )


def syncer_keyless(world: World, bundle: bytes) -> str | None:
    """None when syncer accepts the bundle, else its reason."""
    try:
        verify_keyless(bundle, world.policy())
    except Rejected as e:
        return e.reason
    return None


def signed_by_key(world: World, bundle: bytes) -> bool:
    """syncer's key check of a DSSE envelope (config/keys.py, the keys of `keys:`)."""
    envelope = json.loads(bundle)["dsseEnvelope"]
    key = load_key(world.signer_pub, "cosign.pub")
    payload = base64.b64decode(envelope["payload"])
    sig = base64.b64decode(envelope["signatures"][0]["sig"])
    return key.verifies(sig, pae(envelope["payloadType"], payload))


def test_a_good_keyless_bundle_is_accepted_by_both(world: World) -> None:
    bundle = world.sigstore.keyless_bundle(world.statement)
    verdict = keyless_verdict(world, bundle)
    assert (verdict.code, verdict.output) == (0, "verified")
    assert syncer_keyless(world, bundle) is None


@pytest.mark.parametrize("flaw", KEYLESS_FLAWS)
def test_flawed_keyless_bundles_are_rejected_by_both(world: World, flaw: str) -> None:
    bundle = world.sigstore.keyless_bundle(world.statement, flaws=Flaws(**{flaw: True}))
    verdict = keyless_verdict(world, bundle)
    assert verdict.code == 1 and verdict.output.startswith("rejected: "), verdict
    assert syncer_keyless(world, bundle) is not None


@pytest.mark.parametrize(
    ("signer", "reason"),
    [
        ({"identity": "mallory@example.com"}, KeylessReason.IDENTITY),
        ({"issuer": "https://accounts.google.com"}, KeylessReason.ISSUER),
    ],
)
def test_another_signer_is_rejected_by_both(
    world: World, signer: dict[str, str], reason: KeylessReason
) -> None:
    bundle = world.sigstore.keyless_bundle(world.statement, **signer)
    verdict = keyless_verdict(world, bundle)
    assert verdict.code == 1 and "UNTRUSTED_SIGNER_ERROR" in verdict.output, verdict
    assert syncer_keyless(world, bundle) == reason


def test_a_logged_key_signed_bundle_is_accepted_by_both(world: World) -> None:
    bundle = world.sigstore.key_bundle(world.signer, world.statement)
    verdict = independent.verify(
        world.write("bundle.json", bundle), key=world.signer_pub, trusted_root=world.root
    )
    assert (verdict.code, verdict.output) == (0, "verified")
    assert signed_by_key(world, bundle)
    assert tlog_flaw(bundle, [load_key(world.rekor_pub, "rekor.pub")]) is None


@pytest.mark.parametrize("flaw", LOG_FLAWS)
def test_a_bad_log_entry_is_rejected_by_both(world: World, flaw: str) -> None:
    bundle = world.sigstore.key_bundle(world.signer, world.statement, flaws=Flaws(**{flaw: True}))
    verdict = independent.verify(
        world.write("bundle.json", bundle), key=world.signer_pub, trusted_root=world.root
    )
    assert verdict.code == 1, verdict
    assert signed_by_key(world, bundle)  # the signature is fine: the log entry is not
    assert tlog_flaw(bundle, [load_key(world.rekor_pub, "rekor.pub")]) is not None


def test_an_unlogged_key_signed_bundle_verifies_by_key_alone_in_both(world: World) -> None:
    bundle = world.sigstore.key_bundle(world.signer, world.statement, tlog=False)
    path = world.write("bundle.json", bundle)
    verdict = independent.verify(path, key=world.signer_pub)  # tlog threshold 0
    assert (verdict.code, verdict.output) == (0, "verified")
    assert signed_by_key(world, bundle)
    # Where a log entry is required, both refuse it.
    required = independent.verify(path, key=world.signer_pub, trusted_root=world.root)
    assert required.code == 1, required
    assert tlog_flaw(bundle, [load_key(world.rekor_pub, "rekor.pub")]) is not None


def test_a_forged_key_signature_is_rejected_by_both(world: World) -> None:
    forged = Flaws(forged_signature=True)
    for tlog in (False, True):
        bundle = world.sigstore.key_bundle(world.signer, world.statement, tlog=tlog, flaws=forged)
        root = world.root if tlog else None
        verdict = independent.verify(
            world.write("bundle.json", bundle), key=world.signer_pub, trusted_root=root
        )
        assert verdict.code == 1 and "SIGNATURE_ERROR" in verdict.output, verdict
        assert not signed_by_key(world, bundle)


def test_the_envelope_is_what_cosign_3_signs(world: World) -> None:
    # The statement both verifiers accepted: cosign sign's predicate, the image digest.
    bundle = json.loads(world.sigstore.keyless_bundle(world.statement))
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    envelope = bundle["dsseEnvelope"]
    assert envelope["payloadType"] == IN_TOTO
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    assert statement["subject"][0]["digest"] == {"sha256": "5e" * 32}


# Not RSA-PSS: syncer accepts it for `.sig` keys, but a Sigstore public key of RSA is
# PKCS#1 v1.5 to @sigstore/verify (cosign signs so).
@pytest.mark.parametrize("kind", ["ecdsa", "rsa-pkcs1", "ed25519"])
def test_the_key_bundles_the_sync_tests_push_are_accepted_by_sigstore_verify(
    tmp_path: Path, kind: KeyKind
) -> None:
    """tests/support/bundles.py makes what tests/sync/test_verify_bundles.py mirrors; an
    independent verifier must accept it too, and refuse it under another key."""
    key, other = SigningKey.generate(kind), SigningKey.generate(kind)
    data = bundles.bundle(key, bundles.statement("sha256:" + "ab" * 32, name="app"))
    path = tmp_path / "bundle.json"
    path.write_bytes(data)
    good, bad = tmp_path / "good.pub", tmp_path / "other.pub"
    good.write_bytes(key.public_pem())
    bad.write_bytes(other.public_pem())
    assert independent.verify(path, key=good).verified
    assert independent.verify(path, key=bad).code == 1
