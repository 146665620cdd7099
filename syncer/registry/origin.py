"""Which URLs belong to a registry: the one rule that decides who gets its credentials.

A URL is the registry's own when scheme, host and effective port all match its base URL
(`https://h` and `https://h:443` are one origin). Upload Locations, pagination Links and
redirects all pass through `RegistryOrigin.resolve`, so the rule exists once.

A registry behind a TLS-terminating proxy often names itself `http://` in absolute
Locations. Like Docker, we keep HTTPS for such a URL instead of following the downgrade:
the credentials stay on TLS, and the request reaches the same service.

`check_credentials_channel` is the one rule for where credentials may travel: over TLS,
to this machine, or over plain HTTP where the user said so (`tls:` not `enabled`).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import httpx

from syncer.errors import InsecureCredentials, redact_url
from syncer.registry.options import RegistryConfig, TlsMode
from syncer.registry.reference import is_loopback

_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_url(registry: str, api_host: str, config: RegistryConfig) -> str:
    """The base URL to contact: explicit endpoint, else scheme from tls mode / loopback."""
    if config.endpoint:
        return config.endpoint
    if "tls" in config.model_fields_set:
        scheme = "http" if config.tls == "disabled" else "https"
    else:
        # Like Docker: a registry on this machine may be plain HTTP without configuration.
        scheme = "http" if is_loopback(api_host) else "https"
    return f"{scheme}://{api_host}"


def credentials_allowed(url: str, tls: TlsMode) -> bool:
    """May credentials be sent to `url`? Yes over HTTPS, to this machine, or where the
    registry's `tls:` setting (insecure, disabled) says the user accepts the risk."""
    parts = urlsplit(url)
    return parts.scheme == "https" or tls != TlsMode.ENABLED or is_loopback(parts.netloc)


def check_credentials_channel(registry: str, url: str, tls: TlsMode) -> None:
    """InsecureCredentials, with the fix, unless `credentials_allowed(url, tls)`."""
    if credentials_allowed(url, tls):
        return
    raise InsecureCredentials(
        f"refusing to send credentials over plain HTTP to {redact_url(url)}, which is not "
        f"loopback; use HTTPS, or accept the risk with registries.{registry}.tls: disabled "
        "(plain HTTP) or insecure in sync.yaml"
    )


def _key(url: httpx.URL) -> tuple[str, str, int | None]:
    return url.scheme, url.host.lower(), url.port or _DEFAULT_PORTS.get(url.scheme)


@dataclass(frozen=True)
class Target:
    """Where to send a request, and whether it is the registry itself (credentials go)."""

    url: str
    own: bool


class RegistryOrigin:
    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self._base = httpx.URL(self.base_url)
        self._key = _key(self._base)
        # What every URL built from the base starts with: the authority ends at this "/",
        # so such a URL is on the base's origin without being parsed (twice per request).
        self._own_prefix = self.base_url + "/"

    def resolve(self, url: str) -> Target:
        """A path is the registry's; an absolute URL is the registry's only on the same origin,
        after an https->http downgrade of the registry's own host and port is undone."""
        if not url.startswith(("http://", "https://")):
            return Target(self.base_url + url, own=True)
        if url.startswith(self._own_prefix):
            return Target(url, own=True)
        parsed = httpx.URL(url)
        if _key(parsed) == self._key:
            return Target(url, own=True)
        if self._is_downgrade(parsed):
            upgraded = parsed.copy_with(scheme="https", port=self._base.port)
            return Target(str(upgraded), own=True)
        return Target(url, own=False)

    def _is_downgrade(self, url: httpx.URL) -> bool:
        # Our https host named over plain http, on its default port or on ours.
        return (
            self._base.scheme == "https"
            and url.scheme == "http"
            and url.host.lower() == self._key[1]
            and (url.port is None or url.port == self._key[2])
        )
