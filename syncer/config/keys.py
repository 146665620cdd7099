"""Operators' public keys: read from PEM files at config load, and signature checks.

The schemes are cosign's for key pairs (sigstore's `LoadVerifier` with SHA-256):
ECDSA over SHA-256 with an ASN.1 DER signature (cosign's default keys are P-256),
RSA with PKCS#1 v1.5 or PSS over SHA-256, and pure Ed25519 over the payload bytes.
All cryptography is the `cryptography` package's, imported on first use: a run
without `verify:` does not pay for loading it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    PublicKey: TypeAlias = ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey

# A PEM public key is well under 2 KiB (RSA 4096: ~800 bytes); anything far bigger is
# not one, and must not be read whole.
MAX_KEY_FILE_BYTES = 64 * 1024


class KeyFileError(ValueError):
    """Why a key file cannot be used, worded for the person editing sync.yaml."""


@dataclass(frozen=True, eq=False)
class TrustedKey:
    path: str  # as written in sync.yaml (after ${VAR} interpolation), for messages
    key: PublicKey

    def verifies(self, signature: bytes, payload: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519

        try:
            if isinstance(self.key, ec.EllipticCurvePublicKey):
                self.key.verify(signature, payload, ec.ECDSA(hashes.SHA256()))
            elif isinstance(self.key, ed25519.Ed25519PublicKey):
                self.key.verify(signature, payload)
            else:
                return self._rsa(signature, payload)
        except InvalidSignature:
            return False
        return True

    def _rsa(self, signature: bytes, payload: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        assert isinstance(self.key, rsa.RSAPublicKey)
        pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.AUTO)
        for pad in (padding.PKCS1v15(), pss):
            try:
                self.key.verify(signature, payload, pad, hashes.SHA256())
            except InvalidSignature:
                continue
            return True
        return False

    def could_have_made(self, signature: bytes) -> bool:
        """Whether `signature` is even shaped like one of this key's (DER for ECDSA, the
        modulus length for RSA, 64 bytes for Ed25519): if not, it cannot verify."""
        from cryptography.hazmat.primitives.asymmetric import ec, ed25519
        from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

        if isinstance(self.key, ec.EllipticCurvePublicKey):
            try:
                decode_dss_signature(signature)
            except ValueError:
                return False
            return True
        if isinstance(self.key, ed25519.Ed25519PublicKey):
            return len(signature) == 64
        return len(signature) == (self.key.key_size + 7) // 8


def load_key(path: Path, shown: str) -> TrustedKey:
    """Read one PEM public key; KeyFileError says what is wrong and how to fix it."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_KEY_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(f"key file {shown!r} not found; check the path") from None
    except IsADirectoryError:
        raise KeyFileError(f"{shown!r} is a directory; expected a PEM public key file") from None
    except PermissionError:
        raise KeyFileError(
            f"cannot read key file {shown!r}: permission denied; check its permissions"
        ) from None
    except OSError as e:
        raise KeyFileError(f"cannot read key file {shown!r}: {e.strerror or e}") from None
    if len(data) > MAX_KEY_FILE_BYTES:
        raise KeyFileError(f"{shown!r} is over {MAX_KEY_FILE_BYTES} bytes: not a PEM public key")
    if b"PRIVATE KEY-----" in data:
        raise KeyFileError(
            f"{shown!r} holds a private key; give the public key (cosign.pub, or "
            "`cosign public-key --key cosign.key`), and keep the private key off this machine"
        )
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{shown!r} is not a PEM public key (-----BEGIN PUBLIC KEY-----); "
            "use the cosign.pub that `cosign generate-key-pair` wrote"
        ) from None
    if not isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey | ed25519.Ed25519PublicKey):
        raise KeyFileError(
            f"{shown!r} is a {type(key).__name__.removeprefix('_')}; "
            "cosign keys are ECDSA, RSA or Ed25519"
        )
    return TrustedKey(shown, key)
