"""The plumbing under the fault proxy and the fake CDN: a threaded HTTP server with a
life cycle fit for tests, and a handler base that streams bodies to and from one plain-http
upstream.

Why ThreadingHTTPServer + http.client: a thread per client connection gives keep-alive and
concurrency for free, and http.client sends headers exactly as given (httpx adds
Accept-Encoding/User-Agent, changing what the registry answers). stop() cuts idle connections
and joins every handler thread, so nothing outlives a test.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import socketserver
import sys
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from http.client import HTTPException
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import urlsplit

CHUNK = 64 * 1024
# Hop-by-hop headers belong to one connection (RFC 9110 7.6.1), each side sets its own;
# Expect is answered here (100 Continue) and Host is the upstream's.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade"}
HOP_BY_HOP |= {"transfer-encoding", "proxy-authorization", "proxy-authenticate", "expect", "host"}
Headers = Sequence[tuple[str, str]]


class Service(ThreadingHTTPServer):
    """Shared life cycle: binds a free port when built, serves in a thread from start()."""

    daemon_threads = False  # so that server_close() joins every handler thread
    block_on_close = True

    def __init__(self, upstream_url: str, bind: str, handler: type[Handler]) -> None:
        up = urlsplit(upstream_url)
        if up.scheme != "http" or not up.hostname or not up.port:
            raise ValueError(f"upstream must be plain http://host:port, not {upstream_url!r}")
        self.upstream_url, self.upstream_host = upstream_url.rstrip("/"), up.netloc
        self.upstream_addr = (up.hostname, up.port)
        self.lock = threading.Lock()
        self.live: set[Handler] = set()
        self.closing = False
        self.connections = 0  # client connections accepted: keep-alive shows as fewer
        self.counts: Counter[str] = Counter()
        super().__init__((bind, 0), handler)
        self.host = f"{bind}:{self.server_port}"
        self.url = f"http://{self.host}"
        self._thread: threading.Thread | None = None

    def server_bind(self) -> None:
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn); pointless on loopback.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client (or stop()) closing a connection mid-exchange is routine here.
        if not self.closing and not isinstance(sys.exception(), OSError | HTTPException):
            super().handle_error(request, client_address)

    def start(self) -> Self:
        if self._thread is None:
            name = f"{type(self).__name__}-{self.host}"
            self._thread = threading.Thread(
                target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
            )  # a short poll interval: stop() waits for the loop to notice
            self._thread.start()
        return self

    def stop(self) -> None:
        with self.lock:
            if self.closing:
                return
            self.closing, live = True, list(self.live)
        if self._thread is not None:  # shutdown() would wait forever without serve_forever
            self.shutdown()
            self._thread.join()
        for handler in live:  # unblocks threads waiting on idle keep-alive connections
            handler.abort()
        self.server_close()  # joins all handler threads

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def count(self, key: str) -> None:
        with self.lock:
            self.counts[key] += 1


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive
    timeout = 120  # an idle client connection; stop() cuts it sooner
    server: Service
    _up: http.client.HTTPConnection | None = None

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.live.add(self)
            self.server.connections += 1
            closing = self.server.closing
        if closing:  # accepted just after stop() took its snapshot of live handlers
            self.abort()

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with self.server.lock:
            self.server.live.discard(self)
        self.close_upstream()

    def abort(self) -> None:
        up = self._up  # read once: the handler thread may be replacing it right now
        for sock in (self.connection, up.sock if up is not None else None):
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the owner's `requests` is the log; stderr noise helps nobody

    def close_upstream(self) -> None:
        if self._up is not None:
            self._up.close()
            self._up = None

    def request_body(self) -> Iterator[bytes] | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._chunked_body()
        length = int(self.headers.get("Content-Length") or 0)
        return self._sized_body(length) if length else None

    def _sized_body(self, length: int) -> Iterator[bytes]:
        while length:
            data = self.rfile.read(min(CHUNK, length))
            if not data:
                raise ConnectionError("client closed during the request body")
            length -= len(data)
            yield data

    def _chunked_body(self) -> Iterator[bytes]:
        while True:
            line = self.rfile.readline(1024)
            if not line:  # never pass a truncated body on as if it were complete
                raise ConnectionError("client closed during a chunked request body")
            if not (size := int(line.split(b";", 1)[0].strip(), 16)):
                break
            yield from self._sized_body(size)
            self.rfile.readline(1024)  # the CRLF closing each chunk
        while self.rfile.readline(65536) not in (b"\r\n", b"\n", b""):
            pass  # trailer fields, ignored

    def send_head(self, status: int, headers: Headers) -> None:
        self.send_response_only(status)  # no Server/Date of ours next to the registry's
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()

    def reply(self, status: int, body: bytes, headers: Headers = ()) -> int:
        self.send_head(status, [*headers, ("Content-Length", str(len(body)))])
        if self.command != "HEAD":
            self.wfile.write(body)
        return status

    def reply_error(self, status: int, code: str, message: str, headers: Headers = ()) -> int:
        body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]})
        hdrs = [("Content-Type", "application/json; charset=utf-8"), *headers]
        return self.reply(status, body.encode(), hdrs)

    def upstream(
        self, path: str, headers: Headers, body: Iterator[bytes] | None
    ) -> http.client.HTTPResponse:
        """One upstream connection per request: a reused one could have been closed while
        idle, and a request with a streamed body can't simply be sent again."""
        self.close_upstream()
        self._up = up = http.client.HTTPConnection(*self.server.upstream_addr, timeout=60)
        chunked = body is not None and "Content-Length" not in self.headers
        up.putrequest(self.command, path, skip_host=True, skip_accept_encoding=True)
        for name, value in [("Host", self.server.upstream_host), *headers]:
            up.putheader(name, value)
        if chunked:
            up.putheader("Transfer-Encoding", "chunked")
        up.endheaders()
        for data in body or ():
            up.send(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
        if chunked:
            up.send(b"0\r\n\r\n")
        return up.getresponse()

    def relay(
        self,
        resp: http.client.HTTPResponse,
        extra: Headers = (),
        *,
        cut_at: int | None = None,
        flip_at: int | None = None,
        replace: Mapping[str, str] | None = None,
    ) -> tuple[bool, bool]:
        """Stream `resp` to the client; returns (cut, flipped). `cut_at`: body bytes to send
        before closing the connection; `flip_at`: offset in this body of a byte to invert;
        `replace`: header values (lower-case names) sent instead of the upstream's."""
        old_new = self.server.upstream_url, self.server.url
        replace = replace or {}
        headers = [
            # The registry names itself in Location (uploads) and Link (pagination).
            (k, v.replace(*old_new) if k.lower() in ("location", "link") else v)
            for k, v in resp.getheaders()
            if k.lower() not in HOP_BY_HOP | set(replace)
        ]
        headers += list(replace.items())
        no_body = self.command == "HEAD" or resp.status in (204, 304)
        chunked = not no_body and resp.getheader("Content-Length") is None
        if chunked:  # upstream sent no length (chunked or close-delimited): re-chunk it
            headers.append(("Transfer-Encoding", "chunked"))
        self.send_head(resp.status, [*headers, *extra])
        sent, flipped = 0, False
        while not no_body and (data := resp.read1(CHUNK)):
            if flip_at is not None and sent <= flip_at < sent + len(data):
                i = flip_at - sent
                data, flipped = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :], True
            if cut_at is not None and sent + len(data) >= cut_at:
                self.wfile.write(data[: cut_at - sent])
                self.close_connection = True  # the client sees EOF mid-body
                return True, flipped and flip_at is not None and flip_at < cut_at
            self.wfile.write(b"%x\r\n%b\r\n" % (len(data), data) if chunked else data)
            sent += len(data)
        if chunked:
            self.wfile.write(b"0\r\n\r\n")
        self.close_upstream()
        return False, flipped
