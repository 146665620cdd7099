"""cosign's signature formats (sigstore/cosign specs/SIGNATURE_SPEC.md), classic tag scheme.

The signatures of image digest `sha256:<hex>` are the layers of one OCI image manifest
at tag `sha256-<hex>.sig` in the image's repository. Each layer of media type
`application/vnd.dev.cosign.simplesigning.v1+json` is a simple-signing payload blob; its
annotation `dev.cosignproject.cosign/signature` is the base64 signature over exactly
those bytes. The payload names the signed digest in `critical.image.docker-manifest-digest`.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from syncer.errors import Rejected

SIMPLE_SIGNING = "application/vnd.dev.cosign.simplesigning.v1+json"
SIGNATURE_ANNOTATION = "dev.cosignproject.cosign/signature"
SIGNATURE_TYPE = "cosign container image signature"

MAX_BYTES = 1024 * 1024  # a signature manifest or one payload
MAX_SIGNATURES = 64  # layers of one signature manifest


class Reason(StrEnum):
    """Why a tag was rejected. Ordered from the most to the least telling: when no
    signature verifies, the report names the most telling reason any of them gave."""

    IDENTITY = "identity mismatch"
    # Keyless bundles (syncer.verify.keyless.KeylessReason has the same values).
    CERT_IDENTITY = "wrong identity"  # the certificate names another identity
    CERT_ISSUER = "wrong issuer"
    LOG_PROOF = "bad log proof"  # also a required log entry missing or not vouched for
    CERT_TIME = "certificate not valid at signing time"
    UNTRUSTED = "untrusted certificate"
    MALFORMED_BUNDLE = "malformed bundle"
    OTHER_DIGEST = "signature for another digest"
    KEYLESS = "keyless signature"  # certificate-bound: judged by keyless identities only
    MALFORMED = "malformed payload"
    IMPURE = "not a pure signature"  # the signature manifest holds more than signatures
    NOT_REFERRER = "not a referrer"  # a referrer tag holds no artifact of its subject
    NO_KEY = "no key matched"
    BAD_SIGNATURE = "bad signature"
    TOO_LARGE = "signature over limits"
    NO_ATTESTATION = "no attestation"  # verify.attestations names a type none verifies for
    # A statement of another kind (an attestation where a signature was sought): telling
    # only when nothing better was found.
    OTHER_PREDICATE = "wrong predicate type"
    NO_SIGNATURE = "no signature"


def signature_tag(digest: str) -> str:
    algo, _, hexd = digest.partition(":")
    return f"{algo}-{hexd}.sig"


def decode_signature(annotations: dict[str, str] | None) -> bytes:
    """The raw signature of one layer; Rejected(BAD_SIGNATURE) when absent or not base64."""
    text = (annotations or {}).get(SIGNATURE_ANNOTATION)
    if not text:
        raise Rejected(Reason.BAD_SIGNATURE, f"layer has no {SIGNATURE_ANNOTATION} annotation")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Rejected(Reason.BAD_SIGNATURE, f"{SIGNATURE_ANNOTATION} is not base64") from None


@dataclass(frozen=True)
class Claims:
    digest: str  # critical.image.docker-manifest-digest
    reference: str  # critical.identity.docker-reference


def parse_payload(data: bytes) -> Claims:
    """The claims of a simple-signing payload whose signature already verified."""
    try:
        doc: Any = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(Reason.MALFORMED, "payload is not JSON") from None
    critical = doc.get("critical") if isinstance(doc, dict) else None
    if not isinstance(critical, dict):
        raise Rejected(Reason.MALFORMED, "payload has no `critical` object")
    if critical.get("type") != SIGNATURE_TYPE:
        raise Rejected(
            Reason.MALFORMED, f"critical.type is {critical.get('type')!r}, not {SIGNATURE_TYPE!r}"
        )
    image, identity = critical.get("image"), critical.get("identity")
    digest = image.get("docker-manifest-digest") if isinstance(image, dict) else None
    reference = identity.get("docker-reference") if isinstance(identity, dict) else None
    if not isinstance(digest, str) or not digest:
        raise Rejected(Reason.MALFORMED, "payload has no critical.image.docker-manifest-digest")
    if not isinstance(reference, str):
        raise Rejected(Reason.MALFORMED, "payload has no critical.identity.docker-reference")
    return Claims(digest, reference)
