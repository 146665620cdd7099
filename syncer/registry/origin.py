"""Which URLs belong to a registry: the one rule that decides who gets its credentials.

A URL is the registry's own when scheme, host and effective port all match its base URL
(`https://h` and `https://h:443` are one origin). Upload Locations, pagination Links and
redirects all pass through `RegistryOrigin.resolve`, so the rule exists once.

A registry behind a TLS-terminating proxy often names itself `http://` in absolute
Locations. Like Docker, we keep HTTPS for such a URL instead of following the downgrade:
the credentials stay on TLS, and the request reaches the same service.
"""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from syncer.registry.options import RegistryConfig

_DEFAULT_PORTS = {"http": 80, "https": 443}


def endpoint_url(registry: str, api_host: str, config: RegistryConfig) -> str:
    """The base URL to contact: explicit endpoint, else scheme from tls mode / loopback."""
    from syncer.registry.reference import is_loopback

    if config.endpoint:
        return config.endpoint
    if "tls" in config.model_fields_set:
        scheme = "http" if config.tls == "disabled" else "https"
    else:
        # Like Docker: a registry on this machine may be plain HTTP without configuration.
        scheme = "http" if is_loopback(api_host) else "https"
    return f"{scheme}://{api_host}"


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

    def resolve(self, url: str) -> Target:
        """A path is the registry's; an absolute URL is the registry's only on the same origin,
        after an https->http downgrade of the registry's own host and port is undone."""
        if not url.startswith(("http://", "https://")):
            return Target(self.base_url + url, own=True)
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
