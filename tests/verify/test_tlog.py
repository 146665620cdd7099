"""tlog_flaw: a key-signed bundle's transparency-log entry, checked offline against the log
keys of `transparency_log: {keys: [...]}`; each flaw is named."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from syncer.config.keyfile import CONFIG_DIR
from syncer.config.keyless import TlogPolicy
from syncer.config.keys import load_key
from syncer.verify.tlog import tlog_flaw
from tests.support import sigstore_world
from tests.support.sigstore_root import Flaws, Sigstore
from tests.support.sigstore_world import World

world = sigstore_world.world


def log_keys(world: World) -> TlogPolicy:
    return TlogPolicy.model_validate(
        {"keys": [world.rekor_pub.name]}, context={CONFIG_DIR: world.dir}
    )


def test_a_logged_key_signed_bundle_passes(world: World) -> None:
    bundle = world.sigstore.key_bundle(world.signer, world.statement)
    assert tlog_flaw(bundle, log_keys(world).trusted) is None


def test_a_bundle_without_log_entry_fails_the_policy(world: World) -> None:
    bundle = world.sigstore.key_bundle(world.signer, world.statement, tlog=False)
    assert tlog_flaw(bundle, log_keys(world).trusted) == (
        "no transparency-log entry (signed with --tlog-upload=false?)"
    )


@pytest.mark.parametrize(
    ("flaw", "message"),
    [
        ("tampered_proof", "log entry 5: the inclusion proof does not lead to its root"),
        ("tampered_checkpoint", "log entry 5: the signed checkpoint names another root hash"),
        ("forged_set", "log entry 5: the SET does not verify with a log key"),
        (
            "other_payload_in_log",
            "log entry 5 (dsse 0.0.1): the logged payload hash is not this payload's",
        ),
    ],
)
def test_each_flaw_is_named(world: World, flaw: str, message: str) -> None:
    bundle = world.sigstore.key_bundle(world.signer, world.statement, flaws=Flaws(**{flaw: True}))
    assert tlog_flaw(bundle, log_keys(world).trusted) == message


def test_another_logs_entry_does_not_count(world: World) -> None:
    other = Sigstore().key_bundle(world.signer, world.statement)
    assert tlog_flaw(other, log_keys(world).trusted) == (
        "log entry 5: the checkpoint signature does not verify with a log key"
    )


def test_a_logged_signature_must_be_the_envelopes(world: World) -> None:
    # A real entry for the same payload, but the envelope carries another signature.
    doc = json.loads(world.sigstore.key_bundle(world.signer, world.statement))
    resigned = json.loads(world.sigstore.key_bundle(world.signer, world.statement))
    doc["dsseEnvelope"] = resigned["dsseEnvelope"]  # ECDSA: a new signature each time
    assert tlog_flaw(json.dumps(doc).encode(), log_keys(world).trusted) == (
        "log entry 5 (dsse 0.0.1): the logged signature is not this envelope's"
    )


def test_an_intoto_entry_is_matched_too(world: World) -> None:
    # Rekor's `intoto` 0.0.2 records the envelope itself, its signatures base64-encoded twice.
    doc = json.loads(world.sigstore.key_bundle(world.signer, world.statement, tlog=False))
    envelope = doc["dsseEnvelope"]
    sig = envelope["signatures"][0]["sig"]
    body = json.dumps(
        {
            "apiVersion": "0.0.2",
            "kind": "intoto",
            "spec": {
                "content": {
                    "envelope": {
                        "payloadType": envelope["payloadType"],
                        "signatures": [{"sig": base64.b64encode(sig.encode()).decode()}],
                    },
                    "payloadHash": {
                        "algorithm": "sha256",
                        "value": hashlib.sha256(world.statement).hexdigest(),
                    },
                }
            },
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()
    entry = world.sigstore.tlog_entry(body, world.sigstore.start, Flaws())
    entry["kindVersion"] = {"kind": "intoto", "version": "0.0.2"}
    doc["verificationMaterial"]["tlogEntries"] = [entry]
    assert tlog_flaw(json.dumps(doc).encode(), log_keys(world).trusted) is None


@pytest.mark.parametrize(
    ("bundle", "message"),
    [
        (b"{", "the bundle is not JSON"),
        (
            b'{"verificationMaterial": {"tlogEntries": [{"logIndex": 1}]}}',
            "malformed transparency-log entry: ",
        ),
    ],
)
def test_malformed_input_is_named(world: World, bundle: bytes, message: str) -> None:
    flaw = tlog_flaw(bundle, log_keys(world).trusted)
    assert flaw is not None and flaw.startswith(message)


def test_log_keys_load_like_signing_keys(world: World) -> None:
    policy = log_keys(world)
    assert [k.path for k in policy.trusted] == ["rekor.pub"]
    assert policy.trusted[0].key.public_numbers() == (
        load_key(world.rekor_pub, "x").key.public_numbers()  # type: ignore[union-attr]
    )
