"""The status endpoint against slow and greedy clients: deadline, connection cap, log volume.

Each connection gets 10 s from accept to the last byte of its answer; at most
min(64, RLIMIT_NOFILE/4) are open, the oldest still sending its request giving way to a
newcomer; past that, newcomers are closed at once and counted in one log line a second.
"""

from __future__ import annotations

import asyncio
import resource
import socket
import time

import httpx
import structlog

from syncer.service.connections import ConnectionGuard, Limits
from syncer.service.http import StatusServer
from tests.support.slowloris import Stalled, stalled

BIG = b"x" * (16 * 1024 * 1024)  # far more than the socket buffers hold
PAGES = {"/big": lambda: ("application/octet-stream", BIG)}


async def slow_reader(port: int) -> tuple[socket.socket, float]:
    """A full request for /big from a client that then reads nothing."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    opened = time.monotonic()
    await loop.sock_sendall(sock, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    return sock, opened


async def read_all(sock: socket.socket, timeout: float) -> int:
    loop, total = asyncio.get_running_loop(), 0
    async with asyncio.timeout(timeout):
        try:
            while data := await loop.sock_recv(sock, 1 << 20):
                total += len(data)
        except ConnectionResetError:
            pass
    return total


async def cut_after(conn: Stalled, limit: float, every_s: float = 2.0) -> float | None:
    """Trickle a header line every `every_s` until the server closes; seconds since connect."""
    n = 0
    while time.monotonic() - conn.opened < limit:
        if await conn.closed_within(every_s):
            return time.monotonic() - conn.opened
        n += 1
        conn.writer.write(b"X-Trickle-%d: 1\r\n" % n)
    return None


async def test_slow_clients_are_cut_at_the_deadline() -> None:
    server = StatusServer(PAGES, lambda: True)  # the defaults syncer runs with: 10 s
    port = await server.start("127.0.0.1", 0)
    try:
        trickler = await stalled("127.0.0.1", port)
        silent = await stalled("127.0.0.1", port, b"")
        reader, opened = await slow_reader(port)
        trickled, quiet = await asyncio.gather(
            cut_after(trickler, 13.0), cut_after(silent, 13.0, every_s=13.0)
        )
        # The kernel still delivers what it had buffered, then the end: the rest is dropped.
        got = await read_all(reader, 5.0)
        reader_cut = time.monotonic() - opened
        reader.close()
    finally:
        await server.stop()
    assert trickled is not None and 9.9 < trickled < 11.0, trickled
    assert quiet is not None and 9.9 < quiet < 11.0, quiet
    assert got < len(BIG) / 2, got
    assert reader_cut < 16.0


async def test_the_cap_holds_and_stalled_connections_make_room() -> None:
    cap = min(64, resource.getrlimit(resource.RLIMIT_NOFILE)[0] // 4)
    server = StatusServer(PAGES, lambda: True)
    port = await server.start("127.0.0.1", 0)
    conns: list[Stalled] = []
    try:
        for _ in range(cap + 10):
            conns.append(await stalled("127.0.0.1", port))
            await asyncio.sleep(0.005)  # in order, oldest first
        closed = await asyncio.gather(*(c.closed_within(1.0) for c in conns))
        assert closed == [True] * 10 + [False] * cap  # the ten oldest made room
        started = time.monotonic()
        async with httpx.AsyncClient() as c:
            health = await c.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200 and health.text == "ok\n"
        assert time.monotonic() - started < 1.0
        assert await conns[10].closed_within(1.0)  # and the next oldest, for /healthz
        assert isinstance(server.guard, ConnectionGuard)
        assert server.guard.open_connections == cap - 1
        counts = dict(server.guard.totals)
    finally:
        for conn in conns:
            conn.close()
        await server.stop()
    assert counts == {"accepted": cap + 11, "cut_stalled": 11}


async def test_past_the_cap_newcomers_are_closed_at_once_and_logged_once_a_second() -> None:
    server = StatusServer(PAGES, lambda: True, Limits(deadline_s=30.0, max_connections=3))
    port = await server.start("127.0.0.1", 0)
    readers = [await slow_reader(port) for _ in range(3)]  # each being answered, slowly
    try:
        await asyncio.sleep(0.3)
        with structlog.testing.capture_logs() as logs:
            quick = []
            for _ in range(50):  # for 2.5 s
                conn = await stalled("127.0.0.1", port, b"GET /healthz HTTP/1.1\r\n\r\n")
                started = time.monotonic()
                try:
                    answer = await conn.reader.read()
                except ConnectionResetError:
                    answer = b""
                assert answer == b""  # not a byte of an answer
                quick.append(time.monotonic() - started)
                conn.close()
                await asyncio.sleep(0.05)
            await asyncio.sleep(1.2)
        assert max(quick) < 0.2
        for sock, _ in readers:
            sock.close()
        await asyncio.sleep(0.2)
        async with httpx.AsyncClient() as c:
            health = await c.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200  # the slots are free again
        assert server.guard is not None
        counts = dict(server.guard.totals)
    finally:
        await server.stop()
    assert counts == {"accepted": 4, "refused": 50}
    lines = [e for e in logs if e["event"].startswith("status endpoint: connections closed")]
    assert 3 <= len(lines) <= 4  # one a second at most over ~3.7 s
    assert sum(e["refused"] for e in lines) == 50
    assert {(e["cap"], e["deadline_s"], e["log_level"]) for e in lines} == {(3, 30.0, "warning")}
