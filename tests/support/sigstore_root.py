"""A Sigstore instance made by the test: its trusted root and the bundles it would issue.

Everything Fulcio, the CT log and Rekor would do is done here with keys made here:
- a CA as Fulcio's (a root and a code-signing intermediate, ECDSA P-384), whose leaf is a
  ten-minute certificate with an empty subject, a critical SAN (the identity), the OIDC
  issuer in Fulcio's extensions 1.3.6.1.4.1.57264.1.1 (raw) and .1.8 (DER UTF8String),
  and one embedded SCT (RFC 6962 §3.2: signed over the precertificate's TBS, with the
  issuer's key hash) from our CT log key;
- a Rekor v1 log (ECDSA P-256): a `dsse` 0.0.1 entry, an RFC 6962 Merkle tree of a few
  entries with its inclusion proof, a signed checkpoint (a C2SP signed note whose key hint
  is the first 4 bytes of the log ID) and the SET (the log's signature over the RFC 8785
  JSON of body, integratedTime, logID, logIndex);
- `trusted_root.json` in protobuf-specs' TrustedRoot JSON (media type
  application/vnd.dev.sigstore.trustedroot+json;version=0.1).

Bundles are v0.3 (application/vnd.dev.sigstore.bundle.v0.3+json) holding a DSSE envelope
of an in-toto statement, as `cosign sign` writes since cosign 3. Flaws a test asks for
(`Flaws`) are made before the affected part is signed, so each bundle has exactly one.
Both sigstore-python and @sigstore/verify accept the unflawed ones
(tests/verify/test_independent.py).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import rfc8785
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from tests.support.sigstore_encoding import (
    audit_path,
    b64,
    ca_usage,
    der_octets,
    der_utf8,
    leaf_hash,
    leaf_usage,
    log_id,
    pae,
    pem,
    rfc3339,
    spki,
    tree_root,
)

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
TRUSTED_ROOT = "application/vnd.dev.sigstore.trustedroot+json;version=0.1"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
WORKFLOW = "https://github.com/example/app/.github/workflows/release.yml@refs/heads/main"

OID_ISSUER_V1 = ObjectIdentifier("1.3.6.1.4.1.57264.1.1")
OID_ISSUER_V2 = ObjectIdentifier("1.3.6.1.4.1.57264.1.8")
OID_SCT_LIST = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def statement(digest: str, name: str = "registry.example/app") -> bytes:
    """An in-toto statement as `cosign sign` (cosign 3) signs it for image `digest`."""
    algo, _, hexd = digest.partition(":")
    return json.dumps(
        {
            "_type": STATEMENT_V1,
            "subject": [{"name": name, "digest": {algo: hexd}}],
            "predicateType": COSIGN_SIGN,
            "predicate": {},
        },
        separators=(",", ":"),
    ).encode()


@dataclass(frozen=True)
class Flaws:
    """One defect a test wants in a bundle; each is made before the part is signed."""

    integrated_after_expiry: bool = False  # the log entry is integrated after the cert expired
    tampered_proof: bool = False  # one hash of the inclusion proof is changed
    tampered_checkpoint: bool = False  # the checkpoint names another root hash
    forged_set: bool = False  # the SET is signed by another key
    forged_signature: bool = False  # the DSSE signature is by another key (logged as is)
    other_payload_in_log: bool = False  # the log entry names another payload's hash


@dataclass
class Sigstore:
    """A private Sigstore: its CA, CT log and Rekor keys, and what it issues."""

    start: dt.datetime = field(
        default_factory=lambda: (
            dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(hours=1)
        )
    )
    origin: str = "rekor.test.invalid - 4242424242"
    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    inter_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    ct_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    rekor_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    def __post_init__(self) -> None:
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sigstore.test")])
        not_after = self.start + dt.timedelta(days=3650)
        self.root_cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([*name, x509.NameAttribute(NameOID.COMMON_NAME, "root")]))
            .issuer_name(x509.Name([*name, x509.NameAttribute(NameOID.COMMON_NAME, "root")]))
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.start - dt.timedelta(days=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
            .add_extension(ca_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA384())
        )
        inter_name = x509.Name([*name, x509.NameAttribute(NameOID.COMMON_NAME, "intermediate")])
        self.inter_cert = (
            x509.CertificateBuilder()
            .subject_name(inter_name)
            .issuer_name(self.root_cert.subject)
            .public_key(self.inter_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.start - dt.timedelta(days=1))
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(ca_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.inter_key.public_key()), False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA384())
        )

    # -- the trusted root ------------------------------------------------------------
    def trusted_root(self) -> dict[str, Any]:
        start = self.start - dt.timedelta(days=1)

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": b64(spki(key.public_key())),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": rfc3339(start)},
                },
                "logId": {"keyId": b64(log_id(key.public_key()))},
            }

        return {
            "mediaType": TRUSTED_ROOT,
            "tlogs": [log(self.rekor_key, "https://rekor.test.invalid")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "sigstore.test", "commonName": "intermediate"},
                    "uri": "https://fulcio.test.invalid",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": b64(c.public_bytes(serialization.Encoding.DER))}
                            for c in (self.inter_cert, self.root_cert)
                        ]
                    },
                    "validFor": {"start": rfc3339(start)},
                }
            ],
            "ctlogs": [log(self.ct_key, "https://ctfe.test.invalid")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.write_text(json.dumps(self.trusted_root(), indent=2))
        return path

    def rekor_pem(self) -> bytes:
        return pem(self.rekor_key.public_key())

    # -- Fulcio ----------------------------------------------------------------------
    def leaf(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        identity: str,
        issuer: str,
        not_before: dt.datetime,
    ) -> x509.Certificate:
        """A Fulcio-shaped code-signing certificate with its embedded SCT."""
        san: x509.GeneralName = (
            x509.UniformResourceIdentifier(identity)
            if "://" in identity
            else x509.RFC822Name(identity)
        )
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.inter_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_before + dt.timedelta(minutes=10))
            .add_extension(leaf_usage(), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CODE_SIGNING]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.inter_key.public_key()),
                critical=False,
            )
            .add_extension(x509.SubjectAlternativeName([san]), critical=True)
            .add_extension(x509.UnrecognizedExtension(OID_ISSUER_V1, issuer.encode()), False)
            .add_extension(
                x509.UnrecognizedExtension(OID_ISSUER_V2, der_utf8(issuer)), critical=False
            )
        )
        precert = builder.sign(self.inter_key, hashes.SHA256())
        sct = self._sct(precert.tbs_certificate_bytes, not_before)
        sct_list = struct.pack(">H", len(sct) + 2) + struct.pack(">H", len(sct)) + sct
        cert = builder.add_extension(
            x509.UnrecognizedExtension(OID_SCT_LIST, der_octets(sct_list)), critical=False
        ).sign(self.inter_key, hashes.SHA256())
        assert cert.tbs_precertificate_bytes == precert.tbs_certificate_bytes
        return cert

    def _sct(self, tbs: bytes, when: dt.datetime) -> bytes:
        millis = int(when.timestamp() * 1000)
        issuer_hash = hashlib.sha256(spki(self.inter_key.public_key())).digest()
        signed = (
            struct.pack(">BBQH", 0, 0, millis, 1)  # v1, certificate_timestamp, precert_entry
            + issuer_hash
            + struct.pack(">I", len(tbs))[1:]
            + tbs
            + struct.pack(">H", 0)  # no extensions
        )
        sig = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        return (
            struct.pack(">B", 0)
            + log_id(self.ct_key.public_key())
            + struct.pack(">QH", millis, 0)
            + struct.pack(">BBH", 4, 3, len(sig))  # sha256, ecdsa
            + sig
        )

    # -- Rekor -----------------------------------------------------------------------
    def tlog_entry(
        self,
        body: bytes,
        integrated: dt.datetime,
        flaws: Flaws,
        *,
        index: int = 5,
        size: int = 7,
    ) -> dict[str, Any]:
        """The bundle's `tlogEntries[]` item for `body`, at `index` of a tree of `size`."""
        leaves = [leaf_hash(os.urandom(32)) for _ in range(size)]
        leaves[index] = leaf_hash(body)
        root = tree_root(leaves)
        hashes_ = audit_path(index, leaves)
        if flaws.tampered_proof:
            hashes_[0] = hashlib.sha256(hashes_[0]).digest()
        named_root = hashlib.sha256(root).digest() if flaws.tampered_checkpoint else root
        note = f"{self.origin}\n{size}\n{b64(named_root)}\n"
        note_sig = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        lid = log_id(self.rekor_key.public_key())
        name = self.origin.split(" ")[0]
        checkpoint = f"{note}\n\u2014 {name} {b64(lid[:4] + note_sig)}\n"
        itime = int(integrated.timestamp())
        promise = rfc8785.dumps(
            {"body": b64(body), "integratedTime": itime, "logID": lid.hex(), "logIndex": index}
        )
        set_key = ec.generate_private_key(ec.SECP256R1()) if flaws.forged_set else self.rekor_key
        return {
            "logIndex": str(index),
            "logId": {"keyId": b64(lid)},
            "kindVersion": {"kind": "dsse", "version": "0.0.1"},
            "integratedTime": str(itime),
            "inclusionPromise": {
                "signedEntryTimestamp": b64(set_key.sign(promise, ec.ECDSA(hashes.SHA256())))
            },
            "inclusionProof": {
                "logIndex": str(index),
                "rootHash": b64(root),
                "treeSize": str(size),
                "hashes": [b64(h) for h in hashes_],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": b64(body),
        }

    # -- bundles ---------------------------------------------------------------------
    def keyless_bundle(
        self,
        payload: bytes,
        *,
        identity: str = WORKFLOW,
        issuer: str = GITHUB_ISSUER,
        flaws: Flaws = Flaws(),
    ) -> bytes:
        """What `cosign sign` (keyless, cosign 3) stores: certificate, tlog entry, DSSE."""
        key = ec.generate_private_key(ec.SECP256R1())
        signed_at = self.start + dt.timedelta(minutes=1)
        cert = self.leaf(key, identity=identity, issuer=issuer, not_before=signed_at)
        envelope, body = _signed_envelope(
            key, payload, verifier=cert.public_bytes(serialization.Encoding.PEM), flaws=flaws
        )
        integrated = signed_at + dt.timedelta(minutes=20 if flaws.integrated_after_expiry else 1)
        return _bundle(
            {"certificate": {"rawBytes": b64(cert.public_bytes(serialization.Encoding.DER))}},
            [self.tlog_entry(body, integrated, flaws)],
            envelope,
        )

    def key_bundle(
        self,
        key: ec.EllipticCurvePrivateKey,
        payload: bytes,
        *,
        tlog: bool = True,
        hint: str = "",
        flaws: Flaws = Flaws(),
    ) -> bytes:
        """What `cosign sign --key` stores (with --tlog-upload=false when not `tlog`)."""
        envelope, body = _signed_envelope(key, payload, verifier=pem(key.public_key()), flaws=flaws)
        integrated = self.start + dt.timedelta(minutes=2)
        entries = [self.tlog_entry(body, integrated, flaws)] if tlog else []
        hint = hint or b64(hashlib.sha256(spki(key.public_key())).digest())
        return _bundle({"publicKey": {"hint": hint}}, entries, envelope)


def _signed_envelope(
    key: ec.EllipticCurvePrivateKey, payload: bytes, *, verifier: bytes, flaws: Flaws
) -> tuple[dict[str, Any], bytes]:
    """The DSSE envelope and its Rekor `dsse` 0.0.1 body (canonical JSON)."""
    signer = ec.generate_private_key(ec.SECP256R1()) if flaws.forged_signature else key
    sig = signer.sign(pae(IN_TOTO, payload), ec.ECDSA(hashes.SHA256()))
    envelope = {"payload": b64(payload), "payloadType": IN_TOTO, "signatures": [{"sig": b64(sig)}]}
    logged = payload + b" " if flaws.other_payload_in_log else payload
    body = rfc8785.dumps(
        {
            "apiVersion": "0.0.1",
            "kind": "dsse",
            "spec": {
                "envelopeHash": {
                    "algorithm": "sha256",
                    "value": hashlib.sha256(json.dumps(envelope).encode()).hexdigest(),
                },
                "payloadHash": {"algorithm": "sha256", "value": hashlib.sha256(logged).hexdigest()},
                "signatures": [{"signature": b64(sig), "verifier": b64(verifier)}],
            },
        }
    )
    return envelope, body


def _bundle(key: dict[str, Any], entries: list[dict[str, Any]], envelope: dict[str, Any]) -> bytes:
    material: dict[str, Any] = {**key}
    if entries:  # protojson leaves an empty list out, as cosign --tlog-upload=false writes
        material["tlogEntries"] = entries
    return json.dumps(
        {"mediaType": BUNDLE_V03, "verificationMaterial": material, "dsseEnvelope": envelope}
    ).encode()
