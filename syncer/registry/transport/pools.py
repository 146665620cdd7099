"""Where a session's bytes go: the registry's connection pool, and a second one for the
other hosts its redirects name (CDNs with signed URLs), made on first use.

Redirects of GET and HEAD are followed here, and this is where credentials stay home:
the Authorization header goes to the registry's own host only and is dropped the moment
a redirect leaves it.
"""

from __future__ import annotations

from collections.abc import Mapping
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx

from syncer import __version__
from syncer.errors import TransportError
from syncer.registry.options import RegistryConfig
from syncer.registry.origin import RegistryOrigin, Target
from syncer.registry.tls import custom_ssl_context, redirect_ssl_context
from syncer.registry.transport.aiohttp_transport import AiohttpTransport
from syncer.registry.transport.request import RegistryRequest
from syncer.registry.transport.slots import connections_for

MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

USER_AGENT = f"syncer/{__version__}"


class ConnectionPools:
    def __init__(
        self,
        registry: str,
        origin: RegistryOrigin,
        config: RegistryConfig,
        http_transport: httpx.AsyncBaseTransport | None,
    ) -> None:
        """`http_transport` replaces the network (both pools), for fault-injection tests."""
        self.registry = registry
        self.origin = origin
        self.config = config
        self.timeout = httpx.Timeout(
            config.retry.timeout_s, connect=min(30.0, config.retry.timeout_s)
        ).as_dict()
        secure = origin.base_url.startswith("https://")
        self.own: httpx.AsyncBaseTransport = http_transport or AiohttpTransport(
            custom_ssl_context(config) if secure else None,
            connections_for(config.max_concurrency),
        )
        # Verified against system trust plus the registry's ca_file
        # (tls.redirect_ssl_context); most registries never redirect.
        self._foreign: httpx.AsyncBaseTransport | None = http_transport

    async def aclose_foreign(self) -> None:
        """Close the pool for other hosts (the session's token client closes `own`)."""
        if self._foreign is not None and self._foreign is not self.own:
            await self._foreign.aclose()

    async def send(
        self, req: RegistryRequest, authorization: str | None
    ) -> tuple[httpx.Response, bool]:
        """Send, following redirects of GET/HEAD; also says whether the final answer came
        from the registry itself (only then may its 401 teach us a challenge)."""
        hdrs = dict(req.headers)
        hdrs.setdefault("User-Agent", USER_AGENT)
        target = self.origin.resolve(req.url)
        if target.own and authorization:
            hdrs["Authorization"] = authorization
        url, own, http = target.url, target.own, self._pool_for(target)
        for _ in range(MAX_REDIRECTS + 1):
            resp = await self._send_single(req, url, hdrs, http)
            if resp.status_code not in REDIRECT_STATUSES or req.method not in ("GET", "HEAD"):
                return resp, own
            location = resp.headers.get("location")
            await resp.aclose()
            if not location:
                return resp, own
            target = self.origin.resolve(str(httpx.URL(url).join(location)))
            if own and not target.own:
                # Another host (a CDN with a signed URL): our credentials are not its business.
                hdrs.pop("Authorization", None)
                own, http = False, self._pool_for(target)
            url = target.url
        raise TransportError(f"{req.method}: too many redirects from {self.registry}")

    async def _send_single(
        self,
        req: RegistryRequest,
        url: str,
        headers: Mapping[str, str],
        http: httpx.AsyncBaseTransport,
    ) -> httpx.Response:
        # Straight to the transport, not through httpx.AsyncClient: the session's steps
        # already do the client's jobs (auth, redirects), and skipping its cookie and hook
        # machinery halves the CPU a HEAD costs, which bounds the up-to-date check.
        sent = httpx.Request(
            req.method,
            url,
            headers=headers,
            content=req.content,
            extensions={"timeout": self.timeout},
        )
        resp = await http.handle_async_request(sent)
        resp.request = sent
        return resp

    def _pool_for(self, target: Target) -> httpx.AsyncBaseTransport:
        """The registry's own pool, or (for an HTTPS host a redirect named) the foreign one."""
        if target.own or not target.url.startswith("https://"):
            return self.own
        if self._foreign is None:
            self._foreign = AiohttpTransport(
                redirect_ssl_context(self.config), connections_for(self.config.max_concurrency)
            )
        return self._foreign


def no_cookies() -> CookieJar:
    """A jar that keeps nothing: a token server's cookie is not replayed on later requests,
    as the registry pool keeps none either (aiohttp_transport.py)."""
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))
