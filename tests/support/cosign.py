"""Sign images as `cosign sign --key` does, in cosign's exact formats, with keys made here.

Formats (sigstore/cosign specs/SIGNATURE_SPEC.md; sigstore/sigstore payload.go;
go-containerregistry's JSON): the signatures of `sha256:<hex>` are one OCI manifest at tag
`sha256-<hex>.sig`, one `application/vnd.dev.cosign.simplesigning.v1+json` layer per
signature, the base64 signature in the layer annotation `dev.cosignproject.cosign/signature`.
Go's encoding/json writes no spaces and keeps struct field order, as reproduced below.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any, Literal

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from tests.support.http import http_client
from tests.support.images import (
    OCI_CONFIG,
    OCI_MANIFEST,
    Blob,
    fetch_manifest,
    push_blob,
    push_manifest,
)

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
GO_ZERO_TIME = "0001-01-01T00:00:00Z"
DSSE_ENVELOPE = "application/vnd.dsse.envelope.v1+json"
IN_TOTO = "application/vnd.in-toto+json"
SLSA_PROVENANCE = "https://slsa.dev/provenance/v0.2"

KeyKind = Literal["ecdsa", "rsa-pkcs1", "rsa-pss", "ed25519"]
KINDS: tuple[KeyKind, ...] = ("ecdsa", "rsa-pkcs1", "rsa-pss", "ed25519")


def go_json(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True)
class SigningKey:
    kind: KeyKind
    private: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey

    @classmethod
    def generate(cls, kind: KeyKind) -> SigningKey:
        if kind == "ecdsa":  # cosign generate-key-pair: P-256
            return cls(kind, ec.generate_private_key(ec.SECP256R1()))
        if kind == "ed25519":
            return cls(kind, ed25519.Ed25519PrivateKey.generate())
        return cls(kind, rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(self, payload: bytes) -> bytes:
        key = self.private
        if isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(payload, ec.ECDSA(hashes.SHA256()))  # ASN.1 DER
        if isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(payload)
        if self.kind == "rsa-pss":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return key.sign(payload, pss, hashes.SHA256())
        return key.sign(payload, padding.PKCS1v15(), hashes.SHA256())


def payload(reference: str, digest: str, optional: dict[str, Any] | None = None) -> bytes:
    """sigstore's payload.Cosign: the simple-signing JSON `cosign sign` signs."""
    return go_json(
        {
            "critical": {
                "identity": {"docker-reference": reference},
                "image": {"docker-manifest-digest": digest},
                "type": "cosign container image signature",
            },
            "optional": optional,
        }
    )


@dataclass(frozen=True)
class Signature:
    payload: bytes
    signature: str  # base64

    @property
    def blob(self) -> Blob:
        return Blob.of(self.payload, SIMPLE_SIGNING)

    def layer(self) -> dict[str, Any]:
        return {**self.blob.descriptor(), "annotations": {SIGNATURE_ANNOTATION: self.signature}}


def signed(key: SigningKey, body: bytes) -> Signature:
    return Signature(body, base64.b64encode(key.sign(body)).decode())


def signature_manifest(signatures: list[Signature]) -> tuple[bytes, Blob]:
    """The manifest and config blob go-containerregistry writes for cosign's signature
    image: empty.Image with OCI media types, one appended layer per signature."""
    return cosign_image([s.blob for s in signatures], [s.layer() for s in signatures])


def cosign_image(blobs: list[Blob], layers: list[dict[str, Any]]) -> tuple[bytes, Blob]:
    """What cosign pushes for `.sig`, `.att` and `.sbom` (pkg/oci/static over
    go-containerregistry's empty.Image): an OCI image config whose rootfs lists the layer
    blobs (uncompressed, so diff_id = digest), and `layers` as their descriptors."""
    config = Blob.of(
        go_json(
            {
                "architecture": "",
                "created": GO_ZERO_TIME,
                "history": [{"created": GO_ZERO_TIME} for _ in blobs],
                "os": "",
                "rootfs": {"type": "layers", "diff_ids": [b.digest for b in blobs]},
                "config": {},
            }
        ),
        OCI_CONFIG,
    )
    manifest = go_json(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": config.descriptor(),
            "layers": layers,
        }
    )
    return manifest, config


def push_cosign_image(
    base_url: str, repo: str, tag: str, blobs: list[Blob], layers: list[dict[str, Any]]
) -> str:
    """Push a `cosign_image` (its blobs first) at `tag`; returns the manifest's digest."""
    manifest, config = cosign_image(blobs, layers)
    with http_client(timeout=60.0) as c:
        for blob in [config, *blobs]:
            push_blob(c, base_url, repo, blob)
        push_manifest(c, base_url, repo, manifest, OCI_MANIFEST, tag)
    return Blob.of(manifest, OCI_MANIFEST).digest


def attest(base_url: str, repo: str, digest: str, key: SigningKey) -> str:
    """`cosign attest --key --type slsaprovenance`: an in-toto statement about `digest` in a
    DSSE envelope, one layer of a manifest at `sha256-<hex>.att` (specs/ATTESTATION_SPEC.md).
    The layer's cosign signature annotation is empty: the envelope carries the signature."""
    statement = go_json(
        {
            "_type": "https://in-toto.io/Statement/v0.1",
            "predicateType": SLSA_PROVENANCE,
            "subject": [{"name": repo, "digest": {"sha256": digest.removeprefix("sha256:")}}],
            "predicate": {"builder": {"id": "syncer-tests"}},
        }
    )
    pae = b"DSSEv1 %d %s %d %s" % (len(IN_TOTO), IN_TOTO.encode(), len(statement), statement)
    envelope = go_json(
        {
            "payloadType": IN_TOTO,
            "payload": base64.b64encode(statement).decode(),
            "signatures": [{"keyid": "", "sig": base64.b64encode(key.sign(pae)).decode()}],
        }
    )
    blob = Blob.of(envelope, DSSE_ENVELOPE)
    layer = {
        **blob.descriptor(),
        "annotations": {SIGNATURE_ANNOTATION: "", "predicateType": SLSA_PROVENANCE},
    }
    return push_cosign_image(base_url, repo, attach_tag(digest, "att"), [blob], [layer])


def attach_sbom(base_url: str, repo: str, digest: str) -> str:
    """`cosign attach sbom --type spdxjson`: the SBOM as the one layer at `sha256-<hex>.sbom`."""
    document = go_json({"spdxVersion": "SPDX-2.3", "name": repo, "packages": []})
    blob = Blob.of(document, "text/spdx+json")
    return push_cosign_image(
        base_url, repo, attach_tag(digest, "sbom"), [blob], [blob.descriptor()]
    )


def attach_tag(digest: str, suffix: str) -> str:
    return digest.replace(":", "-") + "." + suffix


def sig_tag(digest: str) -> str:
    return digest.replace(":", "-") + ".sig"


def push_signatures(base_url: str, repo: str, digest: str, signatures: list[Signature]) -> str:
    """Put `signatures` at `sha256-<hex>.sig` (replacing what is there); returns the
    signature manifest's digest."""
    manifest, config = signature_manifest(signatures)
    with http_client(timeout=60.0) as c:
        push_blob(c, base_url, repo, config)
        for s in signatures:
            push_blob(c, base_url, repo, s.blob)
        push_manifest(c, base_url, repo, manifest, OCI_MANIFEST, sig_tag(digest))
    return Blob.of(manifest, OCI_MANIFEST).digest


def sign(
    base_url: str, host: str, repo: str, digest: str, key: SigningKey, *, append: bool = False
) -> str:
    """`cosign sign --key`: sign `host/repo@digest`; `append` keeps earlier signatures,
    as cosign does when an image is signed again."""
    earlier: list[Signature] = []
    if append:
        data, _ = fetch_manifest(base_url, repo, sig_tag(digest))
        with http_client(timeout=30.0) as c:
            for layer in json.loads(data)["layers"]:
                body = c.get(f"{base_url}/v2/{repo}/blobs/{layer['digest']}").content
                earlier.append(Signature(body, layer["annotations"][SIGNATURE_ANNOTATION]))
    new = signed(key, payload(f"{host}/{repo}", digest))
    return push_signatures(base_url, repo, digest, [*earlier, new])
