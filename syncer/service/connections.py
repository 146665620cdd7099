"""Admission and deadlines for the status endpoint's connections (under aiohttp.web).

aiohttp parses and answers HTTP, but bounds neither how many connections are open nor how long
one may take: its keep-alive timer (armed at connect since aiohttp 3.14 only) covers the wait for
a request head, not a slow body or an answer the client never reads. Every connection the
endpoint holds is a file descriptor the sync side then lacks for its registry connections, so
each accepted socket passes through a `ConnectionGuard` before aiohttp sees it:

- at most `Limits.max_connections` are open; at the cap a newcomer takes the place of the oldest
  connection still sending its request (a slow client, since real clients send theirs at once),
  and is closed at once when every open one is already being answered;
- each connection gets `Limits.deadline_s` from accept to the last byte of its one answer
  (the endpoint answers with `Connection: close`), then is cut;
- what was cut or refused is logged as one summary line per second at most, and so are the
  event loop's accept errors (EMFILE), which would otherwise be a traceback per attempt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import resource
import socket
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any

import structlog

log = structlog.get_logger("syncer.service.http")

# The cap stays far under the file limit: the sync side needs the rest.
MAX_CONNECTIONS = 64
_ACCEPT_ERROR = "socket.accept() out of system resource"  # asyncio's message for EMFILE & co.


def connection_cap(soft_limit: int | None = None) -> int:
    """min(64, a quarter of the soft RLIMIT_NOFILE), at least 1."""
    if soft_limit is None:
        soft_limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft_limit == resource.RLIM_INFINITY or soft_limit < 0:
        return MAX_CONNECTIONS
    return max(1, min(MAX_CONNECTIONS, soft_limit // 4))


@dataclasses.dataclass(frozen=True)
class Limits:
    deadline_s: float = 10.0  # from accept to the last byte of the answer
    max_connections: int = dataclasses.field(default_factory=connection_cap)


class _Guarded(asyncio.Protocol):
    """One accepted socket: admitted (then handed to aiohttp's protocol) or closed at once."""

    def __init__(self, guard: ConnectionGuard) -> None:
        self._guard = guard
        self._inner: asyncio.Protocol | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.transport: asyncio.Transport | None = None
        self.answering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if not self._guard.admit(self):
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self._guard.limits.deadline_s, self._expire)
        self._inner = self._guard.make_protocol()
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        self._guard.count("timed_out")
        self.cut()

    def cut(self) -> None:
        self._guard.forget(self)
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._guard.forget(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None


class ConnectionGuard:
    """A protocol factory for `loop.create_server` wrapping `make_protocol` (aiohttp's)."""

    def __init__(self, make_protocol: Callable[[], asyncio.Protocol], limits: Limits) -> None:
        self.make_protocol = make_protocol
        self.limits = limits
        self._open: dict[asyncio.Transport, _Guarded] = {}  # oldest first
        self.totals: Counter[str] = Counter()  # accepted, refused, cut_stalled, timed_out, ...
        self._window: Counter[str] = Counter()
        self._report: asyncio.TimerHandle | None = None

    def __call__(self) -> asyncio.Protocol:
        return _Guarded(self)

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def admit(self, conn: _Guarded) -> bool:
        assert conn.transport is not None
        if len(self._open) >= self.limits.max_connections:
            stalled = next((c for c in self._open.values() if not c.answering), None)
            if stalled is None:
                self.count("refused")
                return False
            self.count("cut_stalled")
            stalled.cut()
        self._open[conn.transport] = conn
        self.totals["accepted"] += 1
        return True

    def forget(self, conn: _Guarded) -> None:
        if conn.transport is not None and self._open.get(conn.transport) is conn:
            del self._open[conn.transport]

    def answering(self, transport: asyncio.BaseTransport | None) -> None:
        """The request head is in: from now on the connection is not taken for a newcomer."""
        conn = self._open.get(transport) if isinstance(transport, asyncio.Transport) else None
        if conn is not None:
            conn.answering = True

    def close_all(self) -> None:
        for conn in list(self._open.values()):
            conn.cut()
        if self._report is not None:
            self._report.cancel()
            self._flush()

    def count(self, what: str) -> None:
        self.totals[what] += 1
        self._window[what] += 1
        if self._report is None:
            self._report = asyncio.get_running_loop().call_later(1.0, self._flush)

    def _flush(self) -> None:
        self._report = None
        if not self._window:
            return
        counts = {k: self._window.get(k, 0) for k in ("refused", "cut_stalled", "timed_out")}
        if self._window.get("accept_failed"):
            counts["accept_failed"] = self._window["accept_failed"]
        self._window.clear()
        log.warning(
            "status endpoint: connections closed early in the last second",
            **counts,
            cap=self.limits.max_connections,
            deadline_s=self.limits.deadline_s,
        )

    def accept_errors_of(
        self, sockets: Iterable[socket.socket], loop: asyncio.AbstractEventLoop
    ) -> Callable[[], None]:
        """Fold the loop's accept errors on `sockets` into the summary line (asyncio itself
        pauses accepting for a second after one); returns a function that undoes this."""
        ours = {s.fileno() for s in sockets}
        previous = loop.get_exception_handler()

        def handler(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
            sock = context.get("socket")
            if context.get("message") == _ACCEPT_ERROR and sock and sock.fileno() in ours:
                self.count("accept_failed")
                return
            if previous is not None:
                previous(loop, context)
            else:
                loop.default_exception_handler(context)

        loop.set_exception_handler(handler)
        return lambda: loop.set_exception_handler(previous)
