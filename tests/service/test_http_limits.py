"""The status endpoint against slow and greedy clients: deadline, connection cap, log volume.

Each connection gets 10 s from accept to the last byte of its answer; at most
min(64, RLIMIT_NOFILE/4) are open, the oldest still sending its request giving way to a
newcomer; past that, newcomers are closed at once and counted in one log line a second.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import socket
import sys
import time
from pathlib import Path

import httpx
import structlog

from syncer.service.connections import ConnectionGuard, Limits
from syncer.service.http import StatusServer
from tests.support.slowloris import Attack, Stalled, stalled, trickle

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
    slots = cap - cap // 8  # the rest is the reserve for clients that sent nothing yet
    server = StatusServer(PAGES, lambda: True)
    port = await server.start("127.0.0.1", 0)
    conns: list[Stalled] = []
    try:
        for _ in range(slots + 10):
            conns.append(await stalled("127.0.0.1", port))
            await asyncio.sleep(0.005)  # in order, oldest first
        closed = await asyncio.gather(*(c.closed_within(1.0) for c in conns))
        assert closed == [True] * 10 + [False] * slots  # the ten oldest made room
        started = time.monotonic()
        async with httpx.AsyncClient() as c:
            health = await c.get(f"http://127.0.0.1:{port}/healthz")
        assert health.status_code == 200 and health.text == "ok\n"
        assert time.monotonic() - started < 1.0
        assert await conns[10].closed_within(1.0)  # and the next oldest, for /healthz
        assert isinstance(server.guard, ConnectionGuard)
        assert server.guard.open_connections == slots - 1
        counts = dict(server.guard.totals)
    finally:
        for conn in conns:
            conn.close()
        await server.stop()
    assert counts == {"accepted": slots + 11, "cut_stalled": 11}


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


async def test_a_client_arriving_with_a_burst_is_judged_on_its_first_bytes() -> None:
    limits = Limits(deadline_s=30.0, max_connections=8, silent_s=2.0)  # 7 slots, 1 in reserve
    server = StatusServer(PAGES, lambda: True, limits)
    port = await server.start("127.0.0.1", 0)
    try:
        silent = [await stalled("127.0.0.1", port, b"") for _ in range(7)]
        first = await stalled("127.0.0.1", port, b"")  # nothing to tell: on the reserve
        second = await stalled("127.0.0.1", port, b"")  # the reserve is full: first makes way
        assert await first.closed_within(0.2)
        second.writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(second.reader.read(), 1.0)
        assert answer.startswith(b"HTTP/1.1 200 OK\r\n") and answer.endswith(b"\r\n\r\nok\n")
        closed = await asyncio.gather(*(c.closed_within(0.2) for c in silent))
        assert closed == [True] + [False] * 6  # the oldest silent one made room
        silent.append(await stalled("127.0.0.1", port, b""))  # the slot that freed up
        third = await stalled("127.0.0.1", port, b"")
        assert await third.closed_within(3.0)  # said nothing for silent_s
        waited = time.monotonic() - third.opened
        assert server.guard is not None
        counts = dict(server.guard.totals)
    finally:
        await server.stop()
    assert 1.9 < waited < 2.5, waited
    assert counts == {"accepted": 11, "refused": 2, "cut_stalled": 1}


async def test_a_client_amid_a_burst_is_not_refused_for_a_reserve_the_loop_has_not_read() -> None:
    """Under load the loop lags: the newcomer on the reserve has sent its (slowloris) first
    bytes, but the loop has not read them when a real client arrives. Those bytes are judged
    then, freeing the reserve; the client is answered, not refused."""
    limits = Limits(deadline_s=30.0, max_connections=8, silent_s=5.0)  # 7 slots, 1 in reserve
    server = StatusServer(PAGES, lambda: True, limits)
    port = await server.start("127.0.0.1", 0)
    assert server.guard is not None
    try:
        silent = [await stalled("127.0.0.1", port, b"") for _ in range(7)]  # none cut: < 5 s
        burst = await stalled("127.0.0.1", port, b"")  # on the reserve
        await asyncio.sleep(0.1)
        # Between two turns of the loop: the burst's partial head reaches the kernel, a client
        # connects (its request not sent yet), and the listener is served before the reads.
        burst.writer.write(b"GET / HTTP/1.1\r\n")
        client = socket.create_connection(("127.0.0.1", port))
        server.guard._accept()
        client.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_sendall(client, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = await asyncio.wait_for(loop.sock_recv(client, 65536), 2.0)
        client.close()
        closed = await asyncio.gather(*(c.closed_within(0.2) for c in [burst, *silent]))
        counts = dict(server.guard.totals)
    finally:
        await server.stop()
    assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
    # The burst, judged on its partial head with no slot to take, made way; the oldest silent
    # connection then made room for the client's whole head.
    assert closed == [True, True] + [False] * 6, closed
    assert counts == {"accepted": 9, "refused": 1, "cut_stalled": 1}, counts


# A status endpoint in a process whose file descriptors are all in use but four, as when the
# sync side holds the rest: accepting then fails with EMFILE.
STARVED = """
import asyncio, json, os, resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (64, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
from syncer.service.http import StatusServer
from syncer.service.logs import configure

async def main():
    configure("json")
    server = StatusServer({}, lambda: True)
    print(await server.start("127.0.0.1", 0), flush=True)
    held = []
    try:
        while True:
            held.append(os.open(os.devnull, os.O_RDONLY))
    except OSError:
        pass
    for fd in held[:4]:
        os.close(fd)
    await asyncio.sleep(float(sys.argv[1]))
    await server.stop()

asyncio.run(main())
"""


async def test_accept_errors_neither_spin_nor_flood_the_log(tmp_path: Path) -> None:
    script = tmp_path / "starved.py"
    script.write_text(STARVED)
    err = tmp_path / "err.log"
    with err.open("wb") as log:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(script), "9", stdout=asyncio.subprocess.PIPE, stderr=log
        )
    assert proc.stdout is not None
    port = int(await proc.stdout.readline())
    await asyncio.sleep(0.3)  # the descriptors are taken
    cpu_before = _cpu_seconds(proc.pid)
    attack = Attack("127.0.0.1", port, connections=40, every_s=1.0, duration_s=4.0)
    stats = await trickle(attack)
    cpu = _cpu_seconds(proc.pid) - cpu_before
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=4.0) as c:
        health = await c.get(f"http://127.0.0.1:{port}/healthz")
    waited = time.monotonic() - started
    assert await proc.wait() == 0
    # Served once the attack's leftovers in the accept queue are taken and dropped: asyncio
    # takes a few each second while the descriptors are this short.
    assert health.status_code == 200 and waited < 2.0, waited
    assert stats.peak_open == 40  # the kernel took them all; the process could not
    assert cpu < 1.0, cpu  # no busy loop over a listening socket it cannot accept from
    text = err.read_text()
    assert "Traceback" not in text and "out of system resource" not in text, text[:2000]
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all(e["event"].startswith("status endpoint: connections") for e in lines)
    assert len(lines) <= 6  # one a second at most
    assert sum(e.get("accept_failed", 0) for e in lines) >= 3


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
