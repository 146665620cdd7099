"""Admission and deadlines for the status endpoint's connections (under aiohttp.web).

aiohttp parses and answers HTTP, but bounds neither how many connections are open nor how long
one may take: its keep-alive timer (armed at connect since aiohttp 3.14 only) covers the wait for
a request head, not a slow body or an answer the client never reads. Every connection the
endpoint holds is a file descriptor the sync side then lacks for its registry connections, so
the endpoint accepts its sockets itself, in a `ConnectionGuard`, before aiohttp sees any:

- at most `Limits.max_connections` are open. At the cap a newcomer takes the place of the
  oldest connection that sent part of a request head and not the rest (real clients send the
  whole head at once), else of the oldest that has sent nothing for `Limits.silent_s` (any
  that sent nothing, for a newcomer whose whole head is in already); when there is none,
  a newcomer that sent nothing yet waits on a small reserve (`ConnectionGuard`), and one
  whose bytes are in is closed right after accept();
- each connection gets `Limits.deadline_s` from accept to the last byte of its one answer
  (the endpoint answers with `Connection: close`), then is cut;
- when accept() fails for want of descriptors (EMFILE), accepting pauses for 0.1 s;
- what was cut, refused or failed is logged as one summary line per second at most.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import resource
import socket
from collections import Counter
from collections.abc import Callable

import structlog

log = structlog.get_logger("syncer.service.http")

# The cap stays far under the file limit: the sync side needs the rest.
MAX_CONNECTIONS = 64
_OUT_OF_RESOURCES = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_ACCEPT_PAUSE_S = 0.1
_ACCEPTS_PER_WAKEUP = 16  # then the loop reads and answers before accepting more


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
    silent_s: float = 1.0  # a connection that sent nothing this long may make room


class _Guarded(asyncio.Protocol):
    """One admitted socket; its bytes go on to aiohttp's protocol."""

    def __init__(self, guard: ConnectionGuard, sock: socket.socket, now: float) -> None:
        self._guard = guard
        self.sock = sock
        self.opened = now
        self._inner: asyncio.Protocol | None = None
        self._timers: list[asyncio.TimerHandle] = []
        self.transport: asyncio.Transport | None = None
        self.got_data = False
        self.head_done = False  # the blank line that ends a request head came in
        self.client_gone = False  # it closed its side before its request head was complete
        self.pending = False  # admitted on the reserve: judged on its first bytes
        self.was_cut = False  # before its transport existed: aborted once it does
        self._tail = b""

    def itself(self) -> _Guarded:  # the protocol factory for connect_accepted_socket
        return self

    def peek(self) -> None:
        """Look at what the kernel holds for this connection but the loop has not read yet."""
        if self.got_data or self.sock.fileno() < 0:
            return
        try:
            data = self.sock.recv(4096, socket.MSG_PEEK)
        except OSError:  # nothing yet (BlockingIOError) or reset
            return
        self.client_gone = data == b""
        self._see(data)
        self._tail = b""  # the peeked bytes come again in data_received

    def _see(self, data: bytes) -> None:
        if data and not self.head_done:
            self.got_data = True
            seen = self._tail + data
            self.head_done = b"\r\n\r\n" in seen or b"\n\n" in seen
            self._tail = seen[-3:]

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        if self.was_cut:
            transport.abort()
            return
        loop = asyncio.get_running_loop()
        limits = self._guard.limits
        deadline = max(0.0, self.opened + limits.deadline_s - loop.time())
        self._timers.append(loop.call_later(deadline, self._expire))
        if self.pending:
            self._timers.append(loop.call_later(limits.silent_s, self._silent))
        self._inner = self._guard.make_protocol()
        self._inner.connection_made(transport)

    def _expire(self) -> None:
        self._guard.count("timed_out")
        self.cut()

    def _silent(self) -> None:
        if self.pending and not self._guard.settle(self):
            self._guard.count("refused")
            self.cut()

    def cut(self) -> None:
        self._guard.forget(self)
        self.was_cut = True
        if self.transport is not None:
            self.transport.abort()

    def data_received(self, data: bytes) -> None:
        self._see(data)
        if self.pending and not self._guard.confirm(self):
            self.cut()
        elif self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        if not self.head_done:  # gone before asking anything: nothing to answer
            self.cut()
            return None
        return self._inner.eof_received() if self._inner is not None else None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in self._timers:
            timer.cancel()
        self._guard.forget(self)
        if self._inner is not None:
            self._inner.connection_lost(exc)
            self._inner = None


class ConnectionGuard:
    """Accepts the endpoint's connections and hands the admitted ones to `make_protocol`.

    Of the cap, an eighth is a reserve for newcomers that have sent nothing yet while no open
    connection can be told to be stalled: one is judged on its first bytes (or cut after
    `Limits.silent_s`, or when the reserve is full and a newer one arrives), so that a real
    client is not refused for arriving with a burst.
    """

    def __init__(self, make_protocol: Callable[[], asyncio.Protocol], limits: Limits) -> None:
        self.make_protocol = make_protocol
        self.limits = limits
        self._reserve = limits.max_connections // 8
        self._open: dict[int, _Guarded] = {}  # by id, oldest first
        self._connecting: set[asyncio.Task[object]] = set()
        self._listener: socket.socket | None = None
        self._resume: asyncio.TimerHandle | None = None
        self.totals: Counter[str] = Counter()  # accepted, refused, cut_stalled, timed_out, ...
        self._window: Counter[str] = Counter()
        self._report: asyncio.TimerHandle | None = None

    @property
    def open_connections(self) -> int:
        return len(self._open)

    def listen(self, host: str, port: int) -> int:
        """Bind `host`:`port` and start accepting; the port bound (for port 0)."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.create_server((host, port), family=family, backlog=128)
        sock.setblocking(False)
        self._listener = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._accept)
        return int(sock.getsockname()[1])

    def close(self) -> None:
        loop = asyncio.get_running_loop()
        if self._listener is not None:
            loop.remove_reader(self._listener.fileno())
            self._listener.close()
        if self._resume is not None:
            self._resume.cancel()
        for task in self._connecting:
            task.cancel()
        for conn in list(self._open.values()):
            conn.cut()
            if conn.transport is None:
                conn.sock.close()
        if self._report is not None:
            self._report.cancel()
            self._flush()

    def _accept(self) -> None:
        assert self._listener is not None
        loop = asyncio.get_running_loop()
        for _ in range(_ACCEPTS_PER_WAKEUP):
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno not in _OUT_OF_RESOURCES:
                    raise
                # The listening socket stays readable: wait a little instead of spinning.
                self.count("accept_failed")
                loop.remove_reader(self._listener.fileno())
                self._resume = loop.call_later(_ACCEPT_PAUSE_S, self._resume_accepting)
                return
            sock.setblocking(False)
            conn = _Guarded(self, sock, loop.time())
            conn.peek()
            if conn.client_gone or not self._admit(conn):
                sock.close()  # at once: its descriptor is free for the next accept()
                continue
            task = loop.create_task(loop.connect_accepted_socket(conn.itself, sock))
            self._connecting.add(task)
            task.add_done_callback(self._connected)

    def _connected(self, task: asyncio.Task[object]) -> None:
        self._connecting.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("status endpoint: connection setup failed", error=repr(task.exception()))

    def _resume_accepting(self) -> None:
        self._resume = None
        if self._listener is not None and self._listener.fileno() >= 0:
            asyncio.get_running_loop().add_reader(self._listener.fileno(), self._accept)

    def _admit(self, conn: _Guarded) -> bool:
        if not self._room_for(conn):
            reserve = [c for c in self._open.values() if c.pending]
            if not conn.got_data and len(reserve) >= self._reserve:
                # Under load the loop lags: the first bytes of those on the reserve may be in
                # the kernel already. Judged now, they free the reserve for this newcomer,
                # which would otherwise be refused for arriving amid a burst of others.
                for c in reserve:
                    self.settle(c)
            if conn.got_data or not self._reserve:
                self.count("refused")
                return False
            pending = [c for c in self._open.values() if c.pending]  # oldest first
            if len(pending) >= self._reserve:
                # Full of newcomers still silent: the oldest makes way. A real client sends
                # its head at once and is judged long before it is the oldest; refusing the
                # newcomer instead refused probes amid an attack's reconnects, which arrive
                # faster than `silent_s` clears the reserve, with CPU to spare.
                self.count("refused")
                pending[0].cut()
            conn.pending = True
        self._open[id(conn)] = conn
        self.totals["accepted"] += 1
        return True

    def settle(self, conn: _Guarded) -> bool:
        """Judge a connection on the reserve now if its first bytes are in the kernel (as
        `data_received` will once the loop reads them); whether it left the reserve."""
        conn.peek()
        if conn.client_gone:
            conn.pending = False
            conn.cut()  # as at accept: it left, nothing to count
        elif conn.got_data and not self.confirm(conn):
            conn.cut()
        return not conn.pending

    def confirm(self, conn: _Guarded) -> bool:
        """A connection on the reserve sent its first bytes: give it a slot, or say no."""
        conn.pending = False
        if self._room_for(conn):
            return True
        self.count("refused")
        return False

    def _room_for(self, conn: _Guarded) -> bool:
        """Whether `conn` gets a slot, making room by cutting a stalled connection if need be."""
        slots = [c for c in self._open.values() if not c.pending and c is not conn]
        if len(slots) < self.limits.max_connections - self._reserve:
            return True
        stalled = self._stalled(slots, conn)
        if stalled is None:
            return False
        self.count("cut_stalled")
        stalled.cut()
        return True

    def _stalled(self, slots: list[_Guarded], newcomer: _Guarded) -> _Guarded | None:
        """The connection `newcomer` may replace (oldest first), if any."""
        # Also those a loop iteration old, not connected yet: under load a burst of accepts
        # can fill every slot with them (`cut` aborts them once connected).
        waiting = [c for c in slots if not c.head_done]
        if not any(c.got_data for c in waiting):
            # After a burst of accepts the loop has read nothing yet: the kernel knows more.
            for c in waiting:
                c.peek()
            waiting = [c for c in waiting if not c.head_done]
        partial = next((c for c in waiting if c.got_data), None)
        if partial is not None or newcomer.head_done:
            return partial or next(iter(waiting), None)
        silent_since = asyncio.get_running_loop().time() - self.limits.silent_s
        return next((c for c in waiting if c.opened <= silent_since), None)

    def forget(self, conn: _Guarded) -> None:
        self._open.pop(id(conn), None)

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
