"""HTTP to one registry: pooling, per-host concurrency, auth, retries, redirects.

This is the only place that retries. Callers describe a request once; the
transport decides whether it is safe to repeat it (idempotent, body restartable),
honours Retry-After, backs off with jitter, refreshes tokens on 401 and follows
redirects without leaking Authorization to other hosts.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
import structlog

from syncer import __version__
from syncer.aiohttp_transport import AiohttpTransport
from syncer.auth import Authenticator
from syncer.credentials import Credential
from syncer.errors import TransportError, redact_url
from syncer.ratelimit import PullBudget, counts
from syncer.registry_config import RegistryConfig
from syncer.responses import error_from_response, read_error_body
from syncer.tls import custom_ssl_context

log = structlog.get_logger("syncer.transport")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5
CHUNK_SIZE = 256 * 1024  # small enough that a broken download resumes, not restarts

USER_AGENT = f"syncer/{__version__}"


class ReplayableBody(AsyncIterable[bytes]):
    """A streamed body each iteration of which yields the same bytes from the start: the
    transport may send it again (after a 401). Any other stream is sent once at most."""


Body = bytes | AsyncIterable[bytes] | None


def endpoint_url(registry: str, api_host: str, config: RegistryConfig) -> str:
    """The base URL to contact: explicit endpoint, else scheme from tls mode / loopback."""
    from syncer.reference import is_loopback

    if config.endpoint:
        return config.endpoint
    if "tls" in config.model_fields_set:
        scheme = "http" if config.tls == "disabled" else "https"
    else:
        # Like Docker: a registry on this machine may be plain HTTP without configuration.
        scheme = "http" if is_loopback(api_host) else "https"
    return f"{scheme}://{api_host}"


class Transport:
    """All HTTP traffic to one registry, for one credential."""

    def __init__(
        self,
        registry: str,
        base_url: str,
        config: RegistryConfig,
        credential: Credential | None,
        *,
        http_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """`http_transport` replaces the network, for fault-injection tests."""
        self.registry = registry
        self.base_url = base_url.rstrip("/")
        self.config = config
        secure = self.base_url.startswith("https://")
        self._base_netloc = httpx.URL(self.base_url).netloc
        self._timeout = httpx.Timeout(
            config.retry.timeout_s, connect=min(30.0, config.retry.timeout_s)
        ).as_dict()
        self._http: httpx.AsyncBaseTransport = http_transport or AiohttpTransport(
            custom_ssl_context(config) if secure else None, config.max_concurrency
        )
        # Redirect targets on other hosts (CDNs) get a separate, default-verified pool,
        # made on first use: most registries never redirect.
        self._foreign: httpx.AsyncBaseTransport | None = http_transport
        # Token requests only; they share the registry's pool.
        self._client = httpx.AsyncClient(
            transport=self._http,
            timeout=httpx.Timeout(**self._timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
            cookies=_no_cookies(),
        )
        self._semaphore = asyncio.Semaphore(config.max_concurrency)
        self.auth = Authenticator(
            registry,
            credential,
            secure=secure,
            allow_insecure_credentials=config.tls != "enabled",
            http=self._client,
        )
        self._probe: asyncio.Future[None] | None = None
        self.ratelimit = PullBudget(registry, config.ratelimit)

    async def aclose(self) -> None:
        await self._client.aclose()  # closes self._http too
        if self._foreign is not None and self._foreign is not self._http:
            await self._foreign.aclose()

    def _foreign_transport(self) -> httpx.AsyncBaseTransport:
        if self._foreign is None:
            self._foreign = AiohttpTransport(None, self.config.max_concurrency)
        return self._foreign

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    async def download(
        self,
        path: str,
        *,
        scopes: frozenset[str],
        headers: Mapping[str, str] | None = None,
    ) -> AsyncIterator[bytes]:
        """Stream a body, resuming with `Range` after a broken connection.

        Where the server ignores Range the body restarts and the part already
        delivered is skipped, so the caller sees each byte exactly once.
        """
        delivered = 0
        breaks = 0
        while True:
            hdrs = dict(headers or {})
            if delivered:
                hdrs["Range"] = f"bytes={delivered}-"
            async with self.stream("GET", path, scopes=scopes, headers=hdrs, ok=(200, 206)) as resp:
                skip = delivered if resp.status_code == 200 else 0
                try:
                    async for chunk in resp.aiter_raw(CHUNK_SIZE):
                        if skip:
                            cut = min(skip, len(chunk))
                            chunk, skip = chunk[cut:], skip - cut
                            if not chunk:
                                continue
                        delivered += len(chunk)
                        yield chunk
                    return
                except httpx.TransportError as exc:
                    breaks += 1
                    if breaks >= self.config.retry.attempts:
                        raise TransportError(
                            f"GET {redact_url(self.url(path))}: connection broke {breaks} times "
                            f"({type(exc).__name__}) talking to {self.registry}"
                        ) from None
                    log.warning(
                        "download broke, resuming",
                        registry=self.registry,
                        url=redact_url(self.url(path)),
                        offset=delivered,
                        attempt=breaks,
                    )
            await asyncio.sleep(self._backoff(breaks))

    async def _gate(self) -> asyncio.Future[None] | None:
        """Let the very first request go alone, so concurrent first requests don't all
        collect a 401: it learns the auth challenge for everyone. Returns the future
        the caller must resolve when it is the first, else None."""
        if self._probe is None:
            self._probe = asyncio.get_running_loop().create_future()
            return self._probe
        if not self._probe.done():
            await asyncio.shield(self._probe)
        return None

    async def request(
        self,
        method: str,
        path: str,
        *,
        scopes: frozenset[str] = frozenset(),
        headers: Mapping[str, str] | None = None,
        params: Mapping[str, str] | None = None,
        content: Body = None,
        ok: tuple[int, ...] = (200,),
        retry: bool = True,
    ) -> httpx.Response:
        """A request whose (small) body is read whole. Raises on statuses not in `ok`.

        `retry=False` is for requests whose replay is not safe (a PATCH the server
        may have partly stored); their callers resume from the server's state instead.
        """
        url = self.url(path)
        if params:
            url = str(httpx.URL(url).copy_merge_params(dict(params)))
        async with self._attempts(
            method, url, scopes, dict(headers or {}), content, ok, retry=retry
        ) as resp:
            await resp.aread()
            return resp

    @asynccontextmanager
    async def stream(
        self,
        method: str,
        path: str,
        *,
        scopes: frozenset[str] = frozenset(),
        headers: Mapping[str, str] | None = None,
        ok: tuple[int, ...] = (200,),
    ) -> AsyncIterator[httpx.Response]:
        """A response whose body the caller streams; the host slot is held meanwhile."""
        async with self._attempts(
            method, self.url(path), scopes, dict(headers or {}), None, ok
        ) as r:
            yield r

    @asynccontextmanager
    async def _attempts(
        self,
        method: str,
        url: str,
        scopes: frozenset[str],
        headers: dict[str, str],
        content: Body,
        ok: tuple[int, ...],
        *,
        retry: bool = True,
    ) -> AsyncIterator[httpx.Response]:
        probe = await self._gate()
        try:
            async with self._attempt_loop(
                method, url, scopes, headers, content, ok, retry=retry, probe=probe
            ) as resp:
                yield resp
        finally:
            _release(probe)

    @asynccontextmanager
    async def _attempt_loop(
        self,
        method: str,
        url: str,
        scopes: frozenset[str],
        headers: dict[str, str],
        content: Body,
        ok: tuple[int, ...],
        *,
        retry: bool,
        probe: asyncio.Future[None] | None,
    ) -> AsyncIterator[httpx.Response]:
        cfg = self.config.retry
        deadline = time.monotonic() + cfg.deadline_s
        reauthed = discovered = False
        attempt = 0
        counted = counts(method, url)
        while True:
            attempt += 1
            async with self._semaphore:
                if counted:  # raises Deferred when the budget has no room (left)
                    self.ratelimit.sending(first=attempt == 1 and not (reauthed or discovered))
                try:
                    resp = await self._send_following(method, url, scopes, headers, content)
                except httpx.TransportError as exc:
                    resp = None
                    failure: str = f"{type(exc).__name__}"
                if resp is not None:
                    self.ratelimit.update(resp.headers, counted=counted)
                    # A 401 to a request without credentials only tells us the challenge;
                    # one with credentials earns exactly one re-authentication.
                    sent_auth = "authorization" in resp.request.headers
                    first_401 = not (reauthed if sent_auth else discovered)
                    if resp.status_code == 401 and first_401:
                        if sent_auth:
                            reauthed = True
                        else:
                            discovered = True
                        await resp.aclose()
                        if not await self.auth.challenged(resp, scopes):
                            raise error_from_response(resp, b"", self.registry)
                        _release(probe)  # the challenge is known: others may go
                        if not _replayable(content):
                            # Part of the body is gone; the caller restarts the upload
                            # with the token just fetched.
                            raise TransportError(
                                f"{method} {redact_url(url)}: {self.registry} asked to "
                                "authenticate again during a streamed upload"
                            )
                        attempt -= 1
                        continue
                    _release(probe)
                    if resp.status_code in ok or (
                        resp.status_code not in RETRY_STATUSES and resp.status_code < 500
                    ):
                        if resp.status_code not in ok:
                            body = await read_error_body(resp)
                            raise error_from_response(resp, body, self.registry)
                        try:
                            yield resp
                        finally:
                            await resp.aclose()
                        return
                    failure = f"HTTP {resp.status_code}"
            # Retryable failure: connection error or a retry status.
            wait = self._backoff(attempt)
            if resp is not None:
                body = await read_error_body(resp)
                error = error_from_response(resp, body, self.registry)
                if resp.status_code == 429:
                    # The rate-limit policy decides: wait this long, or stop (None).
                    verdict = self.ratelimit.after_429(resp.headers, error.codes, wait)
                    if verdict is None:
                        raise error
                    wait = verdict
                final_error: Exception = error
            else:
                final_error = TransportError(
                    f"{method} {redact_url(url)}: {failure} talking to {self.registry}"
                )
            restartable = retry and _replayable(content)
            if attempt >= cfg.attempts or not restartable or time.monotonic() + wait > deadline:
                raise final_error
            log.warning(
                "retrying",
                registry=self.registry,
                method=method,
                url=redact_url(url),
                failure=failure,
                attempt=attempt,
                wait_s=round(wait, 2),
            )
            await asyncio.sleep(wait)

    def _backoff(self, attempt: int) -> float:
        cfg = self.config.retry
        base: float = min(cfg.max_backoff_s, cfg.backoff_s * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)

    async def _send_following(
        self,
        method: str,
        url: str,
        scopes: frozenset[str],
        headers: dict[str, str],
        content: Body,
    ) -> httpx.Response:
        hdrs = dict(headers)
        hdrs.setdefault("User-Agent", USER_AGENT)
        same = url.startswith(self.base_url + "/")
        origin = self._base_netloc if same else httpx.URL(url).netloc
        # Only the registry itself gets our credentials, never a host a Link or Location named.
        if origin == self._base_netloc:
            auth = await self.auth.header(scopes)
            if auth:
                hdrs["Authorization"] = auth
        http = self._http
        for _ in range(MAX_REDIRECTS + 1):
            # Straight to the transport, not through httpx.AsyncClient: this method already
            # does the client's jobs (auth, redirects), and skipping its cookie and hook
            # machinery halves the CPU a HEAD costs, which bounds the up-to-date check.
            req = httpx.Request(
                method, url, headers=hdrs, content=content, extensions={"timeout": self._timeout}
            )
            resp = await http.handle_async_request(req)
            resp.request = req
            if resp.status_code not in (301, 302, 303, 307, 308) or method not in ("GET", "HEAD"):
                return resp
            location = resp.headers.get("location")
            await resp.aclose()
            if not location:
                return resp
            target = httpx.URL(url).join(location)
            if target.netloc != origin or (target.scheme == "http" and url.startswith("https")):
                # Another host (a CDN with a signed URL): our credentials are not its business.
                # Nor does a token go in clear text because a redirect dropped TLS.
                hdrs.pop("Authorization", None)
                http = self._foreign_transport() if target.scheme == "https" else self._http
            url = str(target)
        raise TransportError(f"{method}: too many redirects from {self.registry}")


def _no_cookies() -> CookieJar:
    # Like the registry pool: a token server's cookie is not replayed on later requests.
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _replayable(content: Body) -> bool:
    return content is None or isinstance(content, bytes | ReplayableBody)


def _release(probe: asyncio.Future[None] | None) -> None:
    if probe is not None and not probe.done():
        probe.set_result(None)
