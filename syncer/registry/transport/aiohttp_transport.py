"""The network under httpx: an httpx transport that sends requests with aiohttp.

httpx stays the API the rest of syncer speaks (requests, responses, errors, and
`MockTransport` for fault injection); this module only replaces httpcore as the
thing that talks HTTP/1.1 over sockets. Measured on loopback against the
distribution registry, a HEAD costs about 0.9 ms of CPU through httpcore and its
anyio layers and about 0.25 ms through aiohttp's C parser. A mirror checking
thousands of tags is bound by exactly that cost.

What callers rely on, and this module keeps:
- errors are httpx's (`ConnectError`, `ReadError`, `RemoteProtocolError`, timeouts),
  so retry and resume logic sees what it saw before;
- bodies are raw: no decompression and no re-chunking of what we send;
- an exception raised by a streamed request body (a source blob failing its digest
  check mid-copy) reaches the caller as itself, not as a generic connection error;
- no redirects are followed and no netrc is read: the caller decides who gets
  credentials. HTTP(S)_PROXY / NO_PROXY from the environment are honoured, as
  docker, skopeo and httpx do.
"""

from __future__ import annotations

import asyncio
import ssl
import time
import urllib.request
from collections.abc import AsyncIterable, AsyncIterator, Coroutine
from typing import Any

import aiohttp
import httpx

from syncer.registry.tls import system_ssl_context

# Bodies this small go to aiohttp as bytes: they fit in the socket buffers at once.
_SMALL_BODY = 64 * 1024

# Checked in order: the first class that matches names the httpx error.
_ERRORS: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (asyncio.TimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientConnectorError, httpx.ConnectError),
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientError, httpx.NetworkError),
    (OSError, httpx.NetworkError),
)


def _as_httpx(exc: BaseException, request: httpx.Request) -> httpx.TransportError:
    for source, target in _ERRORS:
        if isinstance(exc, source):
            return target(f"{type(exc).__name__}: {exc}", request=request)
    return httpx.TransportError(f"{type(exc).__name__}: {exc}", request=request)


class _Body:
    """A streamed request body that remembers the exception its source raised, and
    since when the socket has been taking the last piece (None while our side, the
    source, is the one being waited on)."""

    def __init__(self, stream: AsyncIterable[bytes]) -> None:
        self._stream = stream
        self.error: BaseException | None = None
        self.writing_since: float | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._stream:
                # aiohttp resumes us once the piece is in the socket buffer.
                self.writing_since = time.monotonic()
                yield chunk
                self.writing_since = None
        except Exception as exc:
            self.error = exc
            raise


class _ResponseStream(httpx.AsyncByteStream):
    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while chunk := await content.readany():
                yield chunk
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise _as_httpx(exc, self._request) from None

    async def aclose(self) -> None:
        # Whole body read: the connection goes back to the pool; otherwise it is closed.
        self._response.release()


class AiohttpTransport(httpx.AsyncBaseTransport):
    """One connection pool (to any host) with at most `max_connections` sockets.

    Every https request carries `ssl_context`, or when that is None the system-trust one
    (tls.system_ssl_context, loaded on first use): aiohttp's own defaults are never used
    (see __main__.py)."""

    def __init__(self, ssl_context: ssl.SSLContext | None, max_connections: int) -> None:
        self._ssl = ssl_context
        self._limit = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}
        # ALL_PROXY only where aiohttp can speak it (no SOCKS), as a fallback for any scheme.
        self._proxies = {
            k: v
            for k, v in urllib.request.getproxies_environment().items()
            if k != "no" and (k != "all" or v.startswith(("http://", "https://")))
        }
        self._no_proxy = urllib.request.getproxies_environment().get("no", "")

    def proxy_for(self, url: httpx.URL) -> str | None:
        """The proxy the environment names for `url`, or None (also when NO_PROXY covers it)."""
        proxy = self._proxies.get(url.scheme) or self._proxies.get("all")
        if proxy is None:
            return None
        # With the port, so that a NO_PROXY entry `host:port` matches; plain `host` still does.
        host = f"{url.host}:{url.port}" if url.port else url.host
        if urllib.request.proxy_bypass_environment(host, {"no": self._no_proxy}):  # type: ignore[attr-defined]
            return None
        return proxy

    def _ssl_for(self, url: httpx.URL) -> ssl.SSLContext | bool:
        if url.scheme != "https":
            return True  # unused on plain http
        if self._ssl is None:
            self._ssl = system_ssl_context()
        return self._ssl

    def _get_session(self) -> aiohttp.ClientSession:
        # Made on first use: aiohttp binds a session to the running event loop.
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self._limit)
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,
                trust_env=False,
                # No cookies, like docker and skopeo: a registry's session cookie (Harbor
                # sets some) must not ride along on later requests, or to other hosts.
                cookie_jar=aiohttp.DummyCookieJar(),
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=("User-Agent", "Accept-Encoding", "Accept"),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts: dict[str, float | None] = request.extensions.get("timeout", {})
        body: _Body | None = None
        data: Any = None
        headers = [
            (k, v) for k, v in request.headers.multi_items() if k.lower() != "transfer-encoding"
        ]
        if isinstance(request.stream, httpx.ByteStream) and len(request.content) <= _SMALL_BODY:
            data = request.content or None
        else:
            body = _Body(request.stream)  # type: ignore[arg-type]
            data = body
        sending = self._get_session().request(
            request.method,
            str(request.url),
            headers=headers,
            data=data,
            allow_redirects=False,
            compress=None,
            proxy=self.proxy_for(request.url) if self._proxies else None,
            timeout=self._timeout(timeouts),
            ssl=self._ssl_for(request.url),
        )
        try:
            if body is None:
                response = await sending
            else:
                response = await _watch_writes(sending, body, timeouts.get("write"), request)
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            if body is not None and body.error is not None:
                raise body.error from None
            raise _as_httpx(exc, request) from None
        extensions = {"http_version": b"HTTP/1.1", "reason_phrase": b""}
        if request.method == "HEAD" or response.content_length == 0:
            # Nothing to stream (most of a no-op run): hand the connection back now.
            response.release()
            return httpx.Response(
                response.status,
                headers=list(response.raw_headers),
                stream=httpx.ByteStream(b""),  # not content=: that counts as already read
                extensions=extensions,
            )
        return httpx.Response(
            response.status,
            headers=list(response.raw_headers),
            stream=_ResponseStream(response, request),
            extensions=extensions,
        )

    def _timeout(self, timeouts: dict[str, float | None]) -> aiohttp.ClientTimeout:
        key = (timeouts.get("pool"), timeouts.get("connect"), timeouts.get("read"))
        if key not in self._timeouts:
            self._timeouts[key] = aiohttp.ClientTimeout(
                total=None, connect=key[0], sock_connect=key[1], sock_read=key[2]
            )
        return self._timeouts[key]

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _watch_writes(
    sending: Coroutine[Any, Any, aiohttp.ClientResponse],
    body: _Body,
    limit: float | None,
    request: httpx.Request,
) -> aiohttp.ClientResponse:
    """Await `sending`, but give up when one piece of the body has waited longer than
    `limit` for the socket: aiohttp has no write timeout, and a peer that stops reading
    would otherwise hold the upload (and its host slot) forever."""
    if limit is None:
        return await sending  # no watchdog, no task
    task = asyncio.ensure_future(sending)
    handed_over = False
    try:
        while True:
            since = body.writing_since
            wait = limit if since is None else since + limit - time.monotonic()
            if wait <= 0:
                raise httpx.WriteTimeout(
                    f"the request body made no progress for {limit:.0f}s", request=request
                )
            done, _ = await asyncio.wait({task}, timeout=wait)
            if done:
                handed_over = True
                return task.result()
    finally:
        if not handed_over:
            # Also when the task finished in the very step we were cancelled: its error
            # must be retrieved and its response (and connection) released.
            task.cancel()  # aiohttp closes the connection
            task.add_done_callback(_discard_outcome)


def _discard_outcome(task: asyncio.Future[Any]) -> None:
    if task.cancelled():
        return
    if task.exception() is None:
        task.result().close()
