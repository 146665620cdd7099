"""Keyless cosign bundles: a Fulcio certificate for an identity, verified offline.

sigstore-python's `Verifier.verify_dsse` does the verification: the certificate chain to the
trusted root's CA at the log's integrated time (bound by the SET), the embedded SCT against
the CT log keys, the inclusion proof and signed checkpoint, the SET, that the time lies in
the certificate's ten minutes, the DSSE signature over PAE, and that the log entry names
this payload and signature. Nothing is fetched: the trusted root is a file and the Rekor
client it builds is never called. The identity policy is ours (`_Identities`) so that a
wrong subject and a wrong issuer are told apart and regexes work.

The reason for a rejection is read from which step failed: sigstore raises one error type
for all of them, so `_reason` maps its messages (tests/verify/test_keyless.py holds each
mapping against real bundles, so a change in sigstore's wording fails there, not silently).
"""

from __future__ import annotations

import datetime as dt
import functools
from enum import StrEnum
from typing import TYPE_CHECKING

from syncer.config.keyless import IdentityRule, KeylessPolicy
from syncer.errors import Rejected
from syncer.verify.tlog import is_log_flaw, plain_message

if TYPE_CHECKING:
    from cryptography.x509 import Certificate
    from sigstore.models import Bundle, TrustedRoot
    from sigstore.verify import Verifier

IN_TOTO = "application/vnd.in-toto+json"
# Fulcio's extensions (fulcio docs/oid-info.md): the OIDC issuer, raw (v1) and as a DER
# UTF8String (v2, preferred by cosign); and the SAN otherName for non-email, non-URI ids.
OID_ISSUER_V1 = "1.3.6.1.4.1.57264.1.1"
OID_ISSUER_V2 = "1.3.6.1.4.1.57264.1.8"
OID_OTHERNAME = "1.3.6.1.4.1.57264.1.7"


class KeylessReason(StrEnum):
    """Why a keyless bundle was rejected (the `reason` of `Rejected`)."""

    IDENTITY = "wrong identity"
    ISSUER = "wrong issuer"
    LOG_PROOF = "bad log proof"
    CERT_TIME = "certificate not valid at signing time"
    BAD_SIGNATURE = "bad signature"
    UNTRUSTED = "untrusted certificate"
    MALFORMED = "malformed bundle"


def verify_keyless(
    bundle_json: bytes, policy: KeylessPolicy, *, root: TrustedRoot | None = None
) -> bytes:
    """The verified DSSE payload (the in-toto statement's bytes), or Rejected(reason).

    `root` is the run's trusted root (`policy.load_root()`, read once per run); without
    it the file is read now.
    """
    from sigstore.errors import CertValidationError
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import Bundle
    from sigstore.verify import Verifier

    try:
        bundle = Bundle.from_json(bundle_json)
    except (SigstoreError, ValueError) as e:
        raise Rejected(KeylessReason.MALFORMED, plain_message(e)) from None
    if bundle._dsse_envelope is None:
        raise Rejected(KeylessReason.MALFORMED, "the bundle holds no DSSE envelope")
    verifier = Verifier(trusted_root=root if root is not None else policy.load_root())
    try:
        payload_type, payload = verifier.verify_dsse(bundle, _Identities(policy.identities))
    except _Mismatch as e:
        raise Rejected(e.reason, str(e)) from None
    except CertValidationError as e:
        if not _time_in_validity(bundle) and _chain_ok_when_issued(verifier, bundle):
            raise Rejected(KeylessReason.CERT_TIME, _validity(bundle)) from None
        raise Rejected(KeylessReason.UNTRUSTED, plain_message(e)) from None
    except (SigstoreError, ValueError) as e:
        raise Rejected(_reason(e), plain_message(e)) from None
    if payload_type != IN_TOTO:
        raise Rejected(KeylessReason.MALFORMED, f"payload type is {payload_type!r}, not {IN_TOTO}")
    return payload


def _reason(e: BaseException) -> KeylessReason:
    if is_log_flaw(e):
        # Asked first: these messages print whole proofs, whose random bytes can hold any
        # of the words below ("sct" once made a tampered proof an untrusted certificate).
        return KeylessReason.LOG_PROOF
    text = str(e).lower()
    if "sct" in text or "usage" in text:
        return KeylessReason.UNTRUSTED
    if "expired at time of signing" in text:
        return KeylessReason.CERT_TIME
    if "dsse: invalid signature" in text:
        return KeylessReason.BAD_SIGNATURE
    if "log entry" in text or "inclusion" in text or "checkpoint" in text or "time" in text:
        return KeylessReason.LOG_PROOF
    return KeylessReason.MALFORMED


def _integrated_time(bundle: Bundle) -> dt.datetime | None:
    seconds = bundle.log_entry._inner.integrated_time
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds else None


def _time_in_validity(bundle: Bundle) -> bool:
    when = _integrated_time(bundle)
    cert = bundle.signing_certificate
    return when is None or cert.not_valid_before_utc <= when <= cert.not_valid_after_utc


def _chain_ok_when_issued(verifier: Verifier, bundle: Bundle) -> bool:
    """Whether the certificate chains to the root at its own issue time: then only the
    log's time was wrong, not the issuer."""
    from sigstore._internal.timestamp import TimestampSource, TimestampVerificationResult
    from sigstore.errors import CertValidationError

    cert = bundle.signing_certificate
    when = TimestampVerificationResult(
        source=TimestampSource.TRANSPARENCY_SERVICE, time=cert.not_valid_before_utc
    )
    try:
        verifier._verify_chain_at_time(cert, when)
    except CertValidationError:
        return False
    return True


def _validity(bundle: Bundle) -> str:
    cert = bundle.signing_certificate
    return (
        f"logged at {_integrated_time(bundle)}, outside the certificate's validity "
        f"{cert.not_valid_before_utc} .. {cert.not_valid_after_utc}"
    )


class _Mismatch(Exception):
    def __init__(self, reason: KeylessReason, message: str) -> None:
        self.reason = reason
        super().__init__(message)


@functools.cache
def _mismatch_type() -> type[_Mismatch]:
    # Raised from inside sigstore's verify_dsse, which lets its policy's errors through;
    # a VerificationError subclass made on first use, so sigstore is imported lazily.
    from sigstore.errors import VerificationError

    class PolicyMismatch(_Mismatch, VerificationError):
        pass

    return PolicyMismatch


def _mismatch(reason: KeylessReason, message: str) -> _Mismatch:
    return _mismatch_type()(reason, message)


class _Identities:
    """sigstore's VerificationPolicy: any one rule's subject and issuer both match."""

    def __init__(self, rules: list[IdentityRule]) -> None:
        self._rules = rules

    def verify(self, cert: Certificate) -> None:
        identities, issuer = certificate_identity(cert)
        if any(r.subject_matches(identities) and r.issuer == issuer for r in self._rules):
            return
        subject_ok = any(r.subject_matches(identities) for r in self._rules)
        wanted = "; ".join(r.describe() for r in self._rules)
        got = f"{', '.join(sorted(identities)) or '(none)'} from {issuer or '(no issuer)'}"
        reason = KeylessReason.ISSUER if subject_ok else KeylessReason.IDENTITY
        raise _mismatch(reason, f"signed by {got}; the policy accepts {wanted}")


def certificate_identity(cert: Certificate) -> tuple[set[str], str]:
    """The certificate's SAN identities and its OIDC issuer (v2 extension first, as cosign)."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        names: set[str] = set()
    else:
        names = set(san.get_values_for_type(x509.RFC822Name))
        names.update(san.get_values_for_type(x509.UniformResourceIdentifier))
        for other in san.get_values_for_type(x509.OtherName):
            if other.type_id.dotted_string == OID_OTHERNAME:
                names.add(_der_utf8(other.value) or other.value.decode(errors="replace"))
    issuer = ""
    for oid, der in ((OID_ISSUER_V2, True), (OID_ISSUER_V1, False)):
        try:
            ext = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(oid)).value
        except x509.ExtensionNotFound:
            continue
        raw = ext.value if isinstance(ext, x509.UnrecognizedExtension) else b""
        issuer = (_der_utf8(raw) if der else raw.decode(errors="replace")) or ""
        if issuer:
            break
    return names, issuer


def _der_utf8(data: bytes) -> str | None:
    """A DER UTF8String's text, or None when `data` is not exactly one."""
    if len(data) < 2 or data[0] != 0x0C:
        return None
    length, start = data[1], 2
    if length & 0x80:
        n = length & 0x7F
        if n == 0 or n > 4 or len(data) < 2 + n:
            return None
        length, start = int.from_bytes(data[2 : 2 + n], "big"), 2 + n
    if len(data) != start + length:
        return None
    try:
        return data[start:].decode()
    except UnicodeDecodeError:
        return None
