"""Keyless bundles (verify_keyless): real certificates, SCTs, log proofs from a private
Sigstore (tests/support/sigstore_root.py), verified offline; each flaw has its reason."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import requests

from syncer.config.keyless import KeylessPolicy
from syncer.errors import Rejected
from syncer.verify.keyless import KeylessReason, verify_keyless
from tests.support import sigstore_world
from tests.support.sigstore_root import GITHUB_ISSUER, WORKFLOW, Flaws, Sigstore
from tests.support.sigstore_world import World

world = sigstore_world.world


def rejected(bundle: bytes, policy: KeylessPolicy) -> Rejected:
    with pytest.raises(Rejected) as info:
        verify_keyless(bundle, policy)
    return info.value


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """Any connection but loopback, and any HTTP client at all, is recorded and refused."""
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def connect(self: socket.socket, address: Any) -> None:
        host = address[0] if isinstance(address, tuple) else str(address)
        if host not in ("127.0.0.1", "::1", "localhost") and not str(host).startswith("/"):
            attempts.append(f"connect {host}")
            raise OSError("network disabled by the test")
        real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kw: Any) -> Any:
        attempts.append(f"resolve {host}")
        raise OSError("name resolution disabled by the test")

    def refuse(name: str) -> Any:
        def init(*args: Any, **kw: Any) -> None:
            attempts.append(f"new {name}")
            raise RuntimeError(f"{name} created during offline verification")

        return init

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(requests.Session, "__init__", refuse("requests.Session"))
    monkeypatch.setattr(httpx.Client, "__init__", refuse("httpx.Client"))
    yield attempts


def test_a_good_keyless_bundle_verifies_offline_and_yields_its_statement(
    world: World, no_network: list[str]
) -> None:
    payload = verify_keyless(world.sigstore.keyless_bundle(world.statement), world.policy())
    assert payload == world.statement
    statement = json.loads(payload)
    assert statement["predicateType"] == "https://sigstore.dev/cosign/sign/v1"
    assert statement["subject"][0]["digest"] == {"sha256": "5e" * 32}
    assert no_network == []


def test_the_packaged_production_root_is_used_offline_and_writes_nothing(
    world: World, no_network: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # sigstore's TUF client would refresh (network) or at least seed ~/.cache (a write).
    home = tmp_path / "home"
    home.mkdir()
    for var, sub in (("HOME", ""), ("XDG_CACHE_HOME", ".cache"), ("XDG_DATA_HOME", ".data")):
        monkeypatch.setenv(var, str(home / sub))
    policy = KeylessPolicy.model_validate(
        {"identities": [{"subject": WORKFLOW, "issuer": GITHUB_ISSUER}]}
    )
    root = policy.load_root()
    assert any("sigstore.dev" in t.base_url for t in root._inner.tlogs)
    # Our private CA is not Sigstore's: the chain does not reach the production root.
    error = rejected(world.sigstore.keyless_bundle(world.statement), policy)
    assert error.reason == KeylessReason.UNTRUSTED
    assert no_network == [] and list(home.iterdir()) == []


@pytest.mark.parametrize(
    ("flaw", "reason", "detail"),
    [
        ("integrated_after_expiry", KeylessReason.CERT_TIME, "outside the certificate's validity"),
        (
            "tampered_proof",
            KeylessReason.LOG_PROOF,
            "the inclusion proof does not lead to its root",
        ),
        ("tampered_checkpoint", KeylessReason.LOG_PROOF, "checkpoint names another root hash"),
        ("forged_set", KeylessReason.LOG_PROOF, "the SET does not verify with a log key"),
        ("other_payload_in_log", KeylessReason.LOG_PROOF, "payload hash does not match"),
        ("forged_signature", KeylessReason.BAD_SIGNATURE, "DSSE: invalid signature"),
    ],
)
def test_each_flaw_is_rejected_with_its_reason(
    world: World, no_network: list[str], flaw: str, reason: KeylessReason, detail: str
) -> None:
    bundle = world.sigstore.keyless_bundle(world.statement, flaws=Flaws(**{flaw: True}))
    error = rejected(bundle, world.policy())
    assert (error.reason, detail in error.detail) == (reason, True), str(error)
    assert no_network == []


def test_wrong_identity_and_wrong_issuer_are_told_apart(world: World) -> None:
    s = world.sigstore
    error = rejected(
        s.keyless_bundle(world.statement, identity="mallory@example.com"), world.policy()
    )
    assert error.reason == KeylessReason.IDENTITY
    assert error.detail == (
        f"signed by mallory@example.com from {GITHUB_ISSUER}; "
        f"the policy accepts {WORKFLOW} from {GITHUB_ISSUER}"
    )
    other_issuer = s.keyless_bundle(world.statement, issuer="https://accounts.google.com")
    error = rejected(other_issuer, world.policy())
    assert error.reason == KeylessReason.ISSUER
    assert error.detail.startswith(f"signed by {WORKFLOW} from https://accounts.google.com;")


def test_subject_regex_matches_the_whole_identity(world: World) -> None:
    bundle = world.sigstore.keyless_bundle(world.statement)
    whole = world.policy(subject_regex=r"https://github\.com/example/.*", issuer=GITHUB_ISSUER)
    assert verify_keyless(bundle, whole) == world.statement
    part = world.policy(subject_regex=r"github\.com/example", issuer=GITHUB_ISSUER)
    assert rejected(bundle, part).reason == KeylessReason.IDENTITY


def test_any_listed_identity_may_sign(world: World) -> None:
    email = world.sigstore.keyless_bundle(world.statement, identity="release@example.com")
    policy = KeylessPolicy.model_validate(
        {
            "trusted_root": str(world.root),
            "identities": [
                {"subject": WORKFLOW, "issuer": GITHUB_ISSUER},
                {"subject_regex": r".*@example\.com", "issuer": GITHUB_ISSUER},
            ],
        }
    )
    assert verify_keyless(email, policy) == world.statement


def test_a_certificate_from_another_ca_is_untrusted(world: World) -> None:
    stranger = Sigstore()
    error = rejected(stranger.keyless_bundle(world.statement), world.policy())
    assert error.reason == KeylessReason.UNTRUSTED
    assert "certificate chain" in error.detail
    # Logged late too: the foreign chain is still the reason, not the time.
    late = stranger.keyless_bundle(world.statement, flaws=Flaws(integrated_after_expiry=True))
    assert rejected(late, world.policy()).reason == KeylessReason.UNTRUSTED


def test_a_refreshed_trusted_root_file_is_read_again(world: World, tmp_path: Path) -> None:
    # A rotated CA: the file is replaced while the policy (sync.yaml) stays as it was.
    old, new = Sigstore(), Sigstore()
    path = old.write_trusted_root(tmp_path / "trusted_root.json")
    policy = KeylessPolicy.model_validate(
        {"trusted_root": str(path), "identities": [{"subject": WORKFLOW, "issuer": GITHUB_ISSUER}]}
    )
    bundle = new.keyless_bundle(world.statement)
    assert rejected(bundle, policy).reason == KeylessReason.UNTRUSTED
    new.write_trusted_root(path)
    assert verify_keyless(bundle, policy) == world.statement


@pytest.mark.parametrize(
    ("bundle", "detail"),
    [
        (b"not json", "failed to load bundle"),
        (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', "failed to load"),
    ],
)
def test_malformed_bundles_are_rejected(world: World, bundle: bytes, detail: str) -> None:
    error = rejected(bundle, world.policy())
    assert error.reason == KeylessReason.MALFORMED and detail in error.detail


def test_a_key_signed_bundle_is_not_a_keyless_one(world: World) -> None:
    error = rejected(world.sigstore.key_bundle(world.signer, world.statement), world.policy())
    assert error.reason == KeylessReason.MALFORMED


def test_a_log_flaw_is_told_by_sigstores_words_not_by_the_bytes_it_prints() -> None:
    """sigstore prints the whole inclusion proof in its message; random hash bytes there
    once held "sct", and a tampered proof came out as an untrusted certificate."""
    from sigstore.errors import VerificationError

    from syncer.verify.keyless import _reason

    proof = "InclusionProof(log_index=5, root_hash=b'\\x9a_Sct\\x01usage', hashes=[b'q'])"
    e = VerificationError(
        f"inclusion proof contains invalid root hash: expected {proof}, calculated 00ff"
    )
    assert _reason(e) == KeylessReason.LOG_PROOF
    assert _reason(VerificationError("SCT verification failed")) == KeylessReason.UNTRUSTED
