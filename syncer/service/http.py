"""A tiny HTTP endpoint for `/metrics`, `/healthz` and the status page (no web framework)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping

Health = Callable[[], bool]
# A page: its Content-Type and body, computed per request.
Page = Callable[[], tuple[str, bytes]]
# The status page embeds text from remote registries: even if escaping ever failed, the
# browser must run no script and load nothing from elsewhere.
_HEADERS = (
    "Content-Security-Policy: default-src 'none'; style-src 'unsafe-inline'\r\n"
    "X-Content-Type-Options: nosniff\r\nCache-Control: no-store\r\n"
)


class StatusServer:
    def __init__(self, pages: Mapping[str, Page], healthy: Health) -> None:
        self._pages = dict(pages)
        self._healthy = healthy
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._handle, host, port)
        return int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _respond(self, path: str) -> tuple[str, str, bytes]:
        if path == "/healthz":
            ok = self._healthy()
            status = "200 OK" if ok else "503 Service Unavailable"
            return status, "text/plain", b"ok\n" if ok else b"unhealthy\n"
        page = self._pages.get(path)
        if page is None:
            return "404 Not Found", "text/plain", b"not found\n"
        return ("200 OK", *page())

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=10)
            while (await asyncio.wait_for(reader.readline(), timeout=10)) not in (b"\r\n", b""):
                pass  # headers are not needed
            parts = line.decode("latin-1").split()
            path = parts[1].split("?", 1)[0] if len(parts) >= 2 else ""
            status, ctype, body = self._respond(path)
            head = (
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n{_HEADERS}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            )
            writer.write(head.encode() + body)
            await writer.drain()
        except (TimeoutError, ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
