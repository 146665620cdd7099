"""Test PKI: a throwaway CA, a server cert for 127.0.0.1/localhost, and the token signing cert.

Keys are generated once per test process and cached: RSA key generation costs tens of
milliseconds, and nothing here needs a fresh key per test (certs are still minted per call).
"""

from __future__ import annotations

import datetime as dt
import functools
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificateIssuerPrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Back-date validity so small clock differences between processes never matter.
_SKEW = dt.timedelta(hours=1)
_LIFETIME = dt.timedelta(days=2)


@functools.cache
def ec_key(purpose: str) -> ec.EllipticCurvePrivateKey:
    """One cached P-256 key per purpose (EC keys are instant and Go's TLS stack accepts them)."""
    del purpose  # only part of the cache key
    return ec.generate_private_key(ec.SECP256R1())


@functools.cache
def rsa_key(purpose: str) -> rsa.RSAPrivateKey:
    """One cached RSA key per purpose; RS256 token signing needs RSA."""
    del purpose
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def self_signed_ca(key: CertificateIssuerPrivateKeyTypes, cn: str) -> x509.Certificate:
    """A self-signed CA certificate. Also used directly as the JWT signer: the registry accepts
    a token whose x5c leaf is itself in `rootcertbundle`."""
    now = dt.datetime.now(dt.UTC)
    pub = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(pub)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(pub), critical=False)
        .sign(key, hashes.SHA256())
    )


def server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    key: ec.EllipticCurvePrivateKey,
    *,
    dns_names: tuple[str, ...] = ("localhost",),
    ips: tuple[str, ...] = ("127.0.0.1", "::1"),
) -> x509.Certificate:
    """A leaf for the given names. SANs (not CN) are what both Go and OpenSSL check; the AKI and
    serverAuth EKU keep strict verifiers (Python >= 3.13 sets VERIFY_X509_STRICT) happy too."""
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    return (
        x509.CertificateBuilder()
        .subject_name(_name(dns_names[0] if dns_names else ips[0]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _SKEW)
        .not_valid_after(now + _LIFETIME)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: CertificateIssuerPrivateKeyTypes) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


@dataclass(frozen=True)
class TlsFiles:
    ca_file: Path  # PEM of the test CA: what clients pass as `verify=`
    cert_file: Path  # server leaf PEM
    key_file: Path  # server key PEM (unencrypted)
    ca_cert: x509.Certificate


def make_tls_files(directory: Path) -> TlsFiles:
    """Write ca.pem, server.pem and server-key.pem into `directory` (created if needed)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_key = ec_key("ca")
    ca = self_signed_ca(ca_key, "syncer test CA")
    leaf_key = ec_key("server")
    leaf = server_cert(ca_key, ca, leaf_key)
    files = TlsFiles(
        ca_file=directory / "ca.pem",
        cert_file=directory / "server.pem",
        key_file=directory / "server-key.pem",
        ca_cert=ca,
    )
    files.ca_file.write_bytes(cert_pem(ca))
    files.cert_file.write_bytes(cert_pem(leaf))
    files.key_file.write_bytes(key_pem(leaf_key))
    files.key_file.chmod(0o600)
    return files
