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
from dataclasses import dataclass
from http.cookiejar import CookieJar, DefaultCookiePolicy

import httpx
import structlog

from syncer import __version__
from syncer.errors import TransportError, redact_url
from syncer.registry.aiohttp_transport import AiohttpTransport
from syncer.registry.auth import Authenticator
from syncer.registry.bodies import DEFAULT_MAX_BODY, read_capped
from syncer.registry.credentials import Credential
from syncer.registry.options import RegistryConfig
from syncer.registry.origin import RegistryOrigin, Target
from syncer.registry.ratelimit import PullBudget, counts
from syncer.registry.responses import error_from_response, read_error_body
from syncer.registry.slots import HostSlots, connections_for
from syncer.registry.tls import custom_ssl_context, redirect_ssl_context

log = structlog.get_logger("syncer.registry.transport")

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
MAX_REDIRECTS = 5

USER_AGENT = f"syncer/{__version__}"


class ReplayableBody(AsyncIterable[bytes]):
    """A streamed body each iteration of which yields the same bytes from the start: the
    transport may send it again (after a 401). Any other stream is sent once at most."""


Body = bytes | AsyncIterable[bytes] | None


class RegistrySession:
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
        self.origin = RegistryOrigin(self.base_url)
        self.config = config
        secure = self.base_url.startswith("https://")
        self._timeout = httpx.Timeout(
            config.retry.timeout_s, connect=min(30.0, config.retry.timeout_s)
        ).as_dict()
        self._http: httpx.AsyncBaseTransport = http_transport or AiohttpTransport(
            custom_ssl_context(config) if secure else None,
            connections_for(config.max_concurrency),
        )
        # Redirect targets on other hosts (CDNs) get a separate pool, verified against system
        # trust plus the registry's ca_file (tls.redirect_ssl_context), made on first use:
        # most registries never redirect.
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
        self.slots = HostSlots(registry, config.max_concurrency)
        self.auth = Authenticator(
            registry,
            credential,
            secure=secure,
            tls=config.tls,
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
            self._foreign = AiohttpTransport(
                redirect_ssl_context(self.config), connections_for(self.config.max_concurrency)
            )
        return self._foreign

    def url(self, path: str) -> str:
        return self.origin.resolve(path).url

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
        max_bytes: int = DEFAULT_MAX_BODY,
    ) -> httpx.Response:
        """A request whose (small) body is read whole, as part of the attempt (a break while
        reading is retried), and refused past `max_bytes`. Raises on statuses not in `ok`.

        `retry=False` is for requests whose replay is not safe (a PATCH the server
        may have partly stored); their callers resume from the server's state instead.
        """
        url = self.url(path)
        if params:
            url = str(httpx.URL(url).copy_merge_params(dict(params)))
        call = _Call(method, url, scopes, dict(headers or {}), content, ok, retry, max_bytes)
        async with self._attempts(call) as resp:
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
        call = _Call(method, self.url(path), scopes, dict(headers or {}), None, ok, True, None)
        async with self._attempts(call) as r:
            yield r

    @asynccontextmanager
    async def _attempts(self, call: _Call) -> AsyncIterator[httpx.Response]:
        probe = await self._gate()
        try:
            async with self._attempt_loop(call, probe) as resp:
                yield resp
        finally:
            _release(probe)

    @asynccontextmanager
    async def _attempt_loop(
        self, call: _Call, probe: asyncio.Future[None] | None
    ) -> AsyncIterator[httpx.Response]:
        cfg = self.config.retry
        deadline = time.monotonic() + cfg.deadline_s
        seen = _Seen()
        attempt = 0
        what = f"{call.method} {redact_url(call.url)}"
        while True:
            attempt += 1
            async with self.slots.hold(deadline, what):
                resp, failure = await self._attempt(call, seen, probe, deadline, attempt == 1)
                if resp is not None and failure is None:
                    try:
                        yield resp
                    finally:
                        await resp.aclose()
                    return
            # Retryable failure: connection error, timeout, a retry status, or a redirect
            # target refusing (its URL expired or it wants credentials it must not get).
            wait = self.backoff(attempt)
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
                final_error = TransportError(f"{what}: {failure} talking to {self.registry}")
            restartable = call.retry and _replayable(call.content)
            if attempt >= cfg.attempts or not restartable or time.monotonic() + wait > deadline:
                raise final_error
            log.warning(
                "retrying",
                registry=self.registry,
                method=call.method,
                url=redact_url(call.url),
                failure=failure,
                attempt=attempt,
                wait_s=round(wait, 2),
            )
            await asyncio.sleep(wait)

    async def _attempt(
        self,
        call: _Call,
        seen: _Seen,
        probe: asyncio.Future[None] | None,
        deadline: float,
        first: bool,
    ) -> tuple[httpx.Response | None, str | None]:
        """One try, the body included when it is read into memory: (response, None) on
        success, else (response or None, what failed) for a retry. Raises what no retry
        can fix. A 401 that teaches a challenge is answered here, with one more send."""
        # An answer read whole must arrive whole within timeout_s (a server trickling a byte
        # a second never trips the per-read timeout) and before the request's deadline.
        # Not so a streamed body (a PATCH of 16 MiB): the write timeout watches that one.
        limit = None
        if call.max_bytes is not None and not isinstance(call.content, AsyncIterable):
            limit = min(deadline, time.monotonic() + self.config.retry.timeout_s)
        timer = asyncio.timeout_at(None if limit is None else _loop_time(limit))
        resp: httpx.Response | None = None
        try:
            async with timer:
                counted = counts(call.method, call.url)
                while True:
                    if counted:  # raises Deferred when the budget has no room (left)
                        resend = seen.reauthed or seen.discovered
                        self.ratelimit.sending(first=first and not resend)
                    resp, own = await self._send_following(call)
                    self.ratelimit.update(resp.headers, counted=counted)
                    if resp.status_code == 401 and own and await self._learn(resp, call, seen):
                        _release(probe)  # the challenge is known: others may go
                        continue
                    break
                _release(probe)
                if not own and resp.status_code in (401, 403):
                    # A CDN's refusal is no challenge of the registry's (its realm must never
                    # get our password): this try failed; a fresh redirect may work.
                    await resp.aclose()
                    host = resp.request.url.host
                    return None, f"HTTP {resp.status_code} from {host}, which is not the registry"
                status = resp.status_code
                if status not in call.ok and status not in RETRY_STATUSES and status < 500:
                    body = await read_error_body(resp)
                    raise error_from_response(resp, body, self.registry)
                if status not in call.ok:
                    return resp, f"HTTP {status}"
                if call.max_bytes is not None:
                    try:
                        resp._content = await read_capped(resp, call.max_bytes)
                    finally:
                        await resp.aclose()
                return resp, None
        except httpx.TransportError as exc:
            if resp is not None:
                await resp.aclose()
            return None, type(exc).__name__
        except TimeoutError:
            if not timer.expired():
                raise
            if resp is not None:
                await resp.aclose()
            return None, f"no complete answer within {self.config.retry.timeout_s:g}s (timeout_s)"

    async def _learn(self, resp: httpx.Response, call: _Call, seen: _Seen) -> bool:
        """A 401 from the registry: True to send again with (new) credentials. A 401 to a
        request without credentials only tells us the challenge; one with credentials
        earns exactly one re-authentication; a later one is the answer."""
        sent_auth = "authorization" in resp.request.headers
        if seen.reauthed if sent_auth else seen.discovered:
            return False
        if sent_auth:
            seen.reauthed = True
        else:
            seen.discovered = True
        await resp.aclose()
        if not await self.auth.challenged(resp, call.scopes):
            raise error_from_response(resp, b"", self.registry)
        if not _replayable(call.content):
            # Part of the body is gone; the caller restarts the upload with the token.
            raise TransportError(
                f"{call.method} {redact_url(call.url)}: {self.registry} asked to "
                "authenticate again during a streamed upload"
            )
        return True

    def backoff(self, attempt: int) -> float:
        """The pause before try `attempt + 1` (also for a blob upload starting over)."""
        cfg = self.config.retry
        base: float = min(cfg.max_backoff_s, cfg.backoff_s * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)

    async def _send_following(self, call: _Call) -> tuple[httpx.Response, bool]:
        """Send, following redirects of GET/HEAD; also says whether the final answer came
        from the registry itself (only then may its 401 teach us a challenge)."""
        hdrs = dict(call.headers)
        hdrs.setdefault("User-Agent", USER_AGENT)
        target = self.origin.resolve(call.url)
        # Only the registry itself gets our credentials, never a host a Link or Location named.
        if target.own:
            auth = await self.auth.header(call.scopes)
            if auth:
                hdrs["Authorization"] = auth
        url, own, http = target.url, target.own, self._http if target.own else self._other(target)
        for _ in range(MAX_REDIRECTS + 1):
            # Straight to the transport, not through httpx.AsyncClient: this method already
            # does the client's jobs (auth, redirects), and skipping its cookie and hook
            # machinery halves the CPU a HEAD costs, which bounds the up-to-date check.
            req = httpx.Request(
                call.method,
                url,
                headers=hdrs,
                content=call.content,
                extensions={"timeout": self._timeout},
            )
            resp = await http.handle_async_request(req)
            resp.request = req
            redirect = resp.status_code in (301, 302, 303, 307, 308)
            if not redirect or call.method not in ("GET", "HEAD"):
                return resp, own
            location = resp.headers.get("location")
            await resp.aclose()
            if not location:
                return resp, own
            target = self.origin.resolve(str(httpx.URL(url).join(location)))
            if own and not target.own:
                # Another host (a CDN with a signed URL): our credentials are not its business.
                hdrs.pop("Authorization", None)
                own, http = False, self._other(target)
            url = target.url
        raise TransportError(f"{call.method}: too many redirects from {self.registry}")

    def _other(self, target: Target) -> httpx.AsyncBaseTransport:
        return self._foreign_transport() if target.url.startswith("https://") else self._http


@dataclass
class _Call:
    """One logical request, as its caller described it."""

    method: str
    url: str
    scopes: frozenset[str]
    headers: dict[str, str]
    content: Body
    ok: tuple[int, ...]
    retry: bool
    max_bytes: int | None  # read into memory, at most this much; None: the caller streams


@dataclass
class _Seen:
    """401s already answered in this logical request."""

    discovered: bool = False
    reauthed: bool = False


def _loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


def _no_cookies() -> CookieJar:
    # Like the registry pool: a token server's cookie is not replayed on later requests.
    return CookieJar(policy=DefaultCookiePolicy(allowed_domains=[]))


def _replayable(content: Body) -> bool:
    return content is None or isinstance(content, bytes | ReplayableBody)


def _release(probe: asyncio.Future[None] | None) -> None:
    if probe is not None and not probe.done():
        probe.set_result(None)
