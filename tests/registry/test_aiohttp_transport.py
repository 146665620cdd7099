"""The aiohttp network under httpx, against raw loopback sockets we control byte by byte."""

from __future__ import annotations

import asyncio
import gc
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import httpx
import pytest

from syncer.errors import DigestMismatch
from syncer.registry.transport.aiohttp_transport import AiohttpTransport, _Body, _watch_writes

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def serve(handler: Handler) -> tuple[asyncio.Server, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    # A name, not an IP: aiohttp's default cookie jar ignores cookies from bare IPs, which
    # would let the cookie test pass for the wrong reason.
    return server, f"http://localhost:{port}"


async def read_head(reader: asyncio.StreamReader) -> bytes:
    return await reader.readuntil(b"\r\n\r\n")


def answer_once(raw: bytes) -> Handler:
    """A server that reads one request head, writes `raw` and closes the connection."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        writer.write(raw)
        await writer.drain()
        writer.close()

    return handler


def transport() -> AiohttpTransport:
    return AiohttpTransport(ssl.create_default_context(), 4)


async def send(t: AiohttpTransport, method: str, url: str, **kw: object) -> httpx.Response:
    req = httpx.Request(method, url, **kw)  # type: ignore[arg-type]
    resp = await t.handle_async_request(req)
    resp.request = req
    await resp.aread()
    await resp.aclose()
    return resp


async def test_cookies_are_never_sent_back() -> None:
    heads: list[bytes] = []

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                heads.append(await read_head(reader))
            except asyncio.IncompleteReadError:
                break
            writer.write(
                b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=secret; Path=/\r\nContent-Length: 2\r\n\r\nok"
            )
            await writer.drain()
        writer.close()

    server, url = await serve(handler)
    t = transport()
    try:
        for _ in range(2):
            resp = await send(t, "GET", url + "/v2/")
            assert resp.status_code == 200 and resp.content == b"ok"
    finally:
        await t.aclose()
        server.close()
    assert len(heads) == 2
    assert all(b"cookie:" not in h.lower() for h in heads)


async def test_network_failures_become_httpx_errors() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]  # bound, never listening: connection refused
    t = transport()
    try:
        with pytest.raises(httpx.ConnectError):
            await send(t, "GET", f"http://127.0.0.1:{dead}/v2/")

        truncating = answer_once(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly-ten!!")
        server, url = await serve(truncating)
        req = httpx.Request("GET", url + "/blob")
        resp = await t.handle_async_request(req)
        got = b""
        with pytest.raises(httpx.TransportError):
            async for chunk in resp.aiter_raw():
                got += chunk
        assert got == b"only-ten!!"
        await resp.aclose()
        server.close()
    finally:
        await t.aclose()


async def test_a_failing_request_body_surfaces_as_itself() -> None:
    received = 0
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal received
        await read_head(reader)
        try:
            while data := await reader.read(65536):
                received += len(data)
        finally:
            writer.close()
            closed.set()

    async def body() -> AsyncIterator[bytes]:
        yield b"x" * 1000
        raise DigestMismatch("blob from src", "sha256:" + "a" * 64, "sha256:" + "b" * 64)

    server, url = await serve(handler)
    t = transport()
    try:
        with pytest.raises(DigestMismatch):
            await send(
                t, "PUT", url + "/upload", content=body(), headers={"Content-Length": "2000"}
            )
        await asyncio.wait_for(closed.wait(), 5)  # the connection was dropped, not reused
    finally:
        await t.aclose()
        server.close()
    assert received <= 1000  # the declared 2000 bytes never all went out


async def test_an_empty_body_can_be_streamed() -> None:
    """A zero-length blob answers Content-Length: 0; its (empty) stream must still be
    readable the way every blob download reads it, with aiter_raw."""

    empty = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nDocker-Content-Digest: x\r\n\r\n"
    server, url = await serve(answer_once(empty))
    t = transport()
    try:
        resp = await t.handle_async_request(httpx.Request("GET", url + "/v2/r/blobs/x"))
        assert resp.status_code == 200 and resp.headers["docker-content-digest"] == "x"
        assert [c async for c in resp.aiter_raw()] == []
        await resp.aclose()
    finally:
        await t.aclose()
        server.close()


@pytest.mark.parametrize("streamed", [True, False])
async def test_a_peer_that_stops_reading_times_the_upload_out(streamed: bool) -> None:
    """aiohttp has no write timeout of its own: without ours, an upload to a server that
    stopped reading waits forever. Both a streamed body and a large bytes body."""
    size = 32 * 1024 * 1024  # far beyond what the loopback socket buffers hold
    stop = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_head(reader)
        await reader.read(65536)  # then never again
        await stop.wait()
        writer.close()

    async def body() -> AsyncIterator[bytes]:
        for _ in range(size // 65536):
            yield b"x" * 65536

    server, url = await serve(handler)
    t = transport()
    content: object = body() if streamed else b"x" * size
    req = httpx.Request(
        "PUT",
        url + "/upload",
        content=content,  # type: ignore[arg-type]
        headers={"Content-Length": str(size)},
        extensions={"timeout": {"connect": 5.0, "read": 60.0, "write": 0.5, "pool": 5.0}},
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        with pytest.raises(httpx.WriteTimeout):
            await asyncio.wait_for(t.handle_async_request(req), 20)
        assert loop.time() - started < 10  # the 60 s read timeout played no part
    finally:
        stop.set()
        await t.aclose()
        server.close()


async def test_a_watched_request_failing_as_its_caller_is_cancelled_is_not_left_unseen() -> None:
    """The request task ends (with an error) in the same step its caller is cancelled:
    the error must still be retrieved, not logged as 'Task exception was never retrieved'."""
    unhandled: list[str] = []
    asyncio.get_running_loop().set_exception_handler(
        lambda _loop, ctx: unhandled.append(ctx["message"])
    )

    async def sending() -> aiohttp.ClientResponse:
        await asyncio.sleep(0)
        raise aiohttp.ClientOSError(104, "reset")

    async def nothing() -> AsyncIterator[bytes]:
        yield b""

    request = httpx.Request("PUT", "http://127.0.0.1:9/")
    outer = asyncio.create_task(_watch_writes(sending(), _Body(nothing()), 5.0, request))
    await asyncio.sleep(0)
    inner = next(t for t in asyncio.all_tasks() if t not in (outer, asyncio.current_task()))
    while not inner.done():
        await asyncio.sleep(0)
    outer.cancel()
    await asyncio.gather(outer, return_exceptions=True)
    del inner, outer
    gc.collect()
    await asyncio.sleep(0.01)
    assert unhandled == []
