"""TLS settings for a registry: custom CA, unverified HTTPS, client certificates."""

from __future__ import annotations

import ssl

from syncer.errors import ConfigError
from syncer.registry_config import RegistryConfig, TlsMode

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


def _build(config: RegistryConfig) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    if config.tls == TlsMode.INSECURE:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif config.ca_file is not None:
        try:
            ctx.load_verify_locations(cafile=str(config.ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load CA bundle: {exc.__class__.__name__}: {exc}",
                file=str(config.ca_file),
            ) from None
    if config.client_cert is not None:
        try:
            ctx.load_cert_chain(
                str(config.client_cert),
                str(config.client_key) if config.client_key else None,
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConfigError(
                f"cannot load client certificate/key: {exc.__class__.__name__}",
                file=str(config.client_cert),
            ) from None
    return ctx
