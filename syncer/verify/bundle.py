"""cosign 3's signatures and attestations: a Sigstore bundle holding a DSSE envelope.

Formats: sigstore/protobuf-specs (sigstore_bundle.proto, envelope.proto), parsed with
`sigstore-models` (sigstore's pydantic models of those protos, the ones sigstore-python
4 uses); in-toto Statement v1 (v0.1 read too). The envelope's payload is an in-toto
statement about the image digest; its signature is over DSSE's pre-authentication
encoding `DSSEv1 <len(type)> <type> <len(payload)> <payload>`. cosign signs an image with
predicate type `https://sigstore.dev/cosign/sign/v1`; `cosign attest` with the
attestation's own (SLSA provenance, say).

`judge_bundle` is the one entry point for a bundle; `judge_envelope` judges a bare DSSE
envelope (the layer of a legacy `.att` tag) the same way.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from syncer.errors import Rejected
from syncer.verify.cosign import Reason

if TYPE_CHECKING:
    from sigstore_models.bundle.v1 import Bundle
    from sigstore_models.intoto import Envelope

    from syncer.config.verify import CosignPolicy

COSIGN_SIGN = "https://sigstore.dev/cosign/sign/v1"
IN_TOTO = "application/vnd.in-toto+json"
STATEMENT_TYPES = frozenset(
    {"https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1"}
)


@dataclass(frozen=True)
class Statement:
    """A verified in-toto statement: its signature checked, its subject the digest."""

    predicate_type: str
    subject: str  # the subject's `name` that carries the digest
    predicate: Any


def judge_bundle(
    data: bytes, digest: str, policy: CosignPolicy, predicate_type: str = COSIGN_SIGN
) -> Statement:
    """The statement of bundle `data` when it is a signature (or, with another
    `predicate_type`, an attestation) of image `digest` by one of the policy's keys;
    otherwise raises Rejected with the reason."""
    parsed = _parse(data)
    material = parsed.verification_material
    if material.certificate is not None or material.x509_certificate_chain is not None:
        if policy.keyless is None:
            raise Rejected(Reason.KEYLESS, "no keyless identity configured")
        from syncer.verify.keyless import verify_keyless

        # Certificate chain, SCT, log proof, signature and identity, offline.
        payload = verify_keyless(data, policy.keyless)
        return _about(payload, digest, policy, predicate_type, "bundle")
    if parsed.dsse_envelope is None:
        raise Rejected(
            Reason.MALFORMED, "bundle holds a message signature, not a DSSE envelope of an image"
        )
    if policy.transparency_log is not None:
        # By default a key's signature is enough (`--tlog-upload=false` bundles verify, as
        # a `.sig` does); this policy wants the log's word too, checked offline.
        from syncer.verify.tlog import tlog_flaw

        flaw = tlog_flaw(data, policy.transparency_log.trusted)
        if flaw is not None:
            raise Rejected(Reason.LOG_PROOF, flaw)
    return _judge(parsed.dsse_envelope, digest, policy, predicate_type, "bundle")


def judge_envelope(
    data: bytes, digest: str, policy: CosignPolicy, predicate_type: str
) -> Statement:
    """The same for a bare DSSE envelope (cosign's legacy `.att` layer)."""
    from sigstore_models.intoto import Envelope

    try:
        envelope = Envelope.model_validate_json(data)
    except ValidationError as exc:
        raise Rejected(Reason.MALFORMED, f"DSSE envelope: {_first(exc)}") from None
    return _judge(envelope, digest, policy, predicate_type, "envelope")


def _parse(data: bytes) -> Bundle:
    from sigstore_models.bundle.v1 import Bundle

    try:
        raw = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(Reason.MALFORMED, "bundle is not JSON") from None
    if isinstance(raw, dict) and isinstance(raw.get("verificationMaterial"), dict):
        # Protobuf's JSON leaves out empty repeated fields (cosign's `--tlog-upload=false`
        # writes no `tlogEntries`); the models want them present.
        raw["verificationMaterial"].setdefault("tlogEntries", [])
        key = raw["verificationMaterial"].get("publicKey")
        if isinstance(key, dict):
            key.setdefault("hint", None)
    try:
        return Bundle.model_validate(raw)
    except ValidationError as exc:
        raise Rejected(Reason.MALFORMED, f"bundle: {_first(exc)}") from None


def _judge(
    envelope: Envelope, digest: str, policy: CosignPolicy, predicate_type: str, what: str
) -> Statement:
    if envelope.payload_type != IN_TOTO:
        raise Rejected(Reason.MALFORMED, f"{what} payload type is {envelope.payload_type!r}")
    if len(envelope.signatures) != 1:
        # The bundle spec: a DSSE envelope in a bundle has exactly one signature.
        raise Rejected(
            Reason.BAD_SIGNATURE, f"{what} has {len(envelope.signatures)} signatures, not 1"
        )
    signature = envelope.signatures[0].sig
    signed = pae(envelope.payload_type, envelope.payload)
    keys = policy.trusted
    names = ", ".join(k.path for k in keys)
    if not any(k.could_have_made(signature) and k.verifies(signature, signed) for k in keys):
        raise Rejected(Reason.NO_KEY, f"the {what}'s DSSE signature verifies with none of {names}")
    return _about(envelope.payload, digest, policy, predicate_type, what)


def _about(
    payload: bytes, digest: str, policy: CosignPolicy, predicate_type: str, what: str
) -> Statement:
    """The verified `payload` as a statement of `predicate_type` about `digest`."""
    statement = _statement(payload, what)
    if statement.predicate_type != predicate_type:
        raise Rejected(
            Reason.OTHER_PREDICATE,
            f"the {what}'s statement has predicate type {statement.predicate_type}, "
            f"not {predicate_type}",
        )
    subjects = _subjects(payload)
    names_of = [name for name, d in subjects if d == digest]
    if not names_of:
        listed = ", ".join(d for _, d in subjects) or "nothing"
        raise Rejected(
            Reason.OTHER_DIGEST, f"the {what}'s statement is about {listed}, not {digest}"
        )
    name = names_of[0]
    if not policy.identity_matches(name):
        raise Rejected(
            Reason.IDENTITY,
            f"the {what}'s statement names {name}, which does not match {policy.identity}",
        )
    return Statement(statement.predicate_type, name, statement.predicate)


def pae(payload_type: str, payload: bytes) -> bytes:
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _statement(payload: bytes, what: str) -> Statement:
    """The statement's type and predicate; its subjects are read by `_subjects`."""
    try:
        doc: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Rejected(Reason.MALFORMED, f"the {what}'s payload is not JSON") from None
    if not isinstance(doc, dict) or doc.get("_type") not in STATEMENT_TYPES:
        found = doc.get("_type") if isinstance(doc, dict) else None
        raise Rejected(
            Reason.MALFORMED, f"the {what}'s payload is no in-toto statement ({found!r})"
        )
    kind = doc.get("predicateType")
    if not isinstance(kind, str):
        raise Rejected(Reason.MALFORMED, f"the {what}'s statement has no predicateType")
    return Statement(kind, "", doc.get("predicate"))


def _subjects(payload: bytes) -> list[tuple[str, str]]:
    """(name, sha256:<hex>) of each subject of the statement in `payload` (read before)."""
    doc = json.loads(payload)
    out: list[tuple[str, str]] = []
    for subject in doc.get("subject") or []:
        if not isinstance(subject, dict) or not isinstance(subject.get("digest"), dict):
            continue
        hexd = subject["digest"].get("sha256")
        if isinstance(hexd, str):
            out.append((str(subject.get("name", "")), f"sha256:{hexd.lower()}"))
    return out


def _first(exc: ValidationError) -> str:
    first = exc.errors()[0]
    loc = ".".join(str(p) for p in first["loc"])
    return f"{loc}: {first['msg']}" if loc else str(first["msg"])
