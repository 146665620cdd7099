"""TLS settings for a registry: custom CA, unverified HTTPS, client certificates."""

from __future__ import annotations

import ssl

from syncer.errors import ConfigError
from syncer.registry_config import RegistryConfig, TlsMode


def make_ssl_context(config: RegistryConfig) -> ssl.SSLContext:
    """System trust plus the registry's own CA, so redirects to public CDNs still verify."""
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
