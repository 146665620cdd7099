"""TLS settings for a registry: custom CA, unverified HTTPS, client certificates."""

from __future__ import annotations

import ssl

from syncer.errors import TlsFileError
from syncer.registry.options import RegistryConfig, TlsMode

_CACHE: dict[tuple[object, ...], ssl.SSLContext] = {}


def system_ssl_context() -> ssl.SSLContext:
    """System trust. Loading the CA bundle costs ~50 ms: once per process, when first needed."""
    return make_ssl_context(RegistryConfig())


def custom_ssl_context(config: RegistryConfig) -> ssl.SSLContext | None:
    """The registry's own TLS settings, or None when it has none (system trust)."""
    if config.tls == TlsMode.INSECURE or config.ca_file or config.client_cert:
        return make_ssl_context(config)
    return None


def redirect_ssl_context(config: RegistryConfig) -> ssl.SSLContext | None:
    """For redirect targets on other hosts (a MinIO or S3 behind Harbor): verified always,
    against system trust plus the registry's ca_file, since a private registry's object
    store usually shares its CA. Never `insecure` (that was said of the registry's host
    only), and no client certificate (it identifies us to the registry, not to others)."""
    if config.ca_file is None:
        return None
    return make_ssl_context(RegistryConfig(ca_file=config.ca_file))


def make_ssl_context(config: RegistryConfig) -> ssl.SSLContext:
    """System trust plus the registry's own CA, so redirects to public CDNs still verify."""
    key = (config.tls, config.ca_file, config.client_cert, config.client_key)
    if key not in _CACHE:
        _CACHE[key] = _build(config)
    return _CACHE[key]


def tls_file_problem(config: RegistryConfig) -> tuple[str, str] | None:
    """(key, what is wrong) when the CA bundle or client certificate cannot be loaded.

    Called when the config is read, so a bad file stops the run before any request; the
    context built on the way is cached for the transport.
    """
    try:
        make_ssl_context(config)
    except TlsFileError as exc:
        return exc.key, exc.reason
    return None


def _no_passphrase() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key.
    return b""


def _build(config: RegistryConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if config.tls == TlsMode.INSECURE:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif config.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(config.ca_file))
        except (OSError, ssl.SSLError) as exc:
            fix = "a readable PEM bundle of CA certificates"
            raise TlsFileError("ca_file", config.ca_file, _why(exc), fix) from None
    if config.client_cert is not None:
        for key, path in (("client_cert", config.client_cert), ("client_key", config.client_key)):
            try:
                if path is not None:  # OpenSSL would not say which file it could not open
                    path.open("rb").close()
            except OSError as exc:
                raise TlsFileError(key, path, _why(exc), "a readable PEM file") from None
        try:
            ctx.load_cert_chain(
                str(config.client_cert),
                str(config.client_key) if config.client_key else None,
                password=_no_passphrase,
            )
        except (OSError, ssl.SSLError) as exc:
            fix = "a PEM certificate whose unencrypted private key is in it or in client_key"
            raise TlsFileError("client_cert", config.client_cert, _why(exc), fix) from None
    return ctx


def _why(exc: OSError | ssl.SSLError) -> str:
    if isinstance(exc, ssl.SSLError):
        return f"not usable ({exc.reason or exc})"
    return exc.strerror or type(exc).__name__
