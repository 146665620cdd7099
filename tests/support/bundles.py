"""Sign images as cosign 3 does by default with a key: a Sigstore bundle as an OCI 1.1
referrer of the image, made here with keys from tests/support/cosign.py.

Formats (sigstore/protobuf-specs sigstore_bundle.proto, envelope.proto; cosign 3's
`sign` and `attest` with `--new-bundle-format`, the default since 3.0; in-toto Statement
v1): the bundle's `dsseEnvelope` carries an in-toto statement about the image digest,
predicate type `https://sigstore.dev/cosign/sign/v1` for a signature (any other for an
attestation), signed over DSSE's PAE. The referrer is an OCI image manifest: config
`application/vnd.oci.empty.v1+json`, one layer of the bundle's media type, `subject` the
image, `artifactType` the bundle media type. On distribution 2.8 (no referrers API) it is
listed in the OCI index at tag `sha256-<hex>` (the referrers tag schema).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization

from tests.support.cosign import SigningKey, go_json
from tests.support.http import http_client
from tests.support.images import (
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Image,
    Index,
    push_blob,
    push_manifest,
)

BUNDLE_V03 = "application/vnd.dev.sigstore.bundle.v0.3+json"
BUNDLE_LEGACY = "application/vnd.dev.sigstore.bundle+json;version=0.{}"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_V1 = "https://in-toto.io/Statement/v1"
COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
SLSA_V1 = "https://slsa.dev/provenance/v1"
CONTENT_ANNOTATION = "dev.sigstore.bundle.content"
PREDICATE_ANNOTATION = "dev.sigstore.bundle.predicateType"
EMPTY = Blob.of(b"{}", OCI_EMPTY)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature is over."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(
    digest: str, *, name: str = "app", predicate_type: str = COSIGN_SIGN, predicate: Any = None
) -> bytes:
    """An in-toto v1 statement about image `digest`."""
    return go_json(
        {
            "_type": STATEMENT_V1,
            "subject": [{"name": name, "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicateType": predicate_type,
            "predicate": predicate if predicate is not None else {},
        }
    )


def key_hint(key: SigningKey) -> str:
    """cosign's `publicKey.hint`: base64 of the SHA-256 of the public key's DER."""
    der = key.private.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def bundle(
    key: SigningKey,
    body: bytes,
    *,
    media_type: str = BUNDLE_V03,
    signer: SigningKey | None = None,
    material: dict[str, Any] | None = None,
) -> bytes:
    """A bundle whose DSSE envelope holds `body` (a statement), signed by `signer` (default
    `key`), with no transparency-log entry (`cosign sign --tlog-upload=false`).

    `material` replaces `verificationMaterial` (a certificate, say, for a keyless one)."""
    sig = (signer or key).sign(pae(IN_TOTO, body))
    envelope = {
        "payload": base64.b64encode(body).decode(),
        "payloadType": IN_TOTO,
        "signatures": [{"sig": base64.b64encode(sig).decode()}],
    }
    return go_json(
        {
            "mediaType": media_type,
            "verificationMaterial": material or {"publicKey": {"hint": key_hint(key)}},
            "dsseEnvelope": envelope,
        }
    )


@dataclass(frozen=True)
class Referrer:
    """A pushed bundle referrer: its manifest and the descriptor an index lists it by."""

    manifest: bytes
    bundle: Blob
    predicate_type: str
    artifact_type: str = BUNDLE_V03
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def digest(self) -> str:
        return Blob.of(self.manifest, OCI_MANIFEST).digest

    def descriptor(self) -> dict[str, Any]:
        return {
            "mediaType": OCI_MANIFEST,
            "digest": self.digest,
            "size": len(self.manifest),
            "artifactType": self.artifact_type,
            "annotations": self.annotations,
        }


def referrer(
    subject_digest: str, subject_size: int, subject_type: str, data: bytes, predicate_type: str
) -> Referrer:
    """The referrer manifest cosign 3 pushes for bundle `data` about the subject."""
    media_type = json.loads(data)["mediaType"]
    blob = Blob.of(data, media_type)
    annotations = {CONTENT_ANNOTATION: "dsse-envelope", PREDICATE_ANNOTATION: predicate_type}
    manifest = go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "artifactType": media_type,
            "config": {**EMPTY.descriptor(), "data": "e30="},
            "layers": [blob.descriptor()],
            "subject": {"mediaType": subject_type, "digest": subject_digest, "size": subject_size},
            "annotations": annotations,
        }
    )
    return Referrer(manifest, blob, predicate_type, media_type, annotations)


def push_referrer(base_url: str, repo: str, ref: Referrer, *, listed: bool = True) -> str:
    """Push the referrer by digest; `listed`: add it to the `sha256-<hex>` index of its
    subject too, keeping what the index already lists (as cosign 3 does on 2.8)."""
    subject = json.loads(ref.manifest)["subject"]["digest"]
    with http_client(timeout=60.0) as c:
        push_blob(c, base_url, repo, EMPTY)
        push_blob(c, base_url, repo, ref.bundle)
        push_manifest(c, base_url, repo, ref.manifest, OCI_MANIFEST, ref.digest)
        if listed:
            tag = subject.replace(":", "-")
            got = c.get(f"{base_url}/v2/{repo}/manifests/{tag}", headers={"Accept": OCI_INDEX})
            listing = got.json()["manifests"] if got.status_code == 200 else []
            listing = [d for d in listing if d["digest"] != ref.digest] + [ref.descriptor()]
            index = go_json({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": listing})
            push_manifest(c, base_url, repo, index, OCI_INDEX, tag)
    return ref.digest


def sign(
    base_url: str,
    repo: str,
    subject: Image | Index,
    key: SigningKey,
    *,
    predicate_type: str = COSIGN_SIGN,
    listed: bool = True,
    **kw: Any,
) -> Referrer:
    """`cosign sign --key` (cosign 3, `--tlog-upload=false`) of `repo@subject`;
    `predicate_type` other than cosign's makes it `cosign attest`. `kw` go to `bundle`."""
    body = statement(subject.digest, name=repo, predicate_type=predicate_type)
    data = bundle(key, body, **kw)
    ref = referrer(subject.digest, subject.size, subject.media_type, data, predicate_type)
    push_referrer(base_url, repo, ref, listed=listed)
    return ref
