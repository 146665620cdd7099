"""`transparency_log:` for key-signed bundles: the signature must be in a log we trust.

Checked offline against the log's public keys, for each `tlogEntries[]` item of the bundle
(Rekor v1, as cosign 3 writes them): the RFC 6962 inclusion proof from the entry's body to
the proof's root hash, the signed checkpoint (a signed note by a log key, naming that root),
and the SET (the log's signature over the entry) where the entry has one. These checks are
sigstore-python's own (`TransparencyLogEntry._verify`, used by its keyless verification);
its public API cannot verify key-signed bundles (sigstore-python#1244), so the entry is
handed to it directly. Then the entry's body must be about this envelope: the sha256 of the
payload and the envelope's signature (`dsse` 0.0.1 or `intoto` 0.0.2 bodies). The DSSE
signature itself is checked by the caller against the configured signing keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from syncer.config.keys import TrustedKey

if TYPE_CHECKING:
    from sigstore._internal.trust import RekorKeyring
    from sigstore_models.intoto import Envelope

MAX_ENTRIES = 8  # cosign writes one; a few more are legal, hundreds are an attack


def tlog_flaw(bundle_json: bytes, log_keys: Sequence[TrustedKey]) -> str | None:
    """None when one of the bundle's log entries verifies against `log_keys` and is about
    its envelope; otherwise what is wrong, for the report."""
    from pydantic import ValidationError
    from sigstore_models.bundle.v1 import Bundle

    try:
        doc = json.loads(bundle_json)
    except (ValueError, UnicodeDecodeError):
        return "the bundle is not JSON"
    material = doc.get("verificationMaterial") if isinstance(doc, dict) else None
    entries = material.get("tlogEntries") if isinstance(material, dict) else None
    if not entries:
        return "no transparency-log entry (signed with --tlog-upload=false?)"
    if not isinstance(entries, list) or len(entries) > MAX_ENTRIES:
        return f"tlogEntries is not a list of at most {MAX_ENTRIES} entries"
    try:
        bundle = Bundle.from_json(bundle_json)
    except ValidationError as e:
        return f"malformed transparency-log entry: {_first_error(e)}"
    if bundle.dsse_envelope is None:
        return "the bundle holds no DSSE envelope"
    keyring = _keyring(log_keys)
    flaws = []
    for entry in bundle.verification_material.tlog_entries:
        flaw = _entry_flaw(entry, bundle.dsse_envelope, keyring)
        if flaw is None:
            return None
        flaws.append(flaw)
    return flaws[0]


def _entry_flaw(entry: Any, envelope: Envelope, keyring: RekorKeyring) -> str | None:
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import TransparencyLogEntry

    try:
        TransparencyLogEntry(entry)._verify(keyring)
    except (SigstoreError, ValueError) as e:
        return f"log entry {entry.log_index}: {plain_message(e)}"
    return _body_flaw(entry.kind_version.kind, entry.kind_version.version, entry, envelope)


def _body_flaw(kind: str, version: str, entry: Any, envelope: Envelope) -> str | None:
    where = f"log entry {entry.log_index} ({kind} {version})"
    try:
        body = json.loads(entry.canonicalized_body)
        if body.get("kind") != kind or body.get("apiVersion") != version:
            return f"{where}: its body is a {body.get('kind')} {body.get('apiVersion')} entry"
        spec = body["spec"]
        if kind == "dsse" and version == "0.0.1":
            payload_hash = spec["payloadHash"]
            logged = {base64.b64decode(s["signature"]) for s in spec["signatures"]}
        elif kind == "intoto" and version == "0.0.2":
            payload_hash = spec["content"]["payloadHash"]
            # intoto 0.0.2 stores each signature base64-encoded twice.
            logged = {
                base64.b64decode(base64.b64decode(s["sig"]))
                for s in spec["content"]["envelope"]["signatures"]
            }
        else:
            return f"{where}: not a kind of entry that records a DSSE envelope"
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error):
        return f"{where}: malformed entry body"
    expected = hashlib.sha256(envelope.payload).hexdigest()
    if payload_hash.get("algorithm") != "sha256" or payload_hash.get("value") != expected:
        return f"{where}: the logged payload hash is not this payload's"
    if not {s.sig for s in envelope.signatures} <= logged:
        return f"{where}: the logged signature is not this envelope's"
    return None


def _keyring(keys: Sequence[TrustedKey]) -> RekorKeyring:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519
    from sigstore._internal.trust import Keyring, RekorKeyring
    from sigstore_models.common.v1 import PublicKey, PublicKeyDetails

    curves = {
        "secp256r1": PublicKeyDetails.PKIX_ECDSA_P256_SHA_256,
        "secp384r1": PublicKeyDetails.PKIX_ECDSA_P384_SHA_384,
        "secp521r1": PublicKeyDetails.PKIX_ECDSA_P521_SHA_512,
    }
    public = []
    for k in keys:
        if isinstance(k.key, ec.EllipticCurvePublicKey):
            details = curves.get(k.key.curve.name, PublicKeyDetails.PKIX_ECDSA_P256_SHA_256)
        elif isinstance(k.key, ed25519.Ed25519PublicKey):
            details = PublicKeyDetails.PKIX_ED25519
        else:
            details = PublicKeyDetails.PKIX_RSA_PKCS1V15_2048_SHA256
        der = k.key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # sigstore-models takes protobuf bytes fields as their JSON form, base64.
        public.append(PublicKey(raw_bytes=base64.b64encode(der), key_details=details))
    return RekorKeyring(Keyring(public))


def _first_error(e: Any) -> str:
    errors = e.errors()
    if not errors:
        return "invalid"
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    return f"{loc}: {first.get('msg', 'invalid')}" if loc else str(first.get("msg", "invalid"))


# sigstore's messages for the log checks, some of which print whole binary structures.
_PLAIN = (
    ("invalid root hash signature", "the signed checkpoint names another root hash"),
    ("inclusion proof contains invalid root hash", "the inclusion proof does not lead to its root"),
    ("inclusion proof has wrong size", "the inclusion proof has the wrong number of hashes"),
    ("checkpoint: signature not found", "no checkpoint signature by a trusted log key"),
    ("checkpoint: invalid signature", "the checkpoint signature does not verify with a log key"),
    ("set: invalid inclusion promise", "the SET does not verify with a log key"),
)


def is_log_flaw(e: BaseException) -> bool:
    """Whether `e` is one of sigstore's log-check failures (`_PLAIN`)."""
    lower = " ".join(str(a) for a in e.args).lower()
    return any(needle in lower for needle, _ in _PLAIN)


def plain_message(e: BaseException) -> str:
    """sigstore's message for `e` in one short line."""
    text = " ".join(str(a) for a in e.args) if e.args else ""
    lower = text.lower()
    for needle, plain in _PLAIN:
        if needle in lower:
            return plain
    text = text.strip().splitlines()[0] if text.strip() else type(e).__name__
    return text[:200]
