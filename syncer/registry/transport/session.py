"""HTTP to one registry: pooling, per-host concurrency, auth, retries, redirects.

This is the only place that retries. Callers describe a request once (a
`RegistryRequest`); the session decides whether it is safe to repeat it (idempotent, body
restartable), honours Retry-After, backs off with jitter, refreshes tokens on 401 and
follows redirects without leaking Authorization to other hosts.

Each concern is one step, and each step calls the next, as httpx's client does:

    send                        a pull budget's first figure, first-request probe, deadline
    _send_handling_retries      host slot, backoff, Retry-After, the 429 policy, final error
    _attempt                    one try: its time limit, the body read whole, network faults
    _judge                      the answer: success, a try to repeat, or an error to raise
    _send_handling_auth         a 401 from the registry: learn the challenge, re-authenticate
    _send_within_budget         the pull budget (rate limits) around each send
    _send_with_credentials      the Authorization header, for the registry's own host only
    ConnectionPools.send        redirects of GET/HEAD, one HTTP exchange each (pools.py)
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterable, AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
import structlog

from syncer.errors import TransportError, redact_url
from syncer.registry.credentials import Credential
from syncer.registry.options import RegistryConfig
from syncer.registry.origin import RegistryOrigin
from syncer.registry.ratelimit import PullBudget, counts
from syncer.registry.transport.auth import Authenticator
from syncer.registry.transport.bodies import DEFAULT_MAX_BODY, read_capped
from syncer.registry.transport.pools import USER_AGENT, ConnectionPools, no_cookies
from syncer.registry.transport.request import RETRY_STATUSES, Body, RegistryRequest
from syncer.registry.transport.responses import (
    attempts_note,
    error_from_response,
    network_failure,
    read_error_body,
)
from syncer.registry.transport.slots import HostSlots

# The name log filters know; the session was called the transport before.
log = structlog.get_logger("syncer.registry.transport")


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
        budget: PullBudget | None = None,
    ) -> None:
        """`budget`: the process's pull budget for `registry` (shared with other sessions);
        `http_transport` replaces the network, for fault-injection tests."""
        self.registry = registry
        self.base_url = base_url.rstrip("/")
        self.origin = RegistryOrigin(self.base_url)
        self.config = config
        secure = self.base_url.startswith("https://")
        self._pools = ConnectionPools(registry, self.origin, config, http_transport)
        # Token requests only; they share the registry's pool.
        self._client = httpx.AsyncClient(
            transport=self._pools.own,
            timeout=httpx.Timeout(**self._pools.timeout),
            follow_redirects=False,
            trust_env=False,
            headers={"User-Agent": USER_AGENT},
            cookies=no_cookies(),
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
        self.ratelimit = budget or PullBudget(registry, config.ratelimit)

    async def aclose(self) -> None:
        await self._client.aclose()  # closes the registry's pool too
        await self._pools.aclose_foreign()

    def url(self, path: str) -> str:
        return self.origin.resolve(path).url

    def backoff(self, attempt: int) -> float:
        """The pause before try `attempt + 1` (also for a blob upload starting over)."""
        cfg = self.config.retry
        base: float = min(cfg.max_backoff_s, cfg.backoff_s * (2 ** (attempt - 1)))
        return base * random.uniform(0.5, 1.0)

    # -- what callers use ------------------------------------------------------

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
        retry_codes: frozenset[str] = frozenset(),
    ) -> httpx.Response:
        """A request whose (small) body is read whole, as part of the attempt (a break while
        reading is retried), and refused past `max_bytes`. Raises on statuses not in `ok`.

        `retry=False` is for requests whose replay is not safe (a PATCH the server
        may have partly stored); their callers resume from the server's state instead.
        """
        url = self.url(path)
        if params:
            url = str(httpx.URL(url).copy_merge_params(dict(params)))
        # The headers are copied: a caller changing its dict later changes nothing here.
        headers = dict(headers or {})
        req = RegistryRequest(
            method, url, scopes, headers, content, ok, retry, max_bytes, retry_codes
        )
        async with self.send(req) as resp:
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
        headers = dict(headers or {})
        req = RegistryRequest(method, self.url(path), scopes, headers, ok=ok, max_bytes=None)
        async with self.send(req) as resp:
            yield resp

    @asynccontextmanager
    async def send(self, req: RegistryRequest) -> AsyncIterator[httpx.Response]:
        """The answer to `req`, one of its `ok` statuses, closed when the block ends (its
        body already read when `req.max_bytes` is set). Raises what retries did not fix."""
        if counts(req.method, req.url):
            await self._learn_budget(req)
        probe = await self._gate()
        started = time.monotonic()
        progress = _Progress(probe, started, deadline=started + self.config.retry.deadline_s)
        try:
            async with self._send_handling_retries(req, progress) as resp:
                yield resp
        finally:
            _release(probe)

    # -- the steps, outermost first --------------------------------------------

    async def _learn_budget(self, req: RegistryRequest) -> None:
        """Before a counted request to a registry with a reserve whose budget is not known
        yet, one free HEAD of the same URL learns it (Docker Hub reports the figure on HEADs
        and does not count them); concurrent counted requests wait for that answer. A HEAD
        answered without a figure is not repeated (the registry reports none on HEADs); one
        that fails fails this request, and the next counted request asks again."""
        budget = self.ratelimit
        while budget.wants_figure():
            if budget.learning is not None:
                await asyncio.shield(budget.learning)
                continue
            learning = budget.learning = asyncio.get_running_loop().create_future()
            try:
                head = RegistryRequest("HEAD", req.url, req.scopes, dict(req.headers))
                async with self.send(head):
                    pass
                budget.probed = True  # answered: with a figure, or the registry shows none
            finally:
                budget.learning = None
                learning.set_result(None)

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

    @asynccontextmanager
    async def _send_handling_retries(
        self, req: RegistryRequest, progress: _Progress
    ) -> AsyncIterator[httpx.Response]:
        while True:
            progress.attempt += 1
            async with self.slots.hold(progress.deadline, req.what):
                resp, failure = await self._attempt(req, progress)
                if resp is not None and failure is None:
                    try:
                        yield resp
                    finally:
                        await resp.aclose()
                    return
            # Retryable failure: connection error, timeout, a retry status, or a redirect
            # target refusing (its URL expired or it wants credentials it must not get).
            error, wait = await self._failed_try(req, resp, failure, progress)
            last = progress.attempt >= self.config.retry.attempts
            if last or not req.restartable or time.monotonic() + wait > progress.deadline:
                raise error
            log.warning(
                "retrying",
                registry=self.registry,
                method=req.method,
                url=redact_url(req.url),
                failure=failure,
                attempt=progress.attempt,
                wait_s=round(wait, 2),
            )
            await asyncio.sleep(wait)

    async def _failed_try(
        self,
        req: RegistryRequest,
        resp: httpx.Response | None,
        failure: str | None,
        progress: _Progress,
    ) -> tuple[Exception, float]:
        """The error a failed try ends in, if it is the last, and the pause before the next.
        A 429 asks the rate-limit policy, which may stop here (raises)."""
        wait = self.backoff(progress.attempt)
        if resp is None:
            # No answer to tell the error: say what failed and how hard we tried.
            tried = attempts_note(progress.attempt, time.monotonic() - progress.started)
            return TransportError(f"{failure} {tried}"), wait
        body = await read_error_body(resp)
        error = error_from_response(resp, body, self.registry)
        if resp.status_code == 429:
            # The rate-limit policy decides: wait this long, or stop (None).
            verdict = self.ratelimit.after_429(resp.headers, error.codes, wait)
            if verdict is None:
                raise error
            wait = verdict
        return error, wait

    async def _attempt(
        self, req: RegistryRequest, progress: _Progress
    ) -> tuple[httpx.Response | None, str | None]:
        """One try, the body included when it is read into memory: (response, None) on
        success, else (response or None, what failed) for a retry. Raises what no retry
        can fix."""
        # An answer read whole must arrive whole within timeout_s (a server trickling a byte
        # a second never trips the per-read timeout) and before the request's deadline.
        # Not so a streamed body (a PATCH of 16 MiB): the write timeout watches that one.
        limit = None
        if req.max_bytes is not None and not isinstance(req.content, AsyncIterable):
            limit = min(progress.deadline, time.monotonic() + self.config.retry.timeout_s)
        timer = asyncio.timeout_at(None if limit is None else _loop_time(limit))
        resp: httpx.Response | None = None
        try:
            async with timer:
                resp, own = await self._send_handling_auth(req, progress)
                kept, failure = await self._judge(req, resp, own)
                if failure is None and req.max_bytes is not None:
                    try:
                        resp._content = await read_capped(resp, req.max_bytes)
                    finally:
                        await resp.aclose()
                return kept, failure
        except httpx.TransportError as exc:
            if resp is not None:
                await resp.aclose()
            return None, network_failure(exc, req.url)
        except TimeoutError:
            if not timer.expired():
                raise
            if resp is not None:
                await resp.aclose()
            limit_s = self.config.retry.timeout_s
            return None, f"{req.what}: no complete answer within {limit_s:g}s (timeout_s)"

    async def _judge(
        self, req: RegistryRequest, resp: httpx.Response, own: bool
    ) -> tuple[httpx.Response | None, str | None]:
        """(resp, None) when `resp` is an answer `req` accepts; else (the answer, if it
        tells the error, and why this try failed) for a retry. Raises the error of an
        answer no retry changes."""
        status = resp.status_code
        if not own and status in (401, 403):
            # A CDN's refusal is no challenge of the registry's (its realm must never get our
            # password): this try failed; a fresh redirect may work.
            await resp.aclose()
            host = resp.request.url.host
            return None, f"{req.what}: HTTP {status} from {host}, which is not the registry"
        if status not in req.ok and status not in RETRY_STATUSES and status < 500:
            resp._content = body = await read_error_body(resp)  # kept for _failed_try
            error = error_from_response(resp, body, self.registry)
            if not req.retry_codes.intersection(error.codes):
                raise error
        if status not in req.ok:
            return resp, f"HTTP {status}"
        return resp, None

    async def _send_handling_auth(
        self, req: RegistryRequest, progress: _Progress
    ) -> tuple[httpx.Response, bool]:
        """Send; a 401 that teaches a challenge is answered here, with one more send. Also
        says whether the answer came from the registry itself."""
        while True:
            resp, own = await self._send_within_budget(req, progress)
            if resp.status_code == 401 and own and await self._reauthenticate(resp, req, progress):
                _release(progress.probe)  # the challenge is known: others may go
                continue
            _release(progress.probe)
            return resp, own

    async def _reauthenticate(
        self, resp: httpx.Response, req: RegistryRequest, progress: _Progress
    ) -> bool:
        """A 401 from the registry: True to send again with (new) credentials. A 401 to a
        request without credentials only tells us the challenge; one with credentials
        earns exactly one re-authentication; a later one is the answer."""
        sent_auth = "authorization" in resp.request.headers
        if progress.reauthed if sent_auth else progress.discovered:
            return False
        if sent_auth:
            progress.reauthed = True
        else:
            progress.discovered = True
        await resp.aclose()
        if not await self.auth.challenged(resp, req.scopes):
            raise error_from_response(resp, b"", self.registry)
        if not req.replayable:
            # Part of the body is gone; the caller restarts the upload with the token.
            raise TransportError(
                f"{req.what}: {self.registry} asked to authenticate again during a streamed upload"
            )
        return True

    async def _send_within_budget(
        self, req: RegistryRequest, progress: _Progress
    ) -> tuple[httpx.Response, bool]:
        """Send, keeping the pull budget: a counted request needs room (Deferred when there
        is none left), and every answer tells the budget what the registry reports."""
        # Only a logical request's very first send is a new pull; a resend is not.
        resend = progress.attempt > 1 or progress.reauthed or progress.discovered
        sent = self.ratelimit.sending(counted=counts(req.method, req.url), first=not resend)
        try:
            resp, own = await self._send_with_credentials(req)
        except BaseException:
            self.ratelimit.lost(sent)
            raise
        self.ratelimit.update(resp.headers, sent)
        return resp, own

    async def _send_with_credentials(self, req: RegistryRequest) -> tuple[httpx.Response, bool]:
        """Send through the pools (which follow redirects); only the registry itself gets
        our credentials, never a host a Link or Location named."""
        authorization = None
        if self.origin.resolve(req.url).own:
            authorization = await self.auth.header(req.scopes)
        return await self._pools.send(req, authorization)


@dataclass
class _Progress:
    """How one logical request is going: what the steps remember between sends."""

    probe: asyncio.Future[None] | None  # resolved once this first request knows the challenge
    started: float  # time.monotonic() when the first try began
    deadline: float  # time.monotonic() after which no try starts
    attempt: int = 0
    discovered: bool = False  # a 401 without credentials taught us the challenge
    reauthed: bool = False  # a 401 with credentials earned its one re-authentication


def _loop_time(monotonic_deadline: float) -> float:
    loop = asyncio.get_running_loop()
    return loop.time() + (monotonic_deadline - time.monotonic())


def _release(probe: asyncio.Future[None] | None) -> None:
    if probe is not None and not probe.done():
        probe.set_result(None)
